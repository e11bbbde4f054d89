"""Baseline policies and the small :class:`Policy` protocol every evaluated policy follows.

A policy maps observations (the ``Dict`` observations of esc-env's environments) to
actions (strategy indices).  It is batched: :meth:`Policy.act_batch` answers many
conversations at once, which is how the evaluation harness calls it; :meth:`Policy.act`
is the one-observation form.  ``states`` (optional) are the environments' episode states
(dicts with a ``"turns"`` list, from ``env.unwrapped.get_state()`` or
``EpisodeState.to_dict()``): policies that read the dialogue as turns (the LLM policy)
use them instead of parsing the observation's text.

============================  ========================================================
policy                        what it does
============================  ========================================================
:class:`RandomPolicy`         a uniformly random strategy each turn (seeded)
:class:`FixedStrategyPolicy`  always the same strategy, given by name or index
:class:`LLMStrategyPolicy`    the strategy the supporter LLM finds most likely
                              (``SupporterAgent.strategy_probs``), or one sampled from it
============================  ========================================================
"""

from __future__ import annotations

import re
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from agents.dialogue import Turn
from agents.strategies import StrategySet, get_strategy_set
from esc_env.state import episode_of

__all__ = [
    "Policy",
    "BasePolicy",
    "RandomPolicy",
    "FixedStrategyPolicy",
    "LLMStrategyPolicy",
    "dialogue_turns",
]


@runtime_checkable
class Policy(Protocol):
    """What the evaluation harness needs from a policy."""

    name: str

    def reset(self, seed: int | None = None) -> None:
        """Forget per-episode memory; ``seed`` reseeds a stochastic policy."""

    def act(self, observation: dict, state: dict | None = None) -> Any:
        """The action for one observation."""

    def act_batch(self, observations: Sequence[dict], states: Sequence[dict] | None = None) -> list[Any]:
        """The actions for many observations (one per conversation)."""


class BasePolicy:
    """Implements :meth:`act` through :meth:`act_batch`; subclasses implement the latter."""

    name = "policy"

    def reset(self, seed: int | None = None) -> None:
        return None

    def act(self, observation: dict, state: dict | None = None) -> Any:
        return self.act_batch([observation], None if state is None else [state])[0]

    def act_batch(self, observations: Sequence[dict], states: Sequence[dict] | None = None) -> list[Any]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class RandomPolicy(BasePolicy):
    """A uniformly random strategy index in ``[0, n_strategies)``.

    Args:
        n_strategies: the size of the action space, or a strategy set (spec or object).
        seed: seed of the policy's own random generator (``reset(seed)`` reseeds it).
    """

    def __init__(self, n_strategies: "int | str | StrategySet" = 8, seed: int | None = None) -> None:
        n = n_strategies if isinstance(n_strategies, int) and not isinstance(n_strategies, bool) else len(get_strategy_set(n_strategies))
        if n < 1:
            raise ValueError(f"n_strategies must be >= 1, got {n}")
        self.n = int(n)
        self.name = "random"
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def act_batch(self, observations: Sequence[dict], states: Sequence[dict] | None = None) -> list[int]:
        return [int(a) for a in self.rng.integers(self.n, size=len(observations))]


class FixedStrategyPolicy(BasePolicy):
    """Always the same strategy.

    Args:
        strategy: a strategy name of ``strategies`` (case-insensitive) or its index.
        strategies: the environment's strategy set (``"esconv"``, ``"aflow"`` or a set).

    Raises:
        KeyError: the name is not in the set (the message lists the names).
        ValueError: the index is out of range.
    """

    def __init__(self, strategy: "str | int", strategies: "str | StrategySet" = "esconv") -> None:
        self.strategies = get_strategy_set(strategies)
        if isinstance(strategy, str) and strategy.strip().isdigit():
            strategy = int(strategy.strip())
        if isinstance(strategy, int) and not isinstance(strategy, bool):
            if not 0 <= strategy < len(self.strategies):
                raise ValueError(f"strategy index {strategy} is out of range [0, {len(self.strategies) - 1}] for set {self.strategies.name!r}")
            self.index = int(strategy)
        else:
            self.index = self.strategies.index(str(strategy).strip())
        self.strategy = self.strategies.names[self.index]
        self.name = f"fixed:{self.strategy}"

    def act_batch(self, observations: Sequence[dict], states: Sequence[dict] | None = None) -> list[int]:
        return [self.index] * len(observations)


_TURN_LINE = re.compile(r"^(Seeker|Supporter)(?: \[([^\]\n]*)\])?: ?(.*)$")


def dialogue_turns(observation: dict | None = None, state: dict | None = None) -> list[Turn]:
    """The dialogue as :class:`Turn` objects: from ``state["turns"]`` when given, else parsed
    from the observation's ``Seeker: ...`` / ``Supporter: ...`` text (a line without a
    speaker label continues the previous turn)."""
    if state is not None:
        state = episode_of(state)
    if state is not None and "turns" in state:
        return [t if isinstance(t, Turn) else Turn.from_dict(t) for t in state["turns"]]
    if observation is None:
        raise ValueError("dialogue_turns needs an observation or a state with 'turns'")
    turns: list[Turn] = []
    for line in str(observation["dialogue"]).splitlines():
        m = _TURN_LINE.match(line)
        if m:
            turns.append(Turn(m.group(1).lower(), m.group(3), m.group(2) or None))  # type: ignore[arg-type]
        elif turns:
            last = turns[-1]
            turns[-1] = Turn(last.speaker, last.text + "\n" + line, last.strategy)
    return turns


class LLMStrategyPolicy(BasePolicy):
    """The strategy a supporter LLM prefers: ``argmax`` of ``supporter.strategy_probs(dialogues)``.

    One batched backend call per :meth:`act_batch`.

    Args:
        supporter: an :class:`agents.supporter.SupporterAgent` (its strategy set is the
            policy's action set).
        sample: draw the strategy from the probabilities instead of taking the argmax.
        seed: seed for sampling.
    """

    def __init__(self, supporter: Any, sample: bool = False, seed: int | None = None) -> None:
        if not callable(getattr(supporter, "strategy_probs", None)):
            raise TypeError(f"{type(supporter).__name__} has no strategy_probs(dialogues); pass an agents.supporter.SupporterAgent")
        self.supporter = supporter
        self.sample = bool(sample)
        self.rng = np.random.default_rng(seed)
        self.name = "llm-sample" if sample else "llm"

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def probs(self, observations: Sequence[dict], states: Sequence[dict] | None = None) -> np.ndarray:
        """The supporter's strategy probabilities, shape ``(n, n_strategies)``."""
        dialogues = [dialogue_turns(o, None if states is None else states[i]) for i, o in enumerate(observations)]
        return np.asarray(self.supporter.strategy_probs(dialogues), dtype=np.float64)

    def act_batch(self, observations: Sequence[dict], states: Sequence[dict] | None = None) -> list[int]:
        if not observations:
            return []
        p = self.probs(observations, states)
        if not self.sample:
            return [int(a) for a in p.argmax(axis=1)]
        out = []
        for row in p:
            row = np.clip(row, 0.0, None)
            row = row / row.sum() if row.sum() > 0 else np.full(len(row), 1.0 / len(row))
            out.append(int(self.rng.choice(len(row), p=row)))
        return out

    def respond_batch(self, dialogues: Sequence[Sequence[Turn]], strategies: Sequence[int], seed: int | None = None) -> list[str]:
        """The supporter's utterances for the chosen strategies (one generate call)."""
        names = [self.supporter.strategies[i].name for i in strategies]
        return list(self.supporter.respond([list(d) for d in dialogues], names, seed=seed))
