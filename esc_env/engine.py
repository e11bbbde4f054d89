"""The batched dialogue engine behind :class:`ESCEnv`, :class:`ESCVectorEnv` and search.

Everything here works on *lists* of episode states, so that one supporter turn of N
conversations costs one ``generate`` call for the supporter, one for the seeker and one
``score`` call per judge, whatever N is.  The single env is the case N = 1.

``EpisodeState`` is plain data; ``transition`` never mutates its input states, which is
what makes snapshots and tree search simple.
"""

from __future__ import annotations

import copy
import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from agents.backends.base import LLMBackend
from agents.dialogue import Turn, format_dialogue
from agents.emotion import EmotionTracker, EmotionUpdate, intensity_from_level
from agents.personas import Persona
from agents.strategies import StrategySet

from .core import EpisodeOverError, Transition
from .rewards import RewardConfig, RewardFn, reward_terms
from .spaces import MAX_UTTERANCE_CHARS, make_observation

_SEED_SPACE = 2**31 - 1


@dataclass
class EpisodeState:
    """One conversation in progress.

    Attributes:
        persona: the seeker's persona.
        turns: the dialogue so far (starts with the seeker's opening).
        intensities: judged intensity after the opening and after every supporter turn.
        strategies: strategy index of every supporter turn (``-1`` where none was given).
        rewards: reward of every step.
        seed: the episode seed; the seed of each LLM call is derived from it and the turn,
            so a restored state continues exactly as the original.
        success, gave_up, truncated: how the episode ended (all ``False`` while running).
        hidden: the seeker model's hidden variables, never shown to the supporter: with
            ``seeker_emotion``, ``"emotion"`` (the level after the opening and after every
            supporter turn), ``"emotion_reasons"`` (the seeker's reason for each change) and
            ``"emotion_unreadable"`` (turns whose output could not be read).
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
        return self.intensities[-1]

    @property
    def done(self) -> bool:
        return self.success or self.gave_up or self.truncated

    def call_seed(self, role_offset: int) -> int:
        return (self.seed * 1_000_003 + self.turn * 7919 + role_offset) % _SEED_SPACE

    def to_dict(self) -> dict:
        d = {
            "persona": self.persona.to_dict(),
            "turns": [t.to_dict() for t in self.turns],
            "intensities": [float(x) for x in self.intensities],
            "seed": int(self.seed),
            "strategies": [int(s) for s in self.strategies],
            "rewards": [float(r) for r in self.rewards],
            "success": self.success,
            "gave_up": self.gave_up,
            "truncated": self.truncated,
        }
        if self.hidden:
            d["hidden"] = copy.deepcopy(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EpisodeState":
        try:
            return cls(
                persona=Persona.from_dict(d["persona"]),
                turns=[Turn.from_dict(t) for t in d["turns"]],
                intensities=[float(x) for x in d["intensities"]],
                seed=int(d["seed"]),
                strategies=[int(s) for s in d.get("strategies", [])],
                rewards=[float(r) for r in d.get("rewards", [])],
                success=bool(d.get("success", False)),
                gave_up=bool(d.get("gave_up", False)),
                truncated=bool(d.get("truncated", False)),
                hidden=copy.deepcopy(dict(d.get("hidden", {}))),
            )
        except KeyError as e:
            raise ValueError(f"episode state is missing the key {e.args[0]!r}") from None


@dataclass
class ParsedAction:
    strategy: int | None
    utterance: str | None


class _RoleTimer:
    """Measures the backend usage of one role's call."""

    def __init__(self, agent: Any):
        backend = getattr(agent, "backend", None)
        self.usage = getattr(backend, "usage", None)

    def _tokens(self) -> tuple[int, int]:
        return (self.usage.prompt_tokens, self.usage.completion_tokens) if self.usage is not None else (0, 0)

    def __enter__(self):
        self.t0 = time.perf_counter()
        self.start = self._tokens()
        return self

    def __exit__(self, *exc):
        end = self._tokens()
        self.result = {
            "seconds": time.perf_counter() - self.t0,
            "prompt_tokens": end[0] - self.start[0],
            "completion_tokens": end[1] - self.start[1],
        }
        return False


