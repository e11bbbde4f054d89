"""Env-steps per second of ``make_vec(N)`` on the embedded SmolLM2-135M: transformers, in-process
vLLM (prefix caching on and off) and ``vllm serve``, side by side in one run.

Every runner plays the same episodes (same seeds, personas, actions and sampling settings);
every role, the affect judge included (``prompted``), goes through the backend measured, so
the table compares backends and nothing else.  Also printed: the speed-up of the N-env
vector env over N single envs stepped one by one on in-process vLLM, and the start-up times
(engine ready; server answering ``/v1/models``).

Run it in the vLLM venv (``bash .ci/setup-venv vllm``), from the repository root:

    PYTHONPATH=$PWD .venv-vllm/bin/python benchmarks/vllm_throughput.py --num-envs 8 --steps 2

Each engine is dropped before the next starts (one at a time in memory); the server is a
separate process.  Order: vLLM on, vLLM off, transformers, server, then the N single envs (the
longest part); each result is logged (``ROW ...``, ``single env i/N``) as soon as it is known.
"""

from __future__ import annotations

import argparse
import gc
import platform
import time

import numpy as np


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_vector(backend, args, actions) -> float:
    """Seconds for ``args.steps`` steps of ``make_vec(args.num_envs)`` (reset not timed)."""
    from esc_env import make_vec

    venv = make_vec(args.num_envs, backend=backend, **env_kwargs(args))
    venv.reset(seed=args.seed)
    t0 = time.perf_counter()
    for t in range(args.steps):
        venv.step(actions[t])
        log(f"  vector step {t + 1}/{args.steps}: {time.perf_counter() - t0:.1f} s")
    return time.perf_counter() - t0


def run_sequential(backend, args, actions) -> float:
    """Seconds for the same episodes on N single envs, one after the other (resets not timed)."""
    from esc_env.env import ESCEnv

    total = 0.0
    for i in range(args.num_envs):
        env = ESCEnv(backend, **env_kwargs(args))
        env.reset(seed=args.seed + i)
        t0 = time.perf_counter()
        for t in range(args.steps):
            env.step(int(actions[t, i]))
        total += time.perf_counter() - t0
        log(f"  single env {i + 1}/{args.num_envs}: {total:.1f} s so far")
    return total


