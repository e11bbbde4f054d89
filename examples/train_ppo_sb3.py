"""PPO (Stable-Baselines3) over support strategies on ESCStage-v0, then an evaluation
against the random policy and the optimum (the trainer is :mod:`policies.sb3.train`)::

    python examples/train_ppo_sb3.py                        # ~2-3 minutes on 2 CPU cores
    python examples/train_ppo_sb3.py --env-id esc_env/ESC-v0 --env-kwargs '{"backend": "embedded"}'
    python examples/train_ppo_sb3.py --help                 # every option
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies.sb3.train import build_parser, main, parse_args  # noqa: E402

__all__ = ["build_parser", "main", "parse_args"]

if __name__ == "__main__":
    main()
