"""A judge grounded in human ratings: seeker text -> the seeker's *self-rated* intensity.

The prompted :class:`~agents.judges.affect.AffectJudge` asks an LLM how upset the seeker is;
nothing ties its numbers to what seekers actually felt.  ESConv asked every seeker to rate
their emotional intensity (1-5) before the conversation and again after it.
:class:`CalibratedAffectJudge` is a small model trained on those ratings:

* a **frozen text encoder** (the packaged ``all-MiniLM-L6-v2`` by default, or an LLM
  backend's mean-pooled hidden states, see :mod:`agents.judges.encoders`) reads the last
  ``K`` seeker turns;
* a **light head** (ridge regression, an ordinal cumulative-logit head, or a one-hidden-layer
  MLP) maps the embedding to a level in ``[1, 5]``.

Training examples (:func:`training_views`): each train dialogue's *opening* (the dialogue
cut after its 1st, 2nd, ... seeker turn) is labelled with the initial rating, its *end*
(the whole dialogue) with the final rating.  There are no labels in the middle of a
dialogue.  An optional pairwise term also fits the change ``f(opening) - f(end)`` to the
surveyed change ``initial - final`` of the same dialogue, since rewards use differences.

What the judge does **not** see: the number of turns, the time, the persona.  A judge that
knew "this is late in the dialogue" would score well on ESConv (every surveyed dialogue
improved) and reward stalling.

Shipped weights ``esconv-minilm`` (``examples/train_calibrated_judge.py``; chosen by 5-fold
grouped CV on the 910 train dialogues, maximising the mean of the two per-time-point
Spearman correlations): K = 4 seeker turns joined into one text, MiniLM, two-stage ridge
head.  On ESConv **valid** (195 dialogues; opening = cut after 2 seeker turns), measured
once after the choice:

=========================  ==========  ===========  =================  ======================
metric                     this judge  CV on train  prompted (a)       time-point oracle (b)
=========================  ==========  ===========  =================  ======================
Spearman, pooled           0.65        0.68         0.55               0.78
Spearman, openings/initial 0.08        0.19         0.19               n/a (constant)
Spearman, ends/final       0.04        0.14         0.10               n/a (constant)
MAE (1-5)                  0.81        0.82         0.93               0.63
direction accuracy         0.99        0.98         0.88               1.00
=========================  ==========  ===========  =================  ======================

(a) :class:`~agents.judges.affect.AffectJudge`, design ``emotion-words-cal``, embedded
SmolLM2-135M, same views.  (b) see the first weakness below.

Cost: about 70 ms per judged dialogue on a shared 2-core CPU, about 1% of one generated
seeker reply (``benchmarks/judge_validity.py``: ``x_reply`` 0.012).

**Politeness-free weights, the default** (``esconv-minilm-nopolite``, issue 16): the same
configuration trained on the same train dialogues, but every seeker turn is read through
:func:`~agents.judges.politeness.strip_politeness` (thanks, greetings and goodbyes removed;
a turn that was only politeness is skipped), in training and in use
(``FeatureConfig.strip_politeness``).  No new search: the configuration is the one chosen
above, so nothing was tuned on valid.  ``examples/train_calibrated_judge.py --no-search --k 4
--mode concat --head ridge --alpha 3000 --phase-alpha 10000 --opening-views 2
--strip-politeness --out agents/judges/weights/esconv-minilm-nopolite --eval-valid``:

=========================  =================  ==============  =============  ==============
metric                     nopolite, valid    nopolite, CV    esconv-minilm  esconv-minilm
                                              on train        valid          CV on train
=========================  =================  ==============  =============  ==============
Spearman, pooled           0.66               0.66            0.65           0.68
Spearman, openings/initial 0.11               0.17            0.08           0.19
Spearman, ends/final       0.06               0.10            0.04           0.14
MAE (1-5)                  0.82               0.84            0.81           0.82
direction accuracy         0.97               0.98            0.99           0.98
=========================  =================  ==============  =============  ==============

It meets issue 8's targets as the old weights do; a politeness-only change of a seeker
text no longer moves it at all (the text it reads is the same), where the old weights moved
by about -0.35 on average (``benchmarks/reward_hacking.py``, probe table in the README).

**Known weaknesses** (read before using it as a reward):

* Labels exist only at the start and the end of a dialogue, and every surveyed ESConv
  dialogue ends calmer than it began.  Most of what the judge learnt is *which end of a
  support conversation a text comes from*.  The old ``esconv-minilm`` weights read
  greetings as upset ("Hi" ~4.0, "Hello, how are you?" ~4.3) and thanks and goodbyes as calm
  ("Thank you so much, bye!" ~2.7; "Thanks. I still feel hopeless ..." ~3.3 against ~4.1
  without the thanks), so a policy could raise its reward by steering an LLM seeker into
  thanking.  The default weights do not read these formulas, but every other cue of "the
  end of a conversation" is still there: "I'll try that", "that helps", "I feel better
  now" are read as calm whether or not the seeker has any reason to feel better, and a
  supporter who tells an LLM seeker that its problem is solved can get such words out of
  it (``declare-solved`` in ``benchmarks/reward_hacking.py``).  The politeness list is
  hand-written English (:mod:`agents.judges.politeness`); a formula it does not know
  leaks through.  The "time-point oracle" (the train mean of the initial ratings for
  every opening, of the final ratings for every end) beats both weights on the pooled
  metrics, so pooled Spearman, MAE and direction accuracy mostly measure the start/end
  contrast.
* Within one time point it barely ranks seekers: Spearman 0.17 / 0.10 in CV on train and
  0.11 / 0.06 on valid for the default weights (0.19 / 0.14 and 0.08 / 0.04 for the old
  ones, whose bootstrap 95% intervals on valid include 0; with 195 dialogues a Spearman
  below about 0.14 is not distinguishable from 0).
* 910 training dialogues; self-ratings are coarse (initial mostly 4-5, final mostly 1-3).

Usage::

    judge = CalibratedAffectJudge.load()                    # shipped default weights (esconv-minilm-nopolite)
    judge.judge([turns_a, turns_b])                         # -> array([4.1, 2.3])

Weights are a folder with ``head.safetensors`` (the head's tensors and the feature
standardisation) and ``config.json`` (encoder, feature config, head kind, training metrics).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

import numpy as np

from ..dialogue import Turn
from ..scales import INTENSITY_HIGH, INTENSITY_LOW, INTENSITY_NEUTRAL
from .encoders import TextEncoder, make_encoder
from .politeness import strip_politeness

MIN_LEVEL, MAX_LEVEL, NEUTRAL_LEVEL = INTENSITY_LOW, INTENSITY_HIGH, INTENSITY_NEUTRAL

#: folder of the weights shipped with the package
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
#: name of the default shipped weights: politeness-free (the previous default, ``"esconv-minilm"``,
#: reads thanks and goodbyes as calm; see the module docstring)
DEFAULT_WEIGHTS = "esconv-minilm-nopolite"

HEAD_FILE = "head.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1

#: what the encoder reads when a dialogue has no seeker text at all
EMPTY_TEXT = ""

HeadKind = Literal["ridge", "ordinal", "mlp"]
FeatureMode = Literal["concat", "turns"]


# ============================================================================ features
@dataclass(frozen=True)
class FeatureConfig:
    """What the judge reads and how it becomes a feature vector.

    Attributes:
        last_seeker_turns: ``K``, how many of the most recent seeker utterances are read.
        mode: ``"concat"``: the K utterances joined by spaces form one text, whose embedding
            is the feature vector (``dim`` features).  ``"turns"``: every utterance is
            embedded on its own (cached per utterance, so a growing dialogue costs one new
            text per step); features are ``[mean of the K vectors, vector of the last one]``
            (``2 * dim`` features).
        max_chars_per_turn: each utterance is cut to this many characters first.
        strip_politeness: remove thanks, greetings and goodbyes from every utterance first
            (:func:`~agents.judges.politeness.strip_politeness`); an utterance that was only
            politeness is skipped, so the judge reads the last K utterances with content.
    """

    last_seeker_turns: int = 2
    mode: FeatureMode = "concat"
    max_chars_per_turn: int = 500
    strip_politeness: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.last_seeker_turns, int) or self.last_seeker_turns < 1:
            raise ValueError(f"last_seeker_turns must be a positive int, got {self.last_seeker_turns!r}")
        if self.mode not in ("concat", "turns"):
            raise ValueError(f"mode must be 'concat' or 'turns', got {self.mode!r}")
        if self.max_chars_per_turn < 1:
            raise ValueError(f"max_chars_per_turn must be >= 1, got {self.max_chars_per_turn}")
        if not isinstance(self.strip_politeness, bool):
            raise ValueError(f"strip_politeness must be a bool, got {self.strip_politeness!r}")

    def utterances(self, turns: Sequence[Turn]) -> list[str]:
        """The last K non-blank seeker utterances, whitespace-normalised and cut (may be empty)."""
        said = [" ".join(str(t.text).split()) for t in turns if t.speaker == "seeker"]
        if self.strip_politeness:
            said = [strip_politeness(s) for s in said]
        said = [s[: self.max_chars_per_turn] for s in said if s]
        return said[-self.last_seeker_turns :]

    def texts(self, turns: Sequence[Turn]) -> list[str]:
        """The texts to encode for one dialogue (at least one)."""
        said = self.utterances(turns)
        if self.mode == "concat":
            return [" ".join(said) if said else EMPTY_TEXT]
        return said if said else [EMPTY_TEXT]

    def n_features(self, dim: int) -> int:
        """Length of the feature vector for an encoder of width ``dim``."""
        return dim if self.mode == "concat" else 2 * dim

    def pool(self, vecs: np.ndarray) -> np.ndarray:
        """Feature vector from the ``(m, dim)`` vectors of one dialogue's :meth:`texts`."""
        vecs = np.asarray(vecs, dtype=np.float64)
        if self.mode == "concat":
            return vecs[0]
        return np.concatenate([vecs.mean(axis=0), vecs[-1]])


