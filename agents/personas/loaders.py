"""Persona sources: user files (YAML/JSON/JSONL), the built-in set, ESConv and ExTES.

Every loader returns ``list[Persona]``.  Errors in user files are :class:`PersonaError`
naming the file, the record (index, plus id when known) and the field.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from agents.datasets import DialogueRecord, load_esconv, load_extes

from .extract import pick_background, pick_opening
from .persona import Persona, PersonaError

PERSONA_SUFFIXES = (".yaml", ".yml", ".json", ".jsonl")
DEFAULT_INTENSITY = 4
_LIST_FIELDS = ("background", "traits")


# ----------------------------------------------------------------------------- user files
def _read_text(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise PersonaError(f"not valid UTF-8 at byte offset {e.start} (line {line}): {e.reason}", source=str(path)) from None


def _parse(src: str, suffix: str, text: str) -> list[tuple[str, Any]]:
    """``(record label, raw record)`` pairs from the text of file ``src`` of type ``suffix``."""
    if suffix == ".jsonl":
        out: list[tuple[str, Any]] = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append((f"{len(out)} (line {lineno})", json.loads(line)))
            except json.JSONDecodeError as e:
                raise PersonaError(
                    f"invalid JSON on line {lineno}, column {e.colno}: {e.msg}", source=src, record=len(out)
                ) from None
        return out
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise PersonaError(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}", source=src) from None
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e)
            raise PersonaError(f"invalid YAML{at}: {problem}", source=src) from None
        if data is None:
            raise PersonaError("file is empty (only comments or blank lines)", source=src)
    if isinstance(data, dict):
        extra = sorted(set(data) - {"personas"})
        if "personas" not in data or extra:
            raise PersonaError(
                f"a top-level mapping must have exactly one key 'personas' (a list); got keys {sorted(data)}", source=src
            )
        data = data["personas"]
    if not isinstance(data, list):
        raise PersonaError(
            f"expected a list of personas (or a mapping with key 'personas'), got {type(data).__name__}", source=src
        )
    return [(str(i), rec) for i, rec in enumerate(data)]


def _check_record(rec: dict, src: str, label: str) -> None:
    """Type checks that :meth:`Persona.from_dict` would report less precisely."""
    for name in _LIST_FIELDS:
        if name in rec and not isinstance(rec[name], (list, tuple)):
            got = f"{type(rec[name]).__name__} {rec[name]!r:.60}"
            raise PersonaError(f"must be a list of non-empty strings, got {got}", source=src, record=label, field=name)
    if "initial_intensity" in rec:
        v = rec["initial_intensity"]
        if isinstance(v, bool) or not isinstance(v, int):
            got = f"{type(v).__name__} {v!r}"
            raise PersonaError(f"must be an integer from 1 to 5, got {got}", source=src, record=label, field="initial_intensity")


def personas_from_records(records: Iterable[tuple[str, Any]], source: str, default_source: str | None = None) -> list[Persona]:
    """Validate raw persona mappings and build :class:`Persona` objects.

    Args:
        records: ``(record label, mapping)`` pairs; the label names the record in errors.
        source: the file name used in error messages.
        default_source: the ``source`` field given to records that have none (default: ``source``).

    Raises:
        PersonaError: a record is invalid, or two records share an id.
    """
    out: list[Persona] = []
    first_seen: dict[str, str] = {}
    for label, rec in records:
        if not isinstance(rec, dict):
            raise PersonaError(f"expected a mapping of persona fields, got {type(rec).__name__}", source=source, record=label)
        full = label if not isinstance(rec.get("id"), str) else f"{label} (id {rec['id']!r})"
        _check_record(rec, source, full)
        rec = dict(rec)
        rec.setdefault("source", default_source if default_source is not None else source)
        p = Persona.from_dict(rec, source=source, record=full)
        if p.id in first_seen:
            raise PersonaError(
                f"duplicate id {p.id!r}, first used by record {first_seen[p.id]}", source=source, record=full, field="id"
            )
        first_seen[p.id] = label
        out.append(p)
    if not out:
        raise PersonaError("no personas in the file", source=source)
    return out


def load_persona_file(path: "str | os.PathLike") -> list[Persona]:
    """Load personas from a user file.

    Formats (chosen by suffix):
        ``.yaml``/``.yml`` and ``.json``: a list of persona mappings, or a mapping with the
        single key ``personas`` holding that list.  ``.jsonl``: one persona mapping per line
        (blank lines are skipped).

    Each mapping has the :class:`Persona` fields: required ``id``, ``emotion_type``,
    ``problem_type``, ``situation``; optional ``initial_intensity`` (1-5, default 4),
    ``opening``, ``background`` and ``traits`` (lists of strings) and ``source`` (default:
    the file path).

    Raises:
        FileNotFoundError: no such file.
        PersonaError: unsupported suffix, bad UTF-8 (with byte offset), invalid YAML/JSON,
            an empty file, or an invalid record (missing, unknown or mistyped field,
            intensity out of range, duplicate id); the message names file, record and field.
    """
    path = Path(path)
    if path.suffix.lower() not in PERSONA_SUFFIXES:
        raise PersonaError(f"unsupported file type {path.suffix!r}; expected one of {list(PERSONA_SUFFIXES)}", source=str(path))
    if not path.is_file():
        raise FileNotFoundError(f"persona file not found: {path}")
    text = _read_text(path)
    if not text.strip():
        raise PersonaError("file is empty", source=str(path))
    return personas_from_records(_parse(str(path), path.suffix.lower(), text), str(path))


def dump_persona_file(personas: Iterable[Persona], path: "str | os.PathLike") -> Path:
    """Write personas to ``path`` (.yaml/.yml, .json or .jsonl) so :func:`load_persona_file` reads them back."""
    path = Path(path)
    rows = [p.to_dict() for p in personas]
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        text = yaml.safe_dump({"personas": rows}, sort_keys=False, allow_unicode=True, width=100)
    elif suffix == ".json":
        text = json.dumps(rows, ensure_ascii=False, indent=2) + "\n"
    elif suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    else:
        raise ValueError(f"{path}: unsupported file type {path.suffix!r}; expected one of {list(PERSONA_SUFFIXES)}")
    path.write_text(text, encoding="utf-8")
    return path


@lru_cache(maxsize=1)
def _builtin() -> tuple[Persona, ...]:
    src = "agents/personas/builtin.yaml"
    text = (resources.files(__package__) / "builtin.yaml").read_text(encoding="utf-8")
    return tuple(personas_from_records(_parse(src, ".yaml", text), src, default_source="builtin"))


def load_builtin_personas() -> list[Persona]:
    """The personas shipped with esc-env (``agents/personas/builtin.yaml``), ids ``builtin/...``."""
    return list(_builtin())


# ----------------------------------------------------------------------------- corpora
def persona_from_dialogue(
    d: "DialogueRecord",
    *,
    emotion_type: str | None = None,
    default_intensity: int = DEFAULT_INTENSITY,
    max_background: int = 3,
) -> Persona:
    """A persona from one recorded dialogue: same id, labels and situation; the survey's initial
    intensity (``default_intensity`` when absent); the first substantive seeker utterance as
    ``opening`` and up to ``max_background`` fact-bearing later ones as ``background``
    (see :mod:`agents.personas.extract`).  ``emotion_type`` overrides the record's label."""
    opening = pick_opening(d.turns)
    emotion = emotion_type or d.emotion_type
    try:
        return Persona(
            id=d.id,
            emotion_type=emotion,  # type: ignore[arg-type]
            problem_type=d.problem_type,
            situation=d.situation,
            initial_intensity=d.initial_intensity if d.initial_intensity is not None else default_intensity,
            opening=opening,
            background=pick_background(d.turns, opening, k=max_background),
            source=d.source or "corpus",
        )
    except PersonaError as e:
        raise PersonaError(str(e).split(": ", 1)[-1], source=d.source or None, record=d.id, field=e.field) from None


