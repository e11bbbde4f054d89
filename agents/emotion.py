"""The seeker's own emotion level, as in RLVER and the SAGE benchmark.

Instead of a judge reading the seeker's words, the seeker agent keeps an explicit
**emotion level** from 0 (at its worst) to 100 (fully relieved).  After every supporter
message the seeker's model (the seeker's backend) writes a short hidden reason and its new
level; the level may move by at most ``max_change`` points per turn.  The environment
reads the level as the seeker's affective state and ends the episode on thresholds:
success when it reaches ``success_at``, failure when it falls below ``failure_below``.
The reasons stay in the episode state and are never shown to the supporter.

Sources:

* SAGE, "Sentient Agent as a Judge" (Zhang et al., 2025, arXiv:2505.02847): a simulated
  person keeps an emotion score with inner thoughts over a supportive dialogue; the numbers
  of the ``sage`` preset (:data:`EMOTION_PRESETS`) are SAGE's, as summarised in this
  project's issue 16: start at 40, change within +-10 per turn, success at 100, failure
  below 10, at most 10 turns.  We have not checked them against the authors' code.
* RLVER (2025, "reinforcement learning with verifiable emotion rewards") trains supporters
  with RL on such a simulated user's emotion score as the reward.

Differences from SAGE: one short reason line instead of SAGE's multi-part inner thoughts;
by default the model writes the change of its level, not the new level (the embedded 135M
model copied an example's level whatever the listener said);
the reply is written by our own :class:`~agents.seeker.SeekerAgent` (told its current
intensity, ``intensity_from_level``), not by the same prompt; the prompts are ours.

Output format and parsing (:func:`parse_emotion`): the model answers ``Reason: ...`` and
``Emotion: N``; the prompt asks for a signed change by default (``EmotionConfig.answer``:
``"change"``; ``"level"`` asks for the new level, as SAGE does).  An unsigned ``N`` is the
new level (0-100); a signed one (``+5``, ``-3``) is a change.  A change larger than ``max_change`` is cut to it and the update is
marked ``clipped``.  Output without an ``Emotion:`` number, or with a level outside 0-100,
raises :class:`EmotionParseError`; the batched :meth:`EmotionTracker.update` turns that
into an update with ``parsed=False`` and the level unchanged (never a guessed number),
and the environment reports it in ``info["judges"]["emotion"]`` (or raises, with
``strict=True``).
"""

from __future__ import annotations

import re
import sys
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Sequence

import numpy as np

from .backends.base import GenerationParams, LLMBackend
from .dialogue import Turn, format_dialogue
from .personas.persona import Persona

LEVEL_MIN, LEVEL_MAX = 0.0, 100.0

EMOTION_SYSTEM = """You are role-playing a person who has opened an online chat with a volunteer listener because something is weighing on you.
Who you are and what happened: {situation}
The main feeling: {emotion} (about {problem}).
You keep track of your own emotion level: a number from 0 (at your very worst) to 100 (completely relieved).
Read the conversation and decide how the listener's words made you feel: understood, comforted and helped make it go up; being ignored, judged, lectured or rushed makes it go down.
It can change by at most {max_change} points per listener message.
Answer in exactly two lines and nothing else:
Reason: <one short sentence, in your own voice, about what in the listener's words helped or hurt>
{answer_line}"""

#: the last line of :data:`EMOTION_SYSTEM` for each answer format (``EmotionConfig.answer``)
EMOTION_ANSWER_LINES = {
    "change": "Emotion: <how much your level changes: a signed whole number from -{max_change} to +{max_change}>",
    "level": "Emotion: <your new emotion level, a whole number from 0 to 100>",
}

EMOTION_USER = """The conversation so far:
{transcript}

Your emotion level {since} was {level}."""

