"""The stage model of ``esc_env/ESCStage-v0``: constants, templates and dynamics.

The seeker is a small stochastic model of the helping process (exploration -> comforting
-> action, after Hill's helping-skills model that ESConv follows).  Its hidden state is
kept in an :class:`esc_env.state.EpisodeState`: the intensity in ``intensities`` and the
other variables in ``hidden`` (:data:`HIDDEN_KEYS`).  :class:`StageDynamics` is the
transition function, shared by the env and the exact solver; the formulas are in
:class:`esc_env.stage.env.ESCStageEnv`'s docstring.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np

from agents.personas.persona import Persona
from agents.scales import INTENSITY_HIGH, INTENSITY_LOW

from ..state import EpisodeState

# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------
#: the stages of the helping process, in order
STAGES: tuple[str, ...] = ("exploration", "comforting", "action")
#: the strategy roles of the model; every strategy of a set maps onto one of them
ROLES: tuple[str, ...] = ("explore", "reflect", "comfort", "plan", "inform", "other")

#: effect of a role on the hidden intensity, in half-points (negative = calmer), by stage
EFFECTS: dict[str, tuple[int, int, int]] = {
    "explore": (-1, 0, +1),
    "reflect": (-1, -1, 0),
    "comfort": (-1, -2, -1),
    "plan": (+2, +1, -2),
    "inform": (+1, 0, -2),
    "other": (0, 0, 0),
}
#: the roles that fit each stage: they build the progress that advances the stage
FITS: tuple[frozenset[str], ...] = (
    frozenset({"explore", "reflect"}),
    frozenset({"reflect", "comfort"}),
    frozenset({"plan", "inform"}),
)
#: lowest intensity that fitting or non-fitting *help* can bring about in each stage
FLOORS: tuple[float, ...] = (3.0, 2.5, 1.0)
#: progress points needed to leave exploration and comforting
PROGRESS_NEEDED: tuple[int, ...] = (2, 2)
#: a fitting move builds progress only while it has been repeated at most this often
MAX_USEFUL_REPEAT = 2
#: the seeker gives up after this many consecutive replies at intensity 5
PATIENCE = 2
#: ... or when the intensity has risen this far above its start
GIVE_UP_RISE = 1.5
#: the lowest start intensity (personas below it start here: the model needs room to improve)
MIN_START_INTENSITY = 3.0
#: probability that a fitting move builds progress, by persona trait (first match wins)
PROGRESS_PROB_BY_TRAIT: tuple[tuple[str, float], ...] = (
    ("guarded", 0.6),
    ("skeptical", 0.6),
    ("talkative", 0.9),
)
DEFAULT_PROGRESS_PROB = 0.75

#: each shipped strategy's role (the name is matched case-insensitively)
STRATEGY_ROLES: dict[str, str] = {
    # ESConv (Liu et al., 2021)
    "question": "explore",
    "restatement or paraphrasing": "reflect",
    "reflection of feelings": "reflect",
    "self-disclosure": "comfort",
    "affirmation and reassurance": "comfort",
    "providing suggestions": "plan",
    "information": "inform",
    "others": "other",
    # AFlow
    "clarification": "explore",
    "reflective statements": "reflect",
    "emotional validation": "comfort",
    "empathetic statements": "comfort",
    "affirmation": "comfort",
    "collaborative planning": "plan",
    "suggest options": "plan",
    "share information": "inform",
}

DEFAULT_PERSONAS: tuple[Persona, ...] = (
    Persona(
        id="stage/job-loss",
        emotion_type="anxiety",
        problem_type="job crisis",
        situation="I was laid off last week after six years at the company and I don't know how I'll pay rent.",
        initial_intensity=4,
        traits=("anxious",),
        source="esc_env.stage",
    ),
    Persona(
        id="stage/breakup",
        emotion_type="sadness",
        problem_type="breakup with partner",
        situation="My partner ended our relationship out of nowhere and I can't stop crying.",
        initial_intensity=5,
        traits=("tearful", "talkative"),
        source="esc_env.stage",
    ),
    Persona(
        id="stage/exams",
        emotion_type="nervousness",
        problem_type="academic pressure",
        situation="My final exams start in two weeks and I feel like I haven't learned anything.",
        initial_intensity=3,
        traits=("anxious",),
        source="esc_env.stage",
    ),
    Persona(
        id="stage/friends",
        emotion_type="anger",
        problem_type="problems with friends",
        situation="My best friend told everyone something I shared with her in confidence.",
        initial_intensity=4,
        traits=("guarded", "angry"),
        source="esc_env.stage",
    ),
)

# ---- templates ------------------------------------------------------------------------

_SEEKER: dict[tuple[str, str], tuple[str, ...]] = {
    ("exploration", "high"): (
        "It's hard to even explain. Everything about this whole {problem} thing is going wrong and I can't think straight.",
        "I'm still really shaken. There's more to the {problem} than I've told you so far.",
        "I don't know where to start. It all happened so fast.",
    ),
    ("exploration", "mid"): (
        "Well, it started a while ago and the {problem} has been building up since then.",
        "There's a bit more to it. It's not just the {problem}, it's how it all happened.",
        "Okay, so what happened first was that nobody told me anything until it was too late.",
    ),
    ("exploration", "low"): (
        "Talking it through helps. The {problem} is the main thing, really.",
        "I guess that's most of the story about the {problem}.",
    ),
    ("comforting", "high"): (
        "I just feel so alone with this. Nobody seems to get how much the {problem} hurts.",
        "I feel awful, like it's all my fault and I'm worthless.",
        "Honestly I feel like I'm falling apart inside.",
    ),
    ("comforting", "mid"): (
        "It means a lot that you understand. I still feel pretty low about the {problem}.",
        "Yes, that's exactly how I feel. It's good to hear it's not just me.",
        "I feel a little less alone now, but it still hurts.",
    ),
    ("comforting", "low"): (
        "I feel a bit calmer now that someone gets it.",
        "Thank you, I feel understood. It's less heavy than before.",
    ),
    ("action", "high"): (
        "I know I need to do something about the {problem}, but what? What should I do?",
        "I want to fix this but every option seems impossible. What would you do?",
    ),
    ("action", "mid"): (
        "I think I'm ready to figure out what to do next about the {problem}. What could I try?",
        "Okay, what would a first step look like for me?",
        "Maybe there is something I can do. Where would I start?",
    ),
    ("action", "low"): (
        "That sounds doable. Maybe I could actually try that this week.",
        "Yes, I could start with that. It feels manageable now.",
    ),
}
_PREMATURE = "I'm not ready for advice, you don't even know the whole story yet. "
_WORN = "You keep saying the same kind of thing. "
_RELIEF = (
    "Thank you, I actually feel a lot lighter now. I think I can handle the {problem} from here.",
    "This really helped. I have a plan and I don't feel so overwhelmed anymore. Thank you.",
)
_GIVE_UP = (
    "I don't think this is helping. I'm going to go.",
    "Forget it, you don't get it. I'm done talking about this.",
)
_SUPPORTER: dict[str, tuple[str, ...]] = {
    "explore": ("Can you tell me more about what happened?", "What has been the hardest part of this for you?"),
    "reflect": ("It sounds like this has really shaken you.", "So you've been carrying all of this on your own for a while."),
    "comfort": (
        "That makes complete sense; anyone in your place would feel this way.",
        "I'm really sorry you're going through this. You're coping with more than you give yourself credit for.",
    ),
    "plan": ("Maybe we could think of one small step you could take this week?", "What if you tried writing down your options and picking one to start with?"),
    "inform": (
        "Many people in this situation find it helps to talk to a counsellor; there are free services for this.",
        "It's common to feel this way after something like this, and it usually eases with time and support.",
    ),
    "other": ("Thank you for sharing this with me.", "I'm glad you reached out today."),
}


def _band(intensity: float) -> str:
    return "high" if intensity >= 4.0 else ("mid" if intensity >= 3.0 else "low")


def uniforms(key: int, counter: int, n: int = 6) -> np.ndarray:
    """``n`` uniforms in (0, 1) that depend only on ``(key, counter)``: the per-state RNG."""
    x = np.random.SeedSequence([int(key), int(counter)]).generate_state(n, dtype=np.uint64)
    return ((x >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def _pick(options: Sequence[str], u: float) -> str:
    return options[min(int(u * len(options)), len(options) - 1)]


def progress_probability(persona: Persona) -> float:
    """The probability that a fitting move builds progress with this persona (see the table)."""
    for trait, p in PROGRESS_PROB_BY_TRAIT:
        if trait in persona.traits:
            return p
    return DEFAULT_PROGRESS_PROB


def start_intensity(persona: Persona) -> float:
    return float(max(persona.initial_intensity, MIN_START_INTENSITY))


# hidden state as a tuple, for the dynamics and the dynamic programme:
# (h, stage, progress, last, repeat, streak, turn), h = 2 * (intensity - 1) in 0..8
#: the name of the model in ``EpisodeState.hidden["model"]``
MODEL_NAME = "ESCStage-v0"
#: the keys of ``EpisodeState.hidden`` in a stage-model episode: the model's name, the
#: stage, the progress built in it, how often the last strategy was used in a row,
#: consecutive replies at intensity 5, the start intensity, the probability that a fitting
#: move builds progress, and the affect judge's latest reading (what the observation shows)
HIDDEN_KEYS: tuple[str, ...] = ("model", "stage", "progress", "repeat", "high_streak",
                                "start_intensity", "progress_prob", "observed")


def judge_reading(intensity: float, judge_noise: float, u1: float, u2: float) -> float:
    """The affect judge's reading of ``intensity``: + N(0, ``judge_noise``^2) from two
    uniforms (Box-Muller), clipped to [1, 5]."""
    if judge_noise == 0.0:
        return float(intensity)
    z = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)
    return float(min(max(intensity + judge_noise * z, INTENSITY_LOW), INTENSITY_HIGH))


def to_half_points(intensity: float) -> int:
    """``h = 2 (I - 1)``, in 0..8 for I in [1, 5]."""
    return int(round(2 * (float(intensity) - 1.0)))


def hidden_tuple(state: EpisodeState, n_strategies: int) -> "Hidden":
    """The model's state as the tuple the dynamics and the solver use:
    ``(h, stage, progress, last, repeat, streak, turn)``."""
    hid = state.hidden
    return (
        to_half_points(state.intensity),
        STAGES.index(hid["stage"]),
        int(hid["progress"]),
        state.last_strategy(n_strategies),
        int(hid["repeat"]),
        int(hid["high_streak"]),
        state.turn,
    )


def seeker_reply(stage: str, intensity: float, success: bool, gave_up: bool, premature: bool, worn: bool,
                 problem: str, u: float) -> str:
    """The seeker's templated reply after a step (``u``: a uniform that picks the template)."""
    if success:
        return _pick(_RELIEF, u).format(problem=problem)
    if gave_up:
        return _pick(_GIVE_UP, u)
    reply = _pick(_SEEKER[(stage, _band(intensity))], u).format(problem=problem)
    if premature:
        return _PREMATURE + reply
    if worn:
        return _WORN + reply
    return reply


