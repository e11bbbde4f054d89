"""The protocol every LLM backend implements.

A backend is *batched by design*: every call takes a list of chat conversations and
answers all of them at once, so one model (or one server) serves many environments and
search branches.  Agents never call a model one conversation at a time.

A conversation is a list of chat messages ``{"role": "system"|"user"|"assistant",
"content": str}``.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

Message = dict  # {"role": str, "content": str}
Conversation = Sequence[Message]

VALID_ROLES = ("system", "user", "assistant")


class BackendError(RuntimeError):
    """A backend that cannot serve: a server that cannot be reached or died, an engine that
    failed to start, a model that cannot be loaded.  The message names the spec or URL.

    The command line prints such an error as one line; subclasses add details
    (:class:`agents.backends.openai_backend.BackendRequestError`).
    """


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings for :meth:`LLMBackend.generate`.

    ``temperature == 0`` means greedy decoding (deterministic on every backend that
    supports it).  ``seed`` makes sampling reproducible where the backend allows it: an
    int is every conversation's seed; a sequence of ints gives conversation ``i`` the seed
    ``seed[i]`` (its length must be the number of conversations), so that a row's reply
    depends on its own seed and prompt only, never on its batch-mates (the transformers and
    vLLM backends sample each row from its own random stream; OpenAI-compatible servers get
    the row's seed in the row's request).  ``n`` asks for several completions of each
    conversation (reply ``j`` of a row with seed ``s``: :func:`reply_seed` ``(s, j)``).

    Repetition controls (each backend maps what it supports and documents what it ignores):
    ``repetition_penalty`` (1.0 = off; multiplicative, as in transformers and vLLM),
    ``frequency_penalty`` and ``presence_penalty`` (0.0 = off; additive, as in the OpenAI API
    and vLLM, range [-2, 2]), ``no_repeat_ngram_size`` (0 = off; transformers only).

    ``max_words`` (``None`` = off): a reply ends once it holds more than this many words
    (runs of non-space characters), for an agent that keeps at most this many anyway; the
    text returned may end with the start of one word more.  Transformers stops such a row;
    backends that cannot stop on it ignore it (their ``max_new_tokens`` still bounds the reply).
    """

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: "int | tuple[int, ...] | None" = None
    n: int = 1
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    no_repeat_ngram_size: int = 0
    max_words: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_new_tokens, int) or self.max_new_tokens < 1:
            raise ValueError(f"GenerationParams.max_new_tokens must be a positive int, got {self.max_new_tokens!r}")
        if not (self.temperature >= 0.0):
            raise ValueError(f"GenerationParams.temperature must be >= 0, got {self.temperature!r}")
        if not (0.0 < self.top_p <= 1.0):
            raise ValueError(f"GenerationParams.top_p must be in (0, 1], got {self.top_p!r}")
        if not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"GenerationParams.n must be a positive int, got {self.n!r}")
        if not (self.repetition_penalty > 0.0):
            raise ValueError(f"GenerationParams.repetition_penalty must be > 0, got {self.repetition_penalty!r}")
        for name in ("frequency_penalty", "presence_penalty"):
            value = getattr(self, name)
            if not (-2.0 <= value <= 2.0):
                raise ValueError(f"GenerationParams.{name} must be in [-2, 2], got {value!r}")
        if not isinstance(self.no_repeat_ngram_size, int) or self.no_repeat_ngram_size < 0:
            raise ValueError(
                f"GenerationParams.no_repeat_ngram_size must be an int >= 0, got {self.no_repeat_ngram_size!r}"
            )
        if self.max_words is not None and (isinstance(self.max_words, bool) or not isinstance(self.max_words, int)
                                           or self.max_words < 1):
            raise ValueError(f"GenerationParams.max_words must be a positive int or None, got {self.max_words!r}")
        object.__setattr__(self, "seed", _as_seed(self.seed))
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))
        else:
            object.__setattr__(self, "stop", tuple(self.stop))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def row_seeds(self, n_rows: int) -> "list[int | None]":
        """The seed of each of ``n_rows`` conversations (an int seed is every row's seed).

        Raises:
            ValueError: ``seed`` is a sequence whose length is not ``n_rows``.
        """
        if isinstance(self.seed, tuple):
            if len(self.seed) != n_rows:
                raise ValueError(f"GenerationParams.seed has {len(self.seed)} per-row seeds for {n_rows} conversations")
            return list(self.seed)
        return [self.seed] * n_rows

    def replace(self, **changes) -> "GenerationParams":
        values = asdict(self)
        values.update(changes)
        return GenerationParams(**values)


