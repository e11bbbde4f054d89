"""Judges: LLM estimates of how the conversation is going, all from log-probabilities.

* :class:`AffectJudge`: the seeker's emotional intensity, 1-5 (drives the reward);
  its prompt design is pluggable (:data:`AFFECT_DESIGNS`).
* :class:`RubricJudge`: quality of the supporter's last utterance on named dimensions.
* :class:`OutcomeJudge`: PPDPP's worse / same / better / solved outcome.

Each ``judge`` method makes ONE batched ``backend.score`` call.  Every judge follows the
:class:`Judge` protocol (``agents/judges/base.py``): ``judge(dialogues)`` gives one result per
dialogue and ``reward(result)`` the number it is worth, so an environment takes any mapping of
named judges (``judges={"rubric": RubricJudge(llm), "mine": MyJudge()}``).
"""

from .affect import (
    AFFECT_DESIGNS,
    DEFAULT_AFFECT_DESIGN,
    AffectDesign,
    AffectJudge,
    ChannelDesign,
    LabelDesign,
    get_affect_design,
    register_affect_design,
)
from .base import JudgeResult, Judge, intensity_reward, judge_reward, result_value
from .outcome import OUTCOME_LABELS, OUTCOME_VALUES, OutcomeJudge
from .rubric import AFLOW_RUBRIC_WEIGHTS, DEFAULT_DIMENSIONS, RubricJudge, rubric_value

__all__ = [
    "AFFECT_DESIGNS",
    "AFLOW_RUBRIC_WEIGHTS",
    "DEFAULT_AFFECT_DESIGN",
    "DEFAULT_DIMENSIONS",
    "OUTCOME_LABELS",
    "OUTCOME_VALUES",
    "AffectDesign",
    "AffectJudge",
    "ChannelDesign",
    "Judge",
    "JudgeResult",
    "LabelDesign",
    "OutcomeJudge",
    "RubricJudge",
    "get_affect_design",
    "intensity_reward",
    "judge_reward",
    "result_value",
    "rubric_value",
    "register_affect_design",
]

from .calibrated import CalibratedAffectJudge, evaluate_judge, train_calibrated_judge
from .encoders import BackendEncoder, MiniLMEncoder
