"""Reading dataset files: UTF-8 text, JSON lists and JSON lines, with located errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .record import DatasetError


def read_utf8(path: Path) -> str:
    """The file's text; bad UTF-8 raises :class:`DatasetError` naming the byte offset and line."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DatasetError(f"not valid UTF-8 at byte offset {e.start} ({e.reason})", source=str(path), line=line) from None


def raw_records(path: Path, expected: str) -> Iterator[tuple[int | None, Any]]:
    """``(line number or None, parsed record)`` for each record of a ``.jsonl`` or ``.json`` file.

    A ``.json`` file must hold one JSON list; a ``.jsonl`` file one JSON value per non-blank line.
    ``expected`` describes the accepted files in the error for any other suffix.
    """
    path = Path(path)
    if path.suffix not in (".json", ".jsonl"):
        raise DatasetError(f"unsupported file type {path.suffix!r}; {expected}", source=str(path))
    text = read_utf8(path)
    if not text.strip():
        raise DatasetError("file is empty", source=str(path))
    if path.suffix == ".jsonl":
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise DatasetError(f"invalid JSON: {e.msg} (column {e.colno})", source=str(path), line=lineno) from None
        return
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetError(f"invalid JSON: {e.msg} (column {e.colno})", source=str(path), line=e.lineno) from None
    if not isinstance(data, list):
        raise DatasetError(f"expected a JSON list of dialogues, got {type(data).__name__}", source=str(path))
    if not data:
        raise DatasetError("the list of dialogues is empty", source=str(path))
    for rec in data:
        yield None, rec


@dataclass(frozen=True)
class RecordLocation:
    """Where the record being parsed sits, to build :class:`DatasetError` messages."""

    source: str
    line: int | None
    record: int

    def error(self, message: str, field: str | None = None) -> DatasetError:
        return DatasetError(message, source=self.source, line=self.line, record=self.record, field=field)
