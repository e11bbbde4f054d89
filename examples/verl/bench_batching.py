"""How much ESCInteraction's micro-batching saves: N concurrent episodes through verl's async
interaction API, with batching (``max_batch`` = N) and without (``max_batch`` = 1).

    python examples/verl/bench_batching.py --episodes 8 --turns 2

The supporter's turns are fixed texts (no policy model), so the time is the env's alone: the
seeker's replies and the judges. Prints the wall time of each setting, the engine calls made
and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from esc_env.integrations.verl_interaction import ESCInteraction

SUPPORT = ["That sounds really hard. What worries you most right now?",
           "You are carrying a lot. Who could you talk to this week?",
           "It makes sense that you feel this way. What has helped before?"]


async def play(interaction, n: int, turns: int) -> None:
    ids = [p.id for p in interaction.personas]
    starts = [interaction.start_interaction(f"bench-{i}", persona_id=ids[i % len(ids)], seed=i) for i in range(n)]
    iids = await asyncio.gather(*starts)

    async def episode(iid):
        messages = [{"role": "user", "content": interaction.episode_state(iid).turns[0].text}]
        for t in range(turns):
            messages.append({"role": "assistant", "content": SUPPORT[t % len(SUPPORT)]})
            done, reply, _, _ = await interaction.generate_response(iid, messages)
            messages.append({"role": "user", "content": reply})
            if done:
                break
        await interaction.finalize_interaction(iid)

    await asyncio.gather(*[episode(i) for i in iids])


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--turns", type=int, default=2)
    ap.add_argument("--backend", default="embedded")
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=2, help="runs of each setting, alternating; the best is kept")
    ap.add_argument("--torch-threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = ap.parse_args(argv)
    base = {"name": "esc", "backend": args.backend, "max_turns": args.turns,
            "seeker_params": {"max_new_tokens": args.max_new_tokens, "temperature": 0.0}}
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    out: dict[str, float] = {}
    warm = ESCInteraction({**base, "max_batch": 1})  # load the models, and run one episode, before timing
    asyncio.run(play(warm, 1, 1))
    for rep in range(args.repeats):
        for label, max_batch in (("batched", args.episodes), ("one at a time", 1))[:: 1 if rep % 2 == 0 else -1]:
            it = ESCInteraction({**base, "max_batch": max_batch})
            n_start, n_step = len(it.batch_sizes["start"]), len(it.batch_sizes["step"])
            t0 = time.perf_counter()
            asyncio.run(play(it, args.episodes, args.turns))
            seconds = time.perf_counter() - t0
            out[label] = min(out.get(label, float("inf")), seconds)
            sizes = it.batch_sizes
            print(f"{label:>14}: {seconds:6.1f} s  engine calls: {len(sizes['start']) - n_start} start, "
                  f"{len(sizes['step']) - n_step} step (step batch sizes {sorted(set(sizes['step'][n_step:]))})")
    print(f"best of {args.repeats}: one at a time / batched = {out['one at a time'] / out['batched']:.2f}x "
          f"({args.episodes} episodes x {args.turns} turns, backend {args.backend})")
    return out


if __name__ == "__main__":
    main()
