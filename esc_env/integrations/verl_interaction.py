"""esc-env episodes as a verl multi-turn *interaction* (verl 0.7.1).

verl's multi-turn rollout (``actor_rollout_ref.rollout.multi_turn``) lets the policy write a
turn, then asks an *interaction* for the user's next message, the turn's score and whether
the conversation is over. :class:`ESCInteraction` plays that user with esc-env: the policy is
the supporter, esc-env's seeker answers, and esc-env's judges give each turn's reward.

The pieces verl reads:

* the interaction YAML (``multi_turn.interaction_config_path``; ``examples/verl/esc_interaction.yaml``):
  ``interaction: [{name: esc, class_name: esc_env.integrations.verl_interaction.ESCInteraction,
  config: {...}}]``, where ``config`` holds the :func:`esc_env.build.build_engine` arguments
  of :data:`ENGINE_KEYS` and the keys of :data:`INTERACTION_KEYS`;
* the dataset rows (:func:`dataset_rows`): the prompt is a system message and the seeker's
  opening, and ``extra_info.interaction_kwargs`` is ``{name, persona_id, seed, opening}``;
  verl passes these keywords to :meth:`ESCInteraction.start_interaction` and to every
  :meth:`ESCInteraction.generate_response`;
* the reward: verl keeps each turn's score in ``turn_scores``; :func:`compute_score`
  (``reward.custom_reward_function``) makes the episode's return of them.

**Versions.** verl 0.7.1 is the last release with ``verl.interactions`` (``BaseInteraction``
and the YAML registry); 0.8.0 and later removed it in favour of custom agent loops
(``verl.experimental.agent_loop``). This module targets 0.7.1 (``pip install "verl==0.7.1"``).

**Concurrency.** verl runs many trajectories as asyncio tasks in each agent-loop worker and
makes a new interaction object per trajectory. All interaction objects built from the same
engine configuration in a process share one engine (one model); the LLM calls run on one
worker thread per process, off the event loop. Concurrent ``start_interaction`` and
``generate_response`` calls are gathered into micro-batches (``batch_wait_s``, ``max_batch``):
one batch of N conversations costs one seeker call and one call per judge, as
:meth:`esc_env.engine.DialogueEngine.transition` promises. While a batch runs, the next one
gathers, so the batch size follows the load.

**Episode state.** Each interaction object keeps its own episodes. verl 0.7.1's tool agent
loop never calls :meth:`~ESCInteraction.calculate_score` or
:meth:`~ESCInteraction.finalize_interaction`; its interaction object (and so the episode)
goes away with the trajectory. Other callers should call ``finalize_interaction``.

verl is imported only when :class:`ESCInteraction` is first used: this module imports
without it, and ``ESCInteraction`` then raises an ``ImportError`` that names the install.
"""

from __future__ import annotations

import json
import math
import numbers
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from agents.supporter import free_supporter_prompt

from ..core import EpisodeOverError
from ..spaces import MAX_UTTERANCE_CHARS
from ..state import EpisodeState, find_persona
from .batching import EngineBatcher

__all__ = [
    "ENGINE_KEYS",
    "INTERACTION_KEYS",
    "INTERACTION_KWARGS",
    "DEFAULT_SYSTEM_PROMPT",
    "ESCInteraction",
    "UnknownInstanceError",
    "compute_score",
    "dataset_rows",
    "verl_available",
]

#: the interaction config keys passed to :func:`esc_env.build.build_engine` (``action_mode`` is
#: always ``"text"``: the policy writes the supporter's utterance)
ENGINE_KEYS: tuple[str, ...] = (
    "backend", "seeker_backend", "judge_backend", "strategies", "max_turns", "reward", "judges",
    "affect_judge", "affect_design", "seeker_params", "success_threshold", "seeker_emotion",
)

