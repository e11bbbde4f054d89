"""AFlow end to end: MCTS search -> prefix records -> AFPO training -> evaluation
(the trainer is :mod:`policies.aflow.train`)::

    # the stage environment (no LLM), larger settings, with every ablation:
    python examples/train_aflow.py --config examples/configs/aflow_stage.yaml \\
        --ablations none,no-flow-balance,no-mcts,outcome-only
    # the LLM environment with the embedded model, tiny settings (CPU, a few minutes):
    python examples/train_aflow.py --config examples/configs/aflow_esc_tiny.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies.aflow.train import build_parser, main, parse_args  # noqa: E402

__all__ = ["build_parser", "main", "parse_args"]

if __name__ == "__main__":
    main(sys.argv[1:])
