"""The reward of one supporter turn.

Default formula (every term is reported in ``info["reward_terms"]``)::

    r_t = w_improve * (I_{t-1} - I_t) / 4          # judged intensity fell: positive
        + success_bonus   * [seeker relieved]
        - give_up_penalty * [seeker gave up]
        - turn_cost
        + sum_j w_j * value_j                       # one term per judge j of the env

``I`` is the affective state (the affect judge's intensity, or the seeker's own emotion level)
on the 1-5 scale, so the improvement term lies in [-1, 1].  ``value_j = judge.reward(result)``
is the number judge ``j``'s result is worth (see :mod:`agents.judges.base`) and ``w_j`` its
weight in :attr:`RewardConfig.judge_weights` (0 when not named: the judge's result is still in
``info["judges"]`` and its term, 0, in ``info["reward_terms"]``).  The built-in judges' values:

* ``"rubric"``: ``sum_d v_d * (R_d - 3) / 2`` over rubric scores ``R_d`` in 1..5 with the
  dimension weights ``v_d`` (AFlow's by default; :attr:`RewardConfig.rubric_weights` overrides);
* ``"outcome"``: PPDPP's expected outcome ``O`` in [-1, 1].

A user may pass any callable ``reward(info) -> float`` instead; it receives the step's ``info``
(with the default ``reward_terms`` already filled in).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Mapping, Union

from agents.judges.base import judge_reward
from agents.judges.rubric import AFLOW_RUBRIC_WEIGHTS, check_rubric_weights, rubric_value

#: term names of the formula itself, and the affective state's entries of ``info["judges"]``:
#: no judge may be named so
RESERVED_JUDGE_NAMES = ("affect", "emotion", "improvement", "success", "give_up", "turn_cost")

#: the judges whose weights have a field of their own (``rubric_weight``, ``outcome_weight``)
_ALIASES = {"rubric": "rubric_weight", "outcome": "outcome_weight"}


@dataclass(frozen=True)
class RewardConfig:
    """Weights of the default reward.  See the module docstring for the formula.

    Attributes:
        improvement_weight: ``w_improve``, weight of the fall of the affective state.
        success_bonus: added when the seeker is relieved.
        give_up_penalty: subtracted when the seeker gives up.
        turn_cost: subtracted every step.
        judge_weights: judge name -> weight ``w_j`` of its value (judges not named: 0, reported
            only).  A name must be a judge of the env.
        rubric_weight: the same as ``judge_weights["rubric"]`` (kept as its own field).
        outcome_weight: the same as ``judge_weights["outcome"]`` (kept as its own field).
        rubric_weights: dimension -> weight of the ``"rubric"`` judge's value; ``None``
            (default): the judge's own (:data:`agents.judges.rubric.AFLOW_RUBRIC_WEIGHTS` for
            the built-in one).

    Every number must be finite; a ``ValueError`` names the field that is not.  The alias
    fields and ``judge_weights`` are kept in agreement: ``RewardConfig(rubric_weight=1.0)``
    has ``judge_weights == {"rubric": 1.0}`` and ``RewardConfig(judge_weights={"rubric": 1.0})``
    has ``rubric_weight == 1.0``; giving both with different non-zero values is an error.
    """

    improvement_weight: float = 1.0
    success_bonus: float = 1.0
    give_up_penalty: float = 1.0
    turn_cost: float = 0.0
    rubric_weight: float = 0.0
    rubric_weights: Mapping[str, float] | None = None
    outcome_weight: float = 0.0
    judge_weights: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("improvement_weight", "success_bonus", "give_up_penalty", "turn_cost", "rubric_weight", "outcome_weight"):
            _check_finite(f"RewardConfig.{name}", getattr(self, name))
        if not isinstance(self.judge_weights, Mapping):
            raise ValueError(f"RewardConfig.judge_weights must be a mapping judge name -> weight, got {self.judge_weights!r}")
        weights: dict[str, float] = {}
        for name, w in self.judge_weights.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"RewardConfig.judge_weights keys must be judge names (non-empty str), got {name!r}")
            if name in RESERVED_JUDGE_NAMES:
                raise ValueError(f"RewardConfig.judge_weights[{name!r}]: {name!r} is not a judge's name "
                                 f"(reserved: {list(RESERVED_JUDGE_NAMES)}; the affective state's weight is improvement_weight)")
            weights[name] = _check_finite(f"RewardConfig.judge_weights[{name!r}]", w)
        for judge, alias in _ALIASES.items():
            a = float(getattr(self, alias))
            if judge not in weights:
                if a != 0.0:
                    weights[judge] = a
            elif a != 0.0 and a != weights[judge]:
                raise ValueError(f"RewardConfig.{alias}={a!r} and judge_weights[{judge!r}]={weights[judge]!r} disagree: "
                                 f"{alias} is another name for judge_weights[{judge!r}]; give one of them")
            object.__setattr__(self, alias, weights.get(judge, 0.0))
        object.__setattr__(self, "judge_weights", weights)
        if self.rubric_weights is not None:
            object.__setattr__(self, "rubric_weights", check_rubric_weights(self.rubric_weights, "RewardConfig.rubric_weights"))

    def weight(self, judge: str) -> float:
        """The weight of judge ``judge``'s value (0 when it has none)."""
        return float(self.judge_weights.get(judge, 0.0))

    def check_judges(self, names: Iterable[str]) -> None:
        """Check an env's judge names against this config.

        Raises:
            ValueError: a name in :data:`RESERVED_JUDGE_NAMES`, or a non-zero weight of a judge
                that is not in ``names`` (naming it).
        """
        names = list(names)
        for name in names:
            if name in RESERVED_JUDGE_NAMES:
                raise ValueError(f"a judge may not be named {name!r} (reserved: {list(RESERVED_JUDGE_NAMES)}); "
                                 "the affective state is affect_judge= / seeker_emotion=")
        missing = sorted(name for name, w in self.judge_weights.items() if w != 0.0 and name not in names)
        if missing:
            raise ValueError(f"the reward weighs judge(s) {missing}, which the env does not have; judges: {names} "
                             "(add them with judges=...)")

    def judge_value(self, name: str, judge: Any, result: Any) -> float:
        """:func:`judge_value` under this config."""
        return judge_value(self, name, judge, result)

    def rubric_weights_for(self, judge: Any = None) -> dict[str, float]:
        """:func:`effective_rubric_weights` under this config."""
        return effective_rubric_weights(self, judge)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RewardConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown reward option(s) {unknown}; known: {sorted(known)}")
        return cls(**d)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["rubric_weights"] = dict(self.rubric_weights) if self.rubric_weights is not None else None
        d["judge_weights"] = dict(self.judge_weights)
        return d