#: the interaction's own config keys, with their defaults:
#:
#: * ``personas``: the persona bank ``persona_id`` is looked up in (as ``ESCEnv(personas=...)``);
#: * ``batch_wait_s``: how long the first request of a micro-batch waits for others (seconds);
#: * ``max_batch``: the most conversations in one engine call;
#: * ``overlong``: a supporter turn over ``MAX_UTTERANCE_CHARS`` characters is cut to that
#:   length (``"truncate"``, reported in the turn's extra ``supporter_truncated``) or raises
#:   (``"error"``);
#: * ``check_opening``: the first user message of ``messages`` must be the episode's opening;
#: * ``empty_turn``: what an empty (or whitespace-only) supporter turn does: ``"error"`` raises
#:   a ``ValueError`` (verl's rollout then stops), ``"end"`` ends the episode without an LLM
#:   call, with reward ``empty_turn_reward`` and an empty seeker reply (extra ``empty_turn``).
INTERACTION_KEYS: dict[str, Any] = {
    "personas": "builtin",
    "batch_wait_s": 0.05,
    "max_batch": 256,
    "overlong": "truncate",
    "check_opening": True,
    "empty_turn": "error",
    "empty_turn_reward": -1.0,
}

#: the keys of a dataset row's ``extra_info.interaction_kwargs`` (``opening`` is optional)
INTERACTION_KWARGS: tuple[str, ...] = ("name", "persona_id", "seed", "opening")

#: the system message :func:`dataset_rows` puts before the seeker's opening: esc-env's supporter
#: prompt with a free choice of strategy (the same in every trainer integration)
DEFAULT_SYSTEM_PROMPT = free_supporter_prompt()

_INSTALL_HINT = 'pip install "esc-env[verl]" (verl==0.7.1: later releases removed verl.interactions)'


def verl_available() -> bool:
    """Whether ``verl.interactions.base.BaseInteraction`` imports here."""
    try:
        from verl.interactions.base import BaseInteraction  # noqa: F401
    except ImportError:
        return False
    return True


class UnknownInstanceError(KeyError, ValueError):
    """An ``instance_id`` that names no running episode of this interaction (a ``KeyError``
    and a ``ValueError``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# ---- the shared engine ------------------------------------------------------------------------
class _Hub:
    """One engine, its persona bank and its micro-batcher (:class:`~esc_env.integrations.batching.EngineBatcher`)."""

    def __init__(self, engine_kwargs: dict, personas: Any, batch_wait_s: float, max_batch: int) -> None:
        from ..build import build_engine, resolve_personas

        self.engine = build_engine(action_mode="text", **engine_kwargs)
        self.personas = resolve_personas(personas)
        self.batcher = EngineBatcher(self.engine, wait_s=batch_wait_s, max_batch=max_batch)


_HUBS: dict[str, _Hub] = {}
_HUBS_LOCK = threading.Lock()


def _hub_for(engine_kwargs: dict, own: dict) -> _Hub:
    key = json.dumps({"engine": engine_kwargs, "personas": own["personas"], "wait": own["batch_wait_s"],
                      "max_batch": own["max_batch"]}, sort_keys=True, default=repr)
    with _HUBS_LOCK:
        if key not in _HUBS:
            _HUBS[key] = _Hub(engine_kwargs, own["personas"], own["batch_wait_s"], own["max_batch"])
        return _HUBS[key]


def _split_config(config: Mapping[str, Any]) -> tuple[dict, dict]:
    """The interaction config as (build_engine arguments, the interaction's own settings)."""
    if not isinstance(config, Mapping):
        raise TypeError(f"the interaction config must be a mapping, got {type(config).__name__}")
    known = set(ENGINE_KEYS) | set(INTERACTION_KEYS) | {"name"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ValueError(f"unknown interaction config key(s) {unknown}; known: {sorted(known)}")
    engine_kwargs = {k: config[k] for k in ENGINE_KEYS if k in config and config[k] is not None}
    own = {k: config.get(k, d) if config.get(k) is not None else d for k, d in INTERACTION_KEYS.items()}
    wait = own["batch_wait_s"]
    if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 0 <= wait <= 10:
        raise ValueError(f"config['batch_wait_s'] must be a number of seconds in [0, 10], got {wait!r}")
    mb = own["max_batch"]
    if isinstance(mb, bool) or not isinstance(mb, int) or mb < 1:
        raise ValueError(f"config['max_batch'] must be a positive int, got {mb!r}")
    if own["overlong"] not in ("truncate", "error"):
        raise ValueError(f"config['overlong'] must be 'truncate' or 'error', got {own['overlong']!r}")
    if not isinstance(own["check_opening"], bool):
        raise ValueError(f"config['check_opening'] must be true or false, got {own['check_opening']!r}")
    if own["empty_turn"] not in ("error", "end"):
        raise ValueError(f"config['empty_turn'] must be 'error' or 'end', got {own['empty_turn']!r}")
    r = own["empty_turn_reward"]
    if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r):
        raise ValueError(f"config['empty_turn_reward'] must be a finite number, got {r!r}")
    return engine_kwargs, own


# ---- the interaction ------------------------------------------------------------------------
@dataclass
class _Episode:
    state: EpisodeState
    rewards: list[float] = field(default_factory=list)
    done: bool = False


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"interaction_kwargs['seed'] must be a non-negative int, got {seed!r}")
    return int(seed)


