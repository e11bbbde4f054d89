"""A real llama.cpp server (llama-cpp-python) on 127.0.0.1 for the remote-backend tests.

``llama_server`` is a session-scoped pytest fixture: it starts
``python -m llama_cpp.server`` on the embedded SmolLM2 GGUF on a free port, waits (bounded)
until ``/v1/models`` answers, yields a :class:`LlamaServer` (``.base_url`` is
``http://127.0.0.1:PORT/v1``) and kills the process at the end.  Import it in a test module
(``from tests.llama_server import llama_server``) to use it.

:class:`FaultyProxy` is a real HTTP reverse proxy in front of a server: it answers the first
``fail_first`` requests with an HTTP error of our choice and forwards the rest, counting
everything.  It exercises the retry policy on 429/5xx, which a healthy server never sends.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.server_process import ServerProcess, free_port  # noqa: F401  (free_port: re-exported)

MODEL_ALIAS = "smollm2"


class LlamaServer(ServerProcess):
    """A ``llama_cpp.server`` subprocess.

    Args:
        model_path: the GGUF file.
        port: TCP port (default: a free one).
        n_ctx: context length.
        startup_timeout: seconds to wait for ``/v1/models`` before giving up.
        extra_args: more command-line options, e.g. ``["--n_threads", "2"]``.
    """

    name = "llama_cpp.server"

    def __init__(self, model_path: str | Path, port: int | None = None, n_ctx: int = 2048,
                 startup_timeout: float = 90.0, extra_args: list[str] | None = None) -> None:
        super().__init__(port=port, startup_timeout=startup_timeout, stop_timeout=10.0)
        self.model_path = str(model_path)
        self.n_ctx = n_ctx
        self.extra_args = list(extra_args or [])

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", self.model_path,
            "--model_alias", MODEL_ALIAS,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            # logprobs need the logits of every position (this is llama-cpp-python's
            # default today; say it so a change of default does not break scoring)
            "--logits_all", "True",
            "--verbose", "False",
            # one thread each: the tests run on small shared machines, where a second
            # spinning thread only competes with the test process itself
            "--n_threads", "1",
            "--n_threads_batch", "1",
            *self.extra_args,
        ]


@pytest.fixture(scope="session")
def llama_server():
    """A running llama.cpp server on the embedded model, shared by the session."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp is not importable: pip install 'llama-cpp-python[server]' (in the 'test' extra)")
    from agents.backends.embedded import embedded_gguf_path

    server = LlamaServer(embedded_gguf_path())
    server.start()
    try:
        yield server
    finally:
        server.stop()


class FaultyProxy:
    """A reverse proxy on 127.0.0.1 that fails the first requests, then forwards.

    Args:
        upstream: base URL of the real server, e.g. ``http://127.0.0.1:8000/v1``.
        fail_first: how many requests get the error answer before forwarding starts.
        fail_status: the HTTP status of the error answers.
        retry_after: a ``Retry-After`` header value for the error answers, if any.
        strip_logprobs: blank the ``logprobs`` of every forwarded choice, as a server
            without log-probability support answers.

    Attributes:
        base_url: the proxy's base URL (same path as ``upstream``).
        requests: requests received; ``failed``: error answers sent.
    """

    def __init__(self, upstream: str, fail_first: int = 0, fail_status: int = 503, retry_after: str | None = None,
                 strip_logprobs: bool = False) -> None:
        self.upstream = upstream.rstrip("/")
        self.strip_logprobs = strip_logprobs
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.requests = 0
        self.failed = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy.requests += 1
                    fail = proxy.failed < proxy.fail_first
                    if fail:
                        proxy.failed += 1
                if fail:
                    payload = json.dumps({"error": {"message": f"injected HTTP {proxy.fail_status}", "type": "test"}}).encode()
                    self.send_response(proxy.fail_status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    if proxy.retry_after is not None:
                        self.send_header("Retry-After", proxy.retry_after)
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                # self.path is e.g. /v1/chat/completions; the upstream base ends with /v1
                root = proxy.upstream.rsplit("/v1", 1)[0]
                req = urllib.request.Request(root + self.path, data=body, method=self.command)
                for h in ("Content-Type", "Authorization"):
                    if self.headers.get(h):
                        req.add_header(h, self.headers[h])
                try:
                    with urllib.request.urlopen(req, timeout=120) as r:
                        status, data, ctype = r.status, r.read(), r.headers.get("Content-Type", "application/json")
                except urllib.error.HTTPError as e:
                    status, data, ctype = e.code, e.read(), e.headers.get("Content-Type", "application/json")
                if proxy.strip_logprobs and status == 200:
                    doc = json.loads(data)
                    for choice in doc.get("choices") or []:
                        choice["logprobs"] = None
                    data = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _handle
            do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, name="faulty-proxy", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FaultyProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
