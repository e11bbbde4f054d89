"""Spaces shared by every esc-env environment (LLM seeker and stage-model seeker alike)."""

from __future__ import annotations

import string
from typing import Any

import numpy as np
from gymnasium import spaces

# the ESConv survey scale of emotional intensity, defined once in agents.scales
from agents.scales import INTENSITY_HIGH, INTENSITY_LOW

#: most characters of dialogue kept in an observation (the oldest text is dropped first)
MAX_DIALOGUE_CHARS = 16_000
#: longest supporter utterance accepted as an action
MAX_UTTERANCE_CHARS = 1_000

_SAMPLE_CHARSET = string.ascii_letters + string.digits + " .,!?'-"


class UnicodeText(spaces.Text):
    """A :class:`gymnasium.spaces.Text` that contains *any* Unicode string of allowed length.

    LLMs write emoji, accents and curly quotes; Gymnasium's ``Text`` only admits the
    characters of its charset.  This space admits every character and samples from
    printable ASCII.
    """

    def __init__(self, max_length: int, *, min_length: int = 0, seed=None) -> None:
        super().__init__(max_length, min_length=min_length, charset=_SAMPLE_CHARSET, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UnicodeText) and (self.min_length, self.max_length) == (other.min_length, other.max_length)


def observation_space(n_strategies: int, max_turns: int) -> spaces.Dict:
    """The observation of every esc-env environment.

    ``last_strategy`` is ``n_strategies`` before the supporter's first turn.
    """
    return spaces.Dict(
        {
            "dialogue": UnicodeText(MAX_DIALOGUE_CHARS),
            "turn": spaces.Discrete(max_turns + 1),
            "intensity": spaces.Box(INTENSITY_LOW, INTENSITY_HIGH, shape=(1,), dtype=np.float32),
            "last_strategy": spaces.Discrete(n_strategies + 1),
        }
    )


ACTION_MODES = ("strategy", "text", "strategy+text")


def action_space(action_mode: str, n_strategies: int) -> spaces.Space:
    if action_mode == "strategy":
        return spaces.Discrete(n_strategies)
    if action_mode == "text":
        return UnicodeText(MAX_UTTERANCE_CHARS, min_length=1)
    if action_mode == "strategy+text":
        return spaces.Dict(
            {"strategy": spaces.Discrete(n_strategies), "utterance": UnicodeText(MAX_UTTERANCE_CHARS, min_length=1)}
        )
    raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")


def clip_dialogue(text: str) -> str:
    """Keep the most recent ``MAX_DIALOGUE_CHARS`` characters."""
    return text if len(text) <= MAX_DIALOGUE_CHARS else text[-MAX_DIALOGUE_CHARS:]


def make_observation(dialogue_text: str, turn: int, intensity: float, last_strategy: int) -> dict:
    return {
        "dialogue": clip_dialogue(dialogue_text),
        "turn": int(turn),
        "intensity": np.array([np.clip(intensity, INTENSITY_LOW, INTENSITY_HIGH)], dtype=np.float32),
        "last_strategy": int(last_strategy),
    }
