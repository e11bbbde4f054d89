"""EncodedObservation, the text encoders, Stable-Baselines3 compatibility and the PPO example."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import esc_env  # noqa: F401  (registers the ids)
from esc_env.stage import ESCStageEnv
from esc_env.wrappers import BackendEncoder, EncodedObservation, HashingEncoder, MiniLMEncoder, last_turns, make_encoder

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def minilm() -> MiniLMEncoder:
    return MiniLMEncoder()


def sb3_check(env):
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, warn=True)


# ---- encoders ------------------------------------------------------------------------------


def test_hashing_encoder_is_deterministic_normalised_and_discriminative():
    a, b = HashingEncoder(128), HashingEncoder(128)
    texts = ["I feel so alone with this.", "What could I try next week?", ""]
    va, vb = a.encode(texts), b.encode(texts)
    assert va.shape == (3, 128) and va.dtype == np.float32
    np.testing.assert_array_equal(va, vb)  # stable hash: same in every instance and process
    np.testing.assert_allclose(np.linalg.norm(va[:2], axis=1), 1.0, rtol=1e-6)
    assert not va[2].any()  # no words: the zero vector
    assert va[0] @ va[1] < 0.5
    assert va[0] @ a.encode(["I feel so alone with all this."])[0] > 0.7


def test_encoder_cache_is_lru_and_skips_unchanged_texts():
    enc = HashingEncoder(32, cache_size=2)
    enc.encode(["one", "two"])
    assert (enc.hits, enc.misses) == (0, 2)
    enc.encode(["one", "one"])
    assert (enc.hits, enc.misses) == (2, 2)
    enc.encode(["three"])  # evicts "two", the least recently used
    enc.encode(["one"])
    assert enc.hits == 3
    enc.encode(["two"])
    assert enc.misses == 4
    with pytest.raises(TypeError, match="sequence of texts"):
        enc.encode("one")


def test_minilm_encoder_offline_semantics(minilm):
    assert minilm.dim == 384
    v = minilm.encode(["I feel very sad and lonely today.", "I am unhappy and nobody is around.", "The train leaves at five pm."])
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2
    again = minilm.encode(["I feel very sad and lonely today."])
    np.testing.assert_array_equal(again[0], v[0])
    assert minilm.hits >= 1


def test_backend_encoder_on_the_embedded_model(backend):
    enc = BackendEncoder(backend)
    v = enc.encode(["I lost my job.", "I lost my job."])
    assert v.shape == (2, enc.dim) and enc.dim == backend.hidden_size
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert enc.misses == 1  # duplicates are encoded once


def test_backend_encoder_needs_embed():
    with pytest.raises(TypeError, match="has no embed"):
        BackendEncoder(object())
    with pytest.raises(ValueError, match="unknown encoder"):
        make_encoder("word2vec")
    assert make_encoder("hashing:64").dim == 64


def test_last_turns_keeps_multiline_utterances_whole():
    text = "Seeker: hi\nthere\nSupporter [Question]: how are you?\nSeeker: bad\nSupporter: oh"
    assert last_turns(text, 2) == "Seeker: bad\nSupporter: oh"
    assert last_turns(text, 3) == "Supporter [Question]: how are you?\nSeeker: bad\nSupporter: oh"
    assert last_turns(text, 4) == text and last_turns(text, None) == text and last_turns(text, 0) == ""


# ---- the wrapper -----------------------------------------------------------------------------


def test_encoded_observation_layout():
    env = EncodedObservation(ESCStageEnv(max_turns=10), HashingEncoder(16), last_k_turns=2)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == (16 + 3 + 8,) and env.observation_space.contains(obs)
    assert obs[env.turn_index] == 0.0
    assert obs[env.strategy_slice][-1] == 1.0 and obs[env.strategy_slice].sum() == 1.0  # "none yet"
    raw = env.unwrapped.observation
    assert obs[env.intensity_index] == pytest.approx((raw["intensity"][0] - 1) / 4)
    obs, *_ = env.step(5)
    assert obs[env.turn_index] == pytest.approx(0.1)
    assert obs[env.strategy_slice][5] == 1.0 and obs[env.strategy_slice].sum() == 1.0
    expected = env.encoder.encode([last_turns(env.unwrapped.observation["dialogue"], 2)])[0]
    np.testing.assert_array_equal(obs[env.embedding_slice], expected)
    with pytest.raises(ValueError, match="Dict observation space"):
        EncodedObservation(gym.make("CartPole-v1"))


def test_sb3_check_env_with_hashing_encoder():
    sb3_check(EncodedObservation(gym.make("esc_env/ESCStage-v0"), HashingEncoder(64)))
    sb3_check(EncodedObservation(ESCStageEnv(strategies="aflow"), "hashing"))


def test_sb3_check_env_with_minilm_encoder(minilm):
    env = EncodedObservation(gym.make("esc_env/ESCStage-v0"), minilm)
    sb3_check(env)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (384 + 3 + 8,) and env.observation_space.contains(obs)


# ---- PPO -----------------------------------------------------------------------------------


def test_short_ppo_learn_runs_and_acts():
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    vec = DummyVecEnv([lambda: EncodedObservation(ESCStageEnv(), HashingEncoder(32)) for _ in range(2)])
    model = PPO("MlpPolicy", vec, n_steps=64, batch_size=64, n_epochs=1, seed=0, device="cpu", verbose=0)
    model.learn(total_timesteps=256)
    assert model.num_timesteps >= 256
    obs = vec.reset()
    actions, _ = model.predict(obs, deterministic=True)
    assert actions.shape == (2,) and all(0 <= a < 8 for a in actions)


def test_train_example_runs_and_logs(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("train_ppo_sb3", REPO / "examples" / "train_ppo_sb3.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.main(["--total-timesteps", "512", "--num-envs", "2", "--n-steps", "64", "--batch-size", "64",
                    "--eval-episodes", "5", "--encoder", "hashing:32", "--log-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "PPO" in out and "random" in out and "optimum" in out
    assert set(res) == {"ppo", "random", "optimum"} and len(res["ppo"].returns) == 5
    assert list(tmp_path.glob("*/events.out.tfevents.*"))  # TensorBoard log under runs/<name>
    # every option has a help string
    parser = mod.build_parser()
    options = [a for a in parser._actions if a.dest != "help"]
    assert len(options) >= 20 and all(a.help for a in options)
    flags = {f for a in options for f in a.option_strings}
    assert {"--learning-rate", "--gamma", "--gae-lambda", "--clip-range", "--ent-coef", "--vf-coef", "--max-grad-norm",
            "--n-steps", "--batch-size", "--n-epochs", "--total-timesteps", "--env-id", "--eval-episodes"} <= flags


# ---- what SB3's checker accepts of the LLM envs ------------------------------------------------


def test_sb3_checker_cannot_take_text_observations(backend):
    """SB3 requires every observation to be a numpy array; the dialogue is a str.  Precisely: its
    check_env fails at the ``dialogue`` key of the first observation.  EncodedObservation is the
    documented way in (next test)."""
    from stable_baselines3.common.env_checker import check_env

    env = gym.make("esc_env/ESC-v0", backend=backend, max_turns=2)
    with pytest.raises(AssertionError, match="key=dialogue: The observation returned by `reset\\(\\)` method must be a numpy array"):
        check_env(env.unwrapped)


@pytest.mark.slow
def test_sb3_check_env_passes_on_the_encoded_default_llm_env():
    """ESC-v0 built with no options (embedded model, 10 turns), through the documented wrapper."""
    sb3_check(EncodedObservation(gym.make("esc_env/ESC-v0"), HashingEncoder(64)))


def test_sb3_algorithms_cannot_act_in_the_text_env(backend):
    """ESCText-v0's action is the utterance (a str); SB3's algorithms act only in Box, Discrete,
    MultiDiscrete and MultiBinary spaces, so no wrapper of the observation makes it an SB3 env (its
    check_env fails in the NaN check, on np.isnan of a str action).  Use ESC-v0, or a text learner
    (policies/rlff)."""
    from stable_baselines3 import PPO

    env = EncodedObservation(gym.make("esc_env/ESCText-v0", backend=backend, max_turns=2), HashingEncoder(16))
    with pytest.raises(AssertionError, match="action space"):
        PPO("MlpPolicy", env, device="cpu")
