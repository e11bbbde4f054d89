"""Interactive evaluation: run a policy for N seeded episodes and measure what happened.

Episode ``k`` (0-based) of a run with seed ``S`` is reset with seed ``S + k``, so two
policies evaluated with the same seed meet the same personas (and, for a deterministic
seeker, the same openings).

* Environments with a vector entry point (``esc_env/ESC-v0``, ``esc_env/ESCText-v0``) run
  through :func:`esc_env.make_vec`: ``num_envs`` conversations per batched backend call.
  Episodes run in *waves* of ``num_envs``: a wave resets every sub-env with its own seed
  and steps until all of its episodes are over.  A sub-env whose episode ended early is
  auto-reset by the vector env and keeps stepping (its results are discarded) until the
  wave is done; that costs batch slots, never correctness.
* Other environments (``esc_env/ESCStage-v0``) run as ``num_envs`` single environments
  stepped side by side; a finished slot takes the next episode at once.

The policy sees the observations of all running conversations in one
``policy.act_batch(observations, states)`` call per step, with ``states`` the episode
states (dicts with ``"turns"``).  ``policy.reset(seed)`` is called once, at the start.

Every finished episode becomes a record (see :func:`run_episodes`), and
:func:`esc_env.evaluation.metrics.summarize_episodes` turns the records into metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import registry
from gymnasium.vector.utils import concatenate, create_empty_array, iterate

from esc_env.state import episode_of

from .metrics import summarize_episodes

__all__ = ["EvalEnvs", "make_eval_envs", "run_episodes", "evaluate_policy", "EvalResult", "unbatch_info",
           "format_metrics_table", "format_compare_table", "metrics_rows"]


@dataclass
class EvalEnvs:
    """The environments of an evaluation run.

    Attributes:
        env_id: the Gymnasium id.
        vector: the vector env (``None`` for single envs).
        singles: the single envs (empty for a vector env).
        strategies: the strategy set (action ``i`` is ``strategies[i]``).
        max_turns: supporter turns per episode.
        observation_space, action_space: the spaces of one conversation.
    """

    env_id: str
    vector: Any
    singles: list
    strategies: Any
    max_turns: int
    observation_space: gym.Space
    action_space: gym.Space

    @property
    def num_envs(self) -> int:
        return self.vector.num_envs if self.vector is not None else len(self.singles)

    @property
    def engine(self):
        """The dialogue engine of an LLM environment (``None`` for the stage env)."""
        if self.vector is not None:
            return getattr(self.vector, "engine", None)
        return getattr(self.singles[0].unwrapped, "engine", None)

    def close(self) -> None:
        if self.vector is not None:
            self.vector.close()
        for e in self.singles:
            e.close()


def make_eval_envs(
    env_id: str = "esc_env/ESC-v0",
    num_envs: int = 1,
    *,
    max_turns: int = 10,
    personas: Any = None,
    backend: Any = None,
    strategies: str = "esconv",
    **env_kwargs: Any,
) -> EvalEnvs:
    """Build the environments of an evaluation run.

    Args:
        env_id: a registered id; ids with a vector entry point run batched.
        num_envs: conversations in flight at once.
        max_turns: supporter turns per episode.
        personas: a persona source (``"builtin"``, ``"esconv:valid"``, a file path, ...);
            ``None`` keeps the environment's default.  For the stage env the source is
            loaded into a list of personas.
        backend: backend spec or object for LLM environments (``None``: the default).
        strategies: the strategy set.
        env_kwargs: further keyword arguments of the environment.

    Raises:
        ValueError: unknown id, or an environment whose actions are not strategy indices.
    """
    import esc_env  # noqa: F401  (registers the ids)

    if env_id not in registry:
        known = sorted(k for k in registry if k.startswith("esc_env/"))
        raise ValueError(f"unknown environment id {env_id!r}; esc-env ids: {known}")
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
    spec = registry[env_id]
    kwargs = dict(env_kwargs)
    kwargs.update(max_turns=max_turns, strategies=strategies)
    if spec.vector_entry_point is not None:
        if personas is not None:
            kwargs["personas"] = personas
        if backend is not None:
            kwargs["backend"] = backend
        from esc_env import make_vec

        venv = make_vec(num_envs, env_id, **kwargs)
        ev = EvalEnvs(env_id, venv, [], venv.strategies, max_turns, venv.single_observation_space, venv.single_action_space)
    else:
        if personas is not None:
            from agents.personas import PersonaBank

            kwargs["personas"] = list(PersonaBank.from_source(personas))
        singles = [gym.make(env_id, disable_env_checker=True, **kwargs) for _ in range(num_envs)]
        u = singles[0].unwrapped
        ev = EvalEnvs(env_id, None, singles, u.strategies, max_turns, singles[0].observation_space, singles[0].action_space)
    return ev


def _accepts_states(fn: Callable) -> bool:
    """Whether ``act_batch`` takes a second argument (the episode states)."""
    import inspect

    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    except (TypeError, ValueError):
        return False
    return len(params) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


def act_batch(policy: Any, observations: Sequence[dict], states: Sequence[dict] | None = None) -> list[Any]:
    """``policy.act_batch(observations, states)``, or ``policy.act_batch(observations)`` for
    policies that take no states; numpy values become Python values."""
    fn = policy.act_batch
    out = fn(list(observations), list(states)) if (states is not None and _accepts_states(fn)) else fn(list(observations))
    return [_action(a) for a in out]


def _action(a: Any) -> Any:
    if isinstance(a, np.ndarray) and a.shape == ():
        a = a.item()
    if isinstance(a, np.generic):
        return a.item()
    if isinstance(a, dict):
        return {k: _action(v) for k, v in a.items()}
    return a


def _py(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x


def unbatch_info(infos: dict, i: int) -> dict:
    """The ``info`` of sub-env ``i`` from a Gymnasium vector env's batched ``infos``."""
    out: dict = {}
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        mask = infos.get(f"_{key}")
        if mask is not None and not bool(mask[i]):
            continue
        out[key] = unbatch_info(value, i) if isinstance(value, dict) else _py(value[i])
    return out


