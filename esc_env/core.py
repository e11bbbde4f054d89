"""Types shared by every esc-env environment: the step result, the observation and ``info``
contracts (as ``TypedDict``\\ s) and the state contract that search uses (a ``Protocol``).

These are the one description of what ``reset``/``step`` return; the env docstrings and the
README point here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, TypedDict, runtime_checkable

import numpy as np


@dataclass
class Transition:
    """The outcome of one action from one state, as returned by ``env.unwrapped.transition``.

    Attributes:
        state: the next episode state, JSON-serialisable (``EpisodeState.to_dict()``; the
            input of ``set_state`` and of further ``transition`` calls).
        observation: the observation of ``state`` (inside ``env.observation_space``).
        reward: the step's reward.
        terminated: the episode ended (seeker relieved or gave up).
        truncated: the turn limit was reached.
        info: the same dict ``step`` returns (a :class:`StepInfo`).
    """

    state: dict
    observation: dict
    reward: float
    terminated: bool
    truncated: bool
    info: dict = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


class EpisodeOverError(RuntimeError):
    """``step`` was called after the episode ended, without ``reset``."""


# ---- the observation and info contracts ---------------------------------------------------


class Observation(TypedDict):
    """The observation of every esc-env environment (see :func:`esc_env.spaces.observation_space`).

    Keys:
        dialogue: ``Seeker: ...`` / ``Supporter: ...`` lines so far (the newest 16,000 characters).
        turn: supporter turns taken, in ``[0, max_turns]``.
        intensity: shape ``(1,)``, float32 in [1, 5]: the affect judge's latest reading
            (the seeker's own level mapped to 1-5 with ``seeker_emotion``).
        last_strategy: the last strategy's index; ``n_strategies`` before the first turn or
            after a turn without a strategy (text mode).
    """

    dialogue: str
    turn: int
    intensity: np.ndarray
    last_strategy: int


class IntensityChange(TypedDict):
    """The affective state before and after a step, on ESConv's 1-5 scale (lower is calmer)."""

    before: float
    after: float


class StepInfo(TypedDict):
    """The ``info`` of ``step`` (and of ``reset``: same keys) in every esc-env environment.

    Keys:
        strategy: the strategy's name (``None`` at reset, and for a text-mode turn).
        supporter_utterance: the supporter's turn (``None`` at reset).
        seeker_utterance: the seeker's reply (at reset: its opening).
        intensity: ``{"before", "after"}``: the affective state the reward uses (the judged
            intensity; with ``seeker_emotion`` the seeker's own level; in ESCStage-v0 the
            model's hidden intensity).
        success: the seeker is relieved (the episode terminated well).
        gave_up: the seeker gave up (the episode terminated badly).
        turn: supporter turns taken.
        persona_id: the seeker's persona.
        judges: every judge's output: ``"affect"`` (the affect judge's intensity, what the
            observation shows), and ``"rubric"``/``"outcome"`` when those judges run; with
            ``seeker_emotion``, ``"emotion"`` (``level``, ``change``, ``parsed``, ``clipped``,
            ``error``; ``parsed=False``: the seeker's output could not be read and the level
            was kept).
        reward_terms: the named terms of the default reward; they sum to the reward
            (``{}`` at reset).
        usage: per role, this conversation's share of the batched call's tokens (and
            wall-clock ``seconds`` with ``timings=True``); ``{}`` at reset and without an LLM.

    The same seed and actions give the same ``info``.  Hidden model variables (the
    seeker's reasons for its emotion changes, the stage model's stage) are in
    ``get_state()["episode"]["hidden"]``, never in the observation.
    """

    strategy: str | None
    supporter_utterance: str | None
    seeker_utterance: str
    intensity: IntensityChange
    success: bool
    gave_up: bool
    turn: int
    persona_id: str
    judges: dict[str, Any]
    reward_terms: dict[str, float]
    usage: dict[str, dict[str, float]]


#: ``reset`` returns the keys of ``step``
ResetInfo = StepInfo


class StageStepInfo(StepInfo, total=False):
    """:class:`StepInfo` of ``esc_env/ESCStage-v0``, plus the model's public labels.

    Keys:
        stage: the stage after the step (``exploration``, ``comforting`` or ``action``).
        role: the strategy's role in the stage model (``step`` only).
        seeker: ``"stage-model"``.
    """

    stage: str
    role: str
    seeker: str


#: the keys every esc-env ``info`` has, at ``reset`` and at ``step``
INFO_KEYS: frozenset[str] = frozenset(StepInfo.__required_keys__)


# ---- the state contract -------------------------------------------------------------------


class EnvState(TypedDict):
    """What ``get_state()`` returns: the episode and the env's reset RNG, JSON-serialisable.

    Keys:
        episode: ``EpisodeState.to_dict()`` (see :class:`esc_env.state.EpisodeState`).
        np_random: the state of the env's ``np_random`` bit generator.
    """

    episode: dict
    np_random: dict


@runtime_checkable
class SearchableEnv(Protocol):
    """An environment that search and learners can snapshot and branch: every esc-env env
    (``env.unwrapped`` of ESC-v0, ESCText-v0 and ESCStage-v0).

    ``transition`` is pure (neither the env nor the input states change) and batched; the
    same (state, action) gives the same :class:`Transition` when decoding is seeded.
    States are :class:`EnvState` dicts, episode dicts (``Transition.state``) or
    :class:`esc_env.state.EpisodeState` objects.
    """

    def get_state(self) -> EnvState: ...

    def set_state(self, state: Any) -> None: ...

    def transition(self, states: Sequence[Any], actions: Sequence[Any]) -> list[Transition]: ...