def _share(usage: dict, n: int) -> dict:
    """This conversation's share of a batched call."""
    return {k: (v / n if n else 0.0) for k, v in usage.items()}


class DialogueEngine:
    """Runs supporter turns for batches of conversations.

    Args:
        seeker: a :class:`agents.seeker.SeekerAgent`.
        supporter: a :class:`agents.supporter.SupporterAgent` (writes utterances in
            ``strategy`` mode).
        affect_judge: any object with ``judge(dialogues) -> np.ndarray`` of intensities
            (``None`` with ``emotion``).
        strategies: the strategy set; action ``i`` is ``strategies[i]``.
        action_mode: ``"strategy"``, ``"text"`` or ``"strategy+text"``.
        max_turns: supporter turns before truncation.
        reward: the default reward's weights, and an optional user reward function.
        rubric_judge, outcome_judge: optional extra judges, run every step when given.
        success_threshold: if set, a judged intensity at or below it also counts as relief.
        emotion: an :class:`agents.emotion.EmotionTracker`: the seeker keeps its own emotion
            level (0-100), which replaces the affect judge as the affective state
            (``intensity = 5 - 4 * level / 100``); its thresholds, not the seeker's markers,
            end the episode.  One more ``generate`` call per step (before the seeker's reply).
        timings: also report wall-clock seconds per role in ``info["usage"]`` (default off:
            seconds are never the same twice, and ``info`` must repeat exactly for the same seed
            and action, as Gymnasium's ``check_env`` asserts).  Whatever this is, the seconds of
            the last batched call of every role are in :attr:`last_seconds`.
    """

    ROLE_SUPPORTER, ROLE_SEEKER, ROLE_EMOTION = 1, 2, 3

    def __init__(
        self,
        seeker,
        supporter,
        affect_judge,
        strategies: StrategySet,
        action_mode: str = "strategy",
        max_turns: int = 10,
        reward: RewardConfig | None = None,
        reward_fn: RewardFn | None = None,
        rubric_judge=None,
        outcome_judge=None,
        success_threshold: float | None = None,
        timings: bool = False,
        emotion: EmotionTracker | None = None,
    ) -> None:
        if emotion is None and affect_judge is None:
            raise ValueError("DialogueEngine needs an affect_judge or an emotion tracker")
        if emotion is not None and success_threshold is not None:
            raise ValueError("success_threshold applies to the affect judge; with seeker_emotion set its "
                             "success_at / failure_below instead")
        self.emotion = emotion
        self.timings = timings
        #: wall-clock seconds of the last batched call of each role (outside ``info``)
        self.last_seconds: dict[str, float] = {}
        self.seeker = seeker
        self.supporter = supporter
        self.affect_judge = affect_judge
        self.rubric_judge = rubric_judge
        self.outcome_judge = outcome_judge
        self.strategies = strategies
        self.action_mode = action_mode
        self.max_turns = max_turns
        self.reward = reward or RewardConfig()
        self.reward_fn = reward_fn
        self.success_threshold = success_threshold

    # ---- actions --------------------------------------------------------------------
    def parse_action(self, action: Any) -> ParsedAction:
        """Check one action against the action mode; a ``ValueError`` names what was wrong."""
        n = len(self.strategies)
        if self.action_mode == "strategy":
            return ParsedAction(self._strategy_index(action, n), None)
        if self.action_mode == "text":
            return ParsedAction(None, self._utterance(action))
        if not isinstance(action, dict) or set(action) != {"strategy", "utterance"}:
            raise ValueError(
                f"invalid action {action!r}: in 'strategy+text' mode an action is a dict "
                "{'strategy': int, 'utterance': str}"
            )
        return ParsedAction(self._strategy_index(action["strategy"], n), self._utterance(action["utterance"]))

    @staticmethod
    def _strategy_index(action: Any, n: int) -> int:
        if isinstance(action, np.ndarray) and action.shape == ():
            action = action.item()
        if isinstance(action, (bool, np.bool_)) or not isinstance(action, numbers.Integral):
            raise ValueError(f"invalid action {action!r}: expected a strategy index, an int in [0, {n - 1}]")
        if not 0 <= int(action) < n:
            raise ValueError(f"invalid action {action!r}: strategy index must be in [0, {n - 1}]")
        return int(action)

    @staticmethod
    def _utterance(text: Any) -> str:
        if not isinstance(text, str):
            raise ValueError(f"invalid action {text!r}: expected the supporter's utterance as a str")
        if not text.strip():
            raise ValueError("invalid action '': the supporter's utterance must not be empty")
        if len(text) > MAX_UTTERANCE_CHARS:
            raise ValueError(
                f"invalid action (a str of {len(text)} characters): utterances are limited to {MAX_UTTERANCE_CHARS} characters"
            )
        return text.strip()

    # ---- episode start --------------------------------------------------------------
    def start(self, personas: Sequence[Persona], seeds: Sequence[int]) -> list[EpisodeState]:
        """Open N conversations: the seekers speak first, then the judge reads them."""
        states = self.open_unjudged(personas, seeds)
        if self.emotion is None and states:
            self._judge_openings(states, self.affect_judge.judge([st.turns for st in states]))
        return states

    def open_unjudged(self, personas: Sequence[Persona], seeds: Sequence[int]) -> list[EpisodeState]:
        """The seekers' openings (one generate call at most); intensities not judged yet."""
        if not personas:
            return []
        openings = self.seeker.open(list(personas), seed=[int(s) for s in seeds])
        states = [
            EpisodeState(persona=p, turns=[Turn("seeker", o.text)], intensities=[float(p.initial_intensity)], seed=int(s))
            for p, o, s in zip(personas, openings, seeds)
        ]
        if self.emotion is not None:  # the seeker's own level is known from the start: nothing to judge
            for st in states:
                self._start_emotion(st, self.emotion.config.start_level(st.persona))
        return states

    @staticmethod
    def _start_emotion(st: EpisodeState, level: float) -> None:
        st.intensities[0] = intensity_from_level(level)
        st.hidden = {"emotion": [float(level)], "emotion_reasons": [], "emotion_unreadable": 0}

    @staticmethod
    def _judge_openings(states: Sequence[EpisodeState], judged) -> None:
        for st, x in zip(states, judged):
            if np.isfinite(x):
                st.intensities[0] = float(np.clip(x, 1.0, 5.0))

    def states_from_dialogues(
        self, personas: Sequence[Persona], dialogues: Sequence[Sequence[Turn]], seeds: Sequence[int]
    ) -> list[EpisodeState]:
        """States from dialogue prefixes (each ending with a seeker turn); one judge call."""
        for i, d in enumerate(dialogues):
            if not d or d[-1].speaker != "seeker":
                raise ValueError(f"dialogue {i}: a prefix must be non-empty and end with a seeker turn")
        if self.emotion is not None:  # no judge: each prefix starts at the configured level
            judged = [intensity_from_level(self.emotion.config.start_level(p)) for p in personas]
        else:
            judged = self.affect_judge.judge([list(d) for d in dialogues])
        out = []
        for p, d, s, x in zip(personas, dialogues, seeds, judged):
            sup = [t for t in d if t.speaker == "supporter"]
            idx = [self.strategies.index(t.strategy) if t.strategy and t.strategy in self.strategies.names else -1 for t in sup]
            st = EpisodeState(persona=p, turns=list(d), intensities=[float(x)] * (len(sup) + 1), seed=int(s),
                              strategies=idx, rewards=[0.0] * len(sup))
            if self.emotion is not None:
                level = self.emotion.config.start_level(p)
                self._start_emotion(st, level)
                st.intensities = [intensity_from_level(level)] * (len(sup) + 1)
                st.hidden["emotion"] = [float(level)] * (len(sup) + 1)
                st.hidden["emotion_reasons"] = [""] * len(sup)
            out.append(st)
        return out

    # ---- one supporter turn for N conversations -----------------------------------
    def transition(
        self, states: Sequence[EpisodeState], actions: Sequence[Any], starting: Sequence[EpisodeState] = ()
    ) -> list[Transition]:
        """Apply one action to each state; returns new states, never mutating the inputs.

        ``starting`` are freshly opened, not yet judged episodes (from
        :meth:`open_unjudged`, as a vector env's autoreset makes them): the judge reads
        them in the same batched call, and their ``intensities[0]`` is set in place.
        """
        if len(states) != len(actions):
            raise ValueError(f"got {len(states)} states and {len(actions)} actions")
        parsed = [self.parse_action(a) for a in actions]  # all errors before any LLM call
        for st in states:
            if st.done:
                raise EpisodeOverError("this episode is over; call reset() before step()")
        n = len(states)
        if n == 0:
            if starting and self.emotion is None:
                self._judge_openings(starting, self.affect_judge.judge([st.turns for st in starting]))
            return []
        new = [copy.deepcopy(st) for st in states]
        usage: dict[str, dict] = {}
        timers: dict[str, _RoleTimer] = {}

        # 1. the supporter speaks (the LLM writes only where the agent gave no text)
        need = [i for i, a in enumerate(parsed) if a.utterance is None]
        utterances = [a.utterance for a in parsed]
        if need:
            names = [self.strategies[parsed[i].strategy].name for i in need]
            with _RoleTimer(self.supporter) as t:
                timers["supporter"] = t
                written = self.supporter.respond([new[i].turns for i in need], names, seed=[new[i].call_seed(self.ROLE_SUPPORTER) for i in need])
            usage["supporter"] = _share(t.result, len(need))
            for i, text in zip(need, written):
                utterances[i] = text
        for st, a, u in zip(new, parsed, utterances):
            label = self.strategies[a.strategy].name if a.strategy is not None else None
            st.turns.append(Turn("supporter", u, label))
            st.strategies.append(a.strategy if a.strategy is not None else -1)

        # 2. the seeker's own emotion level moves (with seeker_emotion), then the seeker answers
        updates: list[EmotionUpdate] | None = None
        if self.emotion is not None:
            with _RoleTimer(self.emotion) as t:
                timers["emotion"] = t
                updates = self.emotion.update([st.persona for st in new], [st.turns for st in new],
                                              [st.hidden["emotion"][-1] for st in new], seed=[st.call_seed(self.ROLE_EMOTION) for st in new])
            usage["emotion"] = _share(t.result, n)
            for st, u in zip(new, updates):
                st.hidden["emotion"].append(u.level)
                st.hidden["emotion_reasons"].append(u.reason)
                st.hidden["emotion_unreadable"] = st.hidden.get("emotion_unreadable", 0) + int(not u.parsed)
        felt = [intensity_from_level(u.level) for u in updates] if updates is not None else None
        with _RoleTimer(self.seeker) as t:
            timers["seeker"] = t
            replies = self.seeker.reply([st.persona for st in new], [st.turns for st in new], seed=[st.call_seed(self.ROLE_SEEKER) for st in new],
                                        intensities=felt)
        usage["seeker"] = _share(t.result, n)
        for st, r in zip(new, replies):
            st.turns.append(Turn("seeker", r.text))

        # 3. the judges read the dialogues (the affect judge only when there is no emotion level)
        dialogues = [st.turns for st in new]
        if updates is not None:
            intensity = np.asarray(felt, dtype=np.float64)
        else:
            with _RoleTimer(self.affect_judge) as t:
                timers["judge"] = t
                judged = np.asarray(self.affect_judge.judge(dialogues + [st.turns for st in starting]), dtype=np.float64)
            intensity = judged[:n]
            self._judge_openings(starting, judged[n:])
            usage["judge"] = _share(t.result, n + len(starting))
        rubric = outcome = None
        if self.rubric_judge is not None:
            with _RoleTimer(self.rubric_judge) as t:
                timers["rubric_judge"] = t
                rubric = self.rubric_judge.judge([st.turns[:-1] for st in new], [st.turns[-2].strategy for st in new])
            usage["rubric_judge"] = _share(t.result, n)
        if self.outcome_judge is not None:
            with _RoleTimer(self.outcome_judge) as t:
                timers["outcome_judge"] = t
                outcome = self.outcome_judge.judge(dialogues)
            usage["outcome_judge"] = _share(t.result, n)

        self.last_seconds = {role: float(t.result["seconds"]) for role, t in timers.items()}

        # 4. rewards and the end of episodes
        out = []
        for i, (st, r) in enumerate(zip(new, replies)):
            before = st.intensity
            after = float(np.clip(intensity[i], 1.0, 5.0)) if np.isfinite(intensity[i]) else before
            st.intensities.append(after)
            judges: dict[str, Any] = {"affect": after}
            if updates is not None:  # the thresholds on the seeker's own level decide
                cfg, level = self.emotion.config, st.hidden["emotion"][-1]
                success = level >= cfg.success_at
                gave_up = level < cfg.failure_below and not success
                judges["emotion"] = updates[i].info()
            else:
                success = bool(r.relieved) or (self.success_threshold is not None and after <= self.success_threshold)
                gave_up = bool(r.gave_up) and not success
            st.success, st.gave_up = success, gave_up
            if rubric is not None:
                judges["rubric"] = dict(rubric[i])
            if outcome is not None:
                judges["outcome"] = dict(outcome[i])
            terms = reward_terms(
                self.reward, before, after, success, gave_up,
                rubric=judges.get("rubric"), outcome=judges["outcome"]["value"] if outcome is not None else None,
            )
            st.truncated = not (success or gave_up) and len(st.rewards) + 1 >= self.max_turns
            info = {
                "strategy": st.turns[-2].strategy,
                "supporter_utterance": st.turns[-2].text,
                "seeker_utterance": r.text,
                "intensity": {"before": before, "after": after},
                "success": success,
                "gave_up": gave_up,
                "turn": len(st.rewards) + 1,
                "persona_id": st.persona.id,
                "judges": judges,
                "reward_terms": terms,
                "usage": {role: {k: v for k, v in u.items() if self.timings or k != "seconds"} for role, u in usage.items()},
            }
            reward = float(sum(terms.values())) if self.reward_fn is None else float(self.reward_fn(info))
            if not np.isfinite(reward):
                raise ValueError(f"the reward function returned {reward!r}; rewards must be finite")
            st.rewards.append(reward)
            out.append(Transition(st.to_dict(), self.observation(st), reward, success or gave_up, st.truncated, info))
        return out

    # ---- observations ---------------------------------------------------------------
    def observation(self, st: EpisodeState) -> dict:
        last = st.strategies[-1] if st.strategies and st.strategies[-1] >= 0 else len(self.strategies)
        return make_observation(format_dialogue(st.turns), st.turn, st.intensity, last)

    def reset_info(self, st: EpisodeState) -> dict:
        judges: dict[str, Any] = {"affect": st.intensity}
        if self.emotion is not None:
            judges["emotion"] = EmotionUpdate(st.hidden["emotion"][-1], 0.0, "", "").info()
        return {"persona_id": st.persona.id, "intensity": {"before": st.intensity, "after": st.intensity}, "turn": 0,
                "seeker_utterance": st.turns[0].text, "judges": judges}
