"""AFlow end to end: MCTS search -> prefix records -> AFPO training -> evaluation.

The trainer of ``esc-env train aflow --config FILE.yaml`` and ``examples/train_aflow.py``:

    # the stage environment (no LLM), larger settings, with every ablation:
    python examples/train_aflow.py --config examples/configs/aflow_stage.yaml \\
        --ablations none,no-flow-balance,no-mcts,outcome-only
    # the LLM environment with the embedded model, tiny settings (CPU, a few minutes):
    python examples/train_aflow.py --config examples/configs/aflow_esc_tiny.yaml

Everything lands in ``--run-dir``: ``trees/<search>/`` (one JSON per tree), and per variant
``records.jsonl``, ``checkpoints/``, ``tb/`` (TensorBoard), ``policy/``; ``results.json``
holds the evaluation.  Every file is written atomically, and a rerun with the same
settings resumes: finished trees are loaded, training continues from its last checkpoint.

Variants (``--ablations``): ``none`` (AFlow as configured), ``no-flow-balance`` (AFPO
without the flow-balance term), ``no-mcts`` (random trajectories instead of the tree
search, same transition budget), ``outcome-only`` (the search rewards only the outcome:
+1 relief, -1 gave up, 0 before the end).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

import esc_env  # noqa: F401  (registers the environments)
from policies.aflow import (
    AFlowModel,
    AFlowPolicy,
    AFPOConfig,
    AFPOTrainer,
    BatchedMCTS,
    MCTSConfig,
    ModelConfig,
    extract_records,
    random_policy,
    run_policy,
    write_records,
)
from esc_env.fileio import write_json_atomic
from policies.aflow.evaluate import format_table, stage_optimum
from policies.aflow.trajectories import read_records, summary

VARIANTS = ("none", "no-flow-balance", "no-mcts", "outcome-only")


def _rollout_steps(text: "str | int | None") -> int | None:
    """``--rollout-steps``: ``end`` / ``none`` (until the episode ends) or an int >= 0."""
    if text is None or str(text).strip().lower() in ("end", "none", "null"):
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rollout-steps must be 'end' or an int >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"--rollout-steps must be 'end' or an int >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line (every long option is also a key of a ``--config`` YAML file)."""
    p = argparse.ArgumentParser(prog="train_aflow", description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", default=None, help="YAML file of options (keys as below, '-' or '_'); flags given here override it")
    # experiment
    p.add_argument("--exp-name", default="aflow", help="name of this experiment")
    p.add_argument("--seed", type=int, default=0, help="seed of the search, the model and the data order")
    p.add_argument("--run-dir", default=None, help="output folder (default runs/aflow/<env>__<exp-name>__<seed>)")
    p.add_argument("--torch-threads", type=int, default=1, help="torch CPU threads (small models: 1 avoids spinning threads)")
    p.add_argument("--ablations", default="none", help=f"comma-separated variants from {','.join(VARIANTS)}")
    p.add_argument("--progress", type=int, default=1, help="show tqdm progress bars (0/1)")
    # environment
    p.add_argument("--env-id", default="esc_env/ESCStage-v0", help="esc_env/ESCStage-v0 or esc_env/ESC-v0")
    p.add_argument("--strategies", default="aflow", help="strategy set: aflow (AFlow's 8) or esconv")
    p.add_argument("--max-turns", type=int, default=10, help="supporter turns per episode")
    p.add_argument("--backend", default="embedded", help="ESC-v0 only: LLM backend spec (embedded | hf:PATH | openai:URL#model | vllm:MODEL)")
    p.add_argument("--max-new-tokens", type=int, default=40, help="ESC-v0 only: tokens per seeker/supporter utterance (greedy decoding)")
    # search
    p.add_argument("--n-trees", type=int, default=200, help="search trees (one per start)")
    p.add_argument("--personas", default="random", help="'random' (the env draws one per seed) or comma-separated persona ids (cycled)")
    p.add_argument("--simulations", type=int, default=10, help="MCTS simulations per tree (paper: 10)")
    p.add_argument("--max-depth", type=int, default=10, help="deepest expanded node, in supporter turns (paper: 10)")
    p.add_argument("--rollout-steps", type=_rollout_steps, default=None,
                   help="rollout transitions after each new leaf: 'end' (until the episode ends; Q is then a whole-episode "
                        "return) or an int cap (paper: 1, which makes Q depth-biased)")
    p.add_argument("--rubric-normalization", type=float, default=2.5,
                   help="reward=rubric: the weighted rubric score is divided by this (authors: 2.5)")
    p.add_argument("--kappa", type=float, default=0.1, help="uniform exploration: rho = kappa / (1 + log(N(s) + 1)) (paper: 0.1)")
    p.add_argument("--lam", type=float, default=1.0, help="prior bonus weight lambda (paper: 1)")
    p.add_argument("--c", type=float, default=1.0, help="c in the bonus denominator c + N(s, a)")
    p.add_argument("--temperature", type=float, default=1.0, help="temperature of the selection softmax")
    p.add_argument("--prior", default="auto", help="uniform | llm | auto (llm on ESC-v0, uniform on the stage env)")
    p.add_argument("--reward", default="auto", help="step reward: env | rubric | outcome | auto (rubric on ESC-v0, env on the stage env)")
    p.add_argument("--trees-per-batch", type=int, default=16, help="trees searched in lockstep (one transition call per round for all)")
    # model
    p.add_argument("--backbone", default="hashing", help="hashing | minilm (packaged sentence encoder) | embedded | hf:PATH")
    p.add_argument("--hashing-dim", type=int, default=256, help="feature size of the hashing backbone")
    p.add_argument("--hidden", type=int, default=128, help="hidden width of each head")
    p.add_argument("--context-lines", type=int, default=2, help="dialogue lines the backbone reads (0: all)")
    p.add_argument("--lora", type=int, default=0, help="causal-LM backbones: train LoRA adapters (r 32, alpha 64) (0/1)")
    # AFPO
    p.add_argument("--epochs", type=int, default=10, help="passes over the paths")
    p.add_argument("--batch-paths", type=int, default=64, help="paths per update")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate of the heads")
    p.add_argument("--backbone-lr", type=float, default=2e-5, help="learning rate of LoRA adapters (paper: 2e-5)")
    p.add_argument("--beta", type=float, default=0.1, help="KL weight to the frozen reference policy (paper: 0.1)")
    p.add_argument("--gamma", type=float, default=1.0, help="margin between preferred and low-prior strategy (paper: 1.0)")
    p.add_argument("--flow-temperature", type=float, default=0.5,
                   help="tau: log F(s_t) = C(s_t)/tau + gamma^t h(s_t), h anchored at V(s_L)/tau on the leaves")
    p.add_argument("--subtb-lambda", type=float, default=0.9, help="subpath weight lambda^(n-m)")
    p.add_argument("--anchor-weight", type=float, default=1.0, help="weight of the leaf anchor h(s_L) -> V(s_L)/tau")
    p.add_argument("--edge-weight", type=float, default=1.0, help="weight of the soft-Q read-out g(s,a) -> r/tau + gamma h(s')")
    p.add_argument("--flow-weight", type=float, default=1.0, help="weight of the flow-balance term")
    p.add_argument("--checkpoint-every", type=int, default=200, help="updates between checkpoints")
    # policy and evaluation
    p.add_argument("--alpha", type=float, default=1.0, help="act by argmax log pi(a|s) + alpha * (log F(s'_a) - log F(s))")
    p.add_argument("--eval-episodes", type=int, default=200, help="seeded evaluation episodes per policy")
    p.add_argument("--eval-seed", type=int, default=0, help="seed of the first evaluation episode")
    p.add_argument("--eval-head-only", type=int, default=-1,
                   help="also evaluate the strategy head alone (alpha=0) (1/0; -1: only on the stage env, where episodes are cheap)")
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse ``argv``: values of ``--config FILE`` first, flags override them; ``auto`` settings resolved."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", default=None)
    known, _ = pre.parse_known_args(argv)
    p = build_parser()
    if known.config:
        import yaml

        with open(known.config, encoding="utf-8") as f:
            cfg = yaml.safe_load(f) or {}
        dests = {a.dest for a in p._actions}
        bad = sorted(k for k in cfg if k.replace("-", "_") not in dests)
        if bad:
            p.error(f"{known.config}: unknown option(s) {bad}")
        p.set_defaults(**{k.replace("-", "_"): v for k, v in cfg.items()})
    args = p.parse_args(argv)
    args.ablations = [v.strip() for v in str(args.ablations).split(",") if v.strip()]
    bad = [v for v in args.ablations if v not in VARIANTS]
    if bad:
        p.error(f"unknown ablation(s) {bad}; known: {list(VARIANTS)}")
    if args.run_dir is None:
        args.run_dir = f"runs/aflow/{args.env_id.split('/')[-1]}__{args.exp_name}__{args.seed}"
    is_llm = args.env_id != "esc_env/ESCStage-v0"
    if args.prior == "auto":
        args.prior = "llm" if is_llm else "uniform"
    if args.reward == "auto":
        args.reward = "rubric" if is_llm else "env"
    if args.eval_head_only < 0:
        args.eval_head_only = 0 if is_llm else 1
    return args


