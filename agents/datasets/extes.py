"""Loader for ExTES (Zheng et al., 2023), in its published JSON format.

A file is a JSON list of dialogues::

    [{"scene": "Breakups or Divorce", "description": "...",
      "content": [{"User": "..."}, {"AI": "...", "AI Strategy": "Emotional Validation"}, ...]}]

``scene`` becomes ``problem_type`` and ``description`` becomes ``situation``.  ExTES has no
emotion label and no intensity survey, so those fields are ``None``.  A ``.jsonl`` file with
one such dialogue per line is accepted too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agents.dialogue import Turn

from .files import RecordLocation, raw_records
from .record import DialogueRecord

USER, AI, STRATEGY = "User", "AI", "AI Strategy"


def _text(v: Any, where: RecordLocation, field: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise where.error(f"expected a non-empty string, got {v!r}", field)
    return v.strip()


def _parse_item(item: Any, i: int, where: RecordLocation) -> Turn:
    f = f"content[{i}]"
    if not isinstance(item, dict):
        raise where.error(f"expected a mapping, got {type(item).__name__}", f)
    unknown = sorted(set(item) - {USER, AI, STRATEGY})
    if unknown:
        raise where.error(f"unknown key(s) {unknown}; expected {USER!r}, or {AI!r} with optional {STRATEGY!r}", f)
    if (USER in item) == (AI in item):
        raise where.error(f"needs exactly one of {USER!r} and {AI!r}, got keys {sorted(item)}", f)
    if USER in item:
        if STRATEGY in item:
            raise where.error(f"a {USER!r} turn cannot carry {STRATEGY!r}", f)
        return Turn("seeker", _text(item[USER], where, f"{f}.{USER}"))
    strategy = item.get(STRATEGY)
    if strategy is not None:
        strategy = _text(strategy, where, f"{f}.{STRATEGY}")
    return Turn("supporter", _text(item[AI], where, f"{f}.{AI}"), strategy)


def parse_extes_record(rec: Any, *, id: str, source: str = "extes", where: RecordLocation | None = None) -> DialogueRecord:
    """One ExTES dialogue, already parsed from JSON, as a :class:`DialogueRecord`.

    Raises:
        DatasetError: a field is missing or has the wrong type; the message locates it.
    """
    where = where or RecordLocation("<record>", None, 0)
    if not isinstance(rec, dict):
        raise where.error(f"expected a dialogue mapping, got {type(rec).__name__}")
    for name in ("scene", "description", "content"):
        if name not in rec:
            raise where.error("is missing", name)
    content = rec["content"]
    if not isinstance(content, list) or not content:
        raise where.error(f"expected a non-empty list of turns, got {content!r:.60}", "content")
    return DialogueRecord(
        id=id,
        emotion_type=None,
        problem_type=_text(rec["scene"], where, "scene"),
        situation=_text(rec["description"], where, "description"),
        turns=[_parse_item(item, i, where) for i, item in enumerate(content)],
        source=source,
    )


def load_extes(path: "str | os.PathLike") -> list[DialogueRecord]:
    """Load ExTES dialogues from a ``.json`` list (the published format) or a ``.jsonl`` file.

    Returns:
        The dialogues in file order, with ids ``"extes:<file stem>/<index>"`` (0-based).

    Raises:
        FileNotFoundError: no such file.
        DatasetError: the file is malformed; the message names the file, line or record and field.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ExTES file not found: {path}")
    name = path.stem
    return [
        parse_extes_record(rec, id=f"extes:{name}/{i}", source=f"extes:{name}", where=RecordLocation(str(path), line, i))
        for i, (line, rec) in enumerate(raw_records(path, "expected .json (the ExTES list) or .jsonl"))
    ]