#: worked examples put before the real question as earlier chat turns, one where the level
#: rises and one where it falls: (transcript, level before, reason, level after).  The
#: embedded 135M model copies the number of an example rather than judging: asked for the
#: new level it wrote the first example's level every time; asked for a signed change with
#: the falling example last, the change it copies follows the listener more often than not
#: (README, "seeker's own emotion level").  Without examples it never wrote the format (0 of
#: 16 outputs readable, ESConv valid openings).
EMOTION_EXAMPLES: tuple[tuple[str, float, str, float], ...] = (
    ("Seeker: I failed my driving test again.\nListener: That must be so frustrating after all the practice. What happened?",
     30, "They understood how much it meant to me.", 36),
    ("Seeker: My dog died last week.\nListener: Just get a new one.", 50, "They brushed off my grief.", 42),
)

#: the examples used before (``level`` format, falling first); with them
#: the embedded model answered ``Emotion: 42`` to everything
EMOTION_EXAMPLES_V1: tuple[tuple[str, float, str, float], ...] = (
    ("Seeker: My dog died last week.\nListener: Just get a new one.", 50, "They brushed off my grief.", 42),
    ("Seeker: I failed my driving test again.\nListener: That must be so frustrating after all the practice. What happened?",
     30, "They understood how much it meant to me.", 37),
)

SINCE_LAST = "before the listener's latest message"
SINCE_START = "when the conversation began"

#: the generation settings of the emotion update: short, greedy by default
DEFAULT_EMOTION_PARAMS = GenerationParams(max_new_tokens=48, temperature=0.0, stop=("\n\n",))


def intensity_from_level(level: float) -> float:
    """The env's intensity (1 = calm ... 5 = overwhelmed) of an emotion level (0 ... 100):
    ``5 - 4 * level / 100``, so the improvement term ``(I_before - I_after) / 4`` of the
    reward is the level's change divided by 100."""
    return 5.0 - 4.0 * float(np.clip(level, LEVEL_MIN, LEVEL_MAX)) / 100.0


def level_from_intensity(intensity: float) -> float:
    """The inverse of :func:`intensity_from_level`: intensity 1 -> 100, 3 -> 50, 5 -> 0."""
    return float(np.clip(100.0 * (5.0 - float(intensity)) / 4.0, LEVEL_MIN, LEVEL_MAX))


@dataclass(frozen=True)
class EmotionConfig:
    """Settings of the seeker's emotion level.

    Attributes:
        start: the level at the opening; ``None`` takes it from the persona's initial
            intensity (:func:`level_from_intensity`: intensity 4 -> 25, 5 -> 0).
        max_change: the most the level may move per supporter turn.
        success_at: the episode ends in success when the level reaches this.
        failure_below: the episode ends in failure when the level falls below this.
        max_turns: the turn limit this setting comes with (used when the env is given none;
            ``None``: the env's default, 10).
        strict: raise :class:`EmotionParseError` when an output cannot be read, instead of
            keeping the level and reporting it in ``info``.
        params: generation settings of the update call.
        answer: what the prompt asks the model to write after ``Emotion:``: ``"change"``
            (default: a signed change, ``+6`` / ``-8``; the embedded model's choice follows the
            listener more often than with levels) or ``"level"`` (the new level, as SAGE's
            simulated person reports it; fits models that can follow the format).  The parser
            reads both either way.
    """

    start: float | None = None
    max_change: float = 10.0
    success_at: float = 100.0
    failure_below: float = 10.0
    max_turns: int | None = None
    strict: bool = False
    params: GenerationParams = field(default_factory=lambda: DEFAULT_EMOTION_PARAMS)
    answer: str = "change"

    def __post_init__(self) -> None:
        def number(name: str, lo: float, hi: float) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= float(v) <= hi:
                raise ValueError(f"seeker_emotion: {name} must be a number in [{lo:g}, {hi:g}], got {v!r}")

        if self.start is not None:
            number("start", LEVEL_MIN, LEVEL_MAX)
        number("max_change", 0.0, LEVEL_MAX)
        if self.max_change <= 0:
            raise ValueError(f"seeker_emotion: max_change must be > 0, got {self.max_change!r}")
        number("success_at", LEVEL_MIN, LEVEL_MAX)
        number("failure_below", LEVEL_MIN, LEVEL_MAX)
        if self.failure_below >= self.success_at:
            raise ValueError(f"seeker_emotion: failure_below ({self.failure_below}) must be below success_at ({self.success_at})")
        if self.max_turns is not None and (isinstance(self.max_turns, bool) or not isinstance(self.max_turns, int) or self.max_turns < 1):
            raise ValueError(f"seeker_emotion: max_turns must be a positive int or None, got {self.max_turns!r}")
        if self.answer not in EMOTION_ANSWER_LINES:
            raise ValueError(f"seeker_emotion: answer must be one of {sorted(EMOTION_ANSWER_LINES)}, got {self.answer!r}")
        if isinstance(self.params, Mapping):
            object.__setattr__(self, "params", GenerationParams(**dict(self.params)))
        if not isinstance(self.params, GenerationParams):
            raise ValueError(f"seeker_emotion: params must be GenerationParams or a dict, got {type(self.params).__name__}")

    def start_level(self, persona: Persona) -> float:
        return float(self.start) if self.start is not None else level_from_intensity(persona.initial_intensity)


