"""The dataset-neutral dialogue record and the error raised for malformed dataset files."""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.dialogue import Turn
from agents.errors import UserInputError


class DatasetError(UserInputError):
    """A dataset file is malformed (a :class:`~agents.errors.UserInputError`, so a ``ValueError``).  The message names the file, the line or record and the field.

    Attributes:
        source: the file.
        line: 1-based line number in the file, when known.
        record: index (0-based) or id of the record, when known.
        field: the offending field, e.g. ``"dialog[3].speaker"``.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        record: "int | str | None" = None,
        field: str | None = None,
    ):
        where = []
        if source is not None:
            where.append(str(source))
        if line is not None:
            where.append(f"line {line}")
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)
        self.source, self.line, self.record, self.field = source, line, record, field


@dataclass
class DialogueRecord:
    """One recorded support dialogue from a corpus (ESConv, ExTES, ...).

    Attributes:
        id: ``"<corpus>:<split or file stem>/<index>"``, e.g. ``"esconv:valid/17"``.
        emotion_type: the seeker's main emotion label; ``None`` where the corpus has none (ExTES).
        problem_type: what the trouble is about (ESConv ``problem_type``, ExTES ``scene``).
        situation: the seeker's own short description of the problem.
        experience_type: ESConv's ``"Current Experience"`` / ``"Previous Experience"``, else ``None``.
        initial_intensity: seeker's emotional intensity before the chat, 1-5, ``None`` if not surveyed.
        final_intensity: seeker's emotional intensity after the chat, 1-5, ``None`` if not surveyed.
        empathy: seeker's rating of the supporter's empathy, 1-5, or ``None``.
        relevance: seeker's rating of the relevance of the supporter's replies, 1-5, or ``None``.
        turns: the utterances in order.  Consecutive turns of one speaker stay separate.
            Supporter turns carry their strategy label (``None`` where unlabelled).
        feedback: per-turn seeker feedback, ``{index into turns: rating 1-5}``.  Only the
            canonical ESConv layout has it; empty otherwise.
        source: the corpus and split, e.g. ``"esconv:valid"`` or ``"extes:sample"``.
    """

    id: str
    emotion_type: str | None
    problem_type: str
    situation: str
    experience_type: str | None = None
    initial_intensity: int | None = None
    final_intensity: int | None = None
    empathy: int | None = None
    relevance: int | None = None
    turns: list[Turn] = field(default_factory=list)
    feedback: dict[int, int] = field(default_factory=dict)
    source: str = ""

    @property
    def strategies(self) -> list[str | None]:
        """The strategy of every supporter turn, in order."""
        return [t.strategy for t in self.turns if t.speaker == "supporter"]

    @property
    def intensity_change(self) -> int | None:
        """``final_intensity - initial_intensity`` (negative = the seeker felt better), or ``None``."""
        if self.initial_intensity is None or self.final_intensity is None:
            return None
        return self.final_intensity - self.initial_intensity
