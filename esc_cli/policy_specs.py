"""Policies from spec strings, as the command line names them.

=======================  =====================================================================
spec                     policy
=======================  =====================================================================
``random``               :class:`policies.baselines.RandomPolicy`
``fixed:<strategy>``     :class:`policies.baselines.FixedStrategyPolicy` (a strategy name of the
                         environment's set, case-insensitive, or its index)
``llm``                  :class:`policies.baselines.LLMStrategyPolicy`: the argmax of the
                         supporter LLM's strategy probabilities (``llm-sample``: sampled)
``sb3:<file.zip>``       a Stable-Baselines3 PPO model (:class:`policies.sb3.SB3Policy`); observations are
                         encoded with :class:`esc_env.wrappers.EncodedObservation`, configured by
                         a sidecar ``<file>.json`` (``{"encoder": "hashing:256", "last_k_turns": 4}``)
                         when there is one, else by the wrapper's defaults
``aflow:<checkpoint>``   ``policies.aflow.policy.AFlowPolicy.load(checkpoint, ...)``
``rlff:<checkpoint>``    ``policies.rlff.policy.RLFFPolicy.load(checkpoint, ...)``
=======================  =====================================================================

This module sits above ``policies`` (it builds learners), so it is part of :mod:`esc_cli`;
``esc_env.evaluation.policies`` re-exports its names with a ``DeprecationWarning``.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym

from agents.errors import UserInputError
from agents.strategies import StrategySet, get_strategy_set
from policies.baselines import FixedStrategyPolicy, LLMStrategyPolicy, Policy, RandomPolicy
from policies.sb3 import SB3LoadError, SB3Policy

__all__ = ["PolicySpecError", "load_policy", "SB3Policy", "POLICY_SPEC_HELP", "policy_slug"]

POLICY_SPEC_HELP = "random | fixed:<strategy> | llm | llm-sample | sb3:<model.zip> | aflow:<checkpoint dir> | rlff:<checkpoint dir>"


class PolicySpecError(UserInputError):
    """A policy spec names no known policy, or its checkpoint cannot be loaded (a ``ValueError``)."""


def policy_slug(spec: str) -> str:
    """A file-name-safe short name for a policy spec (``fixed:Question`` -> ``fixed-question``)."""
    kind, _, rest = spec.partition(":")
    if kind in ("sb3", "aflow", "rlff") and rest:
        rest = Path(rest.rstrip("/")).stem or Path(rest).name
    text = f"{kind}-{rest}" if rest else kind
    out = "".join(c if c.isalnum() or c in "._" else "-" for c in text.lower())
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-") or "policy"


def _load_checkpoint_policy(kind: str, path: str, context: dict) -> Policy:
    module_name, class_name = {"aflow": ("policies.aflow.policy", "AFlowPolicy"), "rlff": ("policies.rlff.policy", "RLFFPolicy")}[kind]
    if not Path(path).exists():
        raise FileNotFoundError(f"{kind} checkpoint not found: {path}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise PolicySpecError(f"{kind} policies are not available: the module {module_name} is not installed") from None
        raise
    cls = getattr(module, class_name, None)
    if cls is None or not callable(getattr(cls, "load", None)):
        raise PolicySpecError(f"{module_name} has no {class_name}.load(checkpoint)")
    loader: Callable = cls.load
    try:  # pass only the context a loader names (its **overrides are its own settings)
        params = inspect.signature(loader).parameters
        kwargs = {k: v for k, v in context.items() if v is not None and k in params
                  and params[k].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    except (TypeError, ValueError):
        kwargs = {}
    try:
        policy = loader(path, **kwargs)
    except (OSError, KeyError, ValueError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        raise PolicySpecError(f"cannot load the {kind} checkpoint {path}: {msg}") from None
    if not callable(getattr(policy, "act_batch", None)):
        raise PolicySpecError(f"{class_name}.load returned {type(policy).__name__}, which has no act_batch(observations)")
    n_policy, n_env = getattr(policy, "n_strategies", None), len(context["strategies"])
    names = getattr(policy, "strategy_names", None)
    if names is not None and list(names) != list(context["strategies"].names):
        raise PolicySpecError(f"the {kind} checkpoint {path} was trained on the strategies {list(names)}, the environment's set "
                              f"{context['strategies'].name!r} is {list(context['strategies'].names)}; pass the matching --strategies")
    if isinstance(n_policy, int) and n_policy != n_env:
        raise PolicySpecError(f"the {kind} checkpoint {path} acts over {n_policy} strategies, the environment's set "
                              f"{context['strategies'].name!r} has {n_env}; pass the matching --strategies")
    if not isinstance(getattr(policy, "name", None), str):
        try:
            policy.name = f"{kind}:{Path(path).name}"
        except AttributeError:
            pass
    return policy


def load_policy(
    spec: str,
    *,
    strategies: "str | StrategySet" = "esconv",
    observation_space: gym.Space | None = None,
    action_space: gym.Space | None = None,
    supporter: Any = None,
    backend: Any = None,
    seed: int | None = None,
) -> Policy:
    """The policy a spec string names (see the module docstring).

    Args:
        spec: the policy spec.
        strategies: the environment's strategy set (the policy's action set).
        observation_space, action_space: the environment's single-env spaces (``sb3:``).
        supporter: a ``SupporterAgent`` for ``llm`` (e.g. the LLM environment's own);
            without it one is built on ``backend``.
        backend: a backend or spec, for ``llm`` without ``supporter``, and passed to
            ``aflow:``/``rlff:`` loaders that accept it.
        seed: seed of stochastic policies.

    Raises:
        PolicySpecError: the spec is unknown or its checkpoint is unusable (one-line message).
        FileNotFoundError: the checkpoint does not exist.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise PolicySpecError(f"empty policy spec; expected {POLICY_SPEC_HELP}")
    spec = spec.strip()
    kind, sep, rest = spec.partition(":")
    kind = kind.lower()
    strategy_set = get_strategy_set(strategies)
    if spec.lower() == "random":
        return RandomPolicy(len(strategy_set), seed=seed)
    if kind == "fixed" and rest:
        try:
            return FixedStrategyPolicy(rest, strategy_set)
        except KeyError as e:
            raise PolicySpecError(f"policy {spec!r}: {e.args[0]}") from None
        except ValueError as e:
            raise PolicySpecError(f"policy {spec!r}: {e}") from None
    if spec.lower() in ("llm", "llm-sample"):
        if supporter is None:
            from agents.supporter import SupporterAgent

            from esc_env.build import shared_backend

            supporter = SupporterAgent(shared_backend(backend or "embedded"), strategy_set)
        return LLMStrategyPolicy(supporter, sample=spec.lower() == "llm-sample", seed=seed)
    if kind == "sb3" and rest:
        if observation_space is None or action_space is None:
            from esc_env.spaces import action_space as _action_space
            from esc_env.spaces import observation_space as _observation_space

            observation_space = observation_space or _observation_space(len(strategy_set), 10)
            action_space = action_space or _action_space("strategy", len(strategy_set))
        try:
            return SB3Policy(rest, observation_space, action_space)
        except SB3LoadError as e:
            raise PolicySpecError(str(e)) from None
    if kind in ("aflow", "rlff") and rest:
        return _load_checkpoint_policy(kind, rest, {"strategies": strategy_set, "backend": backend, "seed": seed})
    raise PolicySpecError(f"unknown policy {spec!r}; expected {POLICY_SPEC_HELP}")