EMOTION_PRESETS: dict[str, EmotionConfig] = {
    "sage": EmotionConfig(start=40.0, max_change=10.0, success_at=100.0, failure_below=10.0, max_turns=10),
}
"""Named settings.  ``sage``: SAGE's defaults (start 40, +-10 per turn, success at 100,
failure below 10, at most 10 turns; see the module docstring for the source)."""


def resolve_emotion(spec: Any) -> EmotionConfig | None:
    """``None``/``False``: off; ``True``: :class:`EmotionConfig` defaults; a preset name
    (``"sage"``); a dict of :class:`EmotionConfig` fields, optionally with ``"preset"`` to
    start from; or an :class:`EmotionConfig`."""
    if spec is None or spec is False:
        return None
    if spec is True:
        return EmotionConfig()
    if isinstance(spec, EmotionConfig):
        return spec
    if isinstance(spec, str):
        if spec not in EMOTION_PRESETS:
            raise ValueError(f"seeker_emotion: unknown preset {spec!r}; known: {sorted(EMOTION_PRESETS)}")
        return EMOTION_PRESETS[spec]
    if isinstance(spec, Mapping):
        d = dict(spec)
        base = d.pop("preset", None)
        known = {f.name for f in fields(EmotionConfig)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"seeker_emotion: unknown option(s) {unknown}; known: {sorted(known | {'preset'})}")
        values = asdict(resolve_emotion(base)) if base is not None else {}
        values.update(d)
        return EmotionConfig(**values)
    raise TypeError(f"seeker_emotion must be None, True, a preset name {sorted(EMOTION_PRESETS)}, a dict or an "
                    f"EmotionConfig, got {type(spec).__name__}")


# ---- parsing -------------------------------------------------------------------------------


class EmotionParseError(ValueError):
    """The seeker's emotion output has no readable level; the message quotes the output."""


_EMOTION_LINE = re.compile(
    r"(?im)^[^\w\n]*emotion(?:\s+(?:level|score))?[^\w\n+-]*?[:=]\s*\**\s*([+-]?\d+(?:\.\d+)?)\s*(?:/\s*100|%)?"
)
_REASON_LINE = re.compile(r"(?im)^[^\w\n]*reason[^\w\n]*[:=]\s*(.+)$")


@dataclass
class EmotionUpdate:
    """One emotion update of one conversation.

    Attributes:
        level: the level after this turn (bounded; the previous one when not ``parsed``).
        change: ``level - previous``.
        reason: the seeker's hidden reason ("" when it gave none).
        raw: what the model wrote.
        parsed: the output held a readable level.
        clipped: the model's level moved more than ``max_change`` (or left 0-100) and was cut.
        error: why it could not be read (``None`` when ``parsed``).
    """

    level: float
    change: float
    reason: str
    raw: str
    parsed: bool = True
    clipped: bool = False
    error: str | None = None

    def info(self) -> dict:
        """What ``info["judges"]["emotion"]`` shows (the reason stays hidden)."""
        return {"level": self.level, "change": self.change, "parsed": self.parsed, "clipped": self.clipped,
                "error": self.error}


