"""Seeded evaluation of strategy policies through ``reset``/``step`` only."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np


@dataclass
class EvalResult:
    """Returns of ``n`` seeded episodes, with 95% confidence half-widths (normal approximation)."""

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
    def ci95(self) -> float:
        return mean_ci95(self.returns)[1]

    @property
    def success_rate(self) -> float:
        return float(np.mean(self.successes))

    def as_dict(self) -> dict:
        return {"name": self.name, "episodes": self.n, "mean_return": self.mean, "return_ci95": self.ci95,
                "success_rate": self.success_rate, "success_ci95": 1.96 * math.sqrt(self.success_rate * (1 - self.success_rate) / max(1, self.n)),
                "give_up_rate": float(np.mean(self.gave_up)), "mean_turns": float(np.mean(self.turns)), "note": self.note, **self.extra}

    def row(self) -> str:
        d = self.as_dict()
        return (f"| {self.name:<26} | {d['mean_return']:+.3f} +- {d['return_ci95']:.3f} | {100 * d['success_rate']:5.1f}% "
                f"| {100 * d['give_up_rate']:5.1f}% | {d['mean_turns']:4.2f} | {self.note} |")


def mean_ci95(x: np.ndarray) -> tuple[float, float]:
    """Mean and 95% confidence half-width ``1.96 * sd / sqrt(n)`` (``nan`` for n < 2)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return (float(x.mean()) if len(x) else float("nan")), float("nan")
    return float(x.mean()), float(1.96 * x.std(ddof=1) / math.sqrt(len(x)))


def run_policy(env: Any, act: Callable[[Mapping[str, Any]], int], n_episodes: int, seed: int = 0, name: str = "policy",
               note: str = "", act_state: Callable[[dict], int] | None = None, progress: bool = False) -> EvalResult:
    """Play ``n_episodes`` episodes seeded ``seed .. seed + n - 1`` (personas from the env's RNG).

    ``act(observation) -> action``; or ``act_state(env_state) -> action`` for oracles that
    read the hidden state through ``get_state`` (then ``act`` is ignored).
    """
    from tqdm.auto import tqdm

    core = getattr(env, "unwrapped", env)
    rets, succ, gave, turns = [], [], [], []
    for i in tqdm(range(n_episodes), desc=f"eval {name}", unit="ep", disable=not progress, leave=False):
        obs, _ = env.reset(seed=seed + i)
        total, done, info = 0.0, False, {}
        while not done:
            a = act_state(core.get_state()) if act_state is not None else act(obs)
            obs, r, term, trunc, info = env.step(int(a))
            total += float(r)
            done = term or trunc
        rets.append(total)
        succ.append(bool(info.get("success", False)))
        gave.append(bool(info.get("gave_up", False)))
        turns.append(int(info.get("turn", 0)))
    return EvalResult(name, np.asarray(rets), np.asarray(succ), np.asarray(gave), np.asarray(turns), note)


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
