"""OpenAICompatibleBackend against a real ``vllm serve`` on 127.0.0.1 (the embedded model).

One server for the session (``vllm_server``, from tests/vllm_server.py via conftest).  The server's log-probabilities
are checked against TransformersBackend's exact ones on the same weights.
"""

from __future__ import annotations

import numpy as np
import pytest

from agents.backends import GenerationParams
from tests.vllm_server import MODEL_ALIAS

pytestmark = pytest.mark.vllm

CONVS = [
    [{"role": "user", "content": "Name one fruit that is yellow."}],
    [{"role": "system", "content": "You answer in one short sentence."},
     {"role": "user", "content": "What do cats like to drink?"}],
]


def _client(server, **kw):
    from agents.backends.openai_backend import OpenAICompatibleBackend

    return OpenAICompatibleBackend([server.base_url], MODEL_ALIAS, timeout=300, **kw)


def test_generate_batched_seeded_with_stop(vllm_server, backend):
    b = _client(vllm_server)
    try:
        greedy = GenerationParams(max_new_tokens=6, temperature=0.0)
        out = b.generate(CONVS, greedy)
        # the server and the in-memory transformers model agree on greedy replies (same weights)
        assert [c.text for c in out] == [c.text for c in backend.generate(CONVS, greedy)]
        assert all(c.completion_tokens == 6 and c.prompt_tokens > 10 for c in out)

        sampled = GenerationParams(max_new_tokens=10, temperature=1.0, seed=7, n=2)
        a, again = b.generate(CONVS, sampled), b.generate(CONVS, sampled)
        assert [c.text for c in a] == [c.text for c in again]  # the seed reaches vLLM
        assert len(a) == 4 and a[0].text != a[1].text  # reply j gets seed + j

        words = out[0].text.split()
        stop = " " + words[1]
        cut = b.generate(CONVS[:1], greedy.replace(stop=(stop,)))[0]
        assert cut.finish_reason == "stop" and cut.text == out[0].text[: out[0].text.index(stop)]
    finally:
        b.close()


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_score_via_logprobs_matches_exact_scores(vllm_server, backend, endpoint):
    """The server's top log-probabilities are the model's (checked against TransformersBackend's
    exact scores of the same tokens), and ``score`` ranks candidates by them."""
    import openai

    raw = openai.OpenAI(base_url=vllm_server.base_url, api_key="EMPTY", timeout=300)
    prompt = backend.render(CONVS[0], "Answer:")
    top = raw.completions.create(model=MODEL_ALIAS, prompt=prompt, max_tokens=1, temperature=0.0, logprobs=5)
    alts = sorted(top.choices[0].logprobs.top_logprobs[0].items(), key=lambda kv: -kv[1])
    tok = backend.tokenizer
    single = [(t, lp) for t, lp in alts if len(tok.encode(t, add_special_tokens=False)) == 1][:3]
    assert len(single) >= 2
    exact = backend.score(CONVS[:1], [t for t, _ in single], assistant_prefix="Answer:").logprobs[0]
    np.testing.assert_allclose([lp for _, lp in single], exact, atol=2e-3)

    kw = {"continue_final_message": True} if endpoint == "chat" else {"chat_template": "embedded"}
    b = _client(vllm_server, **kw)
    try:
        cands = [single[0][0], single[1][0], " zebra"]
        res = b.score(CONVS[:1], cands, assistant_prefix="Answer:")
        assert res.method == "first-token" and b.score_endpoint == endpoint
        # first-token scores add the listed spellings of a candidate: never below the exact value
        assert res.logprobs[0, 0] >= exact[0] - 2e-3 and res.logprobs[0, 1] >= exact[1] - 2e-3
        assert res.logprobs[0, 0] > res.logprobs[0, 2] and res.logprobs[0, 1] > res.logprobs[0, 2]
    finally:
        b.close()


def test_env_end_to_end_with_bounded_requests_in_flight(vllm_server, tmp_path):
    from esc_env.recording import read_episodes
    from esc_env.vector import ESCVectorEnv

    b = _client(vllm_server, chat_template="embedded", max_in_flight=3)
    try:
        params = {"temperature": 0.0, "max_new_tokens": 8}
        record = tmp_path / "episodes.jsonl"
        venv = ESCVectorEnv(6, b, max_turns=1, record_path=str(record), seeker_params=params,
                            supporter_params=params, affect_judge="prompted")
        venv.reset(seed=0)
        obs, reward, term, trunc, info = venv.step(np.arange(6) % 8)
        assert np.all(np.isfinite(reward)) and np.all(term | trunc)
        # 6 conversations per call, at most 3 requests at once, and the bound was reached
        assert b.max_in_flight_observed == 3
        assert sum(b.requests_per_url.values()) >= 6 * 3  # judge, seeker, supporter, judge...
        assert len(list(read_episodes(record))) == 6
    finally:
        b.close()
