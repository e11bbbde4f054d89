"""Evaluation of RLFF policies on held-out prefixes and in env episodes.

The headline evaluation is :func:`heldout_judge_comparison`: held-out prefixes (never
trained on), graded by judges the policy was never trained against -- the env's affect
judge (the seeker's judged intensity after reading the answer) and the rubric judge (quality
of the answer).  :func:`env_comparison` adds env episodes.  :func:`rm_score_comparison` is a
*diagnostic* only: it grades the policy with the reward model GRPO optimised.

All compare policies on the *same* inputs (prefixes, seeds), so differences are read
pairwise.  Intervals are 95% Student-t intervals (means) and Wilson intervals (rates), from
:mod:`esc_env.evaluation.metrics`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from agents.dialogue import Turn


def heldout_judge_comparison(policies: Mapping[str, Any], prefixes: Sequence[Any], env: Any, *,
                             rubric_judge: Any = None, rollouts: int = 2, seed: int = 0) -> dict:
    """Grade each policy's answers on held-out prefixes with judges it never trained against.

    For every prefix (a :class:`~policies.rlff.simulator.Prefix`) each policy answers once;
    then (a) the env's seeker reads the answer ``rollouts`` times (one simulated turn, the same
    seeds for every policy: :class:`~policies.rlff.simulator.FutureSimulator` with
    ``horizon=0``) and the env's affect judge scores the seeker; (b) the rubric judge rates
    the answer (deterministic: expected digit under the judge LM).

    Args:
        policies: ``{name: RLFFPolicy}``; the first is the baseline of the paired differences.
        prefixes: held-out prefixes (ending with a seeker turn).
        env: a ``"text"`` mode esc-env env (its affect judge and seeker are used).
        rubric_judge: a :class:`agents.judges.rubric.RubricJudge` (``None``: skipped).
        rollouts: seeker reactions per answer.
        seed: seeds the policies' sampling and the seeker.

    Returns:
        ``{name: {"affect_reward", "intensity_change", "rubric", "rubric_<dimension>"...,
        "diff_vs_<first>_affect_reward", "diff_vs_<first>_rubric": Interval dicts, "answers": [...]}}``
        where ``affect_reward`` is the simulator's one-turn future reward
        ``(I_0 - I_1) / 4 + bonus - penalty`` averaged over rollouts, and ``intensity_change``
        is ``I_1 - I_0`` (negative is better).
    """
    from esc_env.evaluation.metrics import mean_ci

    from .simulator import FutureSimulator

    if not prefixes:
        raise ValueError("heldout_judge_comparison needs at least one prefix")
    sim = FutureSimulator(env, horizon=0, rollouts=rollouts, seed=seed)
    states = sim.make_states(prefixes)
    ids = [p.id for p in prefixes]
    out: dict[str, dict] = {}
    base: dict[str, np.ndarray] = {}
    base_name = None
    for name, pol in policies.items():
        replies = pol.reply_batch([p.turns for p in prefixes], seed=seed)
        answers = [r.answer for r in replies]
        res = sim.simulate(states, [[a] for a in answers], ids)
        affect = np.array([np.mean([r.reward for r in rows[0]]) for rows in res])
        change = np.array([np.mean([r.intensity_after - r.intensity_before for r in rows[0]]) for rows in res])
        row = {"affect_reward": mean_ci(affect).as_dict(), "intensity_change": mean_ci(change).as_dict(),
               "answers": answers}
        values = {"affect_reward": affect}
        if rubric_judge is not None:
            scores = rubric_judge.judge([list(p.turns) + [Turn("supporter", a)] for p, a in zip(prefixes, answers)])
            dims = list(scores[0]) if scores else []
            rubric = np.array([np.mean([s[d] for d in dims]) for s in scores])
            row["rubric"] = mean_ci(rubric).as_dict()
            for d in dims:
                row[f"rubric_{d}"] = mean_ci([s[d] for s in scores]).as_dict()
            values["rubric"] = rubric
        if base_name is None:
            base, base_name = values, name
        else:
            for k, v in values.items():
                row[f"diff_vs_{base_name}_{k}"] = mean_ci(v - base[k]).as_dict()
        out[name] = row
    return out


def rm_score_comparison(policies: Mapping[str, Any], reward_model: Any, prefixes: Sequence[Sequence[Turn]],
                        seed: int = 0) -> dict:
    """Mean reward-model score of each policy's answers on ``prefixes`` -- a DIAGNOSTIC only:
    the reward model is what GRPO optimised, so a higher score shows the optimisation worked,
    not that the replies are better (use :func:`heldout_judge_comparison` for that).

    Args:
        policies: ``{name: RLFFPolicy}``; the first is the baseline of the paired differences.
        reward_model: a trained :class:`~policies.rlff.reward_model.FutureRewardModel`.
        prefixes: held-out dialogue prefixes (each ends with a seeker turn).
        seed: sampling seed (policies acting greedily ignore it).

    Returns:
        ``{name: {"rm_score": Interval dict, "format_rate": Interval dict, "diff_vs_<first>": Interval dict,
        "answers": [...]}}``
    """
    from esc_env.evaluation.metrics import mean_ci, proportion_ci

    out: dict[str, dict] = {}
    base_scores = None
    base_name = None
    for name, pol in policies.items():
        replies = pol.reply_batch(list(prefixes), seed=seed)
        scores = np.asarray(reward_model.score(list(prefixes), [r.answer for r in replies]), dtype=np.float64)
        res = {"rm_score": mean_ci(scores).as_dict(), "format_rate": proportion_ci([r.well_formed for r in replies]).as_dict(),
               "closed_rate": proportion_ci([r.closed for r in replies]).as_dict(),
               "answers": [r.answer for r in replies], "reasoning": [r.reasoning for r in replies]}
        if base_scores is None:
            base_scores, base_name = scores, name
        else:
            res[f"diff_vs_{base_name}"] = mean_ci(scores - base_scores).as_dict()
        out[name] = res
    return out


def env_comparison(policies: Mapping[str, Any], n_episodes: int, *, max_turns: int = 3, num_envs: int = 4,
                   personas: Any = "esconv:valid", backend: Any = "embedded", seed: int = 1000,
                   progress: bool = True, **env_kwargs: Any) -> dict:
    """Run every policy for the same ``n_episodes`` seeded episodes of ``esc_env/ESCText-v0``.

    Returns:
        ``{name: metrics}`` with :func:`esc_env.evaluation.metrics.summarize_episodes`'s keys
        (``success_rate``, ``avg_turns``, ``intensity_change``, ``return`` ... each with its CI).
    """
    from esc_env.evaluation.interactive import evaluate_policy, make_eval_envs

    envs = make_eval_envs("esc_env/ESCText-v0", num_envs=min(num_envs, n_episodes), max_turns=max_turns,
                          personas=personas, backend=backend, **env_kwargs)
    try:
        return {name: evaluate_policy(pol, envs, n_episodes, seed, progress=progress).metrics
                for name, pol in policies.items()}
    finally:
        envs.close()


def fmt_interval(d: Mapping[str, float], digits: int = 3, percent: bool = False) -> str:
    """``"0.123 [0.050, 0.200] (n=8)"`` from an Interval dict."""
    k = 100.0 if percent else 1.0
    unit = "%" if percent else ""
    v, lo, hi = (d.get(x, float("nan")) for x in ("value", "low", "high"))
    return f"{k * v:.{digits}f}{unit} [{k * lo:.{digits}f}, {k * hi:.{digits}f}] (n={d.get('n', '?')})"
