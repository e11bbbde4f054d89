"""The outcome judge: how does the seeker feel now compared with the start?

Four levels, as in PPDPP (Deng et al., 2024): ``worse``, ``same``, ``better``,
``solved``, with the values of :data:`OUTCOME_VALUES`.  The judge scores the four label
words after a question (ONE ``backend.score`` call for the batch), renormalises them
into probabilities and reports the most likely label and the expected value.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .. import prompts as P
from ..backends.base import LLMBackend
from ..dialogue import Turn, format_dialogue

OUTCOME_VALUES: dict[str, float] = {"worse": -1.0, "same": -0.5, "better": 0.5, "solved": 1.0}
"""Outcome label -> value (PPDPP's four levels)."""

OUTCOME_LABELS: tuple[str, ...] = tuple(OUTCOME_VALUES)


class OutcomeJudge:
    """Judges whether the seeker feels worse, the same, better, or that the problem is solved.

    Args:
        backend: the shared LLM backend.
        context_turns: how many of the most recent turns the judge reads (the first
            seeker turn is always shown too, as the point of comparison).
        max_chars: each utterance shown is cut to this many characters.

    As a :class:`~agents.judges.base.Judge`: ``reward(result)`` is the expected outcome
    ``result["value"]``, in ``[-1, 1]``.
    """

    def __init__(self, backend: LLMBackend, context_turns: int = 10, max_chars: int = 400) -> None:
        self.backend = backend
        self.context_turns = int(context_turns)
        self.max_chars = int(max_chars)

    def _transcript(self, turns: Sequence[Turn]) -> str:
        turns = [Turn(t.speaker, _cut(t.text, self.max_chars), t.strategy) for t in turns]
        recent = turns[-self.context_turns :] if self.context_turns > 0 else []
        first_seeker = next((i for i, t in enumerate(turns) if t.speaker == "seeker"), None)
        lines = []
        if first_seeker is not None and first_seeker < len(turns) - len(recent):
            lines.append(format_dialogue([turns[first_seeker]]))
            lines.append("...")
        if recent:
            lines.append(format_dialogue(recent))
        return "\n".join(lines) or "(nothing has been said yet)"

    def conversations(self, dialogues: Sequence[Sequence[Turn]]) -> list[list[dict]]:
        return [
            [
                {"role": "system", "content": P.OUTCOME_SYSTEM},
                {"role": "user", "content": P.OUTCOME_USER.format(transcript=self._transcript(d))},
            ]
            for d in dialogues
        ]

    def judge(self, dialogues: Sequence[Sequence[Turn]]) -> list[dict]:
        """The outcome of each dialogue.

        Returns:
            ``n`` dicts ``{"label": str, "value": float, "probs": {label: p}}``: ``label``
            is the most likely of :data:`OUTCOME_LABELS`, ``probs`` sum to 1 and ``value``
            is the expected value under them, a finite float in ``[-1, 1]``.  ONE
            ``backend.score`` call (none when ``n == 0``).
        """
        dialogues = list(dialogues)
        if not dialogues:
            return []
        res = self.backend.score(self.conversations(dialogues), [" " + lab for lab in OUTCOME_LABELS], assistant_prefix=P.OUTCOME_PREFIX)
        p = res.normalized()
        values = np.array([OUTCOME_VALUES[lab] for lab in OUTCOME_LABELS])
        out = []
        for row in p:
            row = np.where(np.isfinite(row), row, 0.0)
            row = row / row.sum() if row.sum() > 0 else np.full(len(row), 1.0 / len(row))
            value = float(np.clip(row @ values, -1.0, 1.0))
            out.append(
                {
                    "label": OUTCOME_LABELS[int(np.argmax(row))],
                    "value": value,
                    "probs": {lab: float(q) for lab, q in zip(OUTCOME_LABELS, row)},
                }
            )
        return out

    def reward(self, result: Mapping[str, Any]) -> float:
        """The reward number of one outcome: its expected value ``result["value"]``."""
        return float(result["value"])


def _cut(s: str, n: int) -> str:
    s = " ".join((s or "").split())
    return s if len(s) <= n else s[:n].rstrip() + " ..."
