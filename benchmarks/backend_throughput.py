"""Throughput of the embedded backend: ``generate`` tokens/s at several batch sizes, and the
cost of reading long prompts (prefill) at batch 1 and 8, and the cost of one ``score`` call
on a judge-sized prompt.

    python benchmarks/backend_throughput.py                 # batch 1, 8, 32; 32 new tokens
    python benchmarks/backend_throughput.py --batches 1 8 --max-new-tokens 16
    python benchmarks/backend_throughput.py --threads 1     # small shared CPU machines

tokens/s is computed from the tokens each row really produced (``completion_tokens``), not
from ``batch * max_new_tokens``: a row that ends early (end of message) is counted for
what it generated, and the table says how many rows reached the limit.  The prompts ask for
long stories so that almost every row does.  Greedy decoding; one warm-up call first.
"""

from __future__ import annotations

import argparse
import statistics
import time

from agents.backends import GenerationParams, make_backend

TOPICS = [
    "a lighthouse keeper", "a lost dog", "a robot chef", "a shy dragon", "a desert caravan", "a clockmaker",
    "a submarine crew", "a village baker", "an old violin", "a space gardener", "a river ferry", "a night train",
    "a chess prodigy", "a mountain rescue", "a haunted library", "a beekeeper", "a city fox", "a paper kite",
    "a snow leopard", "a street musician", "a tiny island", "a forgotten map", "a rainy market", "a lonely astronaut",
    "a circus juggler", "a glass blower", "a storm chaser", "a marathon runner", "a ghost ship", "a secret garden",
    "a jazz pianist", "a polar expedition",
]

JUDGE_SYSTEM = (
    "You are an expert annotator of emotional-support conversations. You read a conversation between a "
    "help-seeker and a supporter and rate how the seeker feels at the end of it. Consider the seeker's own "
    "words first, then how they react to the supporter's last message. Only the seeker's emotional state "
    "matters. Answer with exactly one word from the list."
)
JUDGE_DIALOGUE = [
    ("seeker", "Hi. I don't really know how to start. I lost my job last week and I keep feeling like a failure."),
    ("supporter", "I'm really sorry to hear that. Losing a job is a big shock. How have the last few days been for you?"),
    ("seeker", "Honestly terrible. I can't sleep, and I'm scared I won't be able to pay rent next month. "
               "My parents don't know yet and I'm ashamed to tell them."),
    ("supporter", "That sounds exhausting, carrying all of that alone. What feels most urgent to you right now?"),
    ("seeker", "Probably the rent. I have some savings but not much. I guess I could ask my landlord for more time, "
               "but I hate asking for help. It makes me feel even more useless."),
    ("supporter", "Asking for time is a reasonable step, and many landlords prefer a plan to a surprise. Needing help "
                  "for a while doesn't make you useless; it means you're dealing with something hard."),
    ("seeker", "Maybe you're right. I think I could write to him tomorrow. It still feels heavy, but a little less "
               "than before we talked."),
]
# candidates follow the prefix "Feeling:", hence the leading space (one token each in SmolLM2)
PREFIX = "Feeling:"
SINGLE_TOKEN = [" sad", " anxious", " angry", " calm", " hopeful", " ashamed"]
MULTI_TOKEN = [" deeply sad", " very anxious about money", " quietly angry", " calm and relieved",
               " cautiously hopeful now", " ashamed and alone"]


def judge_conversation() -> list[dict]:
    dialogue = "\n".join(f"{who.capitalize()}: {text}" for who, text in JUDGE_DIALOGUE)
    user = (f"Conversation:\n{dialogue}\n\nHow does the seeker feel at the end? Choose one of: "
            f"{', '.join(c.strip() for c in SINGLE_TOKEN)}.")
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}]


def story_conversation(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Write a long, detailed story about {TOPICS[i % len(TOPICS)]}. "
                                        "Use at least five paragraphs."}]


def bench_generate(backend, batch: int, max_new_tokens: int) -> dict:
    convs = [story_conversation(i) for i in range(batch)]
    params = GenerationParams(max_new_tokens=max_new_tokens)
    t0 = time.perf_counter()
    out = backend.generate(convs, params)
    dt = time.perf_counter() - t0
    tokens = sum(c.completion_tokens for c in out)
    return dict(batch=batch, seconds=dt, tokens=tokens, full=sum(c.completion_tokens == max_new_tokens for c in out),
                tok_s=tokens / dt)