def env_kwargs(args) -> dict:
    params = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": args.max_new_tokens}
    return dict(max_turns=args.steps + 1, seeker_params=params, supporter_params=params, affect_judge="prompted")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num-envs", type=int, default=8, help="conversations stepped together")
    p.add_argument("--steps", type=int, default=2, help="supporter turns per conversation")
    p.add_argument("--max-new-tokens", type=int, default=40, help="tokens per seeker/supporter reply")
    p.add_argument("--seed", type=int, default=0, help="seed of sub-env 0")
    p.add_argument("--kv-cache-gb", type=float, default=2, help="vLLM's CPU KV cache (GiB)")
    p.add_argument("--skip", default="", help="comma-separated runners to leave out: transformers,vllm-off,sequential,serve")
    args = p.parse_args()
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}

    rng = np.random.default_rng(args.seed)
    actions = rng.integers(8, size=(args.steps, args.num_envs))
    env_steps = args.steps * args.num_envs
    rows: list[tuple[str, float]] = []
    notes: list[str] = []

    # 1. in-process vLLM, prefix caching on (the default): vector env, then N single envs
    t0 = time.perf_counter()
    import vllm  # noqa: F401

    t_import = time.perf_counter() - t0
    from agents.backends import make_backend
    from agents.backends.vllm_backend import shutdown_engines

    log(f"vllm imported in {t_import:.1f} s; starting the in-process engine (prefix caching on)")
    t0 = time.perf_counter()
    on = make_backend(f"vllm:embedded?kv_cache_gb={args.kv_cache_gb:g}&enable_prefix_caching=true")
    t_engine = time.perf_counter() - t0
    notes.append(f"in-process engine ready in {t_engine:.1f} s (plus {t_import:.1f} s to import vllm)")
    log(notes[-1])
    on.generate([[{"role": "user", "content": "Hi"}]])  # warm-up
    t_on = run_vector(on, args, actions)
    rows.append(("vLLM in-process, prefix caching on", t_on))
    log(f"ROW vLLM in-process, prefix caching on: {t_on:.2f} s, {env_steps / t_on:.3f} env-steps/s")
    del on
    shutdown_engines()
    gc.collect()

    # 2. in-process vLLM, prefix caching off
    if "vllm-off" not in skip:
        log("starting the in-process engine (prefix caching off)")
        off = make_backend(f"vllm:embedded?kv_cache_gb={args.kv_cache_gb:g}&enable_prefix_caching=false")
        off.generate([[{"role": "user", "content": "Hi"}]])
        rows.append(("vLLM in-process, prefix caching off", run_vector(off, args, actions)))
        log(f"ROW {rows[-1][0]}: {rows[-1][1]:.2f} s, {env_steps / rows[-1][1]:.3f} env-steps/s")
        del off
        shutdown_engines()
        gc.collect()

    # 3. transformers on the same folder (the default `embedded` backend)
    if "transformers" not in skip:
        log("loading the transformers backend")
        tf = make_backend("embedded")
        tf.generate([[{"role": "user", "content": "Hi"}]])
        rows.append(("TransformersBackend (embedded)", run_vector(tf, args, actions)))
        log(f"ROW {rows[-1][0]}: {rows[-1][1]:.2f} s, {env_steps / rows[-1][1]:.3f} env-steps/s")
        del tf
        gc.collect()

    # 4. vllm serve on 127.0.0.1, OpenAICompatibleBackend (concurrent requests)
    if "serve" not in skip:
        from agents.backends.embedded import embedded_model_dir
        from agents.backends.openai_backend import OpenAICompatibleBackend
        from tests.vllm_server import MODEL_ALIAS, VLLMServer

        log("starting vllm serve")
        server = VLLMServer(embedded_model_dir()).start()
        try:
            notes.append(f"vllm serve answering in {server.startup_seconds:.1f} s")
            log(notes[-1])
            client = OpenAICompatibleBackend([server.base_url], MODEL_ALIAS, chat_template="embedded", timeout=600,
                                             max_in_flight=max(16, 4 * args.num_envs))
            client.generate([[{"role": "user", "content": "Hi"}]])
            rows.append(("vllm serve + OpenAICompatibleBackend", run_vector(client, args, actions)))
            log(f"ROW {rows[-1][0]}: {rows[-1][1]:.2f} s, {env_steps / rows[-1][1]:.3f} env-steps/s")
            client.close()
        finally:
            server.stop()

    # 5. the same episodes on N single envs, one after the other, on in-process vLLM (the
    #    longest part, last: its per-env times are logged as they come)
    if "sequential" not in skip:
        log("starting the in-process engine again for the single envs (prefix caching on)")
        on = make_backend(f"vllm:embedded?kv_cache_gb={args.kv_cache_gb:g}&enable_prefix_caching=true")
        on.generate([[{"role": "user", "content": "Hi"}]])
        t_seq = run_sequential(on, args, actions)
        rows.append((f"  {args.num_envs} single envs one by one, vLLM in-process", t_seq))
        notes.append(f"vector env / {args.num_envs} sequential envs on in-process vLLM: {t_seq / t_on:.2f}x")
        del on
        shutdown_engines()

    print()
    print(f"machine: {cpu_name()}, {__import__('os').cpu_count()} logical CPUs; vllm {vllm.__version__}")
    print(f"make_vec({args.num_envs}), {args.steps} steps, max_new_tokens={args.max_new_tokens}, "
          f"temperature 0.7, affect_judge=prompted; {env_steps} env-steps per runner")
    print(f"{'runner':<48}{'seconds':>10}{'env-steps/s':>14}")
    for name, sec in rows:
        print(f"{name:<48}{sec:>10.2f}{env_steps / sec:>14.3f}")
    for n in notes:
        print(n)


if __name__ == "__main__":
    main()
