"""GRPO for the RLFF policy against the future-oriented reward model (RLFF-ESC, step 3).

One module, CleanRL style.  Each update:

1. draw ``B`` dialogue prefixes; the policy samples ``G`` replies to each (reasoning, then
   answer; :mod:`policies.rlff.generation`);
2. reward of reply ``i`` (the reward model reads the *answer only*)::

       r_i = rm_weight * RM(prefix, answer_i) / rm_scale  +  format_weight * F_i
       F_i = 0.5 * [the model closed </think> itself] + 0.5 * [answer non-empty, no tags, ended by the model]

   ``rm_scale`` is the spread of the reward model's training targets (its ``reward_scale``).

   (an empty answer gets the lowest RM score of the batch);
3. group-normalised advantages, per prefix (``ddof=1``: the unbiased sample standard
   deviation of the ``G`` rewards, as TRL and the GRPO paper's reference code use; a group
   whose rewards are all equal gets advantage 0)::

       A_i = (r_i - mean_group(r)) / (std_group(r; ddof=1) + 1e-4)

4. ``update_epochs`` passes of the clipped surrogate with a KL penalty to the reference
   model (the base model: the LoRA adapter disabled, so it costs no extra memory),
   :func:`grpo_objective`::

       rho_t  = exp(m_t * (log pi_theta(o_t) - log pi_old(o_t)))
       L_clip = min(rho_t A_i, clip(rho_t, 1 - eps, 1 + eps) A_i)
       d_t    = m_t * (log pi_ref(o_t) - log pi_theta(o_t))
       KL_t   = exp(d_t) - d_t - 1                                   (k3 estimator, >= 0)
       loss   = - 1/N sum_i 1/|o_i| sum_t m_t (L_clip - beta KL_t),   |o_i| = sum_t m_t

   ``m_t`` is 1 on tokens the model sampled and 0 on padding and on ``</think>`` tokens we
   forced; log-ratios are zeroed on ``m_t = 0`` *before* ``exp``, so padding can never overflow.

   ``pi_old``: the first epoch uses the detached log-probs of the same forward pass (the
   ratio is exactly 1 and the gradient is the policy gradient, whatever ``lora_dropout``);
   later epochs reuse those detached first-epoch log-probs.  Computing ``pi_old`` in eval
   mode and the update in train mode would make the ratio differ from 1 before any update
   when ``lora_dropout > 0``.

5. Only what the seeker is shown is trained: the answer is cut at the end of its first
   paragraph (the generation stops there; :func:`policies.rlff.generation.generate_replies`),
   which is the text the reward model scores and the env receives.  An answer whose shown
   text differs from the sampled text in more than whitespace (a role label, a tag) is not
   ``clean`` and loses the format reward for it.

Format warm-up (optional, before GRPO): a 135M chat model practically never writes
``</think>`` on its own, so the ``closed`` part of ``F`` would never fire and GRPO could not
learn it.  :func:`format_warmup` fine-tunes the LoRA weights for a few steps on ESConv
prefixes with the target ``reasoning </think> human reply``, where the reasoning is built from
the persona's emotion and problem and the definition of the human reply's strategy
(:func:`policies.rlff.format.warmup_reasoning`)::

    L_sft = - 1/N sum_i 1/|o_i| sum_t log pi_theta(o_t | prompt_i, o_<t)

TensorBoard: ``charts/reward``, ``charts/rm_score``, ``charts/format_rate``,
``charts/closed_rate``, ``charts/clean_answer_rate``, ``charts/answer_chars``, ``charts/SPS`` (sampled replies per second),
``losses/policy_loss``, ``losses/kl``, ``losses/approx_kl``, ``losses/clipfrac``,
``losses/grad_norm``.

Checkpoints (``out_dir/checkpoint/``): ``adapter.safetensors`` (LoRA weights),
``optimizer.safetensors`` (AdamW moments), ``policy.json`` and ``state.json`` (the step).
``train()`` resumes from it; prompts and sampling seeds depend only on ``(seed, step)``, so a
resumed run continues the same sequence.

TRL's ``GRPOTrainer`` could run this objective: ``GRPOConfig(beta=0.04, loss_type="grpo",
scale_rewards="group", epsilon=0.2, num_iterations=1)`` is the loss above (per-sequence token
mean, group std with ``ddof=1``, k3 KL to the reference, old log-probs = the detached new ones
for one iteration); it accepts a PEFT model or a ``peft_config``; and a ``rollout_func`` can
do our two-phase generation and return a mask (``env_mask``) that keeps the forced
``</think>`` tokens out of the loss.  Its *defaults* differ (``beta=0``, ``loss_type="dapo"``),
so using it means setting those.  We keep this module because (a) on a 2-core CPU TRL adds
about 270 MB of dependencies (datasets, pandas, pyarrow, accelerate) for no speed gain --
generation dominates; (b) the project's logging and checkpoint layout (``charts/``,
``losses/``, safetensors + JSON step, resume with the same sampling seeds) would need
callbacks; (c) a ~40-line objective that is tested on hand-computed values
(``tests/test_rlff.py``) is easier to audit here than a trainer configuration.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.dialogue import Turn

from .format import THINK_CLOSE, build_messages, warmup_reasoning
from .generation import completion_logprobs, generate_replies, render_prompt
from esc_env.fileio import append_jsonl_atomic, save_safetensors_atomic, write_json_atomic
from .policy import RLFFPolicy
from .simulator import stable_seed


@dataclass
class GRPOConfig:
    """Hyper-parameters of :class:`RLFFTrainer`.

    Attributes:
        total_steps: policy updates; each draws a fresh batch of prompts.
        prompts_per_step: ``B``, prefixes per update.
        group_size: ``G``, replies sampled per prefix (the group of GRPO).
        update_epochs: gradient passes over each batch (``mu``); the ratio is exactly 1 in the first.
        learning_rate: AdamW learning rate of the LoRA weights.
        clip_eps: ``eps`` of the clipped ratio.
        kl_beta: ``beta``, weight of the KL penalty to the reference (base) model.
        max_grad_norm: gradient-norm clipping.
        temperature: sampling temperature of the replies (log-probs use the same).
        max_reasoning_tokens: token budget of the reasoning.
        max_answer_tokens: token budget of the answer.
        rm_weight: weight of the reward-model term.
        format_weight: weight of the format reward ``F``.
        micro_batch: rows per forward pass when computing log-probs.
        checkpoint_every: save a checkpoint every this many steps (and at the end).
        seed: seeds prompt order and sampling.
    """

    total_steps: int = 20
    prompts_per_step: int = 2
    group_size: int = 4
    update_epochs: int = 1
    learning_rate: float = 2e-4
    clip_eps: float = 0.2
    kl_beta: float = 0.04
    max_grad_norm: float = 1.0
    temperature: float = 0.7
    max_reasoning_tokens: int = 32
    max_answer_tokens: int = 48
    rm_weight: float = 1.0
    format_weight: float = 0.5
    micro_batch: int = 8
    checkpoint_every: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ValueError(f"group_size must be >= 2 (GRPO compares replies within a group), got {self.group_size}")
        if self.total_steps < 0:
            raise ValueError(f"total_steps must be >= 0, got {self.total_steps}")
        for name in ("prompts_per_step", "update_epochs", "micro_batch", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.clip_eps < 0 or self.kl_beta < 0:
            raise ValueError(f"clip_eps and kl_beta must be >= 0, got clip_eps={self.clip_eps}, kl_beta={self.kl_beta}")


def format_reward(closed: Sequence[bool], answer_clean: Sequence[bool]) -> np.ndarray:
    """``F = 0.5 [closed </think> itself] + 0.5 [clean answer]``, shape ``(n,)``."""
    return 0.5 * np.asarray(closed, dtype=np.float64) + 0.5 * np.asarray(answer_clean, dtype=np.float64)


def group_advantages(rewards: np.ndarray, group_size: int, eps: float = 1e-4) -> np.ndarray:
    """``A = (r - mean_group r) / (std_group(r; ddof=1) + eps)``.

    Args:
        rewards: prompt-major rewards, shape ``(B * G,)``.
        group_size: ``G >= 2`` (the sample standard deviation of one reward is undefined).

    Returns:
        advantages, shape ``(B * G,)``; 0 for every member of a group with equal rewards.
    """
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2 for group-normalised advantages, got {group_size}")
    r = np.asarray(rewards, dtype=np.float64)
    if r.size % group_size:
        raise ValueError(f"got {r.size} rewards, not a multiple of group_size={group_size}")
    r = r.reshape(-1, group_size)
    a = (r - r.mean(1, keepdims=True)) / (r.std(1, ddof=1, keepdims=True) + eps)
    return a.reshape(-1)


@dataclass
class GRPOTerms:
    """What :func:`grpo_objective` returns; tensors of shape ``(N,)`` are per sequence.

    Attributes:
        loss: ``mean_i per_sequence_i`` (a scalar with gradients).
        per_sequence: ``- 1/|o_i| sum_t m_t (L_clip - beta KL_t)``, shape ``(N,)``.
        kl: mean ``KL_t`` over unmasked tokens (detached scalar; 0 when ``beta == 0``).
        approx_kl: mean ``(rho_t - 1) - log rho_t`` over unmasked tokens (detached).
        clipfrac: share of unmasked tokens with ``|rho_t - 1| > eps`` (detached).
        n_tokens: unmasked tokens.
    """

    loss: Any
    per_sequence: Any
    kl: float
    approx_kl: float
    clipfrac: float
    n_tokens: int


def grpo_objective(logp, old_logp, ref_logp, advantages, mask, epsilon: float, beta: float) -> GRPOTerms:
    """The GRPO loss of one batch (module docstring, step 4), a pure function of tensors.

    Args:
        logp: ``log pi_theta`` of each completion token, shape ``(N, T)`` (with gradients).
        old_logp: ``log pi_old``, shape ``(N, T)`` (treated as constant).
        ref_logp: ``log pi_ref``, shape ``(N, T)``, or ``None`` when ``beta == 0``.
        advantages: ``A_i``, shape ``(N,)``.
        mask: 1 on trained tokens, 0 on padding and forced tokens, shape ``(N, T)``.
        epsilon: clipping range ``eps`` of the ratio.
        beta: weight of the k3 KL penalty to the reference.

    Returns:
        :class:`GRPOTerms`.  Masked positions contribute nothing, whatever their log-probs
        (their log-ratios are set to 0 before ``exp``); a row without unmasked tokens has loss 0.
    """
    import torch

    if logp.shape != old_logp.shape or logp.shape != mask.shape:
        raise ValueError(f"logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)} and mask {tuple(mask.shape)} must match")
    if advantages.shape != logp.shape[:1]:
        raise ValueError(f"advantages must have shape ({logp.shape[0]},), got {tuple(advantages.shape)}")
    if beta > 0 and (ref_logp is None or ref_logp.shape != logp.shape):
        raise ValueError("beta > 0 needs ref_logp of the same shape as logp")
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    keep = mask > 0
    m = keep.to(logp.dtype)
    zero = torch.zeros_like(logp)
    log_ratio = torch.where(keep, logp - old_logp.detach(), zero)
    ratio = log_ratio.exp()
    a = advantages.to(logp.dtype)[:, None]
    # L_clip = min(rho A, clip(rho, 1 - eps, 1 + eps) A)
    surrogate = torch.min(ratio * a, ratio.clamp(1 - epsilon, 1 + epsilon) * a)
    if beta > 0:
        # KL_t = exp(d) - d - 1 with d = log pi_ref - log pi_theta   (k3 estimator, >= 0)
        d = torch.where(keep, ref_logp.detach() - logp, zero)
        kl = d.exp() - d - 1
    else:
        kl = zero
    n_tok = m.sum(1)
    per_sequence = -((surrogate - beta * kl) * m).sum(1) / n_tok.clamp(min=1)
    with torch.no_grad():
        total = m.sum().clamp(min=1)
        stats = dict(kl=float((kl * m).sum() / total), approx_kl=float((((ratio - 1) - log_ratio) * m).sum() / total),
                     clipfrac=float((((ratio - 1).abs() > epsilon).to(m.dtype) * m).sum() / total), n_tokens=int(m.sum()))
    return GRPOTerms(per_sequence.mean(), per_sequence, **stats)


@dataclass
class WarmupExample:
    """One supervised target of the format warm-up: ``reasoning </think>\nanswer``."""

    turns: list[Turn]
    reasoning: str
    answer: str


def warmup_examples(prefixes: Sequence[Any], strategies: Any = "esconv") -> list[WarmupExample]:
    """Warm-up targets from prefixes with a human reference reply (``Prefix.reference``)."""
    from agents.strategies import get_strategy_set

    sset = get_strategy_set(strategies)
    out = []
    for p in prefixes:
        if not p.reference or not p.reference.strip():
            continue
        definition = None
        if p.reference_strategy and p.reference_strategy in sset.names:
            definition = sset.definition(p.reference_strategy)
        out.append(WarmupExample(list(p.turns), warmup_reasoning(p.persona.emotion_type, p.persona.problem_type, definition),
                                 p.reference.strip()))
    return out


def format_warmup(policy: RLFFPolicy, examples: Sequence[WarmupExample], *, steps: int = 8, batch_size: int = 4,
                  learning_rate: float = 3e-4, max_answer_tokens: int = 48, seed: int = 0, writer: Any = None,
                  progress: bool = True) -> list[float]:
    """Supervised warm-up of the reply format on the LoRA weights (see the module docstring).

    Args:
        policy: the policy to warm up (in place).
        examples: targets from :func:`warmup_examples`.
        steps: gradient steps.
        batch_size: examples per step.
        learning_rate: AdamW learning rate.
        max_answer_tokens: answers are cut to this many tokens (at the last sentence end when possible).
        seed: seeds the batch order.
        writer: optional TensorBoard writer (``losses/warmup_nll``).

    Returns:
        the loss of every step.
    """
    import torch
    from tqdm.auto import tqdm

    if not examples:
        raise ValueError("format_warmup needs at least one example (prefixes with a reference reply)")
    tok, model = policy.tokenizer, policy.model
    eos = tok.eos_token_id
    prompts, completions = [], []
    for ex in examples:
        prompts.append(tok(render_prompt(tok, build_messages(ex.turns, last=policy.config.context_turns)),
                           add_special_tokens=False)["input_ids"])
        answer_ids = tok(ex.answer, add_special_tokens=False)["input_ids"]
        if len(answer_ids) > max_answer_tokens:
            text = tok.decode(answer_ids[:max_answer_tokens])
            end = max(text.rfind(". "), text.rfind("? "), text.rfind("! "))
            answer_ids = tok(text[: end + 1] if end > 0 else text, add_special_tokens=False)["input_ids"]
        completions.append(tok(ex.reasoning + THINK_CLOSE + "\n", add_special_tokens=False)["input_ids"] + answer_ids + [eos])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=learning_rate)
    rng = np.random.default_rng(stable_seed(seed, "warmup"))
    losses = []
    model.train()
    for step in tqdm(range(steps), desc="format warm-up", disable=not progress):
        idx = rng.choice(len(prompts), size=min(batch_size, len(prompts)), replace=False)
        lp, mask = completion_logprobs(model, [prompts[i] for i in idx], [completions[i] for i in idx], tok.pad_token_id)
        m = mask.float()
        # L_sft = - mean_i mean_t log pi(o_t)
        loss = -((lp * m).sum(1) / m.sum(1).clamp(min=1)).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if writer is not None:
            writer.add_scalar("losses/warmup_nll", losses[-1], step)
    model.eval()
    return losses


class RLFFTrainer:
    """GRPO of an :class:`RLFFPolicy` against a :class:`FutureRewardModel`.

    Args:
        policy: the policy to train (its LoRA weights are the only trained parameters).
        reward_model: a trained :class:`~policies.rlff.reward_model.FutureRewardModel`.
        prompts: training prefixes, each a list of :class:`Turn` ending with a seeker turn.
        config: :class:`GRPOConfig`.
        out_dir: where TensorBoard logs (``out_dir/tb``), metrics (``metrics.jsonl``) and
            checkpoints go.
    """

    def __init__(self, policy: RLFFPolicy, reward_model: Any, prompts: Sequence[Sequence[Turn]],
                 config: GRPOConfig | None = None, out_dir: "str | Path" = "runs/rlff") -> None:
        import torch

        if not prompts:
            raise ValueError("RLFFTrainer needs at least one training prefix")
        self.policy = policy
        self.reward_model = reward_model
        self.prompts = [list(p) for p in prompts]
        self.config = config or GRPOConfig()
        self.out_dir = Path(out_dir)
        self.params = [p for p in policy.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=self.config.learning_rate)
        self.step = 0
        self._writer = None

    # ---- logging --------------------------------------------------------------------------
    @property
    def writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out_dir / "tb"))
            self._writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" + "\n".join(
                f"|{k}|{v}|" for k, v in asdict(self.config).items()))
        return self._writer

    # ---- rewards ------------------------------------------------------------------------------
    def rewards(self, contexts: Sequence[Sequence[Turn]], replies: Sequence[Any]) -> dict[str, np.ndarray]:
        """``r = rm_weight * RM(prefix, answer) / rm_scale + format_weight * F`` for every reply."""
        c = self.config
        answers = [r.answer for r in replies]
        has = np.array([bool(a.strip()) for a in answers])
        rm = np.zeros(len(answers))
        if has.any():
            idx = np.flatnonzero(has)
            rm[idx] = self.reward_model.score([contexts[i] for i in idx], [answers[i] for i in idx])
            rm[~has] = rm[idx].min()
        scale = float(getattr(self.reward_model, "reward_scale", 1.0)) or 1.0
        fmt = format_reward([r.closed for r in replies], [r.answer_clean for r in replies])
        total = c.rm_weight * rm / scale + c.format_weight * fmt
        return {"reward": total, "rm_score": rm, "format": fmt}

    # ---- one update ---------------------------------------------------------------------------
    def train_step(self) -> dict:
        """Sample, score and update once; returns the step's metrics."""
        import torch

        c, pol = self.config, self.policy
        t0 = time.perf_counter()
        rng = np.random.default_rng(stable_seed(c.seed, "prompts", self.step))
        pick = rng.choice(len(self.prompts), size=min(c.prompts_per_step, len(self.prompts)), replace=False)
        contexts = [self.prompts[int(i)] for i in pick]
        msgs = [build_messages(ctx, last=pol.config.context_turns) for ctx in contexts]
        gen = generate_replies(pol.model, pol.tokenizer, msgs, num_samples=c.group_size,
                               max_reasoning_tokens=c.max_reasoning_tokens, max_answer_tokens=c.max_answer_tokens,
                               temperature=c.temperature, seed=stable_seed(c.seed, "sample", self.step),
                               batch_size=pol.config.batch_size)
        t_gen = time.perf_counter() - t0
        row_ctx = [ctx for ctx in contexts for _ in range(c.group_size)]
        r = self.rewards(row_ctx, gen.replies)
        adv = torch.as_tensor(group_advantages(r["reward"], c.group_size), dtype=torch.float32)

        stats = self.update(gen, adv)
        self.step += 1
        seconds = time.perf_counter() - t0
        metrics = {
            "step": self.step,
            "reward": float(r["reward"].mean()),
            "rm_score": float(r["rm_score"].mean()),
            "format_rate": float(np.mean([x.well_formed for x in gen.replies])),
            "closed_rate": float(np.mean([x.closed for x in gen.replies])),
            "clean_answer_rate": float(np.mean([x.answer_clean for x in gen.replies])),
            "answer_chars": float(np.mean([len(x.answer) for x in gen.replies])),
            "SPS": len(gen.completion_ids) / seconds,
            "generation_seconds": t_gen,
            "seconds": seconds,
            **stats,
        }
        return metrics

    def update(self, gen: Any, advantages: Any) -> dict:
        """``update_epochs`` gradient steps of :func:`grpo_objective` on sampled replies.

        Args:
            gen: a :class:`~policies.rlff.generation.Generation` sampled from the policy.
            advantages: float tensor ``(N,)``, one per row of ``gen``.

        Returns:
            ``policy_loss``, ``kl``, ``approx_kl``, ``clipfrac``, ``grad_norm`` averaged over the
            epochs (``approx_kl`` and ``clipfrac`` are exactly 0 in the first epoch).
        """
        import torch

        c, pol = self.config, self.policy
        pad = pol.tokenizer.pad_token_id
        n_rows = len(gen.completion_ids)
        if len(advantages) != n_rows:
            raise ValueError(f"got {len(advantages)} advantages for {n_rows} sampled replies")
        slices = [slice(s, min(s + c.micro_batch, n_rows)) for s in range(0, n_rows, c.micro_batch)]

        def slice_mask(sl: slice, width: int):
            # 1 on sampled completion tokens, 0 on forced tokens and on padding to ``width``
            rows = [torch.tensor(m, dtype=torch.float32) for m in gen.sampled_mask[sl]]
            return torch.stack([torch.nn.functional.pad(m, (0, width - len(m))) for m in rows])

        ref = [None] * len(slices)
        if c.kl_beta > 0:
            with torch.no_grad(), pol.model.disable_adapter():
                # the adapter is off, so LoRA dropout cannot act: the reference is deterministic
                ref = [completion_logprobs(pol.model, gen.prompt_ids[sl], gen.completion_ids[sl], pad, c.temperature,
                                           c.micro_batch)[0] for sl in slices]
        old: list = [None] * len(slices)
        pol.model.train()
        stats = {"policy_loss": 0.0, "kl": 0.0, "approx_kl": 0.0, "clipfrac": 0.0, "grad_norm": 0.0}
        for _ in range(c.update_epochs):
            self.optimizer.zero_grad()
            tok = {"kl": 0.0, "approx_kl": 0.0, "clipfrac": 0.0}
            n_tok = 0
            loss_sum = 0.0
            for k, sl in enumerate(slices):
                lp, _ = completion_logprobs(pol.model, gen.prompt_ids[sl], gen.completion_ids[sl], pad,
                                            c.temperature, c.micro_batch)
                if old[k] is None:  # first epoch: pi_old is this very forward pass (ratio exactly 1)
                    old[k] = lp.detach()
                terms = grpo_objective(lp, old[k], ref[k], advantages[sl], slice_mask(sl, lp.shape[1]), c.clip_eps, c.kl_beta)
                loss = terms.per_sequence.sum() / n_rows  # = the batch mean over all N rows, summed over slices
                loss.backward()
                loss_sum += loss.item()
                for key in tok:
                    tok[key] += getattr(terms, key) * terms.n_tokens
                n_tok += terms.n_tokens
            gn = torch.nn.utils.clip_grad_norm_(self.params, c.max_grad_norm)
            self.optimizer.step()
            stats["policy_loss"] += loss_sum / c.update_epochs
            stats["grad_norm"] += float(gn) / c.update_epochs
            for key in tok:
                stats[key] += tok[key] / max(n_tok, 1) / c.update_epochs
        pol.model.eval()
        return stats

    def log(self, metrics: dict) -> None:
        charts = ("reward", "rm_score", "format_rate", "closed_rate", "clean_answer_rate", "answer_chars", "SPS")
        losses = ("policy_loss", "kl", "approx_kl", "clipfrac", "grad_norm")
        for k in charts:
            self.writer.add_scalar(f"charts/{k}", metrics[k], metrics["step"])
        for k in losses:
            self.writer.add_scalar(f"losses/{k}", metrics[k], metrics["step"])
        self.writer.add_scalar("charts/learning_rate", self.optimizer.param_groups[0]["lr"], metrics["step"])
        append_jsonl_atomic(self.out_dir / "metrics.jsonl", [metrics])

    # ---- checkpoints -----------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.out_dir / "checkpoint"

    def save_checkpoint(self) -> Path:
        """Adapter, optimizer moments, policy settings and the step; each file written atomically,
        ``state.json`` last (a checkpoint without it is incomplete and ignored)."""
        folder = self.checkpoint_dir
        self.policy.save(folder)
        names = {id(p): n for n, p in self.policy.model.named_parameters() if p.requires_grad}
        tensors, steps = {}, {}
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                st = self.optimizer.state.get(p, {})
                if "exp_avg" in st:
                    n = names[id(p)]
                    tensors[f"{n}.exp_avg"] = st["exp_avg"]
                    tensors[f"{n}.exp_avg_sq"] = st["exp_avg_sq"]
                    steps[n] = float(st["step"])
        if tensors:
            save_safetensors_atomic(folder / "optimizer.safetensors", tensors, {"steps": json.dumps(steps)})
        write_json_atomic(folder / "state.json", {"step": self.step, "config": asdict(self.config)}, indent=2, sort_keys=True)
        return folder

    def load_checkpoint(self) -> bool:
        """Restore from ``checkpoint_dir`` if a complete checkpoint is there; returns whether it was."""
        import torch
        from safetensors import safe_open

        folder = self.checkpoint_dir
        if not (folder / "state.json").is_file():
            return False
        state = json.loads((folder / "state.json").read_text())
        self.policy.load_adapter(folder / "adapter.safetensors")
        opt_path = folder / "optimizer.safetensors"
        if opt_path.is_file():
            with safe_open(str(opt_path), framework="pt") as f:
                steps = json.loads((f.metadata() or {}).get("steps", "{}"))
                for n, p in self.policy.model.named_parameters():
                    if p.requires_grad and n in steps:
                        self.optimizer.state[p] = {
                            "step": torch.tensor(steps[n]),
                            "exp_avg": f.get_tensor(f"{n}.exp_avg"),
                            "exp_avg_sq": f.get_tensor(f"{n}.exp_avg_sq"),
                        }
        self.step = int(state["step"])
        return True

    # ---- the loop ----------------------------------------------------------------------------------
    def train(self, resume: bool = True, progress: bool = True) -> list[dict]:
        """Run until ``total_steps`` (resuming from the checkpoint when ``resume``); returns the metrics of the steps run."""
        from tqdm.auto import tqdm

        if resume:
            self.load_checkpoint()
        c = self.config
        history = []
        bar = tqdm(total=c.total_steps, initial=self.step, desc="GRPO", unit="step", disable=not progress)
        while self.step < c.total_steps:
            m = self.train_step()
            self.log(m)
            history.append(m)
            bar.update(1)
            bar.set_postfix(reward=f"{m['reward']:.3f}", fmt=f"{m['format_rate']:.2f}", kl=f"{m['kl']:.4f}")
            if self.step % c.checkpoint_every == 0 or self.step == c.total_steps:
                self.save_checkpoint()
        bar.close()
        if self._writer is not None:
            self._writer.flush()
        return history