def parse_emotion(text: str, previous: float, max_change: float) -> EmotionUpdate:
    """Read ``Reason: ...`` / ``Emotion: N`` (rules in the module docstring).

    Raises:
        EmotionParseError: no ``Emotion: N`` line, or an unsigned level outside 0-100.
    """
    text = text if isinstance(text, str) else ""
    matches = list(_EMOTION_LINE.finditer(text))
    if not matches:
        shown = " ".join(text.split())[:160]
        raise EmotionParseError(f"no 'Emotion: N' line in the seeker's emotion output {shown!r}")
    token = matches[-1].group(1)
    value = float(token)
    if token[0] in "+-":
        target = previous + value
    else:
        if not LEVEL_MIN <= value <= LEVEL_MAX:
            raise EmotionParseError(f"emotion level {token} is outside 0-100 in the seeker's output {' '.join(text.split())[:160]!r}")
        target = value
    bounded = float(np.clip(target, previous - max_change, previous + max_change))
    bounded = float(np.clip(bounded, LEVEL_MIN, LEVEL_MAX))
    reason = _REASON_LINE.search(text)
    return EmotionUpdate(level=bounded, change=bounded - previous, reason=reason.group(1).strip() if reason else "",
                         raw=text, clipped=abs(bounded - target) > 1e-9)


# ---- the tracker ---------------------------------------------------------------------------


class EmotionTracker:
    """Updates the emotion level of N seekers with ONE ``generate`` call.

    Args:
        backend: the seeker's backend (the level is the seeker's own).
        config: an :class:`EmotionConfig` (or anything :func:`resolve_emotion` takes).
        max_chars: each utterance shown in the transcript is cut to this many characters.
        context_turns: the transcript shows the last this many turns.
        examples: worked examples shown first as earlier chat turns (:data:`EMOTION_EXAMPLES`;
            ``()`` for none).
    """

    def __init__(self, backend: LLMBackend, config: Any = True, max_chars: int = 400, context_turns: int = 8,
                 examples: Sequence[tuple[str, float, str, float]] = EMOTION_EXAMPLES) -> None:
        cfg = resolve_emotion(config)
        if cfg is None:
            raise ValueError("EmotionTracker needs a config, got None")
        self.backend = backend
        self.config = cfg
        self.max_chars = int(max_chars)
        self.context_turns = int(context_turns)
        self.examples = tuple(examples)

    def conversation(self, persona: Persona, dialogue: Sequence[Turn], level: float, since: str = SINCE_LAST,
                     max_change: float | None = None) -> list[dict]:
        turns = [Turn(t.speaker, _cut(t.text, self.max_chars), t.strategy) for t in dialogue]
        transcript = format_dialogue(turns, last=self.context_turns).replace("Supporter:", "Listener:") or "(nothing yet)"
        bound = _fmt(max_change or self.config.max_change)
        answer_line = EMOTION_ANSWER_LINES[self.config.answer].format(max_change=bound)
        system = EMOTION_SYSTEM.format(situation=persona.situation.strip(), emotion=persona.emotion_type,
                                       problem=persona.problem_type, max_change=bound, answer_line=answer_line)
        msgs = [{"role": "system", "content": system}]
        for ex_transcript, before, reason, after in self.examples:
            shown = f"{after - before:+g}" if self.config.answer == "change" else _fmt(after)
            msgs.append({"role": "user", "content": EMOTION_USER.format(transcript=ex_transcript, since=SINCE_LAST, level=_fmt(before))})
            msgs.append({"role": "assistant", "content": f"Reason: {reason}\nEmotion: {shown}"})
        user = EMOTION_USER.format(transcript=transcript, since=since, level=_fmt(level))
        return msgs + [{"role": "user", "content": user}]

    def update(
        self,
        personas: Sequence[Persona],
        dialogues: Sequence[Sequence[Turn]],
        levels: Sequence[float],
        seed: "int | Sequence[int] | None" = None,
        since: str = SINCE_LAST,
        max_changes: Sequence[float] | None = None,
    ) -> list[EmotionUpdate]:
        """The new level of each seeker after the dialogue's latest supporter message.

        Args:
            personas, dialogues, levels: ``n`` each; ``levels`` are the levels before.
            seed: sampling seed: one int for every row, or one per dialogue (then a
                row's update depends on its own seed only, not on its batch-mates).
            since: how the prompt names the moment of ``levels`` (:data:`SINCE_LAST`).
            max_changes: per-dialogue bound on the change (default ``config.max_change``).

        Returns:
            ``n`` updates; ONE ``backend.generate`` call.  Unreadable outputs give
            ``parsed=False`` updates that keep the level, unless ``config.strict``.
        """
        personas, dialogues, levels = list(personas), list(dialogues), [float(x) for x in levels]
        if not len(personas) == len(dialogues) == len(levels):
            raise ValueError(f"got {len(personas)} personas, {len(dialogues)} dialogues and {len(levels)} levels")
        if not dialogues:
            return []
        bounds = [float(b) for b in max_changes] if max_changes is not None else [self.config.max_change] * len(dialogues)
        convs = [self.conversation(p, d, v, since, b) for p, d, v, b in zip(personas, dialogues, levels, bounds)]
        if seed is not None and hasattr(seed, "__iter__") and len(list(seed)) != len(dialogues):
            raise ValueError(f"got {len(list(seed))} seeds for {len(dialogues)} dialogues")
        params = self.config.params.replace(n=1, seed=seed) if seed is not None else self.config.params.replace(n=1)
        comps = self.backend.generate(convs, params)
        out = []
        for c, prev, bound in zip(comps, levels, bounds):
            try:
                out.append(parse_emotion(c.text, prev, bound))
            except EmotionParseError as e:
                if self.config.strict:
                    raise
                out.append(EmotionUpdate(level=prev, change=0.0, reason="", raw=c.text, parsed=False, error=str(e)))
        return out


