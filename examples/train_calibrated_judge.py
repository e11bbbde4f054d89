"""Train the calibrated affect judge on ESConv's train split and write its weights
(the trainer is :mod:`agents.judges.train_calibrated`)::

    python examples/train_calibrated_judge.py                      # search, train, write shipped weights
    python examples/train_calibrated_judge.py --no-search --head ridge --k 2 --alpha 100
    python examples/train_calibrated_judge.py --out /tmp/my-judge --eval-valid
    # the politeness-free default judge (esconv-minilm-nopolite): the shipped configuration
    python examples/train_calibrated_judge.py --no-search --k 4 --mode concat --head ridge --alpha 3000 \\
        --phase-alpha 10000 --opening-views 2 --strip-politeness --out agents/judges/weights/esconv-minilm-nopolite --eval-valid
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.judges.train_calibrated import build_parser, main, parse_args  # noqa: E402

__all__ = ["build_parser", "main", "parse_args"]

if __name__ == "__main__":
    raise SystemExit(main())
