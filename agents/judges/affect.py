"""The affect judge: how intense is the seeker's (negative) emotion right now, on 1-5?

The number it returns drives the reward, so it must always be a finite number in
``[1, 5]`` whatever the dialogue contains, and it is computed from log-probabilities
(one batched :meth:`LLMBackend.score` call), never from parsed free text.

*How* the judge asks the model is a pluggable **design** (:class:`AffectDesign`).
Built-in designs, all in :data:`AFFECT_DESIGNS`:

==================  ==========================================================================
``digits``          a rating question; the probabilities of ``" 1"`` .. ``" 5"`` give the
                    expected rating
``digits-cal``      ``digits`` with contextual calibration: the log-probabilities the same
                    prompt gives a content-free message (``"N/A"``) are subtracted first,
                    which removes the model's bias towards some digits
``emotion-words``   after ``"The person feels"``, the probabilities of 25 emotion words in
                    five intensity groups (``devastated`` ... ``calm``) give the expected group
``emotion-words-cal``  ``emotion-words`` with contextual calibration (see ``digits-cal``)
``self-words``      the model continues the seeker's own voice, "Honestly, right now I feel",
                    scored on the same emotion words
``self-words-cal``  ``self-words`` with contextual calibration
``yes-no``          "is this person still upset?"; ``1 + 4 * P(Yes)``
``yes-no-cal``      ``yes-no`` with contextual calibration
``channel``         noisy channel: how likely is the seeker's text as the message of a person
                    told they feel at level 1, 2, ... 5?  Bayes with a flat prior gives a
                    posterior over the levels and its mean.  Costs five scored prompts per
                    dialogue (still one backend call)
==================  ==========================================================================

The default is the design that measured best on the embedded model on ESConv's valid
split (``benchmarks/judge_validity.py``; numbers in the docstring of
:data:`DEFAULT_AFFECT_DESIGN`).  Larger models may do better with another design:
pass ``design=...`` or register your own with :func:`register_affect_design`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .. import prompts as P
from ..backends.base import LLMBackend
from ..dialogue import Turn
from ..scales import INTENSITY_HIGH, INTENSITY_LOW, INTENSITY_NEUTRAL

Conversation = list[dict]

MIN_LEVEL, MAX_LEVEL, NEUTRAL_LEVEL = INTENSITY_LOW, INTENSITY_HIGH, INTENSITY_NEUTRAL

#: placeholder shown to the judge when the dialogue has no seeker text at all
EMPTY_SEEKER_TEXT = "(the person has not said anything)"


def _clean_levels(values: np.ndarray) -> np.ndarray:
    """Replace non-finite values with the neutral level and clip into ``[1, 5]``."""
    v = np.asarray(values, dtype=np.float64)
    v = np.where(np.isfinite(v), v, NEUTRAL_LEVEL)
    return np.clip(v, MIN_LEVEL, MAX_LEVEL)


def _softmax_rows(lp: np.ndarray) -> np.ndarray:
    """Row-wise softmax that treats ``-inf``/NaN as zero mass; all-masked rows become uniform."""
    lp = np.asarray(lp, dtype=np.float64)
    lp = np.where(np.isnan(lp), -np.inf, lp)
    out = np.empty_like(lp)
    for i, row in enumerate(lp):
        finite = np.isfinite(row)
        if not finite.any():
            out[i] = 1.0 / len(row)
            continue
        shifted = np.where(finite, row - row[finite].max(), -np.inf)
        p = np.exp(shifted)
        out[i] = p / p.sum()
    return out


class AffectDesign(ABC):
    """How to ask a model for the seeker's emotional intensity.

    A design turns ``n`` seeker texts into one batch of score requests and turns the
    returned log-probabilities back into ``n`` levels.  :class:`AffectJudge` makes the
    single backend call in between.
    """

    name: str
    description: str

    @abstractmethod
    def requests(self, texts: Sequence[str]) -> tuple[list[Conversation], list[list[str]], str]:
        """Score requests for ``n`` texts.

        Returns:
            ``(conversations, candidates, assistant_prefix)``: ``m >= n`` conversations,
            one list of ``k`` candidate strings per conversation, and the forced start of
            the assistant reply, ready for ``backend.score``.
        """

    @abstractmethod
    def levels(self, logprobs: np.ndarray, n: int) -> np.ndarray:
        """Intensity levels from the ``(m, k)`` log-probabilities of :meth:`requests`.

        Returns:
            float64 array of shape ``(n,)`` (it may contain non-finite values; the judge
            cleans them).
        """


@dataclass
class LabelDesign(AffectDesign):
    """Score a fixed set of answer strings after a question; each answer maps to a level.

    The answer probabilities are renormalised over the candidates and the result is the
    expected level ``sum_j p_j * level_j``.  Several answers may share a level (emotion
    words in intensity groups); keep the groups the same size so that no level gets
    extra mass just by having more words.

    Args:
        name: registry name.
        system, user: the judge prompt; ``user`` has a ``{text}`` field.
        prefix: forced start of the judge's answer, e.g. ``"Intensity:"``.
        labels: ``(candidate, level)`` pairs; candidates usually begin with a space.
        calibrate: subtract the log-probabilities the prompt gives a content-free text
            (contextual calibration).  Adds one conversation to the batch.
    """

    name: str
    system: str
    user: str
    prefix: str
    labels: tuple[tuple[str, float], ...]
    calibrate: bool = False
    description: str = ""
    content_free: str = P.CONTENT_FREE_TEXT

    def __post_init__(self) -> None:
        self.labels = tuple((str(c), float(v)) for c, v in self.labels)
        if len(self.labels) < 2:
            raise ValueError(f"design {self.name!r} needs at least two labels")
        cands = [c for c, _ in self.labels]
        if len(set(cands)) != len(cands):
            raise ValueError(f"design {self.name!r} has duplicate candidates")
        for _, v in self.labels:
            if not MIN_LEVEL <= v <= MAX_LEVEL:
                raise ValueError(f"design {self.name!r}: label levels must lie in [1, 5], got {v}")

    def _conv(self, text: str) -> Conversation:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user.format(text=text)}]

    def requests(self, texts):
        convs = [self._conv(t) for t in texts]
        if self.calibrate:
            convs.append(self._conv(self.content_free))
        cands = [c for c, _ in self.labels]
        return convs, [cands] * len(convs), self.prefix

    def level_probs(self, logprobs: np.ndarray, n: int) -> np.ndarray:
        """Probabilities of each label, shape ``(n, k)`` (after calibration when enabled)."""
        lp = np.asarray(logprobs, dtype=np.float64)
        rows = lp[:n]
        if self.calibrate:
            base = lp[n]
            base = np.where(np.isfinite(base), base, 0.0)
            rows = rows - base[None, :]
        return _softmax_rows(rows)

    def levels(self, logprobs, n):
        p = self.level_probs(logprobs, n)
        values = np.array([v for _, v in self.labels], dtype=np.float64)
        return p @ values


@dataclass
class ChannelDesign(AffectDesign):
    """Noisy-channel design: ``P(level | text) ∝ P(text | a person told they feel at level)``.

    For every text and every level one conversation is scored, with the text itself as
    the single candidate; a flat prior over the levels gives the posterior.  The
    log-likelihoods are divided by ``temperature`` first (long texts otherwise give
    near one-hot posteriors).
    """

    name: str = "channel"
    system: str = P.AFFECT_CHANNEL_SYSTEM
    states: Mapping[int, str] = field(default_factory=lambda: dict(P.AFFECT_CHANNEL_STATES))
    user: str = P.AFFECT_CHANNEL_USER
    temperature: float = 1.0
    description: str = "likelihood of the text under five persona states, Bayes with a flat prior"

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ValueError("temperature must be > 0")
        self._levels = sorted(int(k) for k in self.states)
        if not self._levels or any(not 1 <= k <= 5 for k in self._levels):
            raise ValueError("states must be keyed by levels 1..5")

    def requests(self, texts):
        convs, cands = [], []
        for t in texts:
            for k in self._levels:
                convs.append(
                    [
                        {"role": "system", "content": self.system.format(state=self.states[k])},
                        {"role": "user", "content": self.user},
                    ]
                )
                cands.append([t])
        return convs, cands, ""

    def levels(self, logprobs, n):
        lp = np.asarray(logprobs, dtype=np.float64).reshape(n, len(self._levels)) / self.temperature
        p = _softmax_rows(lp)
        return p @ np.asarray(self._levels, dtype=np.float64)


# ---- built-in designs ---------------------------------------------------------------

EMOTION_WORDS: dict[int, tuple[str, ...]] = {
    5: ("devastated", "desperate", "hopeless", "overwhelmed", "miserable"),
    4: ("upset", "scared", "hurt", "stressed", "angry"),
    3: ("worried", "frustrated", "sad", "nervous", "down"),
    2: ("unsure", "tired", "confused", "uneasy", "bored"),
    1: ("calm", "fine", "relieved", "grateful", "happy"),
}
"""Emotion words by the intensity level they stand for (five per level)."""


def _digits(name: str, calibrate: bool) -> LabelDesign:
    return LabelDesign(
        name=name,
        system=P.AFFECT_DIGITS_SYSTEM,
        user=P.AFFECT_DIGITS_USER,
        prefix=P.AFFECT_DIGITS_PREFIX,
        labels=tuple((f" {k}", float(k)) for k in range(1, 6)),
        calibrate=calibrate,
        description="rating question, expected value of the digits 1-5" + (" (calibrated)" if calibrate else ""),
    )


def _emotion_word_design(name: str, calibrate: bool, system: str, user: str, prefix: str, description: str) -> LabelDesign:
    """A design whose labels are the emotion words, each worth its group's intensity."""
    return LabelDesign(
        name=name,
        system=system,
        user=user,
        prefix=prefix,
        labels=tuple((f" {w}", float(k)) for k, words in EMOTION_WORDS.items() for w in words),
        calibrate=calibrate,
        description=description + (" (calibrated)" if calibrate else ""),
    )


