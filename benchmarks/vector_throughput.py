"""Env-steps per second: the batched vector env against N single envs stepped one by one.

Both run the same episodes (same seeds, personas, actions and sampling settings) on one
shared embedded model, in one process, one after the other.  The third figure is the
limit: the time the vector env spent inside model calls (the batched generate/score
calls themselves, and the calibrated judge's encoder passes when that is the affect judge),
so ``1 - model_time / wall_time`` is the env's own overhead.

    python benchmarks/vector_throughput.py --num-envs 8 --steps 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from agents.backends import make_backend
from esc_env.env import ESCEnv
from esc_env.vector import ESCVectorEnv


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-envs", type=int, default=8, help="conversations stepped together")
    p.add_argument("--steps", type=int, default=3, help="supporter turns per conversation")
    p.add_argument("--max-new-tokens", type=int, default=40, help="tokens per seeker/supporter reply")
    p.add_argument("--seed", type=int, default=0, help="seed of sub-env 0")
    p.add_argument("--backend", default="embedded", help="backend spec")
    p.add_argument("--affect-judge", default="auto", help="env affect judge: auto | prompted | calibrated")
    args = p.parse_args()

    backend = make_backend(args.backend)
    params = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": args.max_new_tokens}
    kw = dict(max_turns=args.steps + 1, seeker_params=params, supporter_params=params, affect_judge=args.affect_judge)
    rng = np.random.default_rng(args.seed)
    actions = rng.integers(8, size=(args.steps, args.num_envs))
    env_steps = args.steps * args.num_envs

    # warm-up (first calls allocate)
    w = ESCEnv(backend, **kw)
    w.reset(seed=999)
    w.step(0)

    # N single envs, one at a time
    singles = [ESCEnv(backend, **kw) for _ in range(args.num_envs)]
    t0 = time.perf_counter()
    for i, env in enumerate(singles):
        env.reset(seed=args.seed + i)
        for t in range(args.steps):
            env.step(int(actions[t, i]))
    t_seq = time.perf_counter() - t0

    # the vector env
    venv = ESCVectorEnv(args.num_envs, backend, **kw)
    venv.reset(seed=args.seed)
    encoder = getattr(venv.engine.affect_judge, "encoder", None)  # a calibrated judge's text encoder
    in_encoder0 = encoder.stats.seconds if encoder is not None else 0.0
    in_backend0 = backend.usage.seconds
    tokens0 = backend.usage.completion_tokens
    t0 = time.perf_counter()
    for t in range(args.steps):
        venv.step(actions[t])
    t_vec = time.perf_counter() - t0
    in_backend = backend.usage.seconds - in_backend0
    if encoder is not None and encoder is not getattr(backend, "encoder", None):
        in_backend += encoder.stats.seconds - in_encoder0  # the judge's model calls count as model time
    tokens = backend.usage.completion_tokens - tokens0

    print(f"backend={backend.name} num_envs={args.num_envs} steps={args.steps} max_new_tokens={args.max_new_tokens} "
          f"affect_judge={venv.engine.affect_judge!r}")
    print(f"{'runner':<34}{'seconds':>10}{'env-steps/s':>14}")
    print(f"{'single envs, one by one':<34}{t_seq:>10.2f}{env_steps / t_seq:>14.3f}")
    print(f"{'vector env (one call per role)':<34}{t_vec:>10.2f}{env_steps / t_vec:>14.3f}")
    print(f"{'  of which inside model calls':<34}{in_backend:>10.2f}{env_steps / in_backend:>14.3f}")
    print(f"speed-up vector / sequential: {t_seq / t_vec:.2f}x")
    print(f"vector env / raw batched model calls: {(env_steps / t_vec) / (env_steps / in_backend):.3f} of the limit")
    print(f"time outside model calls: {100 * (t_vec - in_backend) / t_vec:.2f}% of a step")
    print(f"generated tokens in the vector run: {tokens} ({tokens / t_vec:.1f} tokens/s)")


if __name__ == "__main__":
    main()
