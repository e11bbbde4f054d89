"""RLFF-ESC end to end: simulate futures -> reward model -> GRPO -> evaluate
(the trainer is :mod:`policies.rlff.train`)::

    python examples/train_rlff.py --config examples/configs/rlff_tiny.yaml --out runs/rlff_tiny
    python examples/train_rlff.py --help                 # every option
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies.rlff.train import build_parser, main, parse_args  # noqa: E402

__all__ = ["build_parser", "main", "parse_args"]

if __name__ == "__main__":
    main()
