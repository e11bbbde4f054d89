"""Atomic file writes and the one ``jsonable`` of the project.

Every writer here goes through :func:`atomic_write`: the bytes go to a temporary file in
the destination folder, are flushed to disk, and the temporary file is renamed onto the
destination (``os.replace``, atomic on one file system).  A reader therefore sees the old
file or the new one, never half of one, and a writer that raises leaves the old file as it
was (the temporary file is removed).

:func:`jsonable` has one contract, used by every JSON file the project writes (run folders,
AFlow trees and checkpoints, RLFF records):

* the result is made of ``dict`` (string keys), ``list``, ``str``, ``int``, ``float``,
  ``bool`` and ``None`` only, and ``json.dumps(result, allow_nan=False)`` always succeeds;
* it equals what reading the written file back gives: ``json.loads(json.dumps(r)) == r``;
* numpy scalars and arrays become Python values and lists; tuples and sets become lists;
  ``pathlib`` paths become strings; dict keys are written as ``json.dumps`` writes them
  (``1 -> "1"``, ``True -> "true"``, ``None -> "null"``);
* **non-finite floats (NaN, +-inf) become ``None``** (JSON has no NaN; readers that need
  NaN back map ``None`` to NaN, as :func:`esc_env.evaluation.runs.load_run` does);
* anything else raises ``TypeError`` naming the type (no silent ``str(obj)``).

This module sits in ``esc_env`` because that is the lowest layer that writes files
(``esc_env.evaluation.runs``); ``policies.aflow`` and ``policies.rlff`` import it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path, PurePath
from typing import Any, Callable, Iterable

__all__ = [
    "jsonable",
    "atomic_write",
    "write_text_atomic",
    "write_json_atomic",
    "write_jsonl_atomic",
    "append_jsonl_atomic",
    "save_safetensors_atomic",
    "read_jsonl",
]


def jsonable(x: Any) -> Any:
    """A deep copy of ``x`` made of plain JSON values (contract in the module docstring).

    Args:
        x: nested dicts, lists, tuples, sets, numpy values, paths and JSON scalars.

    Returns:
        The JSON value; non-finite floats are ``None``.

    Raises:
        TypeError: ``x`` holds a value (or a dict key) JSON cannot represent.
    """
    if x is None or isinstance(x, (str, bool, int)):
        return x
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {_key(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in x]
    if isinstance(x, PurePath):
        return str(x)
    import numpy as np

    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, np.generic):
        return jsonable(x.item())
    raise TypeError(f"object of type {type(x).__name__} is not JSON serialisable")


def _key(k: Any) -> str:
    """A dict key as ``json.dumps`` writes it."""
    if isinstance(k, str):
        return k
    if hasattr(k, "item") and not isinstance(k, (list, dict)):  # numpy scalar
        k = k.item()
    if isinstance(k, bool):
        return "true" if k else "false"
    if k is None:
        return "null"
    if isinstance(k, int):
        return str(k)
    if isinstance(k, float):
        if not math.isfinite(k):
            raise TypeError(f"dict key {k!r} is not a finite number; JSON cannot hold it")
        return json.dumps(k)
    raise TypeError(f"dict key of type {type(k).__name__} is not JSON serialisable")


def atomic_write(path: "str | os.PathLike", write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, then rename ``tmp_path`` onto ``path``.

    The temporary file is a hidden sibling of ``path`` (same folder, so the rename is
    atomic); the folder is created when missing.  If ``write`` raises, the temporary file
    is removed, ``path`` keeps its old content, and the exception propagates.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_text_atomic(path: "str | os.PathLike", text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically, fsynced before the rename."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")

    def _write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    return atomic_write(path, _write)


def write_json_atomic(path: "str | os.PathLike", obj: Any, indent: int | None = None, sort_keys: bool = False) -> Path:
    """Write ``jsonable(obj)`` as strict JSON (no NaN) to ``path`` atomically, ending in a newline.

    ``indent`` and ``sort_keys`` are passed to ``json.dumps`` (default: one compact line).
    """
    text = json.dumps(jsonable(obj), indent=indent, sort_keys=sort_keys, ensure_ascii=False, allow_nan=False)
    return write_text_atomic(path, text + "\n")


def write_jsonl_atomic(path: "str | os.PathLike", rows: Iterable[Any]) -> Path:
    """Write one ``jsonable(row)`` per line to ``path`` atomically (replacing the file)."""
    lines = [json.dumps(jsonable(r), ensure_ascii=False, allow_nan=False) for r in rows]
    return write_text_atomic(path, "".join(line + "\n" for line in lines))


def append_jsonl_atomic(path: "str | os.PathLike", rows: Iterable[Any]) -> Path:
    """Append rows to a JSONL file by rewriting it through a temporary copy.

    The file stays valid if the process dies mid-write.  Meant for files of up to some
    megabytes (the old content is read and written again).
    """
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    new = "".join(json.dumps(jsonable(r), ensure_ascii=False, allow_nan=False) + "\n" for r in rows)
    return write_text_atomic(path, old + new)


def read_jsonl(path: "str | os.PathLike", missing_ok: bool = False) -> list:
    """The records of a JSONL file, one per non-empty line.

    A malformed *last* line (a write that was interrupted before this module was used)
    is skipped; a malformed line elsewhere raises ``ValueError`` naming the file and line.

    Args:
        path: the file.
        missing_ok: return ``[]`` when the file does not exist (else ``FileNotFoundError``).
    """
    path = Path(path)
    if missing_ok and not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i == last:
                break
            raise ValueError(f"{path}, line {i + 1}: invalid JSON ({e.msg})") from None
    return out


def save_safetensors_atomic(path: "str | os.PathLike", tensors: dict, metadata: "dict[str, str] | None" = None) -> Path:
    """``safetensors.torch.save_file`` through a temporary file (tensors made contiguous, on CPU)."""
    from safetensors.torch import save_file

    clean = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(clean, tmp, metadata=metadata))
