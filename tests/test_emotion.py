"""The seeker's own emotion level (``seeker_emotion``, the ``sage`` preset): parsing, settings,
and the env with scripted outputs (no model is loaded here)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agents.backends import ScriptedBackend
from agents.emotion import (
    EMOTION_PRESETS,
    EmotionConfig,
    EmotionParseError,
    SeekerEmotionJudge,
    intensity_from_level,
    level_from_intensity,
    parse_emotion,
    resolve_emotion,
)
from agents.dialogue import Turn
from agents.personas import Persona
from esc_env.env import ESCEnv
from esc_env.vector import ESCVectorEnv

PERSONA = Persona(id="test/move", emotion_type="sadness", problem_type="moving away",
                  situation="I moved to a new city and I know nobody here.", initial_intensity=4,
                  opening="I moved here a month ago and I still know nobody.")


# ---- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize("text, level, change, clipped", [
    ("Reason: they listened.\nEmotion: 48", 48.0, 8.0, False),
    ("Emotion level: 35/100", 35.0, -5.0, False),
    ("**Emotion:** 47", 47.0, 7.0, False),
    ("Reason: ok\nEmotion: +4", 44.0, 4.0, False),  # a signed number is a change
    ("Emotion: -25", 30.0, -10.0, True),  # bounded to max_change
    ("Emotion: 90", 50.0, 10.0, True),
    ("Emotion: 20\nEmotion: 41", 41.0, 1.0, False),  # the last one counts
])
def test_parse_emotion(text, level, change, clipped):
    u = parse_emotion(text, previous=40.0, max_change=10.0)
    assert (u.level, u.change, u.clipped, u.parsed) == (level, change, clipped, True)


def test_parse_emotion_bounds_and_reason():
    assert parse_emotion("Emotion: +9", previous=95.0, max_change=10.0).level == 100.0  # never above 100
    assert parse_emotion("Reason: you rushed me.\nEmotion: 35", 40.0, 10.0).reason == "you rushed me."
    with pytest.raises(EmotionParseError, match="no 'Emotion: N' line .*'I feel a bit better'"):
        parse_emotion("I feel a bit better", 40.0, 10.0)
    with pytest.raises(EmotionParseError, match="level 450 is outside 0-100"):
        parse_emotion("Emotion: 450", 40.0, 10.0)


def test_level_and_intensity_maps():
    assert intensity_from_level(100) == 1.0 and intensity_from_level(0) == 5.0 and intensity_from_level(40) == pytest.approx(3.4)
    assert level_from_intensity(4) == 25.0 and level_from_intensity(intensity_from_level(62)) == pytest.approx(62)


def test_settings_and_the_sage_preset():
    sage = resolve_emotion("sage")
    assert (sage.start, sage.max_change, sage.success_at, sage.failure_below, sage.max_turns) == (40, 10, 100, 10, 10)
    assert resolve_emotion({"preset": "sage", "start": 60}).start == 60 and resolve_emotion({"preset": "sage", "start": 60}).max_turns == 10
    assert resolve_emotion(None) is None and resolve_emotion(True) == EmotionConfig()
    assert EmotionConfig().start_level(PERSONA) == 25.0  # from the persona's intensity 4
    with pytest.raises(ValueError, match="unknown preset 'rlver'"):
        resolve_emotion("rlver")
    with pytest.raises(ValueError, match="unknown option\\(s\\) \\['begin'\\]"):
        resolve_emotion({"begin": 40})
    with pytest.raises(ValueError, match="start must be a number in \\[0, 100\\]"):
        EmotionConfig(start=140)
    with pytest.raises(ValueError, match="failure_below .* must be below success_at"):
        EmotionConfig(success_at=50, failure_below=60)
    assert "sage" in EMOTION_PRESETS


def test_the_prompt_asks_for_a_change_by_default_and_for_a_level_on_request():
    from agents.emotion import EMOTION_EXAMPLES, EmotionTracker

    d = [Turn("seeker", PERSONA.opening), Turn("supporter", "Tell me more.")]
    conv = EmotionTracker(ScriptedBackend(replies=[]), "sage").conversation(PERSONA, d, 40.0)
    assert "a signed whole number from -10 to +10" in conv[0]["content"]
    # the worked examples show their change with its sign, the rising one first, the falling one last
    (_, b0, _, a0), (_, b1, _, a1) = EMOTION_EXAMPLES
    assert a0 > b0 and a1 < b1
    answers = [m["content"].split("Emotion: ")[1] for m in conv if m["role"] == "assistant"]
    assert answers == [f"{a0 - b0:+g}", f"{a1 - b1:+g}"] == ["+6", "-8"]
    assert conv[-1]["role"] == "user" and "Tell me more." in conv[-1]["content"] and "was 40" in conv[-1]["content"]
    level = EmotionTracker(ScriptedBackend(replies=[]), {"preset": "sage", "answer": "level"}).conversation(PERSONA, d, 40.0)
    assert "a whole number from 0 to 100" in level[0]["content"] and "signed" not in level[0]["content"]
    assert [m["content"].split("Emotion: ")[1] for m in level if m["role"] == "assistant"] == ["36", "42"]
    with pytest.raises(ValueError, match="answer must be one of \\['change', 'level'\\], got 'delta'"):
        EmotionConfig(answer="delta")


def test_a_signed_answer_moves_the_level_in_the_env():
    env = emotion_env(["Reason: you brushed me off.\nEmotion: -8", "Whatever."])
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step("Just get over it.")
    assert info["judges"]["emotion"]["level"] == 32.0 and reward == pytest.approx(-0.08)


# ---- the env --------------------------------------------------------------------------------


def emotion_env(seeker_replies, **kw) -> ESCEnv:
    """Supporter text actions; the seeker's backend answers the emotion update, then the reply."""
    kw.setdefault("max_turns", 3)
    kw.setdefault("seeker_emotion", "sage")
    env = ESCEnv(ScriptedBackend(name="judge (must stay unused)"), seeker_backend=ScriptedBackend(replies=seeker_replies, name="seeker"),
                 personas=[PERSONA], action_mode="text", **kw)
    return env


