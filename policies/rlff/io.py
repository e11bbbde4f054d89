"""Deprecated: the file helpers moved to :mod:`esc_env.fileio`.

Every name of this module still works for one release and warns with a
``DeprecationWarning``; the replacements are

==============================  ==================================================================
old (``policies.rlff.io``)      new (``esc_env.fileio``)
==============================  ==================================================================
``atomic_write_text(p, t)``     ``write_text_atomic(p, t)``
``atomic_write_json(p, o)``     ``write_json_atomic(p, o, indent=2, sort_keys=True)``
``atomic_save_safetensors``     ``save_safetensors_atomic``
``read_jsonl(p)``               ``read_jsonl(p, missing_ok=True)``
``append_jsonl_atomic``         ``append_jsonl_atomic``
==============================  ==================================================================
"""

from __future__ import annotations

import warnings
from typing import Any

from esc_env import fileio as _fileio

__all__ = ["atomic_write_text", "atomic_write_json", "atomic_save_safetensors", "read_jsonl", "append_jsonl_atomic"]


def _atomic_write_json(path: Any, obj: Any):
    return _fileio.write_json_atomic(path, obj, indent=2, sort_keys=True)


def _read_jsonl(path: Any) -> list:
    return _fileio.read_jsonl(path, missing_ok=True)


_MOVED = {
    "atomic_write_text": (_fileio.write_text_atomic, "esc_env.fileio.write_text_atomic"),
    "atomic_write_json": (_atomic_write_json, "esc_env.fileio.write_json_atomic(path, obj, indent=2, sort_keys=True)"),
    "atomic_save_safetensors": (_fileio.save_safetensors_atomic, "esc_env.fileio.save_safetensors_atomic"),
    "read_jsonl": (_read_jsonl, "esc_env.fileio.read_jsonl(path, missing_ok=True)"),
    "append_jsonl_atomic": (_fileio.append_jsonl_atomic, "esc_env.fileio.append_jsonl_atomic"),
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        func, new = _MOVED[name]
        warnings.warn(f"policies.rlff.io.{name} is deprecated and will be removed in the next release; use {new}",
                      DeprecationWarning, stacklevel=2)
        return func
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
