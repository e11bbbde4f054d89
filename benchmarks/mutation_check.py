"""A small mutation check for the learners' losses and search values.

Each file ``benchmarks/mutations/*.yaml`` lists mutations of the source: a one-place text
substitution (flip a sign, swap an index, drop a term) and the tests that must catch it.
For each mutation this script copies the tracked tree to a temporary folder, applies the
substitution there (never to your checkout), runs the named tests, and reports whether
they failed ("killed") as they should.  It exits with 1 if any mutant survives.

    python benchmarks/mutation_check.py                 # every file in benchmarks/mutations/
    python benchmarks/mutation_check.py aflow           # benchmarks/mutations/aflow.yaml only

A mutation entry::

    - name: C*tau instead of C/tau
      file: policies/aflow/afpo.py
      find: "cum / tau"            # must occur exactly once in the file
      replace: "cum * tau"
      tests: [tests/test_aflow.py::test_afpo_losses_hand_computed]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MUTATIONS = REPO / "benchmarks" / "mutations"


def load_mutations(names: list[str]) -> list[dict]:
    files = sorted(MUTATIONS.glob("*.yaml")) if not names else [MUTATIONS / f"{n}.yaml" for n in names]
    out = []
    for path in files:
        if not path.is_file():
            raise SystemExit(f"mutation_check: no mutation file {path}")
        for i, entry in enumerate(yaml.safe_load(path.read_text()) or []):
            missing = {"name", "file", "find", "replace", "tests"} - set(entry)
            if missing:
                raise SystemExit(f"mutation_check: {path.name} entry {i} lacks {sorted(missing)}")
            out.append({**entry, "source": path.stem})
    return out


def copy_tree(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split("\n")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def run_one(mutation: dict, timeout: float) -> tuple[str, float]:
    with tempfile.TemporaryDirectory(prefix="esc-mutant-") as tmp:
        root = Path(tmp)
        copy_tree(root)
        target = root / mutation["file"]
        text = target.read_text()
        count = text.count(mutation["find"])
        if count != 1:
            return f"BAD SPEC ({mutation['find']!r} occurs {count} times in {mutation['file']})", 0.0
        target.write_text(text.replace(mutation["find"], mutation["replace"]))
        env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                   *mutation["tests"]], cwd=root, env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return "killed (timeout)", time.perf_counter() - start
        seconds = time.perf_counter() - start
        if proc.returncode == 1:
            return "killed", seconds
        if proc.returncode == 0:
            return "SURVIVED", seconds
        return f"ERROR (pytest exit {proc.returncode})", seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="mutation files to run (stem of benchmarks/mutations/NAME.yaml); default all")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed for one mutant's tests")
    args = parser.parse_args(argv)
    mutations = load_mutations(args.names)
    bad = 0
    print(f"{'learner':<8} {'mutation':<58} {'result':<16} seconds")
    for m in mutations:
        result, seconds = run_one(m, args.timeout)
        bad += not result.startswith("killed")
        print(f"{m['source']:<8} {m['name'][:58]:<58} {result:<16} {seconds:.0f}", flush=True)
    print(f"{len(mutations) - bad} of {len(mutations)} mutants killed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