def test_sage_env_reads_the_seekers_level_and_hides_its_reasons():
    env = emotion_env(["Reason: you asked about me.\nEmotion: 48", "Maybe I could try a club."])
    assert env.affect_judge is None
    obs, info = env.reset(seed=0)
    assert info["judges"]["emotion"]["level"] == 40.0 and obs["intensity"][0] == pytest.approx(3.4)
    obs, reward, terminated, truncated, info = env.step("That sounds lonely. What do you miss most?")
    assert info["judges"]["emotion"] == {"level": 48.0, "change": 8.0, "parsed": True, "clipped": False, "error": None}
    assert info["intensity"] == pytest.approx({"before": 3.4, "after": intensity_from_level(48)})
    assert reward == pytest.approx(0.08) and info["reward_terms"]["improvement"] == pytest.approx(0.08)  # (48 - 40) / 100
    assert not (terminated or truncated)
    assert info["seeker_utterance"] == "Maybe I could try a club."
    # the reason stays in the state, out of the observation and info
    assert "asked about me" not in obs["dialogue"] and "asked about me" not in json.dumps(info)
    hidden = env.get_state()["episode"]["hidden"]
    assert hidden["emotion"] == [40.0, 48.0] and hidden["emotion_reasons"] == ["you asked about me."]
    assert env.engine.seeker.backend.calls[0][1][0][0]["content"].startswith("You are role-playing")
    assert [k for k, _ in env.engine.seeker.backend.calls] == ["generate", "generate"]  # the update, then the reply


def test_reaching_100_is_success_and_falling_below_10_is_failure():
    env = emotion_env(["Emotion: 100", "Thank you."], seeker_emotion={"preset": "sage", "start": 95})
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("You did so well.")
    assert terminated and info["success"] and reward == pytest.approx(0.05 + 1.0)
    env = emotion_env(["Reason: that was cold.\nEmotion: 2", "Whatever. [RELIEVED]"], seeker_emotion={"preset": "sage", "start": 15})
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("Just get over it.")
    # 2 is 13 below 15: cut to 5 (< 10: failure); the seeker's relief marker does not count in this mode
    assert info["judges"]["emotion"]["level"] == 5.0 and info["judges"]["emotion"]["clipped"]
    assert terminated and info["gave_up"] and not info["success"]
    assert reward == pytest.approx(-0.10 - 1.0)