@dataclass
class _Running:
    """One episode in progress."""

    index: int
    seed: int
    persona_id: str
    intensities: list = field(default_factory=list)
    observed: list = field(default_factory=list)
    strategies: list = field(default_factory=list)
    rewards: list = field(default_factory=list)
    rubric: list = field(default_factory=list)
    success: bool = False
    gave_up: bool = False
    truncated: bool = False

    def start(self, info: dict) -> None:
        self.persona_id = info.get("persona_id", self.persona_id)
        self.intensities = [float(info["intensity"]["after"])]
        self.observed = [float(info.get("judges", {}).get("affect", info["intensity"]["after"]))]

    def add(self, reward: float, terminated: bool, truncated: bool, info: dict) -> None:
        self.rewards.append(float(reward))
        self.strategies.append(info.get("strategy"))
        self.intensities.append(float(info["intensity"]["after"]))
        judges = info.get("judges", {})
        self.observed.append(float(judges.get("affect", info["intensity"]["after"])))
        if "rubric" in judges:
            self.rubric.append({k: _py(v) for k, v in judges["rubric"].items()})
        self.success = bool(info.get("success", False))
        self.gave_up = bool(info.get("gave_up", False))
        self.truncated = bool(truncated) and not terminated

    def record(self, state: Any, extra: dict) -> dict:
        from esc_env.recording import episode_record
        from esc_env.state import EpisodeState

        stats = {
            "episode_index": self.index,
            "reset_seed": self.seed,
            "intensities": self.intensities,
            "observed_intensities": self.observed,
            "strategies": self.strategies,
            "rewards": self.rewards,
            **({"rubric": self.rubric} if self.rubric else {}),
            **extra,
        }
        return episode_record(state if isinstance(state, EpisodeState) else EpisodeState.coerce(state), **stats)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="ep", disable=not enabled, leave=False, dynamic_ncols=True)