class SeekerEmotionJudge:
    """The emotion tracker read as an affect judge, for ``benchmarks/judge_validity.py``.

    For each dialogue the seeker's model reads the whole transcript once, from the start
    level (``config.start``, default SAGE's 40) with the bound ``max_change`` times the
    number of supporter turns, and reports its level; ``judge`` returns
    :func:`intensity_from_level` of it.  A dialogue whose output cannot be read keeps the
    start level; :attr:`unparsed` counts those (and each call says so on stderr), so they
    are reported, not hidden.  ONE ``generate`` call per ``judge`` call.
    """

    def __init__(self, backend: LLMBackend, config: Any = "sage", persona: Persona | None = None) -> None:
        self.tracker = EmotionTracker(backend, config)
        self.backend = backend
        self.persona = persona or Persona(id="judge/anyone", emotion_type="distress", problem_type="a personal problem",
                                          situation="You are going through a hard time and came to talk about it.")
        self.start = self.tracker.config.start if self.tracker.config.start is not None else 40.0
        self.unparsed = 0
        self.total = 0

    def judge(self, dialogues: Sequence[Sequence[Turn]]) -> np.ndarray:
        dialogues = [list(d) for d in dialogues]
        bounds = [self.tracker.config.max_change * max(1, sum(t.speaker == "supporter" for t in d)) for d in dialogues]
        ups = self.tracker.update([self.persona] * len(dialogues), dialogues, [self.start] * len(dialogues),
                                  seed=0, since=SINCE_START, max_changes=bounds)
        bad = sum(not u.parsed for u in ups)
        self.unparsed += bad
        self.total += len(ups)
        if bad:
            print(f"seeker-emotion: {bad} of {len(ups)} outputs unreadable (kept the start level); "
                  f"{self.unparsed} of {self.total} so far", file=sys.stderr, flush=True)
        return np.array([intensity_from_level(u.level) for u in ups], dtype=np.float64)

    def __repr__(self) -> str:
        return f"SeekerEmotionJudge(start={self.start:g}, max_change={self.tracker.config.max_change:g})"


def _cut(s: str, n: int) -> str:
    s = " ".join((s or "").split())
    return s if len(s) <= n else s[:n].rstrip() + " ..."


def _fmt(x: float) -> str:
    return f"{float(x):g}"
