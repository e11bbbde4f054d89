r"""``AFlowPolicy``: acting with a trained :class:`~policies.aflow.model.AFlowModel`.

The action combines the strategy head with the flow head's look-ahead:

.. math::

   a^* = \arg\max_a \Big[\log\pi_\theta(a \mid s) + \alpha\,\big(g_\theta(s,a) - h_\theta(s)\big)\Big]
       = \arg\max_a \Big[\log\pi_\theta(a \mid s) + \alpha\,\gamma^{-t}\big(\log F(s'_a) - \log F(s)\big)\Big],

because :math:`\log F(s'_a) = C(s_t)/\tau + \gamma^t g_\theta(s_t,a)` and
:math:`\log F(s_t) = C(s_t)/\tau + \gamma^t h_\theta(s_t)` (the unknown :math:`C(s_t)` cancels; the
bracket is their difference over :math:`\gamma^t`).  When the flows balance exactly the bracket is
:math:`(1 + \alpha\gamma^{-t})\log\pi_\theta(a|s)`, so :math:`\alpha` only matters where they do not;
``alpha=0`` acts with the strategy head alone.  ``greedy=False`` samples from the softmax
of the bracket instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from esc_env.fileio import save_safetensors_atomic, write_json_atomic
from .model import AFlowModel, ModelConfig

POLICY_FORMAT = "aflow-policy"


class AFlowPolicy:
    """A policy for ``esc_env/ESC-v0`` and ``esc_env/ESCStage-v0`` observations.

    Args:
        model: a trained :class:`AFlowModel`.
        alpha: weight :math:`\\alpha` of the flow look-ahead (see the module docstring).
        greedy: argmax (default) or sample.
        seed: seed of sampling.
        strategy_names: names of the strategies behind the action indices (saved with the
            policy, so an evaluation with another strategy set of the same size is refused).
    """

    def __init__(self, model: AFlowModel, alpha: float = 1.0, greedy: bool = True, seed: int = 0,
                 strategy_names: Sequence[str] | None = None) -> None:
        self.model = model.eval()
        self.alpha = float(alpha)
        self.greedy = bool(greedy)
        self.rng = np.random.default_rng(seed)
        if strategy_names is not None and len(strategy_names) != model.n_strategies:
            raise ValueError(f"strategy_names has {len(strategy_names)} names, the model {model.n_strategies} strategies")
        self.strategy_names = list(strategy_names) if strategy_names is not None else None

    @property
    def n_strategies(self) -> int:
        return self.model.n_strategies

    @torch.no_grad()
    def scores(self, observations: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """:math:`\\log\\pi(a|s) + \\alpha(g(s,a) - h(s))` for each observation, shape ``(B, n)``."""
        out = self.model(list(observations))
        s = out.log_pi + self.alpha * (out.soft_q - out.soft_value[:, None])
        return s.numpy().astype(np.float64)

    @torch.no_grad()
    def strategy_probs(self, observations: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """:math:`\\pi_\\theta(\\cdot|s)`, shape ``(B, n)``."""
        return self.model(list(observations)).log_pi.exp().numpy().astype(np.float64)

    def act_batch(self, observations: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """One strategy index per observation, shape ``(B,)``."""
        s = self.scores(observations)
        if self.greedy:
            return s.argmax(axis=1)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        return np.array([self.rng.choice(self.n_strategies, p=row) for row in p])

    def act(self, observation: Mapping[str, Any]) -> int:
        """The strategy index for one observation (an env action)."""
        return int(self.act_batch([observation])[0])

    __call__ = act

    # ---- files -----------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``policy.json`` (configs) and ``model.safetensors`` (trained weights), atomically."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_safetensors_atomic(d / "model.safetensors", self.model.trainable_state())
        write_json_atomic(d / "policy.json", {"format": POLICY_FORMAT, "version": 1, "model": self.model.config.to_dict(),
                                              "alpha": self.alpha, "greedy": self.greedy,
                                              "strategy_names": self.strategy_names}, indent=2)
        return d

    @classmethod
    def load(cls, directory: str | Path, **overrides: Any) -> "AFlowPolicy":
        """Rebuild a policy saved by :meth:`save` (``overrides``: ``alpha``, ``greedy``, ``seed``)."""
        from safetensors.torch import load_file

        d = Path(directory)
        meta = json.loads((d / "policy.json").read_text())
        if meta.get("format") != POLICY_FORMAT:
            raise ValueError(f"{d} does not hold an AFlow policy (policy.json format {meta.get('format')!r})")
        model = AFlowModel(ModelConfig.from_dict(meta["model"]))
        model.load_trainable_state(load_file(str(d / "model.safetensors")))
        kw = {"alpha": meta.get("alpha", 1.0), "greedy": meta.get("greedy", True), "strategy_names": meta.get("strategy_names")}
        kw.update(overrides)
        return cls(model, **kw)