def _supporter_text(messages: Any) -> str:
    """The supporter's utterance, stripped: the content of ``messages[-1]``, an assistant message
    (``""`` when it is empty or whitespace)."""
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
        raise ValueError(f"messages must be a non-empty list of chat messages, got {messages!r:.200}")
    last = messages[-1]
    role = last.get("role") if isinstance(last, Mapping) else None
    if role != "assistant":
        raise ValueError(f"messages[-1]['role'] must be 'assistant' (the policy's supporter turn), got {role!r}")
    content = last.get("content")
    if not isinstance(content, str):
        raise ValueError(f"messages[-1]['content'] must be the supporter's text (a str), got {type(content).__name__}")
    return content.strip()


def _first_user_text(messages: Sequence[Mapping[str, Any]]) -> str | None:
    for m in messages:
        if isinstance(m, Mapping) and m.get("role") == "user":
            c = m.get("content")
            return c if isinstance(c, str) else None
    return None


class _ESCInteraction:
    """The behaviour of :class:`ESCInteraction`, without verl's base class (see there)."""

    def __init__(self, config: dict[str, Any]) -> None:
        engine_kwargs, own = _split_config(config)
        self.config = config
        self.name: str = config.get("name", "esc")
        self.overlong: str = own["overlong"]
        self.check_opening: bool = own["check_opening"]
        self.empty_turn: str = own["empty_turn"]
        self.empty_turn_reward: float = float(own["empty_turn_reward"])
        self._hub = _hub_for(engine_kwargs, own)
        self._episodes: dict[str, _Episode] = {}
        self._opening: set[str] = set()  # ids whose seeker is opening

    # ---- what the hub holds -----------------------------------------------------------
    @property
    def engine(self):
        """The :class:`esc_env.engine.DialogueEngine` (``action_mode="text"``) shared by every
        interaction built from the same configuration in this process."""
        return self._hub.engine

    @property
    def personas(self):
        """The persona bank ``persona_id`` is looked up in."""
        return self._hub.personas

    @property
    def batch_sizes(self) -> dict[str, list[int]]:
        """The sizes of the shared engine's recent micro-batches: ``{"start": [...], "step": [...]}``
        (one entry per engine call, of the last 10,000 calls)."""
        sizes = self._hub.batcher.batch_sizes
        return {kind: [n for k, n in sizes if k == kind] for kind in ("start", "step")}

    @property
    def instance_ids(self) -> list[str]:
        """The ids of this object's episodes (running or ended, not yet finalized)."""
        return list(self._episodes)

    def _episode(self, instance_id: Any) -> _Episode:
        ep = self._episodes.get(instance_id)
        if ep is None:
            raise UnknownInstanceError(f"instance_id {instance_id!r}: no episode of interaction {self.name!r} has this id "
                                       f"(call start_interaction first; {len(self._episodes)} running)")
        return ep

    # ---- verl's interaction API -------------------------------------------------------
    async def start_interaction(self, instance_id: str | None = None, *, persona_id: Any = None, seed: Any = None,
                                opening: str | None = None, **kwargs: Any) -> str:
        """Open an esc-env episode.

        Args:
            instance_id: verl's request id (a new uuid when ``None``).
            persona_id: the seeker's persona, an id in the ``personas`` bank of the config.
            seed: the episode's seed (a non-negative int): with the same persona and seed, the
                seeker and the judges make the same calls.
            opening: the seeker's opening as the dataset prompt shows it (what
                :func:`dataset_rows` writes). When given, the episode starts from it (one judge
                call); when ``None``, the seeker opens as ``ESCEnv.reset`` does, and the prompt's
                first user message must be that opening.
            **kwargs: verl passes the row's whole ``interaction_kwargs``: only ``name`` (this
                interaction's name) may be there besides the above.

        Returns:
            The instance id.

        Raises:
            ValueError: a missing or bad ``persona_id``/``seed``/``opening``, an unknown key,
                an ``instance_id`` already running, another interaction's ``name``.
            esc_env.state.UnknownPersonaError: ``persona_id`` is not in the bank.
        """
        unknown = sorted(set(kwargs) - {"name"})
        if unknown:
            raise ValueError(f"unknown interaction_kwargs {unknown}; known: {list(INTERACTION_KWARGS)}")
        if "name" in kwargs and kwargs["name"] != self.name:
            raise ValueError(f"interaction_kwargs['name']={kwargs['name']!r} but this interaction is {self.name!r}")
        if persona_id is None:
            raise ValueError("interaction_kwargs['persona_id'] is missing: name the seeker's persona "
                             f"(one of the {len(self.personas)} ids of the config's personas bank)")
        if seed is None:
            raise ValueError("interaction_kwargs['seed'] is missing: give each episode a non-negative int seed")
        seed = _check_seed(seed)
        try:
            persona = find_persona(self.personas, persona_id)
        except KeyError as e:  # UnknownPersonaError: say which field
            raise type(e)(f"interaction_kwargs['persona_id']: {e}") from None
        if opening is not None and (not isinstance(opening, str) or not opening.strip()):
            raise ValueError(f"interaction_kwargs['opening'] must be the seeker's opening (a non-empty str), got {opening!r}")
        if instance_id is None:
            instance_id = uuid.uuid4().hex
        if instance_id in self._episodes or instance_id in self._opening:
            raise ValueError(f"instance_id {instance_id!r} is already running; finalize_interaction it first")
        self._opening.add(instance_id)
        try:
            state = await self._hub.batcher.start(persona, seed, opening)
        finally:
            self._opening.discard(instance_id)
        self._episodes[instance_id] = _Episode(state)
        return instance_id

    async def generate_response(self, instance_id: str, messages: list[dict[str, Any]],
                                **kwargs: Any) -> tuple[bool, str, float, dict[str, Any]]:
        """Step the episode with the supporter's turn, ``messages[-1]["content"]``.

        Args:
            instance_id: the id :meth:`start_interaction` returned.
            messages: the chat so far, ending with the policy's assistant message.
            **kwargs: the row's ``interaction_kwargs`` again (not used).

        Returns:
            ``(done, seeker_reply, reward, extra)``: ``done`` is the env's ``terminated or
            truncated`` (relief, giving up, or ``max_turns``); ``reward`` is the env's reward of
            this turn; ``extra`` has ``reward_terms``, ``terminated``, ``truncated``, ``turn``,
            ``intensity``, ``success``, ``gave_up``, ``episode_return``,
            ``supporter_truncated``, ``empty_turn`` and the env's whole step ``info``
            (``None`` for an empty turn under ``empty_turn: end``, which ends the episode with
            ``empty_turn_reward`` and an empty reply, without an LLM call).

        Raises:
            UnknownInstanceError: no running episode has ``instance_id``.
            EpisodeOverError: the episode has already ended.
            ValueError: ``messages`` does not end with an assistant message, that message is
                empty (under ``empty_turn: error``) or too long (under ``overlong: error``), or
                (with ``check_opening``) the first user message is not the episode's opening.
        """
        ep = self._episode(instance_id)
        if ep.done:
            raise EpisodeOverError(f"instance_id {instance_id!r}: the episode is over "
                                   f"(after {len(ep.rewards)} turns); no more generate_response")
        text = _supporter_text(messages)
        if self.check_opening and not ep.rewards:
            shown, opening = _first_user_text(messages), ep.state.turns[0].text
            if shown is None or shown.strip() != opening.strip():
                raise ValueError(
                    f"instance_id {instance_id!r} (persona {ep.state.persona.id!r}, seed {ep.state.seed}): the prompt's "
                    f"first user message {shown!r:.120} is not the episode's opening {opening!r:.120}; write the rows "
                    "with dataset_rows() from the same config, or set check_opening: false")
        if not text:
            if self.empty_turn == "error":
                raise ValueError(f"messages[-1]['content'] is empty: the policy wrote no supporter utterance "
                                 f"({messages[-1]['content']!r}); set empty_turn: end to end such episodes instead")
            return self._end_empty(ep)
        cut = len(text) > MAX_UTTERANCE_CHARS
        if cut:
            if self.overlong == "error":
                raise ValueError(f"messages[-1]['content'] has {len(text)} characters; the env takes at most "
                                 f"{MAX_UTTERANCE_CHARS} (set overlong: truncate to cut it)")
            text = text[:MAX_UTTERANCE_CHARS].rstrip()
        t = await self._hub.batcher.step(ep.state, text)  # parse_action first: this request's own error
        ep.state = EpisodeState.from_dict(t.state)
        ep.rewards.append(float(t.reward))
        ep.done = bool(t.terminated or t.truncated)
        info = t.info
        extra = {
            "reward_terms": dict(info["reward_terms"]),
            "terminated": bool(t.terminated),
            "truncated": bool(t.truncated),
            "turn": info["turn"],
            "intensity": dict(info["intensity"]),
            "success": info["success"],
            "gave_up": info["gave_up"],
            "episode_return": float(sum(ep.rewards)),
            "supporter_truncated": cut,
            "empty_turn": False,
            "info": info,
        }
        return ep.done, info["seeker_utterance"], float(t.reward), extra

    def _end_empty(self, ep: _Episode) -> tuple[bool, str, float, dict[str, Any]]:
        """``empty_turn: end``: the episode ends here, with ``empty_turn_reward`` and no LLM call."""
        r = self.empty_turn_reward
        ep.rewards.append(r)
        ep.done = True
        x = ep.state.intensity
        extra = {"reward_terms": {"empty_turn": r}, "terminated": True, "truncated": False, "turn": len(ep.rewards),
                 "intensity": {"before": x, "after": x}, "success": False, "gave_up": False,
                 "episode_return": float(sum(ep.rewards)), "supporter_truncated": False, "empty_turn": True, "info": None}
        return True, "", r, extra

    async def calculate_score(self, instance_id: str, **kwargs: Any) -> float:
        """The episode's return so far: the sum of its turns' rewards."""
        return float(sum(self._episode(instance_id).rewards))

    async def finalize_interaction(self, instance_id: str, **kwargs: Any) -> None:
        """Forget the episode."""
        self._episode(instance_id)
        del self._episodes[instance_id]

    def episode_state(self, instance_id: str) -> EpisodeState:
        """The episode's :class:`esc_env.state.EpisodeState` (its turns, intensities, rewards)."""
        return self._episode(instance_id).state


