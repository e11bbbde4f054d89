"""The plain episode loop: seeded episodes of one env, nothing recorded.

:func:`esc_env.evaluation.interactive.run_episodes` is the harness of ``esc-env evaluate``: it
batches many envs, writes every transcript and computes the metrics.  This loop is the small
one that the learners' own evaluations and the stage env's reference returns run, thousands of
episodes a second on ESCStage-v0; both report intervals with :mod:`.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..state import EpisodeState, episode_of


@dataclass
class EpisodeStats:
    """Per-episode outcomes of :func:`play_episodes`, each an array of shape ``(n_episodes,)``."""

    returns: np.ndarray
    successes: np.ndarray
    gave_up: np.ndarray
    turns: np.ndarray


def play_episodes(env: Any, act: Callable[[Any, EpisodeState | None], Any], n_episodes: int, seed: int = 0, *,
                  with_state: bool = True, progress: bool = False, desc: str = "policy") -> EpisodeStats:
    """Play ``n_episodes`` episodes seeded ``seed .. seed + n_episodes - 1``.

    Args:
        env: a Gymnasium env (wrapped or not) of this package.
        act: ``act(observation, episode_state) -> action``; ``episode_state`` is the env's
            :class:`~esc_env.state.EpisodeState` (hidden variables included, for oracles), or
            ``None`` with ``with_state=False``.
        n_episodes: >= 1.
        seed: the first reset seed.
        with_state: read the episode state before every action (an LLM env copies it through
            ``get_state()``; a policy of observations only does not need it).
        progress: a progress bar.
        desc: the progress bar's label.
    """
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int) or n_episodes < 1:
        raise ValueError(f"n_episodes must be a positive int, got {n_episodes!r}")
    from tqdm.auto import tqdm

    core = getattr(env, "unwrapped", env)

    def state_of() -> EpisodeState | None:
        if not with_state:
            return None
        st = getattr(core, "state", None)  # the stage env keeps its EpisodeState as an attribute
        return st if isinstance(st, EpisodeState) else EpisodeState.from_dict(episode_of(core.get_state()))

    rets, succ, gave, turns = [], [], [], []
    for i in tqdm(range(n_episodes), desc=f"eval {desc}", unit="ep", disable=not progress, leave=False):
        obs, _ = env.reset(seed=seed + i)
        total, done, info = 0.0, False, {}
        while not done:
            obs, r, term, trunc, info = env.step(act(obs, state_of()))
            total += float(r)
            done = term or trunc
        rets.append(total)
        succ.append(bool(info.get("success", False)))
        gave.append(bool(info.get("gave_up", False)))
        turns.append(int(info.get("turn", 0)))
    return EpisodeStats(np.asarray(rets, dtype=np.float64), np.asarray(succ, dtype=bool),
                        np.asarray(gave, dtype=bool), np.asarray(turns, dtype=np.int64))
