"""``esc_env/ESCStage-v0``: emotional-support conversation against a stage-model seeker (no LLM).

The seeker is a small stochastic model of the helping process (exploration -> comforting
-> action, after Hill's helping-skills model that ESConv follows).  It talks through
templates, so the environment runs thousands of steps per second and can be solved
exactly by dynamic programming over its hidden state; see :class:`ESCStageEnv`.

Modules: :mod:`~esc_env.stage.model` (constants, templates, dynamics),
:mod:`~esc_env.stage.env` (the Gymnasium env), :mod:`~esc_env.stage.solver` (the exact
optimum), :mod:`~esc_env.stage.reference` (reference policies and their returns).
``python -m esc_env.stage`` prints the computed returns of the reference policies.
"""

from __future__ import annotations

from .env import ESCStageEnv
from .model import (
    DEFAULT_PERSONAS,
    DEFAULT_PROGRESS_PROB,
    EFFECTS,
    FITS,
    FLOORS,
    GIVE_UP_RISE,
    HIDDEN_KEYS,
    MAX_USEFUL_REPEAT,
    MIN_START_INTENSITY,
    PATIENCE,
    PROGRESS_NEEDED,
    PROGRESS_PROB_BY_TRAIT,
    ROLES,
    STAGES,
    STRATEGY_ROLES,
    StageDynamics,
    progress_probability,
    start_intensity,
)
from .reference import PolicyReturn, format_returns, policy_returns, run_episodes, stage_oracle_action
from .solver import OptimalPolicy, optimal_policy


def main(argv=None) -> None:
    """``python -m esc_env.stage`` (see :mod:`esc_env.stage.__main__`)."""
    from .__main__ import main as _main

    _main(argv)


__all__ = [
    "ESCStageEnv",
    "STAGES",
    "ROLES",
    "STRATEGY_ROLES",
    "DEFAULT_PERSONAS",
    "HIDDEN_KEYS",
    "StageDynamics",
    "OptimalPolicy",
    "PolicyReturn",
    "optimal_policy",
    "policy_returns",
    "format_returns",
    "stage_oracle_action",
    "run_episodes",
]