def _words(name: str, calibrate: bool) -> LabelDesign:
    return _emotion_word_design(name, calibrate, P.AFFECT_WORDS_SYSTEM, P.AFFECT_WORDS_USER, P.AFFECT_WORDS_PREFIX,
                                "emotion words in five intensity groups, expected group")


def _self_words(name: str, calibrate: bool) -> LabelDesign:
    return _emotion_word_design(name, calibrate, P.AFFECT_SELF_SYSTEM, P.AFFECT_SELF_USER, P.AFFECT_SELF_PREFIX,
                                "first-person 'right now I feel' + the emotion words, expected group")


def _yesno(name: str, calibrate: bool) -> LabelDesign:
    return LabelDesign(
        name=name,
        system=P.AFFECT_YESNO_SYSTEM,
        user=P.AFFECT_YESNO_USER,
        prefix=P.AFFECT_YESNO_PREFIX,
        labels=((" Yes", 5.0), (" No", 1.0)),
        calibrate=calibrate,
        description="'still upset?' 1 + 4 P(Yes)" + (" (calibrated)" if calibrate else ""),
    )


AFFECT_DESIGNS: dict[str, AffectDesign] = {
    "digits": _digits("digits", False),
    "digits-cal": _digits("digits-cal", True),
    "emotion-words": _words("emotion-words", False),
    "emotion-words-cal": _words("emotion-words-cal", True),
    "self-words": _self_words("self-words", False),
    "self-words-cal": _self_words("self-words-cal", True),
    "yes-no": _yesno("yes-no", False),
    "yes-no-cal": _yesno("yes-no-cal", True),
    "channel": ChannelDesign(),
}
"""Registry of affect designs by name (see the module docstring)."""

