"""The rubric judge: rates the supporter's last utterance on quality dimensions, 1-5.

Each dimension is a short definition in our own words; the judge asks the model to rate
the last supporter utterance on each dimension and takes the expected value of the
digits ``1``-``5`` (renormalised over the five), so every score is a finite number in
``[1, 5]``.  All ``n * d`` (dialogue, dimension) prompts go into ONE
``backend.score`` call.
"""

from __future__ import annotations

import math
import numbers
from typing import Mapping, Sequence

import numpy as np

from .. import prompts as P
from ..backends.base import LLMBackend
from ..dialogue import Turn, format_dialogue

DEFAULT_DIMENSIONS: dict[str, str] = {
    "empathy": "the reply shows that the supporter understood how the seeker feels and cares about it",
    "information": "the reply adds something useful: a fitting question, idea, fact or resource, not empty filler",
    "naturalness": "the reply reads like a fluent, natural message from a real person in a chat",
    "strategic_fit": "the reply fits what the seeker needs at this point of the conversation (and carries out the intended strategy, if one is named)",
}
"""The default quality dimensions: name -> definition."""

AFLOW_RUBRIC_WEIGHTS: dict[str, float] = {"empathy": 0.1, "information": 0.1, "naturalness": 0.1, "strategic_fit": 0.2}
"""AFlow's weights of the default dimensions (empathy, information, naturalness, strategic fit):
the weights of :meth:`RubricJudge.reward` by default, and of AFlow's search reward."""

DIGITS = tuple(f" {k}" for k in range(1, 6))
NO_REPLY = "(the supporter has not said anything yet)"


def last_supporter_text(turns: Sequence[Turn]) -> tuple[list[Turn], str]:
    """Split a dialogue into (context before the last supporter turn, that turn's text)."""
    for i in range(len(turns) - 1, -1, -1):
        if turns[i].speaker == "supporter":
            return list(turns[:i]), turns[i].text
    return list(turns), ""


