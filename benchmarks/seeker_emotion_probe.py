"""How the seeker's own emotion level (``seeker_emotion``) behaves on a model: parse rate, how
often the level moves, and whether it moves more for a caring listener than for a dismissive one.

Two checks per design (answer format and worked examples, :mod:`agents.emotion`):

* **replay**: the supporter turns of recorded episodes (``episodes.jsonl`` written by
  ``esc-env evaluate``), one emotion update after each, from the start level 40 as the env
  does it (SAGE preset: +-10 per turn).  ``parsed``: outputs with a readable level;
  ``changed``: readable updates whose level moved; ``levels``: the distinct levels reached.
* **contrast**: 6 built-in personas' openings, each answered by 2 caring and 2 dismissive
  listener messages (our texts), paired; ``good`` / ``bad``: the mean change after each;
  ``wins``: share of pairs in which the caring message moved the level up more (ties 0.5).

    esc-env evaluate --policy random --personas builtin --episodes 4 --seed 0 --max-turns 3 --out runs/emo
    python benchmarks/seeker_emotion_probe.py runs/emo/random/episodes.jsonl --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

GOOD = ["That sounds really painful. What has been the hardest part for you?",
        "I can hear how much this weighs on you. You are not wrong to feel this way."]
BAD = ["Just get over it, everyone has problems.", "Whatever. Can we talk about something else?"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("episodes", nargs="+", help="episodes.jsonl files of recorded runs (the replay)")
    p.add_argument("--designs", default="change,level-v1",
                   help="comma-separated: change (default prompt), level (new level, default examples), "
                        "level-v1 (new level, the examples used before) (default: %(default)s)")
    p.add_argument("--backend", default="embedded")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    args = p.parse_args()
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from agents import emotion as E
    from agents.backends import make_backend
    from agents.dialogue import Turn
    from agents.personas import PersonaBank

    designs = {"change": ("change", E.EMOTION_EXAMPLES), "level": ("level", E.EMOTION_EXAMPLES),
               "level-v1": ("level", E.EMOTION_EXAMPLES_V1)}
    names = [d.strip() for d in args.designs.split(",") if d.strip()]
    unknown = [d for d in names if d not in designs]
    if unknown:
        p.error(f"unknown design(s) {unknown}; known: {sorted(designs)}")
    backend = make_backend(args.backend)
    personas = {q.id: q for q in PersonaBank.from_source("builtin")}
    episodes = [json.loads(line)["episode"] for f in args.episodes for line in open(f) if line.strip()]
    for e in episodes:
        if e["persona"]["id"] not in personas:
            p.error(f"episode persona {e['persona']['id']!r} is not a built-in persona")
    probe = list(personas.values())[:6]
    rows = []
    for name in names:
        answer, examples = designs[name]
        tracker = E.EmotionTracker(backend, dataclasses.replace(E.EMOTION_PRESETS["sage"], answer=answer), examples=examples)
        t0 = time.process_time()
        levels = [tracker.config.start] * len(episodes)
        ups = []
        n_sup = min(sum(t["speaker"] == "supporter" for t in e["turns"]) for e in episodes)
        for k in range(1, n_sup + 1):
            dialogues = []
            for e in episodes:  # the dialogue up to and including the k-th supporter turn
                turns, seen = [], 0
                for t in e["turns"]:
                    turns.append(Turn.from_dict(t))
                    seen += t["speaker"] == "supporter"
                    if seen == k:
                        break
                dialogues.append(turns)
            out = tracker.update([personas[e["persona"]["id"]] for e in episodes], dialogues, levels, seed=0)
            levels = [u.level for u in out]
            ups += out
        pp, dd = [], []
        for q in probe:
            for g, b in zip(GOOD, BAD):
                opening = Turn("seeker", q.opening or q.situation)
                pp += [q, q]
                dd += [[opening, Turn("supporter", g)], [opening, Turn("supporter", b)]]
        contrast = tracker.update(pp, dd, [tracker.config.start] * len(dd), seed=0)
        good = np.array([u.change for u in contrast[0::2]])
        bad = np.array([u.change for u in contrast[1::2]])
        rows.append(dict(design=name, replay=len(ups), parsed=sum(u.parsed for u in ups),
                         changed=sum(u.parsed and u.change != 0 for u in ups),
                         levels=sorted({round(u.level) for u in ups}),
                         contrast_parsed=sum(u.parsed for u in contrast), pairs=len(good),
                         good=float(good.mean()), bad=float(bad.mean()),
                         wins=float(((good > bad) + 0.5 * (good == bad)).mean()), cpu_s=time.process_time() - t0))
        print(json.dumps(rows[-1]), flush=True)
    print("| design | replay parsed | level moved | levels reached | contrast parsed | good / bad mean change | caring wins |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['design']} | {r['parsed']}/{r['replay']} | {r['changed']}/{r['replay']} | {r['levels']} | "
              f"{r['contrast_parsed']}/{2 * r['pairs']} | {r['good']:+.2f} / {r['bad']:+.2f} | {r['wins']:.2f} ({r['pairs']} pairs) |")


if __name__ == "__main__":
    main()
