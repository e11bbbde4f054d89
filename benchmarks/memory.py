"""Peak resident memory (RSS) of the default env, of make_vec(8) and of AFPO training.

Each case runs in a fresh Python process, so one case's memory never counts for another;
the child reports its own peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) as it ends.
The baseline case imports the libraries and loads nothing, to show what the model adds.
Target: the default env under 1.5 GB, and one shared model (make_vec(8) close to one env).

    python benchmarks/memory.py
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import textwrap

CASES = {
    "imports only (torch, transformers, gymnasium)": """
        import torch, transformers, gymnasium, esc_env
    """,
    "ESCEnv, default (one shared model), 2 steps": """
        import esc_env, gymnasium as gym
        env = gym.make("esc_env/ESC-v0", max_turns=3, seeker_params={"max_new_tokens": 24}, supporter_params={"max_new_tokens": 24})
        env.reset(seed=0); env.step(0); env.step(1)
    """,
    "ESCEnv, prompted affect judge (no MiniLM), 2 steps": """
        import esc_env, gymnasium as gym
        env = gym.make("esc_env/ESC-v0", max_turns=3, affect_judge="prompted", seeker_params={"max_new_tokens": 24}, supporter_params={"max_new_tokens": 24})
        env.reset(seed=0); env.step(0); env.step(1)
    """,
    "three ESCEnv instances (model shared)": """
        import esc_env, gymnasium as gym
        envs = [gym.make("esc_env/ESC-v0", max_turns=3, seeker_params={"max_new_tokens": 24}, supporter_params={"max_new_tokens": 24}) for _ in range(3)]
        for e in envs: e.reset(seed=0); e.step(0)
        assert len({id(e.unwrapped.engine.seeker.backend) for e in envs}) == 1
        assert len({id(e.unwrapped.engine.affect_judge) for e in envs}) == 1
    """,
    "make_vec(8), 2 steps": """
        import esc_env, numpy as np
        v = esc_env.make_vec(8, max_turns=3, seeker_params={"max_new_tokens": 24}, supporter_params={"max_new_tokens": 24})
        v.reset(seed=0); v.step(np.zeros(8, dtype=int)); v.step(np.ones(8, dtype=int))
    """,
    "AFPO training, CPU defaults (hashing backbone, stage env search, 1 epoch)": """
        import sys, tempfile
        sys.argv = ["train_aflow", "--env-id", "esc_env/ESCStage-v0", "--n-trees", "16", "--simulations", "10",
                    "--epochs", "1", "--eval-episodes", "10", "--run-dir", tempfile.mkdtemp(), "--progress", "0"]
        import runpy; runpy.run_path("examples/train_aflow.py", run_name="__main__")
    """,
    "AFPO training, embedded SmolLM2 backbone + LoRA (stage env search, 1 epoch)": """
        import sys, tempfile
        sys.argv = ["train_aflow", "--env-id", "esc_env/ESCStage-v0", "--n-trees", "8", "--simulations", "6",
                    "--epochs", "1", "--batch-paths", "8", "--backbone", "embedded", "--lora", "1", "--eval-episodes", "4",
                    "--run-dir", tempfile.mkdtemp(), "--progress", "0"]
        import runpy; runpy.run_path("examples/train_aflow.py", run_name="__main__")
    """,
}


def peak_rss_mb(code: str) -> tuple[float, int]:
    """Peak RSS of a fresh process running ``code``, as the process itself reports it."""
    code = textwrap.dedent(code) + "\nimport resource\nprint('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return float("nan"), proc.returncode
    kb = [int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("PEAK_RSS_KB")][-1]
    return kb / 1024.0, 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="all", help="comma-separated case numbers (1-based) or 'all'")
    args = p.parse_args()
    names = list(CASES)
    chosen = range(len(names)) if args.cases == "all" else [int(x) - 1 for x in args.cases.split(",")]
    print(f"{'case':<58}{'peak RSS (MB)':>14}")
    for i in chosen:
        mb, rc = peak_rss_mb(CASES[names[i]])
        status = "" if rc == 0 else f"  (exit {rc})"
        print(f"{names[i]:<58}{mb:>14.0f}{status}", flush=True)


if __name__ == "__main__":
    main()
