"""Noise of simulated future rewards: common random numbers (CRN) vs independent seeds.

    python benchmarks/future_reward_noise.py --records runs/rlff_tiny/futures.jsonl --prefixes 4

Takes a finished simulation (``futures.jsonl`` of ``examples/train_rlff.py``, simulated with
common random numbers, the default) and simulates the SAME prefixes and the SAME candidates
again with independent seeds per candidate (``FutureSimulator(common_random_numbers=False)``,
the control).  Settings (horizon, rollouts, token budgets, seed) must match the run that wrote
the records; the prefixes are rebuilt with ``prefixes_from_esconv`` exactly as the example does.
Prints, for both: :func:`policies.rlff.simulator.future_reward_spread` (within-prefix variance
of candidate means, variance of paired rollout differences, rollout variance; 95% CIs over
prefixes / pairs / candidates) and the reward-model heads' pair accuracy by 4-fold
cross-validation over prefixes (Wilson 95% CIs, optimistic: pairs of one prefix are correlated).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", required=True, help="futures.jsonl simulated with common random numbers")
    p.add_argument("--prefixes", type=int, required=True, help="--train-prefixes of the run that wrote the records")
    p.add_argument("--seed", type=int, default=0, help="--seed of that run")
    p.add_argument("--context-turns", type=int, default=4, help="--context-turns of that run")
    p.add_argument("--horizon", type=int, default=1)
    p.add_argument("--rollouts", type=int, default=2)
    p.add_argument("--seeker-tokens", type=int, default=24)
    p.add_argument("--supporter-tokens", type=int, default=32)
    p.add_argument("--prefix-batch", type=int, default=4)
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--bins", type=int, default=2, help="--rm-bins of that run (classification head)")
    p.add_argument("--backend", default="embedded")
    p.add_argument("--out", default=None, help="folder for the control's records and the results (default: next to --records)")
    args = p.parse_args(argv)

    from agents.seeker import DEFAULT_SEEKER_PARAMS
    from agents.supporter import DEFAULT_SUPPORTER_PARAMS
    from esc_env.build import shared_backend
    from esc_env.datasets import load_esconv
    from esc_env.env import ESCEnv
    from policies.rlff.evaluate import fmt_interval
    from esc_env.fileio import read_jsonl, write_json_atomic
    from policies.rlff.reward_model import TrainConfig, cross_validate_heads
    from policies.rlff.simulator import FutureSimulator, future_reward_spread, prefixes_from_esconv

    crn = read_jsonl(args.records)
    if not crn:
        raise SystemExit(f"no records in {args.records}")
    out = Path(args.out) if args.out else Path(args.records).parent
    prefixes = prefixes_from_esconv(load_esconv("train"), args.prefixes, seed=args.seed, max_context_turns=args.context_turns)
    ids = {r["prefix_id"] for r in crn}
    prefixes = [x for x in prefixes if x.id in ids]
    if len(prefixes) != len(ids):
        raise SystemExit(f"{len(ids)} prefixes in the records, {len(prefixes)} rebuilt: check --prefixes/--seed/--context-turns")
    candidates: dict[str, list[str]] = {}
    for r in sorted(crn, key=lambda r: (r["prefix_id"], r["candidate_index"])):
        candidates.setdefault(r["prefix_id"], []).append(r["candidate"])
    backend = shared_backend(args.backend)
    env = ESCEnv(backend, personas=[x.persona for x in prefixes], action_mode="text",
                 max_turns=args.context_turns + args.horizon + 2,
                 seeker_params=DEFAULT_SEEKER_PARAMS.replace(max_new_tokens=args.seeker_tokens),
                 supporter_params=DEFAULT_SUPPORTER_PARAMS.replace(max_new_tokens=args.supporter_tokens))
    sim = FutureSimulator(env, horizon=args.horizon, rollouts=args.rollouts, seed=args.seed, common_random_numbers=False)
    independent = sim.run(prefixes, out / "futures_independent.jsonl", candidates=candidates, prefix_batch=args.prefix_batch)

    results: dict = {"settings": vars(args)}
    tc = TrainConfig(seed=args.seed)
    for name, recs in (("independent", independent), ("common", crn)):
        spread = future_reward_spread(recs)
        res = {"spread": spread, "cv": {}}
        print(f"[{name:11s}] within-prefix variance {fmt_interval(spread['within_prefix_variance'], 4)}; "
              f"paired-difference variance {fmt_interval(spread['paired_difference_variance'], 4)}; "
              f"rollout variance {fmt_interval(spread['rollout_variance'], 4)}", flush=True)
        for target, center in (("raw", False), ("centred", True)):
            cv = res["cv"][target] = cross_validate_heads(recs, folds=args.folds, train=tc, progress=False, bins=args.bins,
                                                          hidden=64, center=center)
            for head in ("classification", "regression", "ranking"):
                r = cv[head]
                print(f"[{name:11s}] {args.folds}-fold CV, {target:7s} target, {head:14s} pair accuracy "
                      f"{r['pair_accuracy']:.3f} [{r['pair_accuracy_ci'][0]:.3f}, {r['pair_accuracy_ci'][1]:.3f}] "
                      f"over {r['n_pairs']} pairs", flush=True)
        results[name] = res
    write_json_atomic(out / "future_reward_noise.json", results, indent=2, sort_keys=True)
    return results


if __name__ == "__main__":
    main()