def bench_prefill(backend, batch: int, words: int) -> dict:
    """Prompt tokens/s: prompts of about ``words`` words, one new token each (the cost of reading a
    long seeker or judge prompt, which batching does not make cheaper on a CPU)."""
    convs = [[{"role": "user", "content": " ".join(TOPICS[(i + k) % len(TOPICS)] for k in range(words // 2))}]
             for i in range(batch)]
    t0 = time.perf_counter()
    out = backend.generate(convs, GenerationParams(max_new_tokens=1))
    dt = time.perf_counter() - t0
    tokens = sum(c.prompt_tokens for c in out)
    return dict(batch=batch, seconds=dt, tokens=tokens, tok_s=tokens / dt)


def bench_score(backend, candidates: list[str], batch: int, reps: int) -> float:
    convs = [judge_conversation()] * batch
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        backend.score(convs, candidates, assistant_prefix=PREFIX)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", default="embedded", help="backend spec (default: embedded)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--score-batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--prefill-batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--prefill-words", type=int, default=200, help="words per prompt of the prefill measurement")
    ap.add_argument("--reps", type=int, default=2, help="repetitions of each score measurement (median)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's own choice).  On a small machine shared with other "
                         "jobs, 1 can be many times faster: idle OpenMP threads spin while waiting for a core")
    args = ap.parse_args(argv)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)

    t_load = time.perf_counter()
    backend = make_backend(args.spec)
    print(f"backend: {backend.name}  (loaded in {time.perf_counter() - t_load:.1f} s)")
    import torch

    print(f"torch threads: {torch.get_num_threads()}")
    backend.generate([story_conversation(0)], GenerationParams(max_new_tokens=4))  # warm-up
    backend.score([judge_conversation()], SINGLE_TOKEN)

    print(f"\ngenerate: greedy, max_new_tokens={args.max_new_tokens}")
    print(f"{'batch':>6} {'seconds':>8} {'tokens':>7} {'rows@max':>9} {'tokens/s':>9} {'x batch 1':>9}")
    rows = [bench_generate(backend, b, args.max_new_tokens) for b in args.batches]
    base = rows[0]["tok_s"]
    for r in rows:
        print(f"{r['batch']:>6} {r['seconds']:>8.2f} {r['tokens']:>7} {r['full']:>4}/{r['batch']:<4} "
              f"{r['tok_s']:>9.1f} {r['tok_s'] / base:>9.2f}")

    print(f"\nprefill: prompts of about {args.prefill_words} words, 1 new token")
    print(f"{'batch':>6} {'seconds':>8} {'prompt tokens':>14} {'tokens/s':>9} {'x batch 1':>9}")
    pre = [bench_prefill(backend, b, args.prefill_words) for b in args.prefill_batches]
    for r in pre:
        print(f"{r['batch']:>6} {r['seconds']:>8.2f} {r['tokens']:>14} {r['tok_s']:>9.1f} {r['tok_s'] / pre[0]['tok_s']:>9.2f}")

    tok = getattr(backend, "tokenizer", None)
    n_prompt = len(tok(backend.render(judge_conversation(), PREFIX), add_special_tokens=False)["input_ids"]) if tok else -1
    lens = [len(tok(c, add_special_tokens=False)["input_ids"]) for c in MULTI_TOKEN] if tok else []
    if tok:
        assert all(len(tok(c, add_special_tokens=False)["input_ids"]) == 1 for c in SINGLE_TOKEN), "not single tokens"
    print(f"\nscore: judge prompt of {n_prompt} tokens, {len(SINGLE_TOKEN)} candidates, median of {args.reps}")
    print(f"  multi-token candidates are {min(lens, default=0)}-{max(lens, default=0)} tokens long")
    print(f"{'batch':>6} {'single-token s':>15} {'multi-token s':>14} {'multi/single':>13} {'single s/conv':>14}")
    for b in args.score_batches:
        s = bench_score(backend, SINGLE_TOKEN, b, args.reps)
        m = bench_score(backend, MULTI_TOKEN, b, args.reps)
        print(f"{b:>6} {s:>15.3f} {m:>14.3f} {m / s:>13.2f} {s / b:>14.3f}")
    one_token_s = 1.0 / base
    s1 = bench_score(backend, SINGLE_TOKEN, 1, args.reps)
    print(f"\none single-token score call (batch 1) costs {s1 / one_token_s:.1f}x the time of one generated token "
          f"at batch 1 ({s1:.3f} s vs {one_token_s:.3f} s)")


if __name__ == "__main__":
    main()
