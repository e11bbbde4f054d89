"""VLLMBackend for real: the in-process vLLM engine on the embedded SmolLM2-135M folder.

Run in ``.venv-vllm`` (``bash .ci/setup-venv vllm``); ``.ci/run`` runs them with
``-m vllm`` after the main suite.  One engine for the whole module (``vllm_backend``).
Scores are checked against :class:`TransformersBackend` (the ``backend`` fixture), which
computes the same log-probabilities with a full forward pass in float32.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from agents.backends import GenerationParams, make_backend
from agents.backends.base import BackendError

pytestmark = pytest.mark.vllm

#: the engine every test here shares: small context and KV cache for a small machine
SPEC = "vllm:embedded?max_model_len=1024&kv_cache_gb=1"

CONVS = [
    [{"role": "user", "content": "Name one fruit that is yellow."}],
    [{"role": "system", "content": "You answer in one short sentence."},
     {"role": "user", "content": "What do cats like to drink?"}],
]


@pytest.fixture(scope="module")
def vllm_backend():
    if importlib.util.find_spec("vllm") is None:
        from tests.vllm_server import require_vllm

        require_vllm("VLLMBackend")
    return make_backend(SPEC)


def greedy(n_tokens: int = 10, **kw) -> GenerationParams:
    return GenerationParams(max_new_tokens=n_tokens, temperature=0.0, **kw)


def test_engine_is_shared_and_prefix_caching_is_on(vllm_backend):
    again = make_backend(SPEC)
    assert again.llm is vllm_backend.llm  # one engine per process for the same model and options
    cfg = vllm_backend.llm.llm_engine.vllm_config.cache_config
    assert cfg.enable_prefix_caching is True
    assert vllm_backend.llm.llm_engine.model_config.max_model_len == 1024
    assert vllm_backend.name == "vllm:embedded"


def test_greedy_batch_is_conversation_major_and_matches_single_calls(vllm_backend):
    one = [vllm_backend.generate([c], greedy())[0].text for c in CONVS]
    both = vllm_backend.generate(CONVS, greedy(n=2))
    assert len(both) == 4
    # conversation-major: the two (greedy, hence equal) replies to conversation 0 come first
    assert [c.text for c in both] == [one[0], one[0], one[1], one[1]]
    assert one[0] != one[1]
    for c in both:
        assert c.prompt_tokens > 10 and 1 <= c.completion_tokens <= 10


def test_greedy_agrees_with_transformers(vllm_backend, backend):
    """Same weights (float32), same chat template: greedy decoding gives the same first tokens."""
    ours = vllm_backend.generate(CONVS, greedy(6))
    ref = backend.generate(CONVS, greedy(6))
    assert [c.text for c in ours] == [c.text for c in ref]


def test_seeded_sampling_is_reproducible_and_n_replies_differ(vllm_backend):
    p = GenerationParams(max_new_tokens=12, temperature=1.0, seed=123, n=3)
    a = vllm_backend.generate(CONVS, p)
    b = vllm_backend.generate(CONVS, p)
    assert [c.text for c in a] == [c.text for c in b]
    assert len({c.text for c in a[:3]}) > 1  # the n replies to one conversation are not copies
    c = vllm_backend.generate(CONVS, p.replace(seed=124))
    assert [x.text for x in c] != [x.text for x in a]


STORY = [[{"role": "user", "content": "Tell me a long story about a dragon who lives in a castle."}]]


def test_stop_strings_and_length(vllm_backend):
    full = vllm_backend.generate(STORY, greedy(12))[0]
    assert full.finish_reason == "length" and full.completion_tokens == 12
    words = full.text.split()
    assert len(words) >= 3
    stop = " " + words[2]
    cut = vllm_backend.generate(STORY, greedy(12, stop=(stop,)))[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full.text[: full.text.index(stop)]


def test_repetition_controls_are_mapped_and_change_the_output(vllm_backend):
    sp = vllm_backend._sampling_params(GenerationParams(repetition_penalty=1.7, frequency_penalty=0.5,
                                                        presence_penalty=-0.25, no_repeat_ngram_size=3))
    assert (sp.repetition_penalty, sp.frequency_penalty, sp.presence_penalty) == (1.7, 0.5, -0.25)
    conv = [[{"role": "user", "content": "Repeat the word 'yes' many times."}]]
    plain = vllm_backend.generate(conv, greedy(16))[0].text
    penalised = vllm_backend.generate(conv, greedy(16, repetition_penalty=2.0))[0].text
    assert penalised != plain


def test_score_is_exact_and_matches_transformers(vllm_backend, backend):
    cands = [" sad", " very happy today", " anxious", "Sad"]
    ours = vllm_backend.score(CONVS, cands, assistant_prefix="Feeling:")
    ref = backend.score(CONVS, cands, assistant_prefix="Feeling:")
    assert ours.method == "exact" and ours.logprobs.shape == (2, 4)
    assert np.all(np.isfinite(ours.logprobs)) and np.all(ours.logprobs < 0)
    np.testing.assert_allclose(ours.logprobs, ref.logprobs, atol=2e-3)
    # the multi-token candidate is the sum over its tokens: far below any one-token candidate
    assert np.all(ours.logprobs[:, 1] < ours.logprobs[:, 0])


def test_score_token_ids_path_equals_prompt_logprobs_path(vllm_backend):
    """The prefix-sharing requests (logprob_token_ids) give the numbers of one full-prompt pass."""
    cands = [[" yes", " yes please", " no"], [" tea", " milk", " milk and water"]]
    prompt_ids, cand_ids = vllm_backend._encode_score_inputs(CONVS, cands, "")
    a = vllm_backend._score_by_token_ids(prompt_ids, cand_ids).logprobs
    b = vllm_backend._score_by_prompt_logprobs(prompt_ids, cand_ids).logprobs
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_env_runs_end_to_end_in_process(vllm_backend, tmp_path):
    from esc_env.recording import read_episodes
    from esc_env.vector import ESCVectorEnv

    params = {"temperature": 0.0, "max_new_tokens": 8}
    record = tmp_path / "episodes.jsonl"
    venv = ESCVectorEnv(2, vllm_backend, max_turns=1, record_path=str(record), seeker_params=params,
                        supporter_params=params, affect_judge="prompted")
    obs, info = venv.reset(seed=0)
    calls = vllm_backend.usage.calls
    obs, reward, term, trunc, info = venv.step(np.array([0, 1]))
    assert np.all(np.isfinite(reward)) and np.all(term | trunc)
    assert vllm_backend.usage.calls > calls
    recs = list(read_episodes(record))
    assert len(recs) == 2 and all(r["length"] == 1 for r in recs)


# ---- bad input ------------------------------------------------------------------------
def test_too_long_prompt_is_a_value_error_naming_the_limit(vllm_backend):
    long = [[{"role": "user", "content": "word " * 1500}]]
    with pytest.raises(ValueError, match=r"vllm:embedded.*1024"):
        vllm_backend.generate(long, greedy(4))
    with pytest.raises(ValueError, match=r"vllm:embedded: conversation 0 is \d+ tokens, too long for max_model_len=1024"):
        vllm_backend.score(long, [" a", " b"])
    assert vllm_backend.generate(CONVS[:1], greedy(2))[0].completion_tokens == 2  # the engine still serves


def test_unknown_model_path_is_a_backend_error_naming_the_spec():
    pytest.importorskip("vllm")
    with pytest.raises(BackendError, match=r"vllm:/nonexistent/model-folder: no model folder"):
        make_backend("vllm:/nonexistent/model-folder")


def test_bad_engine_options_in_the_spec_name_the_spec():
    pytest.importorskip("vllm")
    from agents.errors import UserInputError

    with pytest.raises(UserInputError, match=r"'vllm:embedded\?colour=red'.*unknown engine option 'colour'"):
        make_backend("vllm:embedded?colour=red")
    with pytest.raises(UserInputError, match=r"max_model_len='lots' is not a valid int"):
        make_backend("vllm:embedded?max_model_len=lots")


def test_a_hub_id_that_cannot_be_loaded_is_a_backend_error(monkeypatch):
    pytest.importorskip("vllm")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BackendError, match=r"vllm:esc-env-test/no-such-model.*could not start"):
        make_backend("vllm:esc-env-test/no-such-model")
