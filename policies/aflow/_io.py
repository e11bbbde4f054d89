"""Private alias of :mod:`esc_env.fileio` (the one atomic-write module and ``jsonable``).

AFlow's modules import :mod:`esc_env.fileio` directly; this module only keeps the old
private import path working.
"""

from __future__ import annotations

from esc_env.fileio import (  # noqa: F401
    atomic_write,
    jsonable,
    read_jsonl,
    save_safetensors_atomic,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)
