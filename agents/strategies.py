"""Support strategies as data: named sets of (name, definition) pairs.

Two sets ship with esc-env: ESConv's 8 strategies (Liu et al., 2021) and the 8 used by
AFlow.  The definitions are our own short wordings.  Users add sets with
:func:`register_strategy_set` or pass a :class:`StrategySet` directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from agents.errors import UserInputError


@dataclass(frozen=True)
class Strategy:
    name: str
    definition: str


@dataclass(frozen=True)
class StrategySet:
    """An ordered set of strategies; the index of a strategy is its action id."""

    name: str
    strategies: tuple[Strategy, ...]

    def __post_init__(self) -> None:
        names = [s.name for s in self.strategies]
        if not names:
            raise ValueError(f"strategy set {self.name!r} is empty")
        if len(set(names)) != len(names):
            raise ValueError(f"strategy set {self.name!r} has duplicate names: {names}")

    def __len__(self) -> int:
        return len(self.strategies)

    def __iter__(self):
        return iter(self.strategies)

    def __getitem__(self, i: int) -> Strategy:
        return self.strategies[i]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.strategies]

    def index(self, name: str) -> int:
        for i, s in enumerate(self.strategies):
            if s.name.lower() == name.lower():
                return i
        raise KeyError(f"strategy {name!r} is not in set {self.name!r}; known: {self.names}")

    def definition(self, name: str) -> str:
        return self.strategies[self.index(name)].definition

    @classmethod
    def from_mapping(cls, name: str, items: Mapping[str, str] | Sequence[tuple[str, str]]) -> "StrategySet":
        pairs = items.items() if isinstance(items, Mapping) else items
        return cls(name, tuple(Strategy(str(n), str(d)) for n, d in pairs))


ESCONV = StrategySet.from_mapping(
    "esconv",
    {
        "Question": "Ask an open question that helps the seeker say more about what is going on.",
        "Restatement or Paraphrasing": "Say back, briefly and in other words, what the seeker has just told you.",
        "Reflection of feelings": "Name the feeling you hear behind the seeker's words.",
        "Self-disclosure": "Share a short, relevant experience of your own to show you understand.",
        "Affirmation and Reassurance": "Recognise the seeker's strengths and efforts and offer honest encouragement.",
        "Providing Suggestions": "Offer one concrete, doable idea for what the seeker could try.",
        "Information": "Give a useful fact or resource that bears on the seeker's problem.",
        "Others": "A greeting, a thank-you or any other friendly remark that fits none of the above.",
    },
)

AFLOW = StrategySet.from_mapping(
    "aflow",
    {
        "Reflective Statements": "Mirror the seeker's words and meaning so they feel heard.",
        "Clarification": "Ask about what is still unclear so you understand the situation better.",
        "Emotional Validation": "Tell the seeker their feelings make sense given what happened.",
        "Empathetic Statements": "Express warmth and that you care about what the seeker is going through.",
        "Affirmation": "Point out something the seeker did well or a strength they have.",
        "Collaborative Planning": "Work out a next step together with the seeker, asking for their ideas.",
        "Suggest Options": "Lay out a few possible ways forward and let the seeker choose.",
        "Share Information": "Share knowledge or a resource that helps the seeker understand or cope.",
    },
)

_REGISTRY: dict[str, StrategySet] = {"esconv": ESCONV, "aflow": AFLOW}


def register_strategy_set(strategy_set: StrategySet) -> None:
    _REGISTRY[strategy_set.name] = strategy_set


def get_strategy_set(spec: "str | StrategySet | Mapping[str, str] | Iterable[str]") -> StrategySet:
    """``"esconv"``, ``"aflow"``, a registered name, a :class:`StrategySet`, a mapping
    name -> definition, or a list of names (definitions then repeat the names)."""
    if isinstance(spec, StrategySet):
        return spec
    if isinstance(spec, str):
        try:
            return _REGISTRY[spec.lower()]
        except KeyError:
            raise UserInputError(f"unknown strategy set {spec!r}; known: {sorted(_REGISTRY)}") from None
    if isinstance(spec, Mapping):
        return StrategySet.from_mapping("custom", spec)
    names = list(spec)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"a strategy set needs non-empty string names, got {names!r}")
    return StrategySet.from_mapping("custom", [(n, n) for n in names])
