"""A Stable-Baselines3 model as a policy of the esc-env environments.

:class:`SB3Policy` acts on the :class:`~esc_env.wrappers.EncodedObservation` vectors a model
was trained on (``policies.sb3.train`` writes the model and a sidecar ``<file>.json`` of its
encoder settings); ``esc-env evaluate --policy sb3:<file.zip>`` loads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from agents.errors import UserInputError
from policies.baselines import BasePolicy

__all__ = ["SB3Policy", "SB3LoadError"]


class SB3LoadError(UserInputError):
    """An ``sb3:`` checkpoint cannot be used (corrupt, or trained on other observations or actions)."""


class _SpacesOnly(gym.Env):
    """An environment that only carries spaces, so an observation wrapper can encode
    observations that come from elsewhere (a vector env's sub-env)."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed=None, options=None):  # pragma: no cover - never stepped
        raise RuntimeError("_SpacesOnly only carries spaces")

    def step(self, action):  # pragma: no cover - never stepped
        raise RuntimeError("_SpacesOnly only carries spaces")


class SB3Policy(BasePolicy):
    """A Stable-Baselines3 model acting on :class:`~esc_env.wrappers.EncodedObservation` vectors.

    Args:
        path: the model's ``.zip`` (``model.save(path)``).
        observation_space: the environment's ``Dict`` observation space.
        action_space: the environment's action space (checked against the model's).
        encoder, last_k_turns: the wrapper's settings; default: read from the sidecar
            ``<path>.json`` when it exists, else the wrapper's defaults.
        deterministic: act greedily (default) or sample from the model's policy.
    """

    def __init__(self, path: "str | Path", observation_space: gym.Space, action_space: gym.Space,
                 encoder: Any = None, last_k_turns: "int | None | str" = "default", deterministic: bool = True) -> None:
        from stable_baselines3 import PPO

        from esc_env.wrappers import EncodedObservation

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"sb3 checkpoint not found: {path}")
        sidecar = path.with_suffix(".json")
        settings: dict = {}
        if sidecar.is_file():
            try:
                settings = json.loads(sidecar.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as e:
                raise SB3LoadError(f"cannot read the encoder settings {sidecar}: {e}") from None
        kwargs: dict = {"encoder": encoder if encoder is not None else settings.get("encoder", "hashing")}
        if last_k_turns != "default":
            kwargs["last_k_turns"] = last_k_turns
        elif "last_k_turns" in settings:
            kwargs["last_k_turns"] = settings["last_k_turns"]
        self.wrapper = EncodedObservation(_SpacesOnly(observation_space, action_space), **kwargs)
        try:
            self.model = PPO.load(str(path), device="cpu")
        except Exception as e:  # a corrupt or foreign zip: one clear line
            raise SB3LoadError(f"cannot load the sb3 model {path}: {type(e).__name__}: {e}") from None
        want, have = self.model.observation_space.shape, self.wrapper.observation_space.shape
        if want != have:
            raise SB3LoadError(
                f"sb3 model {path} expects observations of shape {want}, but the encoder gives {have}; "
                f"write the training encoder settings to {sidecar} ({{\"encoder\": ..., \"last_k_turns\": ...}})"
            )
        if getattr(self.model.action_space, "n", None) != getattr(action_space, "n", None):
            raise SB3LoadError(f"sb3 model {path} has {self.model.action_space} actions, the environment {action_space}")
        self.deterministic = deterministic
        self.name = f"sb3:{path.name}"

    def act_batch(self, observations: Sequence[dict], states: Sequence[dict] | None = None) -> list[int]:
        if not observations:
            return []
        x = np.stack([self.wrapper.observation(o) for o in observations])
        actions, _ = self.model.predict(x, deterministic=self.deterministic)
        return [int(a) for a in np.asarray(actions).reshape(-1)]
