"""The :class:`Persona` record: who the simulated seeker is."""

from __future__ import annotations

from agents.errors import UserInputError
from dataclasses import asdict, dataclass, fields

from ..scales import INTENSITY_HIGH, INTENSITY_LOW

STYLE_TRAITS = ("guarded", "talkative", "anxious", "angry", "hopeless", "polite", "skeptical", "tearful", "terse")


class PersonaError(UserInputError):
    """A persona record is invalid.  The message names the file, the record and the field."""

    def __init__(self, message: str, *, source: str | None = None, record: "int | str | None" = None, field: str | None = None):
        where = []
        if source is not None:
            where.append(str(source))
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__((": ".join([", ".join(where), message])) if where else message)
        self.source, self.record, self.field = source, record, field


@dataclass(frozen=True)
class Persona:
    """A help-seeker for the simulated conversation.

    Attributes:
        id: unique name, e.g. ``"builtin/job-loss-01"`` or ``"esconv:valid/17"``.
        emotion_type: main emotion (ESConv labels: anxiety, depression, sadness, anger,
            fear, shame, disgust, nervousness, pain, jealousy, guilt).
        problem_type: what the trouble is about (ESConv: job crisis, breakup with partner,
            ongoing depression, problems with friends, academic pressure, ...).
        situation: a few sentences in the seeker's own voice.
        initial_intensity: emotional intensity at the start, 1 (mild) to 5 (intense), the
            ESConv survey scale.
        opening: the seeker's first utterance; ``None`` lets the LLM write it.
        background: private facts the seeker reveals gradually, one at a time.
        traits: style traits such as ``"guarded"`` or ``"talkative"``.
        source: where the persona came from (``"builtin"``, ``"esconv:valid"``, a path).
    """

    id: str
    emotion_type: str
    problem_type: str
    situation: str
    initial_intensity: int = 4
    opening: str | None = None
    background: tuple[str, ...] = ()
    traits: tuple[str, ...] = ()
    source: str = "user"

    def __post_init__(self) -> None:
        for name in ("id", "emotion_type", "problem_type", "situation"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                raise PersonaError(f"must be a non-empty string, got {v!r}", record=getattr(self, "id", None) or None, field=name)
        iv = self.initial_intensity
        if isinstance(iv, bool) or not isinstance(iv, int) or not INTENSITY_LOW <= iv <= INTENSITY_HIGH:
            raise PersonaError(f"must be an integer from 1 to 5, got {iv!r}", record=self.id, field="initial_intensity")
        if self.opening is not None and (not isinstance(self.opening, str) or not self.opening.strip()):
            raise PersonaError(f"must be a non-empty string or null, got {self.opening!r}", record=self.id, field="opening")
        for name in ("background", "traits"):
            v = getattr(self, name)
            if isinstance(v, str) or not all(isinstance(x, str) and x.strip() for x in v):
                raise PersonaError(f"must be a list of non-empty strings, got {v!r}", record=self.id, field=name)
            object.__setattr__(self, name, tuple(v))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["background"] = list(self.background)
        d["traits"] = list(self.traits)
        return d

    @classmethod
    def from_dict(cls, d: dict, *, source: str | None = None, record: "int | str | None" = None) -> "Persona":
        """Build from a plain dict; unknown or missing fields raise :class:`PersonaError`."""
        if not isinstance(d, dict):
            raise PersonaError(f"expected a mapping, got {type(d).__name__}", source=source, record=record)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise PersonaError(f"unknown field(s) {unknown}; known: {sorted(known)}", source=source, record=record, field=unknown[0])
        for name in ("id", "emotion_type", "problem_type", "situation"):
            if name not in d:
                raise PersonaError("is missing", source=source, record=record, field=name)
        try:
            return cls(**d)
        except PersonaError as e:
            raise PersonaError(str(e).split(": ", 1)[-1], source=source, record=record if record is not None else d.get("id"), field=e.field) from None
        except TypeError as e:
            raise PersonaError(str(e), source=source, record=record) from None
