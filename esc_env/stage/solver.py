"""The exact optimum of ``esc_env/ESCStage-v0``, by dynamic programming over the model's hidden state.

The solver reads the env only through public attributes (``dynamics``, ``strategies``,
``reward_config``, ``reward_fn``, ``personas``) and methods (``initial_state``,
``episode_state``), and takes every reward from the env's :class:`esc_env.rewards.RewardConfig`
through :func:`esc_env.rewards.reward_terms`, the function the env's own steps use.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..rewards import reward_terms
from .env import ESCStageEnv
from .model import Hidden, hidden_tuple, to_half_points

__all__ = ["OptimalPolicy", "optimal_policy"]

#: solutions, shared by every OptimalPolicy of the same model and reward table
_SOLUTIONS: dict[tuple, dict[tuple, tuple[float, int]]] = {}


class OptimalPolicy:
    """The exact optimum of the stage model, by dynamic programming over the hidden state.

    The hidden state is small (intensity in half-points, stage, progress, last strategy,
    repeat count, streak at 5, turn), so :meth:`value` solves the finite-horizon Bellman
    equation by memoised recursion over the states reachable from the start.  It reads
    the hidden state, so it is an upper bound for any policy that only sees observations.

    Args:
        env: an :class:`ESCStageEnv` (or a wrapper of one) with the default reward formula.

    Raises:
        ValueError: the env's reward is a user callable (its values are unknown in advance).
    """

    def __init__(self, env: ESCStageEnv) -> None:
        env = env.unwrapped  # type: ignore[assignment]
        self.env = env
        self.dynamics = env.dynamics
        if env.reward_fn is not None:
            raise ValueError("OptimalPolicy needs the default reward formula (reward=RewardConfig/dict), not a callable")
        self.n_strategies = len(env.strategies)
        #: the reward of a step from half-point intensity ``h`` to ``h1`` with its ending,
        #: from the env's RewardConfig (the model's only rewards)
        self.rewards: dict[tuple[int, int, bool, bool], float] = {
            (h, h1, success, gave_up): float(sum(reward_terms(env.reward_config, 1.0 + h / 2.0, 1.0 + h1 / 2.0,
                                                              success, gave_up).values()))
            for h in range(9) for h1 in range(9) for success in (False, True) for gave_up in (False, True)
            if not (success and gave_up)
        }
        dyn = self.dynamics
        model = (dyn.roles, dyn.noise, dyn.relief_h, dyn.max_turns, tuple(sorted(self.rewards.items())))
        self._cache: dict[tuple, tuple[float, int]] = _SOLUTIONS.setdefault(model, {})

    def _solve(self, s: Hidden, h0: int, q: float) -> tuple[float, int]:
        key = (s, h0, q)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        best_v, best_a = -math.inf, 0
        dyn, rewards = self.dynamics, self.rewards
        h = s[0]
        for a in range(dyn.n):
            e = dyn.effect(s, a)
            lands = tuple((l, p) for l, p in ((True, q), (False, 1.0 - q)) if p > 0) if e.builds else ((False, 1.0),)
            v = 0.0
            for eps, pe in dyn.eps_probs:
                for landed, pl in lands:
                    r = dyn.outcome(s, a, e, eps, landed, h0)
                    nxt = r.hidden
                    rew = rewards[(h, nxt[0], r.success, r.gave_up)]
                    if not (r.success or r.gave_up) and nxt[6] < dyn.max_turns:
                        rew += self._solve(nxt, h0, q)[0]
                    v += pe * pl * rew
            if v > best_v + 1e-12:
                best_v, best_a = v, a
        self._cache[key] = (best_v, best_a)
        return best_v, best_a

    def _solution(self, state: Any) -> tuple[float, int] | None:
        episode = self.env.episode_state(state)
        if episode.done:
            return None
        return self._solve(hidden_tuple(episode, self.n_strategies), to_half_points(episode.hidden["start_intensity"]),
                           float(episode.hidden["progress_prob"]))

    def value(self, state: Any) -> float:
        """The optimal expected return from ``state`` (a ``get_state()`` dict, an episode dict
        or an :class:`esc_env.state.EpisodeState`); 0 when the episode is over."""
        sol = self._solution(state)
        return 0.0 if sol is None else sol[0]

    def action(self, state: Any) -> int:
        """The optimal strategy index in ``state`` (as for :meth:`value`; 0 when it is over)."""
        sol = self._solution(state)
        return 0 if sol is None else sol[1]

    def expected_return(self) -> float:
        """The exact optimal expected return of an episode, personas drawn uniformly."""
        env = self.env
        return float(np.mean([self.value(env.initial_state(p, 0)) for p in env.personas.values()]))


def optimal_policy(env: ESCStageEnv) -> OptimalPolicy:
    """The dynamic-programming optimum of ``env`` (see :class:`OptimalPolicy`)."""
    return OptimalPolicy(env)