class RubricJudge:
    """Scores each dialogue's LAST supporter utterance on quality dimensions.

    Args:
        backend: the shared LLM backend.
        dimensions: name -> definition; default :data:`DEFAULT_DIMENSIONS`.
        context_turns: how many turns before the rated utterance the judge sees.
        max_chars: each utterance shown is cut to this many characters.
        weights: dimension -> weight of :meth:`reward`; default :data:`AFLOW_RUBRIC_WEIGHTS`
            with the default dimensions, else ``1 / d`` for each of the ``d`` dimensions.
            Every name must be a dimension; a dimension left out weighs 0.

    As a :class:`~agents.judges.base.Judge`: ``judge(dialogues)`` rates each dialogue's last
    supporter turn (``strategies`` defaults to that turn's strategy label) and
    ``reward(scores)`` is :func:`rubric_value` of the scores with :attr:`weights`.
    """

    def __init__(
        self,
        backend: LLMBackend,
        dimensions: Mapping[str, str] | None = None,
        context_turns: int = 6,
        max_chars: int = 500,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        dims = dict(DEFAULT_DIMENSIONS if dimensions is None else dimensions)
        if not dims:
            raise ValueError("RubricJudge needs at least one dimension")
        for name, definition in dims.items():
            if not isinstance(name, str) or not name.strip() or not isinstance(definition, str) or not definition.strip():
                raise ValueError(f"dimension names and definitions must be non-empty strings, got {name!r}: {definition!r}")
        self.backend = backend
        self.dimensions = dims
        if weights is None:
            weights = AFLOW_RUBRIC_WEIGHTS if dimensions is None else {d: 1.0 / len(dims) for d in dims}
        self.weights: dict[str, float] = check_rubric_weights(weights, "RubricJudge.weights", dims)
        self.context_turns = int(context_turns)
        self.max_chars = int(max_chars)

    def _cut(self, s: str) -> str:
        s = " ".join((s or "").split())
        return s if len(s) <= self.max_chars else s[: self.max_chars].rstrip() + " ..."

    def conversations(self, dialogues: Sequence[Sequence[Turn]], strategies: Sequence[str | None] | None = None) -> list[list[dict]]:
        """The ``n * d`` prompts, dialogue-major (all dimensions of dialogue 0 first)."""
        convs = []
        for i, d in enumerate(dialogues):
            context, reply = last_supporter_text(d)
            context = [Turn(t.speaker, self._cut(t.text)) for t in context]
            transcript = format_dialogue(context, last=self.context_turns) or "(no earlier messages)"
            strategy = strategies[i] if strategies is not None else None
            intended = P.RUBRIC_INTENDED.format(strategy=strategy) if strategy else ""
            for name, definition in self.dimensions.items():
                user = P.RUBRIC_USER.format(
                    transcript=transcript,
                    reply=self._cut(reply) or NO_REPLY,
                    intended=intended,
                    dimension=name.replace("_", " "),
                    definition=definition,
                )
                convs.append([{"role": "system", "content": P.RUBRIC_SYSTEM}, {"role": "user", "content": user}])
        return convs

    def judge(
        self,
        dialogues: Sequence[Sequence[Turn]],
        strategies: Sequence[str | None] | None = None,
    ) -> list[dict[str, float]]:
        """Scores of each dialogue's last supporter utterance.

        Args:
            dialogues: ``n`` dialogues; a dialogue without a supporter turn is rated as
                "nothing said" (still a finite score).
            strategies: optional ``n`` intended strategies, shown to the judge (they
                matter for ``strategic_fit``); by default the ``strategy`` label of each
                rated supporter turn (none when it has no label).

        Returns:
            ``n`` dicts ``{dimension: score}``, every score a finite float in ``[1, 5]``.
            ONE ``backend.score`` call over ``n * d`` prompts (none when ``n == 0``).
        """
        dialogues = list(dialogues)
        if strategies is not None and len(strategies) != len(dialogues):
            raise ValueError(f"got {len(strategies)} strategies for {len(dialogues)} dialogues")
        if not dialogues:
            return []
        if strategies is None:
            strategies = [rated_strategy(dlg) for dlg in dialogues]
        d = len(self.dimensions)
        res = self.backend.score(self.conversations(dialogues, strategies), list(DIGITS), assistant_prefix=P.RUBRIC_PREFIX)
        p = res.normalized()
        values = p @ np.arange(1.0, 6.0)
        values = np.clip(np.where(np.isfinite(values), values, 3.0), 1.0, 5.0).reshape(len(dialogues), d)
        names = list(self.dimensions)
        return [{name: float(row[j]) for j, name in enumerate(names)} for row in values]

    def reward(self, scores: Mapping[str, float]) -> float:
        """The reward number of one dialogue's scores: :func:`rubric_value` with :attr:`weights`."""
        return rubric_value(scores, self.weights)

    def __repr__(self) -> str:
        return f"RubricJudge(dimensions={list(self.dimensions)}, weights={self.weights})"


def rated_strategy(turns: Sequence[Turn]) -> str | None:
    """The strategy label of the last supporter turn (``None`` when there is none)."""
    for t in reversed(turns):
        if t.speaker == "supporter":
            return t.strategy
    return None


def rubric_value(scores: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """``sum_d w_d * (R_d - 3) / 2`` over the dimensions ``d`` of ``weights`` that ``scores`` has.

    Scores ``R_d`` are on the 1-5 scale, so each dimension adds ``w_d`` times a number in
    ``[-1, 1]``; with AFlow's weights (sum 0.5) the value lies in ``[-0.5, 0.5]``.
    """
    return float(sum(w * (float(scores[d]) - 3.0) / 2.0 for d, w in weights.items() if d in scores))


def check_rubric_weights(weights: Mapping[str, float], field: str, dimensions: Sequence[str] | None = None) -> dict[str, float]:
    """``weights`` as a dict of finite floats; a ``ValueError`` names ``field`` and the bad entry."""
    if not isinstance(weights, Mapping):
        raise ValueError(f"{field} must be a mapping dimension -> weight, got {weights!r}")
    out = {}
    for d, w in weights.items():
        if not isinstance(d, str):
            raise ValueError(f"{field} keys must be dimension names (str), got {d!r}")
        if dimensions is not None and d not in dimensions:
            raise ValueError(f"{field}[{d!r}]: {d!r} is not a dimension; dimensions: {list(dimensions)}")
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(float(w)):
            raise ValueError(f"{field}[{d!r}] must be a finite number, got {w!r}")
        out[d] = float(w)
    return out
