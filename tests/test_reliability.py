"""Faults, load and secrets against a real llama.cpp server and a real ``vllm serve`` on 127.0.0.1.

Each fault test starts its own server (it gets killed), on the embedded model (the GGUF for
llama.cpp, its safetensors folder for vLLM).  The vLLM test is marked ``vllm`` and runs in
``.venv-vllm`` (``bash .ci/setup-venv vllm``).
"""

from __future__ import annotations

import importlib.util
import json
import math
import threading
import time

import numpy as np
import pytest

from esc_env.recording import read_episodes
from esc_env.vector import ESCVectorEnv

pytestmark = [pytest.mark.server]
needs_llama = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None,
                                 reason="llama-cpp-python[server] is not installed (pip install 'esc-env[test]')")

GREEDY = {"temperature": 0.0, "max_new_tokens": 8}
#: every role, the affect judge included, goes through the server
ON_SERVER = {"affect_judge": "prompted"}


def _server():
    from agents.backends.embedded import embedded_gguf_path
    from tests.llama_server import LlamaServer

    return LlamaServer(embedded_gguf_path()).start()


def _backend(url: str, **kw):
    from agents.backends.openai_backend import OpenAICompatibleBackend

    return OpenAICompatibleBackend([url], "smollm2", chat_template="embedded", **kw)


@needs_llama
def test_short_outage_is_ridden_out_and_long_one_fails_clearly(tmp_path):
    from agents.backends.openai_backend import BackendRequestError
    from tests.llama_server import LlamaServer

    server = _server()
    try:
        record = tmp_path / "episodes.jsonl"
        backend = _backend(server.base_url, max_retries=8, backoff=0.5, max_backoff=2.0, timeout=30)
        venv = ESCVectorEnv(2, backend, max_turns=1, record_path=str(record), seeker_params=GREEDY, supporter_params=GREEDY, **ON_SERVER)
        venv.reset(seed=0)
        venv.step(np.array([0, 1]))  # both episodes end (max_turns=1) and are recorded
        assert len(list(read_episodes(record))) == 2

        # short outage: the server dies and comes back on the same port 2 s later
        port = server.port
        server.stop()
        revived: list[LlamaServer] = []
        t = threading.Thread(target=lambda: revived.append(LlamaServer(server.model_path, port=port).start()))
        time.sleep(0.5)
        t.start()
        venv.step(np.array([0, 1]))  # autoreset step: judges the new openings through the outage
        venv.step(np.array([2, 3]))
        t.join()
        server = revived[0]
        assert backend.retries > 0
        assert len(list(read_episodes(record))) == 4

        # long outage: retries run out, the error names the URL, finished episodes stay readable
        server.stop()
        quick = _backend(server.base_url, max_retries=2, backoff=0.1, timeout=5)
        venv2 = ESCVectorEnv(2, quick, max_turns=1, record_path=str(record), seeker_params=GREEDY, supporter_params=GREEDY, **ON_SERVER)
        with pytest.raises(BackendRequestError, match=f"127.0.0.1:{port}") as err:
            venv2.reset(seed=1)
        assert "3 attempt" in str(err.value)
        recs = list(read_episodes(record))
        assert len(recs) == 4 and all(r["length"] == 1 for r in recs)
    finally:
        server.stop()


@needs_llama
def test_mcts_survives_a_server_kill_and_resumes_to_the_same_trees(tmp_path):
    """Kill the server mid-search: the search stops with a clear error, the finished tree is on
    disk and readable; after a restart the search resumes and gives the trees of an
    uninterrupted run (greedy decoding)."""
    from agents.backends.openai_backend import BackendRequestError
    from esc_env.env import ESCEnv
    from policies.aflow import BatchedMCTS, MCTSConfig, Tree
    from tests.llama_server import LlamaServer

    def env_on(url, **kw):
        return ESCEnv(_backend(url, **kw), personas="builtin", max_turns=2, seeker_params=GREEDY, supporter_params=GREEDY,
                      **ON_SERVER)

    cfg = MCTSConfig(n_simulations=2, max_depth=2, trees_per_batch=1)
    starts = [(None, 0), (None, 1)]
    server = _server()
    try:
        full = BatchedMCTS(env_on(server.base_url), cfg).run(starts, tmp_path / "full")
        crash = tmp_path / "crash"

        def kill_after_first_tree():
            while not list(crash.glob("*.json")):
                time.sleep(0.02)
            server.stop()

        killer = threading.Thread(target=kill_after_first_tree)
        killer.start()
        with pytest.raises(BackendRequestError, match=f"127.0.0.1:{server.port}"):
            BatchedMCTS(env_on(server.base_url, max_retries=1, backoff=0.1, timeout=5), cfg).run(starts, crash)
        killer.join()
        saved = sorted(crash.glob("*.json"))
        assert len(saved) == 1 and Tree.load(saved[0]).to_json() == full[0].to_json()
        server = LlamaServer(server.model_path, port=server.port).start()
        resumed = BatchedMCTS(env_on(server.base_url), cfg).run(starts, crash)
        assert [t.to_json() for t in resumed] == [t.to_json() for t in full]
    finally:
        server.stop()


