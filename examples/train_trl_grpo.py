"""GRPO with TRL's ``GRPOTrainer`` on whole ``ESCText-v0`` episodes, on CPU, no vLLM::

    python examples/train_trl_grpo.py                   # 2 GRPO steps on the embedded SmolLM2-135M
    python examples/train_trl_grpo.py --help            # every option

The trainer's model writes every supporter turn; esc-env's seeker (the embedded model) answers
and its judge scores each turn (:class:`esc_env.integrations.trl_rollout.ESCRollout`).  Every
batch the trainer trains on is checked before TRL sees it:

* no seeker or template token has ``env_mask`` 1 and every token the policy sampled has 1
  (the mask must equal the one that fresh chat-template renderings of the dialogue call for);
* ``prompt_ids + completion_ids`` equal a fresh tokenisation of the final dialogue;
* ``episode_return`` equals the sum of the env's step rewards.

TRL's logs go to ``--output-dir`` (``log_history.jsonl``, one line per logging step).
Needs ``pip install "esc-env[trl]"``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default=None, help="policy model folder (default: the embedded SmolLM2-135M-Instruct)")
    p.add_argument("--backend", default="embedded", help="backend spec of the seeker and the judges")
    p.add_argument("--steps", type=int, default=2, help="GRPO optimiser steps (max_steps)")
    p.add_argument("--prompts", type=int, default=1, help="episode starts (persona, seed) per step")
    p.add_argument("--num-generations", type=int, default=2, help="episodes per start: the GRPO group size")
    p.add_argument("--max-turns", type=int, default=2, help="supporter turns per episode")
    p.add_argument("--max-turn-tokens", type=int, default=20, help="most tokens the policy samples per turn")
    p.add_argument("--temperature", type=float, default=1.0, help="the policy's sampling temperature")
    p.add_argument("--top-p", type=float, default=1.0, help="the policy's nucleus-sampling top-p")
    p.add_argument("--learning-rate", type=float, default=1e-6, help="AdamW learning rate")
    p.add_argument("--beta", type=float, default=0.0, help="KL coefficient (0: no reference model)")
    p.add_argument("--reward-terms", nargs="*", default=[],
                   help="reward terms (e.g. improvement success) added as reward columns next to episode_return")
    p.add_argument("--invalid-reply-penalty", type=float, default=-1.0,
                   help="reward of a reply the env refuses (empty or whitespace only); it ends the episode")
    p.add_argument("--seed", type=int, default=0, help="seed of the episode starts and of TRL")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a small shared machine)")
    p.add_argument("--output-dir", default="runs/trl_grpo", help="where TRL's logs are written")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for name in ("steps", "prompts", "num_generations", "max_turns", "max_turn_tokens", "threads"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.num_generations < 2:
        raise SystemExit(f"--num-generations must be >= 2 (GRPO compares episodes within a group), got {args.num_generations}")
    return args


class CheckedRollout:
    """Wraps an :class:`ESCRollout`: checks every batch before the trainer reads it and keeps
    ``(step, record, segment alignment)`` for the table."""

    def __init__(self, rollout: Any) -> None:
        self.rollout = rollout
        self.seen: list[tuple[int, Any, Any]] = []
        self.__name__ = "esc_rollout"

    def __call__(self, prompts: list, trainer: Any) -> dict:
        out = self.rollout(prompts, trainer)
        tok, close = self.rollout.tokenizer, self.rollout.chat.close_ids
        for i, rec in enumerate(self.rollout.last_records):
            where = f"step {trainer.state.global_step}, episode {i} ({rec.persona_id})"
            mask = out["env_mask"][i]
            assert len(mask) == len(out["completion_ids"][i]) == len(out["logprobs"][i]), where
            seg = rec.segments(tok, close)
            assert seg.mismatch is None, f"{where}: ids or mask differ from fresh renderings of the dialogue: {seg.mismatch}"
            if not seg.resampled_turns:  # else the sampled ids spell a turn differently than a fresh tokenisation
                mismatch = rec.alignment(tok, close)
                assert mismatch is None, f"{where}: ids differ from a fresh tokenisation of the dialogue: {mismatch}"
            assert math.isclose(out["episode_return"][i], sum(rec.rewards) + rec.reward_terms["invalid_reply"]), where
            assert all(lp == 0.0 for lp, m in zip(out["logprobs"][i], mask) if not m), where
            self.seen.append((trainer.state.global_step, rec, seg))
        return out


def main(argv: Sequence[str] | None = None, *, backend: Any = None) -> dict:
    """Train, check, print the table; returns ``{"records", "log_history", "wall_s", "output_dir"}``.

    ``backend``: an ``LLMBackend`` for the seeker and judges instead of ``--backend`` (tests
    pass their shared one).
    """
    args = parse_args(argv)
    t0 = time.perf_counter()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from agents.backends.embedded import embedded_model_dir
    from esc_env.integrations.trl_rollout import ESCRollout, episode_dataset, episode_return_reward, reward_term

    torch.set_num_threads(args.threads)
    folder = args.model or str(embedded_model_dir(verbose=True))
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    rollout = CheckedRollout(ESCRollout(
        tokenizer, backend if backend is not None else args.backend, max_turns=args.max_turns,
        max_turn_tokens=args.max_turn_tokens, invalid_reply_penalty=args.invalid_reply_penalty,
    ))
    out_dir = Path(args.output_dir)
    config = GRPOConfig(
        output_dir=str(out_dir), max_steps=args.steps, num_generations=args.num_generations,
        per_device_train_batch_size=args.prompts * args.num_generations, gradient_accumulation_steps=1,
        learning_rate=args.learning_rate, beta=args.beta, temperature=args.temperature, top_p=args.top_p,
        max_completion_length=args.max_turn_tokens, logging_steps=1, report_to="none", save_strategy="no",
        use_cpu=True, bf16=False, seed=args.seed, disable_tqdm=True,
    )
    reward_funcs = [episode_return_reward] + [reward_term(t) for t in args.reward_terms]
    trainer = GRPOTrainer(
        model=model, processing_class=tokenizer, reward_funcs=reward_funcs, args=config,
        train_dataset=episode_dataset(args.prompts * args.steps, seed=args.seed), rollout_func=rollout,
    )
    trainer.train()
    wall = time.perf_counter() - t0

    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "log_history.jsonl", "w") as f:
        for entry in trainer.state.log_history:
            f.write(json.dumps(entry) + "\n")
    print(f"{'step':>4} {'persona':<26} {'turns':>5} {'return':>8} {'policy':>6} {'env':>5} {'cut':>3} {'respelt':>7} ended")
    for step, rec, seg in rollout.seen:
        n_policy = sum(rec.tokens.env_mask)
        print(f"{step:>4} {rec.persona_id:<26} {len(rec.rewards):>5} {rec.episode_return:>8.3f} {n_policy:>6} "
              f"{len(rec.tokens.env_mask) - n_policy:>5} {len(rec.cut_turns):>3} {len(seg.resampled_turns):>7} {rec.ended}")
    print(f"checked {len(rollout.seen)} episodes: masks and ids agree with fresh renderings of their dialogues "
          f"(respelt: turns whose sampled ids spell the text differently than a fresh tokenisation; kept as sampled); "
          f"{trainer.state.global_step} GRPO steps in {wall:.1f} s; TRL logs in {out_dir / 'log_history.jsonl'}")
    return {"records": rollout.seen, "log_history": trainer.state.log_history, "wall_s": wall, "output_dir": out_dir}


if __name__ == "__main__":
    main()