DEFAULT_AFFECT_DESIGN = "emotion-words-cal"
"""The default design, chosen by measurement (``benchmarks/judge_validity.py``, embedded
SmolLM2-135M, ESConv valid, 195 surveyed dialogues, 174 where intensity fell; the judge
reads 2 seeker turns):

===================  ========  =========  ========  =======  =========
design               hand_auc  rho_first  rho_last  dir_acc  mae_last
===================  ========  =========  ========  =======  =========
digits               0.53      0.06       0.04      0.62     2.20
digits-cal           0.50      0.06       0.01      0.55     1.15
emotion-words        1.00      0.16       0.07      0.83     1.03
emotion-words-cal    1.00      0.19       0.10      0.88     0.83
self-words           1.00      0.05       0.09      0.78     1.10
self-words-cal       1.00      0.15       0.12      0.86     0.78
yes-no               0.69      -0.03      0.08      0.40     0.84
yes-no-cal           0.69      -0.03      0.08      0.40     1.38
channel              0.99      0.09       -0.01     0.81     1.10
===================  ========  =========  ========  =======  =========

``emotion-words-cal`` has the highest Spearman with the surveyed initial intensity and
the best first-vs-last direction accuracy, and it is among the cheapest (all candidates
are single tokens: one forward pass per dialogue).  The correlations with the survey are
weak for every design: ESConv's first seeker turns are often small talk, and the
initial intensities lie mostly in 3-5.  The 135M model cannot use the digit scale at all.
"""


