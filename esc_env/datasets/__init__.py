"""Recorded support-dialogue corpora: ESConv and ExTES (re-exported from :mod:`agents.datasets`).

The readers live in :mod:`agents.datasets`, below the environments, because personas are
built from them.  ``esc_env.datasets`` and its submodules (``esc_env.datasets.esconv``,
``.extes``, ``.files``, ``.record``) stay importable: they are the same module objects.
"""

import sys as _sys

from agents.datasets import (
    DatasetError,
    DialogueRecord,
    ESConvDialogue,
    ReferencePoint,
    esconv_prefixes,
    load_esconv,
    load_extes,
    resolve_esconv_dir,
)
from agents.datasets import esconv, extes, files, record

for _name, _module in (("esconv", esconv), ("extes", extes), ("files", files), ("record", record)):
    _sys.modules[f"{__name__}.{_name}"] = _module
del _name, _module

__all__ = [
    "DatasetError",
    "DialogueRecord",
    "ESConvDialogue",
    "ReferencePoint",
    "esconv_prefixes",
    "load_esconv",
    "load_extes",
    "resolve_esconv_dir",
]
