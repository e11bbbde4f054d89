"""``esc-env evaluate``: interactive evaluation of one or more policies (metrics with CIs,
transcripts, run record, TensorBoard scalars, optional PNG plots)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..common import (UserError, add_config_option, add_env_options, check_policy_spec, config_of, default_out, load_policy_for,
                      make_envs, positive, run_dir_name)

NAME = "evaluate"


def add_parser(sub) -> argparse.ArgumentParser:
    from ..policy_specs import POLICY_SPEC_HELP

    ev = sub.add_parser(
        NAME, help="interactive evaluation: metrics with 95%% CIs, transcripts, TensorBoard, plots",
        description="Run each policy for the same seeded episodes and report success rate, average turns (AT: failures "
                    "count as --max-turns), intensity change, return, give-up rate, rubric means (--judges affect,rubric), "
                    "strategy use and transitions, with confidence intervals (t-interval for means, Wilson for rates). "
                    "Writes OUT/<policy>/{metrics.json,episodes.jsonl,run.json}, OUT/tb/<policy> and, with --plots, OUT/plots/*.png.")
    ev.add_argument("--policy", action="append", default=None,
                    help=f"policy spec, required (repeat to compare several; adds to the config's list): {POLICY_SPEC_HELP}")
    add_env_options(ev, episodes=20)
    ev.add_argument("--out", default=None, help="output folder (default: runs/eval-<time>)")
    ev.add_argument("--overwrite", action="store_true", help="replace runs already in --out")
    ev.add_argument("--plots", action="store_true", help="write PNG plots to OUT/plots")
    ev.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals (default: %(default)s)")
    add_config_option(ev)
    ev.set_defaults(func=run)
    return ev


def run(args: argparse.Namespace) -> int:
    from esc_env.evaluation.interactive import evaluate_policy, format_compare_table, format_metrics_table
    from esc_env.evaluation.runs import run_info, write_json, write_tensorboard
    from esc_env.recording import EpisodeRecorder

    positive("--episodes", args.episodes)
    if not 0.0 < args.confidence < 1.0:
        raise UserError(f"--confidence must be in (0, 1), got {args.confidence}")
    specs = args.policy
    for spec in specs:
        check_policy_spec(spec, args.strategies)
    out = Path(args.out) if args.out else default_out("eval")
    taken: set[str] = set()
    names = [run_dir_name(s, taken) for s in specs]
    for n in names:
        if (out / n / "metrics.json").exists() and not args.overwrite:
            raise UserError(f"{out / n} already holds a run; pass --overwrite or choose another --out")
    envs = make_envs(args)
    runs: list[tuple[str, dict]] = []
    try:
        policies = [load_policy_for(s, envs, args) for s in specs]  # every spec checked before any episode
        for spec, name, policy in zip(specs, names, policies):
            run_dir = out / name
            run_dir.mkdir(parents=True, exist_ok=True)
            episodes_file = run_dir / "episodes.jsonl"
            if episodes_file.exists():
                episodes_file.unlink()
            recorder = EpisodeRecorder(episodes_file)
            t0 = time.perf_counter()
            res = evaluate_policy(policy, envs, args.episodes, args.seed, on_episode=recorder.write,
                                  progress=not args.no_progress, confidence=args.confidence,
                                  extra={"policy": spec, "env_id": args.env_id})
            seconds = time.perf_counter() - t0
            res.metrics["policy"] = spec
            res.metrics["env_id"] = args.env_id
            write_json(run_dir / "metrics.json", res.metrics)
            write_json(run_dir / "run.json", run_info(
                "evaluate", args.argv, config_of(args), name=name, policy=spec, env_id=args.env_id,
                seeds=[e["reset_seed"] for e in res.episodes], persona_ids=[e["persona_id"] for e in res.episodes],
                strategies=list(envs.strategies.names), seconds=seconds,
                affect_judge=repr(envs.engine.affect_judge) if envs.engine is not None else None,
            ))
            write_tensorboard(out / "tb" / name, res.metrics, res.episodes)
            runs.append((spec if specs.count(spec) == 1 else name, res.metrics))
            print(format_metrics_table(res.metrics, f"== {spec} on {args.env_id}: {args.episodes} episodes, seeds "
                                                    f"{args.seed}..{args.seed + args.episodes - 1} ({seconds:.1f} s) =="))
            print()
    finally:
        envs.close()
    if len(runs) > 1:
        print(format_compare_table(runs))
    if args.plots:
        from esc_env.evaluation.plots import plot_all

        for p in plot_all(runs, out / "plots"):
            print(f"plot: {p}")
    print(f"results: {out} (metrics.json, episodes.jsonl, run.json per policy; TensorBoard: tensorboard --logdir {out / 'tb'})")
    return 0
