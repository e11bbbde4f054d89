"""``esc-env rollout``: run a policy for N seeded episodes and write the transcripts (JSONL)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..common import UserError, add_config_option, add_env_options, check_policy_spec, default_out, load_policy_for, make_envs, positive

NAME = "rollout"


def add_parser(sub) -> argparse.ArgumentParser:
    from ..policy_specs import POLICY_SPEC_HELP

    ro = sub.add_parser(NAME, help="run a policy for N episodes and write the transcripts as JSONL",
                        description="Run a policy for N seeded episodes and append each finished episode (transcript, "
                                    "intensity trace, strategies, rewards) to a JSONL file.")
    ro.add_argument("--policy", default=None, help=f"policy spec, required: {POLICY_SPEC_HELP}")
    add_env_options(ro, episodes=4)
    ro.add_argument("--out", default=None, help="JSONL file of the episodes (default: runs/rollout-<time>.jsonl)")
    ro.add_argument("--append", action="store_true", help="append to an existing --out file")
    ro.add_argument("--show", action="store_true", help="print each transcript as its episode finishes")
    add_config_option(ro)
    ro.set_defaults(func=run)
    return ro


def run(args: argparse.Namespace) -> int:
    from esc_env.evaluation.interactive import run_episodes
    from esc_env.recording import EpisodeRecorder
    from esc_env.env import render_transcript
    from esc_env.state import EpisodeState

    positive("--episodes", args.episodes)
    check_policy_spec(args.policy, args.strategies)
    out = Path(args.out) if args.out else default_out("rollout").with_suffix(".jsonl")
    if out.exists() and not args.append:
        raise UserError(f"{out} exists; pass --append to add to it or choose another --out")
    envs = make_envs(args)
    try:
        policy = load_policy_for(args.policy, envs, args)
        recorder = EpisodeRecorder(out)

        def write(rec: dict) -> None:
            recorder.write(rec)
            if args.show:
                text = render_transcript(EpisodeState.from_dict(rec["episode"]))
                print(f"\n=== episode {rec['episode_index']} (seed {rec['reset_seed']}) ===\n{text}", flush=True)

        eps = run_episodes(policy, envs, args.episodes, args.seed, on_episode=write, progress=not args.no_progress,
                           extra={"policy": args.policy, "env_id": args.env_id})
    finally:
        envs.close()
    n_succ = sum(e["success"] for e in eps)
    print(f"esc-env rollout: {len(eps)} episodes of {args.policy} on {args.env_id} -> {out} "
          f"(success {n_succ}/{len(eps)}, mean return {sum(e['return'] for e in eps) / len(eps):+.3f})")
    return 0