def featurize(
    dialogues: Sequence[Sequence[Turn]], encoder: TextEncoder, config: FeatureConfig
) -> np.ndarray:
    """Feature matrix of ``n`` dialogues, shape ``(n, config.n_features(encoder.dim))``, float64.

    All texts of all dialogues go to the encoder in one ``encode`` call (one forward pass
    for the texts it has not cached).
    """
    per = [config.texts(d) for d in dialogues]
    flat = [t for ts in per for t in ts]
    if not per:
        return np.zeros((0, config.n_features(encoder.dim)), dtype=np.float64)
    vecs = encoder.encode(flat)
    out = np.empty((len(per), config.n_features(encoder.dim)), dtype=np.float64)
    k = 0
    for i, ts in enumerate(per):
        out[i] = config.pool(vecs[k : k + len(ts)])
        k += len(ts)
    return out


# ============================================================================ heads
def _clean(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    v = np.where(np.isfinite(v), v, NEUTRAL_LEVEL)
    return np.clip(v, MIN_LEVEL, MAX_LEVEL)


@dataclass
class HeadParams:
    """Training settings of a head (all heads read what applies to them).

    Attributes:
        alpha: L2 penalty (ridge: on the standardised weights; ordinal/MLP: weight decay
            per example).
        pair_weight: weight of the pairwise change term (0 disables it).
        hidden: MLP hidden width.
        epochs: optimiser steps for the ordinal and MLP heads (full batch).
        lr: Adam learning rate for the MLP head.
        seed: initialisation seed.
        phase_alpha: ridge only; 0 fits one ridge regression.  ``> 0`` fits the head in two
            stages (still one linear map): first a ridge (penalty ``alpha``) on labels and
            features centred *within* each time point (openings, ends), which can only
            learn what separates calm from upset seekers at the same point of a
            conversation; then a ridge (penalty ``phase_alpha``) on what is left, which
            learns the rest (mostly: openings vs ends).  Without this, the opening/end
            contrast, the largest source of variance, swamps the within-time-point signal.
    """

    alpha: float = 10.0
    pair_weight: float = 0.0
    phase_alpha: float = 0.0
    hidden: int = 64
    epochs: int = 300
    lr: float = 3e-3
    seed: int = 0


class Head:
    """A trained map from standardised features ``(n, d)`` to levels ``(n,)``."""

    kind: str = "head"

    def predict(self, z: np.ndarray) -> np.ndarray:
        """Levels of standardised features ``z`` of shape ``(n, d)``; shape ``(n,)`` (unclipped)."""
        raise NotImplementedError

    def tensors(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @classmethod
    def from_tensors(cls, t: dict[str, np.ndarray]) -> "Head":
        raise NotImplementedError

    @classmethod
    def fit(
        cls,
        z: np.ndarray,
        y: np.ndarray,
        w: np.ndarray,
        pairs: np.ndarray,
        dy: np.ndarray,
        p: HeadParams,
        phase: np.ndarray | None = None,
    ) -> "Head":
        """Fit on standardised features.

        Args:
            z: ``(n, d)`` features.  y: ``(n,)`` levels.  w: ``(n,)`` example weights.
            pairs: ``(m, 2)`` indices ``(opening, end)`` of the same dialogue.
            dy: ``(m,)`` surveyed change ``initial - final`` of each pair.
            p: settings.
            phase: ``(n,)`` bool, True for end views (used by ``phase_alpha``).
        """
        raise NotImplementedError


class RidgeHead(Head):
    """``level = z @ w + b``; weighted ridge regression, closed form.

    The pairwise term adds rows ``sqrt(pair_weight) * (z_open - z_end)`` with target
    ``sqrt(pair_weight) * (initial - final)`` (no intercept): least squares on the change.
    """

    kind = "ridge"

    def __init__(self, w: np.ndarray, b: float) -> None:
        self.w = np.asarray(w, dtype=np.float64).reshape(-1)
        self.b = float(b)

    def predict(self, z):
        return np.asarray(z, dtype=np.float64) @ self.w + self.b

    def tensors(self):
        return {"w": self.w, "b": np.array([self.b])}

    @classmethod
    def from_tensors(cls, t):
        return cls(t["w"], float(np.asarray(t["b"]).reshape(-1)[0]))

    @staticmethod
    def _solve(z, y, w, pairs, dy, alpha: float, pair_weight: float, intercept: bool = True) -> tuple[np.ndarray, float]:
        n, d = z.shape
        sw = np.sqrt(w / w.mean())
        a = (np.hstack([z, np.ones((n, 1))]) if intercept else z) * sw[:, None]
        t = y * sw
        if pair_weight > 0 and len(pairs):
            s = math.sqrt(pair_weight * n / len(pairs))
            diff = (z[pairs[:, 0]] - z[pairs[:, 1]]) * s
            if intercept:
                diff = np.hstack([diff, np.zeros((len(pairs), 1))])
            a = np.vstack([a, diff])
            t = np.concatenate([t, dy * s])
        reg = np.full(a.shape[1], float(alpha))
        if intercept:
            reg[-1] = 0.0
        coef = np.linalg.solve(a.T @ a + np.diag(reg), a.T @ t)
        return (coef[:-1], float(coef[-1])) if intercept else (coef, 0.0)

    @classmethod
    def fit(cls, z, y, w, pairs, dy, p, phase=None):
        if p.phase_alpha <= 0 or phase is None or len(np.unique(phase)) < 2:
            return cls(*cls._solve(z, y, w, pairs, dy, p.alpha, p.pair_weight))
        zc, yc = z.copy(), y.astype(np.float64).copy()
        for ph in (False, True):
            m = phase == ph
            zc[m] -= np.average(z[m], axis=0, weights=w[m])
            yc[m] -= np.average(y[m], weights=w[m])
        w_in, _ = cls._solve(zc, yc, w, pairs[:0], dy[:0], p.alpha, 0.0, intercept=False)
        w_ph, b = cls._solve(z, y - z @ w_in, w, pairs, dy - (z[pairs[:, 0]] - z[pairs[:, 1]]) @ w_in if len(pairs) else dy,
                             p.phase_alpha, p.pair_weight)
        return cls(w_in + w_ph, b)


def _torch_fit(model, loss_fn: Callable, p: HeadParams, optimizer: str) -> None:
    import torch

    if optimizer == "lbfgs":
        opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=p.epochs, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            return loss

        opt.step(closure)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=p.lr)
        for _ in range(p.epochs):
            opt.zero_grad()
            loss = loss_fn()
            loss.backward()
            opt.step()


class OrdinalHead(Head):
    """Cumulative-logit ordinal regression: ``P(level > j) = sigmoid(z @ w - theta_j)``, j = 1..4.

    The prediction is the expected level ``1 + sum_j P(level > j)``.  Fitted by weighted
    maximum likelihood with an L2 penalty (L-BFGS); the pairwise term is a squared error on
    the change of the expected level.
    """

    kind = "ordinal"

    def __init__(self, w: np.ndarray, thresholds: np.ndarray) -> None:
        self.w = np.asarray(w, dtype=np.float64).reshape(-1)
        self.thresholds = np.asarray(thresholds, dtype=np.float64).reshape(-1)

    def predict(self, z):
        s = np.asarray(z, dtype=np.float64) @ self.w
        return 1.0 + (1.0 / (1.0 + np.exp(-(s[:, None] - self.thresholds[None, :])))).sum(axis=1)

    def tensors(self):
        return {"w": self.w, "thresholds": self.thresholds}

    @classmethod
    def from_tensors(cls, t):
        return cls(t["w"], t["thresholds"])

    @classmethod
    def fit(cls, z, y, w, pairs, dy, p, phase=None):
        import torch

        torch.manual_seed(p.seed)
        n, d = z.shape
        Z = torch.tensor(z, dtype=torch.float64)
        Y = torch.tensor(np.clip(np.rint(y), 1, 5).astype(np.int64) - 1)
        W = torch.tensor(w / w.mean(), dtype=torch.float64)
        P = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
        DY = torch.tensor(dy, dtype=torch.float64)
        lin = torch.nn.Parameter(torch.zeros(d, dtype=torch.float64))
        # thresholds as first value + positive gaps keeps them ordered
        t0 = torch.nn.Parameter(torch.tensor([-1.5], dtype=torch.float64))
        gaps = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
        module = torch.nn.ParameterList([lin, t0, gaps])

        def thresholds():
            return torch.cat([t0, t0 + torch.cumsum(torch.nn.functional.softplus(gaps) + 1e-3, 0)])

        def loss_fn():
            th = thresholds()
            s = Z @ lin
            cum = torch.sigmoid(s[:, None] - th[None, :])  # P(y > j), (n, 4)
            upper = torch.cat([torch.ones(n, 1, dtype=Z.dtype), cum], 1)
            lower = torch.cat([cum, torch.zeros(n, 1, dtype=Z.dtype)], 1)
            probs = (upper - lower).clamp_min(1e-9)
            nll = -(torch.log(probs.gather(1, Y[:, None]).squeeze(1)) * W).mean()
            loss = nll + p.alpha * (lin @ lin) / n
            if p.pair_weight > 0 and len(P):
                level = 1.0 + cum.sum(1)
                loss = loss + p.pair_weight * ((level[P[:, 0]] - level[P[:, 1]] - DY) ** 2).mean() / 4.0
            return loss

        _torch_fit(module, loss_fn, p, "lbfgs")
        with torch.no_grad():
            return cls(lin.numpy().copy(), thresholds().numpy().copy())


class MLPHead(Head):
    """One hidden layer: ``level = 3 + 2 * tanh(gelu(z @ W1 + b1) @ w2 + b2)`` (range ``[1, 5]``).

    Fitted with Adam (full batch) on the weighted squared error plus weight decay and the
    optional pairwise change term.
    """

    kind = "mlp"

    def __init__(self, W1, b1, w2, b2) -> None:
        self.W1 = np.asarray(W1, dtype=np.float64)
        self.b1 = np.asarray(b1, dtype=np.float64).reshape(-1)
        self.w2 = np.asarray(w2, dtype=np.float64).reshape(-1)
        self.b2 = float(np.asarray(b2).reshape(-1)[0])

    @staticmethod
    def _gelu(x: np.ndarray) -> np.ndarray:
        from scipy.special import erf

        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))

    def predict(self, z):
        h = self._gelu(np.asarray(z, dtype=np.float64) @ self.W1 + self.b1)
        return 3.0 + 2.0 * np.tanh(h @ self.w2 + self.b2)

    def tensors(self):
        return {"W1": self.W1, "b1": self.b1, "w2": self.w2, "b2": np.array([self.b2])}

    @classmethod
    def from_tensors(cls, t):
        return cls(t["W1"], t["b1"], t["w2"], t["b2"])

    @classmethod
    def fit(cls, z, y, w, pairs, dy, p, phase=None):
        import torch

        gen = torch.Generator().manual_seed(p.seed)
        n, d = z.shape
        Z = torch.tensor(z, dtype=torch.float32)
        Y = torch.tensor(y, dtype=torch.float32)
        W = torch.tensor(w / w.mean(), dtype=torch.float32)
        P = torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)
        DY = torch.tensor(dy, dtype=torch.float32)
        W1 = torch.nn.Parameter(torch.randn(d, p.hidden, generator=gen) / math.sqrt(d))
        b1 = torch.nn.Parameter(torch.zeros(p.hidden))
        w2 = torch.nn.Parameter(torch.randn(p.hidden, generator=gen) * 0.01)
        b2 = torch.nn.Parameter(torch.zeros(1))
        module = torch.nn.ParameterList([W1, b1, w2, b2])

        def loss_fn():
            out = 3.0 + 2.0 * torch.tanh(torch.nn.functional.gelu(Z @ W1 + b1) @ w2 + b2)
            loss = (W * (out - Y) ** 2).mean() + p.alpha * ((W1**2).sum() + (w2**2).sum()) / n
            if p.pair_weight > 0 and len(P):
                loss = loss + p.pair_weight * ((out[P[:, 0]] - out[P[:, 1]] - DY) ** 2).mean()
            return loss

        _torch_fit(module, loss_fn, p, "adam")
        return cls(W1.detach().numpy(), b1.detach().numpy(), w2.detach().numpy(), b2.detach().numpy())