_CLASS: type | None = None


def _interaction_class() -> type:
    global _CLASS
    if _CLASS is None:
        try:
            from verl.interactions.base import BaseInteraction
        except ImportError as e:
            raise ImportError(f"ESCInteraction needs verl's verl.interactions ({e}); {_INSTALL_HINT}") from e

        class ESCInteraction(_ESCInteraction, BaseInteraction):
            """esc-env's seeker and judges as a verl ``BaseInteraction``.

            ``config`` (the ``config:`` of the interaction YAML): the
            :func:`esc_env.build.build_engine` arguments named in :data:`ENGINE_KEYS` (for
            example ``backend``, ``max_turns``, ``reward``, ``seeker_params``), and the settings
            of :data:`INTERACTION_KEYS` (``personas``, ``batch_wait_s``, ``max_batch``,
            ``overlong``, ``check_opening``, ``empty_turn``, ``empty_turn_reward``). verl's
            registry adds ``name``.

            See :meth:`start_interaction`, :meth:`generate_response`, :meth:`calculate_score`
            and :meth:`finalize_interaction`, and the module's docstring for concurrency.
            """

        ESCInteraction.__module__ = __name__
        ESCInteraction.__qualname__ = "ESCInteraction"
        _CLASS = ESCInteraction
    return _CLASS