def run_episodes(
    policy: Any,
    envs: EvalEnvs,
    n_episodes: int,
    seed: int = 0,
    *,
    on_episode: Callable[[dict], None] | None = None,
    progress: bool = True,
    extra: dict | None = None,
) -> list[dict]:
    """Run ``n_episodes`` episodes (reset seeds ``seed .. seed + n_episodes - 1``).

    Returns the episode records in episode order.  A record has the keys of
    :func:`esc_env.recording.episode_record` (``persona_id``, ``seed``, ``return``,
    ``length``, ``success``, ``gave_up``, ``truncated``, ``intensity_start``,
    ``intensity_end``, ``episode``: the final state with the transcript) plus
    ``episode_index``, ``reset_seed``, ``intensities`` (start, then after each turn; the
    judged intensity for LLM envs, the hidden one for the stage env),
    ``observed_intensities`` (what the affect judge reported), ``strategies`` (names),
    ``rewards``, ``rubric`` (when the rubric judge ran) and ``extra``'s keys.
    ``on_episode(record)`` is called as each episode finishes (e.g. to write it).
    """
    if isinstance(n_episodes, bool) or not isinstance(n_episodes, int) or n_episodes < 1:
        raise ValueError(f"n_episodes must be a positive int, got {n_episodes!r}")
    if hasattr(policy, "reset"):
        policy.reset(seed)
    extra = dict(extra or {})
    done: dict[int, dict] = {}

    def finish(ep: _Running, state: Any) -> None:
        rec = ep.record(state, extra)
        done[ep.index] = rec
        if on_episode is not None:
            on_episode(rec)
        bar.update(1)

    with _progress(n_episodes, getattr(policy, "name", "policy"), progress) as bar:
        if envs.vector is not None:
            _run_vector(policy, envs, n_episodes, seed, finish)
        else:
            _run_singles(policy, envs, n_episodes, seed, finish)
    return [done[k] for k in range(n_episodes)]


def _run_singles(policy, envs: EvalEnvs, n: int, seed: int, finish) -> None:
    slots: list[tuple[_Running, dict] | None] = [None] * len(envs.singles)
    next_ep = 0

    def start(i: int) -> None:
        nonlocal next_ep
        if next_ep >= n:
            slots[i] = None
            return
        obs, info = envs.singles[i].reset(seed=seed + next_ep)
        ep = _Running(next_ep, seed + next_ep, info.get("persona_id", ""))
        ep.start(info)
        slots[i] = (ep, obs)
        next_ep += 1

    for i in range(len(slots)):
        start(i)
    while any(s is not None for s in slots):
        live = [i for i, s in enumerate(slots) if s is not None]
        obs = [slots[i][1] for i in live]  # type: ignore[index]
        states = [episode_of(envs.singles[i].unwrapped.get_state()) for i in live]
        actions = act_batch(policy, obs, states)
        for i, a in zip(live, actions):
            ep = slots[i][0]  # type: ignore[index]
            o, r, term, trunc, info = envs.singles[i].step(a)
            ep.add(r, term, trunc, info)
            if term or trunc:
                finish(ep, episode_of(envs.singles[i].unwrapped.get_state()))
                start(i)
            else:
                slots[i] = (ep, o)


def _run_vector(policy, envs: EvalEnvs, n: int, seed: int, finish) -> None:
    venv = envs.vector
    k = venv.num_envs
    for first in range(0, n, k):
        seeds = [seed + first + i for i in range(k)]
        obs, infos = venv.reset(seed=seeds)
        count = min(k, n - first)
        running: dict[int, _Running] = {}
        last: dict[int, Any] = {}
        for i in range(count):
            info = unbatch_info(infos, i)
            ep = _Running(first + i, seeds[i], info.get("persona_id", ""))
            ep.start(info)
            running[i] = ep
        while running:
            per_env = list(iterate(venv.observation_space, obs))
            live = sorted(running)
            states = [venv.states[i].to_dict() for i in live]
            chosen = act_batch(policy, [per_env[i] for i in live], states)
            for i, a in zip(live, chosen):
                last[i] = a
            for i in range(k):  # sub-envs with no episode of ours (finished, or beyond n) repeat an action
                last.setdefault(i, chosen[0])
            space = venv.single_action_space
            actions = concatenate(space, [last[i] for i in range(k)], create_empty_array(space, k))
            obs, rewards, terms, truncs, infos = venv.step(actions)
            for i in live:
                info = unbatch_info(infos, i)
                ep = running[i]
                ep.add(float(rewards[i]), bool(terms[i]), bool(truncs[i]), info)
                if terms[i] or truncs[i]:
                    finish(ep, venv.states[i])
                    del running[i]


