"""Train the calibrated affect judge on ESConv's train split and write its weights
(``esc-env train calibrated-judge --config FILE.yaml``, ``examples/train_calibrated_judge.py``).

The judge maps the seeker's last K turns to the seeker's self-rated emotional intensity
(1-5): openings are labelled with the survey's initial intensity, whole dialogues with the
final one.  Model selection (features, head, regularisation, pairwise term) is a grouped
k-fold cross-validation ON THE TRAIN SPLIT ONLY; the valid split is only read, after the
choice, when ``--eval-valid`` is given.

    python examples/train_calibrated_judge.py                      # search, train, write shipped weights
    python examples/train_calibrated_judge.py --no-search --head ridge --k 2 --alpha 100
    python examples/train_calibrated_judge.py --out /tmp/my-judge --eval-valid
    # the politeness-free default judge (esconv-minilm-nopolite): the shipped configuration, trained
    # on seeker turns with thanks, greetings and goodbyes removed
    python examples/train_calibrated_judge.py --no-search --k 4 --mode concat --head ridge --alpha 3000 \
        --phase-alpha 10000 --opening-views 2 --strip-politeness --out agents/judges/weights/esconv-minilm-nopolite --eval-valid

ESConv (CC BY-NC 4.0) is read from ``--data-dir`` (default: ``$ESC_ENV_ESCONV_DIR`` or
``../shared/data/esconv``); only learned weights are written.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np

from agents.judges.calibrated import (
    WEIGHTS_DIR,
    CalibratedAffectJudge,
    FeatureConfig,
    HeadParams,
    TrainConfig,
    cross_validate,
    eval_views,
    evaluate_judge,
    featurize,
    fit_head,
    training_views,
)
from agents.judges.encoders import make_encoder
from agents.datasets.esconv import load_esconv

SHOWN = ("spearman_initial", "spearman_final", "spearman_pooled", "mae", "constant_mae", "direction_accuracy", "spearman_change")


def selection_score(m: dict) -> float:
    """What the search maximises: mean of the two per-time-point Spearman correlations.

    Pooled Spearman is not used: it mostly rewards telling openings from ends apart.
    """
    return 0.5 * (m["spearman_initial"] + m["spearman_final"])


RIDGE_ALPHAS = (1000.0, 3000.0, 10000.0)


def stage1(args) -> list[TrainConfig]:
    """Ridge heads over what the judge reads (K, mode), the opening views, regularisation and
    the pairwise change term."""
    out = []
    for k, mode, ov in itertools.product((2, 3, 4, 6), ("concat", "turns"), (1, 2, 3)):
        for alpha, pw in itertools.product(RIDGE_ALPHAS, (0.0, 1.0)):
            p = HeadParams(alpha=alpha, pair_weight=pw, seed=args.seed)
            out.append(TrainConfig(FeatureConfig(k, mode, strip_politeness=args.strip_politeness), "ridge", p, ov, args.end_views, args.opening_seeker_turns, args.folds, args.seed))
    return out


def _like(b: TrainConfig, head: str, p: HeadParams) -> TrainConfig:
    return TrainConfig(b.features, head, p, b.opening_views, b.end_views, b.opening_seeker_turns, b.n_folds, b.seed)


def stage2(args, best: list[TrainConfig]) -> list[TrainConfig]:
    """On the best feature settings of stage 1: two-stage (within-time-point) ridge heads;
    on the best one also ordinal and MLP heads."""
    out = []
    for b in best:
        for alpha, pa in itertools.product(RIDGE_ALPHAS, (1000.0, 10000.0)):
            out.append(_like(b, "ridge", HeadParams(alpha=alpha, phase_alpha=pa, seed=args.seed)))
    for alpha in (300.0, 1000.0, 3000.0):
        out.append(_like(best[0], "ordinal", HeadParams(alpha=alpha, epochs=100, seed=args.seed)))
    for alpha in (100.0, 1000.0):
        out.append(_like(best[0], "mlp", HeadParams(alpha=alpha, hidden=32, epochs=200, seed=args.seed)))
    return out


def describe(c: TrainConfig) -> str:
    p = c.params
    strip = " strip_politeness" if c.features.strip_politeness else ""
    return (f"K={c.features.last_seeker_turns} {c.features.mode:6s}{strip} open_views={c.opening_views} "
            f"{c.head:7s} alpha={p.alpha:<6g} pair={p.pair_weight:g} phase_alpha={p.phase_alpha:g}")


def warm_cache(encoder, dialogues, features: FeatureConfig, batch: int = 64) -> None:
    """Encode the texts of ``dialogues`` in batches of ``batch`` (into the encoder's cache), so that
    ``featurize``'s one big call finds them cached: one padded batch of thousands of 256-token
    texts would need several GB of activations."""
    from tqdm import tqdm

    texts = list(dict.fromkeys(t for d in dialogues for t in features.texts(d)))
    for s in tqdm(range(0, len(texts), batch), desc="encoding", unit="batch", mininterval=10):
        encoder.encode(texts[s : s + batch])


class Searcher:
    """Cross-validates configurations, computing each feature set once."""

    def __init__(self, train, encoder) -> None:
        self.train, self.encoder = train, encoder
        self._views: dict = {}
        self._eval: dict = {}
        self.results: list[tuple[float, TrainConfig, dict]] = []

    def data(self, c: TrainConfig):
        vkey = (c.features, c.opening_views, c.end_views)
        if vkey not in self._views:
            views = training_views(self.train, c.opening_views, c.end_views)
            warm_cache(self.encoder, views.dialogues, c.features)
            self._views[vkey] = (views, featurize(views.dialogues, self.encoder, c.features))
        ekey = (c.features, c.opening_seeker_turns)
        if ekey not in self._eval:
            ev = eval_views(self.train, c.opening_seeker_turns)
            warm_cache(self.encoder, ev.opens + ev.ends, c.features)
            xe = featurize(ev.opens + ev.ends, self.encoder, c.features)
            self._eval[ekey] = (ev, xe[: len(ev.opens)], xe[len(ev.opens):])
        return self._views[vkey] + self._eval[ekey]

    def run(self, configs: list[TrainConfig]) -> None:
        for c in configs:
            views, x, ev, xo, xe = self.data(c)
            t0 = time.perf_counter()
            m = cross_validate(x, views, xo, xe, ev, c)
            self.results.append((selection_score(m), c, m))
            print(f"  {describe(c)}  score={selection_score(m):.3f}  " + " ".join(f"{k}={m[k]:.3f}" for k in SHOWN)
                  + f"  ({time.perf_counter() - t0:.1f}s)", flush=True)

    def ranked(self) -> list[tuple[float, TrainConfig, dict]]:
        return sorted(self.results, key=lambda r: -r[0])


def build_parser() -> argparse.ArgumentParser:
    """The command line (every long option is also a key of an ``esc-env train`` config file)."""
    ap = argparse.ArgumentParser(prog="train_calibrated_judge", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=None, help="folder with ESConv train.jsonl/valid.jsonl (default: $ESC_ENV_ESCONV_DIR or ../shared/data/esconv)")
    ap.add_argument("--out", default=str(WEIGHTS_DIR / "esconv-minilm"), help="weights folder to write (default: the shipped esconv-minilm weights; the default judge's are esconv-minilm-nopolite, see above)")
    ap.add_argument("--encoder", choices=("minilm", "backend"), default="minilm", help="frozen text encoder: packaged all-MiniLM-L6-v2, or an LLM backend's mean-pooled hidden states")
    ap.add_argument("--backend", default="embedded", help="backend spec for --encoder backend (e.g. embedded, hf:/path)")
    ap.add_argument("--search", action=argparse.BooleanOptionalAction, default=True, help="cross-validate a grid of features x heads on train and keep the best (default); --no-search trains the one configuration below")
    ap.add_argument("--k", type=int, default=4, help="last K seeker turns read (--no-search)")
    ap.add_argument("--mode", choices=("concat", "turns"), default="concat", help="one embedding of the joined turns, or per-turn embeddings [mean, last] (--no-search)")
    ap.add_argument("--head", choices=("ridge", "ordinal", "mlp"), default="ridge", help="head kind (--no-search)")
    ap.add_argument("--alpha", type=float, default=3000.0, help="L2 penalty (--no-search)")
    ap.add_argument("--pair-weight", type=float, default=0.0, help="weight of the pairwise change term (--no-search)")
    ap.add_argument("--phase-alpha", type=float, default=0.0, help="ridge: > 0 fits within-time-point structure first, then the rest with this penalty (--no-search)")
    ap.add_argument("--hidden", type=int, default=32, help="MLP hidden width (--no-search)")
    ap.add_argument("--epochs", type=int, default=300, help="optimiser steps of the ordinal/MLP heads (--no-search)")
    ap.add_argument("--opening-views", type=int, default=2, help="openings per dialogue: cut after seeker turn 1..N, labelled with the initial rating (--no-search)")
    ap.add_argument("--end-views", type=int, default=1, help="end views per dialogue labelled with the final rating (1: the whole dialogue)")
    ap.add_argument("--strip-politeness", action="store_true", help="the judge reads seeker turns without thanks, greetings and goodbyes (agents/judges/politeness.py), in training and in use")
    ap.add_argument("--folds", type=int, default=5, help="grouped cross-validation folds on train")
    ap.add_argument("--seed", type=int, default=0, help="seed of the folds and of head initialisation")
    ap.add_argument("--limit", type=int, default=None, help="use only the first N train dialogues (quick runs)")
    ap.add_argument("--eval-valid", action="store_true", help="after choosing and training, report the yardstick metrics on the valid split (never used for the choice)")
    ap.add_argument("--opening-seeker-turns", type=int, default=2, help="yardstick (CV and valid): the opening is the dialogue cut after this many seeker turns")
    return ap


def parse_args(argv=None) -> argparse.Namespace:
    """Parse ``argv``."""
    return build_parser().parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    train = load_esconv("train", args.data_dir)
    if args.limit:
        train = train[: args.limit]
    backend = None
    if args.encoder == "backend":
        from agents.backends import make_backend

        backend = make_backend(args.backend)
    encoder = make_encoder(args.encoder, backend=backend, cache_size=1_000_000)
    print(f"train dialogues: {len(train)}; encoder: {encoder.name}", flush=True)
    search = Searcher(train, encoder)
    if args.search:
        print("stage 1: ridge heads over features, opening views, regularisation", flush=True)
        search.run(stage1(args))
        feats, best_feats = set(), []
        for _, c, _ in search.ranked():
            key = (c.features, c.opening_views)
            if key not in feats:
                feats.add(key)
                best_feats.append(c)
            if len(best_feats) == 2:
                break
        print("stage 2: two-stage ridge, ordinal and MLP heads on the best feature settings", flush=True)
        search.run(stage2(args, best_feats))
    else:
        p = HeadParams(alpha=args.alpha, pair_weight=args.pair_weight, phase_alpha=args.phase_alpha, hidden=args.hidden,
                       epochs=args.epochs, seed=args.seed)
        search.run([TrainConfig(FeatureConfig(args.k, args.mode, strip_politeness=args.strip_politeness), args.head, p, args.opening_views, args.end_views,
                                args.opening_seeker_turns, args.folds, args.seed)])

    ranked = search.ranked()
    best_score, best, best_m = ranked[0]
    print(f"\nbest by {args.folds}-fold grouped CV on train: {describe(best)}  score={best_score:.3f}")
    for k in SHOWN + ("pearson_initial", "pearson_final", "mae_initial", "mae_final"):
        print(f"  cv {k:20s} {best_m[k]:.3f}")

    views, x, *_ = search.data(best)
    head, mean, scale = fit_head(x, views, best.head, best.params)
    info = {
        "train": best.as_dict(),
        "data": "ESConv train split (Liu et al., 2021); labels: survey initial/final emotion intensity",
        "n_dialogues": int(len(np.unique(views.groups))),
        "n_views": int(len(views.labels)),
        "n_pairs": int(len(views.pairs)),
        "selection": "max mean(spearman_initial, spearman_final) over grouped CV folds on train",
        "cv": best_m,
        "search_top": [{"config": describe(c), "score": s} for s, c, _ in ranked[:10]],
    }
    judge = CalibratedAffectJudge(encoder, best.features, head, mean, scale, info=info, encoder_kind=args.encoder)
    if args.eval_valid:
        valid = load_esconv("valid", args.data_dir)
        ev = eval_views(valid, args.opening_seeker_turns)
        warm_cache(encoder, ev.opens + ev.ends, best.features)
        vm = evaluate_judge(judge, valid, args.opening_seeker_turns)
        judge.info["valid"] = {"opening_seeker_turns": args.opening_seeker_turns, **vm, "note": "measured after selection; not used for it"}
        print("\nvalid split (not used for selection):")
        for k, v in vm.items():
            print(f"  valid {k:20s} {v:.3f}" if isinstance(v, float) else f"  valid {k:20s} {v}")
    out = judge.save(Path(args.out))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
