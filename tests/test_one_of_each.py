"""Issue 15, "one of each": one text-encoder stack, one interval formula, one atomic-write
module and ``jsonable``, one definition of the intensity bounds, and a score path without
transformers' ``past_key_values`` deprecation."""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from esc_env import fileio
from esc_env.evaluation.metrics import mean_ci, proportion_ci, summarize_episodes


# ---- one confidence-interval formula ---------------------------------------------------------------
def test_mean_ci_is_the_student_t_interval_computed_by_hand():
    # x = 1, 2, 3, 4: mean 2.5, s^2 = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3, se = s / 2,
    # t_{0.975, 3} = 3.182446305284263 (tables), so the half-width is 3.1824463 * 0.6454972 = 2.0542603
    iv = mean_ci([1.0, 2.0, 3.0, 4.0])
    half = 3.182446305284263 * math.sqrt(5.0 / 3.0) / 2.0
    assert iv.value == 2.5 and iv.n == 4
    assert iv.low == pytest.approx(2.5 - half, abs=1e-9) and iv.high == pytest.approx(2.5 + half, abs=1e-9)
    assert half == pytest.approx(2.0542603, abs=1e-6)
    # wider than the normal approximation 1.96 * se that AFlow's harness used before
    assert half > 1.96 * math.sqrt(5.0 / 3.0) / 2.0 * 1.6


def test_proportion_ci_is_the_wilson_interval_computed_by_hand():
    # 8 of 10: z = 1.959964, centre = (0.8 + z^2/20) / (1 + z^2/10) = 0.716737,
    # half = z * sqrt(0.8 * 0.2 / 10 + z^2 / 400) / (1 + z^2/10) = 0.226577
    iv = proportion_ci([True] * 8 + [False] * 2)
    assert iv.value == 0.8
    assert iv.low == pytest.approx(0.490160, abs=1e-5) and iv.high == pytest.approx(0.943315, abs=1e-5)


def test_every_harness_gives_the_same_interval_for_the_same_returns():
    from benchmarks.reward_hacking import mean_ci as rh_mean_ci
    from policies.aflow.evaluate import EvalResult

    returns = np.array([0.5, -0.25, 1.0, 0.75, 0.0, 1.25])
    succ = np.array([1, 0, 1, 1, 0, 1], dtype=bool)
    ref = mean_ci(returns)
    rate = proportion_ci(succ)
    # policies.aflow.run_policy's result
    res = EvalResult("p", returns, succ, np.zeros(6, bool), np.full(6, 3)).as_dict()
    assert res["return_ci"] == [ref.low, ref.high]
    assert res["return_ci95"] == pytest.approx((ref.high - ref.low) / 2)
    assert res["success_ci"] == [rate.low, rate.high]
    # benchmarks/reward_hacking.py
    m, (lo, hi) = rh_mean_ci(returns)
    assert (m, lo, hi) == (ref.value, ref.low, ref.high)
    # esc-env evaluate's metrics
    episodes = [{"return": float(r), "length": 3, "success": bool(s), "gave_up": False, "intensities": [4.0, 3.0],
                 "strategies": ["Question"] * 3} for r, s in zip(returns, succ)]
    metrics = summarize_episodes(episodes, max_turns=5)
    assert (metrics["return"]["low"], metrics["return"]["high"]) == (ref.low, ref.high)
    assert (metrics["success_rate"]["low"], metrics["success_rate"]["high"]) == (rate.low, rate.high)


def test_aflow_mean_ci95_is_deprecated_and_uses_the_t_interval():
    from policies.aflow import mean_ci95

    with pytest.warns(DeprecationWarning, match="mean_ci"):
        m, half = mean_ci95(np.array([1.0, 2.0, 3.0, 4.0]))
    assert m == 2.5 and half == pytest.approx(3.182446305284263 * math.sqrt(5.0 / 3.0) / 2.0)


