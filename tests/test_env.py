"""ESCEnv, ESCVectorEnv, registration, snapshots and episode recording, on the embedded model."""

from __future__ import annotations

import json
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import esc_env
from esc_env.core import EpisodeOverError
from esc_env.env import ESCEnv
from esc_env.recording import RecordEpisodes, read_episodes
from esc_env.rewards import RewardConfig
from esc_env.vector import ESCVectorEnv

GREEDY = {"temperature": 0.0, "max_new_tokens": 16}
INFO_KEYS = {"strategy", "supporter_utterance", "seeker_utterance", "intensity", "success", "gave_up", "turn",
             "persona_id", "judges", "reward_terms", "usage"}
assert INFO_KEYS == esc_env.core.INFO_KEYS  # the TypedDict StepInfo is the one description of them


def llm_calls_per_step(env) -> int:
    """Backend calls of one batched step: supporter and seeker, plus the affect judge when it is
    the prompted one (the default calibrated judge runs its own small encoder instead)."""
    return 2 + int(getattr(env.unwrapped.engine.affect_judge, "backend", None) is not None)


def judge_passes(env) -> int:
    """Forward passes of the calibrated judge's encoder so far (0 for a prompted judge)."""
    enc = getattr(env.unwrapped.engine.affect_judge, "encoder", None)
    return enc.stats.forward_passes if enc is not None else 0


def make(backend, **kw):
    kw.setdefault("max_turns", 2)
    kw.setdefault("seeker_params", GREEDY)
    kw.setdefault("supporter_params", GREEDY)
    return ESCEnv(backend, **kw)


def test_reset_step_info_and_spaces(backend):
    env = make(backend)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs)
    assert obs["turn"] == 0 and obs["last_strategy"] == len(env.strategies)
    assert obs["dialogue"].startswith("Seeker: ")
    obs, reward, terminated, truncated, info = env.step(2)
    assert env.observation_space.contains(obs)
    assert INFO_KEYS <= set(info)
    assert info["strategy"] == env.strategies[2].name
    assert info["turn"] == 1 and obs["turn"] == 1 and obs["last_strategy"] == 2
    assert 1.0 <= info["intensity"]["after"] <= 5.0
    assert reward == pytest.approx(sum(info["reward_terms"].values()))
    assert info["reward_terms"]["improvement"] == pytest.approx((info["intensity"]["before"] - info["intensity"]["after"]) / 4)
    assert set(info["usage"]) >= {"supporter", "seeker", "judge"}
    assert info["usage"]["seeker"]["completion_tokens"] > 0


def test_episode_ends_and_step_after_end_raises(backend):
    env = make(backend, max_turns=1)
    env.reset(seed=0)
    _, _, terminated, truncated, _ = env.step(0)
    assert terminated or truncated
    with pytest.raises(EpisodeOverError):
        env.step(0)


@pytest.mark.parametrize("bad", [-1, 8, 2.5, "Question", True, None])
def test_invalid_strategy_actions_name_the_action(backend, bad):
    env = make(backend)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="invalid action"):
        env.step(bad)


def test_text_mode_validation(backend):
    env = make(backend, action_mode="text")
    env.reset(seed=0)
    for bad, msg in [("", "must not be empty"), ("   ", "must not be empty"), ("x" * 1001, "limited to 1000"), (3, "as a str")]:
        with pytest.raises(ValueError, match=msg):
            env.step(bad)
    obs, r, term, trunc, info = env.step("That sounds really hard. What happened? 😔")
    assert info["supporter_utterance"].endswith("😔") and info["strategy"] is None
    assert env.observation_space.contains(obs)


def test_strategy_plus_text_mode(backend):
    env = make(backend, action_mode="strategy+text", strategies="aflow")
    env.reset(seed=0)
    obs, r, term, trunc, info = env.step({"strategy": 2, "utterance": "Your feelings make sense."})
    assert info["strategy"] == "Emotional Validation"
    assert info["supporter_utterance"] == "Your feelings make sense."
    with pytest.raises(ValueError, match="strategy\\+text"):
        env.step("just text")


