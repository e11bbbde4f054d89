r"""AFPO: training :class:`~policies.aflow.model.AFlowModel` on searched paths.

Notation for one root-to-leaf path :math:`s_0 \xrightarrow{a_0} s_1 \to \dots \to s_L` of a
search tree (records from :mod:`policies.aflow.trajectories`): :math:`r_{t+1}` is the
search's step reward of the edge :math:`s_t \to s_{t+1}`, :math:`\gamma` the search's
discount, :math:`C(s_t)=\sum_{i<t} \gamma^i r_{i+1}` the reward collected from the root,
:math:`V(s_L)` the search's estimate of the (discounted, from step :math:`L`) return still
to come at the leaf (0 when the episode ended there), :math:`\tau` the ``flow_temperature``.

**State flows.**  The log-flow of a state is

.. math::

   \log F_\theta(s_t) \;=\; C(s_t)/\tau \;+\; \gamma^t\, h_\theta(s_t),

where :math:`h_\theta` (``ModelOutput.soft_value``) is a free head: the log-flow still to
come from :math:`s_t`, in nats of the step-:math:`t` scale.  It is **anchored only at the
leaves**, :math:`h_\theta(s_L) \approx V(s_L)/\tau`, so that
:math:`\log F(s_L) \approx U(s_L)/\tau` with :math:`U(s_L) = C(s_L) + \gamma^L V(s_L)` the
search's return of dialogues through the leaf (GFlowNet reward :math:`\exp(U/\tau)`); the
flow balance carries the leaf flows up to every interior state (as in sub-trajectory
balance).  At an interior state the balance then asks for the soft (log-sum-exp) value:
with every child observed, :math:`h(s_t) = \gamma^{-t}\log\sum_a \exp(\gamma^t[r_a/\tau +
\gamma h(s'_a)])` and :math:`\pi(a|s_t) \propto \exp(\gamma^t[r_a/\tau + \gamma h(s'_a)])`.
Both the balance and the anchor can be exactly 0 together
(``tests/test_aflow.py::test_closed_form_flows_zero_balance_and_anchor_together``).

*Why not the running means.*  Anchoring every :math:`h(s_t)` to :math:`V(s_t)/\tau` (a
running *mean*) and every edge to :math:`Q(s_t,a)/\tau` cannot hold together with the
balance: the balance needs :math:`\log\pi(a|s) = (Q - V)/\tau`, which is positive for a
better-than-average action, and :math:`\sum_a \exp((Q - V)/\tau) > 1`; each term reached 0
only with the other one off.  A mean is not a log-sum-exp.

**Discount.**  The return through :math:`s_t` is :math:`C(s_t) + \gamma^t\,(\text{return from
} s_t)`, hence the :math:`\gamma^t` in front of :math:`h`; with :math:`\gamma = 1` it is 1.

**Subpath flow balance** (backward policy 1, since each state of a tree has one parent):
for every :math:`0 \le m < n \le L`

.. math::

   \log F(s_m) + \sum_{i=m}^{n-1} \log \pi_\theta(a_i \mid s_i) \;=\; \log F(s_n).

The sum runs over the :math:`n - m` actions *taken inside* the subpath; AFlow's public code
sums :math:`i = m \dots n`, which adds one action (the one leaving :math:`s_n`) too many — we
implement the equation as written here.  With
:math:`z_t = \log F(s_t) - \sum_{i<t} \log\pi_\theta(a_i|s_i)` the residual of the subpath is
:math:`\delta_{m,n} = z_m - z_n` and, SubTB-style,

.. math::

   \mathcal{L}_{FB} = \frac{1}{|B|}\sum_{\text{paths}}
      \frac{\sum_{m<n} \lambda^{n-m}\,\delta_{m,n}^2}{\sum_{m<n} \lambda^{n-m}}.

**Anchor** (leaves only): :math:`\mathcal{L}_{A} = \operatorname{mean}_{\text{paths}}
\big(h_\theta(s_L) - V(s_L)/\tau\big)^2`.

**Soft-Q read-out.**  The edge head :math:`g_\theta(s,a)` (``ModelOutput.soft_q``) learns
the log-flow of the child relative to :math:`s`,
:math:`\log F(s'_a) = C(s_t)/\tau + \gamma^t g_\theta(s_t,a)`, on the path's edges:

.. math::

   \mathcal{L}_{E} = \operatorname{mean}_{t<L} \big(g_\theta(s_t,a_t) - [r_{t+1}/\tau
     + \gamma\,\operatorname{sg}(h_\theta(s_{t+1}))]\big)^2

(:math:`\operatorname{sg}`: no gradient into :math:`h`; the read-out follows the flows and
never moves them).  At balance :math:`g(s_t,a) - h(s_t) = \gamma^{-t}\log\pi(a|s_t)`.

**Margin** between the preferred strategy :math:`y^+_t` (highest :math:`Q`) and a low-prior
one :math:`y^-_t`, over the states where the search tried at least ``min_tried`` (2)
strategies (with one tried strategy the "preference" is only the path's action):

.. math::

   \mathcal{L}_{M} = \operatorname{mean}_t \max\!\big(0,\; \gamma_M - [\log\pi_\theta(y^+_t|s_t)
     - \log\pi_\theta(y^-_t|s_t)]\big).

It can pull against the balance where the search's flows put less than :math:`\gamma_M`
nats between the two strategies.

**KL** to the frozen reference policy (exact, over all strategies):
:math:`\mathcal{L}_{KL} = \operatorname{mean}_t \sum_a \pi_\theta(a|s_t)\,[\log\pi_\theta(a|s_t) - \log\pi_{ref}(a|s_t)]`.

**Total**: :math:`\mathcal{L} = w_{FB}\mathcal{L}_{FB} + w_A\mathcal{L}_A + w_E\mathcal{L}_E + w_M\mathcal{L}_M + \beta\,\mathcal{L}_{KL}`
(paper: :math:`\beta = 0.1`, :math:`\gamma_M = 1`).  ``flow_weight=0`` is the "no flow
balance" ablation.

The trainer logs ``losses/flow_balance``, ``losses/anchor``, ``losses/edge``,
``losses/margin``, ``losses/kl``, ``losses/total``, ``charts/flow_residual`` (mean
:math:`|\delta_{t,t+1}|`), ``charts/strategy_accuracy`` (argmax of :math:`\pi_\theta` =
preferred strategy), ``charts/learning_rate`` and ``charts/SPS`` (states per second) to
TensorBoard, and writes safetensors checkpoints it can resume from exactly.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch.nn import functional as F

from esc_env.fileio import save_safetensors_atomic, write_json_atomic
from .model import AFlowModel, ModelConfig
from .trajectories import group_paths


@dataclass(frozen=True)
class AFPOConfig:
    """Settings of :class:`AFPOTrainer`.

    Attributes:
        flow_weight: :math:`w_{FB}` (0: the no-flow-balance ablation).
        subtb_lambda: :math:`\\lambda` weighting subpaths by :math:`\\lambda^{n-m}`.
        anchor_weight: :math:`w_A` of the leaf anchor.
        edge_weight: :math:`w_E` of the soft-Q read-out.
        flow_temperature: :math:`\\tau` (reward units per nat of flow).
        gamma: margin :math:`\\gamma` (paper: 1.0).
        margin_weight: :math:`w_M`.
        beta: KL weight :math:`\\beta` (paper: 0.1).
        lr: learning rate of the heads.
        backbone_lr: learning rate of trainable backbone weights (LoRA; paper: 2e-5).
        weight_decay: AdamW weight decay.
        batch_paths: paths per update.
        epochs: passes over the paths (ignored when ``total_steps`` is set).
        total_steps: optimizer updates in all (``None``: ``epochs`` x batches per epoch).
        grad_clip: max gradient norm (0: off).
        checkpoint_every: updates between checkpoints (the last update always saves).
        keep_checkpoints: how many checkpoints to keep.
        log_every: updates between TensorBoard points.
        min_tried: a state's preferred/negative pair enters the margin term (and the
            accuracy chart) only when the search tried at least this many strategies
            there; with one tried strategy the "preference" is just the path's action.
        seed: data-order seed.
    """

    flow_weight: float = 1.0
    subtb_lambda: float = 0.9
    anchor_weight: float = 1.0
    edge_weight: float = 1.0
    flow_temperature: float = 0.5
    gamma: float = 1.0
    margin_weight: float = 1.0
    beta: float = 0.1
    lr: float = 1e-3
    backbone_lr: float = 2e-5
    weight_decay: float = 0.0
    batch_paths: int = 32
    epochs: int = 30
    total_steps: int | None = None
    grad_clip: float = 1.0
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    log_every: int = 10
    min_tried: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if not (self.flow_temperature > 0):
            raise ValueError(f"AFPOConfig.flow_temperature must be > 0, got {self.flow_temperature!r}")
        if not (0 < self.subtb_lambda):
            raise ValueError(f"AFPOConfig.subtb_lambda must be > 0, got {self.subtb_lambda!r}")
        for name in ("batch_paths", "epochs", "checkpoint_every", "keep_checkpoints", "log_every", "min_tried"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"AFPOConfig.{name} must be a positive int, got {v!r}")
        if self.total_steps is not None and (not isinstance(self.total_steps, int) or self.total_steps < 1):
            raise ValueError(f"AFPOConfig.total_steps must be None or a positive int, got {self.total_steps!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AFPOConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown AFPOConfig option(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(d))


# --------------------------------------------------------------------------------------
# the loss terms (pure functions on padded path tensors)
# --------------------------------------------------------------------------------------


def subpath_weights(lengths: torch.Tensor, t_max: int, lam: float) -> torch.Tensor:
    r"""Weights :math:`\lambda^{n-m}` of every subpath ``(m, n)``, ``m < n <= L_p``; shape ``(P, T, T)``, ``T = t_max``."""
    idx = torch.arange(t_max)
    m, n = idx[:, None], idx[None, :]
    span = (n - m).to(torch.float64)
    valid = (n > m)[None] & (n[None] <= lengths[:, None, None])
    w = torch.where(valid, torch.pow(torch.tensor(float(lam), dtype=torch.float64), span)[None], torch.zeros((), dtype=torch.float64))
    return w.to(torch.float32)


def flow_balance_residuals(log_flow: torch.Tensor, log_pi_taken: torch.Tensor) -> torch.Tensor:
    r"""Residuals :math:`\delta_{m,n} = \log F(s_m) + \sum_{i=m}^{n-1}\log\pi(a_i|s_i) - \log F(s_n)`.

    Args:
        log_flow: :math:`\log F(s_t)`, shape ``(P, T)`` (padding anywhere past each path's end).
        log_pi_taken: :math:`\log\pi(a_t|s_t)` of the path's actions, shape ``(P, T - 1)``.

    Returns:
        shape ``(P, T, T)``; entry ``[p, m, n]`` is :math:`\delta_{m,n}` (meaningful for ``m < n``).
    """
    prefix = torch.cat([torch.zeros_like(log_flow[:, :1]), torch.cumsum(log_pi_taken, dim=1)], dim=1)  # sum_{i<t}
    z = log_flow - prefix
    return z[:, :, None] - z[:, None, :]


def flow_balance_loss(log_flow: torch.Tensor, log_pi_taken: torch.Tensor, lengths: torch.Tensor, lam: float = 0.9) -> torch.Tensor:
    r""":math:`\mathcal{L}_{FB}`: the :math:`\lambda^{n-m}`-weighted mean of :math:`\delta_{m,n}^2` per path, averaged over paths.

    Args:
        log_flow: ``(P, T)``; log_pi_taken: ``(P, T - 1)``; lengths: ``(P,)`` number of
            actions ``L_p`` of each path (states ``0..L_p`` are real).
    """
    delta = flow_balance_residuals(log_flow, log_pi_taken)
    w = subpath_weights(lengths, log_flow.shape[1], lam).to(delta.dtype)
    per_path = (w * delta.pow(2)).sum(dim=(1, 2)) / w.sum(dim=(1, 2)).clamp(min=1e-12)
    has = (lengths > 0).to(delta.dtype)
    return (per_path * has).sum() / has.sum().clamp(min=1.0)


def margin_loss(log_pi: torch.Tensor, preferred: torch.Tensor, negative: torch.Tensor, gamma: float) -> torch.Tensor:
    r""":math:`\operatorname{mean}\max(0, \gamma - [\log\pi(y^+|s) - \log\pi(y^-|s)])` over rows with both labels (``>= 0``).

    Args:
        log_pi: ``(N, n)``; preferred, negative: ``(N,)`` strategy indices, ``-1`` = none.
    """
    ok = (preferred >= 0) & (negative >= 0) & (preferred != negative)
    if not bool(ok.any()):
        return log_pi.sum() * 0.0
    lp = log_pi[ok]
    gap = lp.gather(1, preferred[ok, None]).squeeze(1) - lp.gather(1, negative[ok, None]).squeeze(1)
    return F.relu(gamma - gap).mean()


def kl_to_reference(log_pi: torch.Tensor, log_pi_ref: torch.Tensor) -> torch.Tensor:
    r""":math:`\operatorname{mean}_s \sum_a \pi(a|s)[\log\pi(a|s) - \log\pi_{ref}(a|s)]`; inputs ``(N, n)``."""
    if log_pi.shape[0] == 0:
        return log_pi.sum() * 0.0
    return (log_pi.exp() * (log_pi - log_pi_ref)).sum(dim=1).mean()


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------


@dataclass
class PathData:
    """All paths as padded tensors; states are indices into a table of unique states.

    Shapes (``P`` paths, ``T`` = longest path's states, ``n`` strategies): ``state_idx``
    ``(P, T)``, ``state_mask`` ``(P, T)``, ``lengths`` ``(P,)`` (actions ``L_p``; states
    ``0..L_p`` are real), ``actions`` / ``rewards`` ``(P, T-1)`` (:math:`a_t`,
    :math:`r_{t+1}`), ``cum_reward`` / ``value`` ``(P, T)`` (:math:`C(s_t)`, :math:`V(s_t)`),
    ``discount`` ``(P,)`` (:math:`\\gamma`), ``discount_pow`` ``(P, T)`` (:math:`\\gamma^t`),
    ``q_all`` / ``q_mask`` ``(P, T, n)``, ``preferred`` / ``negative`` ``(P, T)`` (``-1``: none).
    """

    observations: list[dict]
    state_idx: torch.Tensor
    state_mask: torch.Tensor
    lengths: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    cum_reward: torch.Tensor
    value: torch.Tensor
    discount: torch.Tensor
    discount_pow: torch.Tensor
    q_all: torch.Tensor
    q_mask: torch.Tensor
    preferred: torch.Tensor
    negative: torch.Tensor

    @property
    def n_paths(self) -> int:
        return int(self.state_idx.shape[0])

    @classmethod
    def from_records(cls, records: Sequence[dict], n_strategies: int, min_tried: int = 1) -> "PathData":
        paths = group_paths(records)
        if not paths:
            raise ValueError("no paths in the records: search produced no expansions")
        T = max(len(p) for p in paths)
        P = len(paths)
        table: dict[tuple, int] = {}
        observations: list[dict] = []
        state_idx = torch.zeros(P, T, dtype=torch.long)
        state_mask = torch.zeros(P, T, dtype=torch.bool)
        lengths = torch.zeros(P, dtype=torch.long)
        actions = torch.zeros(P, max(T - 1, 1), dtype=torch.long)
        rewards = torch.zeros(P, max(T - 1, 1))
        cum = torch.zeros(P, T)
        value = torch.zeros(P, T)
        discount = torch.ones(P)
        q_all = torch.zeros(P, T, n_strategies)
        q_mask = torch.zeros(P, T, n_strategies, dtype=torch.bool)
        pref = torch.full((P, T), -1, dtype=torch.long)
        neg = torch.full((P, T), -1, dtype=torch.long)
        for p, rows in enumerate(paths):
            lengths[p] = len(rows) - 1
            d = float(rows[0].get("discount", 1.0))
            if not (0.0 < d <= 1.0):
                raise ValueError(f"path {rows[0]['path']}: record field 'discount' must be in (0, 1], got {d!r}")
            discount[p] = d
            for t, r in enumerate(rows):
                key = (r["tree"], r["node"])
                if key not in table:
                    table[key] = len(observations)
                    observations.append(r["observation"])
                state_idx[p, t] = table[key]
                state_mask[p, t] = True
                cum[p, t] = float(r["cum_reward"])
                value[p, t] = float(r["value"])
                for a, q in enumerate(r["q_all"]):
                    if q is not None:
                        q_all[p, t, a] = float(q)
                        q_mask[p, t, a] = True
                tried = sum(1 for v in r["visits_all"] if v > 0)
                if r.get("preferred") is not None and tried >= min_tried:
                    pref[p, t] = int(r["preferred"])
                    if r.get("negative") is not None:
                        neg[p, t] = int(r["negative"])
                if r["action"] is not None:
                    actions[p, t] = int(r["action"])
                    rewards[p, t] = float(r["reward"])
        steps = torch.arange(T, dtype=torch.float32)
        discount_pow = discount[:, None] ** steps[None, :]
        k = max(T - 1, 1)
        return cls(observations, state_idx, state_mask, lengths, actions[:, :k], rewards[:, :k], cum, value, discount,
                   discount_pow, q_all, q_mask, pref, neg)

    def select(self, rows: torch.Tensor) -> "PathData":
        """The paths ``rows`` (observations table shared)."""
        return PathData(self.observations, self.state_idx[rows], self.state_mask[rows], self.lengths[rows], self.actions[rows],
                        self.rewards[rows], self.cum_reward[rows], self.value[rows], self.discount[rows],
                        self.discount_pow[rows], self.q_all[rows], self.q_mask[rows], self.preferred[rows],
                        self.negative[rows])


def afpo_losses(log_pi: torch.Tensor, soft_value: torch.Tensor, soft_q: torch.Tensor, ref_log_pi: torch.Tensor,
                batch: PathData, cfg: AFPOConfig) -> dict[str, torch.Tensor]:
    r"""Every AFPO term for a batch of paths (see the module docstring for the formulas).

    Args:
        log_pi: :math:`\log\pi_\theta(\cdot|s_t)`, ``(P, T, n)``.
        soft_value: :math:`h_\theta(s_t)`, ``(P, T)``.
        soft_q: :math:`g_\theta(s_t,\cdot)`, ``(P, T, n)``.
        ref_log_pi: :math:`\log\pi_{ref}(\cdot|s_t)`, ``(P, T, n)``.
        batch: the paths (:class:`PathData`); ``T`` may be shorter than ``batch``'s.
        cfg: weights and :math:`\tau`.

    Returns:
        ``flow_balance``, ``anchor``, ``edge``, ``margin``, ``kl``, ``total`` (scalars with
        grad) and the detached charts ``flow_residual``, ``strategy_accuracy``.
    """
    tau = cfg.flow_temperature
    mask = batch.state_mask[:, :soft_value.shape[1]]
    T = soft_value.shape[1]
    # log F(s_t) = C(s_t)/tau + gamma^t h(s_t)
    collected = batch.cum_reward[:, :T] / tau
    log_flow = collected + batch.discount_pow[:, :T] * soft_value
    if T > 1:
        edge_ok = mask[:, 1:]
        acts = batch.actions[:, : T - 1, None]
        taken = log_pi[:, :-1].gather(2, acts).squeeze(2)  # log pi(a_t | s_t)
        # padding past a path's end must not move the cumulative sum: zeroed
        taken = torch.where(edge_ok, taken, torch.zeros_like(taken))
        fb = flow_balance_loss(log_flow, taken, batch.lengths, cfg.subtb_lambda)
        step = (log_flow[:, :-1] + taken - log_flow[:, 1:]).abs()
        flow_residual = (step * edge_ok).sum() / edge_ok.sum().clamp(min=1)
        # soft-Q read-out on the path's edges: g(s_t, a_t) -> r_{t+1}/tau + gamma h(s_{t+1})
        q_taken = soft_q[:, :-1].gather(2, acts).squeeze(2)
        q_target = batch.rewards[:, : T - 1] / tau + batch.discount[:, None] * soft_value[:, 1:].detach()
        edge = ((q_taken - q_target) ** 2)[edge_ok].mean() if bool(edge_ok.any()) else soft_q.sum() * 0.0
    else:
        fb = soft_value.sum() * 0.0
        edge = soft_q.sum() * 0.0
        flow_residual = torch.zeros(())
    # the anchor: leaves only, h(s_L) -> V(s_L)/tau
    last = batch.lengths.clamp(max=T - 1)[:, None]
    h_leaf = soft_value.gather(1, last).squeeze(1)
    v_leaf = batch.value[:, :T].gather(1, last).squeeze(1)
    anchor = ((h_leaf - v_leaf / tau) ** 2).mean()
    lp = log_pi[mask]
    margin = margin_loss(lp, batch.preferred[:, :T][mask], batch.negative[:, :T][mask], cfg.gamma)
    kl = kl_to_reference(lp, ref_log_pi[mask])
    total = (cfg.flow_weight * fb + cfg.anchor_weight * anchor + cfg.edge_weight * edge + cfg.margin_weight * margin
             + cfg.beta * kl)
    pref = batch.preferred[:, :T][mask]
    has = pref >= 0
    acc = (lp.argmax(dim=1)[has] == pref[has]).float().mean() if bool(has.any()) else torch.tensor(float("nan"))
    return {"flow_balance": fb, "anchor": anchor, "edge": edge, "margin": margin, "kl": kl, "total": total,
            "flow_residual": flow_residual.detach(), "strategy_accuracy": acc.detach()}


# --------------------------------------------------------------------------------------
# the trainer
# --------------------------------------------------------------------------------------


class AFPOTrainer:
    """Trains an :class:`AFlowModel` with AFPO on prefix records; resumable.

    Args:
        model: the model (its heads are trained; its backbone too when it has LoRA).
        records: prefix records (:func:`policies.aflow.trajectories.extract_records`).
        config: :class:`AFPOConfig`.
        run_dir: where ``tb/`` (TensorBoard) and ``checkpoints/`` go; ``None``: no files.
        progress: show a tqdm bar.

    ``train()`` resumes from ``run_dir/checkpoints/latest.json`` when it exists: the
    weights, the optimizer state and the step are restored and the data order (a
    permutation per epoch from ``config.seed``) is recomputed, so the resumed run ends
    with the same weights as an uninterrupted one.
    """

    def __init__(self, model: AFlowModel, records: Sequence[dict], config: AFPOConfig | None = None,
                 run_dir: str | Path | None = None, progress: bool = True) -> None:
        self.model = model
        self.config = config or AFPOConfig()
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress
        self.data = PathData.from_records(records, model.n_strategies, self.config.min_tried)
        self.step = 0
        heads = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(("policy_head.", "flow_head."))]
        backbone = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith("encoder.")]
        groups = [{"params": heads, "lr": self.config.lr}]
        if backbone:
            groups.append({"params": backbone, "lr": self.config.backbone_lr})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=self.config.weight_decay)
        self._z: torch.Tensor | None = None
        self._z_ref: torch.Tensor | None = None
        self.history: list[dict] = []

    # ---- sizes -----------------------------------------------------------------------
    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.data.n_paths / self.config.batch_paths)

    @property
    def total_steps(self) -> int:
        if self.config.total_steps is not None:
            return self.config.total_steps
        return self.config.epochs * self.batches_per_epoch

    def batch_rows(self, step: int) -> torch.Tensor:
        """The path indices of update ``step`` (0-based): a fixed function of the seed and step."""
        epoch, k = divmod(step, self.batches_per_epoch)
        g = torch.Generator().manual_seed(int(self.config.seed) * 1_000_003 + epoch)
        perm = torch.randperm(self.data.n_paths, generator=g)
        b = self.config.batch_paths
        return perm[k * b:(k + 1) * b]

    # ---- forward on a batch ----------------------------------------------------------
    def _features(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and reference log-policy of the state-table rows ``idx`` (flat).

        With a frozen backbone both are computed once for the whole state table (the
        reference head is frozen too), so an update only runs the heads.
        """
        if not self.model.backbone_trainable:
            if self._z is None:
                with torch.no_grad():
                    self._z = self.model.features(self.data.observations).detach()
                    self._z_ref = self.model.reference_log_pi(self._z)
            return self._z[idx], self._z_ref[idx]
        obs = [self.data.observations[i] for i in idx.tolist()]
        return self.model.features(obs), self.model.reference_log_pi(self.model.features(obs, adapters=False))

    def losses(self, batch: PathData) -> dict[str, torch.Tensor]:
        """The AFPO terms of a batch; the model runs once per distinct real state of the batch."""
        P, T = batch.state_idx.shape
        n = self.model.n_strategies
        uniq, inverse = torch.unique(batch.state_idx[batch.state_mask], return_inverse=True)
        z, ref_u = self._features(uniq)
        out = self.model.heads(z)
        pos = torch.zeros(P, T, dtype=torch.long)
        pos[batch.state_mask] = inverse
        flat = pos.reshape(-1)
        return afpo_losses(out.log_pi[flat].view(P, T, n), out.soft_value[flat].view(P, T), out.soft_q[flat].view(P, T, n),
                           ref_u[flat].view(P, T, n), batch, self.config)

    # ---- checkpoints -----------------------------------------------------------------
    def _ckpt_root(self) -> Path | None:
        return self.run_dir / "checkpoints" if self.run_dir is not None else None

    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoints/step_XXXXXXXX/`` (model, optimizer, state) and point ``latest.json`` at it."""
        root = self._ckpt_root()
        if root is None:
            return None
        d = root / f"step_{self.step:08d}"
        d.mkdir(parents=True, exist_ok=True)
        save_safetensors_atomic(d / "model.safetensors", self.model.trainable_state())
        opt_tensors, opt_meta = _optimizer_to_tensors(self.optimizer)
        if opt_tensors:
            save_safetensors_atomic(d / "optimizer.safetensors", opt_tensors)
        write_json_atomic(d / "state.json", {"step": self.step, "afpo": self.config.to_dict(),
                                             "model": self.model.config.to_dict(), "optimizer": opt_meta,
                                             "n_paths": self.data.n_paths})
        write_json_atomic(root / "latest.json", {"step": self.step, "dir": d.name})
        kept = sorted(p for p in root.glob("step_*") if p.is_dir())
        for old in kept[: -self.config.keep_checkpoints]:
            shutil.rmtree(old, ignore_errors=True)
        return d

    def load_checkpoint(self) -> bool:
        """Restore the latest checkpoint of ``run_dir``; ``False`` when there is none."""
        root = self._ckpt_root()
        if root is None or not (root / "latest.json").is_file():
            return False
        from safetensors.torch import load_file

        latest = json.loads((root / "latest.json").read_text())
        d = root / latest["dir"]
        state = json.loads((d / "state.json").read_text())
        if state["model"] != self.model.config.to_dict():
            raise ValueError(f"{d} was trained with another ModelConfig; use a new run folder")
        mine = self.config.to_dict()
        if {k: v for k, v in state["afpo"].items() if k != "total_steps"} != {k: v for k, v in mine.items() if k != "total_steps"}:
            raise ValueError(f"{d} was trained with another AFPOConfig; use a new run folder")
        self.model.load_trainable_state(load_file(str(d / "model.safetensors")))
        opt_file = d / "optimizer.safetensors"
        _optimizer_from_tensors(self.optimizer, load_file(str(opt_file)) if opt_file.is_file() else {}, state["optimizer"])
        self.step = int(state["step"])
        return True

    # ---- the loop --------------------------------------------------------------------
    def train(self, stop_at: int | None = None) -> dict[str, float]:
        """Train to ``total_steps`` (or stop after update ``stop_at``, e.g. to test resuming).

        Returns the metrics of the last update.
        """
        from tqdm.auto import tqdm

        resumed = self.load_checkpoint()
        end = self.total_steps if stop_at is None else min(stop_at, self.total_steps)
        writer = None
        if self.run_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step if resumed else None)
        params = self.model.trainable_parameters()
        t0, states_done = time.perf_counter(), 0
        last: dict[str, float] = {}
        bar = tqdm(total=end, initial=self.step, desc="AFPO", unit="upd", disable=not self.progress)
        self.model.train()
        while self.step < end:
            batch = self.data.select(self.batch_rows(self.step))
            terms = self.losses(batch)
            self.optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            if self.config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
            self.optimizer.step()
            self.step += 1
            states_done += int(batch.state_mask.sum())
            last = {k: float(v.detach()) for k, v in terms.items()}
            last["SPS"] = states_done / max(time.perf_counter() - t0, 1e-9)
            if writer is not None and (self.step % self.config.log_every == 0 or self.step == end):
                for k in ("flow_balance", "anchor", "edge", "margin", "kl", "total"):
                    writer.add_scalar(f"losses/{k}", last[k], self.step)
                writer.add_scalar("charts/flow_residual", last["flow_residual"], self.step)
                writer.add_scalar("charts/strategy_accuracy", last["strategy_accuracy"], self.step)
                writer.add_scalar("charts/learning_rate", self.optimizer.param_groups[0]["lr"], self.step)
                writer.add_scalar("charts/SPS", last["SPS"], self.step)
            if self.step % self.config.checkpoint_every == 0 or self.step == end:
                self.save_checkpoint()
            self.history.append({"step": self.step, **last})
            bar.update(1)
            bar.set_postfix(loss=f"{last['total']:.3f}", acc=f"{last['strategy_accuracy']:.2f}")
        bar.close()
        if writer is not None:
            writer.close()
        self.model.eval()
        return last

    @torch.no_grad()
    def evaluate_records(self) -> dict[str, float]:
        """The loss terms over all paths at once (no update)."""
        self.model.eval()
        terms = self.losses(self.data)
        return {k: float(v) for k, v in terms.items()}


def _optimizer_to_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{pid}.{k}"] = v
            else:
                scalars.setdefault(str(pid), {})[k] = v
    groups = [{k: v for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _optimizer_from_tensors(opt: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        pid, k = key.split(".", 1)
        state.setdefault(int(pid), {})[k] = v
    for pid, extra in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(extra)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def build_model(n_strategies: int, **kwargs: Any) -> AFlowModel:
    """``AFlowModel(ModelConfig(n_strategies, **kwargs))``."""
    return AFlowModel(ModelConfig(n_strategies=n_strategies, **kwargs))
