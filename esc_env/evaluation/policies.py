"""Deprecated: policy specs moved to :mod:`esc_cli.policy_specs` (``SB3Policy`` to :mod:`policies.sb3`).

Resolving a policy spec builds learners, so it lives above ``policies``; ``esc_env`` stays
below them.  The old names still work for one release, with a ``DeprecationWarning``.  They
are resolved lazily, so importing ``esc_env`` never imports ``policies`` or ``esc_cli``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

#: old name -> (new module, name there)
_MOVED = {
    "PolicySpecError": ("esc_cli.policy_specs", "PolicySpecError"),
    "load_policy": ("esc_cli.policy_specs", "load_policy"),
    "POLICY_SPEC_HELP": ("esc_cli.policy_specs", "POLICY_SPEC_HELP"),
    "policy_slug": ("esc_cli.policy_specs", "policy_slug"),
    "SB3Policy": ("policies.sb3", "SB3Policy"),
}

__all__ = sorted(_MOVED)


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, attr = _MOVED[name]
    warnings.warn(f"esc_env.evaluation.policies.{name} is deprecated and will be removed in the next release; "
                  f"use {module}.{attr}", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(module), attr)
