"""How well do the affect judges track the emotional intensity people reported in ESConv?

For every dialogue of the ESConv valid split with a survey, each judge rates

* the dialogue's FIRST seeker turns (the dialogue cut after its ``--seeker-turns``-th
  seeker utterance; the judge reads the last ``--seeker-turns`` seeker utterances of it),
  compared with ``initial_emotion_intensity``;
* its LAST seeker turns (the whole dialogue), compared with ``final_emotion_intensity``.

Reported per judge:

* ``rho_first`` / ``r_first``: Spearman / Pearson of judged first-turn intensity with the
  initial intensity; ``rho_last`` / ``r_last``: the same for the last turns and the final
  intensity (dialogues without a final score are left out);
* ``mae_first`` / ``mae_last``: mean absolute error on the 1-5 scale;
* ``dir_acc``: among dialogues whose survey says intensity fell, the share where the
  judged intensity of the last turns is lower than that of the first turns;
* ``rho_delta``: Spearman of judged change (last - first) with surveyed change;
* ``rho_pooled``: Spearman over first and last turns pooled, against initial and final
  intensity (mostly measures telling openings from ends apart);
* ``hand_auc``: on 12 hand-written distressed and 12 relieved seeker messages, the share
  of (distressed, relieved) pairs the judge orders correctly (0.5 = chance);
* ``ms/item`` and ``x_reply``: judge time per rated item, and that time divided by the
  time of one generated seeker reply (``SeekerAgent.reply`` on a batch of the same
  dialogues, default sampling settings), both measured on this machine.

Judges are a list of :class:`NamedJudge` (name + factory taking the backend); add one
with :func:`register_judge` or by appending to :data:`JUDGES`.

Run::

    python benchmarks/judge_validity.py                 # default + emotion-words + digits
    python benchmarks/judge_validity.py --designs all   # every affect design
    python benchmarks/judge_validity.py --limit 40 --designs emotion-words,digits
    python benchmarks/judge_validity.py --threads 1     # on a crowded machine

Measured (``--designs all --threads 1``, embedded SmolLM2-135M, ESConv valid: 195
surveyed dialogues, 174 where intensity fell)::

    judge              hand_auc rho_first r_first mae_first rho_last r_last mae_last dir_acc rho_delta x_reply
    digits                0.528     0.058   0.019     0.705    0.041  0.059    2.195   0.615    -0.052   0.115
    digits-cal            0.500     0.058   0.040     0.996    0.010  0.042    1.149   0.546    -0.028   0.105
    emotion-words         1.000     0.155   0.127     0.816    0.069  0.071    1.030   0.828     0.043   0.062
    emotion-words-cal     1.000     0.191   0.146     1.014    0.095  0.119    0.826   0.879     0.095   0.040
    self-words            1.000     0.054   0.063     0.898    0.086  0.075    1.100   0.776     0.011   0.044
    self-words-cal        1.000     0.145   0.120     1.050    0.122  0.118    0.777   0.856     0.069   0.055
    yes-no                0.694    -0.026  -0.057     1.647    0.084  0.084    0.843   0.397    -0.021   0.050
    yes-no-cal            0.694    -0.026  -0.047     0.984    0.084  0.089    1.375   0.397    -0.024   0.051
    channel               0.986     0.092   0.082     0.880   -0.005 -0.009    1.095   0.805    -0.010   0.193

(one seeker reply: about 12 s on that crowded machine, batch of 8, 60 new tokens; the
time columns are noisy there, since the load changed during the run).  With 195
dialogues a Spearman below about 0.14 is not distinguishable from 0 (p > 0.05).
A full run of all designs took about 55 minutes on a 2-core machine shared with other
work; the default selection about a third of that; ``--limit`` makes it shorter.

Needs the ESConv data (``ESC_ENV_ESCONV_DIR`` or ``../shared/data/esconv``); CC BY-NC.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from agents.dialogue import Turn  # noqa: E402


# ---- judges ---------------------------------------------------------------------------


@dataclass
class NamedJudge:
    """A judge under test: ``build(backend)`` returns an object whose
    ``judge(dialogues) -> np.ndarray`` gives shape ``(n,)`` intensities in ``[1, 5]``.
    ``build`` may also take a ``last_seeker_turns`` keyword (the ``--seeker-turns`` value)."""

    name: str
    build: Callable[[Any], Any]
    description: str = ""


def _affect_factory(design: str) -> Callable[[Any], Any]:
    def build(backend, last_seeker_turns: int = 2):
        from agents.judges.affect import AffectJudge

        return AffectJudge(backend, design=design, last_seeker_turns=last_seeker_turns)

    return build


def _calibrated_factory(weights: str, strip_politeness: bool | None = None) -> Callable[[Any], Any]:
    """``strip_politeness``: override what the weights say (``None``: keep it)."""

    def build(backend):
        from dataclasses import replace

        from agents.judges.calibrated import CalibratedAffectJudge

        # the judge reads as many seeker turns as it was trained on (``--seeker-turns`` does not apply)
        judge = CalibratedAffectJudge.load(weights, backend=backend)
        if strip_politeness is not None:
            judge.features = replace(judge.features, strip_politeness=strip_politeness)
        return judge

    return build


def _seeker_emotion_factory(preset: str) -> Callable[[Any], Any]:
    def build(backend):
        from agents.emotion import SeekerEmotionJudge

        # the seeker's own level (esc_env's seeker_emotion), read once over the whole prefix from the
        # preset's start; it reads the transcript, so ``--seeker-turns`` does not apply
        return SeekerEmotionJudge(backend, preset)

    return build


def _default_judges() -> list[NamedJudge]:
    from agents.judges.affect import AFFECT_DESIGNS

    judges = [NamedJudge(name, _affect_factory(name), d.description) for name, d in AFFECT_DESIGNS.items()]
    judges.append(NamedJudge("seeker-emotion-sage", _seeker_emotion_factory("sage"),
                             "the seeker's own 0-100 emotion level (sage preset), generated and parsed"))
    try:
        from esc_env.build import calibrated_judge_available

        if calibrated_judge_available():
            from agents.judges.calibrated import WEIGHTS_DIR

            judges.append(NamedJudge("calibrated-minilm", _calibrated_factory("esconv-minilm"),
                                     "CalibratedAffectJudge, shipped esconv-minilm weights (trained on ESConv train)"))
            judges.append(NamedJudge("calibrated-minilm-strip", _calibrated_factory("esconv-minilm", strip_politeness=True),
                                     "esconv-minilm weights reading seeker turns with politeness removed (not retrained)"))
            if (WEIGHTS_DIR / "esconv-minilm-nopolite").is_dir():
                judges.append(NamedJudge("calibrated-nopolite", _calibrated_factory("esconv-minilm-nopolite"),
                                         "CalibratedAffectJudge retrained on ESConv train with politeness removed"))
    except ImportError:
        pass
    return judges


JUDGES: list[NamedJudge] = _default_judges()
"""Every judge the benchmark knows, by name (affect designs first)."""


def default_selection() -> list[str]:
    """What runs without ``--designs``: the default affect design, the plain ``digits`` and
    ``emotion-words`` designs it is compared with, and every judge added beyond the affect
    designs.  ``--designs all`` runs every design (the ``channel`` one costs about twice
    as much as the others)."""
    from agents.judges.affect import AFFECT_DESIGNS, DEFAULT_AFFECT_DESIGN

    names = [DEFAULT_AFFECT_DESIGN, "emotion-words", "digits"]
    names += [j.name for j in JUDGES if j.name not in AFFECT_DESIGNS]
    known = {j.name for j in JUDGES}
    return [n for i, n in enumerate(names) if n in known and n not in names[:i]]


def register_judge(judge: NamedJudge) -> None:
    """Add (or replace, by name) a judge in :data:`JUDGES`."""
    for i, j in enumerate(JUDGES):
        if j.name == judge.name:
            JUDGES[i] = judge
            return
    JUDGES.append(judge)


# ---- data -----------------------------------------------------------------------------


@dataclass
class Item:
    """One surveyed dialogue, reduced to what the benchmark needs."""

    id: str
    turns: list[Turn]
    initial: int
    final: int | None


def _esconv_dir(data_dir: str | None) -> Path:
    if data_dir:
        return Path(data_dir)
    if os.environ.get("ESC_ENV_ESCONV_DIR"):
        return Path(os.environ["ESC_ENV_ESCONV_DIR"])
    return REPO.parent / "shared" / "data" / "esconv"


def _local_reader(path: Path) -> list[Item]:
    """A small reader of the HF-layout jsonl, used when ``esc_env.datasets`` is absent."""
    speakers = {"usr": "seeker", "seeker": "seeker", "sys": "supporter", "supporter": "supporter"}
    items = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            if not line.strip():
                continue
            rec = json.loads(line)
            seeker = (rec.get("survey_score") or {}).get("seeker") or {}
            ini, fin = _int_or_none(seeker.get("initial_emotion_intensity")), _int_or_none(seeker.get("final_emotion_intensity"))
            turns = [
                Turn(speakers[t["speaker"]], str(t.get("text", t.get("content", ""))), t.get("strategy") if speakers[t["speaker"]] == "supporter" else None)
                for t in rec.get("dialog", [])
                if t.get("speaker") in speakers
            ]
            if ini is not None:
                items.append(Item(f"esconv:{path.stem}/{i}", turns, ini, fin))
    return items


def _int_or_none(v) -> int | None:
    try:
        k = int(str(v).strip())
    except (TypeError, ValueError):
        return None
    return k if 1 <= k <= 5 else None


def load_items(split: str = "valid", data_dir: str | None = None) -> list[Item]:
    """Surveyed dialogues (those with an initial intensity) of an ESConv split."""
    folder = _esconv_dir(data_dir)
    try:
        from esc_env.datasets.esconv import load_esconv
    except ImportError:
        return _local_reader(folder / f"{split}.jsonl")
    records = load_esconv(split, data_dir=folder)
    return [Item(r.id, list(r.turns), r.initial_intensity, r.final_intensity) for r in records if r.initial_intensity is not None]


def first_prefix(turns: Sequence[Turn], k: int) -> list[Turn]:
    """The dialogue up to and including its ``k``-th seeker utterance."""
    seen = 0
    for i, t in enumerate(turns):
        if t.speaker == "seeker":
            seen += 1
            if seen == k:
                return list(turns[: i + 1])
    return list(turns)


# hand-written seeker messages (our own), for a quick sanity check of each judge
HAND_DISTRESSED = [
    "I can't do this anymore. Everything is falling apart and I feel completely hopeless.",
    "i've been crying all night. i lost my job and i have no idea how i'll pay rent",
    "My wife left me last week and I feel like my life is over.",
    "I'm so anxious I can't sleep or eat, it's unbearable",
    "nobody cares about me. i feel so alone and worthless",
    "I'm terrified I'm going to fail every exam and disappoint my parents.",
    "He cheated on me with my best friend and I can't stop shaking.",
    "I feel trapped. Every day is the same nightmare at work and I'm falling apart.",
    "honestly i don't see the point of anything anymore",
    "I'm furious and hurt, my family turned their backs on me when I needed them most.",
    "The panic attacks keep coming and I'm scared something is really wrong with me.",
    "I miss my mom so much since she died, it hurts every single day.",
]
HAND_RELIEVED = [
    "Thank you so much, I feel a lot better now.",
    "that really helps, i'm feeling calmer and more hopeful",
    "I think I can handle it now, thanks for listening. I'm okay.",
    "Yes, that's a good idea. I feel relieved.",
    "Thanks, have a great day! Bye.",
    "I'm going to call my sister tonight, I feel much lighter already.",
    "You're right, it's not the end of the world. I feel fine about it now.",
    "thanks a lot, talking about it made me feel so much better",
    "I feel more confident about the interview now. Thank you!",
    "That makes sense. I'm calm now and I have a plan.",
    "I'm actually happy with how things turned out, thanks for the chat.",
    "ok, i'll try that. i feel good about it",
]


def hand_auc(judge) -> float:
    """Share of (distressed, relieved) pairs of the hand-written messages that the judge
    orders correctly (ties count half); 1.0 is perfect, 0.5 is chance."""
    dialogues = [[Turn("supporter", "How are you feeling?"), Turn("seeker", t)] for t in HAND_DISTRESSED + HAND_RELIEVED]
    v = np.asarray(judge.judge(dialogues), dtype=np.float64)
    a, b = v[: len(HAND_DISTRESSED)], v[len(HAND_DISTRESSED) :]
    return float(np.mean((a[:, None] > b[None, :]) + 0.5 * (a[:, None] == b[None, :])))


# ---- metrics --------------------------------------------------------------------------


def _corr(x, y, kind: str) -> float:
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float((stats.spearmanr if kind == "spearman" else stats.pearsonr)(x, y)[0])


def metrics(items: Sequence[Item], first: np.ndarray, last: np.ndarray) -> dict[str, float]:
    """All validity numbers for one judge (see the module docstring)."""
    ini = np.array([it.initial for it in items], float)
    has_fin = np.array([it.final is not None for it in items])
    fin = np.array([it.final if it.final is not None else np.nan for it in items], float)
    fell = has_fin & (fin < ini)
    out = {
        "n": float(len(items)),
        "rho_first": _corr(first, ini, "spearman"),
        "r_first": _corr(first, ini, "pearson"),
        "mae_first": float(np.mean(np.abs(first - ini))),
        "rho_last": _corr(last[has_fin], fin[has_fin], "spearman"),
        "r_last": _corr(last[has_fin], fin[has_fin], "pearson"),
        "mae_last": float(np.mean(np.abs(last[has_fin] - fin[has_fin]))) if has_fin.any() else float("nan"),
        "dir_acc": float(np.mean(last[fell] < first[fell])) if fell.any() else float("nan"),
        "n_fell": float(fell.sum()),
        "rho_delta": _corr((last - first)[has_fin], (fin - ini)[has_fin], "spearman"),
        # both time points pooled (issue 8's target, >= 0.4): inflated by the opening / end gap
        "rho_pooled": _corr(np.concatenate([first, last[has_fin]]), np.concatenate([ini, fin[has_fin]]), "spearman"),
        "mean_first": float(np.mean(first)),
        "mean_last": float(np.mean(last)),
    }
    return out


# ---- running --------------------------------------------------------------------------


def _length_key(turns: Sequence[Turn], k: int) -> int:
    said = [t.text for t in turns if t.speaker == "seeker"][-k:]
    return sum(len(s) for s in said)


def run_judge(judge, dialogues: Sequence[Sequence[Turn]], batch_size: int, seeker_turns: int = 2) -> tuple[np.ndarray, float]:
    """Judge all dialogues in batches of ``batch_size`` (one call per batch); (values, seconds).

    Dialogues are grouped by the length of what the judge reads, so that a batch wastes
    little on padding; the values come back in the input order.
    """
    order = sorted(range(len(dialogues)), key=lambda i: _length_key(dialogues[i], seeker_turns))
    values = np.full(len(dialogues), np.nan)
    t0 = time.perf_counter()
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        v = np.asarray(judge.judge([dialogues[i] for i in idx]), dtype=np.float64)
        if v.shape != (len(idx),) or not np.all(np.isfinite(v)) or v.min() < 1 or v.max() > 5:
            raise AssertionError(f"{judge!r} returned invalid values {v}")
        values[idx] = v
    return values, time.perf_counter() - t0


def seeker_reply_seconds(backend, items: Sequence[Item], n: int) -> float:
    """Seconds per generated seeker reply (one batched ``SeekerAgent.reply`` of ``n`` dialogues)."""
    from agents.personas import Persona
    from agents.seeker import SeekerAgent

    items = list(items)[:n]
    if not items:
        return float("nan")
    personas, dialogues = [], []
    for it in items:
        personas.append(Persona(id=it.id, emotion_type="sadness", problem_type="a personal problem", situation="I am going through a hard time."))
        d = first_prefix(it.turns, 2)
        dialogues.append(d + [Turn("supporter", "I hear you. Can you tell me a bit more about it?")])
    agent = SeekerAgent(backend)
    t0 = time.perf_counter()
    agent.reply(personas, dialogues, seed=0)
    return (time.perf_counter() - t0) / len(items)


def main(argv: Sequence[str] | None = None, backend=None) -> dict:
    """Run the benchmark (``backend``: reuse an already built backend instead of ``--backend``)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=None, help="use only the first N surveyed dialogues")
    ap.add_argument("--designs", default=None, help="comma-separated judge names, or 'all' (default: digits, emotion-words, the default design, channel, and any added judge)")
    ap.add_argument("--backend", default="embedded", help="backend spec (default: embedded)")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--seeker-turns", type=int, default=2, help="seeker utterances the judge reads (first and last)")
    ap.add_argument("--batch-size", type=int, default=32, help="dialogues per judge call")
    ap.add_argument("--reply-batch", type=int, default=8, help="dialogues in the seeker-reply timing batch (0: skip)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a crowded machine)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from agents.backends import make_backend

    items = load_items(args.split, args.data_dir)
    items = [it for it in items if sum(t.speaker == "seeker" for t in it.turns) >= 2 * args.seeker_turns]
    if args.limit is not None:
        items = items[: args.limit]
    if not items:
        raise SystemExit("no surveyed dialogues found")
    known = {j.name: j for j in JUDGES}
    if not args.designs:
        wanted = default_selection()
    elif args.designs.strip().lower() == "all":
        wanted = list(known)
    else:
        wanted = [d.strip() for d in args.designs.split(",") if d.strip()]
    missing = [w for w in wanted if w not in known]
    if missing:
        raise SystemExit(f"unknown judge(s) {missing}; known: {sorted(known)}")
    judges = [known[w] for w in wanted]

    backend = backend if backend is not None else make_backend(args.backend)
    firsts = [first_prefix(it.turns, args.seeker_turns) for it in items]
    lasts = [it.turns for it in items]
    reply_s = seeker_reply_seconds(backend, items, args.reply_batch) if args.reply_batch > 0 else float("nan")

    results = {}
    for nj in judges:
        takes_turns = "last_seeker_turns" in inspect.signature(nj.build).parameters
        judge = nj.build(backend, last_seeker_turns=args.seeker_turns) if takes_turns else nj.build(backend)
        values, secs = run_judge(judge, firsts + lasts, args.batch_size, args.seeker_turns)
        m = metrics(items, values[: len(items)], values[len(items) :])
        m["hand_auc"] = hand_auc(judge)
        m["ms_per_item"] = 1000.0 * secs / (2 * len(items))
        m["x_reply"] = (secs / (2 * len(items))) / reply_s if reply_s == reply_s and reply_s > 0 else float("nan")
        results[nj.name] = m
        print(f"  {nj.name}: done in {secs:.1f}s", file=sys.stderr, flush=True)

    cols = ["hand_auc", "rho_pooled", "rho_first", "r_first", "mae_first", "rho_last", "r_last", "mae_last", "dir_acc", "rho_delta", "mean_first", "mean_last", "ms_per_item", "x_reply"]
    n_fell = int(next(iter(results.values()))["n_fell"])
    print(f"\nESConv {args.split}: {len(items)} surveyed dialogues ({n_fell} where intensity fell); backend {backend.name}; "
          f"judge reads {args.seeker_turns} seeker turns; seeker reply {1000 * reply_s:.0f} ms/reply")
    print(f"{'judge':20s} " + " ".join(f"{c:>10s}" for c in cols))
    for name, m in results.items():
        print(f"{name:20s} " + " ".join(f"{m[c]:10.3f}" for c in cols))
    if args.json:
        Path(args.json).write_text(json.dumps({"items": len(items), "reply_seconds": reply_s, "results": results}, indent=2))
    return results


if __name__ == "__main__":
    main()