def make_env(args: argparse.Namespace, for_search: bool = True):
    """The env; on ESC-v0 the search env runs the rubric judge when the step reward needs it,
    the evaluation env does not (the return is the env's own reward).  Both share one model."""
    if args.env_id == "esc_env/ESCStage-v0":
        return gym.make(args.env_id, strategies=args.strategies, max_turns=args.max_turns)
    greedy = {"temperature": 0.0, "max_new_tokens": args.max_new_tokens}
    judges = ("affect", "rubric") if (for_search and args.reward == "rubric") else ("affect",)
    return gym.make(args.env_id, backend=args.backend, strategies=args.strategies, max_turns=args.max_turns,
                    judges=judges, seeker_params=greedy, supporter_params=greedy)


def search_config(args: argparse.Namespace, variant: str) -> MCTSConfig:
    return MCTSConfig(
        n_simulations=args.simulations, max_depth=args.max_depth, rollout_steps=args.rollout_steps, kappa=args.kappa,
        rubric_normalization=args.rubric_normalization,
        lam=args.lam, c=args.c, temperature=args.temperature, prior=args.prior,
        reward="outcome" if variant == "outcome-only" else args.reward,
        mode="random" if variant == "no-mcts" else "mcts", trees_per_batch=args.trees_per_batch, seed=args.seed,
    )