def gym_check(env) -> None:
    """Gymnasium's own checker on the raw env, every warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)


def test_registered_ids_pass_check_env(backend):
    for env_id in ("esc_env/ESC-v0", "esc_env/ESCText-v0"):  # no timings option: the default info repeats exactly
        gym_check(gym.make(env_id, backend=backend, max_turns=2, seeker_params=GREEDY, supporter_params=GREEDY))


@pytest.mark.slow
@pytest.mark.parametrize("env_id", sorted(i for i in gym.registry if i.startswith("esc_env/")))
def test_every_registered_id_passes_check_env_with_no_options(env_id):
    """Built exactly as a newcomer would: no options at all (the embedded model, sampling, 10 turns);
    the render checks included."""
    env = gym.make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped)


def test_seconds_only_on_request(backend):
    env = make(backend)
    env.reset(seed=0)
    info = env.step(0)[4]
    assert all("seconds" not in u and "completion_tokens" in u for u in info["usage"].values())
    assert set(env.unwrapped.engine.last_seconds) >= {"supporter", "seeker", "judge"}
    assert all(s > 0 for s in env.unwrapped.engine.last_seconds.values())
    env = make(backend, timings=True)
    env.reset(seed=0)
    assert env.step(0)[4]["usage"]["seeker"]["seconds"] > 0


def test_greedy_reproducible_and_snapshot_restores_exactly(backend):
    env = make(backend, max_turns=3)
    env.reset(seed=11)
    env.step(1)
    snap = json.loads(json.dumps(env.unwrapped.get_state()))  # JSON-serialisable
    a = env.step(4)
    b = env.step(0)
    env.set_state(snap)
    assert env.step(4)[4]["seeker_utterance"] == a[4]["seeker_utterance"]
    assert env.step(0)[1] == b[1]



def test_sampling_same_seed_same_transcript(backend):
    params = {"temperature": 0.9, "max_new_tokens": 16}
    runs = []
    for _ in range(2):
        env = make(backend, seeker_params=params, supporter_params=params)
        env.reset(seed=5)
        runs.append(env.step(3)[4]["seeker_utterance"])
    assert runs[0] == runs[1]


def test_transition_is_pure_and_batched(backend):
    env = make(backend, max_turns=3)
    env.reset(seed=2)
    state = env.get_state()
    calls, passes = backend.usage.calls, judge_passes(env)
    out = env.transition([state, state, state], [0, 1, 2])
    assert backend.usage.calls - calls == llm_calls_per_step(env)  # one call per role for 3 branches
    assert judge_passes(env) - passes <= 1
    assert env.get_state() == state
    assert [t.info["strategy"] for t in out] == [env.strategies[i].name for i in range(3)]
    again = env.transition([state], [1])[0]
    assert again.info["seeker_utterance"] == out[1].info["seeker_utterance"]


def test_persona_options(backend):
    env = make(backend)
    pid = env.personas[3].id
    _, info = env.reset(seed=0, options={"persona_id": pid})
    assert info["persona_id"] == pid
    with pytest.raises(KeyError):
        env.reset(options={"persona_id": "no-such-persona"})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"persona_name": pid})


def test_custom_reward_function_and_config(backend):
    seen = []

    def reward(info):
        seen.append(info)
        return 42.0

    env = make(backend, reward=reward)
    env.reset(seed=0)
    assert env.step(0)[1] == 42.0 and "reward_terms" in seen[0]
    env = make(backend, reward={"improvement_weight": 0.0, "turn_cost": 0.25})
    env.reset(seed=0)
    r, info = env.step(0)[1::3]
    assert info["reward_terms"]["improvement"] == 0.0
    assert r == pytest.approx(-0.25 + info["reward_terms"]["success"] + info["reward_terms"]["give_up"])
    with pytest.raises(ValueError, match="unknown reward option"):
        make(backend, reward={"bonus": 1})


def test_constructor_errors(backend):
    with pytest.raises(ValueError, match="action_mode"):
        make(backend, action_mode="words")
    with pytest.raises(ValueError, match="max_turns"):
        make(backend, max_turns=0)
    with pytest.raises(ValueError, match="unknown judge"):
        make(backend, judges=("affect", "vibes"))
    with pytest.raises(ValueError, match="strategy set"):
        make(backend, strategies="nope")
    for bad in ("x", 0.5, 6, True):
        with pytest.raises(ValueError, match="success_threshold"):
            make(backend, success_threshold=bad)


def test_render_ansi(backend):
    env = make(backend, render_mode="ansi")
    env.reset(seed=0)
    env.step(0)
    text = env.render()
    assert "Supporter [Question]:" in text and "intensity:" in text


def test_vector_env_matches_single_envs_under_greedy(backend):
    n = 3
    venv = esc_env.make_vec(n, backend=backend, max_turns=2, seeker_params=GREEDY, supporter_params=GREEDY)
    assert isinstance(venv.unwrapped, ESCVectorEnv)
    obs, _ = venv.reset(seed=100)
    actions = np.array([0, 3, 5])
    calls, passes = backend.usage.calls, judge_passes(venv)
    obs, rew, term, trunc, infos = venv.step(actions)
    assert backend.usage.calls - calls == llm_calls_per_step(venv)  # one call per role for all sub-envs
    assert judge_passes(venv) - passes <= 1
    for i in range(n):
        env = make(backend)
        o, _ = env.reset(seed=100 + i)
        o, r, *_ , info = env.step(int(actions[i]))
        assert obs["dialogue"][i] == o["dialogue"]
        assert rew[i] == pytest.approx(r, abs=1e-4)  # the judge sees padded batches: float noise only
    assert venv.observation_space.contains(obs)


def test_vector_env_autoreset_next_step(backend):
    venv = ESCVectorEnv(2, backend, max_turns=1, seeker_params=GREEDY, supporter_params=GREEDY)
    venv.reset(seed=0)
    _, _, term, trunc, _ = venv.step(np.array([0, 1]))
    assert np.all(term | trunc)
    obs, rew, term, trunc, infos = venv.step(np.array([0, 1]))  # the autoreset step
    assert np.all(rew == 0) and not np.any(term | trunc)
    assert np.all(obs["turn"] == 0)


def test_record_episodes_appends_whole_lines(backend, tmp_path):
    path = tmp_path / "episodes.jsonl"
    env = RecordEpisodes(make(backend, max_turns=1), path)
    for seed in (0, 1):
        env.reset(seed=seed)
        env.step(0)
    recs = list(read_episodes(path))
    assert len(recs) == 2 and recs[0]["length"] == 1
    assert recs[0]["episode"]["turns"][0]["speaker"] == "seeker"
    with open(path, "a") as f:
        f.write('{"torn": ')
    with pytest.warns(UserWarning, match="torn"):
        assert len(list(read_episodes(path))) == 2


def test_reward_config_rejects_nan():
    with pytest.raises(ValueError, match="turn_cost"):
        RewardConfig(turn_cost=float("nan"))
