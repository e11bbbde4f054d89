"""AFlow on ESCStage-v0: the ablation summary over seeds and why the flow-balance term does not help.

    # mean and 95% CI over training seeds of every variant (results.json of each run dir)
    python benchmarks/aflow_diagnostics.py summary runs/aflow/ablate_v2/seed*
    # the exact flows of the explored trees vs the search's Q (no model)
    python benchmarks/aflow_diagnostics.py flows runs/aflow/ablate_v2/seed0/trees/mcts-env-* --tau 0.5
    # the AFPO terms of trained variants over all their records (no update)
    python benchmarks/aflow_diagnostics.py terms runs/aflow/ablate_v2/seed0 none no-flow-balance
    # train on the paths that end with the episode (exact anchor) with both / one of the terms
    python benchmarks/aflow_diagnostics.py terminal runs/aflow/ablate_v2/seed0/none/records.jsonl

Run from the repository root with ``PYTHONPATH=$PWD``.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
from pathlib import Path

import numpy as np


def summary(args: argparse.Namespace) -> None:
    from esc_env.evaluation.metrics import mean_ci

    rows: dict[str, dict[int, float]] = {}  # row -> training seed -> mean return (a seed's variants may be split over run dirs)
    opt = None
    for d in args.run_dirs:
        path = Path(d) / "results.json"
        if not path.is_file():
            print(f"(no {path}: skipped)")
            continue
        r = json.loads(path.read_text())
        seed = int(r["args"]["seed"])
        opt = r.get("optimal", {}).get("exact_expected_return", opt)
        rows.setdefault("random", {})[seed] = r["random"]["mean_return"]
        if "optimal" in r:
            rows.setdefault("dp-optimal (hidden state)", {})[seed] = r["optimal"]["mean_return"]
        for v, x in r["variants"].items():
            if seed in rows.get(v, {}):
                raise SystemExit(f"variant {v} of seed {seed} appears in two run dirs")
            rows.setdefault(v, {})[seed] = x["eval"]["mean_return"]
            if x.get("eval_policy_head_only"):
                rows.setdefault(v + " (pi only)", {})[seed] = x["eval_policy_head_only"]["mean_return"]
    print(f"exact optimum {opt:+.3f}" if opt is not None else "no optimum")
    print("| variant | seeds | mean return | 95% CI (t, over seeds) | minus optimum | per seed |")
    print("|---|---|---|---|---|---|")
    for k, by_seed in rows.items():
        a = np.array([by_seed[s] for s in sorted(by_seed)])
        iv = mean_ci(a)
        half = (iv.high - iv.low) / 2
        gap = f"{a.mean() - opt:+.3f}" if opt is not None else ""
        print(f"| {k} | {len(a)} | {a.mean():+.3f} | +- {half:.3f} | {gap} | {' '.join(f'{s}:{by_seed[s]:+.3f}' for s in sorted(by_seed))} |")
    print()
    print("| paired difference (same training seed) | seeds | mean | 95% CI (t) |")
    print("|---|---|---|---|")
    for x, y in (("none", "no-flow-balance"), ("none", "no-mcts"), ("no-flow-balance", "no-mcts"), ("none", "outcome-only")):
        common = sorted(set(rows.get(x, {})) & set(rows.get(y, {})))
        if len(common) < 2:
            continue
        d = np.array([rows[x][s] - rows[y][s] for s in common])
        iv = mean_ci(d)
        half = (iv.high - iv.low) / 2
        print(f"| {x} - {y} | {len(d)} | {d.mean():+.3f} | +- {half:.3f} |")


def flows(args: argparse.Namespace) -> None:
    from policies.aflow.tree import Tree

    tau = args.tau
    agree_q = agree_n = n_nodes = 0
    corr, leaves_done, leaves, once = [], 0, 0, 0
    values = []
    for f in sorted(glob.glob(str(Path(args.tree_dir) / "*.json"))):
        t = Tree.load(f)
        C = {0: 0.0}
        for n in t.nodes[1:]:
            C[n.id] = C[n.parent] + n.reward
        logF, count = {}, {}
        for n in reversed(t.nodes):  # children have larger ids than their parents
            if not n.children:
                logF[n.id], count[n.id] = (C[n.id] + n.value) / tau, 1
                if n.parent is not None:
                    leaves += 1
                    leaves_done += n.done
                    if not n.done:
                        once += n.visits == 1
                        values.append(n.value)
            else:
                xs = [logF[c] for c in n.children.values()]
                m = max(xs)
                logF[n.id] = m + math.log(sum(math.exp(x - m) for x in xs))
                count[n.id] = sum(count[c] for c in n.children.values())
        for n in t.nodes:
            if len(n.children) < 2:
                continue
            kids = list(n.children.values())
            q = [t.nodes[c].q for c in kids]
            fl = [logF[c] for c in kids]
            lv = [count[c] for c in kids]
            n_nodes += 1
            agree_q += int(np.argmax(fl) == np.argmax(q))
            agree_n += int(np.argmax(fl) == np.argmax(lv))
            if len(kids) >= 3 and np.std(lv) > 0:
                corr.append(np.corrcoef(fl, np.log(lv))[0, 1])
    v = np.array(values)
    print(f"{args.tree_dir}, tau {tau}: {n_nodes} nodes with >= 2 tried strategies")
    print(f"  argmax of the explored tree's exact flows (sum of exp(U/tau) over the leaves below) = argmax Q at "
          f"{agree_q / n_nodes:.1%}; = the child with the most explored leaves at {agree_n / n_nodes:.1%}")
    print(f"  corr(log F(child), log #explored leaves below it), nodes with >= 3 children: {np.nanmean(corr):.2f} (n={len(corr)})")
    print(f"  {leaves} leaves: {leaves_done / leaves:.1%} ended the episode (V = 0); of the others {once / max(1, len(v)):.1%} "
          f"were visited once (V = one rollout's return); their V: mean {v.mean():+.2f}, sd {v.std():.2f}")


def terms(args: argparse.Namespace) -> None:
    import torch

    from policies.aflow import AFlowPolicy, AFPOConfig, AFPOTrainer
    from policies.aflow.trajectories import read_records

    torch.set_num_threads(1)
    run = Path(args.run_dir)
    for variant in args.variants:
        pol = AFlowPolicy.load(run / variant / "policy")
        latest = json.loads((run / variant / "checkpoints" / "latest.json").read_text())
        afpo = json.loads((run / variant / "checkpoints" / latest["dir"] / "state.json").read_text())["afpo"]
        tr = AFPOTrainer(pol.model, read_records(run / variant / "records.jsonl"), AFPOConfig.from_dict(afpo), progress=False)
        print(variant, json.dumps({k: round(v, 4) for k, v in tr.evaluate_records().items()}), flush=True)


def terminal(args: argparse.Namespace) -> None:
    import torch

    from policies.aflow import AFlowModel, AFPOConfig, AFPOTrainer, ModelConfig, group_paths
    from policies.aflow.trajectories import read_records

    torch.set_num_threads(1)
    paths = group_paths(read_records(args.records))
    recs = [r for p in paths if p[-1]["done"] for r in p]
    print(f"{len(paths)} paths, {sum(1 for p in paths if p[-1]['done'])} end where the episode ended", flush=True)
    for fw, aw in ((1.0, 1.0), (0.0, 1.0), (1.0, 0.0)):
        model = AFlowModel(ModelConfig(n_strategies=8, backbone="hashing", hashing_dim=256, hidden=128, context_lines=2))
        tr = AFPOTrainer(model, recs, AFPOConfig(flow_weight=fw, anchor_weight=aw, epochs=args.epochs, batch_paths=64,
                                                 flow_temperature=0.5, lr=1e-3), progress=False)
        tr.train()
        t = tr.evaluate_records()
        print(f"terminal paths, flow_weight {fw}, anchor_weight {aw}: " + json.dumps({k: round(v, 3) for k, v in t.items()}),
              flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("summary")
    s.add_argument("run_dirs", nargs="+")
    s.set_defaults(fn=summary)
    s = sub.add_parser("flows")
    s.add_argument("tree_dir")
    s.add_argument("--tau", type=float, default=0.5)
    s.set_defaults(fn=flows)
    s = sub.add_parser("terms")
    s.add_argument("run_dir")
    s.add_argument("variants", nargs="+")
    s.set_defaults(fn=terms)
    s = sub.add_parser("terminal")
    s.add_argument("records")
    s.add_argument("--epochs", type=int, default=10)
    s.set_defaults(fn=terminal)
    args = p.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
