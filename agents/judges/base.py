"""The judge protocol: what the environment needs from a judge.

A judge reads a batch of dialogues and says something about each one; the environment
turns what it said into a number that a reward can weigh.  Two methods::

    class Judge(Protocol):
        def judge(self, dialogues: Sequence[Sequence[Turn]]) -> Sequence[R]: ...   # one R per dialogue
        def reward(self, result: R) -> float: ...                                 # R -> a finite number

``judge`` is batched: ``n`` dialogues in, ``n`` results out, in one model call where the
judge uses a model.  Each dialogue ends with the seeker's reply to the supporter's latest
turn; a judge of that turn finds it as the last ``"supporter"`` :class:`~agents.dialogue.Turn`
(its ``strategy`` label is the strategy the supporter meant to use).  ``reward`` is how a
result becomes a number (``0`` when the judge has nothing to say): the environment reports the
result in ``info["judges"][name]`` and adds ``weight * reward(result)`` to the reward, with the
weight of ``RewardConfig.judge_weights[name]`` (weight ``0``: reported, not rewarded).

Adding a judge to an environment is "write the class, pass it in"::

    class Politeness:
        def judge(self, dialogues):
            return [JudgeResult(float("thank" in d[-1].text.lower()), {"said_thanks": "thank" in d[-1].text.lower()})
                    for d in dialogues]

        def reward(self, result):
            return result.value

    env = gym.make("esc_env/ESC-v0", judges={"thanks": Politeness()},
                   reward=RewardConfig(judge_weights={"thanks": 0.0}))   # reported only

The built-in judges all follow the protocol: :class:`~agents.judges.AffectJudge` and
:class:`~agents.judges.CalibratedAffectJudge` (including the politeness-free weights) return
intensities and :func:`intensity_reward` of them, :class:`~agents.judges.RubricJudge` returns
scores per dimension and their weighted sum, :class:`~agents.judges.OutcomeJudge` returns PPDPP's
outcome and its expected value.  A judge without a ``reward`` method may return numbers,
:class:`JudgeResult` s or mappings with a ``"value"`` (see :func:`result_value`).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable

from ..dialogue import Turn
from ..scales import INTENSITY_NEUTRAL

#: the intensity that :func:`intensity_reward` maps to 0 (the middle of the 1-5 scale)
NEUTRAL_INTENSITY = INTENSITY_NEUTRAL


@runtime_checkable
class Judge(Protocol):
    """A batched judge of dialogues (see the module docstring)."""

    def judge(self, dialogues: Sequence[Sequence[Turn]]) -> Sequence[Any]:
        """One result per dialogue, in order."""
        ...

    def reward(self, result: Any) -> float:
        """The number a result is worth in the reward (finite)."""
        ...


@dataclass(frozen=True)
class JudgeResult:
    """A judge's verdict on one dialogue: the number it is worth, and what else it saw.

    Attributes:
        value: the number :func:`result_value` gives (a finite float).
        details: anything else worth reporting (shown in ``info["judges"][name]``).
    """

    value: float
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """``{"value": value, **details}``: what ``info["judges"][name]`` holds."""
        return {"value": float(self.value), **dict(self.details)}


def result_value(result: Any) -> float:
    """The number of a result of a judge without a ``reward`` method.

    A real number is itself, a :class:`JudgeResult` its ``value``, a mapping its ``"value"``.

    Raises:
        TypeError: any other result (give the judge a ``reward`` method).
    """
    if isinstance(result, JudgeResult):
        return float(result.value)
    if isinstance(result, numbers.Real) and not isinstance(result, bool):
        return float(result)
    if hasattr(result, "shape") and getattr(result, "shape", None) == () and hasattr(result, "item"):
        return float(result.item())  # a numpy scalar or 0-d array
    if isinstance(result, Mapping) and "value" in result:
        return float(result["value"])
    raise TypeError(
        f"cannot turn the judge result {result!r} into a number: return numbers, JudgeResult or "
        "mappings with a 'value', or give the judge a reward(result) -> float method"
    )


def judge_reward(judge: Any, result: Any) -> float:
    """``judge.reward(result)`` when the judge has it, else :func:`result_value`."""
    fn = getattr(judge, "reward", None)
    return float(fn(result)) if callable(fn) else result_value(result)


def check_judge(name: str, judge: Any) -> None:
    """Raise a ``TypeError`` naming ``name`` unless ``judge`` has a callable ``judge`` method."""
    if not callable(getattr(judge, "judge", None)):
        raise TypeError(f"judge {name!r} must have a judge(dialogues) method returning one result per dialogue, "
                        f"got {type(judge).__name__}")


def report(result: Any) -> Any:
    """What ``info["judges"][name]`` shows for a result: plain Python where it can be."""
    if isinstance(result, JudgeResult):
        return result.to_dict()
    if isinstance(result, Mapping):
        return dict(result)
    if hasattr(result, "shape") and getattr(result, "shape", None) == () and hasattr(result, "item"):
        return result.item()
    return result


def intensity_reward(intensity: float) -> float:
    """The reward number of a judged intensity on ESConv's 1-5 scale: ``(3 - intensity) / 2``.

    Calm (1) is worth ``1``, the middle (3) ``0``, overwhelmed (5) ``-1``; a non-finite
    intensity is worth ``0``.  (The environment's own affective state rewards the *change* of
    intensity instead; this is for an affect judge passed as one more judge.)
    """
    x = float(intensity)
    return (NEUTRAL_INTENSITY - x) / 2.0 if math.isfinite(x) else 0.0