def register_affect_design(design: AffectDesign, overwrite: bool = False) -> None:
    """Add a design to :data:`AFFECT_DESIGNS` so that ``AffectJudge(design=name)`` finds it."""
    if not isinstance(design, AffectDesign):
        raise TypeError(f"expected an AffectDesign, got {type(design).__name__}")
    if design.name in AFFECT_DESIGNS and not overwrite:
        raise ValueError(f"affect design {design.name!r} exists; pass overwrite=True to replace it")
    AFFECT_DESIGNS[design.name] = design


def get_affect_design(design: "str | AffectDesign") -> AffectDesign:
    """A design by registry name, or the design itself."""
    if isinstance(design, AffectDesign):
        return design
    try:
        return AFFECT_DESIGNS[design]
    except (KeyError, TypeError):
        raise ValueError(f"unknown affect design {design!r}; known: {sorted(AFFECT_DESIGNS)}") from None


def seeker_text(turns: Sequence[Turn], last_seeker_turns: int = 2, max_chars_per_turn: int = 500) -> str:
    """The text the affect judge reads: the last ``last_seeker_turns`` seeker utterances.

    Each utterance is stripped, cut to ``max_chars_per_turn`` characters and put on its own
    line; blank utterances are skipped.  Returns :data:`EMPTY_SEEKER_TEXT` when nothing is
    left, so the judge always has something to read.
    """
    said = [" ".join(t.text.split()) for t in turns if t.speaker == "seeker"]
    said = [s for s in said if s]
    if last_seeker_turns > 0:
        said = said[-last_seeker_turns:]
    said = [s if len(s) <= max_chars_per_turn else s[:max_chars_per_turn].rstrip() + " ..." for s in said]
    return "\n".join(said) if said else EMPTY_SEEKER_TEXT


class AffectJudge:
    """Estimates the seeker's current emotional intensity, 1 (calm) to 5 (overwhelmed).

    Args:
        backend: the shared LLM backend.
        design: a name in :data:`AFFECT_DESIGNS` or an :class:`AffectDesign`.
        last_seeker_turns: how many of the most recent seeker utterances the judge reads.
        max_chars_per_turn: each utterance is cut to this many characters (bounds cost).
    """

    def __init__(
        self,
        backend: LLMBackend,
        design: "str | AffectDesign" = DEFAULT_AFFECT_DESIGN,
        last_seeker_turns: int = 2,
        max_chars_per_turn: int = 500,
    ) -> None:
        if last_seeker_turns < 1:
            raise ValueError(f"last_seeker_turns must be >= 1, got {last_seeker_turns}")
        if max_chars_per_turn < 1:
            raise ValueError(f"max_chars_per_turn must be >= 1, got {max_chars_per_turn}")
        self.backend = backend
        self.design = get_affect_design(design)
        self.last_seeker_turns = int(last_seeker_turns)
        self.max_chars_per_turn = int(max_chars_per_turn)

    def texts(self, dialogues: Sequence[Sequence[Turn]]) -> list[str]:
        """What the judge reads for each dialogue (see :func:`seeker_text`)."""
        return [seeker_text(d, self.last_seeker_turns, self.max_chars_per_turn) for d in dialogues]

    def judge_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Intensity of raw seeker texts; shape ``(n,)``, float64, finite, in ``[1, 5]``.

        One ``backend.score`` call for the whole batch.
        """
        texts = [t if (isinstance(t, str) and t.strip()) else EMPTY_SEEKER_TEXT for t in texts]
        n = len(texts)
        if n == 0:
            return np.zeros(0, dtype=np.float64)
        convs, cands, prefix = self.design.requests(texts)
        res = self.backend.score(convs, cands, assistant_prefix=prefix)
        values = np.asarray(self.design.levels(res.logprobs, n), dtype=np.float64).reshape(n)
        return _clean_levels(values)

    def judge(self, dialogues: Sequence[Sequence[Turn]]) -> np.ndarray:
        """Judged intensity of each dialogue's seeker, from its last seeker turns.

        Args:
            dialogues: ``n`` dialogues (lists of :class:`Turn`); any may be empty.

        Returns:
            float64 array of shape ``(n,)``, every value finite and in ``[1, 5]``.
            One ``backend.score`` call for the batch (none when ``n == 0``).
        """
        return self.judge_texts(self.texts(dialogues))

    def reward(self, intensity: float) -> float:
        """The reward number of one judged intensity (:func:`~agents.judges.base.intensity_reward`:
        ``(3 - intensity) / 2``), for this judge passed as one more judge of an env."""
        from .base import intensity_reward

        return intensity_reward(intensity)

    def __repr__(self) -> str:
        return f"AffectJudge(design={self.design.name!r}, last_seeker_turns={self.last_seeker_turns})"
