"""The backend protocol on the embedded model (TransformersBackend), make_backend, vLLM's import error.

Every test uses the session ``backend`` fixture (tests/conftest.py): no model is loaded here.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from agents.backends import GenerationParams, ScoreResult, make_backend
from agents.backends.base import LLMBackend

CONV_A = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
CONV_B = [
    {"role": "system", "content": "You are a kind listener."},
    {"role": "user", "content": "I failed my driving test today and I feel stupid."},
]
CONV_C = [
    {"role": "user", "content": "Hi."},
    {"role": "assistant", "content": "Hello! How are you?"},
    {"role": "user", "content": "Tell me a short story about a cat."},
]
GREEDY = GenerationParams(max_new_tokens=12)


# ---- generate ---------------------------------------------------------------------------
def test_greedy_is_deterministic(backend):
    a = backend.generate([CONV_A, CONV_B], GREEDY)
    b = backend.generate([CONV_A, CONV_B], GREEDY)
    assert [c.text for c in a] == [c.text for c in b]
    assert all(c.text.strip() for c in a)
    assert "Paris" in a[0].text


def test_batch_equals_single_under_greedy(backend):
    batch = backend.generate([CONV_A, CONV_B, CONV_C], GREEDY)
    singles = [backend.generate([c], GREEDY)[0] for c in (CONV_A, CONV_B, CONV_C)]
    assert [c.text for c in batch] == [c.text for c in singles]
    assert [c.completion_tokens for c in batch] == [c.completion_tokens for c in singles]
    # prompt_tokens counts the real prompt, not the left padding of the batch
    assert [c.prompt_tokens for c in batch] == [c.prompt_tokens for c in singles]
    expected = len(backend.tokenizer(backend.render(CONV_A), add_special_tokens=False)["input_ids"])
    assert batch[0].prompt_tokens == expected


def test_small_max_batch_size_gives_same_result(backend):
    old = backend.max_batch_size
    try:
        backend.max_batch_size = 1
        split = backend.generate([CONV_A, CONV_B, CONV_C], GREEDY)
    finally:
        backend.max_batch_size = old
    whole = backend.generate([CONV_A, CONV_B, CONV_C], GREEDY)
    assert [c.text for c in split] == [c.text for c in whole]


def test_stop_string_cuts_the_text(backend):
    full = backend.generate([CONV_C], GenerationParams(max_new_tokens=24))[0].text
    words = full.split()
    assert len(words) >= 4, full
    stop = " " + words[2]
    out = backend.generate([CONV_C], GenerationParams(max_new_tokens=24, stop=(stop,)))[0]
    assert out.text == full[: full.index(stop)]
    assert stop not in out.text
    assert out.finish_reason == "stop"
    # the model stopped early: fewer tokens than without the stop string
    assert out.completion_tokens < backend.generate([CONV_C], GenerationParams(max_new_tokens=24))[0].completion_tokens


def test_finish_reason_length(backend):
    out = backend.generate([CONV_C], GenerationParams(max_new_tokens=3))[0]
    assert out.finish_reason == "length"
    assert out.completion_tokens == 3
    short = backend.generate([CONV_A], GenerationParams(max_new_tokens=40))[0]
    assert short.finish_reason == "stop" and short.completion_tokens < 40


def test_seeded_sampling_is_reproducible(backend):
    p = GenerationParams(max_new_tokens=10, temperature=1.0, seed=123)
    a = backend.generate([CONV_B, CONV_C], p)
    b = backend.generate([CONV_B, CONV_C], p)
    assert [c.text for c in a] == [c.text for c in b]
    others = {backend.generate([CONV_B], p.replace(seed=s))[0].text for s in (1, 2, 3)}
    assert len(others | {a[0].text}) > 1, "different seeds should give different samples"


def test_sampling_does_not_disturb_global_rng(backend):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    backend.generate([CONV_A], GenerationParams(max_new_tokens=4, temperature=1.0, seed=5))
    assert torch.equal(torch.rand(3), expected)


def test_n_greater_than_one_is_conversation_major(backend):
    out = backend.generate([CONV_A, CONV_C], GREEDY.replace(n=3))
    assert len(out) == 6
    ref = backend.generate([CONV_A, CONV_C], GREEDY)
    assert [c.text for c in out[:3]] == [ref[0].text] * 3
    assert [c.text for c in out[3:]] == [ref[1].text] * 3
    sampled = backend.generate([CONV_A, CONV_C], GenerationParams(max_new_tokens=8, temperature=1.0, seed=9, n=4))
    assert len(sampled) == 8
    assert len({c.text for c in sampled[:4]}) > 1, "n samples of one conversation should differ"


def test_usage_is_accounted(backend):
    before = backend.usage.as_dict()
    out = backend.generate([CONV_A, CONV_B], GenerationParams(max_new_tokens=5))
    after = backend.usage
    assert after.calls == before["calls"] + 1
    assert after.completion_tokens - before["completion_tokens"] == sum(c.completion_tokens for c in out)
    assert after.prompt_tokens - before["prompt_tokens"] == sum(c.prompt_tokens for c in out)


# ---- score ------------------------------------------------------------------------------
def brute_force_logprob(backend, conversation, candidate: str, prefix: str = "") -> float:
    """log p(candidate | prompt) from ONE full forward pass over prompt+candidate, no padding."""
    tok = backend.tokenizer
    prompt = tok(backend.render(conversation, prefix), add_special_tokens=False)["input_ids"]
    cand = tok(candidate, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + cand])
    with torch.inference_mode():
        logits = backend.model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)
    return float(sum(logp[len(prompt) - 1 + t, c] for t, c in enumerate(cand)))


def test_score_shape_and_values(backend):
    res = backend.score([CONV_A, CONV_B, CONV_C], ["Paris", "London", "I"])
    assert isinstance(res, ScoreResult) and res.method == "exact"
    assert res.logprobs.shape == (3, 3)
    assert np.all(np.isfinite(res.logprobs)) and np.all(res.logprobs <= 0)
    p = res.normalized()
    assert np.allclose(p.sum(1), 1.0)


def test_single_token_scores_match_brute_force(backend):
    cands = ["Paris", "The", "I"]
    for c in cands:
        assert len(backend.tokenizer(c, add_special_tokens=False)["input_ids"]) == 1
    convs = [CONV_A, CONV_B, CONV_C]  # different lengths: left padding is exercised
    res = backend.score(convs, cands)
    expected = np.array([[brute_force_logprob(backend, cv, c) for c in cands] for cv in convs])
    np.testing.assert_allclose(res.logprobs, expected, atol=2e-3)


def test_multi_token_scores_match_brute_force(backend):
    """The KV-cache path (_score_multi) against a full forward pass per candidate."""
    cands = ["Paris", "I am so sorry to hear that", "Once upon a time"]
    lengths = [len(backend.tokenizer(c, add_special_tokens=False)["input_ids"]) for c in cands]
    assert lengths[0] == 1 and min(lengths[1:]) > 3
    convs = [CONV_A, CONV_B, CONV_C]
    res = backend.score(convs, cands, assistant_prefix="Reply: ")
    expected = np.array([[brute_force_logprob(backend, cv, c, "Reply: ") for c in cands] for cv in convs])
    np.testing.assert_allclose(res.logprobs, expected, atol=5e-3)
    # a multi-token candidate is the sum of its single-token steps, so it is far below 0
    assert np.all(res.logprobs[:, 1] < -1.0)


def test_multi_token_path_agrees_with_single_token_path(backend):
    only_single = backend.score([CONV_A, CONV_C], ["Paris", "The"]).logprobs
    mixed = backend.score([CONV_A, CONV_C], ["Paris", "The", "Once upon a time"]).logprobs
    np.testing.assert_allclose(mixed[:, :2], only_single, atol=2e-3)


def test_score_per_conversation_candidates(backend):
    res = backend.score([CONV_A, CONV_C], [["Paris", "London"], ["Once", "Paris"]])
    assert res.logprobs.shape == (2, 2)
    single = backend.score([CONV_C], ["Once", "Paris"]).logprobs[0]
    np.testing.assert_allclose(res.logprobs[1], single, atol=2e-3)


def test_score_prefers_the_likely_answer(backend):
    res = backend.score([CONV_A], ["Paris", "Banana"], assistant_prefix="The capital of France is ")
    assert res.logprobs[0, 0] > res.logprobs[0, 1] + 2.0


# ---- validation -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "convs, match",
    [
        ([[{"role": "robot", "content": "hi"}]], "role must be one of"),
        ([[]], "non-empty list of messages"),
        ([[{"role": "user"}]], "expected a dict with 'role' and 'content'"),
        ([[{"role": "user", "content": 3}]], "content must be str"),
        (["just a string"], "non-empty list of messages"),
    ],
)
def test_generate_rejects_bad_conversations(backend, convs, match):
    with pytest.raises(ValueError, match=match):
        backend.generate(convs, GREEDY)
    with pytest.raises(ValueError, match=match):
        backend.score(convs, ["a"])


def test_conversations_must_be_a_list(backend):
    with pytest.raises(TypeError, match="list of conversations"):
        backend.generate("hello")


def test_score_rejects_bad_candidates(backend):
    with pytest.raises(ValueError, match="same number of candidates"):
        backend.score([CONV_A, CONV_B], [["a", "b"], ["c"]])
    with pytest.raises(ValueError, match="2 candidate lists for 3 conversations"):
        backend.score([CONV_A, CONV_B, CONV_C], [["a"], ["b"]])
    with pytest.raises(ValueError, match="non-empty string"):
        backend.score([CONV_A], ["a", ""])
    with pytest.raises(ValueError, match="must not be empty"):
        backend.score([CONV_A], [[]])
    with pytest.raises(TypeError, match="not a string"):
        backend.score([CONV_A], "Paris")


def test_empty_batch(backend):
    assert backend.generate([], GREEDY) == []


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(n=0), "n must be"),
    ],
)
def test_generation_params_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GenerationParams(**kwargs)


# ---- make_backend -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec, exc, match",
    [
        ("", ValueError, "non-empty string"),
        (123, ValueError, "non-empty string"),
        ("gpt4", ValueError, "unknown backend spec"),
        ("hf:", ValueError, "unknown backend spec"),
        ("openai:http://127.0.0.1:8000/v1", ValueError, "name the served model after '#'"),
        ("openai:#model", ValueError, "at least one base URL"),
        ("openai:127.0.0.1:8000/v1#m", ValueError, "must start with http"),
        ("hf:/no/such/model/folder", FileNotFoundError, "does not exist"),
    ],
)
def test_make_backend_rejects_bad_specs(spec, exc, match):
    with pytest.raises(exc, match=match):
        make_backend(spec)


def test_make_backend_passes_backends_through(backend):
    assert make_backend(backend) is backend
    assert isinstance(backend, LLMBackend)


def test_make_backend_openai_spec_parses_urls():
    b = make_backend("openai:http://127.0.0.1:9/v1,http://127.0.0.1:10/v1/#my-model", api_key="sk-secret-123")
    try:
        assert b.base_urls == ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"]
        assert b.model == "my-model"
        assert "sk-secret-123" not in repr(b) and "sk-secret-123" not in b.name
    finally:
        b.close()


# ---- vLLM: the missing-package error (vLLM itself runs in tests/test_vllm_*.py, marked `vllm`) ----
@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed; the missing-package error cannot occur")
def test_vllm_missing_names_the_extra():
    with pytest.raises(ImportError, match=r"pip install 'esc-env\[vllm\]'"):
        make_backend("vllm:Qwen/Qwen2.5-0.5B-Instruct")
    from agents.backends import VLLMBackend

    with pytest.raises(ImportError, match=r"esc-env\[vllm\]"):
        VLLMBackend("some/model")


def test_vllm_spec_reaches_the_backend_with_the_model_name(monkeypatch):
    """make_backend('vllm:MODEL') builds VLLMBackend(MODEL, **kwargs); the model string is kept whole."""
    import agents.backends.vllm_backend as vb

    seen = {}

    class Recorder(vb.VLLMBackend):
        def __init__(self, model, **kw):  # records the arguments instead of loading vLLM
            seen["model"], seen["kw"] = model, kw

    monkeypatch.setattr(vb, "VLLMBackend", Recorder)
    make_backend("vllm:org/Model-7B:rev", dtype="bfloat16")
    assert seen == {"model": "org/Model-7B:rev", "kw": {"dtype": "bfloat16"}}
    with pytest.raises(ValueError, match="unknown backend spec"):
        make_backend("vllm:")


# ---- repetition controls ------------------------------------------------------------------
LOOP = [{"role": "user", "content": "Say 'thank you so much' over and over."}]


def test_repetition_controls_mapping():
    from agents.backends.transformers_backend import repetition_controls

    assert repetition_controls(GenerationParams()) == {}
    # no_repeat_ngram_size is ours (ReplyNoRepeatNGram, reply only), not transformers' option
    assert repetition_controls(GenerationParams(repetition_penalty=1.3, no_repeat_ngram_size=4)) == {
        "repetition_penalty": 1.3,
    }


def test_reply_no_repeat_ngram_by_hand():
    from agents.backends.transformers_backend import ReplyNoRepeatNGram

    # prompt = the first 3 columns: 1 2 3 there does not count
    # row 0 reply: 1 2 3 1 2 -> the 3-gram (1 2 3) would repeat: ban 3
    # row 1 reply: 1 2 4 5 1 -> with n=3, the last 2 tokens (5 1) never occurred: nothing banned
    input_ids = torch.tensor([[1, 2, 3, 1, 2, 3, 1, 2], [1, 2, 3, 1, 2, 4, 5, 1]])
    out = ReplyNoRepeatNGram(3, 3)(input_ids, torch.zeros(2, 8))
    assert torch.isinf(out).nonzero().tolist() == [[0, 3]]
    # n = 2, row 1: after "1" came "2" earlier in the reply: ban 2 (prompt's "1 2" alone would not)
    out = ReplyNoRepeatNGram(3, 2)(input_ids, torch.zeros(2, 8))
    assert torch.isinf(out).nonzero().tolist() == [[0, 3], [1, 2]]
    # transformers' own processor also bans what the prompt holds: the difference we want
    prompt_only = torch.tensor([[7, 8, 9, 7, 8]])  # prompt 7 8 9 7, reply: 8
    assert not torch.isinf(ReplyNoRepeatNGram(4, 2)(prompt_only, torch.zeros(1, 10))).any()
    with pytest.raises(ValueError, match="n must be >= 1"):
        ReplyNoRepeatNGram(3, 0)


def test_temperature_top_p_matches_transformers():
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    from agents.backends.transformers_backend import TemperatureTopP

    g = torch.Generator().manual_seed(0)
    for scale in (3.0, 8.0, 0.3):  # 0.3: a flat distribution, nucleus wider than k (the full-sort path)
        scores = torch.randn(4, 5000, generator=g) * scale
        ref = TopPLogitsWarper(0.9)(None, TemperatureLogitsWarper(0.7)(None, scores.clone()))
        new = TemperatureTopP(0.7, 0.9, k=64)(None, scores.clone())
        kept_ref, kept_new = ~torch.isinf(ref), ~torch.isinf(new)
        assert (kept_ref != kept_new).sum() <= 1  # at most a boundary token, from rounding
        torch.testing.assert_close(new[kept_ref & kept_new], ref[kept_ref & kept_new])
    # hand case: probabilities 0.5, 0.3, 0.2 -> top_p 0.7 keeps the first two
    scores = torch.log(torch.tensor([[0.2, 0.5, 0.3]]))
    out = TemperatureTopP(1.0, 0.7, k=2)(None, scores)
    assert torch.isinf(out).tolist() == [[True, False, False]]
    out = TemperatureTopP(1.0, 0.7, k=1)(None, scores)  # top-1 holds 0.5 < 0.7: exact fallback
    assert torch.isinf(out).tolist() == [[True, False, False]]


def test_stop_on_text_or_words(backend):
    from agents.backends.transformers_backend import StopOnTextOrWords

    tok = backend.tokenizer
    prompt = tok("a b c", add_special_tokens=False, return_tensors="pt")["input_ids"]
    rows = ["one two three four", "one two\nSeeker: x", "one two"]
    ids = [tok(r, add_special_tokens=False)["input_ids"] for r in rows]
    width = max(map(len, ids))
    pad = tok.pad_token_id
    batch = torch.tensor([[pad] * (width - len(i)) + i for i in ids])  # left-padded replies (pad decodes to "")
    full = torch.cat([prompt.repeat(3, 1), batch], dim=1)
    crit = StopOnTextOrWords(tok, prompt.shape[1], stop=("\nSeeker:",), max_words=3)
    assert crit(full, None).tolist() == [True, True, False]


def test_max_words_stops_generation_early(backend):
    conv = [{"role": "user", "content": "Tell me a long story about a dog."}]
    long = backend.generate([conv], GenerationParams(max_new_tokens=40))[0]
    short = backend.generate([conv], GenerationParams(max_new_tokens=40, max_words=5))[0]
    assert long.completion_tokens == 40 and len(long.text.split()) > 6, long
    assert len(short.text.split()) == 6 and short.completion_tokens < 40  # stopped at the 6th word's start
    assert long.text.startswith(short.text.rsplit(" ", 1)[0])
    with pytest.raises(ValueError, match="max_words"):
        GenerationParams(max_words=0)


def test_openai_penalties_by_hand():
    from agents.backends.transformers_backend import OpenAIPenalties

    # prompt = the first 2 columns (token 3 twice: not counted); generated: 5, 5, 7
    input_ids = torch.tensor([[3, 3, 5, 5, 7], [3, 3, 1, 2, 3]])
    scores = torch.zeros(2, 8)
    out = OpenAIPenalties(2, frequency_penalty=0.5, presence_penalty=1.0)(input_ids, scores)
    expected = torch.zeros(2, 8)
    expected[0, 5] = -(0.5 * 2 + 1.0)
    expected[0, 7] = -(0.5 * 1 + 1.0)
    expected[1, 1] = expected[1, 2] = expected[1, 3] = -1.5  # token 3 once in the reply
    torch.testing.assert_close(out, expected)
    assert OpenAIPenalties(5, 2.0, 2.0)(input_ids, scores).abs().sum() == 0  # nothing generated yet


@pytest.fixture(scope="module")
def loop_reply(backend) -> str:
    """Greedy SmolLM2 without repetition controls: it loops on :data:`LOOP`."""
    return backend.generate([LOOP], GenerationParams(max_new_tokens=24))[0].text


@pytest.mark.parametrize(
    "controls",
    [{"no_repeat_ngram_size": 3}, {"repetition_penalty": 2.0}, {"frequency_penalty": 2.0}],
    ids=["no_repeat_ngram_size", "repetition_penalty", "frequency_penalty"],
)
def test_repetition_controls_stop_a_real_loop(backend, loop_reply, controls):
    from esc_env.evaluation.dialogue_quality import repeated_trigram_share

    plain = loop_reply
    assert repeated_trigram_share(plain) > 0.3, plain
    controlled = backend.generate([LOOP], GenerationParams(max_new_tokens=24, **controls))[0].text
    assert controlled != plain
    assert repeated_trigram_share(controlled) < 0.1, controlled
