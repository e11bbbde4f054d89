"""``python -m esc_env.stage``: print the computed returns of the reference policies on ESCStage-v0."""

from __future__ import annotations

from typing import Sequence

from .reference import format_returns, policy_returns


def main(argv: Sequence[str] | None = None) -> None:
    import argparse
    import time

    ap = argparse.ArgumentParser(prog="python -m esc_env.stage", description="Compute the returns of reference policies on ESCStage-v0.")
    ap.add_argument("--episodes", type=int, default=2000, help="seeded episodes per policy")
    ap.add_argument("--seed", type=int, default=0, help="seed of the first episode")
    ap.add_argument("--strategies", default="esconv", help="strategy set: esconv or aflow")
    args = ap.parse_args(argv)
    t = time.perf_counter()
    res = policy_returns(args.episodes, args.seed, strategies=args.strategies)
    print(f"ESCStage-v0, strategies={args.strategies}, {args.episodes} episodes per policy (mean +- 95% CI):")
    print(format_returns(res))
    print(f"({time.perf_counter() - t:.1f} s)")


if __name__ == "__main__":
    main()
