"""``esc_env/ESC-v0`` and ``esc_env/ESCText-v0``: emotional support with an LLM seeker."""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium as gym
import numpy as np

from agents.dialogue import Turn, format_dialogue
from agents.personas import Persona

from .build import build_engine, resolve_personas
from .core import EnvState, EpisodeOverError, Observation, ResetInfo, StepInfo, Transition
from .spaces import action_space, observation_space
from .state import EpisodeState, choose_persona


class ESCEnv(gym.Env):
    """
    ## Description

    A multi-turn emotional-support conversation in which **the agent is the supporter**.
    A help-seeker, played by an LLM from a persona (a problem, an emotion, an initial
    intensity, private background facts revealed gradually, style traits), opens the
    conversation.  At every step the agent chooses a support strategy (and/or writes the
    utterance), the seeker answers, and a judge estimates the seeker's emotional intensity on
    ESConv's 1-5 survey scale (by default a small model trained on ESConv seekers' own ratings,
    or a prompted LLM judge: see `affect_judge`).  The reward comes from how that intensity moves.
    With `seeker_emotion` (e.g. `"sage"`) the seeker instead keeps its own emotion level, 0-100,
    and that level is the affective state (RLVER / SAGE style; see `agents.emotion`).

    Every LLM call goes through one shared backend (``"embedded"``: SmolLM2-135M-Instruct,
    shipped with the package), or one per role.  ``gymnasium.make_vec`` gives the batched
    :class:`esc_env.vector.ESCVectorEnv`, which makes one backend call per role per step for
    all its conversations.

    ## Action Space

    | action_mode       | space                                                        |
    |-------------------|--------------------------------------------------------------|
    | `"strategy"`      | `Discrete(n_strategies)`: the supporter LLM writes the utterance |
    | `"text"`          | `UnicodeText(1..1000)`: the agent's own utterance             |
    | `"strategy+text"` | `Dict(strategy=Discrete(n), utterance=UnicodeText(1..1000))`  |

    Strategy sets: `"esconv"` (Question, Restatement or Paraphrasing, Reflection of
    feelings, Self-disclosure, Affirmation and Reassurance, Providing Suggestions,
    Information, Others) or `"aflow"` (8 strategies), or your own.

    ## Observation Space

    A `Dict`:

    | key             | space                  | meaning                                             |
    |-----------------|------------------------|-----------------------------------------------------|
    | `dialogue`      | `UnicodeText(0..16000)`| `Seeker: ...` / `Supporter: ...` lines so far (tail) |
    | `turn`          | `Discrete(max_turns+1)`| supporter turns taken                               |
    | `intensity`     | `Box(1, 5, (1,))`      | the judge's latest intensity estimate               |
    | `last_strategy` | `Discrete(n+1)`        | last strategy index (`n`: none yet)                 |

    The persona is hidden.  Stable-Baselines3 needs numpy observations, so its `check_env`
    rejects the `dialogue` text; `esc_env.wrappers.EncodedObservation` turns the observation
    into a vector, and `EncodedObservation(gym.make("esc_env/ESC-v0"), ...)` passes SB3's
    checker.  `ESCText-v0` is not an SB3 env at all: its action is a string, and SB3's
    algorithms act only in Box/Discrete/MultiDiscrete/MultiBinary spaces.  Gymnasium's own
    `check_env` passes on every registered id built with no options.

    ## Rewards

    With `I_t` the judged intensity after step `t` (see `esc_env.rewards`)::

        r_t = (I_{t-1} - I_t) / 4 + 1.0 * [relieved] - 1.0 * [gave up]

    With `seeker_emotion`, `I_t = 5 - 4 * L_t / 100` for the seeker's level `L_t`, so the
    first term is `(L_t - L_{t-1}) / 100`.
    Weights are set with `reward=RewardConfig(...)` (or a dict); optional terms add rubric
    scores (AFlow's weights) or PPDPP's outcome.  `reward=callable(info) -> float`
    replaces the formula.  Every term is in `info["reward_terms"]`.

    ## Starting State

    A persona is drawn from the persona bank with the env's RNG (or chosen by
    `options={"persona_id": ...}` / `options={"persona": Persona(...)}`).  The seeker
    opens (the persona's opening utterance, or one the LLM writes) and the judge gives
    the starting intensity.

    ## Episode End

    - Termination: the seeker signals relief (success), or gives up (failure); also
      success when `success_threshold` is set and the judged intensity falls to it.
    - With `seeker_emotion`: success when the level reaches `success_at`, failure when it
      falls below `failure_below` (`sage`: 100 and 10); the seeker's markers and
      `success_threshold` do not apply.
    - Truncation: `max_turns` supporter turns (default 10).
    Stepping after the end raises `EpisodeOverError`.

    ## Info

    `reset` and `step` return an `esc_env.core.StepInfo` (its docstring describes every
    key; `esc_env.core.INFO_KEYS` lists them).  `info` is reproducible: the same seed and actions give the same `info`.  The seeker's reasons for
    its emotion changes are never in `info` or the observation (they are in
    `get_state()["episode"]["hidden"]`).

    ## Arguments

    - `backend`: spec string (`"embedded"`, `"hf:PATH"`, `"openai:URL#model"`,
      `"vllm:MODEL"`) or an `LLMBackend`; shared by all roles unless
      `seeker_backend`/`judge_backend`/`supporter_backend` are given.
    - `personas`: `"builtin"`, `"esconv:valid"`, `"esconv:train"`, a persona file path, a
      `PersonaBank` or a list of `Persona`.
    - `strategies`: `"esconv"`, `"aflow"` or a `StrategySet`.
    - `action_mode`: `"strategy"`, `"text"` or `"strategy+text"`.
    - `max_turns`: supporter turns per episode (default: the `seeker_emotion` preset's, else 10).
    - `reward`: `RewardConfig`, dict of its fields, or `callable(info) -> float`.
    - `judges`: more judges run every step: names from `("affect", "rubric", "outcome")`, or a
      mapping name -> judge (any `agents.judges.Judge`, or a built-in judge's name:
      `{"rubric": "rubric", "mine": MyJudge()}`); each result is in `info["judges"][name]`, and
      `RewardConfig(judge_weights={name: w})` adds `w * judge.reward(result)` (weight 0: reported only).
    - `affect_judge`: `"auto"` (default: the calibrated judge when the `encoder` extra is
      installed, else the prompted one), `"prompted"` (`AffectJudge` on the judge backend),
      `"calibrated"` / `"calibrated:NAME_OR_PATH"` (`CalibratedAffectJudge`, trained on ESConv's
      survey ratings), or any object with `judge(dialogues) -> array`. The env's
      `affect_judge` attribute is the judge in use (`None` with `seeker_emotion`).
    - `affect_design`: design of the prompted judge (implies `"prompted"` under `"auto"`).
    - `seeker_params`, `supporter_params`: `GenerationParams` (or dicts) for the agents;
      `{"temperature": 0}` makes every episode deterministic.
    - `success_threshold`: judged intensity that also counts as relief (default off).
    - `timings`: also put wall-clock seconds per role into `info["usage"]` (default `False`,
      which keeps `info` reproducible; the last step's seconds per role are always in
      `env.unwrapped.engine.last_seconds`).
    - `seeker_emotion`: the seeker keeps its own 0-100 emotion level, which replaces the affect
      judge: `"sage"` (start 40, change within +-10 per turn, success at 100, failure below 10,
      10 turns), `True` (start from the persona's intensity), a dict of
      `agents.emotion.EmotionConfig` fields (with an optional `"preset"`), or an `EmotionConfig`.
      One more generate call per step.
    - `render_mode`: `"ansi"` (string) or `"human"` (printed).

    ## Examples

    ```python
    >>> import gymnasium as gym, esc_env
    >>> env = gym.make("esc_env/ESC-v0", max_turns=3, render_mode="ansi")
    >>> obs, info = env.reset(seed=0)
    >>> obs, reward, terminated, truncated, info = env.step(0)   # ask a question
    >>> print(env.render())
    ```
    """

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 1}

    def __init__(
        self,
        backend: Any = "embedded",
        *,
        personas: Any = "builtin",
        strategies: Any = "esconv",
        action_mode: str = "strategy",
        max_turns: int | None = None,
        render_mode: str | None = None,
        **engine_kwargs: Any,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.engine = build_engine(
            backend, strategies=strategies, action_mode=action_mode, max_turns=max_turns, **engine_kwargs
        )
        self.personas = resolve_personas(personas)
        self.strategies = self.engine.strategies
        self.affect_judge = self.engine.affect_judge
        self.action_mode = action_mode
        self.max_turns = self.engine.max_turns
        self.render_mode = render_mode

        self.action_space = action_space(action_mode, len(self.strategies))
        self.observation_space = observation_space(len(self.strategies), self.engine.max_turns)
        self.state: EpisodeState | None = None

    # ---- Gymnasium API --------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Observation, ResetInfo]:
        """Start an episode; ``options``: ``{"persona_id": str}`` or ``{"persona": Persona}``
        (see :func:`esc_env.state.choose_persona`)."""
        super().reset(seed=seed)
        persona = choose_persona(self.personas, options, self.np_random)
        episode_seed = int(self.np_random.integers(2**31 - 1))
        self.state = self.engine.start([persona], [episode_seed])[0]
        if self.render_mode == "human":
            self.render()
        return self.engine.observation(self.state), self.engine.reset_info(self.state)

    def step(self, action) -> tuple[Observation, float, bool, bool, StepInfo]:
        if self.state is None:
            raise EpisodeOverError("call reset() before step()")
        if self.state.done:
            raise EpisodeOverError("this episode is over; call reset() before step()")
        t = self.engine.transition([self.state], [action])[0]
        self.state = EpisodeState.from_dict(t.state)
        if self.render_mode == "human":
            self.render()
        return t.observation, t.reward, t.terminated, t.truncated, t.info

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() was called without a render_mode; pass render_mode='ansi' or 'human'")
            return None
        text = render_transcript(self.state) if self.state is not None else ""
        if self.render_mode == "human":
            print(text, flush=True)
            return None
        return text

    # ---- snapshots and search -------------------------------------------------------
    def get_state(self) -> EnvState:
        """The episode and the env's RNG as JSON-serialisable data."""
        if self.state is None:
            raise EpisodeOverError("call reset() before get_state()")
        return {"episode": self.state.to_dict(), "np_random": _rng_state(self.np_random)}

    def set_state(self, state: dict) -> None:
        """Restore a state from :meth:`get_state` (or an episode from :meth:`transition`, or an
        :class:`EpisodeState`); the env then continues exactly as the original."""
        self.state = EpisodeState.coerce(state)
        if isinstance(state, dict) and "np_random" in state:
            self.np_random.bit_generator.state = state["np_random"]

    def transition(self, states: Sequence[dict], actions: Sequence[Any]) -> list[Transition]:
        """Next states of many (state, action) pairs in one batched call per role.

        A pure function: the env's own episode is not touched.  ``states`` are dicts from
        :meth:`get_state` or from earlier transitions (or :class:`EpisodeState` objects).
        """
        episodes = [EpisodeState.coerce(s) for s in states]
        return self.engine.transition(episodes, list(actions))

    def make_states(self, personas: Sequence[Persona], dialogues: Sequence[Sequence[Turn]], seeds: Sequence[int]) -> list[dict]:
        """States from dialogue prefixes (each ending with a seeker turn); one judge call."""
        return [s.to_dict() for s in self.engine.states_from_dialogues(personas, dialogues, seeds)]


def _rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def render_transcript(state: EpisodeState | None) -> str:
    """A readable transcript with strategy labels and the intensity trace."""
    if state is None:
        return ""
    lines = [f"persona: {state.persona.id} ({state.persona.problem_type}, {state.persona.emotion_type})"]
    lines.append(format_dialogue(state.turns, with_strategies=True))
    trace = " -> ".join(f"{x:.2f}" for x in state.intensities)
    if state.hidden.get("emotion"):
        lines.append("seeker's emotion level: " + " -> ".join(f"{x:g}" for x in state.hidden["emotion"]))
    ending = "relieved" if state.success else "gave up" if state.gave_up else "turn limit" if state.truncated else "running"
    lines.append(f"intensity: {trace}   [{ending}, return {sum(state.rewards):+.3f}]")
    return "\n".join(lines)
