"""Deprecated: the command line moved to :mod:`esc_cli` (``esc-env`` runs :func:`esc_cli.app.main`).

The CLI builds learners, so it sits above ``policies``; ``esc_env`` stays below them.  The old
names (``main``, ``build_parser``, ``load_config``, ``check_config_keys``, ``UserError``,
``TRAINERS``, ``STAGE_ID``, ``LLM_ID``) still work for one release, with a
``DeprecationWarning``, and so does ``python -m esc_env.cli``.  They are resolved lazily, so
importing ``esc_env`` never imports ``esc_cli``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

#: old name -> (new module, name there)
_MOVED = {
    "main": ("esc_cli.app", "main"),
    "build_parser": ("esc_cli.app", "build_parser"),
    "UserError": ("esc_cli.common", "UserError"),
    "STAGE_ID": ("esc_cli.common", "STAGE_ID"),
    "LLM_ID": ("esc_cli.common", "LLM_ID"),
    "load_config": ("esc_cli.config", "load_config"),
    "check_config_keys": ("esc_cli.config", "check_config_keys"),
    "TRAINERS": ("esc_cli.commands.train", "TRAINERS"),
}

__all__ = sorted(_MOVED)


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _MOVED[name]
    warnings.warn(f"esc_env.cli.{name} is deprecated and will be removed in the next release; use {module}.{attr}",
                  DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(module), attr)


if __name__ == "__main__":
    import sys

    warnings.warn("python -m esc_env.cli is deprecated; run esc-env or python -m esc_cli", DeprecationWarning, stacklevel=1)
    from esc_cli.app import main as _main

    sys.exit(_main())
