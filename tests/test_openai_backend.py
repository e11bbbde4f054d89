"""OpenAICompatibleBackend and LangChainBackend against a REAL llama.cpp server on 127.0.0.1.

The server (tests/llama_server.py) serves the embedded SmolLM2 GGUF; the embedded
TransformersBackend (session fixture ``backend``) serves the same weights dequantized, so
its exact scores are a reference for the server's first-token scores.  Retries on HTTP
errors go through :class:`FaultyProxy`, a real reverse proxy that fails the first requests.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

from agents.backends import GenerationParams, make_backend
from agents.backends.openai_backend import (
    BackendRequestError,
    NoLogprobsError,
    OpenAICompatibleBackend,
    first_token_logprobs,
)
from llama_server import MODEL_ALIAS, FaultyProxy, free_port, llama_server  # noqa: F401  (fixture)

server = pytest.mark.server

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
SHORT = GenerationParams(max_new_tokens=8)


@pytest.fixture(scope="module")
def remote(llama_server, backend):
    """Scores through /v1/completions, prompts rendered with the embedded tokenizer."""
    b = OpenAICompatibleBackend([llama_server.base_url], MODEL_ALIAS, chat_template=backend.tokenizer, max_in_flight=4)
    yield b
    b.close()


@pytest.fixture(scope="module")
def remote_chat(llama_server):
    """No chat template: scores through /v1/chat/completions."""
    b = OpenAICompatibleBackend([llama_server.base_url], MODEL_ALIAS, max_in_flight=4)
    yield b
    b.close()


# ---- first-token matching (pure function) ---------------------------------------------
def test_first_token_rule_case_space_and_longest_match():
    top = [("The", -1.0), (" the", -2.0), ("an", -1.5), ("anx", -3.0), ("Sad", -2.5), (" sad", -2.5), ("\n", -4.0)]
    got = first_token_logprobs(top, ["the", "anxious", "answer", "sad", "zebra", "\n"])
    assert got[0] == pytest.approx(math.log(math.exp(-1.0) + math.exp(-2.0)))  # variants add up
    assert got[1] == pytest.approx(-3.0)  # "anx" is more specific than "an"
    assert got[2] == pytest.approx(-1.5)  # only "an" matches "answer"
    assert got[3] == pytest.approx(math.log(2 * math.exp(-2.5)))
    assert got[4] == pytest.approx(-4.0 - math.log(2))  # unlisted: half the least likely listed
    assert got[5] == pytest.approx(-4.0)  # whitespace-only candidate: exact text
    assert np.all(got[:4] > got[4])


def test_first_token_rule_needs_logprobs():
    with pytest.raises(ValueError, match="no finite top log-probabilities"):
        first_token_logprobs([], ["a"])


# ---- construction -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(base_urls=[]), "at least one base URL"),
        (dict(base_urls=["ftp://x/v1"]), "must start with http"),
        (dict(model=""), "model must be a non-empty string"),
        (dict(max_in_flight=0), "max_in_flight must be a positive int, got 0"),
        (dict(timeout=0), "timeout must be > 0"),
        (dict(max_retries=-1), "max_retries must be an int >= 0, got -1"),
        (dict(top_logprobs=50), r"top_logprobs must be an int in 1..20, got 50"),
        (dict(score_endpoint="logits"), "score_endpoint must be"),
        (dict(score_endpoint="completions"), "needs chat_template"),
        (dict(chat_template="/no/such/tokenizer"), "neither 'embedded' nor a local tokenizer folder"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, match):
    args = dict(base_urls=["http://127.0.0.1:9/v1"], model="m") | kwargs
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        OpenAICompatibleBackend(**args)


def test_api_key_from_environment_and_never_shown(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-42")
    b = OpenAICompatibleBackend("http://127.0.0.1:9/v1", "m")
    assert b._clients[0].api_key == "sk-from-env-42"
    assert "sk-from-env-42" not in repr(b) and "sk-from-env-42" not in b.name
    monkeypatch.delenv("OPENAI_API_KEY")
    assert OpenAICompatibleBackend("http://127.0.0.1:9/v1", "m")._clients[0].api_key == "EMPTY"


# ---- generate -----------------------------------------------------------------------------
@server
def test_generate_greedy_is_deterministic(remote, backend):
    a = remote.generate([CONV_A, CONV_B, CONV_C], SHORT)
    b = remote.generate([CONV_A, CONV_B, CONV_C], SHORT)
    assert [c.text for c in a] == [c.text for c in b]
    assert "Paris" in remote.generate([CONV_A], GenerationParams(max_new_tokens=12))[0].text
    # the server renders the same chat template as the embedded tokenizer: same prompt length
    assert a[0].prompt_tokens == len(backend.tokenizer(backend.render(CONV_A), add_special_tokens=False)["input_ids"])
    assert all(0 < c.completion_tokens <= 8 for c in a)


@server
def test_finish_reason_length_and_stop(remote):
    out = remote.generate([CONV_C], GenerationParams(max_new_tokens=3))[0]
    assert out.finish_reason == "length" and out.completion_tokens == 3
    done = remote.generate([CONV_A], GenerationParams(max_new_tokens=40))[0]
    assert done.finish_reason == "stop" and done.completion_tokens < 40


@server
def test_stop_strings(remote):
    full = remote.generate([CONV_C], GenerationParams(max_new_tokens=24))[0].text
    words = full.split()
    assert len(words) >= 4, full
    stop = " " + words[2]
    out = remote.generate([CONV_C], GenerationParams(max_new_tokens=24, stop=(stop, "@@never@@")))[0]
    assert out.text == full[: full.index(stop)]
    assert out.finish_reason == "stop"


@server
def test_seeds_and_n_replies_are_conversation_major(remote):
    p = GenerationParams(max_new_tokens=8, temperature=1.0, seed=7)
    twice = [remote.generate([CONV_B], p)[0].text for _ in range(2)]
    assert twice[0] == twice[1], "same seed, same sample"
    out = remote.generate([CONV_B, CONV_C], p.replace(n=2))
    assert len(out) == 4
    # reply j uses seed + j; replies of conversation 0 come first
    expected = [remote.generate([conv], p.replace(seed=7 + j))[0].text for conv in (CONV_B, CONV_C) for j in range(2)]
    assert [c.text for c in out] == expected
    assert out[0].text != out[1].text


# ---- score --------------------------------------------------------------------------------
@server
def test_score_orders_a_likely_answer_above_gibberish(remote):
    res = remote.score([CONV_A, CONV_B], ["Paris", "London", "qwzxv"], assistant_prefix="The capital of France is")
    assert res.method == "first-token" and res.logprobs.shape == (2, 3)
    assert np.all(np.isfinite(res.logprobs)) and np.all(res.logprobs <= 0)
    assert res.logprobs[0, 0] > math.log(0.3)
    assert res.logprobs[0, 0] > res.logprobs[0, 1] > res.logprobs[0, 2]


def exact_top_tokens(backend, conversation, k: int) -> list[str]:
    """The k most likely first reply tokens under the embedded (exact) model."""
    import torch

    tok = backend.tokenizer
    ids = tok(backend.render(conversation), add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        logits = backend.model(input_ids=ids).logits[0, -1]
    words = [tok.decode([int(t)]) for t in torch.topk(logits, 3 * k).indices]
    # keep tokens that are themselves one token and whose normalised text is unique
    keep, seen = [], set()
    for w in words:
        key = w.strip().lower()
        if key and key not in seen and len(tok(w, add_special_tokens=False)["input_ids"]) == 1:
            seen.add(key)
            keep.append(w)
    return keep[:k]


@server
@pytest.mark.parametrize("conv", [CONV_A, CONV_C], ids=["capital", "story"])
def test_first_token_scores_agree_with_the_exact_backend(remote, backend, conv):
    """Same weights (Q4_1 in llama.cpp, dequantized in torch): close values, same winner,
    and a candidate outside the top 20 gets a floor below every listed one."""
    cands = exact_top_tokens(backend, conv, 5) + ["qwzxv"]
    served = remote.score([conv], cands).logprobs[0]
    exact = backend.score([conv], cands).logprobs[0]
    listed = slice(0, 5)
    assert np.all(np.abs(served[listed] - exact[listed]) < 0.4), (cands, served, exact)
    assert served[listed].argmax() == exact[listed].argmax()
    assert served[5] < served[listed].min()
    # the floor is log(p_min / 2) of the top 20, and the true value is no larger than p_min
    assert exact[5] < served[5] + math.log(2) + 0.4


@server
def test_chat_endpoint_scores_like_the_completions_endpoint(remote, remote_chat):
    assert remote.score_endpoint == "completions" and remote_chat.score_endpoint == "chat"
    cands = ["The", "Paris", "Once", "zzqx"]
    np.testing.assert_allclose(
        remote_chat.score([CONV_A, CONV_C], cands).logprobs, remote.score([CONV_A, CONV_C], cands).logprobs, atol=1e-3
    )


@server
def test_chat_endpoint_refuses_a_prefix_it_cannot_force(remote_chat):
    with pytest.raises(ValueError, match="continue_final_message=True"):
        remote_chat.score([CONV_A], ["Paris"], assistant_prefix="Answer:")


@server
def test_server_without_logprobs_gives_a_clear_error(llama_server, backend):
    with FaultyProxy(llama_server.base_url, strip_logprobs=True) as proxy:
        b = OpenAICompatibleBackend(proxy.base_url, MODEL_ALIAS, chat_template=backend.tokenizer)
        with pytest.raises(NoLogprobsError, match=rf"server at {proxy.base_url} gave no log-probabilities"):
            b.score([CONV_A], ["Paris"])
        b.close()


# ---- spec, retries, concurrency, replicas -------------------------------------------------
@server
def test_spec_string_via_make_backend(llama_server):
    b = make_backend(f"openai:{llama_server.base_url}#{MODEL_ALIAS}", chat_template="embedded", max_in_flight=2)
    try:
        assert isinstance(b, OpenAICompatibleBackend) and b.score_endpoint == "completions"
        assert b.name == f"openai:{llama_server.base_url}#{MODEL_ALIAS}"
        assert "Paris" in b.generate([CONV_A], GenerationParams(max_new_tokens=12))[0].text
        res = b.score([CONV_A], ["Paris", "qwzxv"], assistant_prefix="The capital of France is")
        assert res.logprobs[0, 0] > res.logprobs[0, 1]
    finally:
        b.close()


def test_unreachable_server_fails_clearly_within_bounded_time():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    b = OpenAICompatibleBackend(url, "m", max_retries=2, backoff=0.05, timeout=5)
    t0 = time.monotonic()
    with pytest.raises(BackendRequestError, match=rf"{url} failed after 3 attempt\(s\)") as info:
        b.generate([CONV_A], SHORT)
    assert time.monotonic() - t0 < 5.0
    assert info.value.attempts == 3 and info.value.urls == [url] and info.value.status is None
    assert "APIConnectionError" in str(info.value)
    assert b.requests_per_url[url] == 3 and b.retries == 2


@server
def test_http_503_is_retried_then_succeeds(llama_server):
    with FaultyProxy(llama_server.base_url, fail_first=2, fail_status=503) as proxy:
        b = OpenAICompatibleBackend(proxy.base_url, MODEL_ALIAS, max_retries=3, backoff=0.01)
        out = b.generate([CONV_A], SHORT)
        assert out[0].text
        assert proxy.requests == 3 and proxy.failed == 2 and b.retries == 2


@server
def test_http_429_honours_retry_after(llama_server):
    with FaultyProxy(llama_server.base_url, fail_first=1, fail_status=429, retry_after="0.6") as proxy:
        b = OpenAICompatibleBackend(proxy.base_url, MODEL_ALIAS, max_retries=2, backoff=0.01)
        t0 = time.monotonic()
        b.generate([CONV_A], GenerationParams(max_new_tokens=1))
        assert time.monotonic() - t0 >= 0.6
        assert proxy.requests == 2


@server
def test_http_500_exhausts_retries_and_names_the_url(llama_server):
    with FaultyProxy(llama_server.base_url, fail_first=100, fail_status=500) as proxy:
        b = OpenAICompatibleBackend(proxy.base_url, MODEL_ALIAS, max_retries=2, backoff=0.01)
        with pytest.raises(BackendRequestError, match=rf"{proxy.base_url} failed after 3 attempt\(s\).*HTTP 500") as info:
            b.generate([CONV_A], SHORT)
        assert info.value.status == 500 and proxy.requests == 3


@server
def test_http_401_is_not_retried(llama_server):
    with FaultyProxy(llama_server.base_url, fail_first=100, fail_status=401) as proxy:
        b = OpenAICompatibleBackend(proxy.base_url, MODEL_ALIAS, max_retries=5, backoff=0.01)
        with pytest.raises(BackendRequestError, match=rf"{proxy.base_url} answered HTTP 401") as info:
            b.generate([CONV_A], SHORT)
        assert info.value.attempts == 1 and proxy.requests == 1


@server
def test_max_in_flight_is_respected_under_a_batch_of_32(llama_server):
    b = OpenAICompatibleBackend(llama_server.base_url, MODEL_ALIAS, max_in_flight=4)
    try:
        convs = [[{"role": "user", "content": f"Say the number {i}."}] for i in range(32)]
        out = b.generate(convs, GenerationParams(max_new_tokens=2))
        assert len(out) == 32 and all(c.completion_tokens >= 1 for c in out)
        # llama.cpp serves one request at a time, so waiting requests pile up to the bound
        assert b.max_in_flight_observed == 4
        assert b.in_flight == 0 and sum(b.requests_per_url.values()) == 32
    finally:
        b.close()


@server
def test_two_replicas_share_the_requests(llama_server):
    with FaultyProxy(llama_server.base_url) as second:  # a second address for the same server
        spec = f"openai:{llama_server.base_url},{second.base_url}#{MODEL_ALIAS}"
        b = make_backend(spec, max_in_flight=4)
        try:
            out = b.generate([CONV_A, CONV_B, CONV_C, CONV_A] * 2, GenerationParams(max_new_tokens=2))
            assert len(out) == 8
            assert b.requests_per_url == {llama_server.base_url: 4, second.base_url: 4}
            assert second.requests == 4
        finally:
            b.close()


@server
def test_a_dead_replica_fails_over_to_a_live_one(llama_server):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    b = OpenAICompatibleBackend([dead, llama_server.base_url], MODEL_ALIAS, max_retries=1, backoff=0.01)
    try:
        out = b.generate([CONV_A] * 4, GenerationParams(max_new_tokens=2))
        assert all(c.text for c in out)
        assert b.requests_per_url[dead] == 2 and b.requests_per_url[llama_server.base_url] == 4
    finally:
        b.close()


# ---- LangChain over the same server ---------------------------------------------------------
@pytest.fixture(scope="module")
def chat_model(llama_server):
    langchain_openai = pytest.importorskip("langchain_openai", reason="langchain-openai is not installed")
    return langchain_openai.ChatOpenAI(
        model=MODEL_ALIAS, base_url=llama_server.base_url, api_key="EMPTY", max_retries=0, timeout=60
    )


@server
def test_langchain_generate_matches_the_openai_backend(chat_model, remote):
    from agents.backends import LangChainBackend

    lc = LangChainBackend(chat_model, max_concurrency=4)
    assert lc.param_fields == {"max_new_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "seed": "seed",
                               "frequency_penalty": "frequency_penalty", "presence_penalty": "presence_penalty",
                               "repetition_penalty": None, "no_repeat_ngram_size": None}
    assert lc.legacy_max_tokens  # ChatOpenAI on a non-OpenAI server
    convs = [CONV_A, CONV_B, CONV_C]
    ours = lc.generate(convs, SHORT)
    theirs = remote.generate(convs, SHORT)
    assert [c.text for c in ours] == [c.text for c in theirs]
    assert all(c.completion_tokens <= 8 for c in ours)
    assert lc.generate([CONV_C], GenerationParams(max_new_tokens=3))[0].finish_reason == "length"
    # seeds and n: the same rule (reply j uses seed + j) gives the same samples
    p = GenerationParams(max_new_tokens=6, temperature=1.0, seed=11, n=2)
    assert [c.text for c in lc.generate([CONV_B, CONV_C], p)] == [c.text for c in remote.generate([CONV_B, CONV_C], p)]
    stop = lc.generate([CONV_A], GenerationParams(max_new_tokens=12, stop=(" of",)))[0]
    assert " of" not in stop.text and stop.finish_reason == "stop"


@server
def test_langchain_score_with_logprobs(chat_model, remote_chat):
    from agents.backends import LangChainBackend

    lc = LangChainBackend(chat_model)
    cands = ["The", "Paris", "Once", "zzqx"]
    res = lc.score([CONV_A, CONV_C], cands)
    assert res.method == "first-token"
    np.testing.assert_allclose(res.logprobs, remote_chat.score([CONV_A, CONV_C], cands).logprobs, atol=1e-3)
    with pytest.raises(ValueError, match="assistant_prefill"):
        LangChainBackend(chat_model, score_method="logprobs").score([CONV_A], ["x"], assistant_prefix="A:")


@server
def test_langchain_sampled_estimate(chat_model, remote):
    from agents.backends import LangChainBackend

    lc = LangChainBackend(chat_model, score_method="sampled", n_samples=6, sample_temperature=0.3, sample_max_tokens=4)
    first_word = remote.generate([CONV_A], SHORT)[0].text.split()[0]  # what the model says (greedy)
    res = lc.score([CONV_A], [first_word, "qwzxv", "Zebra"])
    assert res.method == "sampled-estimate"
    # add-one smoothing: every value is log((count + 1) / (6 + 3)) for a count in 0..6
    counts = np.exp(res.logprobs[0]) * 9 - 1
    np.testing.assert_allclose(counts, np.rint(counts), atol=1e-6)
    counts = np.rint(counts)
    assert counts.sum() <= 6 and counts[0] >= 3 and counts[1] == 0
    # the same seeds give the same estimate
    np.testing.assert_array_equal(lc.score([CONV_A], [first_word, "qwzxv", "Zebra"]).logprobs, res.logprobs)
    # auto mode falls back to sampling when a prefix cannot be forced
    auto = LangChainBackend(chat_model, n_samples=3, sample_max_tokens=4)
    assert auto.score([CONV_A], ["The", "qwzxv"], assistant_prefix="Answer:").method == "sampled-estimate"


def test_langchain_rejects_non_chat_models():
    from agents.backends import LangChainBackend

    with pytest.raises(TypeError, match="BaseChatModel, got str"):
        LangChainBackend("gpt-4")


# ---- repetition controls reach the server -----------------------------------------------------
LOOP = [{"role": "user", "content": "Say 'thank you so much' over and over."}]
PENALTIES = dict(frequency_penalty=2.0, presence_penalty=0.5, repetition_penalty=1.3, no_repeat_ngram_size=3)


def _record_bodies(openai_client) -> list[dict]:
    """JSON bodies of the requests an ``openai.OpenAI`` client sends (an httpx request hook)."""
    bodies: list[dict] = []
    openai_client._client.event_hooks["request"].append(lambda request: bodies.append(json.loads(request.content)))
    return bodies


@server
def test_openai_backend_sends_the_repetition_controls(llama_server):
    from esc_env.evaluation.dialogue_quality import repeated_trigram_share

    b = OpenAICompatibleBackend([llama_server.base_url], MODEL_ALIAS, max_in_flight=1, repetition_penalty_field="repeat_penalty")
    try:
        bodies = _record_bodies(b._clients[0])
        params = GenerationParams(max_new_tokens=24)
        plain = b.generate([LOOP], params)[0].text
        assert not {"frequency_penalty", "presence_penalty", "repeat_penalty"} & set(bodies[-1])  # defaults: not sent
        controlled = b.generate([LOOP], params.replace(**PENALTIES))[0].text
        body = bodies[-1]
        assert body["frequency_penalty"] == 2.0 and body["presence_penalty"] == 0.5 and body["repeat_penalty"] == 1.3
        assert "no_repeat_ngram_size" not in body  # documented as ignored
        assert controlled != plain  # the server applied them
        assert repeated_trigram_share(controlled) <= repeated_trigram_share(plain)
    finally:
        b.close()
    # without a field for it, repetition_penalty is not sent
    b = OpenAICompatibleBackend([llama_server.base_url], MODEL_ALIAS, max_in_flight=1)
    try:
        bodies = _record_bodies(b._clients[0])
        b.generate([LOOP], GenerationParams(max_new_tokens=2, repetition_penalty=1.3))
        assert "repetition_penalty" not in bodies[-1] and "repeat_penalty" not in bodies[-1]
    finally:
        b.close()
    with pytest.raises(ValueError, match="repetition_penalty_field"):
        OpenAICompatibleBackend([llama_server.base_url], MODEL_ALIAS, repetition_penalty_field="")


@server
def test_langchain_sends_the_repetition_controls_it_has_fields_for(chat_model):
    from agents.backends import LangChainBackend

    lc = LangChainBackend(chat_model, max_concurrency=1)
    assert lc.param_fields["frequency_penalty"] == "frequency_penalty"
    assert lc.param_fields["presence_penalty"] == "presence_penalty"
    assert lc.param_fields["repetition_penalty"] is None and lc.param_fields["no_repeat_ngram_size"] is None
    hooks = chat_model.root_client._client.event_hooks["request"]
    before = list(hooks)
    bodies = _record_bodies(chat_model.root_client)
    try:
        lc.generate([LOOP], GenerationParams(max_new_tokens=4))
        assert "frequency_penalty" not in bodies[-1] and "presence_penalty" not in bodies[-1]
        lc.generate([LOOP], GenerationParams(max_new_tokens=4, **PENALTIES))
        assert bodies[-1]["frequency_penalty"] == 2.0 and bodies[-1]["presence_penalty"] == 0.5
        assert lc.dropped_params >= {"repetition_penalty", "no_repeat_ngram_size"}
    finally:
        hooks[:] = before
