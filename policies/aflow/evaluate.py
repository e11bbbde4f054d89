"""Seeded evaluation of strategy policies through ``reset``/``step`` only."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from esc_env.evaluation.loop import play_episodes
from esc_env.evaluation.metrics import Interval, mean_ci, proportion_ci


@dataclass
class EvalResult:
    """Returns of ``n`` seeded episodes, with 95% confidence intervals.

    The intervals are the project's one formula (:mod:`esc_env.evaluation.metrics`):
    Student's t for the mean return, Wilson for the success rate, so a policy gets the
    same interval here as from ``esc-env evaluate``.
    """

    name: str
    returns: np.ndarray
    successes: np.ndarray
    gave_up: np.ndarray
    turns: np.ndarray
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.returns)

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def return_ci(self) -> Interval:
        """Mean return with its 95% Student-t interval (:func:`~esc_env.evaluation.metrics.mean_ci`)."""
        return mean_ci(self.returns) if self.n else Interval(float("nan"), float("nan"), float("nan"), 0)

    @property
    def ci95(self) -> float:
        """Half-width of :attr:`return_ci` (``nan`` for fewer than 2 episodes)."""
        iv = self.return_ci
        return float((iv.high - iv.low) / 2.0)

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.successes))

    @property
    def success_ci(self) -> Interval:
        """Success rate with its 95% Wilson interval (:func:`~esc_env.evaluation.metrics.proportion_ci`)."""
        return proportion_ci(self.successes) if self.n else Interval(float("nan"), float("nan"), float("nan"), 0)

    def as_dict(self) -> dict:
        """Plain-data summary; ``return_ci``/``success_ci`` are ``[low, high]``, ``return_ci95`` the
        t-interval's half-width and ``success_ci95`` half the Wilson interval's width."""
        r, s = self.return_ci, self.success_ci
        return {"name": self.name, "episodes": self.n, "mean_return": self.mean, "return_ci95": self.ci95,
                "return_ci": [r.low, r.high], "success_rate": self.success_rate,
                "success_ci95": float((s.high - s.low) / 2.0), "success_ci": [s.low, s.high],
                "give_up_rate": float(np.mean(self.gave_up)), "mean_turns": float(np.mean(self.turns)), "note": self.note, **self.extra}

    def row(self) -> str:
        d = self.as_dict()
        return (f"| {self.name:<26} | {d['mean_return']:+.3f} +- {d['return_ci95']:.3f} | {100 * d['success_rate']:5.1f}% "
                f"| {100 * d['give_up_rate']:5.1f}% | {d['mean_turns']:4.2f} | {self.note} |")


def mean_ci95(x: np.ndarray) -> tuple[float, float]:
    """Deprecated: use :func:`esc_env.evaluation.metrics.mean_ci`.

    Mean and the half-width of its 95% Student-t interval (``nan`` for n < 2); before this
    release the half-width was the normal approximation ``1.96 * sd / sqrt(n)``.
    """
    warnings.warn("policies.aflow.mean_ci95 is deprecated and will be removed in the next release; "
                  "use esc_env.evaluation.metrics.mean_ci", DeprecationWarning, stacklevel=2)
    x = np.asarray(x, dtype=np.float64)
    if len(x) == 0:
        return float("nan"), float("nan")
    iv = mean_ci(x)
    return iv.value, float((iv.high - iv.low) / 2.0)


def run_policy(env: Any, act: Callable[[Mapping[str, Any]], int], n_episodes: int, seed: int = 0, name: str = "policy",
               note: str = "", act_state: Callable[[dict], int] | None = None, progress: bool = False) -> EvalResult:
    """Play ``n_episodes`` episodes seeded ``seed .. seed + n - 1`` (personas from the env's RNG).

    ``act(observation) -> action``; or ``act_state(env_state) -> action`` for oracles that
    read the hidden state through ``get_state`` (then ``act`` is ignored).
    """
    core = getattr(env, "unwrapped", env)
    if act_state is not None:
        st = play_episodes(env, lambda obs, _: int(act_state(core.get_state())), n_episodes, seed, with_state=False,
                           progress=progress, desc=name)
    else:
        st = play_episodes(env, lambda obs, _: int(act(obs)), n_episodes, seed, with_state=False, progress=progress, desc=name)
    return EvalResult(name, st.returns, st.successes, st.gave_up, st.turns, note)


def random_policy(n_strategies: int, seed: int = 0) -> Callable[[Mapping[str, Any]], int]:
    """A uniformly random strategy each turn, from its own seeded generator."""
    rng = np.random.default_rng(seed)
    return lambda obs: int(rng.integers(n_strategies))


def stage_optimum(env: Any) -> tuple[Callable[[dict], int] | None, float | None]:
    """The stage module's optimal policy (acting on the hidden state) and its exact expected return, if it has them."""
    try:
        from esc_env import stage
    except ImportError:
        return None, None
    core = getattr(env, "unwrapped", env)
    if not isinstance(core, getattr(stage, "ESCStageEnv", ())) or not hasattr(stage, "OptimalPolicy"):
        return None, None
    opt = stage.OptimalPolicy(core)

    def act_state(state: dict) -> int:
        return int(opt.action(state))  # a get_state() dict, an episode dict or an EpisodeState

    return act_state, float(opt.expected_return())


def format_table(results: list[EvalResult]) -> str:
    lines = ["| policy                     | mean return      | success | gave up | turns | note |",
             "|----------------------------|------------------|---------|---------|-------|------|"]
    return "\n".join(lines + [r.row() for r in results])