def starts(args: argparse.Namespace, env) -> list[tuple[str | None, int]]:
    """(persona, seed) of each tree; search seeds start at 1,000,000, far from the evaluation seeds."""
    if args.personas == "random":
        ids: list[str | None] = [None]
    else:
        ids = [s.strip() for s in args.personas.split(",") if s.strip()]
    return [(ids[i % len(ids)], 1_000_000 + i) for i in range(args.n_trees)]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / "args.json", vars(args), indent=2)
    progress = bool(args.progress)
    t_start = time.perf_counter()

    env = make_env(args)
    eval_env = make_env(args, for_search=False) if args.env_id != "esc_env/ESCStage-v0" else env
    n = int(env.action_space.n)
    print(f"env {args.env_id}: {n} strategies, run dir {run_dir}", flush=True)

    # ---- reference policies (the stage env only has an optimum) ---------------------
    results: dict[str, dict] = {}
    table = []
    optimal_act, optimal_exact = stage_optimum(env)
    rand = run_policy(eval_env, random_policy(n, seed=args.seed + 7_777_777), args.eval_episodes, args.eval_seed, "random",
                      progress=progress)
    table.append(rand)
    if optimal_act is not None:
        opt = run_policy(eval_env, None, args.eval_episodes, args.eval_seed, "dp-optimal (hidden state)", act_state=optimal_act,
                         note=f"exact expected return {optimal_exact:+.3f}", progress=progress)
        table.append(opt)

    for variant in args.ablations:
        t0 = time.perf_counter()
        vdir = run_dir / variant
        # 1. search (trees shared by variants with the same search settings)
        scfg = search_config(args, variant)
        tag = hashlib.sha1(json.dumps(scfg.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
        mcts = BatchedMCTS(env, scfg, progress=progress)
        trees = mcts.run(starts(args, env), run_dir / "trees" / f"{scfg.mode}-{scfg.reward}-{tag}")
        t_search = time.perf_counter() - t0
        # 2. records
        rec_path = vdir / "records.jsonl"
        records = extract_records(trees)
        write_records(rec_path, records)
        records = read_records(rec_path)
        info = summary(records)
        print(f"[{variant}] search: {len(trees)} trees, {sum(len(t.nodes) for t in trees)} nodes "
              f"({mcts.stats.nodes} new in {t_search:.1f} s); records: {info}", flush=True)
        # 3. AFPO
        mcfg = ModelConfig(n_strategies=n, backbone=args.backbone, hashing_dim=args.hashing_dim, hidden=args.hidden,
                           context_lines=args.context_lines, max_turns=args.max_turns, lora=bool(args.lora), seed=args.seed)
        acfg = AFPOConfig(flow_weight=0.0 if variant == "no-flow-balance" else args.flow_weight, subtb_lambda=args.subtb_lambda,
                          anchor_weight=args.anchor_weight, edge_weight=args.edge_weight, flow_temperature=args.flow_temperature, gamma=args.gamma,
                          beta=args.beta, lr=args.lr, backbone_lr=args.backbone_lr, batch_paths=args.batch_paths,
                          epochs=args.epochs, checkpoint_every=args.checkpoint_every, seed=args.seed)
        model = AFlowModel(mcfg)
        trainer = AFPOTrainer(model, records, acfg, run_dir=vdir, progress=progress)
        t1 = time.perf_counter()
        last = trainer.train()
        t_train = time.perf_counter() - t1
        policy = AFlowPolicy(model, alpha=args.alpha, strategy_names=list(env.unwrapped.strategies.names))
        policy.save(vdir / "policy")
        # 4. evaluation
        res = run_policy(eval_env, policy.act, args.eval_episodes, args.eval_seed, f"aflow[{variant}]",
                         note=f"alpha={args.alpha}", progress=progress)
        table.append(res)
        head_only = None
        if args.eval_head_only:
            head_only = run_policy(eval_env, AFlowPolicy(model, alpha=0.0).act, args.eval_episodes, args.eval_seed,
                                   f"aflow[{variant}] pi only", note="alpha=0", progress=progress)
            table.append(head_only)
        results[variant] = {
            "eval": res.as_dict(), "eval_policy_head_only": head_only.as_dict() if head_only else None, "records": info,
            "search": mcts.stats.as_dict(), "search_seconds": t_search, "train_seconds": t_train,
            "train_last": last, "updates": trainer.step,
        }
        print(f"[{variant}] trained {trainer.step} updates in {t_train:.1f} s; "
              f"return {res.mean:+.3f} +- {res.ci95:.3f}", flush=True)

    print()
    print(f"{args.env_id}: {args.eval_episodes} seeded episodes per policy (seeds {args.eval_seed}..), mean +- 95% CI")
    print(format_table(table))
    if optimal_exact is not None:
        print(f"optimal expected return (exact, dynamic programming on the hidden state): {optimal_exact:+.3f}")
    out = {"args": vars(args), "random": rand.as_dict(), "variants": results, "seconds": time.perf_counter() - t_start}
    if optimal_act is not None:
        out["optimal"] = {"exact_expected_return": optimal_exact, **table[1].as_dict()}
    write_json_atomic(run_dir / "results.json", out, indent=2)
    print(f"results: {run_dir / 'results.json'} ({out['seconds']:.0f} s)")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