def _check_finite(field_name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
        raise ValueError(f"{field_name} must be a finite number, got {v!r}")
    return float(v)


RewardFn = Callable[[dict], float]
RewardSpec = Union[RewardConfig, Mapping[str, Any], RewardFn, None]


def resolve_reward(spec: RewardSpec) -> tuple[RewardConfig, RewardFn | None]:
    """(config for the default terms, optional user function)."""
    if spec is None:
        return RewardConfig(), None
    if isinstance(spec, RewardConfig):
        return spec, None
    if isinstance(spec, Mapping):
        return RewardConfig.from_dict(spec), None
    if callable(spec):
        return RewardConfig(), spec
    raise TypeError(f"reward must be a RewardConfig, a dict of its fields, or a callable(info) -> float; got {spec!r}")


def reward_terms(
    cfg: RewardConfig,
    intensity_before: float,
    intensity_after: float,
    success: bool,
    gave_up: bool,
    rubric: Mapping[str, float] | None = None,
    outcome: float | None = None,
    *,
    judge_values: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """The named terms of the default reward; their sum is the reward.

    Args:
        cfg: the weights.
        intensity_before, intensity_after: the affective state (1-5) before and after the step.
        success, gave_up: how the step ended the episode (both ``False`` while it goes on).
        rubric: rubric scores ``{dimension: 1..5}``; adds a ``"rubric"`` term when
            ``cfg.rubric_weight`` is non-zero (with ``cfg.rubric_weights``, else AFlow's).
        outcome: PPDPP's expected outcome; adds an ``"outcome"`` term when ``cfg.outcome_weight``
            is non-zero.
        judge_values: judge name -> the value of its result (``judge.reward(result)``): one term
            ``cfg.weight(name) * value`` per judge, ``0.0`` for a judge without weight.  A name
            here takes the place of ``rubric``/``outcome``.

    Raises:
        ValueError: a judge value that is not finite (naming the judge).
    """
    terms = {
        "improvement": cfg.improvement_weight * (intensity_before - intensity_after) / 4.0,
        "success": cfg.success_bonus if success else 0.0,
        "give_up": -cfg.give_up_penalty if gave_up else 0.0,
        "turn_cost": -cfg.turn_cost,
    }
    values = dict(judge_values or {})
    if rubric and "rubric" not in values and cfg.weight("rubric"):
        values["rubric"] = rubric_value(rubric, cfg.rubric_weights if cfg.rubric_weights is not None else AFLOW_RUBRIC_WEIGHTS)
    if outcome is not None and "outcome" not in values and cfg.weight("outcome"):
        values["outcome"] = float(outcome)
    for name, v in values.items():
        if name in terms:
            raise ValueError(f"a judge may not be named {name!r}: it is a term of the formula")
        v = float(v)
        if not math.isfinite(v):
            raise ValueError(f"judge {name!r} gave the value {v!r}; a judge's reward(result) must be finite")
        terms[name] = cfg.weight(name) * v
    return {k: float(v) for k, v in terms.items()}


def judge_value(cfg: RewardConfig, name: str, judge: Any, result: Any) -> float:
    """The value of judge ``name``'s ``result`` under ``cfg``: ``judge.reward(result)``, except
    that ``cfg.rubric_weights`` (when set) weighs the dimensions of the ``"rubric"`` judge."""
    if name == "rubric" and cfg.rubric_weights is not None and isinstance(result, Mapping):
        return rubric_value(result, cfg.rubric_weights)
    return judge_reward(judge, result)


def effective_rubric_weights(cfg: RewardConfig, judge: Any = None) -> dict[str, float]:
    """The dimension weights that score the ``"rubric"`` judge: ``cfg.rubric_weights``, else the
    judge's own ``weights``, else AFlow's (:data:`~agents.judges.rubric.AFLOW_RUBRIC_WEIGHTS`)."""
    if cfg.rubric_weights is not None:
        return dict(cfg.rubric_weights)
    own = getattr(judge, "weights", None)
    return dict(own) if isinstance(own, Mapping) else dict(AFLOW_RUBRIC_WEIGHTS)
