"""One OpenAI-compatible server subprocess on 127.0.0.1, for the tests that need a real server.

:class:`ServerProcess` starts a command in its own process group, waits (bounded) until
``/v1/models`` answers, keeps the server's log in a temporary file, and stops the whole
group (SIGTERM, then SIGKILL).  :class:`tests.llama_server.LlamaServer` and
:class:`tests.vllm_server.VLLMServer` only say which command to run.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A server subprocess that answers ``GET {base_url}/models`` once it is ready.

    Subclasses implement :meth:`command` (and may override :meth:`environment`).

    Args:
        port: TCP port (default: a free one).
        startup_timeout: seconds to wait for ``/v1/models`` before giving up.
        stop_timeout: seconds between SIGTERM and SIGKILL in :meth:`stop`.

    Attributes:
        base_url: ``http://127.0.0.1:PORT/v1``.
        startup_seconds: how long the last :meth:`start` took.
    """

    #: the name used in error messages
    name = "server"

    def __init__(self, port: int | None = None, startup_timeout: float = 90.0, stop_timeout: float = 10.0) -> None:
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.proc: subprocess.Popen | None = None
        self.startup_seconds: float | None = None
        self._log = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The server's environment variables (``None``: this process's)."""
        return None

    def start(self):
        cmd = self.command()
        self._log = tempfile.NamedTemporaryFile(prefix=f"{self.name.replace(' ', '-')}-", suffix=".log", delete=False)
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=self.environment(), start_new_session=True)
        deadline = t0 + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                code, tail = self.proc.returncode, self.log_tail()
                self.stop()
                raise RuntimeError(f"{self.name} exited with code {code} before answering:\n{tail}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/models", timeout=5) as r:
                    if r.status == 200 and json.loads(r.read()).get("data"):
                        self.startup_seconds = time.monotonic() - t0
                        return self
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(
                    f"{self.name} did not answer {self.base_url}/models within {self.startup_timeout:g} s:\n{tail}"
                )
            time.sleep(0.25)

    def log_tail(self, n: int = 3000) -> str:
        """The log's error lines (the cause of a failed start is often far above its end), then its end."""
        if self._log is None:
            return ""
        try:
            text = Path(self._log.name).read_text(errors="replace")
        except OSError:
            return ""
        errors = [ln for ln in text.splitlines() if "Error" in ln or "error:" in ln or "Killed" in ln][:20]
        return ("error lines:\n" + "\n".join(errors) + "\n...\n" if errors else "") + text[-n:]

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def kill(self) -> None:
        """SIGKILL the server's whole process group at once (a crash, not a shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal_group(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after ``stop_timeout`` seconds.  Safe to call twice."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(timeout=self.stop_timeout)
        if self.proc is not None:  # a child (vLLM's engine) may outlive the server by a moment
            self._signal_group(signal.SIGKILL)
        self.proc = None
        if self._log is not None:
            self._log.close()
            try:
                os.unlink(self._log.name)
            except OSError:
                pass
            self._log = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