def test_an_unreadable_output_is_reported_and_keeps_the_level():
    env = emotion_env(["I guess I feel okay", "Okay."])
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("Tell me more.")
    e = info["judges"]["emotion"]
    assert not e["parsed"] and e["level"] == 40.0 and "no 'Emotion: N' line" in e["error"]
    assert reward == 0.0 and not terminated
    assert env.get_state()["episode"]["hidden"]["emotion_unreadable"] == 1
    strict = emotion_env(["I guess I feel okay"], seeker_emotion={"preset": "sage", "strict": True})
    strict.reset(seed=0)
    with pytest.raises(EmotionParseError):
        strict.step("Tell me more.")
    assert strict.state.turn == 0 and strict.state.hidden["emotion"] == [40.0]  # nothing half-applied


def test_turn_limit_comes_from_the_preset_unless_given():
    assert emotion_env([], max_turns=None).max_turns == 10
    env = emotion_env([], max_turns=None, seeker_emotion={"start": 50})
    assert env.max_turns == 10 and env.observation_space["turn"].n == 11
    assert emotion_env([], max_turns=4).observation_space["turn"].n == 5


def test_options_that_conflict_with_the_emotion_level():
    with pytest.raises(ValueError, match="success_threshold does not apply"):
        emotion_env([], success_threshold=2.0)
    with pytest.raises(ValueError, match="affect_judge / affect_design do not apply"):
        emotion_env([], affect_judge="prompted")
    with pytest.raises(ValueError, match="unknown preset"):
        emotion_env([], seeker_emotion="sagee")


def test_vector_env_batches_the_update_and_autoresets_without_a_judge():
    def script(conv):
        return "Reason: fine.\nEmotion: +6" if "emotion level" in conv[0]["content"] else "Okay then."

    seeker = ScriptedBackend(replies=script)
    venv = ESCVectorEnv(3, ScriptedBackend(name="unused"), seeker_backend=seeker, personas=[PERSONA], action_mode="text",
                        max_turns=1, seeker_emotion="sage")
    venv.reset(seed=0)
    obs, rew, term, trunc, infos = venv.step(np.array(["Hi."] * 3, dtype=object))
    np.testing.assert_allclose(rew, 0.06)
    assert trunc.all() and [k for k, _ in seeker.calls] == ["generate", "generate"]  # one call per kind for 3
    assert len(seeker.calls[0][1]) == 3
    obs, rew, term, trunc, infos = venv.step(np.array(["Hi."] * 3, dtype=object))  # the autoreset step
    assert (rew == 0).all() and np.allclose(obs["intensity"][:, 0], 3.4)


def test_seeker_emotion_judge_reads_whole_dialogues():
    b = ScriptedBackend(replies=["Emotion: 70", "no number here"])
    judge = SeekerEmotionJudge(b)
    d = [Turn("seeker", "hi"), Turn("supporter", "hello"), Turn("seeker", "bad day"), Turn("supporter", "tell me"),
         Turn("seeker", "ok")]
    v = judge.judge([d, d])
    # start 40, two supporter turns: bound 20, so 70 is cut to 60; the unreadable one keeps 40
    assert v == pytest.approx([intensity_from_level(60), intensity_from_level(40)])
    assert (judge.unparsed, judge.total) == (1, 2)


def test_sage_env_passes_gymnasium_check_env_and_renders_the_level():
    import warnings

    from gymnasium.utils.env_checker import check_env

    def seeker(conv):
        return "Reason: ok.\nEmotion: +3" if "emotion level" in conv[0]["content"] else "Hm, maybe."

    import gymnasium as gym

    env = gym.make("esc_env/ESC-v0", backend=ScriptedBackend(replies=lambda conv: "What happened next?"),
                   seeker_backend=ScriptedBackend(replies=seeker), personas=[PERSONA], seeker_emotion="sage",
                   render_mode="ansi").unwrapped
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env)  # the render checks included
    env.reset(seed=1)
    env.step(0)
    assert "seeker's emotion level: 40 -> 43" in env.render()


def test_sage_env_on_the_embedded_model(backend):
    """End to end on the real model: whatever it writes, the level stays within SAGE's bounds and
    an unreadable output is reported, never guessed."""
    params = {"temperature": 0.0, "max_new_tokens": 12}
    env = ESCEnv(backend, seeker_emotion="sage", max_turns=2, seeker_params=params, supporter_params=params)
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(0)
    e = info["judges"]["emotion"]
    assert env.observation_space.contains(obs)
    assert 30.0 <= e["level"] <= 50.0 and e["change"] == pytest.approx(e["level"] - 40.0)
    assert (e["error"] is None) == e["parsed"]
    assert reward == pytest.approx(e["change"] / 100.0)
    assert set(info["usage"]) == {"supporter", "emotion", "seeker"}  # no affect judge call