@needs_llama
@pytest.mark.slow
def test_load_64_conversations_bounded_and_unmixed():
    """64 conversations through one vector env: every request answered, none mixed, bound respected."""
    server = _server()
    try:
        backend = _backend(server.base_url, max_in_flight=8, max_retries=3, timeout=120)
        venv = ESCVectorEnv(64, backend, max_turns=2, seeker_params=GREEDY, supporter_params=GREEDY, **ON_SERVER)
        obs, info = venv.reset(seed=0)
        personas = [venv.personas.get(pid) for pid in info["persona_id"]]
        t0 = time.perf_counter()
        obs, *_ = venv.step(np.arange(64) % 8)
        elapsed = time.perf_counter() - t0
        assert backend.max_in_flight_observed <= 8
        for i, p in enumerate(personas):
            # each transcript still opens with its own persona's opening
            assert venv.states[i].persona.id == p.id
            assert obs["dialogue"][i].startswith(f"Seeker: {venv.states[i].turns[0].text}")
            assert venv.states[i].turns[0].text == (p.opening or venv.states[i].turns[0].text)
        lat = np.array(backend.latencies)
        print(f"\nload: {len(lat)} requests in {elapsed:.1f} s = {len(lat) / elapsed:.2f} req/s, "
              f"p50 {np.percentile(lat, 50):.2f} s, p99 {np.percentile(lat, 99):.2f} s")
    finally:
        server.stop()


@needs_llama
def test_api_key_never_reaches_run_records(tmp_path, monkeypatch):
    """The key comes from the environment and is written nowhere: not in transcripts, names or errors."""
    secret = "sk-esc-env-test-SECRET-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    server = _server()
    try:
        backend = _backend(server.base_url, max_retries=1)
        assert secret not in repr(backend) and secret not in backend.name
        record = tmp_path / "run" / "episodes.jsonl"
        venv = ESCVectorEnv(1, backend, max_turns=1, record_path=str(record), seeker_params=GREEDY, supporter_params=GREEDY, **ON_SERVER)
        venv.reset(seed=0)
        venv.step(np.array([0]))
        (tmp_path / "run" / "config.json").write_text(json.dumps({"backend": backend.name}))
        for f in (tmp_path / "run").rglob("*"):
            assert secret not in f.read_text(errors="replace"), f
    finally:
        server.stop()
    from agents.backends.openai_backend import BackendRequestError

    with pytest.raises(BackendRequestError) as err:
        _backend(server.base_url, max_retries=0, timeout=2).generate([[{"role": "user", "content": "hi"}]])
    assert secret not in str(err.value)


def _same_tree(a: str, b: str) -> bool:
    """Two trees' JSON agree: every string, int and key equal, floats to within 1e-5 (relative)."""
    def same(x, y) -> bool:
        if isinstance(x, float) or isinstance(y, float):
            return isinstance(x, (int, float)) and isinstance(y, (int, float)) and math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-7)
        if isinstance(x, dict):
            return isinstance(y, dict) and x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        if isinstance(x, list):
            return isinstance(y, list) and len(x) == len(y) and all(same(u, v) for u, v in zip(x, y))
        return x == y

    return same(json.loads(a), json.loads(b))


@pytest.mark.vllm
def test_killed_vllm_serve_mid_rollout_loses_no_finished_work_and_resumes_equal(tmp_path, vllm_server):
    """The session's vLLM server, SIGKILLed (server and engine) in the middle of a batched MCTS run.

    Finished episodes and the finished tree stay on disk and readable; the search stops with
    one clear error naming the URL; on the restarted server the search resumes to the trees
    of an uninterrupted run (greedy decoding).  Tree values are compared to 1e-5 (relative):
    vLLM's CPU kernels may round a log-probability differently when a request is batched with
    other neighbours or read from the prefix cache (texts, tree shapes and visit counts must be
    identical).
    """
    from agents.backends.openai_backend import BackendRequestError
    from esc_env.env import ESCEnv
    from policies.aflow import BatchedMCTS, MCTSConfig, Tree

    if not hasattr(vllm_server, "kill"):
        pytest.skip("ESC_ENV_VLLM_URL names a server this test did not start and cannot kill")
    url = vllm_server.base_url

    def env_on(**kw):
        return ESCEnv(_backend(url, **kw), personas="builtin", max_turns=2, seeker_params=GREEDY,
                      supporter_params=GREEDY, **ON_SERVER)

    cfg = MCTSConfig(n_simulations=2, max_depth=2, trees_per_batch=1)
    starts = [(None, 0), (None, 1)]
    record = tmp_path / "episodes.jsonl"
    venv = ESCVectorEnv(2, _backend(url, timeout=120), max_turns=1, record_path=str(record),
                        seeker_params=GREEDY, supporter_params=GREEDY, **ON_SERVER)
    venv.reset(seed=0)
    venv.step(np.array([0, 1]))
    before = list(read_episodes(record))
    assert len(before) == 2

    full = BatchedMCTS(env_on(timeout=120), cfg).run(starts, tmp_path / "full")
    crash = tmp_path / "crash"

    def kill_after_first_tree():
        while not list(crash.glob("*.json")):
            time.sleep(0.02)
        vllm_server.kill()

    killer = threading.Thread(target=kill_after_first_tree)
    killer.start()
    try:
        with pytest.raises(BackendRequestError, match=f"127.0.0.1:{vllm_server.port}"):
            BatchedMCTS(env_on(max_retries=1, backoff=0.1, timeout=10), cfg).run(starts, crash)
    finally:
        killer.join()
        assert vllm_server.proc.poll() is not None  # it really died
        vllm_server.start()  # same port, same options: the session's server again
    assert list(read_episodes(record)) == before  # no finished episode lost
    saved = sorted(crash.glob("*.json"))
    assert len(saved) == 1 and _same_tree(Tree.load(saved[0]).to_json(), full[0].to_json())

    resumed = BatchedMCTS(env_on(timeout=120), cfg).run(starts, crash)
    assert len(resumed) == 2 and all(_same_tree(r.to_json(), f.to_json()) for r, f in zip(resumed, full))
