"""``esc-env demo``: a few short episodes on the embedded model, transcripts and metrics printed."""

from __future__ import annotations

import argparse
import time

NAME = "demo"


def add_parser(sub) -> argparse.ArgumentParser:
    demo = sub.add_parser(NAME, help="run a few short episodes on the embedded model and print the transcripts")
    demo.add_argument("--backend", default="embedded", help="backend spec (embedded | hf:PATH | openai:URL#model | vllm:embedded | vllm:MODEL)")
    demo.add_argument("--personas", default="builtin", help="persona source (builtin | esconv:valid | esconv:train | FILE)")
    demo.add_argument("--episodes", type=int, default=3, help="number of episodes")
    demo.add_argument("--max-turns", type=int, default=4, help="supporter turns per episode")
    demo.add_argument("--temperature", type=float, default=0.7, help="seeker sampling temperature (0 = greedy)")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.set_defaults(func=run)
    return demo


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from agents.seeker import DEFAULT_SEEKER_PARAMS
    from esc_env.env import ESCEnv
    from esc_env.evaluation.dialogue_quality import degenerate_share

    t0 = time.perf_counter()
    print(f"esc-env demo: backend={args.backend} personas={args.personas} episodes={args.episodes} max_turns={args.max_turns}", flush=True)
    env = ESCEnv(args.backend, personas=args.personas, max_turns=args.max_turns, render_mode="ansi",
                 seeker_params=DEFAULT_SEEKER_PARAMS.replace(temperature=args.temperature))
    load_s = time.perf_counter() - t0
    print(f"affect judge: {env.affect_judge!r}", flush=True)
    rng = np.random.default_rng(args.seed)
    returns, lengths, successes, gave_up, deltas, utterances = [], [], [], [], [], []
    for ep in range(args.episodes):
        obs, info = env.reset(seed=args.seed + ep)
        done, ret = False, 0.0
        while not done:
            action = int(rng.integers(env.action_space.n))
            obs, reward, terminated, truncated, info = env.step(action)
            ret += reward
            done = terminated or truncated
        print(f"\n=== episode {ep + 1}/{args.episodes} ===")
        print(env.render())
        st = env.unwrapped.state
        returns.append(ret)
        lengths.append(st.turn)
        successes.append(st.success)
        gave_up.append(st.gave_up)
        deltas.append(st.intensities[-1] - st.intensities[0])
        utterances += [t.text for t in st.turns]
    usage = env.engine.seeker.backend.usage
    total = time.perf_counter() - t0
    print(
        f"\nmetrics: episodes={len(returns)} mean_return={np.mean(returns):+.3f} success_rate={np.mean(successes):.2f} "
        f"give_up_rate={np.mean(gave_up):.2f} avg_turns={np.mean(lengths):.1f} mean_intensity_change={np.mean(deltas):+.2f} "
        f"degenerate_share={degenerate_share(utterances):.2f} "
        f"tokens={usage.prompt_tokens + usage.completion_tokens} load_s={load_s:.1f} total_s={total:.1f}"
    )
    return 0