@dataclass
class EvalResult:
    """The episodes of a run and their metrics (see :func:`summarize_episodes`)."""

    episodes: list[dict]
    metrics: dict


def evaluate_policy(
    policy: Any,
    envs: EvalEnvs,
    n_episodes: int,
    seed: int = 0,
    *,
    on_episode: Callable[[dict], None] | None = None,
    progress: bool = True,
    confidence: float = 0.95,
    extra: dict | None = None,
) -> EvalResult:
    """:func:`run_episodes` followed by :func:`summarize_episodes`."""
    episodes = run_episodes(policy, envs, n_episodes, seed, on_episode=on_episode, progress=progress, extra=extra)
    metrics = summarize_episodes(episodes, envs.max_turns, list(envs.strategies.names), confidence=confidence)
    return EvalResult(episodes, metrics)


# ----------------------------------------------------------------------------- tables
def _cell(m: dict, percent: bool = False, digits: int = 3) -> str:
    from .metrics import Interval

    return Interval(**m).format(digits=digits, percent=percent)


def metrics_rows(metrics: dict) -> list[tuple[str, str]]:
    """``(name, "value [low, high]")`` rows of the scalar metrics of a run."""
    rows = [
        ("episodes", str(metrics["n_episodes"])),
        ("success rate", _cell(metrics["success_rate"], percent=True)),
        ("avg turns (AT)", _cell(metrics["avg_turns"], digits=2).replace("+", "")),
        ("intensity change", _cell(metrics["intensity_change"])),
        ("return", _cell(metrics["return"])),
        ("give-up rate", _cell(metrics["give_up_rate"], percent=True)),
    ]
    for k, v in metrics.get("rubric", {}).items():
        rows.append((f"rubric: {k}", _cell(v)))
    return rows


def format_metrics_table(metrics: dict, title: str = "") -> str:
    """A plain-text table of one run's metrics (95% CIs in brackets) and its strategy use."""
    rows = metrics_rows(metrics)
    w = max(len(r[0]) for r in rows)
    conf = int(round(100 * metrics.get("confidence", 0.95)))
    lines = [title] if title else []
    lines.append(f"{'metric':<{w}}  value [{conf}% CI]")
    lines.append("-" * (w + 2 + max(len(r[1]) for r in rows)))
    lines += [f"{a:<{w}}  {b}" for a, b in rows]
    dist = metrics.get("strategy_distribution", {})
    used = [(s, d) for s, d in dist.items() if d["count"]]
    if used:
        lines.append("strategy use: " + ", ".join(f"{s} {100 * d['fraction']:.0f}%" for s, d in used))
    return "\n".join(lines)


def format_compare_table(runs: Sequence[tuple[str, dict]]) -> str:
    """One table over several runs: a row per run, a column per scalar metric."""
    if not runs:
        return "(no runs)"
    header = ["run", "episodes", "success rate", "AT", "intensity change", "return", "give-up rate"]
    rubric_keys = sorted({k for _, m in runs for k in m.get("rubric", {})})
    header += [f"rubric: {k}" for k in rubric_keys]
    body = []
    for name, m in runs:
        row = [name, str(m["n_episodes"]), _cell(m["success_rate"], percent=True),
               _cell(m["avg_turns"], digits=2).replace("+", ""), _cell(m["intensity_change"]), _cell(m["return"]),
               _cell(m["give_up_rate"], percent=True)]
        row += [_cell(m["rubric"][k]) if k in m.get("rubric", {}) else "-" for k in rubric_keys]
        body.append(row)
    widths = [max(len(r[c]) for r in [header] + body) for c in range(len(header))]
    fmt = lambda r: " | ".join(x.ljust(widths[c]) for c, x in enumerate(r))  # noqa: E731
    conf = {m.get("confidence", 0.95) for _, m in runs}
    note = f"(values with {int(round(100 * conf.pop()))}% CIs in brackets)" if len(conf) == 1 else "(values with CIs)"
    return "\n".join([fmt(header), "-+-".join("-" * w for w in widths)] + [fmt(r) for r in body] + [note])


def finite_or_none(x: float) -> float | None:
    return x if isinstance(x, (int, float)) and math.isfinite(x) else None
