"""The episode state of every esc-env environment, and the rules they share.

One :class:`EpisodeState` serves ``esc_env/ESC-v0``, ``esc_env/ESCText-v0``, the vector
env and ``esc_env/ESCStage-v0`` (whose model variables live in ``hidden``).  The same
:func:`parse_action` checks every env's actions, :func:`choose_persona` picks every
episode's seeker, and :func:`start_info` writes every ``reset`` info.
"""

from __future__ import annotations

import copy
import difflib
import numbers
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np

from agents.dialogue import Turn
from agents.personas import Persona

from .core import EnvState, ResetInfo
from .spaces import ACTION_MODES, MAX_UTTERANCE_CHARS

_SEED_SPACE = 2**31 - 1


@dataclass
class EpisodeState:
    """One conversation in progress: plain data, JSON-serialisable with :meth:`to_dict`.

    Attributes:
        persona: the seeker's persona.
        turns: the dialogue so far (starts with the seeker's opening).
        intensities: the affective state (1-5) after the opening and after every supporter
            turn: what ``info["intensity"]`` reports and the reward uses (the judged
            intensity; with ``seeker_emotion`` the seeker's own level; in ESCStage-v0 the
            model's hidden intensity).
        strategies: strategy index of every supporter turn (``-1`` where none was given).
        rewards: reward of every step.
        seed: the episode seed; every random draw of a step is derived from it and the
            turn, so a restored state continues exactly as the original.
        success, gave_up, truncated: how the episode ended (all ``False`` while running).
        hidden: the seeker model's variables, never shown to the supporter as such.  With
            ``seeker_emotion``: ``"emotion"`` (the level after the opening and after every
            supporter turn), ``"emotion_reasons"`` (the seeker's reason for each change) and
            ``"emotion_unreadable"`` (turns whose output could not be read).  In ESCStage-v0:
            the stage, progress, repeat count and streak at 5, the start intensity, the
            progress probability and ``"observed"`` (the affect judge's latest reading, which
            the observation shows); see :mod:`esc_env.stage.model`.
    """

    persona: Persona
    turns: list[Turn]
    intensities: list[float]
    seed: int
    strategies: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    success: bool = False
    gave_up: bool = False
    truncated: bool = False
    hidden: dict = field(default_factory=dict)

    @property
    def turn(self) -> int:
        """Number of supporter turns taken."""
        return len(self.rewards)

    @property
    def intensity(self) -> float:
        """The latest affective state."""
        return self.intensities[-1]

    @property
    def terminated(self) -> bool:
        """The seeker was relieved or gave up."""
        return self.success or self.gave_up

    @property
    def done(self) -> bool:
        return self.success or self.gave_up or self.truncated

    def last_strategy(self, n_strategies: int) -> int:
        """The last supporter turn's strategy index; ``n_strategies`` when there is none."""
        return self.strategies[-1] if self.strategies and self.strategies[-1] >= 0 else n_strategies

    def call_seed(self, role_offset: int) -> int:
        """The seed of one LLM call of this turn (``role_offset`` tells the roles apart)."""
        return (self.seed * 1_000_003 + self.turn * 7919 + role_offset) % _SEED_SPACE

    def to_dict(self) -> dict:
        d = {
            "persona": _persona_dict(self.persona),
            "turns": [_turn_dict(t) for t in self.turns],
            "intensities": [float(x) for x in self.intensities],
            "seed": int(self.seed),
            "strategies": [int(s) for s in self.strategies],
            "rewards": [float(r) for r in self.rewards],
            "success": self.success,
            "gave_up": self.gave_up,
            "truncated": self.truncated,
        }
        if self.hidden:
            d["hidden"] = _copy_data(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, copy_hidden: bool = True) -> "EpisodeState":
        """The state of :meth:`to_dict`; a ``ValueError`` names a missing key.

        ``copy_hidden=False`` shares ``hidden``'s lists with ``d`` (for a caller that only
        reads the state and never changes it in place: a little faster for search).
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"an episode state must be a dict, got {type(d).__name__}")
        try:
            hidden = d.get("hidden", {})
            return cls(
                persona=_persona_from_dict(d["persona"]),
                turns=[_turn_from_dict(t) for t in d["turns"]],
                intensities=[float(x) for x in d["intensities"]],
                seed=int(d["seed"]),
                strategies=[int(s) for s in d.get("strategies", [])],
                rewards=[float(r) for r in d.get("rewards", [])],
                success=bool(d.get("success", False)),
                gave_up=bool(d.get("gave_up", False)),
                truncated=bool(d.get("truncated", False)),
                hidden=_copy_data(dict(hidden)) if copy_hidden else dict(hidden),
            )
        except KeyError as e:
            raise ValueError(f"episode state is missing the key {e.args[0]!r}") from None

    @classmethod
    def coerce(cls, state: "EpisodeState | EnvState | Mapping[str, Any]") -> "EpisodeState":
        """An :class:`EpisodeState` from itself, a ``get_state()`` dict or an episode dict
        (``Transition.state``).  The input is never shared with the result."""
        if isinstance(state, EpisodeState):
            return copy.deepcopy(state)
        return cls.from_dict(episode_of(state))


_PERSONA_DICTS: dict[Persona, dict] = {}


def _persona_dict(p: Persona) -> dict:
    """``p.to_dict()``, computed once per persona (personas are frozen; a hot path of search)."""
    try:
        d = _PERSONA_DICTS.get(p)
    except TypeError:  # a field that cannot be hashed
        return p.to_dict()
    if d is None:
        if len(_PERSONA_DICTS) >= 4096:
            _PERSONA_DICTS.clear()
        d = _PERSONA_DICTS[p] = p.to_dict()
    return _copy_data(d)


#: personas parsed before, by id: (their dict, the Persona); a hit needs an equal dict
_PERSONAS_BY_ID: dict[str, tuple[dict, Persona]] = {}


def _persona_from_dict(d: Any) -> Persona:
    """``Persona.from_dict(d)``, parsed once per distinct persona dict (a hot path of search)."""
    pid = d.get("id") if isinstance(d, dict) else None
    hit = _PERSONAS_BY_ID.get(pid) if isinstance(pid, str) else None
    if hit is not None and hit[0] == d:
        return hit[1]
    p = Persona.from_dict(d)
    if isinstance(pid, str):
        if len(_PERSONAS_BY_ID) >= 4096:
            _PERSONAS_BY_ID.clear()
        _PERSONAS_BY_ID[pid] = (_copy_data(d), p)
    return p


#: turns parsed before, by text (turns are immutable; templated and searched dialogues repeat them)
_TURNS_BY_TEXT: dict[str, Turn] = {}


def _turn_from_dict(d: Mapping[str, Any]) -> Turn:
    """``Turn.from_dict(d)``, reusing an equal turn parsed before (a hot path of search)."""
    text = d["text"]
    hit = _TURNS_BY_TEXT.get(text) if type(text) is str else None
    if hit is not None and hit.speaker == d["speaker"] and hit.strategy == d.get("strategy"):
        return hit
    t = Turn.from_dict(d)
    if type(text) is str:
        if len(_TURNS_BY_TEXT) >= 16384:
            _TURNS_BY_TEXT.clear()
        _TURNS_BY_TEXT[text] = t
    return t


def _turn_dict(t: Turn) -> dict:
    """``Turn.to_dict()`` without ``dataclasses.asdict`` (a hot path of search)."""
    return {"speaker": t.speaker, "text": t.text} if t.strategy is None else {"speaker": t.speaker, "text": t.text, "strategy": t.strategy}


_SCALARS = (str, int, float, bool, type(None))


def _copy_data(x: Any) -> Any:
    """A copy of JSON-like data (dicts, lists, tuples of scalars); faster than ``copy.deepcopy``."""
    t = type(x)
    if t is dict:
        return {k: (v if type(v) in _SCALARS else _copy_data(v)) for k, v in x.items()}
    if t is list or t is tuple:
        return [v if type(v) in _SCALARS else _copy_data(v) for v in x]
    if t in _SCALARS:
        return x
    return copy.deepcopy(x)


def episode_of(state: "EnvState | Mapping[str, Any]") -> dict:
    """The episode dict of a state: ``state["episode"]`` for a ``get_state()`` result
    (``{"episode", "np_random"}``), else ``state`` itself (``Transition.state``).

    Raises:
        ValueError: ``state`` (or its ``"episode"``) is not a dict.
    """
    if isinstance(state, EpisodeState):
        return state.to_dict()
    if not isinstance(state, Mapping):
        raise ValueError(f"a state must be a dict from get_state() or transition(), got {type(state).__name__}")
    episode = state["episode"] if "episode" in state else state
    if not isinstance(episode, Mapping):
        raise ValueError(f"state['episode'] must be a dict, got {type(episode).__name__}")
    return episode  # type: ignore[return-value]


# ---- actions -------------------------------------------------------------------------------


@dataclass
class ParsedAction:
    """A checked action: the strategy index (``None`` in text mode) and the agent's own
    utterance, stripped (``None`` when the LLM supporter writes it)."""

    strategy: int | None
    utterance: str | None


def parse_action(action: Any, action_mode: str, strategies: Sequence[str] | Any) -> ParsedAction:
    """Check one action against the action mode; every env uses these rules.

    Args:
        action: ``"strategy"``: a strategy index (an int, a numpy integer or a 0-d integer
            array; not a bool); ``"text"``: the supporter's utterance, a ``str`` that is not
            empty or only whitespace, of at most ``MAX_UTTERANCE_CHARS`` characters;
            ``"strategy+text"``: a dict ``{"strategy": index, "utterance": str}``.
        action_mode: ``"strategy"``, ``"text"`` or ``"strategy+text"``.
        strategies: the strategy names (or a :class:`agents.strategies.StrategySet`).

    Raises:
        ValueError: the action breaks a rule; the message names the action and the rule.
    """
    names = getattr(strategies, "names", strategies)
    if action_mode == "strategy":
        return ParsedAction(_strategy_index(action, names, "action"), None)
    if action_mode == "text":
        return ParsedAction(None, _utterance(action, "action"))
    if action_mode != "strategy+text":
        raise ValueError(f"action_mode must be one of {ACTION_MODES}, got {action_mode!r}")
    if not isinstance(action, Mapping) or set(action) != {"strategy", "utterance"}:
        raise ValueError(
            f"invalid action {action!r}: action_mode='strategy+text' expects a dict "
            f"{{'strategy': int in [0, {len(names)}), 'utterance': non-empty str}}"
        )
    return ParsedAction(_strategy_index(action["strategy"], names, "action['strategy']"),
                        _utterance(action["utterance"], "action['utterance']"))


def _strategy_index(action: Any, names: Sequence[str], what: str) -> int:
    n = len(names)
    value = action.item() if isinstance(action, np.ndarray) and action.shape == () else action
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or not 0 <= int(value) < n:
        listed = ", ".join(f"{i}={name}" for i, name in enumerate(names))
        raise ValueError(f"invalid {what} {action!r}: expected a strategy index, an integer in [0, {n}) ({listed})")
    return int(value)


def _utterance(text: Any, what: str) -> str:
    if not isinstance(text, str):
        raise ValueError(f"invalid {what} {text!r}: expected the supporter's utterance as a str")
    if not text.strip():
        raise ValueError(f"invalid {what} {text!r}: the supporter's utterance must not be empty or only whitespace")
    if len(text) > MAX_UTTERANCE_CHARS:
        raise ValueError(
            f"invalid {what} (a str of {len(text)} characters): utterances are limited to {MAX_UTTERANCE_CHARS} characters"
        )
    return text.strip()


# ---- reset ---------------------------------------------------------------------------------

#: the ``reset(options=...)`` keys of the single envs (the vector env adds ``persona_ids``)
RESET_OPTIONS: tuple[str, ...] = ("persona", "persona_id")


class UnknownPersonaError(KeyError, ValueError):
    """``options["persona_id"]`` names no persona of the env (a ``KeyError`` and a ``ValueError``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def check_reset_options(options: Mapping[str, Any] | None, known: Sequence[str] = RESET_OPTIONS) -> dict:
    """``options`` as a dict; a ``ValueError`` names unknown keys."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ValueError(f"unknown reset option(s) {unknown}; known: {sorted(known)}")
    return options


def find_persona(personas: Sequence[Persona] | Mapping[str, Persona], persona_id: Any) -> Persona:
    """The persona with this id.

    Raises:
        UnknownPersonaError: no such id (the message gives the closest ids, or a few known ones).
    """
    items = list(personas.values()) if isinstance(personas, Mapping) else personas
    getter = getattr(items, "get", None)
    if getter is not None and not isinstance(items, Mapping):  # a PersonaBank: indexed lookup
        try:
            return getter(persona_id)
        except KeyError:
            pass
    else:
        for p in items:
            if p.id == persona_id:
                return p
    ids = [p.id for p in items]
    close = difflib.get_close_matches(str(persona_id), ids, n=5, cutoff=0.5)
    more = f" (and {len(ids) - 10} more)" if len(ids) > 10 else ""
    hint = f"did you mean {close}?" if close else f"known: {ids[:10]}{more}"
    raise UnknownPersonaError(f"unknown persona_id {persona_id!r}; {hint}")


def persona_option(value: Any) -> Persona:
    """``options["persona"]``: a :class:`Persona` or its dict."""
    if isinstance(value, Mapping):
        value = Persona.from_dict(value)
    if not isinstance(value, Persona):
        raise ValueError(f"options['persona'] must be a Persona (or its dict), got {type(value).__name__}")
    return value


def choose_persona(
    personas: Sequence[Persona] | Mapping[str, Persona], options: Mapping[str, Any] | None, rng: np.random.Generator
) -> Persona:
    """The seeker of a new episode, as every single env's ``reset`` chooses it.

    ``options={"persona": Persona | dict}`` gives it, ``options={"persona_id": id}`` names
    it; otherwise one draw ``rng.integers(len(personas))`` picks it uniformly.

    Raises:
        ValueError: an unknown option key or a bad ``persona``.
        UnknownPersonaError: an unknown ``persona_id``.
    """
    options = check_reset_options(options)
    if "persona" in options:
        return persona_option(options["persona"])
    if "persona_id" in options:
        return find_persona(personas, options["persona_id"])
    items = list(personas.values()) if isinstance(personas, Mapping) else personas
    return items[int(rng.integers(len(items)))]


def start_info(state: EpisodeState, judges: dict[str, Any], **extra: Any) -> ResetInfo:
    """The ``info`` of ``reset``: the keys of a step's ``info`` (:class:`esc_env.core.StepInfo`),
    with no supporter turn (``strategy``/``supporter_utterance`` ``None``, ``reward_terms``
    and ``usage`` empty), plus ``extra``."""
    info: dict[str, Any] = {
        "strategy": None,
        "supporter_utterance": None,
        "seeker_utterance": state.turns[-1].text,
        "intensity": {"before": state.intensity, "after": state.intensity},
        "success": False,
        "gave_up": False,
        "turn": state.turn,
        "persona_id": state.persona.id,
        "judges": judges,
        "reward_terms": {},
        "usage": {},
    }
    info.update(extra)
    return info  # type: ignore[return-value]
