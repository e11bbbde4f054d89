"""Recorded support-dialogue corpora: ESConv and ExTES.

These readers sit in ``agents`` (the lowest layer) because personas are built from them;
``esc_env.datasets`` re-exports the same names.
"""

from .esconv import ESConvDialogue, ReferencePoint, esconv_prefixes, load_esconv, resolve_esconv_dir
from .extes import load_extes
from .record import DatasetError, DialogueRecord

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