def _as_seed(seed) -> "int | tuple[int, ...] | None":
    """``None``, an int, or a tuple of ints (one per conversation) from what a caller gave."""
    if seed is None:
        return None
    if isinstance(seed, (bool, np.bool_)):
        raise ValueError(f"GenerationParams.seed must be an int or a sequence of ints, got {seed!r}")
    if isinstance(seed, (int, np.integer)):
        return int(seed)
    if isinstance(seed, str) or not hasattr(seed, "__iter__"):
        raise ValueError(f"GenerationParams.seed must be an int or a sequence of ints, got {seed!r}")
    out = []
    for s in seed:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
            raise ValueError(f"GenerationParams.seed: every per-row seed must be an int, got {s!r}")
        out.append(int(s))
    return tuple(out)


def reply_seed(seed: int, reply: int) -> int:
    """The seed of reply ``reply`` (of ``n``) to a conversation whose seed is ``seed``:
    ``seed + reply`` (so reply 0 uses the row's seed; OpenAI-compatible servers get it as is)."""
    return int(seed) + int(reply)


@dataclass
class Completion:
    """One generated reply.

    Attributes:
        text: the generated text, cut before the first stop string.
        finish_reason: ``"stop"`` (end of message or a stop string) or ``"length"``
            (``max_new_tokens`` reached).
        prompt_tokens: tokens in the prompt.
        completion_tokens: tokens generated.
    """

    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class ScoreResult:
    """Log-probabilities of candidate continuations.

    Attributes:
        logprobs: array of shape ``(n_conversations, n_candidates)``; entry ``[i, j]`` is
            ``log p(candidates[j] | conversation i)`` summed over the candidate's tokens.
            Candidates a backend could not score get ``-inf``.
        method: how the numbers were obtained: ``"exact"`` (full forward pass over every
            candidate token), ``"first-token"`` (only each candidate's first token was
            scored, from ``top_logprobs``), or ``"sampled-estimate"`` (no
            log-probabilities; frequencies of sampled replies, smoothed).
    """

    logprobs: np.ndarray
    method: str = "exact"

    def normalized(self) -> np.ndarray:
        """Probabilities renormalised over the candidates, shape ``(n, k)``.

        Rows where every candidate is ``-inf`` become uniform, so the result is always
        finite.
        """
        lp = np.asarray(self.logprobs, dtype=np.float64)
        out = np.empty_like(lp)
        for i, row in enumerate(lp):
            finite = np.isfinite(row)
            if not finite.any():
                out[i] = 1.0 / len(row)
                continue
            shifted = np.where(finite, row - row[finite].max(), -np.inf)
            p = np.exp(shifted)
            out[i] = p / p.sum()
        return out


@dataclass
class Usage:
    """Running totals of what a backend has spent."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)

    def __sub__(self, other: "Usage") -> "Usage":
        return Usage(
            self.calls - other.calls,
            self.prompt_tokens - other.prompt_tokens,
            self.completion_tokens - other.completion_tokens,
            self.seconds - other.seconds,
        )


def validate_conversations(conversations: Sequence[Conversation]) -> list[list[Message]]:
    """Check the chat format and return plain lists; errors name the bad message."""
    if isinstance(conversations, (str, bytes)) or not isinstance(conversations, Sequence):
        raise TypeError("conversations must be a list of conversations (lists of {'role', 'content'} dicts)")
    checked: list[list[Message]] = []
    for i, conv in enumerate(conversations):
        if isinstance(conv, (str, bytes)) or not isinstance(conv, Sequence) or len(conv) == 0:
            raise ValueError(f"conversation {i} must be a non-empty list of messages, got {type(conv).__name__}")
        msgs = []
        for j, msg in enumerate(conv):
            if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
                raise ValueError(f"conversation {i}, message {j}: expected a dict with 'role' and 'content', got {msg!r}")
            if msg["role"] not in VALID_ROLES:
                raise ValueError(f"conversation {i}, message {j}: role must be one of {VALID_ROLES}, got {msg['role']!r}")
            if not isinstance(msg["content"], str):
                raise ValueError(f"conversation {i}, message {j}: content must be str, got {type(msg['content']).__name__}")
            msgs.append({"role": msg["role"], "content": msg["content"]})
        checked.append(msgs)
    return checked


def normalize_candidates(candidates, n_conversations: int) -> list[list[str]]:
    """Accept one candidate list for all conversations, or one list per conversation."""
    if isinstance(candidates, str):
        raise TypeError("candidates must be a list of strings (or a list of such lists), not a string")
    candidates = list(candidates)
    if candidates and all(isinstance(c, str) for c in candidates):
        per_conv = [list(candidates)] * n_conversations
    else:
        per_conv = [list(c) for c in candidates]
        if len(per_conv) != n_conversations:
            raise ValueError(f"got {len(per_conv)} candidate lists for {n_conversations} conversations")
    widths = {len(c) for c in per_conv}
    if len(widths) > 1:
        raise ValueError("every conversation must have the same number of candidates")
    if widths == {0}:
        raise ValueError("candidates must not be empty")
    for row in per_conv:
        for c in row:
            if not isinstance(c, str) or not c:
                raise ValueError(f"each candidate must be a non-empty string, got {c!r}")
    return per_conv


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` before the earliest stop string; return (text, whether it was cut)."""
    best = None
    for s in stop:
        if not s:
            continue
        k = text.find(s)
        if k != -1 and (best is None or k < best):
            best = k
    if best is None:
        return text, False
    return text[:best], True


