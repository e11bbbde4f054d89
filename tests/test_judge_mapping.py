"""Judges as data (issue 15, point 3): one Judge protocol, a mapping of named judges in the
engine, one weight per judge in RewardConfig, and AFlow's search reading the env's rubric
weights.  Every LLM output is scripted (ScriptedBackend); no model is loaded here."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest

import esc_env
from agents.backends import ScriptedBackend
from agents.judges import (
    AFLOW_RUBRIC_WEIGHTS,
    AffectJudge,
    CalibratedAffectJudge,
    Judge,
    JudgeResult,
    OutcomeJudge,
    RubricJudge,
    intensity_reward,
    result_value,
    rubric_value,
)
from agents.personas import Persona
from esc_env import RewardConfig
from esc_env.env import ESCEnv
from esc_env.rewards import reward_terms

PERSONA = Persona(id="test/exam", emotion_type="anxiety", problem_type="academic pressure",
                  situation="I have an exam tomorrow and I have not studied.", initial_intensity=4,
                  opening="I have an exam tomorrow and I feel sick about it.")
SUPPORTER_TEXT = "That sounds really hard."  # 4 words


class StepAffect:
    """Intensity 4 at the opening, 0.5 lower after every supporter turn: improvement 0.125 a step."""

    def judge(self, dialogues):
        return np.array([4.0 - 0.5 * sum(t.speaker == "supporter" for t in d) for d in dialogues])


class WordsJudge:
    """A user's judge: the number of words of the supporter's last turn / 10, with details."""

    def __init__(self):
        self.calls: list[int] = []  # batch size of every call

    def judge(self, dialogues):
        self.calls.append(len(dialogues))
        out = []
        for d in dialogues:
            said = next(t.text for t in reversed(d) if t.speaker == "supporter")
            out.append(JudgeResult(len(said.split()) / 10, {"words": len(said.split())}))
        return out

    def reward(self, result):
        return result.value


def level(k: int) -> list[float]:
    """A ``digits`` score row with (almost) all mass on the digit ``k``."""
    return [0.0 if d == k else -60.0 for d in range(1, 6)]


def make_env(judges=None, reward=None, rubric_rows=(), make=ESCEnv, **kw):
    """A scripted env: the supporter says SUPPORTER_TEXT, the seeker "Okay.", the affect judge is
    StepAffect and the judge backend (used by built-in judges) scores ``rubric_rows``."""
    kw.setdefault("max_turns", 5)
    args = dict(seeker_backend=ScriptedBackend(replies=lambda conv: "Okay.", name="seeker"),
                judge_backend=ScriptedBackend(scores=rubric_rows, name="judge"),
                personas=[PERSONA], affect_judge=StepAffect(), reward=reward, **kw)
    if judges is not None:
        args["judges"] = judges
    sup = ScriptedBackend(replies=lambda conv: SUPPORTER_TEXT, name="supporter")
    if make is ESCEnv:
        return ESCEnv(sup, **args)
    return make("esc_env/ESC-v0", backend=sup, **args)


# ---- the protocol ------------------------------------------------------------------------------


def test_builtin_judges_follow_the_protocol_and_value_their_results():
    for cls in (AffectJudge, CalibratedAffectJudge, RubricJudge, OutcomeJudge):
        assert issubclass(cls, Judge), cls
    b = ScriptedBackend()
    assert isinstance(RubricJudge(b), Judge) and isinstance(WordsJudge(), Judge)
    assert not isinstance(StepAffect(), Judge)  # no reward(): the engine falls back to result_value
    # AFlow's weights: 0.1 (5-3)/2 + 0.1 (1-3)/2 + 0.1 (3-3)/2 + 0.2 (4-3)/2 = 0.1
    scores = {"empathy": 5.0, "information": 1.0, "naturalness": 3.0, "strategic_fit": 4.0}
    assert RubricJudge(b).reward(scores) == pytest.approx(0.1)
    assert RubricJudge(b).weights == AFLOW_RUBRIC_WEIGHTS
    # custom dimensions weigh 1/d each: (5-3)/2 / 2 + (2-3)/2 / 2 = 0.25
    custom = RubricJudge(b, dimensions={"warmth": "kind", "brevity": "short"})
    assert custom.reward({"warmth": 5.0, "brevity": 2.0}) == pytest.approx(0.25)
    assert RubricJudge(b, weights={"empathy": 2.0}).reward(scores) == pytest.approx(2.0)
    with pytest.raises(ValueError, match=r"RubricJudge.weights\['warmth'\].*not a dimension"):
        RubricJudge(b, weights={"warmth": 1.0})
    with pytest.raises(ValueError, match=r"RubricJudge.weights\['empathy'\] must be a finite number"):
        RubricJudge(b, weights={"empathy": math.inf})
    assert OutcomeJudge(b).reward({"label": "better", "value": 0.35, "probs": {}}) == 0.35
    assert AffectJudge(b).reward(1.0) == 1.0 and AffectJudge(b).reward(5.0) == -1.0 and intensity_reward(3.0) == 0.0
    assert intensity_reward(float("nan")) == 0.0
    assert result_value(0.5) == 0.5 and result_value(np.float32(0.25)) == 0.25 and result_value({"value": 2}) == 2.0
    with pytest.raises(TypeError, match="reward\\(result\\)"):
        result_value("high")


def test_rubric_judge_reads_the_intended_strategy_from_the_rated_turn():
    from agents.dialogue import Turn

    b = ScriptedBackend(scores=lambda conv, cands, prefix: [0.0] * len(cands))
    judge = RubricJudge(b)
    d = [Turn("seeker", "hi"), Turn("supporter", "How long has it been?", "Question"), Turn("seeker", "A week.")]
    judge.judge([d])
    sent = b.calls[-1][1]
    # the same prompts as the engine's former call: the dialogue up to the rated turn, its strategy given
    assert sent == judge.conversations([d[:-1]], ["Question"])
    assert "Question" in sent[0][1]["content"] and "A week." not in sent[0][1]["content"]


# ---- a user's judge through the env ------------------------------------------------------------


def test_a_custom_judge_is_called_once_per_step_for_the_whole_batch():
    mine = WordsJudge()
    env = make_env(judges={"words": mine})
    env.reset(seed=0)
    states = [env.get_state()] * 3
    out = env.transition(states, [0, 1, 2])
    assert mine.calls == [3]  # ONE call for the three conversations
    for t in out:
        assert t.info["judges"]["words"] == {"value": 0.4, "words": 4}
        assert t.info["reward_terms"]["words"] == 0.0  # no weight: reported, not rewarded
        assert "words_judge" in t.info["usage"]
    assert "words_judge" in env.engine.last_seconds

    vec = esc_env.make_vec(3, backend=ScriptedBackend(replies=lambda conv: SUPPORTER_TEXT),
                           seeker_backend=ScriptedBackend(replies=lambda conv: "Okay."), personas=[PERSONA],
                           affect_judge=StepAffect(), judges={"words": WordsJudge()},
                           reward=RewardConfig(judge_weights={"words": 2.0}), max_turns=5)
    vec.reset(seed=0)
    _, rewards, _, _, infos = vec.step(np.array([0, 1, 2]))
    assert vec.unwrapped.engine.judges["words"].calls == [3]
    np.testing.assert_allclose(rewards, [0.125 + 2.0 * 0.4] * 3)
    np.testing.assert_allclose(infos["reward_terms"]["words"], [0.8] * 3)


def test_weight_zero_reports_and_weight_w_adds_w_times_the_value():
    plain = make_env()
    plain.reset(seed=0)
    _, r_plain, _, _, info_plain = plain.step(0)
    assert r_plain == pytest.approx(0.125)  # (4 - 3.5) / 4
    assert "words" not in info_plain["judges"] and "words" not in info_plain["reward_terms"]

    zero = make_env(judges={"words": WordsJudge()})
    zero.reset(seed=0)
    _, r_zero, _, _, info = zero.step(0)
    assert r_zero == r_plain  # computed and reported, not rewarded
    assert info["judges"]["words"]["value"] == pytest.approx(0.4) and info["reward_terms"]["words"] == 0.0

    weighted = make_env(judges={"words": WordsJudge()}, reward=RewardConfig(judge_weights={"words": 1.5}))
    weighted.reset(seed=0)
    _, r_w, _, _, info = weighted.step(0)
    assert info["reward_terms"]["words"] == pytest.approx(1.5 * 0.4)
    assert r_w == pytest.approx(0.125 + 0.6) and r_w == pytest.approx(sum(info["reward_terms"].values()))


def test_gym_make_takes_judges_and_judge_weights_and_builtin_names():
    rows = [level(5), level(1), level(3), level(4)]  # the rubric's four dimensions, in order
    env = make_env(judges={"quality": "rubric", "words": WordsJudge()}, rubric_rows=rows,
                   reward=RewardConfig(judge_weights={"quality": 1.0}), make=gym.make)
    engine = env.unwrapped.engine
    assert isinstance(engine.judges["quality"], RubricJudge) and list(engine.judges) == ["quality", "words"]
    env.reset(seed=0)
    _, reward, _, _, info = env.step(0)
    assert info["judges"]["quality"] == pytest.approx({"empathy": 5, "information": 1, "naturalness": 3, "strategic_fit": 4})
    assert info["reward_terms"]["quality"] == pytest.approx(0.1) and info["reward_terms"]["words"] == 0.0
    assert reward == pytest.approx(0.125 + 0.1)
    # an affect judge by name, reported next to the one that drives the reward
    env = make_env(judges={"prompted": "prompted"}, rubric_rows=lambda conv, cands, prefix: [0.0] * len(cands), make=gym.make)
    assert isinstance(env.unwrapped.engine.judges["prompted"], AffectJudge)
    env.reset(seed=0)
    info = env.step(0)[4]
    # flat log-probabilities: every intensity group equally likely, expected level 3
    assert info["judges"]["prompted"] == pytest.approx(3.0) and info["judges"]["affect"] == 3.5
    assert info["reward_terms"]["prompted"] == 0.0
    # a dict reward works too
    env = make_env(judges={"words": WordsJudge()}, reward={"judge_weights": {"words": 1.0}}, make=gym.make)
    env.reset(seed=0)
    assert env.step(0)[1] == pytest.approx(0.125 + 0.4)


def test_old_names_still_work():
    rows = [level(5), level(1), level(3), level(4)]
    # judges=("affect", "rubric") and rubric_weight: the names the README uses
    env = make_env(judges=("affect", "rubric"), rubric_rows=rows, reward={"rubric_weight": 1.0})
    assert env.engine.reward.judge_weights == {"rubric": 1.0}
    assert isinstance(env.engine.rubric_judge, RubricJudge) and env.engine.outcome_judge is None
    env.reset(seed=0)
    _, reward, _, _, info = env.step(0)
    assert info["reward_terms"]["rubric"] == pytest.approx(0.1) and reward == pytest.approx(0.225)
    assert "rubric_judge" in info["usage"]

    # the engine's former slots warn and still run
    from esc_env.engine import DialogueEngine

    e = env.engine
    with pytest.warns(DeprecationWarning, match="rubric_judge=.*deprecated"):
        old = DialogueEngine(e.seeker, e.supporter, e.affect_judge, e.strategies, max_turns=5,
                             rubric_judge=RubricJudge(ScriptedBackend(scores=rows)), reward=RewardConfig(rubric_weight=2.0))
    assert list(old.judges) == ["rubric"]
    st = old.start([PERSONA], [0])
    t = old.transition(st, [0])[0]
    assert t.info["reward_terms"]["rubric"] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="judge 'rubric' given twice"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        DialogueEngine(e.seeker, e.supporter, e.affect_judge, e.strategies, rubric_judge=WordsJudge(),
                       judges={"rubric": WordsJudge()})

    # the aliases and judge_weights agree both ways
    assert RewardConfig(judge_weights={"outcome": 0.5}).outcome_weight == 0.5
    assert RewardConfig(outcome_weight=0.5, judge_weights={"outcome": 0.5}).judge_weights == {"outcome": 0.5}
    with pytest.raises(ValueError, match=r"rubric_weight=1.0 and judge_weights\['rubric'\]=2.0 disagree"):
        RewardConfig(rubric_weight=1.0, judge_weights={"rubric": 2.0})
    cfg = RewardConfig(rubric_weight=1.0, rubric_weights={"empathy": 1.0})
    assert RewardConfig.from_dict(cfg.as_dict()) == cfg
    # reward_terms' old call: rubric scores and an outcome value as keywords
    terms = reward_terms(RewardConfig(rubric_weight=1.0, outcome_weight=0.5), 4.0, 3.0, False, False,
                         rubric={"empathy": 5, "information": 1, "naturalness": 3, "strategic_fit": 4}, outcome=0.35)
    assert terms == pytest.approx({"improvement": 0.25, "success": 0.0, "give_up": 0.0, "turn_cost": 0.0,
                                   "rubric": 0.1, "outcome": 0.175})
    assert "rubric" not in reward_terms(RewardConfig(), 4.0, 3.0, False, False, rubric={"empathy": 5})


def test_rubric_weights_override_the_judges_own():
    rows = [level(5), level(1), level(3), level(4)]
    env = make_env(judges=("rubric",), rubric_rows=rows, reward=RewardConfig(rubric_weight=1.0, rubric_weights={"empathy": 1.0}))
    env.reset(seed=0)
    info = env.step(0)[4]
    assert info["reward_terms"]["rubric"] == pytest.approx(1.0)  # 1.0 * (5 - 3) / 2
    assert env.engine.rubric_weights == {"empathy": 1.0}
    assert rubric_value({"empathy": 5.0, "other": 1.0}, {"empathy": 1.0}) == 1.0


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, field", [
    ({"turn_cost": math.inf}, "RewardConfig.turn_cost"),
    ({"improvement_weight": -math.inf}, "RewardConfig.improvement_weight"),
    ({"success_bonus": math.nan}, "RewardConfig.success_bonus"),
    ({"rubric_weight": math.inf}, "RewardConfig.rubric_weight"),
    ({"judge_weights": {"mine": math.inf}}, r"RewardConfig.judge_weights\['mine'\]"),
    ({"rubric_weights": {"empathy": math.nan}}, r"RewardConfig.rubric_weights\['empathy'\]"),
    ({"give_up_penalty": "1"}, "RewardConfig.give_up_penalty"),
])
def test_reward_config_refuses_non_finite_numbers_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field + " must be a finite number"):
        RewardConfig(**kwargs)


def test_bad_judges_are_refused_with_their_name():
    with pytest.raises(ValueError, match=r"weighs judge\(s\) \['mine'\], which the env does not have"):
        make_env(reward=RewardConfig(judge_weights={"mine": 1.0}))
    with pytest.raises(ValueError, match=r"weighs judge\(s\) \['rubric'\]"):
        make_env(reward={"rubric_weight": 1.0})
    with pytest.raises(ValueError, match=r"judges\['affect'\].*reserved"):
        make_env(judges={"affect": WordsJudge()})
    with pytest.raises(ValueError, match=r"judge_weights\['success'\].*not a judge's name"):
        RewardConfig(judge_weights={"success": 1.0})
    e = make_env().engine
    from esc_env.engine import DialogueEngine

    with pytest.raises(ValueError, match="a judge may not be named 'success'"):
        DialogueEngine(e.seeker, e.supporter, e.affect_judge, e.strategies, judges={"success": WordsJudge()})
    with pytest.raises(TypeError, match="judge 'mine' must have a judge"):
        DialogueEngine(e.seeker, e.supporter, e.affect_judge, e.strategies, judges={"mine": object()})
    with pytest.raises(TypeError, match=r"judges\['mine'\] must be a built-in judge's name or an object with judge"):
        make_env(judges={"mine": 3})
    with pytest.raises(ValueError, match=r"judges\['mine'\]='rubrik': not a built-in judge"):
        make_env(judges={"mine": "rubrik"})
    with pytest.raises(ValueError, match=r"unknown judge\(s\) \['rubrik'\]"):
        make_env(judges=("affect", "rubrik"))

    class Short:
        def judge(self, dialogues):
            return [0.0]

    env = make_env(judges={"short": Short()})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="judge 'short' returned 1 results for 2 dialogues"):
        env.transition([env.get_state()] * 2, [0, 0])

    class NaN:
        def judge(self, dialogues):
            return [float("nan")] * len(dialogues)

    env = make_env(judges={"nan": NaN()})
    env.reset(seed=0)
    with pytest.raises(ValueError, match="judge 'nan' gave the value nan"):
        env.step(0)


# ---- AFlow's search reads the env's rubric weights ---------------------------------------------


def test_mcts_rubric_weights_follow_the_env_config():
    from policies.aflow import BatchedMCTS, MCTSConfig

    rows = [level(5), level(1), level(3), level(4)]  # empathy 5, information 1, naturalness 3, strategic_fit 4

    def value(reward=None, config=MCTSConfig(reward="rubric"), judges=("affect", "rubric")):
        env = make_env(judges=judges, rubric_rows=rows, reward=reward, make=gym.make)
        mcts = BatchedMCTS(env, config)
        env.reset(seed=0)
        t = env.unwrapped.transition([env.unwrapped.get_state()], [0])[0]
        return mcts, mcts.step_value(t)

    mcts, base = value()
    assert mcts.config.rubric_weights == AFLOW_RUBRIC_WEIGHTS  # the rubric judge's own, filled in
    assert base == pytest.approx((0.1 * 5 + 0.1 * 1 + 0.1 * 3 + 0.2 * 4) / 2.5)
    more_empathy = dict(AFLOW_RUBRIC_WEIGHTS, empathy=0.3)
    mcts, changed = value(RewardConfig(rubric_weights=more_empathy))
    assert mcts.config.rubric_weights == more_empathy
    assert changed - base == pytest.approx(0.2 * 5 / 2.5)  # one weight up by 0.2 on a score of 5
    # a rubric judge with its own weights, and no rubric_weights in the config
    _, own = value(judges={"rubric": RubricJudge(ScriptedBackend(scores=rows), weights={"empathy": 1.0})})
    assert own == pytest.approx(1.0 * 5 / 2.5)
    # an explicit MCTSConfig.rubric_weights wins
    mcts, explicit = value(RewardConfig(rubric_weights=more_empathy), MCTSConfig(reward="rubric", rubric_weights={"naturalness": 1.0}))
    assert explicit == pytest.approx(3 / 2.5)
    with pytest.raises(ValueError, match=r"MCTSConfig.rubric_weights\['empathy'\] must be a finite number"):
        MCTSConfig(rubric_weights={"empathy": math.inf})
