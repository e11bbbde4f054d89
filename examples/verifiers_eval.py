"""Evaluate a supporter model on esc-env episodes with verifiers' own eval loop.

The supporter is the model behind an OpenAI-compatible server (vLLM, llama.cpp, any API); the
seeker and the judge are esc-env's (the embedded model unless ``--backend`` says otherwise).
verifiers runs the episodes (``verifiers.v1.cli.eval.runner.run_eval``, what ``vf-eval`` runs),
writes ``traces.jsonl`` under ``--output-dir``, and this script prints each episode's reward
(the esc-env return) and how it ended.

Needs ``pip install "esc-env[verifiers]"`` (verifiers 0.4.0).  For example, with a local
llama.cpp server on the embedded model::

    python -m llama_cpp.server --model "$(python -c 'from agents.backends.embedded import embedded_gguf_path as p; print(p())')" \\
        --model_alias smollm2 --port 8000 &
    python examples/verifiers_eval.py --base-url http://127.0.0.1:8000/v1 --model smollm2 \\
        --num-tasks 2 --max-turns 2 --max-tokens 32
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--base-url", required=True, help="the supporter's OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--model", required=True, help="the model name the server serves")
    p.add_argument("--api-key-var", default="OPENAI_API_KEY", help="environment variable holding the server's API key")
    p.add_argument("--num-tasks", type=int, default=None, help="evaluate the first N tasks (default: all)")
    p.add_argument("--rollouts", type=int, default=1, help="episodes per task (verifiers' group size)")
    p.add_argument("--max-turns", type=int, default=10, help="supporter turns per episode (esc-env's truncation)")
    p.add_argument("--personas", default="builtin", help="persona source: builtin, esconv:valid, esconv:train or a persona file")
    p.add_argument("--persona-ids", nargs="+", default=None, help="only these persona ids (default: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first task (task i gets seed + i)")
    p.add_argument("--max-tokens", type=int, default=64, help="the supporter's max tokens per reply")
    p.add_argument("--temperature", type=float, default=None, help="the supporter's sampling temperature (default: the server's)")
    p.add_argument("--backend", default="embedded", help="esc-env backend spec for the seeker and the judges")
    p.add_argument("--judges", nargs="+", default=["affect"], help="esc-env judges run every step: affect, rubric, outcome")
    p.add_argument("--max-concurrent", type=int, default=32, help="episodes in flight at once")
    p.add_argument("--output-dir", default="outputs", help="where verifiers writes the run (configs/ and traces.jsonl)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from verifiers.v1.cli.eval.runner import run_eval

    from esc_env.integrations.verifiers_env import eval_config

    config = eval_config(
        args.base_url, args.model, num_tasks=args.num_tasks, rollouts_per_task=args.rollouts,
        max_turns=args.max_turns, personas=args.personas, persona_ids=args.persona_ids, seed=args.seed,
        max_tokens=args.max_tokens, temperature=args.temperature, backend=args.backend,
        api_key_var=args.api_key_var, output_dir=args.output_dir, env={"judges": args.judges},
        max_concurrent=args.max_concurrent,
    )
    # the env logs how many batched engine calls served the episodes
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    env_logger = logging.getLogger("esc_env.integrations.verifiers_env")
    env_logger.addHandler(handler)
    env_logger.setLevel(logging.INFO)
    t0 = time.perf_counter()
    episodes = asyncio.run(run_eval(config))
    wall = time.perf_counter() - t0
    print(f"{'persona':<28} {'seed':>4} {'reward':>8} {'turns':>5}  ended")
    rewards = []
    for ep in episodes:
        data = ep.task.data
        for trace in ep.traces:
            record = trace.info.get("esc_env")
            if not trace.ok or record is None:
                err = trace.errors[-1].message if trace.errors else (ep.errors[-1].message if ep.errors else "?")
                print(f"{getattr(data, 'persona_id', '?'):<28} {getattr(data, 'seed', -1):>4} {'failed':>8}  {err[:120]}")
                continue
            rewards.append(trace.reward)
            ended = "relieved" if record["success"] else "gave up" if record["gave_up"] else record["ended_by"]
            print(f"{record['persona_id']:<28} {record['seed']:>4} {trace.reward:>+8.3f} {len(record['rewards']):>5}  {ended}")
    if rewards:
        print(f"mean reward {sum(rewards) / len(rewards):+.3f} over {len(rewards)} episode(s); {wall:.1f} s")
    print(f"traces: {config.output_dir / config.run.dir / 'traces.jsonl'}")


if __name__ == "__main__":
    main()
