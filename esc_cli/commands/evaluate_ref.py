"""``esc-env evaluate-ref``: reference-based evaluation on ESConv (strategy accuracy/F1, BLEU,
ROUGE-L, METEOR, Distinct-n, perplexity)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..common import UserError, add_config_option, check_policy_spec, config_of, positive, strategy_set

NAME = "evaluate-ref"


def add_parser(sub) -> argparse.ArgumentParser:
    from ..policy_specs import POLICY_SPEC_HELP

    er = sub.add_parser(
        NAME, help="reference-based evaluation on ESConv (strategy accuracy/F1, BLEU, ROUGE-L, METEOR, Distinct, PPL)",
        description="For each supporter turn of an ESConv split, the policy predicts the next strategy and a supporter LLM "
                    "(--backend) writes the utterance for it (unless the policy writes its own); both are compared with the "
                    "human turn.  See esc_env.evaluation.reference for the metrics and the ESConv->AFlow strategy mapping.")
    er.add_argument("--policy", default=None, help=f"policy spec, required: {POLICY_SPEC_HELP}")
    er.add_argument("--split", default="valid", help="ESConv split (train | valid) or a .jsonl/.json file (default: %(default)s)")
    er.add_argument("--data-dir", default=None, help="folder of the ESConv split files (default: $ESC_ENV_ESCONV_DIR or ../shared/data/esconv)")
    er.add_argument("--limit", type=int, default=None, help="use only the first N supporter turns")
    er.add_argument("--max-per-dialogue", type=int, default=None, help="at most N supporter turns per dialogue")
    er.add_argument("--strategies", default="esconv", help="the policy's strategy set: esconv | aflow (default: %(default)s)")
    er.add_argument("--backend", default="embedded", help="supporter LLM that writes utterances and scores perplexity, or 'none' (default: %(default)s)")
    er.add_argument("--no-generate", action="store_true", help="strategy metrics only: write no utterances")
    er.add_argument("--no-ppl", action="store_true", help="skip the perplexity of the human replies")
    er.add_argument("--no-meteor", action="store_true", help="skip METEOR (it needs WordNet)")
    er.add_argument("--batch-size", type=int, default=16, help="prefixes per batched call (default: %(default)s)")
    er.add_argument("--seed", type=int, default=0, help="seed of sampling policies and generation (default: %(default)s)")
    er.add_argument("--out", default=None, help="folder for metrics_ref.json, predictions.jsonl, run.json")
    er.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_config_option(er)
    er.set_defaults(func=run)
    return er


def run(args: argparse.Namespace) -> int:
    from esc_env.evaluation.reference import evaluate_reference, format_reference_table, reference_points
    from esc_env.evaluation.runs import run_info, write_json

    check_policy_spec(args.policy, args.strategies)
    if args.limit is not None:
        positive("--limit", args.limit)
    positive("--batch-size", args.batch_size)
    points = reference_points(args.split, strategies=args.strategies, limit=args.limit, max_per_dialogue=args.max_per_dialogue,
                              data_dir=args.data_dir)
    if not points:
        raise UserError(f"no supporter turns in ESConv {args.split!r}")
    from esc_env.spaces import action_space, observation_space

    from ..policy_specs import load_policy

    sset = strategy_set(args.strategies)
    needs_llm = not args.no_generate or not args.no_ppl or args.policy.lower().startswith("llm")
    supporter = None
    if needs_llm and args.backend.lower() != "none":
        from agents.supporter import SupporterAgent
        from esc_env.build import shared_backend

        supporter = SupporterAgent(shared_backend(args.backend), sset)
    policy = load_policy(args.policy, strategies=sset, observation_space=observation_space(len(sset), 10),
                         action_space=action_space("strategy", len(sset)), supporter=supporter, backend=args.backend, seed=args.seed)
    t0 = time.perf_counter()
    metrics, preds = evaluate_reference(policy, points, sset, supporter=supporter, generate=not args.no_generate,
                                        ppl=not args.no_ppl, meteor=not args.no_meteor, batch_size=args.batch_size,
                                        progress=not args.no_progress, seed=args.seed)
    seconds = time.perf_counter() - t0
    metrics.update(policy=args.policy, split=args.split)
    print(format_reference_table(metrics, f"== {args.policy} on ESConv {args.split}: {len(points)} supporter turns ({seconds:.1f} s) =="))
    if args.out:
        out = Path(args.out)
        write_json(out / "metrics_ref.json", metrics)
        from esc_env.recording import EpisodeRecorder

        pfile = out / "predictions.jsonl"
        if pfile.exists():
            pfile.unlink()
        rec = EpisodeRecorder(pfile)
        for p in preds:
            rec.write(p)
        write_json(out / "run.json", run_info("evaluate-ref", args.argv, config_of(args), policy=args.policy,
                                              point_ids=[p.id for p in points], seconds=seconds))
        print(f"results: {out} (metrics_ref.json, predictions.jsonl, run.json)")
    return 0
