"""Reference policies of ``esc_env/ESCStage-v0`` and their simulated returns
(``python -m esc_env.stage`` prints them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..state import EpisodeState
from .env import ESCStageEnv
from .model import EFFECTS, FITS, STAGES
from .solver import OptimalPolicy

__all__ = ["stage_oracle_action", "PolicyReturn", "run_episodes", "policy_returns", "format_returns"]


def stage_oracle_action(env: ESCStageEnv, state: Any) -> int:
    """A hand-written policy that reads the hidden stage.

    It uses the strategy whose role fits the stage with the strongest effect, never the
    one used last (ties: lowest index); in exploration it prefers ``explore``/``reflect``.
    ``state`` is a ``get_state()`` dict, an episode dict or an :class:`EpisodeState`.
    """
    env = env.unwrapped  # type: ignore[assignment]
    episode = env.episode_state(state)
    stage = STAGES.index(episode.hidden["stage"])
    last = episode.last_strategy(len(env.strategies))
    best, best_key = 0, None
    for a, role in enumerate(env.roles):
        key = (role in FITS[stage], a != last, -EFFECTS[role][stage], -a)
        if best_key is None or key > best_key:
            best, best_key = a, key
    return best


@dataclass
class PolicyReturn:
    """Mean return and success rate of a policy, with 95% confidence half-widths."""

    name: str
    n_episodes: int
    mean_return: float
    return_ci95: float
    success_rate: float
    success_ci95: float
    give_up_rate: float
    mean_turns: float
    note: str = ""
    returns: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    def cells(self) -> list[str]:
        return [
            self.name,
            f"{self.mean_return:+.3f} +- {self.return_ci95:.3f}",
            f"{100 * self.success_rate:.1f}% +- {100 * self.success_ci95:.1f}",
            f"{100 * self.give_up_rate:.1f}%",
            f"{self.mean_turns:.2f}",
            self.note,
        ]


def run_episodes(
    env: ESCStageEnv, policy: Callable[[dict, EpisodeState], int], n_episodes: int, seed: int = 0, name: str = "policy", note: str = ""
) -> PolicyReturn:
    """Run ``policy(observation, episode_state) -> action`` on episodes seeded ``seed .. seed+n-1``
    (``episode_state``: the env's :class:`EpisodeState`, hidden variables included)."""
    from ..evaluation.loop import play_episodes  # the one plain episode loop

    stats = play_episodes(env, policy, n_episodes, seed, desc=name)
    rets, succ, gave, turns = stats.returns, stats.successes, stats.gave_up, stats.turns
    from ..evaluation.metrics import mean_ci, proportion_ci  # the one interval formula of every harness

    rets_a = np.asarray(rets)
    sr = float(np.mean(succ))
    n = len(rets)
    iv, sv = (mean_ci(rets_a) if n > 1 else None), proportion_ci(succ)
    return PolicyReturn(
        name=name,
        n_episodes=n,
        mean_return=float(rets_a.mean()),
        return_ci95=float((iv.high - iv.low) / 2) if iv is not None else float("nan"),
        success_rate=sr,
        success_ci95=float((sv.high - sv.low) / 2),
        give_up_rate=float(np.mean(gave)),
        mean_turns=float(np.mean(turns)),
        note=note,
        returns=rets_a,
    )


def policy_returns(
    n_episodes: int = 2000,
    seed: int = 0,
    policies: Iterable[str] = ("random", "best-fixed", "stage-oracle", "dp-optimal"),
    **env_kwargs: Any,
) -> dict[str, PolicyReturn]:
    """Simulate reference policies on ``ESCStageEnv(**env_kwargs)`` and return their statistics.

    * ``random``: a uniformly random strategy each turn.
    * ``best-fixed``: the single strategy with the best mean return, chosen on episodes
      seeded ``seed + n_episodes ...`` and reported on the evaluation seeds (no selection bias).
    * ``stage-oracle``: :func:`stage_oracle_action`, which reads the hidden stage.
    * ``dp-optimal``: :class:`OptimalPolicy` (its ``note`` gives the exact expected return).

    Every policy is evaluated on the episodes seeded ``seed .. seed + n_episodes - 1``.
    """
    env = ESCStageEnv(**env_kwargs)
    n = len(env.strategies)
    out: dict[str, PolicyReturn] = {}
    for name in policies:
        if name == "random":
            rng = np.random.default_rng(seed + 7_777_777)
            out[name] = run_episodes(env, lambda o, s: int(rng.integers(n)), n_episodes, seed, name)
        elif name == "best-fixed":
            sel = [run_episodes(env, lambda o, s, a=a: a, n_episodes, seed + n_episodes).mean_return for a in range(n)]
            a = int(np.argmax(sel))
            out[name] = run_episodes(env, lambda o, s: a, n_episodes, seed, name, note=f"always {env.strategies.names[a]!r}")
        elif name == "stage-oracle":
            out[name] = run_episodes(env, lambda o, s: stage_oracle_action(env, s), n_episodes, seed, name)
        elif name == "dp-optimal":
            opt = OptimalPolicy(env)
            out[name] = run_episodes(env, lambda o, s: opt.action(s), n_episodes, seed, name)
            out[name].note = f"exact expected return {opt.expected_return():+.3f}"
        else:
            raise ValueError(f"unknown policy {name!r}; known: random, best-fixed, stage-oracle, dp-optimal")
    return out


def format_returns(results: Mapping[str, PolicyReturn]) -> str:
    """A Markdown table of :func:`policy_returns` results."""
    rows = [["policy", "mean return", "success", "gave up", "turns", "note"]] + [r.cells() for r in results.values()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


