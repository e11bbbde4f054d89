"""ScriptedBackend, and the env branches that need exact LLM outputs: relief, give-up,
``success_threshold``, the rubric and outcome reward terms.  No model is loaded here."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agents.backends import BackendError, GenerationParams, ScriptedBackend
from agents.backends.scripted import ScriptExhausted
from agents.personas import Persona
from esc_env.env import ESCEnv

PERSONA = Persona(id="test/exam", emotion_type="anxiety", problem_type="academic pressure",
                  situation="I have an exam tomorrow and I have not studied.", initial_intensity=4,
                  opening="I have an exam tomorrow and I feel sick about it.")
CONV = [{"role": "user", "content": "hello there"}]


def level(k: int) -> list[float]:
    """A score row for the ``digits`` design that puts (almost) all mass on the digit ``k``."""
    return [0.0 if d == k else -60.0 for d in range(1, 6)]


def scripted_env(seeker: list[str], judge: list[list[float]], supporter: list[str] | None = None, **kw) -> ESCEnv:
    sup = ScriptedBackend(replies=supporter or ["That sounds hard. What happened?"] * 4, name="supporter")
    kw.setdefault("max_turns", 3)
    return ESCEnv(sup, seeker_backend=ScriptedBackend(replies=seeker, name="seeker"),
                  judge_backend=ScriptedBackend(scores=judge, name="judge"),
                  personas=[PERSONA], affect_judge="prompted", affect_design="digits", **kw)


# ---- the backend itself ---------------------------------------------------------------------


def test_generate_follows_the_script_in_order_with_stops_n_and_usage():
    b = ScriptedBackend(replies=["one two three", "four\nSupporter: five", "six", "seven"])
    out = b.generate([CONV, CONV], GenerationParams(stop=("\nSupporter:",)))
    assert [c.text for c in out] == ["one two three", "four"]
    assert out[0].completion_tokens == 3 and out[0].prompt_tokens == 2 and out[0].finish_reason == "stop"
    out = b.generate([CONV], GenerationParams(n=2, max_new_tokens=1))
    assert [c.text for c in out] == ["six", "seven"]  # n replies per conversation, conversation-major
    assert b.usage.calls == 2 and b.usage.completion_tokens == 3 + 1 + 1 + 1
    assert [kind for kind, _ in b.calls] == ["generate", "generate"] and b.replies_left == 0
    with pytest.raises(ScriptExhausted, match="4 replies and all are used") as e:
        b.generate([CONV])
    assert isinstance(e.value, BackendError)


def test_score_rows_and_function_scripts():
    b = ScriptedBackend(scores=[[-1.0, -2.0], [-3.0, float("nan")]])
    res = b.score([CONV, CONV], ["a", "b"])
    assert res.logprobs.shape == (2, 2) and res.logprobs[0, 1] == -2.0
    assert res.logprobs[1, 1] == -math.inf  # the base class turns NaN into -inf, as for any backend
    with pytest.raises(ScriptExhausted, match="2 score rows"):
        b.score([CONV], ["a", "b"])
    f = ScriptedBackend(replies=lambda conv: conv[-1]["content"].upper(),
                        scores=lambda conv, cands, prefix: [float(len(c + prefix)) for c in cands])
    assert f.generate([CONV])[0].text == "HELLO THERE"
    np.testing.assert_array_equal(f.score([CONV], ["a", "bcd"], assistant_prefix="xy").logprobs, [[3.0, 5.0]])
    with pytest.raises(ValueError, match="2 values for 3 candidates"):
        ScriptedBackend(scores=[[0.0, 0.0]]).score([CONV], ["a", "b", "c"])
    with pytest.raises(ValueError, match="role must be one of"):  # the template method still validates
        f.generate([[{"role": "robot", "content": "x"}]])
    with pytest.raises(TypeError, match="must be a str"):
        ScriptedBackend(replies=[3])


# ---- env branches -------------------------------------------------------------------------


def test_relief_terminates_with_the_success_bonus():
    env = scripted_env(["Thank you, that helps a lot. [RELIEVED]"], [level(4), level(2)])
    obs, info = env.reset(seed=0)
    assert info["intensity"]["after"] == pytest.approx(4.0) and obs["intensity"][0] == pytest.approx(4.0)
    obs, reward, terminated, truncated, info = env.step(0)
    assert terminated and not truncated and info["success"] and not info["gave_up"]
    assert info["seeker_utterance"] == "Thank you, that helps a lot."  # the marker never reaches the supporter
    assert info["reward_terms"] == pytest.approx({"improvement": 0.5, "success": 1.0, "give_up": 0.0, "turn_cost": 0.0})
    assert reward == pytest.approx(1.5)
    assert env.state.success and env.state.intensities == pytest.approx([4.0, 2.0])


def test_give_up_terminates_with_the_penalty():
    env = scripted_env(["This is useless, I'm going. [LEAVE]"], [level(3), level(4)])
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(5)
    assert terminated and not truncated and info["gave_up"] and not info["success"]
    assert info["reward_terms"]["give_up"] == -1.0 and info["reward_terms"]["improvement"] == pytest.approx(-0.25)
    assert reward == pytest.approx(-1.25)


def test_success_threshold_ends_the_episode_and_outranks_a_give_up_marker():
    env = scripted_env(["Still not great.", "I guess it's okay. [LEAVE]"], [level(4), level(3), level(2)], success_threshold=2.0)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(0)  # 3 > 2: goes on
    assert not terminated and not info["success"] and reward == pytest.approx(0.25)
    _, reward, terminated, _, info = env.step(0)  # 2 <= 2: success, whatever the marker says
    assert terminated and info["success"] and not info["gave_up"]
    assert reward == pytest.approx(0.25 + 1.0)


def test_turn_limit_truncates():
    env = scripted_env(["Hm.", "Hm."], [level(4), level(4), level(5)], max_turns=2)
    env.reset(seed=0)
    assert env.step(0)[2:4] == (False, False)
    _, reward, terminated, truncated, _ = env.step(1)
    assert truncated and not terminated and reward == pytest.approx(-0.25)


def test_rubric_term_uses_aflow_weights():
    # score rows in call order: the opening's affect row; then per step the affect row and the
    # rubric's four dimensions (empathy, information, naturalness, strategic_fit)
    rows = [level(4), level(4), level(5), level(1), level(3), level(4)]
    env = scripted_env(["Okay."], rows, judges=("affect", "rubric"), reward={"rubric_weight": 1.0})
    env.reset(seed=0)
    _, reward, _, _, info = env.step(2)
    assert info["judges"]["rubric"] == pytest.approx({"empathy": 5, "information": 1, "naturalness": 3, "strategic_fit": 4})
    # 0.1 (5-3)/2 + 0.1 (1-3)/2 + 0.1 (3-3)/2 + 0.2 (4-3)/2
    assert info["reward_terms"]["rubric"] == pytest.approx(0.1)
    assert reward == pytest.approx(0.1)


def test_outcome_term_is_the_expected_outcome_value():
    outcome = list(np.log([0.1, 0.2, 0.3, 0.4]))  # worse, same, better, solved
    env = scripted_env(["Better, I think."], [level(4), level(3), outcome], judges=("affect", "outcome"),
                       reward={"outcome_weight": 0.5})
    env.reset(seed=0)
    _, reward, _, _, info = env.step(0)
    # value = -1 * .1 - .5 * .2 + .5 * .3 + 1 * .4 = 0.35; weight 0.5
    assert info["judges"]["outcome"]["label"] == "solved"
    assert info["judges"]["outcome"]["value"] == pytest.approx(0.35)
    assert info["reward_terms"]["outcome"] == pytest.approx(0.175)
    assert reward == pytest.approx(0.25 + 0.175)


def test_scripted_supporter_writes_the_utterance_of_the_chosen_strategy():
    env = scripted_env(["Okay."], [level(4), level(4)], supporter=["Supporter: How long has this been going on?"])
    env.reset(seed=0)
    info = env.step(0)[4]
    assert info["strategy"] == "Question" and info["supporter_utterance"] == "How long has this been going on?"
    sup = env.engine.supporter.backend
    assert sup.calls[0][0] == "generate" and "Question" in sup.calls[0][1][0][0]["content"]
