"""Stable-Baselines3 PPO over support strategies.

- :mod:`.policy`: :class:`SB3Policy`, a saved model acting on encoded observations
  (``esc-env evaluate --policy sb3:<file.zip>``).
- :mod:`.train`: the PPO trainer (``esc-env train ppo --config FILE``, ``examples/train_ppo_sb3.py``).
"""

from .policy import SB3LoadError, SB3Policy

__all__ = ["SB3LoadError", "SB3Policy"]