def supporter_text(role: str, u: float) -> str:
    """A templated supporter utterance of this role (``u`` picks it)."""
    return _pick(_SUPPORTER[role], u)


Hidden = tuple[int, int, int, int, int, int, int]


class Step(NamedTuple):
    hidden: Hidden
    success: bool
    gave_up: bool


class Effect(NamedTuple):
    h: int  # intensity after the strategy's effect and the floor, before the noise
    repeat: int
    builds: bool  # a fitting, not worn-out move: builds progress when the draw "lands"
    premature: bool
    worn: bool


class StageDynamics:
    """The transition function of the hidden state, shared by the env and the DP solver.

    A step is :meth:`effect` (deterministic in the state and the action) followed by
    :meth:`outcome` (given the noise ``eps`` and whether the progress draw ``landed``).
    """

    def __init__(self, roles: Sequence[str], noise: float, relief_threshold: float, max_turns: int):
        self.roles = tuple(roles)
        self.n = len(roles)
        self.noise = float(noise)
        self.relief_h = int(round(2 * (relief_threshold - 1.0)))
        self.max_turns = int(max_turns)
        self.floors_h = tuple(int(round(2 * (f - 1.0))) for f in FLOORS)
        self.rise_h = int(round(2 * GIVE_UP_RISE))
        p = self.noise / 2
        self.eps_probs: tuple[tuple[int, float], ...] = tuple((e, q) for e, q in ((-1, p), (0, 1 - 2 * p), (1, p)) if q > 0)

    def eps_of(self, u: float) -> int:
        p = self.noise / 2
        return -1 if u < p else (1 if u >= 1 - p else 0)

    def effect(self, s: Hidden, a: int) -> Effect:
        h, stage, _, last, rep, _, _ = s
        role = self.roles[a]
        rep = rep + 1 if a == last else 1
        base = EFFECTS[role][stage]
        eff = min(base + rep - 1, 0) if base < 0 else base  # wear-off: help shrinks to nothing
        h1 = max(h + eff, min(h, self.floors_h[stage])) if eff < 0 else h + eff
        builds = role in FITS[stage] and rep <= MAX_USEFUL_REPEAT and stage < len(PROGRESS_NEEDED)
        return Effect(h1, rep, builds, role in ("plan", "inform") and stage == 0, base < 0 and rep > 1)

    def outcome(self, s: Hidden, a: int, e: Effect, eps: int, landed: bool, h0: int) -> Step:
        _, stage, progress, _, _, streak, turn = s
        h1 = min(max(e.h + eps, 0), 8)
        if e.builds and landed:
            progress += 1
            if progress >= PROGRESS_NEEDED[stage]:
                stage, progress = stage + 1, 0
        streak = streak + 1 if h1 == 8 else 0
        success = h1 <= self.relief_h
        gave_up = (not success) and (streak >= PATIENCE or h1 - h0 >= self.rise_h)
        return Step((h1, stage, progress, a, e.repeat, streak, turn + 1), success, gave_up)



#: the old private name of :class:`StageDynamics`
_Dynamics = StageDynamics
