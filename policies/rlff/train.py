"""RLFF-ESC end to end: simulate futures -> reward model -> GRPO -> evaluate.

The trainer of ``esc-env train rlff --config FILE.yaml`` and ``examples/train_rlff.py``:

    python examples/train_rlff.py --config examples/configs/rlff_tiny.yaml --out runs/rlff_tiny

With the tiny settings it runs on a CPU in a few minutes with the embedded SmolLM2-135M
(seeker, judge, supporter and the policy's base model).  Every stage resumes: the future
records are a resumable JSONL, the reward model is reused if saved (``--retrain-rm`` to
redo it), GRPO continues from its checkpoint.  The numbers of a tiny run are noisy: they
show the pipeline works, not that the method does.

Outputs in ``--out``: ``futures.jsonl``, ``rm.safetensors``, ``rm_metrics.json`` (all heads
when ``--compare-heads``), ``grpo/`` (TensorBoard ``grpo/tb``, ``metrics.jsonl``,
``checkpoint/``), ``policy/`` (the trained policy), ``eval.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    """The command line (every long option is also a key of a ``--config`` YAML file)."""
    p = argparse.ArgumentParser(prog="train_rlff", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=str, default=None, help="YAML file of defaults (keys are these options, with _)")
    p.add_argument("--out", type=str, default="runs/rlff", help="output folder (every stage resumes from it)")
    p.add_argument("--backend", type=str, default="embedded", help="LLM backend of seeker, judge and supporter agent")
    p.add_argument("--seed", type=int, default=0, help="seed of prefix sampling, simulation and training")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--stop-after", choices=["simulate", "reward_model", "grpo"], default=None,
                   help="end the run after this stage (later runs resume from it)")
    g = p.add_argument_group("simulation")
    g.add_argument("--train-prefixes", type=int, default=8, help="ESConv train prefixes to simulate")
    g.add_argument("--eval-prefixes", type=int, default=6, help="ESConv valid prefixes for the held-out reward-model score of policies")
    g.add_argument("--candidates", type=int, default=2, help="candidates per prefix written by the supporter agent (different strategies)")
    g.add_argument("--no-reference", action="store_true", help="do not add the human ESConv reply as a candidate")
    g.add_argument("--horizon", type=int, default=1, help="supporter turns simulated after the candidate")
    g.add_argument("--rollouts", type=int, default=2, help="simulated futures per candidate")
    g.add_argument("--success-bonus", type=float, default=0.5, help="future-reward bonus when the seeker signals relief")
    g.add_argument("--give-up-penalty", type=float, default=0.5, help="future-reward penalty when the seeker gives up")
    g.add_argument("--context-turns", type=int, default=6, help="turns of ESConv context kept in a prefix")
    g.add_argument("--prefix-batch", type=int, default=4, help="prefixes simulated together (one batched call per turn)")
    g.add_argument("--seeker-tokens", type=int, default=32, help="max new tokens of a seeker reply")
    g.add_argument("--supporter-tokens", type=int, default=40, help="max new tokens of a supporter-agent reply")
    g = p.add_argument_group("reward model")
    g.add_argument("--rm-head", choices=["classification", "regression", "ranking"], default="classification",
                   help="head used for GRPO")
    g.add_argument("--rm-bins", type=int, default=3, help="quantile bins of the classification head")
    g.add_argument("--rm-encoder", choices=["minilm", "backend"], default="minilm", help="frozen text encoder")
    g.add_argument("--rm-epochs", type=int, default=150, help="training epochs of the head")
    g.add_argument("--rm-lr", type=float, default=3e-3, help="AdamW learning rate of the head")
    g.add_argument("--rm-hidden", type=int, default=64, help="hidden width of the head")
    g.add_argument("--rm-center", action="store_true", help="learn the future reward centred per prefix (see center_by_prefix)")
    g.add_argument("--rm-eval-fraction", type=float, default=0.25, help="share of prefixes held out")
    g.add_argument("--compare-heads", action="store_true",
                   help="compare the classification, regression and ranking heads by cross-validation over prefixes")
    g.add_argument("--rm-folds", type=int, default=4, help="folds of the head comparison")
    g.add_argument("--retrain-rm", action="store_true", help="train the reward model even if rm.safetensors exists")
    g = p.add_argument_group("format warm-up")
    g.add_argument("--warmup-steps", type=int, default=12, help="supervised steps teaching 'reasoning </think> reply' (0: none)")
    g.add_argument("--warmup-batch", type=int, default=4, help="examples per warm-up step")
    g.add_argument("--warmup-lr", type=float, default=2e-3, help="AdamW learning rate of the warm-up")
    g = p.add_argument_group("GRPO")
    g.add_argument("--grpo-steps", type=int, default=4, help="policy updates")
    g.add_argument("--prompts-per-step", type=int, default=2, help="prefixes per update (B)")
    g.add_argument("--group-size", type=int, default=4, help="replies sampled per prefix (G)")
    g.add_argument("--update-epochs", type=int, default=1, help="gradient passes per batch (mu)")
    g.add_argument("--lr", type=float, default=2e-4, help="AdamW learning rate of the LoRA weights")
    g.add_argument("--kl-beta", type=float, default=0.04, help="KL penalty weight to the base model")
    g.add_argument("--clip-eps", type=float, default=0.2, help="PPO-style ratio clipping")
    g.add_argument("--format-weight", type=float, default=0.5, help="weight of the format reward")
    g.add_argument("--temperature", type=float, default=0.7, help="sampling temperature of GRPO replies")
    g.add_argument("--reasoning-tokens", type=int, default=32, help="token budget of the reasoning")
    g.add_argument("--answer-tokens", type=int, default=40, help="token budget of the answer")
    g.add_argument("--lora-r", type=int, default=8, help="LoRA rank")
    g.add_argument("--policy-model", type=str, default=None,
                   help="local Hugging Face folder of the policy's base model (default: the backend's model; "
                        "needed with openai:/vllm: backends, whose model is remote)")
    g = p.add_argument_group("evaluation")
    g.add_argument("--eval-rollouts", type=int, default=2, help="seeker reactions per answer in the held-out judge evaluation")
    g.add_argument("--no-rubric", action="store_true", help="skip the rubric judge in the held-out evaluation")
    g.add_argument("--eval-episodes", type=int, default=4, help="env episodes per policy (0: skip)")
    g.add_argument("--eval-turns", type=int, default=2, help="supporter turns per evaluation episode")
    g.add_argument("--eval-envs", type=int, default=4, help="conversations in flight in the evaluation")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Parse ``argv``: values of ``--config FILE`` first, flags override them."""
    p = build_parser()
    pre, _ = p.parse_known_args(argv)
    if pre.config:
        import yaml

        with open(pre.config) as f:
            cfg = yaml.safe_load(f) or {}
        known = {a.dest for a in p._actions}
        unknown = sorted(k for k in cfg if k.replace("-", "_") not in known)
        if unknown:
            p.error(f"{pre.config}: unknown option(s) {unknown}")
        p.set_defaults(**{k.replace("-", "_"): v for k, v in cfg.items()})
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}

    from agents.seeker import DEFAULT_SEEKER_PARAMS
    from agents.supporter import DEFAULT_SUPPORTER_PARAMS
    from esc_env.build import shared_backend
    from esc_env.datasets import load_esconv
    from esc_env.env import ESCEnv
    from agents.judges.rubric import RubricJudge
    from policies.rlff.evaluate import env_comparison, fmt_interval, heldout_judge_comparison, rm_score_comparison
    from policies.rlff.grpo import GRPOConfig, RLFFTrainer, format_warmup, warmup_examples
    from esc_env.fileio import write_json_atomic
    from policies.rlff.policy import RLFFPolicy
    from policies.rlff.reward_model import FutureRewardModel, TrainConfig, cross_validate_heads, records_to_arrays
    from policies.rlff.simulator import FutureSimulator, future_reward_spread, prefixes_from_esconv

    backend = shared_backend(args.backend)
    agent_kwargs = dict(seeker_params=DEFAULT_SEEKER_PARAMS.replace(max_new_tokens=args.seeker_tokens),
                        supporter_params=DEFAULT_SUPPORTER_PARAMS.replace(max_new_tokens=args.supporter_tokens))

    # ---- 1. simulate future-oriented rewards ----------------------------------------------
    t0 = time.perf_counter()
    train_prefixes = prefixes_from_esconv(load_esconv("train"), args.train_prefixes, seed=args.seed,
                                          max_context_turns=args.context_turns)
    eval_prefixes = prefixes_from_esconv(load_esconv("valid"), args.eval_prefixes, seed=args.seed + 1,
                                         max_context_turns=args.context_turns)
    sim_env = ESCEnv(backend, personas=[p.persona for p in train_prefixes], action_mode="text",
                     max_turns=args.context_turns + args.horizon + 2, **agent_kwargs)
    sim = FutureSimulator(sim_env, horizon=args.horizon, rollouts=args.rollouts, success_bonus=args.success_bonus,
                          give_up_penalty=args.give_up_penalty, seed=args.seed)
    records = sim.run(train_prefixes, out / "futures.jsonl", candidates_per_prefix=args.candidates,
                      include_reference=not args.no_reference, prefix_batch=args.prefix_batch)
    _, _, y, _ = records_to_arrays(records)
    spread = future_reward_spread(records)
    print(f"[simulate] {len(records)} records from {len({r['prefix_id'] for r in records})} prefixes; "
          f"future reward mean {y.mean():+.3f}, std {y.std():.3f}, min {y.min():+.3f}, max {y.max():+.3f}")
    print(f"[simulate] within-prefix variance of candidate means {fmt_interval(spread['within_prefix_variance'], 4)}; "
          f"variance of paired rollout differences {fmt_interval(spread['paired_difference_variance'], 4)}; "
          f"rollout variance {fmt_interval(spread['rollout_variance'], 4)}")
    write_json_atomic(out / "future_spread.json", spread, indent=2, sort_keys=True)
    timings["simulate"] = time.perf_counter() - t0
    if args.stop_after == "simulate":
        return {"records": len(records), "timings_s": timings}

    # ---- 2. the future-oriented reward model -----------------------------------------------
    t0 = time.perf_counter()
    rm_path = out / "rm.safetensors"
    tc = TrainConfig(epochs=args.rm_epochs, lr=args.rm_lr, eval_fraction=args.rm_eval_fraction, seed=args.seed)
    rm_metrics: dict = {}
    if rm_path.is_file() and not args.retrain_rm:
        rm = FutureRewardModel.load(rm_path, backend=backend)
        print(f"[reward model] loaded {rm_path} ({rm.config.head})")
    else:
        kw = dict(bins=args.rm_bins, hidden=args.rm_hidden, context_turns=args.context_turns, center=args.rm_center)
        rm = FutureRewardModel(args.rm_encoder, backend=backend, head=args.rm_head, **kw)
        m = rm_metrics["split"] = rm.fit(records, tc)
        rm.save(rm_path)
        extra = (f", bin acc {m.get('eval_bin_accuracy', float('nan')):.3f} (majority {m.get('eval_bin_majority', float('nan')):.3f}),"
                 f" ECE {m.get('eval_ece', float('nan')):.3f}") if args.rm_head == "classification" else ""
        print(f"[reward model] {args.rm_head} (used for GRPO): held-out pair accuracy {m.get('eval_pair_accuracy', float('nan')):.3f} "
              f"over {m.get('eval_n_pairs', 0)} pairs of {m['n_eval_prefixes']} prefixes{extra}; "
              f"train loss {m['train_loss_first']:.3f} -> {m['train_loss_last']:.3f}")
        if args.compare_heads:
            rm_metrics["cv"] = {}
            for target, center in (("raw", False), ("centred", True)):
                cv = rm_metrics["cv"][target] = cross_validate_heads(records, folds=args.rm_folds, encoder=rm.encoder, train=tc,
                                                                     progress=False, **{**kw, "center": center})
                if center:
                    print(f"[reward model] reference: ordering replies by length gives pair accuracy "
                          f"{cv['length_baseline_pair_accuracy']:.3f}")
                for head in ("classification", "regression", "ranking"):
                    r = cv[head]
                    extra = (f", bin acc {r['bin_accuracy']:.3f} (majority {r['bin_majority']:.3f}), ECE {r['ece']:.3f}"
                             if head == "classification" else "")
                    print(f"[reward model] {args.rm_folds}-fold CV, {target:7s} target, {head:14s} pair accuracy "
                          f"{r['pair_accuracy']:.3f} [{r['pair_accuracy_ci'][0]:.3f}, {r['pair_accuracy_ci'][1]:.3f}] "
                          f"over {r['n_pairs']} pairs, pearson {r['pearson']:+.3f}{extra}")
        write_json_atomic(out / "rm_metrics.json", rm_metrics, indent=2, sort_keys=True)
    timings["reward_model"] = time.perf_counter() - t0
    if args.stop_after == "reward_model":
        return {"rm_metrics": rm_metrics, "timings_s": timings}

    # ---- 3. format warm-up, then GRPO -------------------------------------------------------------
    t0 = time.perf_counter()
    pkw = dict(max_reasoning_tokens=args.reasoning_tokens, max_answer_tokens=args.answer_tokens,
               lora_r=args.lora_r, lora_alpha=2 * args.lora_r, context_turns=args.context_turns, seed=args.seed)
    policy = RLFFPolicy(args.policy_model, **pkw) if args.policy_model else RLFFPolicy.from_backend(backend, **pkw)
    warm_dir = out / "warmup"
    if (warm_dir / "policy.json").is_file():
        policy.load_adapter(warm_dir / "adapter.safetensors")
        print(f"[warm-up] loaded {warm_dir}")
    elif args.warmup_steps > 0:
        losses = format_warmup(policy, warmup_examples(train_prefixes), steps=args.warmup_steps, batch_size=args.warmup_batch,
                               learning_rate=args.warmup_lr, max_answer_tokens=args.answer_tokens, seed=args.seed)
        policy.save(warm_dir)
        print(f"[warm-up] {len(losses)} steps, NLL {losses[0]:.3f} -> {losses[-1]:.3f}")
    warmed = (warm_dir / "policy.json").is_file()
    if warmed:
        # the warm-up becomes the base: GRPO's KL reference and the "start" policy of the evaluation
        policy.merge_adapter()
    timings["warmup"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    gcfg = GRPOConfig(total_steps=args.grpo_steps, prompts_per_step=args.prompts_per_step, group_size=args.group_size,
                      update_epochs=args.update_epochs, learning_rate=args.lr, kl_beta=args.kl_beta, clip_eps=args.clip_eps,
                      format_weight=args.format_weight, max_reasoning_tokens=args.reasoning_tokens, temperature=args.temperature,
                      max_answer_tokens=args.answer_tokens, checkpoint_every=max(1, args.grpo_steps // 4), seed=args.seed)
    trainer = RLFFTrainer(policy, rm, [p.turns for p in train_prefixes], gcfg, out_dir=out / "grpo")
    history = trainer.train()
    policy.save(out / "policy")
    if history:
        print(f"[GRPO] steps {history[0]['step']}..{history[-1]['step']}: reward {history[0]['reward']:+.3f} -> "
              f"{history[-1]['reward']:+.3f}, rm score {history[0]['rm_score']:+.3f} -> {history[-1]['rm_score']:+.3f}, "
              f"closed </think> {history[0]['closed_rate']:.2f} -> {history[-1]['closed_rate']:.2f}, "
              f"clean answers {history[0]['clean_answer_rate']:.2f} -> {history[-1]['clean_answer_rate']:.2f}")
    timings["grpo"] = time.perf_counter() - t0
    if args.stop_after == "grpo":
        return {"grpo_history": history, "timings_s": timings}

    # ---- 4. evaluation --------------------------------------------------------------------------
    t0 = time.perf_counter()
    # "start": the policy GRPO started from (the warm-up, merged; the base model without warm-up)
    policies = {"start": policy.base_view(), "rlff": policy}
    # held-out prefixes, judges the policy never trained against (the RM is not used here)
    eval_env = ESCEnv(backend, personas=[p.persona for p in eval_prefixes], action_mode="text",
                      max_turns=args.context_turns + 2, **agent_kwargs)
    judge_eval = heldout_judge_comparison(policies, eval_prefixes, eval_env,
                                          rubric_judge=None if args.no_rubric else RubricJudge(backend),
                                          rollouts=args.eval_rollouts, seed=args.seed + 7)
    for name, r in judge_eval.items():
        line = (f"[eval held-out] {name:6s} affect reward {fmt_interval(r['affect_reward'])}; "
                f"intensity change {fmt_interval(r['intensity_change'])}")
        if "rubric" in r:
            line += f"; rubric {fmt_interval(r['rubric'], 2)}"
        for k in ("affect_reward", "rubric"):
            if f"diff_vs_start_{k}" in r:
                line += f"; paired diff {k} {fmt_interval(r[f'diff_vs_start_{k}'])}"
        print(line)
    rm_eval = rm_score_comparison(policies, rm, [p.turns for p in eval_prefixes], seed=args.seed)
    for name, r in rm_eval.items():
        diff = r.get("diff_vs_start")
        print(f"[diagnostic: RM score, the reward GRPO optimised] {name:6s} {fmt_interval(r['rm_score'])}; "
              f"format {fmt_interval(r['format_rate'], 1, True)}" + (f"; paired diff vs start {fmt_interval(diff)}" if diff else ""))
    env_eval = {}
    if args.eval_episodes > 0:
        env_eval = env_comparison(policies, args.eval_episodes, max_turns=args.eval_turns, num_envs=args.eval_envs,
                                  personas="esconv:valid", backend=backend, seed=args.seed + 1000, **agent_kwargs)
        for name, m in env_eval.items():
            print(f"[eval env] {name:6s} success {fmt_interval(m['success_rate'], 1, True)}; avg turns {fmt_interval(m['avg_turns'], 2)}; "
                  f"intensity change {fmt_interval(m['intensity_change'])}")
    timings["evaluate"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_start
    summary = {"args": vars(args), "future_spread": spread, "rm_metrics": rm_metrics, "heldout_judges": judge_eval,
               "rm_eval_diagnostic": rm_eval,
               "env_eval": {k: {m: v[m] for m in ("success_rate", "avg_turns", "intensity_change", "return", "give_up_rate")}
                            for k, v in env_eval.items()},
               "grpo_history": history, "timings_s": timings}
    write_json_atomic(out / "eval.json", summary, indent=2, sort_keys=True)
    print(f"[done] {timings['total']:.0f} s ({', '.join(f'{k} {v:.0f}s' for k, v in timings.items() if k != 'total')}); "
          f"results in {out / 'eval.json'}")
    return summary


if __name__ == "__main__":
    main()
