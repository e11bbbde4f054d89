"""A backend whose replies and scores are given in advance: the smallest complete backend.

:class:`ScriptedBackend` implements the two steps of the template method of
:class:`~agents.backends.base.LLMBackend` (``_generate`` and ``_score``); the public
``generate`` / ``score`` of the base class still validate the conversations and
candidates, count usage and check the shapes, exactly as for a real model.  That makes it
the example to copy when you write a backend, and the tool for unit tests of the
environment's branches (relief, give-up, thresholds, reward terms) whose LLM outputs must
be exact::

    seeker = ScriptedBackend(replies=["It's still hard.", "Thanks, I feel better now [RELIEVED]"])
    judge = ScriptedBackend(scores=[[-9, -9, -9, 0, -9],    # the opening: " 4"
                                    [-9, 0, -9, -9, -9]])   # after step 1: " 2"

A script is either a sequence, consumed in order (one reply per completion, one row of
log-probabilities per scored conversation), or a function called for each item.  When a
sequence runs out the backend raises :class:`ScriptExhausted` (a
:class:`~agents.backends.base.BackendError`) naming the call, never a made-up answer.
"""

from __future__ import annotations

import threading
from typing import Callable, Sequence, Union

import numpy as np

from .base import BackendError, Completion, GenerationParams, LLMBackend, Message, ScoreResult, cut_at_stop

#: ``replies``: texts in order, or ``f(conversation) -> text``
ReplyScript = Union[Sequence[str], Callable[[list[Message]], str]]
#: ``scores``: rows of ``k`` log-probabilities in order, or ``f(conversation, candidates, prefix) -> k floats``
ScoreScript = Union[Sequence[Sequence[float]], Callable[[list[Message], list[str], str], Sequence[float]]]


class ScriptExhausted(BackendError):
    """A scripted backend was asked for more replies or score rows than its script holds."""


class ScriptedBackend(LLMBackend):
    """Replies and log-probabilities given in advance.

    Args:
        replies: texts returned by ``generate`` in order (conversation-major, ``n`` per
            conversation), or a function of the conversation.  Stop strings of the
            :class:`GenerationParams` are applied as a real backend would.
        scores: rows of log-probabilities returned by ``score`` in order, one row of ``k``
            values per conversation (``k`` = its number of candidates), or a function
            ``f(conversation, candidates, assistant_prefix)`` returning ``k`` values.
        name: shown in ``repr`` and errors.

    Attributes:
        calls: every call made, in order, as ``("generate" | "score", conversations)``,
            so a test can check what each role was asked.
        replies_left, scores_left: items of a sequence script not used yet (``None`` for a
            function script).

    ``completion_tokens`` / ``prompt_tokens`` count white-space separated words, so usage
    numbers are deterministic.
    """

    def __init__(self, replies: ReplyScript = (), scores: ScoreScript = (), name: str = "scripted") -> None:
        super().__init__()
        self.name = name
        self._replies = replies if callable(replies) else [self._check_reply(r) for r in replies]
        self._scores = scores if callable(scores) else [self._check_row(r) for r in scores]
        self._next_reply = 0
        self._next_row = 0
        self._lock = threading.Lock()
        self.calls: list[tuple[str, list[list[Message]]]] = []

    @staticmethod
    def _check_reply(r: object) -> str:
        if not isinstance(r, str):
            raise TypeError(f"ScriptedBackend: every reply must be a str, got {r!r}")
        return r

    @staticmethod
    def _check_row(r: object) -> list[float]:
        if isinstance(r, (str, bytes)) or not isinstance(r, Sequence) or not r:
            raise TypeError(f"ScriptedBackend: every score row must be a non-empty sequence of floats, got {r!r}")
        return [float(x) for x in r]

    @property
    def replies_left(self) -> int | None:
        return None if callable(self._replies) else len(self._replies) - self._next_reply

    @property
    def scores_left(self) -> int | None:
        return None if callable(self._scores) else len(self._scores) - self._next_row

    # ---- the template method's two steps ------------------------------------------------
    def _generate(self, conversations: list[list[Message]], params: GenerationParams) -> list[Completion]:
        with self._lock:
            self.calls.append(("generate", conversations))
            out = []
            for conv in conversations:
                for _ in range(params.n):
                    raw = self._reply(conv)
                    text, _ = cut_at_stop(raw, params.stop)
                    words = text.split()
                    finish = "length" if len(words) > params.max_new_tokens else "stop"
                    text = " ".join(words[: params.max_new_tokens]) if finish == "length" else text
                    out.append(Completion(text, finish, _words(conv), min(len(words), params.max_new_tokens)))
            return out

    def _score(self, conversations: list[list[Message]], candidates: list[list[str]], assistant_prefix: str) -> ScoreResult:
        with self._lock:
            self.calls.append(("score", conversations))
            rows = []
            for conv, cands in zip(conversations, candidates):
                row = self._row(conv, cands, assistant_prefix)
                if len(row) != len(cands):
                    raise ValueError(f"{self.name}: a score row has {len(row)} values for {len(cands)} candidates {cands}")
                rows.append(row)
            return ScoreResult(np.asarray(rows, dtype=np.float64), "exact")

    # ---- the scripts ------------------------------------------------------------------
    def _reply(self, conv: list[Message]) -> str:
        if callable(self._replies):
            return self._check_reply(self._replies(conv))
        if self._next_reply >= len(self._replies):
            raise ScriptExhausted(f"{self.name}: the script has {len(self._replies)} replies and all are used; "
                                  f"generate was asked for another (last message: {conv[-1]['content'][:80]!r})")
        self._next_reply += 1
        return self._replies[self._next_reply - 1]

    def _row(self, conv: list[Message], cands: list[str], prefix: str) -> list[float]:
        if callable(self._scores):
            return self._check_row(self._scores(conv, cands, prefix))
        if self._next_row >= len(self._scores):
            raise ScriptExhausted(f"{self.name}: the script has {len(self._scores)} score rows and all are used; "
                                  f"score was asked for another (candidates {cands[:5]})")
        self._next_row += 1
        return self._scores[self._next_row - 1]


def _words(conv: list[Message]) -> int:
    return sum(len(m["content"].split()) for m in conv)