HEADS: dict[str, type[Head]] = {"ridge": RidgeHead, "ordinal": OrdinalHead, "mlp": MLPHead}
"""Head classes by kind."""


# ============================================================================ the judge
def _f32(v) -> np.ndarray:
    """``v`` rounded to float32 precision, as float64."""
    return np.asarray(v, dtype=np.float32).astype(np.float64)


class CalibratedAffectJudge:
    """Seeker's emotional intensity 1-5 from a frozen encoder + a head trained on ESConv surveys.

    Same interface as :class:`~agents.judges.affect.AffectJudge`: ``judge(dialogues)``.
    It makes no LLM call (``backend`` is ``None`` unless the encoder is an LLM backend's
    hidden states), and one batched encoder forward pass per call (none when every text is
    cached).

    Args:
        encoder: the frozen text encoder (its ``name`` must match the one the head was
            trained with when loading weights).
        features: what is read and how it is pooled.
        head: the trained head.
        mean, scale: feature standardisation, each of shape ``(n_features,)``.
        info: free-form metadata (training metrics, data, settings); saved in ``config.json``.
        encoder_kind: ``"minilm"`` or ``"backend"`` (recorded in ``config.json``).
    """

    def __init__(
        self,
        encoder: TextEncoder,
        features: FeatureConfig,
        head: Head,
        mean: np.ndarray,
        scale: np.ndarray,
        info: dict | None = None,
        encoder_kind: str = "minilm",
    ) -> None:
        self.encoder = encoder
        self.features = features
        # parameters are stored as float32: round them here, so that a judge computes the
        # same numbers before saving and after loading
        self.head = type(head).from_tensors({k: _f32(v) for k, v in head.tensors().items()})
        self.mean = _f32(mean).reshape(-1)
        self.scale = _f32(scale).reshape(-1)
        n_feat = features.n_features(encoder.dim)
        if self.mean.shape != (n_feat,) or self.scale.shape != (n_feat,):
            raise ValueError(
                f"standardisation has shapes {self.mean.shape}/{self.scale.shape}, expected ({n_feat},) "
                f"for encoder {encoder.name!r} (dim {encoder.dim}) and mode {features.mode!r}"
            )
        self.info = dict(info or {})
        self.encoder_kind = encoder_kind
        #: the LLM backend used (only for ``encoder_kind="backend"``), for usage accounting
        self.backend = getattr(encoder, "backend", None)
        #: the weights folder it was loaded from (``None`` when built in memory)
        self.source: str | None = None

    # ---- judging -----------------------------------------------------------------
    def texts(self, dialogues: Sequence[Sequence[Turn]]) -> list[list[str]]:
        """What the encoder reads for each dialogue."""
        return [self.features.texts(d) for d in dialogues]

    def features_of(self, dialogues: Sequence[Sequence[Turn]]) -> np.ndarray:
        """Standardised features, shape ``(n, n_features)``, float64 (one encoder call)."""
        x = featurize(dialogues, self.encoder, self.features)
        return (x - self.mean) / self.scale

    def judge(self, dialogues: Sequence[Sequence[Turn]]) -> np.ndarray:
        """Judged intensity of each dialogue's seeker, from its last K seeker turns.

        Args:
            dialogues: ``n`` dialogues (sequences of :class:`Turn`); any may be empty.

        Returns:
            float64 array of shape ``(n,)``, finite, in ``[1, 5]``.  One batched encoder
            forward pass for the texts not in the cache (none when ``n == 0``).
        """
        dialogues = list(dialogues)
        if not dialogues:
            return np.zeros(0, dtype=np.float64)
        return _clean(self.head.predict(self.features_of(dialogues)))

    def judge_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Intensity of raw seeker texts (each read as one seeker turn); shape ``(n,)``."""
        return self.judge([[Turn("seeker", t if isinstance(t, str) else str(t))] for t in texts])

    def reward(self, intensity: float) -> float:
        """The reward number of one judged intensity (:func:`~agents.judges.base.intensity_reward`:
        ``(3 - intensity) / 2``), for this judge passed as one more judge of an env."""
        from .base import intensity_reward

        return intensity_reward(intensity)

    # ---- persistence -------------------------------------------------------------
    def config(self) -> dict:
        """The JSON-able description saved next to the weights."""
        return {
            "format_version": FORMAT_VERSION,
            "encoder": {
                "kind": self.encoder_kind,
                "name": self.encoder.name,
                "dim": int(self.encoder.dim),
                "options": self.encoder_options(),
            },
            "features": asdict(self.features),
            "head": self.head.kind,
            "info": self.info,
        }

    def encoder_options(self) -> dict:
        """Settings of the encoder that change its vectors (saved, and used when loading)."""
        out = {}
        if self.encoder_kind == "minilm":
            for k in ("max_length",):
                if hasattr(self.encoder, k):
                    out[k] = int(getattr(self.encoder, k))
            side = getattr(getattr(self.encoder, "tokenizer", None), "truncation_side", None)
            if side is not None:
                out["truncation_side"] = str(side)
        return out

    def save(self, folder: "str | Path") -> Path:
        """Write ``head.safetensors`` and ``config.json`` into ``folder`` (created if needed)."""
        from safetensors.numpy import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"head.{k}": np.ascontiguousarray(v, dtype=np.float32) for k, v in self.head.tensors().items()}
        tensors["feature.mean"] = np.ascontiguousarray(self.mean, dtype=np.float32)
        tensors["feature.scale"] = np.ascontiguousarray(self.scale, dtype=np.float32)
        save_file(tensors, str(folder / HEAD_FILE), metadata={"format_version": str(FORMAT_VERSION)})
        (folder / CONFIG_FILE).write_text(json.dumps(self.config(), indent=2, sort_keys=True) + "\n")
        for name in (HEAD_FILE, CONFIG_FILE):
            (folder / name).chmod(0o644)
        return folder

    @staticmethod
    def resolve(name_or_path: "str | Path") -> Path:
        """The weights folder for a shipped name (``"esconv-minilm"``) or a path."""
        p = Path(name_or_path)
        if (p / CONFIG_FILE).is_file():
            return p
        if isinstance(name_or_path, str) and "/" not in name_or_path and "\\" not in name_or_path:
            shipped = WEIGHTS_DIR / name_or_path
            if (shipped / CONFIG_FILE).is_file():
                return shipped
        have = sorted(d.name for d in WEIGHTS_DIR.iterdir() if (d / CONFIG_FILE).is_file()) if WEIGHTS_DIR.is_dir() else []
        raise FileNotFoundError(
            f"no calibrated-judge weights at {name_or_path!r}: not a folder with {CONFIG_FILE}, "
            f"nor a shipped name (shipped: {have})"
        )

    @classmethod
    def load(
        cls,
        name_or_path: "str | Path" = DEFAULT_WEIGHTS,
        encoder: TextEncoder | None = None,
        backend=None,
        cache_size: int = 4096,
    ) -> "CalibratedAffectJudge":
        """Load shipped weights by name, or a folder written by :meth:`save`.

        Args:
            name_or_path: ``"esconv-minilm"`` (shipped) or a folder.
            encoder: an already-built encoder to share (its name must match the weights).
            backend: the LLM backend, for weights trained on ``backend`` hidden states.
            cache_size: LRU cache size of a newly built encoder.
        """
        from safetensors.numpy import load_file

        folder = cls.resolve(name_or_path)
        cfg = json.loads((folder / CONFIG_FILE).read_text())
        if cfg.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder}: unsupported format_version {cfg.get('format_version')!r}")
        enc_cfg = cfg["encoder"]
        if encoder is None:
            options = enc_cfg.get("options", {}) if enc_cfg["kind"] == "minilm" else {}
            encoder = make_encoder(enc_cfg["kind"], backend=backend, cache_size=cache_size, **options)
        if encoder.name != enc_cfg["name"] and enc_cfg["kind"] == "minilm":
            raise ValueError(f"{folder}: weights were trained on encoder {enc_cfg['name']!r}, got {encoder.name!r}")
        if int(encoder.dim) != int(enc_cfg["dim"]):
            raise ValueError(f"{folder}: weights expect encoder width {enc_cfg['dim']}, got {encoder.dim} ({encoder.name})")
        t = {k: v.astype(np.float64) for k, v in load_file(str(folder / HEAD_FILE)).items()}
        kind = cfg["head"]
        if kind not in HEADS:
            raise ValueError(f"{folder}: unknown head kind {kind!r}")
        head = HEADS[kind].from_tensors({k[5:]: v for k, v in t.items() if k.startswith("head.")})
        judge = cls(
            encoder,
            FeatureConfig(**cfg["features"]),
            head,
            t["feature.mean"],
            t["feature.scale"],
            info=cfg.get("info", {}),
            encoder_kind=enc_cfg["kind"],
        )
        judge.source = str(folder)
        return judge

    def __repr__(self) -> str:
        f = self.features
        where = f", weights={Path(self.source).name!r}" if self.source else ""
        strip = ", strip_politeness=True" if f.strip_politeness else ""
        return (f"CalibratedAffectJudge(encoder={self.encoder.name!r}, head={self.head.kind!r}, "
                f"K={f.last_seeker_turns}, mode={f.mode!r}{strip}{where})")


# ============================================================================ data views
def _seeker_positions(turns: Sequence[Turn]) -> list[int]:
    return [i for i, t in enumerate(turns) if t.speaker == "seeker" and t.text.strip()]


def opening(turns: Sequence[Turn], seeker_turns: int) -> list[Turn]:
    """The dialogue cut right after its ``seeker_turns``-th non-blank seeker turn (or whole)."""
    pos = _seeker_positions(turns)
    if not pos:
        return list(turns)
    return list(turns[: pos[min(seeker_turns, len(pos)) - 1] + 1])


def _rated(records: Iterable[Any]) -> list[tuple[int, Any]]:
    """``(index, record)`` of the records that have at least one non-blank seeker turn."""
    return [(i, r) for i, r in enumerate(records) if _seeker_positions(r.turns)]


@dataclass
class TrainingViews:
    """Labelled dialogue views to train an intensity judge on.

    Attributes:
        dialogues: the views (opening prefixes and whole dialogues), ``n`` of them.
        labels: ``(n,)`` surveyed level of each view (initial for openings, final for ends).
        weights: ``(n,)`` example weights: the views of one dialogue and time point sum to 1.
        groups: ``(n,)`` index of the source record (for grouped cross-validation).
        is_end: ``(n,)`` True for end views (labelled with the final rating).
        pairs: ``(m, 2)`` indices ``(opening view, end view)`` of dialogues with both ratings.
        pair_change: ``(m,)`` ``initial - final`` of each pair.
    """

    dialogues: list[list[Turn]]
    labels: np.ndarray
    weights: np.ndarray
    groups: np.ndarray
    is_end: np.ndarray
    pairs: np.ndarray
    pair_change: np.ndarray


def training_views(records: Sequence[Any], opening_views: int = 2, end_views: int = 1) -> TrainingViews:
    """Labelled views of survey-rated dialogues (ESConv :class:`DialogueRecord` objects).

    * openings: the dialogue cut after its 1st, ..., ``opening_views``-th seeker turn,
      labelled with ``initial_intensity``;
    * ends: the whole dialogue, and (``end_views > 1``) the dialogue without its last
      ``1 .. end_views - 1`` seeker turns, labelled with ``final_intensity``.

    The pair of each dialogue is its *last* opening view and its *whole-dialogue* view.
    Records without seeker text are skipped; ``groups`` keeps the index in ``records``.
    """
    if opening_views < 1 or end_views < 0:
        raise ValueError("opening_views must be >= 1 and end_views >= 0")
    dl, y, w, g, end, pairs, dys = [], [], [], [], [], [], []

    def add(view, label, weight, gi, is_end):
        dl.append(view), y.append(float(label)), w.append(weight), g.append(gi), end.append(is_end)

    for gi, r in _rated(records):
        turns = list(r.turns)
        pos = _seeker_positions(turns)
        last_open = None
        if r.initial_intensity is not None:
            views = [opening(turns, k) for k in range(1, min(opening_views, len(pos)) + 1)]
            for v in views:
                add(v, r.initial_intensity, 1.0 / len(views), gi, False)
            last_open = len(dl) - 1
        if r.final_intensity is not None and end_views > 0:
            cuts = [len(turns)] + [pos[-k] for k in range(1, min(end_views, len(pos)))]
            whole = len(dl)
            for c in cuts:
                add(turns[:c], r.final_intensity, 1.0 / len(cuts), gi, True)
            if last_open is not None:
                pairs.append((last_open, whole))
                dys.append(float(r.initial_intensity - r.final_intensity))
    return TrainingViews(
        dl,
        np.asarray(y, dtype=np.float64),
        np.asarray(w, dtype=np.float64),
        np.asarray(g, dtype=np.int64),
        np.asarray(end, dtype=bool),
        np.asarray(pairs, dtype=np.int64).reshape(-1, 2),
        np.asarray(dys, dtype=np.float64),
    )


@dataclass
class EvalViews:
    """The yardstick's two views of every survey-rated dialogue (one row per dialogue).

    Attributes:
        opens: each dialogue cut after ``opening_seeker_turns`` seeker turns (vs the initial rating).
        ends: each whole dialogue (vs the final rating).
        initial, final: ``(n,)`` surveyed levels, NaN where not surveyed.
        groups: ``(n,)`` index of the record (matches :attr:`TrainingViews.groups`).
        opening_seeker_turns: the cut used for ``opens``.
    """

    opens: list[list[Turn]]
    ends: list[list[Turn]]
    initial: np.ndarray
    final: np.ndarray
    groups: np.ndarray
    opening_seeker_turns: int = 2


def eval_views(records: Sequence[Any], opening_seeker_turns: int = 2) -> EvalViews:
    """The yardstick views of ``records`` (those without seeker text are skipped)."""
    if opening_seeker_turns < 1:
        raise ValueError(f"opening_seeker_turns must be >= 1, got {opening_seeker_turns}")
    rated = _rated(records)
    nan = float("nan")
    return EvalViews(
        [opening(r.turns, opening_seeker_turns) for _, r in rated],
        [list(r.turns) for _, r in rated],
        np.array([nan if r.initial_intensity is None else r.initial_intensity for _, r in rated], dtype=np.float64),
        np.array([nan if r.final_intensity is None else r.final_intensity for _, r in rated], dtype=np.float64),
        np.array([i for i, _ in rated], dtype=np.int64),
        opening_seeker_turns,
    )


def _corr(a: np.ndarray, b: np.ndarray, kind: str) -> float:
    from scipy import stats

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    f = stats.spearmanr if kind == "spearman" else stats.pearsonr
    return float(f(a[ok], b[ok])[0])


def intensity_metrics(
    judged_open: np.ndarray, judged_end: np.ndarray, initial: np.ndarray, final: np.ndarray
) -> dict[str, float]:
    """The yardstick: agreement of judged intensity with surveyed intensity.

    Args:
        judged_open: ``(n,)`` judged level of each dialogue's opening.
        judged_end: ``(n,)`` judged level of each whole dialogue.
        initial, final: ``(n,)`` surveyed levels; NaN where not surveyed.

    Returns:
        ``spearman_initial``/``pearson_initial``/``mae_initial`` (openings vs initial),
        ``spearman_final``/``pearson_final``/``mae_final`` (ends vs final),
        ``spearman_pooled``/``pearson_pooled``/``mae`` (both time points pooled: inflated by
        the gap between openings and ends), ``direction_accuracy`` (judged end < judged
        opening, among dialogues whose survey says the intensity fell),
        ``spearman_change`` (judged vs surveyed ``final - initial``, same dialogues as
        direction accuracy) and the counts ``n_initial``, ``n_final``, ``n_fell``.
        Correlations are NaN when undefined (fewer than 3 points or a constant input).
    """
    jo, je = np.asarray(judged_open, float), np.asarray(judged_end, float)
    yi, yf = np.asarray(initial, float), np.asarray(final, float)
    mi, mf = np.isfinite(yi) & np.isfinite(jo), np.isfinite(yf) & np.isfinite(je)
    pooled_j = np.concatenate([jo[mi], je[mf]])
    pooled_y = np.concatenate([yi[mi], yf[mf]])
    fell = mi & mf & (yf < yi)
    nan = float("nan")
    return {
        "spearman_initial": _corr(jo[mi], yi[mi], "spearman"),
        "pearson_initial": _corr(jo[mi], yi[mi], "pearson"),
        "mae_initial": float(np.mean(np.abs(jo[mi] - yi[mi]))) if mi.any() else nan,
        "spearman_final": _corr(je[mf], yf[mf], "spearman"),
        "pearson_final": _corr(je[mf], yf[mf], "pearson"),
        "mae_final": float(np.mean(np.abs(je[mf] - yf[mf]))) if mf.any() else nan,
        "spearman_pooled": _corr(pooled_j, pooled_y, "spearman"),
        "pearson_pooled": _corr(pooled_j, pooled_y, "pearson"),
        "mae": float(np.mean(np.abs(pooled_j - pooled_y))) if len(pooled_y) else nan,
        "direction_accuracy": float(np.mean(je[fell] < jo[fell])) if fell.any() else nan,
        "spearman_change": _corr(je[fell] - jo[fell], yf[fell] - yi[fell], "spearman"),
        "n_initial": int(mi.sum()),
        "n_final": int(mf.sum()),
        "n_fell": int(fell.sum()),
    }


def evaluate_judge(judge: Any, records: Sequence[Any], opening_seeker_turns: int = 2) -> dict[str, float]:
    """Yardstick metrics of any judge (``judge.judge(dialogues) -> (n,)``) on survey-rated dialogues.

    The judge reads each dialogue's opening (cut after ``opening_seeker_turns`` seeker
    turns; compared with the initial rating) and the whole dialogue (compared with the
    final rating), all in one ``judge`` call.  See :func:`intensity_metrics` for the keys.
    """
    ev = eval_views(records, opening_seeker_turns)
    out = np.asarray(judge.judge(ev.opens + ev.ends), dtype=np.float64)
    n = len(ev.opens)
    return intensity_metrics(out[:n], out[n:], ev.initial, ev.final)


# ============================================================================ training
def fit_head(
    x: np.ndarray,
    views: TrainingViews,
    kind: HeadKind = "ridge",
    params: HeadParams | None = None,
    rows: np.ndarray | None = None,
) -> tuple[Head, np.ndarray, np.ndarray]:
    """Standardise features and fit a head on the rows ``rows`` of ``views`` (default: all).

    Args:
        x: raw features of every view, shape ``(n, d)``.
        views: the labels, weights and pairs of the same ``n`` views.
        kind: ``"ridge"``, ``"ordinal"`` or ``"mlp"``.
        params: head settings.
        rows: indices of the views to train on (pairs with a view outside are dropped).

    Returns:
        ``(head, mean, scale)``; ``mean`` and ``scale`` have shape ``(d,)``.
    """
    params = params or HeadParams()
    rows = np.arange(len(x)) if rows is None else np.asarray(rows, dtype=np.int64)
    xs = x[rows]
    mean = xs.mean(axis=0)
    scale = xs.std(axis=0)
    scale = np.where(scale > 1e-8, scale, 1.0)
    z = (xs - mean) / scale
    where = -np.ones(len(x), dtype=np.int64)
    where[rows] = np.arange(len(rows))
    if len(views.pairs):
        keep = (where[views.pairs[:, 0]] >= 0) & (where[views.pairs[:, 1]] >= 0)
        pairs, dy = where[views.pairs[keep]], views.pair_change[keep]
    else:
        pairs, dy = np.zeros((0, 2), np.int64), np.zeros(0)
    head = HEADS[kind].fit(z, views.labels[rows], views.weights[rows], pairs, dy, params, views.is_end[rows])
    return head, mean, scale


def group_folds(groups: np.ndarray, n_folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Test folds of group ids: the distinct ``groups`` shuffled and dealt into ``n_folds``."""
    ids = np.unique(groups)
    if not 2 <= n_folds <= len(ids):
        raise ValueError(f"n_folds must be in [2, {len(ids)}], got {n_folds}")
    rng = np.random.default_rng(seed)
    rng.shuffle(ids)
    return [np.sort(ids[k::n_folds]) for k in range(n_folds)]


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in ``config.json`` as ``info.train``).

    Attributes:
        features: what the judge reads.
        head: head kind.
        params: head settings.
        opening_views, end_views: see :func:`training_views`.
        opening_seeker_turns: the yardstick's opening cut, used for the CV metrics.
        n_folds: folds of the grouped cross-validation on the training dialogues.
        seed: seed of the fold split and of the head's initialisation.
    """

    features: FeatureConfig = field(default_factory=FeatureConfig)
    head: HeadKind = "ridge"
    params: HeadParams = field(default_factory=HeadParams)
    opening_views: int = 2
    end_views: int = 1
    opening_seeker_turns: int = 2
    n_folds: int = 5
    seed: int = 0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["features"], d["params"] = asdict(self.features), asdict(self.params)
        return d


def cross_validate(
    x: np.ndarray, views: TrainingViews, x_open: np.ndarray, x_end: np.ndarray, ev: EvalViews, cfg: TrainConfig
) -> dict[str, float]:
    """Grouped k-fold CV: fit on the training views of k-1 folds of dialogues, score the
    yardstick views of the held-out dialogues.

    Args:
        x: ``(n, d)`` features of ``views``.
        x_open, x_end: ``(m, d)`` features of ``ev.opens`` and ``ev.ends``.
        ev: the yardstick views of the same records.
        cfg: head kind and settings, folds and seed.

    Returns:
        The mean over folds of :func:`intensity_metrics`, plus ``constant_mae``: the held-out
        MAE of predicting the training folds' mean level everywhere.
    """
    per: list[dict[str, float]] = []
    for test_ids in group_folds(ev.groups, cfg.n_folds, cfg.seed):
        train = np.flatnonzero(~np.isin(views.groups, test_ids))
        test = np.isin(ev.groups, test_ids)
        head, mean, scale = fit_head(x, views, cfg.head, cfg.params, rows=train)
        po = _clean(head.predict((x_open[test] - mean) / scale))
        pe = _clean(head.predict((x_end[test] - mean) / scale))
        m = intensity_metrics(po, pe, ev.initial[test], ev.final[test])
        const = float(np.average(views.labels[train], weights=views.weights[train]))
        c = np.full(int(test.sum()), const)
        m["constant_mae"] = intensity_metrics(c, c, ev.initial[test], ev.final[test])["mae"]
        per.append(m)
    return {k: float(np.nanmean([m[k] for m in per])) for k in per[0]}


def train_calibrated_judge(
    records: Sequence[Any],
    cfg: TrainConfig | None = None,
    encoder: TextEncoder | None = None,
    encoder_kind: str = "minilm",
    cross_validation: bool = True,
) -> tuple[CalibratedAffectJudge, dict[str, float]]:
    """Train a :class:`CalibratedAffectJudge` on survey-rated dialogues.

    Args:
        records: training dialogues with ``turns``, ``initial_intensity``, ``final_intensity``
            (e.g. ``load_esconv("train")``; never the split you evaluate on).
        cfg: the training settings.
        encoder: the frozen encoder (default: a new encoder of ``encoder_kind``).
        encoder_kind: recorded in the weights (``"minilm"`` or ``"backend"``).
        cross_validation: also run grouped k-fold CV (metrics returned and stored in
            ``judge.info["cv"]``).

    Returns:
        ``(judge, cv_metrics)``; the judge is fitted on all of ``records``.  ``cv_metrics``
        is empty without cross-validation.
    """
    cfg = cfg or TrainConfig()
    if encoder is None:
        encoder = make_encoder(encoder_kind)
    views = training_views(records, cfg.opening_views, cfg.end_views)
    if len(views.labels) == 0:
        raise ValueError("no labelled views: the records have no seeker turns or no survey ratings")
    x = featurize(views.dialogues, encoder, cfg.features)
    cv: dict[str, float] = {}
    if cross_validation:
        ev = eval_views(records, cfg.opening_seeker_turns)
        xe = featurize(ev.opens + ev.ends, encoder, cfg.features)
        cv = cross_validate(x, views, xe[: len(ev.opens)], xe[len(ev.opens) :], ev, cfg)
    head, mean, scale = fit_head(x, views, cfg.head, cfg.params)
    info = {
        "train": cfg.as_dict(),
        "n_dialogues": int(len(np.unique(views.groups))),
        "n_views": int(len(views.labels)),
        "n_pairs": int(len(views.pairs)),
        "cv": cv,
    }
    judge = CalibratedAffectJudge(encoder, cfg.features, head, mean, scale, info=info, encoder_kind=encoder_kind)
    return judge, cv