# ---- one atomic-write module -------------------------------------------------------------------------
def test_atomic_write_keeps_the_old_file_when_the_writer_raises(tmp_path: Path):
    path = tmp_path / "state.json"
    fileio.write_json_atomic(path, {"step": 1})

    def broken(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write('{"step": 2, "half')  # a partial write...
        raise RuntimeError("disk full")  # ...then the writer dies

    with pytest.raises(RuntimeError, match="disk full"):
        fileio.atomic_write(path, broken)
    assert json.loads(path.read_text()) == {"step": 1}
    assert os.listdir(tmp_path) == ["state.json"]  # no temporary file left behind
    # an object JSON cannot hold fails before anything is written
    with pytest.raises(TypeError, match="object"):
        fileio.write_json_atomic(path, {"step": object()})
    assert json.loads(path.read_text()) == {"step": 1}


def test_jsonl_helpers_round_trip_and_append(tmp_path: Path):
    path = tmp_path / "sub" / "r.jsonl"
    fileio.write_jsonl_atomic(path, [{"a": np.int64(1)}, {"a": float("nan")}])
    fileio.append_jsonl_atomic(path, [{"a": (1, 2)}])
    assert fileio.read_jsonl(path) == [{"a": 1}, {"a": None}, {"a": [1, 2]}]
    with pytest.raises(FileNotFoundError):
        fileio.read_jsonl(tmp_path / "missing.jsonl")
    assert fileio.read_jsonl(tmp_path / "missing.jsonl", missing_ok=True) == []
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"a": 1}\n{oops\n{"a": 2}\n')
    with pytest.raises(ValueError, match="line 2"):
        fileio.read_jsonl(bad)


def test_old_rlff_io_names_warn_and_still_work(tmp_path: Path):
    import policies.rlff.io as old

    with pytest.warns(DeprecationWarning, match="esc_env.fileio"):
        write = old.atomic_write_json
    write(tmp_path / "x.json", {"b": 1, "a": 2})
    assert (tmp_path / "x.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'  # indent 2, sorted, as before
    with pytest.warns(DeprecationWarning):
        assert old.read_jsonl(tmp_path / "none.jsonl") == []  # old contract: a missing file is empty
    with pytest.raises(AttributeError):
        old.no_such_name  # noqa: B018


# ---- one jsonable --------------------------------------------------------------------------------------
def test_jsonable_contract():
    from esc_env.evaluation import runs
    from policies.aflow import _io

    assert runs.jsonable is fileio.jsonable and _io.jsonable is fileio.jsonable
    x = {
        "i": np.int32(3), "f": np.float32(0.5), "arr": np.arange(3), "t": (1, "a"), "s": {2},
        "p": Path("a/b"), "nan": float("nan"), "inf": np.float64(-np.inf), "nested": [{"ok": True}],
        7: "int key", True: "bool key", None: "none key", 2.5: "float key",
    }
    out = fileio.jsonable(x)
    assert out == {
        "i": 3, "f": 0.5, "arr": [0, 1, 2], "t": [1, "a"], "s": [2], "p": "a/b", "nan": None, "inf": None,
        "nested": [{"ok": True}], "7": "int key", "true": "bool key", "null": "none key", "2.5": "float key",
    }
    assert type(out["i"]) is int and type(out["f"]) is float
    # the result is strict JSON and equals what reading the file back gives
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert fileio.jsonable(out) == out
    # dict keys as json.dumps writes them
    assert list(fileio.jsonable({7: 0, True: 0, None: 0, 0.5: 0})) == list(json.loads(json.dumps({7: 0, True: 0, None: 0, 0.5: 0})))
    with pytest.raises(TypeError, match="complex"):
        fileio.jsonable({"z": 1j})
    with pytest.raises(TypeError, match="key"):
        fileio.jsonable({(1, 2): 0})


# ---- the intensity bounds ---------------------------------------------------------------------------------
def test_intensity_bounds_are_defined_once():
    from agents import scales
    from agents.judges import affect, calibrated
    from esc_env import spaces

    assert (scales.INTENSITY_LOW, scales.INTENSITY_HIGH, scales.INTENSITY_NEUTRAL) == (1.0, 5.0, 3.0)
    assert spaces.INTENSITY_LOW is scales.INTENSITY_LOW and spaces.INTENSITY_HIGH is scales.INTENSITY_HIGH
    for mod in (affect, calibrated):
        assert (mod.MIN_LEVEL, mod.MAX_LEVEL, mod.NEUTRAL_LEVEL) == (1.0, 5.0, 3.0)
    box = spaces.observation_space(3, 4)["intensity"]
    assert float(box.low[0]) == scales.INTENSITY_LOW and float(box.high[0]) == scales.INTENSITY_HIGH


# ---- transformers: no past_key_values deprecation on the score path ---------------------------------------------
def test_score_emits_no_transformers_deprecation(backend):
    import transformers

    # transformers logs its output-attribute deprecation once per process: forget earlier ones
    transformers.utils.logging.warning_once.cache_clear()
    records: list[str] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Grab(level=logging.WARNING)
    logger = transformers.utils.logging.get_logger("transformers")
    logger.addHandler(handler)
    conv = [[{"role": "user", "content": "I failed my exam."}]] * 2
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            multi = backend.score(conv, [["That sounds hard.", "Whatever."]] * 2)  # the KV-cache path
            single = backend.score(conv, [["1", "5"]] * 2)
    finally:
        logger.removeHandler(handler)
    bad = [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert not bad, [str(w.message) for w in bad]
    assert not [r for r in records if "past_key_values" in r or "deprecat" in r.lower()], records
    assert multi.logprobs.shape == (2, 2) and np.isfinite(multi.logprobs).all()
    assert np.isfinite(single.logprobs).all()
    # the cached path agrees with scoring the whole candidate in one pass (no cache)
    tb = backend
    prompt = tb.render(conv[0])
    ids = tb.tokenizer(prompt + "That sounds hard.", return_tensors="pt", add_special_tokens=False)["input_ids"]
    n_prompt = len(tb.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    import torch

    with torch.inference_mode():
        logp = torch.log_softmax(tb.model(input_ids=ids.to(tb.device)).logits.float(), -1)[0]
    expected = sum(float(logp[t - 1, ids[0, t]]) for t in range(n_prompt, ids.shape[1]))
    assert multi.logprobs[0, 0] == pytest.approx(expected, abs=1e-3)


# ---- one text-encoder stack ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def short_minilm():
    from agents.text_encoding import MiniLMEncoder

    return MiniLMEncoder(max_length=16)


OLD = " ".join(f"word{i}" for i in range(40))  # far more than 16 tokens


def test_the_three_encoder_modules_share_one_stack():
    from agents import text_encoding as te
    from agents.judges import encoders as judge_encoders
    from esc_env import wrappers
    from policies.rlff import reward_model

    assert wrappers.MiniLMEncoder is te.MiniLMEncoder and judge_encoders.MiniLMEncoder is te.MiniLMEncoder
    assert wrappers.HashingEncoder is te.HashingEncoder and wrappers.BackendEncoder is te.BackendEncoder
    assert issubclass(judge_encoders.BackendEncoder, te.BackendEncoder)
    assert wrappers.TextEncoder is te.TextEncoder is judge_encoders.TextEncoder is reward_model.TextEncoder
    assert wrappers.last_turns is te.last_turns
    for name in ("MiniLMEncoder", "BackendEncoder", "CachedEncoder"):
        with pytest.warns(DeprecationWarning, match="agents.text_encoding"):
            getattr(reward_model, name)


def test_left_truncation_keeps_the_newest_text(short_minilm):
    enc = short_minilm
    assert enc.truncation_side == "left"
    # same newest words, different old beginnings: the beginnings are cut, the vectors are equal
    a, b = enc.encode([f"{OLD} Seeker: I feel alone tonight.", f"other {OLD} Seeker: I feel alone tonight."])
    np.testing.assert_allclose(a, b, atol=1e-6)
    # same old beginning, different newest words: the vectors differ
    c, d = enc.encode([f"{OLD} Seeker: I feel alone tonight.", f"{OLD} Seeker: I got the job, I am thrilled!"])
    assert float(c @ d) < 0.99


def test_backend_encoder_truncates_from_the_left(backend):
    from agents.text_encoding import BackendEncoder

    enc = BackendEncoder(backend, max_length=12)
    a, b, c = enc.encode([f"{OLD} I feel alone tonight.", f"zebra {OLD} I feel alone tonight.", f"{OLD} I won the lottery!"])
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert float(a @ c) < 0.999
    raw = __import__("agents.judges.encoders", fromlist=["BackendEncoder"]).BackendEncoder(backend)
    v = raw.encode(["I lost my job."])[0]
    assert abs(float(np.linalg.norm(v)) - 1.0) > 1e-3  # the judges' backend vectors stay raw (not normalised)


def test_reward_model_reads_the_newest_context_and_the_reply():
    """The pair text puts the reply last and is cut from the left: with a context much longer than
    the encoder's 256 tokens, the newest turn and the reply still change the features (the old
    layout, reply first and cut from the right, dropped the newest turns)."""
    from agents.dialogue import Turn
    from policies.rlff.reward_model import FutureRewardModel, pair_text

    long_old = [Turn("seeker" if i % 2 == 0 else "supporter", OLD) for i in range(5)]
    ctx_a = long_old + [Turn("seeker", "My dog died this morning.")]
    ctx_b = long_old + [Turn("seeker", "I passed my driving test!")]
    assert pair_text(ctx_a, "reply", 6).endswith("Supporter reply: reply")
    rm = FutureRewardModel("minilm")
    fa, fb = rm.features([ctx_a, ctx_b], ["I'm so sorry.", "I'm so sorry."])
    d = rm.encoder.dim
    assert not np.allclose(fa[:d], fb[:d], atol=1e-4)  # the newest turn is read
    f1, f2 = rm.features([ctx_a, ctx_a], ["I'm so sorry.", "Congratulations!"])
    assert not np.allclose(f1[:d], f2[:d], atol=1e-4)  # so is the reply


def test_reward_model_files_of_the_old_layout_load_with_it(tmp_path: Path):
    from safetensors import safe_open

    from agents.dialogue import Turn
    from policies.rlff.reward_model import FutureRewardModel, TrainConfig

    recs = [{"prefix_id": f"p{i}", "context": [Turn("seeker", f"I feel low {i}.").to_dict()], "candidate": c,
             "mean": y, "rewards": [y]}
            for i in range(4) for c, y in (("That sounds so hard.", 0.5), ("Whatever.", -0.5))]
    rm = FutureRewardModel("minilm", head="regression", hidden=8)
    rm.fit(recs, TrainConfig(epochs=2, eval_fraction=0.0))
    new = FutureRewardModel.load(rm.save(tmp_path / "new.safetensors"))
    assert not new.reply_first and new.encoder.truncation_side == "left"
    rm.reply_first = True  # what a model saved before left truncation looks like
    path = rm.save(tmp_path / "old.safetensors")
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["format"] == "esc_env.rlff.reward_model/1"
    old = FutureRewardModel.load(path)
    assert old.reply_first and old.encoder.truncation_side == "right"
    ctx = [[Turn("seeker", "I lost my job.")]]
    assert old.score(ctx, ["I'm sorry."]) == pytest.approx(rm.score(ctx, ["I'm sorry."]), abs=1e-6)


def test_aflow_sentence_encoder_is_the_shared_minilm():
    from agents.text_encoding import MiniLMEncoder
    from policies.aflow.model import SentenceEncoder

    enc = SentenceEncoder(max_length=16)
    assert isinstance(enc.encoder, MiniLMEncoder) and enc.encoder.truncation_side == "left"
    v = enc.encode([f"{OLD} I feel alone tonight.", f"zebra {OLD} I feel alone tonight."])
    assert v.shape == (2, 384) and not any(p.requires_grad for p in enc.parameters())
    assert float((v[0] - v[1]).abs().max()) < 1e-5  # only the (cut) beginnings differ


def test_score_through_a_peft_model_emits_no_transformers_deprecation(backend):
    """RLFF scores strategy names through its LoRA-wrapped policy model (a peft model whose
    forward takes ``**kwargs``): the cache argument is named after the base model's."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from agents.backends.transformers_backend import TransformersBackend

    base = AutoModelForCausalLM.from_pretrained(backend.model_path, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    tb = TransformersBackend(backend.model_path, device="cpu", model=model, tokenizer=backend.tokenizer)
    assert tb._cache_kwarg == "cache"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lp = tb.score([[{"role": "user", "content": "I failed my exam."}]], [[" Question", " Reflection of feelings"]]).logprobs
    bad = [w for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert not bad, [str(w.message) for w in bad]
    # LoRA starts at zero: the wrapped model scores exactly like the plain one
    np.testing.assert_allclose(lp, backend.score([[{"role": "user", "content": "I failed my exam."}]],
                                                 [[" Question", " Reflection of feelings"]]).logprobs, atol=1e-3)


# --------------------------------------------------------------------------- one plain episode loop
def test_one_plain_episode_loop_behind_the_stage_reference_aflow_and_sb3_evaluations():
    """The stage reference, AFlow's ``run_policy`` and the SB3 trainer's ``evaluate`` all play
    through :func:`esc_env.evaluation.loop.play_episodes`: the same fixed policy on the same
    seeds gives the same returns everywhere, equal to a loop written out here."""
    import gymnasium as gym

    from esc_env.evaluation.loop import play_episodes
    from esc_env.stage import run_episodes
    from policies.aflow import run_policy
    from policies.sb3.train import evaluate

    env = gym.make("esc_env/ESCStage-v0")
    by_hand = []
    for i in range(6):
        env.reset(seed=10 + i)
        total, done = 0.0, False
        while not done:
            _, r, term, trunc, _ = env.step(2)
            total += r
            done = term or trunc
        by_hand.append(total)
    seen = []
    st = play_episodes(env, lambda obs, s: seen.append(s.turn) or 2, 6, seed=10)
    np.testing.assert_allclose(st.returns, by_hand)
    assert seen[0] == 0 and set(seen) <= set(range(11))  # the episode state before each action
    np.testing.assert_allclose(run_episodes(env.unwrapped, lambda o, s: 2, 6, seed=10).returns, by_hand)
    np.testing.assert_allclose(run_policy(env, lambda o: 2, 6, seed=10).returns, by_hand)
    np.testing.assert_allclose(evaluate(env, lambda o: 2, 6, 10).returns, by_hand)
    with pytest.raises(ValueError, match="n_episodes"):
        play_episodes(env, lambda o, s: 2, 0)