class LLMBackend(ABC):
    """Batched chat LLM.  Subclasses implement :meth:`_generate` and :meth:`_score`.

    One instance is meant to be shared by every agent (seeker, judge, supporter) that
    uses the same model, so the model sits in memory once.
    """

    #: a short human-readable name, e.g. ``"transformers:/path"``
    name: str = "backend"

    def __init__(self) -> None:
        self.usage = Usage()
        self._usage_lock = threading.Lock()

    # ---- public API -------------------------------------------------------------
    def generate(self, conversations: Sequence[Conversation], params: GenerationParams | None = None) -> list[Completion]:
        """Generate one reply per conversation (``params.n`` replies each).

        Returns:
            ``len(conversations) * params.n`` completions, conversation-major: the ``n``
            replies to conversation 0 come first.
        """
        params = params or GenerationParams()
        convs = validate_conversations(conversations)
        if not convs:
            return []
        params.row_seeds(len(convs))  # a per-row seed list must match the conversations
        t0 = time.perf_counter()
        out = self._generate(convs, params)
        self._account(len(convs), out, time.perf_counter() - t0)
        if len(out) != len(convs) * params.n:
            raise RuntimeError(f"{self.name}: expected {len(convs) * params.n} completions, got {len(out)}")
        return out

    def score(self, conversations: Sequence[Conversation], candidates, assistant_prefix: str = "") -> ScoreResult:
        """Log-probability of each candidate as the start of the assistant's reply.

        Args:
            conversations: ``n`` chat conversations.
            candidates: one list of ``k`` strings for every conversation, or ``n`` lists
                of ``k`` strings.
            assistant_prefix: text the assistant reply is forced to begin with before the
                candidate (e.g. ``"Feeling:"``).

        Returns:
            :class:`ScoreResult` with ``logprobs`` of shape ``(n, k)``.
        """
        convs = validate_conversations(conversations)
        cands = normalize_candidates(candidates, len(convs))
        if not convs:
            return ScoreResult(np.zeros((0, 0)), "exact")
        t0 = time.perf_counter()
        res = self._score(convs, cands, assistant_prefix)
        with self._usage_lock:
            self.usage.calls += 1
            self.usage.seconds += time.perf_counter() - t0
        lp = np.asarray(res.logprobs, dtype=np.float64)
        if lp.shape != (len(convs), len(cands[0])):
            raise RuntimeError(f"{self.name}: score returned shape {lp.shape}, expected {(len(convs), len(cands[0]))}")
        lp = np.where(np.isnan(lp), -np.inf, lp)
        return ScoreResult(lp, res.method)

    def close(self) -> None:
        """Release resources (threads, connections).  Safe to call twice."""

    def __deepcopy__(self, memo: dict) -> "LLMBackend":
        """A backend is a shared handle (a model in memory, a server): copies share it.

        This lets ``gymnasium``'s ``env.spec.make()``, which deep-copies constructor
        arguments, make another env on the same model instead of failing.
        """
        return self

    # ---- to implement -----------------------------------------------------------
    @abstractmethod
    def _generate(self, conversations: list[list[Message]], params: GenerationParams) -> list[Completion]: ...

    @abstractmethod
    def _score(self, conversations: list[list[Message]], candidates: list[list[str]], assistant_prefix: str) -> ScoreResult: ...

    # ---- helpers ----------------------------------------------------------------
    def _account(self, n_convs: int, completions: list[Completion], seconds: float) -> None:
        with self._usage_lock:
            self.usage.calls += 1
            self.usage.seconds += seconds
            self.usage.completion_tokens += sum(c.completion_tokens for c in completions)
            self.usage.prompt_tokens += sum(c.prompt_tokens for c in completions)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"
