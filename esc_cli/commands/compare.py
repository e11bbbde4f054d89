"""``esc-env compare``: one table over several saved evaluation runs (and optional plots)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..common import UserError

NAME = "compare"


def add_parser(sub) -> argparse.ArgumentParser:
    cm = sub.add_parser(NAME, help="one table over several evaluation runs",
                        description="Print one table over runs written by `esc-env evaluate` (a run folder, or an --out folder "
                                    "holding several).")
    cm.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (with metrics.json) or evaluate --out folders")
    cm.add_argument("--plots", default=None, metavar="DIR", help="write the comparison plots to DIR")
    cm.add_argument("--json", default=None, metavar="FILE", help="write the metrics of all runs to FILE")
    cm.set_defaults(func=run)
    return cm


def run(args: argparse.Namespace) -> int:
    from esc_env.evaluation.interactive import format_compare_table
    from esc_env.evaluation.runs import find_runs, load_run, write_json

    runs = []
    for path in find_runs(args.runs):
        try:
            runs.append(load_run(path))
        except ValueError as e:  # a metrics.json that is not JSON: the user's file
            raise UserError(str(e)) from None
    names: list[str] = []
    for r in runs:  # runs of different folders may share a policy name
        n = r["name"]
        if n in names:
            n = f"{Path(r['path']).parent.name}/{n}"
        names.append(n)
    pairs = [(n, r["metrics"]) for n, r in zip(names, runs)]
    print(format_compare_table(pairs))
    if args.json:
        write_json(args.json, {n: r["metrics"] for n, r in zip(names, runs)})
        print(f"json: {args.json}")
    if args.plots:
        from esc_env.evaluation.plots import plot_all

        for p in plot_all(pairs, args.plots):
            print(f"plot: {p}")
    return 0
