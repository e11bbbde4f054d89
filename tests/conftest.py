"""Shared fixtures.  ONE embedded model per test session: every test that needs an LLM
uses the ``backend`` fixture rather than loading its own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# On a small shared machine torch's worker threads spin while waiting for a core; one
# thread is several times faster there (measured: generate of 2x12 tokens 27-59 s with 2
# threads under load, about 4 s with 1).
if (os.cpu_count() or 1) <= 2:
    import torch

    torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]

# the session's vLLM server (registered here so that every module shares one): see tests/vllm_server.py
from tests.vllm_server import vllm_server  # noqa: E402,F401
ESCONV_DIR = Path(os.environ.get("ESC_ENV_ESCONV_DIR", REPO.parent / "shared" / "data" / "esconv"))


@pytest.fixture(scope="session")
def backend():
    """The embedded SmolLM2-135M-Instruct, shared by the whole test session."""
    from agents.backends import make_backend

    return make_backend("embedded")


@pytest.fixture(scope="session")
def esconv_dir() -> Path:
    if not (ESCONV_DIR / "valid.jsonl").is_file():
        pytest.skip(f"ESConv data not found at {ESCONV_DIR} (set ESC_ENV_ESCONV_DIR); it is CC BY-NC and not shipped")
    return ESCONV_DIR
