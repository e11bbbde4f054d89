"""Tree nodes per second: AFlow's lockstep batched MCTS vs one tree at a time.

Both searches use the same settings and the same starts, once each; the batched search
sends every round's expansions of all trees to ``env.unwrapped.transition`` in one call
(on ``esc_env/ESC-v0``: one batched LLM call per role), the baseline
(:func:`policies.aflow.search_one_tree`) sends one state per call.  On a deterministic
environment both build the same trees, which the script checks.

    python benchmarks/mcts_throughput.py                       # both environments
    python benchmarks/mcts_throughput.py --envs stage --stage-trees 128
    python benchmarks/mcts_throughput.py --envs esc --esc-trees 4 --esc-simulations 3 --esc-max-depth 2
"""

from __future__ import annotations

import argparse
import sys
import time

import gymnasium as gym
import torch

import esc_env  # noqa: F401  (registers the environments)
from policies.aflow import BatchedMCTS, MCTSConfig
from esc_env.fileio import write_json_atomic


def measure(env, cfg: MCTSConfig, starts: list[tuple[str | None, int]], prior: str) -> dict:
    """Nodes per second of both searches on ``starts`` (search time only: resets excluded)."""
    batched = BatchedMCTS(env, cfg, prior=prior)
    fresh = [batched.new_tree(p, s) for p, s in starts]
    t0 = time.perf_counter()
    trees_b = batched.search(fresh)
    sec_b = time.perf_counter() - t0
    nodes_b = batched.stats.nodes

    sec_1, nodes_1, calls_1, trees_1 = 0.0, 0, 0, []
    for p, s in starts:
        one = BatchedMCTS(env, cfg, prior=prior)
        tree = one.new_tree(p, s)
        t0 = time.perf_counter()
        one.search([tree])
        sec_1 += time.perf_counter() - t0
        nodes_1 += one.stats.nodes
        calls_1 += one.stats.transition_calls
        trees_1.append(tree)
    same = [a.to_json() == b.to_json() for a, b in zip(trees_b, trees_1)]
    # LLM scores of a batch differ from single calls in the last float bits (padding), so
    # also compare the structure: the same edges and the same utterances
    shape = [[(n.parent, n.action, n.info.get("seeker_utterance")) for n in a.nodes]
             == [(n.parent, n.action, n.info.get("seeker_utterance")) for n in b.nodes] for a, b in zip(trees_b, trees_1)]
    gaps = [abs(x.reward - y.reward) for a, b in zip(trees_b, trees_1) if len(a.nodes) == len(b.nodes)
            for x, y in zip(a.nodes, b.nodes)]
    out = {
        "trees": len(starts),
        "batched": {"nodes": nodes_b, "seconds": sec_b, "nodes_per_second": nodes_b / sec_b,
                    "transition_calls": batched.stats.transition_calls, "prior_calls": batched.stats.prior_calls},
        "one_at_a_time": {"nodes": nodes_1, "seconds": sec_1, "nodes_per_second": nodes_1 / sec_1, "transition_calls": calls_1},
        "identical_trees": f"{sum(same)}/{len(same)}",
        "same_structure": f"{sum(shape)}/{len(shape)}",
        "max_reward_gap": max(gaps) if gaps else None,
    }
    out["speedup"] = out["batched"]["nodes_per_second"] / out["one_at_a_time"]["nodes_per_second"]
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--envs", default="stage,esc", help="comma-separated: stage (ESCStage-v0), esc (ESC-v0 with --backend)")
    p.add_argument("--seed", type=int, default=0, help="search seed")
    p.add_argument("--strategies", default="aflow", help="strategy set")
    p.add_argument("--stage-trees", type=int, default=64, help="ESCStage-v0: trees")
    p.add_argument("--stage-simulations", type=int, default=20, help="ESCStage-v0: simulations per tree")
    p.add_argument("--stage-max-depth", type=int, default=10, help="ESCStage-v0: max depth")
    p.add_argument("--backend", default="embedded", help="ESC-v0: LLM backend spec")
    p.add_argument("--esc-trees", type=int, default=4, help="ESC-v0: trees")
    p.add_argument("--esc-simulations", type=int, default=3, help="ESC-v0: simulations per tree")
    p.add_argument("--esc-max-depth", type=int, default=2, help="ESC-v0: max depth")
    p.add_argument("--esc-max-turns", type=int, default=3, help="ESC-v0: supporter turns per episode")
    p.add_argument("--esc-max-new-tokens", type=int, default=24, help="ESC-v0: tokens per utterance (greedy)")
    p.add_argument("--esc-prior", default="llm", help="ESC-v0: uniform | llm")
    p.add_argument("--rollout-steps", default="end",
                   help="rollout transitions after each new leaf: 'end' (until the episode ends, the default search) or an int")
    p.add_argument("--torch-threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--out", default=None, help="also write the results as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.torch_threads)
    envs = [e.strip() for e in args.envs.split(",") if e.strip()]
    rollout = None if str(args.rollout_steps).lower() in ("end", "none") else int(args.rollout_steps)
    results: dict[str, dict] = {}

    if "stage" in envs:
        env = gym.make("esc_env/ESCStage-v0", strategies=args.strategies)
        cfg = MCTSConfig(n_simulations=args.stage_simulations, max_depth=args.stage_max_depth, seed=args.seed,
                         trees_per_batch=args.stage_trees, rollout_steps=rollout)
        results["ESCStage-v0"] = {"settings": cfg.to_dict(), **measure(env, cfg, [(None, 1_000_000 + i) for i in range(args.stage_trees)], "uniform")}
    if "esc" in envs:
        greedy = {"temperature": 0.0, "max_new_tokens": args.esc_max_new_tokens}
        env = gym.make("esc_env/ESC-v0", backend=args.backend, strategies=args.strategies, max_turns=args.esc_max_turns,
                       seeker_params=greedy, supporter_params=greedy)
        cfg = MCTSConfig(n_simulations=args.esc_simulations, max_depth=args.esc_max_depth, seed=args.seed,
                         trees_per_batch=args.esc_trees, rollout_steps=rollout)
        env.reset(seed=0)  # load the model before timing
        results["ESC-v0"] = {"settings": cfg.to_dict(), "backend": args.backend,
                             **measure(env, cfg, [(None, 1_000_000 + i) for i in range(args.esc_trees)], args.esc_prior)}

    print("| env | trees | batched nodes/s | one-at-a-time nodes/s | ratio | transition calls (batched / one) | identical trees | same edges+utterances |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['trees']} | {r['batched']['nodes_per_second']:.3g} | {r['one_at_a_time']['nodes_per_second']:.3g} "
              f"| {r['speedup']:.2f}x | {r['batched']['transition_calls']} / {r['one_at_a_time']['transition_calls']} "
              f"| {r['identical_trees']} | {r['same_structure']} |")
    if args.out:
        write_json_atomic(args.out, results, indent=2)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