def __getattr__(name: str) -> Any:
    if name == "ESCInteraction":
        return _interaction_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---- the dataset and the reward -------------------------------------------------------------
def dataset_rows(
    config: Mapping[str, Any],
    persona_ids: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,),
    *,
    split: str = "train",
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    data_source: str = "esc_env",
    agent_name: str = "tool_agent",
) -> list[dict[str, Any]]:
    """verl's dataset rows for esc-env episodes, one per (persona, seed).

    The prompt is ``[system, user: the seeker's opening]``; the opening comes from the same
    seeker :meth:`ESCInteraction.start_interaction` would use (one batched ``seeker.open`` call
    for the personas without a written opening) and is also in
    ``extra_info.interaction_kwargs.opening``, so the episode starts from exactly what the
    policy was shown.

    Args:
        config: the interaction's ``config`` (with its ``name``), as in the interaction YAML.
        persona_ids: ids from the config's persona bank (default: all of them).
        seeds: the episode seeds; every persona is played with each.
        split: written to ``extra_info.split``.
        system_prompt: the system message (``None`` or ``""``: none).
        data_source: the row's ``data_source`` (the reward function sees it).
        agent_name: verl's agent loop for the row (``"tool_agent"`` runs interactions).

    Returns:
        Rows with ``data_source``, ``agent_name``, ``prompt``, ``ability``, ``reward_model``
        (``{"style": "esc_env", "ground_truth": ""}``: verl's reward managers read
        ``ground_truth``) and ``extra_info`` (``index``, ``split``, ``interaction_kwargs``).
    """
    engine_kwargs, own = _split_config(config)
    hub = _hub_for(engine_kwargs, own)
    name = config.get("name", "esc")
    ids = [p.id for p in hub.personas] if persona_ids is None else list(persona_ids)
    personas = []
    for pid in ids:
        try:
            personas.append(find_persona(hub.personas, pid))
        except KeyError as e:
            raise type(e)(f"persona_ids: {e}") from None
    seeds = [_check_seed(s) for s in seeds]
    pairs = [(p, s) for p in personas for s in seeds]
    if not pairs:
        raise ValueError("no rows: give at least one persona id and one seed")
    openings = hub.engine.seeker.open([p for p, _ in pairs], seed=[s for _, s in pairs])
    rows = []
    for i, ((persona, seed), o) in enumerate(zip(pairs, openings)):
        prompt = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [{"role": "user", "content": o.text}]
        rows.append({
            "data_source": data_source,
            "agent_name": agent_name,
            "prompt": prompt,
            "ability": "emotional_support",
            "reward_model": {"style": "esc_env", "ground_truth": ""},
            "extra_info": {
                "index": i,
                "split": split,
                "interaction_kwargs": {"name": name, "persona_id": persona.id, "seed": seed, "opening": o.text},
            },
        })
    return rows


def compute_score(data_source: str, solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None = None,
                  **kwargs: Any) -> float:
    """verl's ``custom_reward_function``: the episode's return, the sum of ``turn_scores``.

    verl 0.7.1's reward loop puts the agent loop's extra fields into ``extra_info``; the tool
    agent loop's ``turn_scores`` are the rewards :meth:`ESCInteraction.generate_response`
    returned, one per supporter turn. An episode verl cut before its first seeker reply
    (``response_length``) has no turn and scores 0.

    Raises:
        ValueError: ``extra_info`` has no ``turn_scores`` (the rollout ran without the
            interaction: set ``multi_turn.enable`` and ``interaction_config_path``).
    """
    scores = (extra_info or {}).get("turn_scores")
    if scores is None:
        raise ValueError(f"extra_info['turn_scores'] is missing for data_source {data_source!r}: run verl's multi-turn "
                         "rollout with the esc interaction (multi_turn.enable=True, interaction_config_path=...)")
    return float(sum(float(s) for s in scores))
