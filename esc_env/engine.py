"""The batched dialogue engine behind :class:`ESCEnv`, :class:`ESCVectorEnv` and search.

Everything here works on *lists* of episode states, so that one supporter turn of N
conversations costs one ``generate`` call for the supporter, one for the seeker and one
``score`` call per judge, whatever N is.  The single env is the case N = 1.

``EpisodeState`` is plain data; ``transition`` never mutates its input states, which is
what makes snapshots and tree search simple.
"""

from __future__ import annotations

import copy
import time
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from agents.judges.base import check_judge, report
from agents.dialogue import Turn, format_dialogue
from agents.emotion import EmotionTracker, EmotionUpdate, intensity_from_level
from agents.personas import Persona
from agents.scales import INTENSITY_HIGH, INTENSITY_LOW
from agents.strategies import StrategySet

from .core import EpisodeOverError, ResetInfo, Transition
from .rewards import RewardConfig, RewardFn, reward_terms
from .spaces import make_observation
from .state import EpisodeState, ParsedAction, parse_action, start_info

__all__ = ["DialogueEngine", "EpisodeState", "ParsedAction"]  # the state types live in esc_env.state


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


def _judge_mapping(judges: Mapping[str, Any] | None, **slots: Any) -> dict[str, Any]:
    """``judges`` as a checked dict, with the deprecated ``rubric_judge``/``outcome_judge`` slots in it."""
    if judges is not None and not isinstance(judges, Mapping):
        raise TypeError(f"judges must be a mapping name -> judge, got {type(judges).__name__}")
    out = dict(judges or {})
    for slot, judge in slots.items():
        if judge is None:
            continue
        name = slot.removesuffix("_judge")
        warnings.warn(f"DialogueEngine({slot}=...) is deprecated; pass judges={{{name!r}: ...}}",
                      DeprecationWarning, stacklevel=3)
        if name in out:
            raise ValueError(f"judge {name!r} given twice: as {slot}= and in judges")
        out[name] = judge
    for name, judge in out.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"judge names must be non-empty strings, got {name!r}")
        check_judge(name, judge)
    return out


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
        reward: the default reward's weights (one per judge in ``reward.judge_weights``), and an
            optional user reward function.
        judges: name -> judge (:class:`agents.judges.base.Judge`): run every step, in order, each
            one batched call over the N dialogues; the result for each dialogue is in
            ``info["judges"][name]``, ``weight * judge.reward(result)`` in
            ``info["reward_terms"][name]`` and the usage in ``info["usage"][name + "_judge"]``.
            The affective state (``affect_judge`` / ``emotion``) is not one of them.
        rubric_judge, outcome_judge: deprecated: ``judges={"rubric": ..., "outcome": ...}``.
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

    @property
    def rubric_judge(self) -> Any:
        """``judges.get("rubric")`` (the engine's former slot; read-only)."""
        return self.judges.get("rubric")

    @property
    def outcome_judge(self) -> Any:
        """``judges.get("outcome")`` (the engine's former slot; read-only)."""
        return self.judges.get("outcome")

    @property
    def rubric_weights(self) -> dict[str, float]:
        """The dimension weights that score the ``"rubric"`` judge (see
        :func:`esc_env.rewards.effective_rubric_weights`); AFlow's search reads them here."""
        return self.reward.rubric_weights_for(self.judges.get("rubric"))

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
        judges: Mapping[str, Any] | None = None,
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
        #: name -> judge, run every step in this order (see ``judges`` above)
        self.judges: dict[str, Any] = _judge_mapping(judges, rubric_judge=rubric_judge, outcome_judge=outcome_judge)
        self.strategies = strategies
        self.action_mode = action_mode
        self.max_turns = max_turns
        self.reward = reward or RewardConfig()
        self.reward.check_judges(self.judges)
        self.reward_fn = reward_fn
        self.success_threshold = success_threshold

    # ---- actions --------------------------------------------------------------------
    def parse_action(self, action: Any) -> ParsedAction:
        """Check one action against the action mode (:func:`esc_env.state.parse_action`)."""
        return parse_action(action, self.action_mode, self.strategies.names)

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
                st.intensities[0] = float(np.clip(x, INTENSITY_LOW, INTENSITY_HIGH))

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
        extra: dict[str, Sequence[Any]] = {}
        for name, judge in self.judges.items():
            with _RoleTimer(judge) as t:
                timers[f"{name}_judge"] = t
                extra[name] = list(judge.judge([list(d) for d in dialogues]))
            if len(extra[name]) != n:
                raise ValueError(f"judge {name!r} returned {len(extra[name])} results for {n} dialogues")
            usage[f"{name}_judge"] = _share(t.result, n)

        self.last_seconds = {role: float(t.result["seconds"]) for role, t in timers.items()}

        # 4. rewards and the end of episodes
        out = []
        for i, (st, r) in enumerate(zip(new, replies)):
            before = st.intensity
            after = float(np.clip(intensity[i], INTENSITY_LOW, INTENSITY_HIGH)) if np.isfinite(intensity[i]) else before
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
            values = {}
            for name, results in extra.items():
                judges[name] = report(results[i])
                values[name] = self.reward.judge_value(name, self.judges[name], results[i])
            terms = reward_terms(self.reward, before, after, success, gave_up, judge_values=values)
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
        return make_observation(format_dialogue(st.turns), st.turn, st.intensity, st.last_strategy(len(self.strategies)))

    def reset_info(self, st: EpisodeState) -> ResetInfo:
        judges: dict[str, Any] = {"affect": st.intensity}
        if self.emotion is not None:
            judges["emotion"] = EmotionUpdate(st.hidden["emotion"][-1], 0.0, "", "").info()
        return start_info(st, judges)