def _records(source: Any, loader: Any, **kw: Any) -> "list[DialogueRecord]":
    if isinstance(source, (str, os.PathLike)):
        return loader(source, **kw)
    return list(source)


def personas_from_esconv(
    source: "str | os.PathLike | Sequence[DialogueRecord]" = "valid",
    *,
    data_dir: "str | os.PathLike | None" = None,
    default_intensity: int = DEFAULT_INTENSITY,
    max_background: int = 3,
) -> list[Persona]:
    """Personas from ESConv dialogues: a split name (``"train"``, ``"valid"``), a file (see
    :func:`agents.datasets.load_esconv`) or already-loaded dialogues.  Ids and ``source``
    follow the dialogues (``"esconv:valid/17"``, ``"esconv:valid"``)."""

    kw = {"data_dir": data_dir} if isinstance(source, str) else {}
    return [
        persona_from_dialogue(d, default_intensity=default_intensity, max_background=max_background)
        for d in _records(source, load_esconv, **kw)
    ]


# ESConv emotion labels guessed from words of an ExTES description (which has no label).
EMOTION_KEYWORDS: dict[str, tuple[str, ...]] = {
    "anxiety": ("anxious", "anxiety", "worried", "worries", "worry", "panic", "stress", "stressed", "overwhelmed"),
    "fear": ("afraid", "scared", "terrified", "fear", "frightened"),
    "depression": ("depressed", "depression", "hopeless", "empty", "numb", "worthless"),
    "sadness": ("sad", "grief", "grieving", "heartbroken", "lonely", "loneliness", "miss", "misses", "mourning"),
    "anger": ("angry", "furious", "anger", "resent", "resentful", "frustrated", "frustration", "betrayed"),
    "shame": ("ashamed", "shame", "embarrassed", "humiliated"),
    "guilt": ("guilty", "guilt", "regret"),
    "jealousy": ("jealous", "jealousy", "envy", "envious"),
    "nervousness": ("nervous",),
}
_KEYWORD_LABEL = {w: label for label, ws in EMOTION_KEYWORDS.items() for w in ws}


def guess_emotion(text: str, default: str = "distress") -> str:
    """The ESConv emotion label of the first keyword of :data:`EMOTION_KEYWORDS` in ``text``, else ``default``."""
    for w in re.findall(r"[a-z]+", text.lower()):
        if w in _KEYWORD_LABEL:
            return _KEYWORD_LABEL[w]
    return default


def personas_from_extes(
    source: "str | os.PathLike | Sequence[DialogueRecord]",
    *,
    default_emotion: str = "distress",
    default_intensity: int = DEFAULT_INTENSITY,
    max_background: int = 3,
) -> list[Persona]:
    """Personas from ExTES dialogues (a file, see :func:`agents.datasets.load_extes`, or loaded
    records).  ExTES has no emotion label or intensity: the emotion is guessed from the
    description with :func:`guess_emotion` (``default_emotion`` when no keyword matches) and
    the intensity is ``default_intensity``.  ``problem_type`` is the ExTES ``scene``."""

    return [
        persona_from_dialogue(
            d,
            emotion_type=d.emotion_type or guess_emotion(d.situation, default_emotion),
            default_intensity=default_intensity,
            max_background=max_background,
        )
        for d in _records(source, load_extes)
    ]
