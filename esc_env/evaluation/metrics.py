"""Metric functions of the evaluation harness: plain functions of plain data.

Confidence intervals (all 95% by default).  These two functions are the project's
interval formulas: the harnesses (``esc-env evaluate``, ``policies.aflow.run_policy``, the
RLFF evaluation, ``examples/train_ppo_sb3.py``, ``benchmarks/reward_hacking.py`` and
``benchmarks/aflow_diagnostics.py``) call them, so one policy gets one interval whichever
harness ran it.

* **means** (return, intensity change, turns, rubric scores): Student's *t*-interval,
  ``mean +- t_{0.975, n-1} * s / sqrt(n)`` with the sample standard deviation ``s``
  (``ddof=1``); with one value the interval is ``(nan, nan)``.  The *t* quantile, not the
  normal 1.96, because evaluations here are small (10-100 episodes): at ``n = 10`` the
  quantile is 2.262, so ``1.96`` would give an interval 13% too narrow; for large ``n``
  the two agree (2.009 at ``n = 50``, 1.984 at ``n = 100``).
* **rates** (success rate, give-up rate): the Wilson score interval, which stays inside
  [0, 1] and is sensible at 0% and 100% where the normal approximation collapses to a point.

*AT* (average turns) follows PPDPP (Deng et al., 2023): the mean number of supporter turns
per episode, where an episode that did not end in success counts as ``max_turns``.

Distinct-n (Li et al., 2016) is the number of distinct n-grams divided by the number of
n-grams over all texts (lower-cased, split on white space).  Macro-F1 is the unweighted
mean of the per-class F1 scores over the classes given (by default every class that
occurs in the references or the predictions); a class with no true and no predicted
instance is skipped, one with a zero denominator scores 0.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Hashable, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "Interval",
    "mean_ci",
    "proportion_ci",
    "average_turns",
    "accuracy",
    "macro_f1",
    "distinct_n",
    "strategy_distribution",
    "strategy_transitions",
    "success_rate_by_turn",
    "strategy_usage_by_turn",
    "intensity_by_turn",
    "summarize_episodes",
]


@dataclass(frozen=True)
class Interval:
    """A point estimate with the bounds of its confidence interval and the sample size."""

    value: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict:
        return asdict(self)

    def format(self, digits: int = 3, percent: bool = False) -> str:
        """``"0.500 [0.300, 0.700]"`` (or ``"50.0% [30.0, 70.0]"``)."""
        if percent:
            f = lambda x: "nan" if not math.isfinite(x) else f"{100 * x:.1f}"  # noqa: E731
            return f"{f(self.value)}% [{f(self.low)}, {f(self.high)}]"
        f = lambda x: "nan" if not math.isfinite(x) else f"{x:+.{digits}f}"  # noqa: E731
        return f"{f(self.value)} [{f(self.low)}, {f(self.high)}]"


def _t_quantile(confidence: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.5 + confidence / 2.0, dof))


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> Interval:
    """Mean and Student's t confidence interval of ``values``.

    Raises:
        ValueError: ``values`` is empty or ``confidence`` is not in (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    x = np.asarray(list(values), dtype=np.float64)
    if x.size == 0:
        raise ValueError("mean_ci needs at least one value")
    m = float(x.mean())
    if x.size < 2:
        return Interval(m, float("nan"), float("nan"), 1)
    half = _t_quantile(confidence, x.size - 1) * float(x.std(ddof=1)) / math.sqrt(x.size)
    return Interval(m, m - half, m + half, int(x.size))


def proportion_ci(successes: Iterable[bool], confidence: float = 0.95) -> Interval:
    """Rate of true values and its Wilson score interval.

    Raises:
        ValueError: no values, or ``confidence`` not in (0, 1).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    x = [bool(v) for v in successes]
    n = len(x)
    if n == 0:
        raise ValueError("proportion_ci needs at least one value")
    from scipy import stats

    z = float(stats.norm.ppf(0.5 + confidence / 2.0))
    p = sum(x) / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), n)


def average_turns(lengths: Sequence[int], successes: Sequence[bool], max_turns: int) -> np.ndarray:
    """Per-episode turns for PPDPP's AT: the episode's length if it succeeded, else ``max_turns``.

    Take the mean (or :func:`mean_ci`) of the result for AT.

    Raises:
        ValueError: the sequences differ in length, or a length exceeds ``max_turns``.
    """
    if len(lengths) != len(successes):
        raise ValueError(f"got {len(lengths)} lengths and {len(successes)} success flags")
    out = []
    for n, s in zip(lengths, successes):
        if n > max_turns:
            raise ValueError(f"an episode of {n} turns is longer than max_turns={max_turns}")
        out.append(int(n) if s else int(max_turns))
    return np.asarray(out, dtype=np.float64)


def accuracy(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    """Fraction of positions where ``y_pred`` equals ``y_true``."""
    if len(y_true) != len(y_pred):
        raise ValueError(f"got {len(y_true)} labels and {len(y_pred)} predictions")
    if not y_true:
        raise ValueError("accuracy needs at least one label")
    return sum(a == b for a, b in zip(y_true, y_pred)) / len(y_true)


def macro_f1(y_true: Sequence[Hashable], y_pred: Sequence[Hashable], labels: Sequence[Hashable] | None = None) -> float:
    """Unweighted mean of per-class F1 scores.

    For each class ``c``: ``tp`` = predicted ``c`` and true ``c``; ``fp`` = predicted ``c``,
    true other; ``fn`` = true ``c``, predicted other; ``F1 = 2tp / (2tp + fp + fn)``
    (0 when the denominator is 0).  ``labels`` fixes the classes averaged over; by default
    every class seen in ``y_true`` or ``y_pred``.
    """
    if len(y_true) != len(y_pred):
        raise ValueError(f"got {len(y_true)} labels and {len(y_pred)} predictions")
    if not y_true:
        raise ValueError("macro_f1 needs at least one label")
    classes = list(labels) if labels is not None else sorted(set(y_true) | set(y_pred), key=str)
    scores = []
    for c in classes:
        tp = sum(1 for a, b in zip(y_true, y_pred) if a == c and b == c)
        fp = sum(1 for a, b in zip(y_true, y_pred) if a != c and b == c)
        fn = sum(1 for a, b in zip(y_true, y_pred) if a == c and b != c)
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores)) if scores else 0.0


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct-n: distinct n-grams / all n-grams over ``texts`` (0.0 when there are none)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams: list[tuple[str, ...]] = []
    for t in texts:
        toks = t.lower().split()
        grams.extend(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


# ----------------------------------------------------------------------------- episodes
def strategy_distribution(episodes: Sequence[Mapping[str, Any]], names: Sequence[str] = ()) -> dict[str, dict]:
    """Counts and fractions of the strategies used over all turns of ``episodes``.

    Each episode is a record with a ``"strategies"`` list of names; ``names`` orders the
    output (strategies never used still appear with 0).
    """
    counts = Counter(s for ep in episodes for s in ep["strategies"] if s is not None)
    total = sum(counts.values())
    order = list(names) + sorted(set(counts) - set(names))
    return {s: {"count": int(counts.get(s, 0)), "fraction": counts.get(s, 0) / total if total else 0.0} for s in order}


def strategy_transitions(episodes: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """``out[a][b]``: how often strategy ``b`` directly followed ``a`` within an episode."""
    out: dict[str, dict[str, int]] = {}
    for ep in episodes:
        seq = [s for s in ep["strategies"] if s is not None]
        for a, b in zip(seq, seq[1:]):
            row = out.setdefault(a, {})
            row[b] = row.get(b, 0) + 1
    return out


def success_rate_by_turn(episodes: Sequence[Mapping[str, Any]], max_turns: int) -> list[float]:
    """SR@t for t = 1..max_turns: the fraction of episodes that succeeded within t turns."""
    if not episodes:
        return [0.0] * max_turns
    n = len(episodes)
    return [sum(1 for ep in episodes if ep["success"] and ep["length"] <= t) / n for t in range(1, max_turns + 1)]


def strategy_usage_by_turn(episodes: Sequence[Mapping[str, Any]], max_turns: int, names: Sequence[str] = ()) -> dict[str, list[int]]:
    """``out[name][t - 1]``: how many episodes used strategy ``name`` at turn ``t`` (1..max_turns)."""
    seen = {s for ep in episodes for s in ep["strategies"] if s is not None}
    order = list(names) + sorted(seen - set(names))
    out = {s: [0] * max_turns for s in order}
    for ep in episodes:
        for t, s in enumerate(ep["strategies"][:max_turns]):
            if s is not None:
                out[s][t] += 1
    return out


def intensity_by_turn(episodes: Sequence[Mapping[str, Any]], max_turns: int) -> np.ndarray:
    """Intensity traces as an array ``(n_episodes, max_turns + 1)``; column 0 is the start.

    An episode that ended before ``max_turns`` keeps its last intensity (carried forward),
    so every column averages over all episodes.
    """
    out = np.zeros((len(episodes), max_turns + 1), dtype=np.float64)
    for i, ep in enumerate(episodes):
        trace = [float(x) for x in ep["intensities"]][: max_turns + 1]
        out[i, : len(trace)] = trace
        out[i, len(trace) :] = trace[-1]
    return out


def summarize_episodes(episodes: Sequence[Mapping[str, Any]], max_turns: int, strategy_names: Sequence[str] = (),
                       confidence: float = 0.95) -> dict:
    """All interactive metrics of a run, as plain JSON data.

    Each episode record needs ``return``, ``length``, ``success``, ``gave_up``,
    ``intensities`` (start, then after every turn) and ``strategies`` (names); an optional
    ``rubric`` list (one ``{criterion: score}`` dict per turn) adds rubric means.

    Returns:
        ``{"n_episodes", "max_turns", "confidence", "ci_method", "success_rate",
        "avg_turns", "intensity_change", "return", "give_up_rate", "mean_length",
        "rubric", "strategy_distribution", "strategy_transitions", "success_rate_by_turn",
        "strategy_by_turn", "intensity_by_turn"}``; each scalar metric is an :class:`Interval` as a dict.
    """
    if not episodes:
        raise ValueError("no episodes to summarize")
    lengths = [int(ep["length"]) for ep in episodes]
    succ = [bool(ep["success"]) for ep in episodes]
    deltas = [float(ep["intensities"][-1]) - float(ep["intensities"][0]) for ep in episodes]
    rubric: dict[str, list[float]] = {}
    for ep in episodes:
        for turn_scores in ep.get("rubric") or []:
            for k, v in (turn_scores or {}).items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    rubric.setdefault(k, []).append(float(v))
    trace = intensity_by_turn(episodes, max_turns)
    return {
        "n_episodes": len(episodes),
        "max_turns": int(max_turns),
        "confidence": confidence,
        "ci_method": "t-interval for means, Wilson score interval for rates",
        "success_rate": proportion_ci(succ, confidence).as_dict(),
        "avg_turns": mean_ci(average_turns(lengths, succ, max_turns), confidence).as_dict(),
        "intensity_change": mean_ci(deltas, confidence).as_dict(),
        "return": mean_ci([float(ep["return"]) for ep in episodes], confidence).as_dict(),
        "give_up_rate": proportion_ci([bool(ep["gave_up"]) for ep in episodes], confidence).as_dict(),
        "mean_length": mean_ci(lengths, confidence).as_dict(),
        "rubric": {k: mean_ci(v, confidence).as_dict() for k, v in sorted(rubric.items())},
        "strategy_distribution": strategy_distribution(episodes, strategy_names),
        "strategy_transitions": strategy_transitions(episodes),
        "success_rate_by_turn": success_rate_by_turn(episodes, max_turns),
        "strategy_by_turn": strategy_usage_by_turn(episodes, max_turns, strategy_names),
        "intensity_by_turn": {"mean": trace.mean(axis=0).tolist(), "std": trace.std(axis=0).tolist()},
    }
