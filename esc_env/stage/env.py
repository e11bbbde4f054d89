"""``esc_env/ESCStage-v0``: emotional-support conversation against a stage-model seeker (no LLM).

The model (constants, templates, dynamics) is in :mod:`esc_env.stage.model`; the exact
solver in :mod:`esc_env.stage.solver`; reference policies and their returns in
:mod:`esc_env.stage.reference`.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np

from agents.dialogue import Turn, format_dialogue
from agents.personas.persona import Persona
from agents.strategies import StrategySet, get_strategy_set

from ..core import EnvState, EpisodeOverError, Observation, StageStepInfo, Transition
from ..rewards import RewardConfig, RewardSpec, resolve_reward, reward_terms
from ..spaces import ACTION_MODES, action_space, make_observation, observation_space
from ..state import EpisodeState, choose_persona, episode_of, parse_action, start_info
from .model import (
    DEFAULT_PERSONAS,
    HIDDEN_KEYS,
    MODEL_NAME,
    ROLES,
    STAGES,
    STRATEGY_ROLES,
    StageDynamics,
    hidden_tuple,
    judge_reading,
    progress_probability,
    seeker_reply,
    start_intensity,
    supporter_text,
    to_half_points,
    uniforms,
)


class ESCStageEnv(gym.Env[dict, "int | dict"]):
    r"""
    ## Description

    An emotional-support conversation in which the agent is the **supporter** and picks a
    support strategy each turn, while the help-seeker is **not an LLM**: it is a small
    stochastic *stage model* of the helping process (``info["seeker"] == "stage-model"``).
    The seeker's hidden state is the stage of the conversation (exploration -> comforting
    -> action, the stages ESConv borrows from Hill's helping-skills model), a hidden
    emotional intensity on ESConv's 1-5 survey scale, the progress built in the current
    stage, and which strategy was used last and how often in a row.  Strategies that fit
    the stage calm the seeker and build progress; advice in the exploration stage
    (premature advice) upsets them; using the same strategy again and again wears off.
    The seeker speaks through templates chosen by stage and intensity, so an episode costs
    microseconds, and the model is small enough to be solved exactly by dynamic
    programming (see *Reference returns*).  It is the cheap sibling of the LLM environment
    ``esc_env/ESC-v0`` and has the same spaces, ``info`` keys and state API.

    ### Dynamics

    Intensity is kept in half-points, $h = 2(I - 1) \in \{0, \dots, 8\}$.  Each strategy
    has a *role* (table below), and each role an effect $e_{\text{role}}(\text{stage})$ in
    half-points (negative = calmer; &#10003; = fits the stage):

    | role      | exploration   | comforting    | action        |
    |-----------|---------------|---------------|---------------|
    | `explore` | -1 &#10003;   | 0             | +1            |
    | `reflect` | -1 &#10003;   | -1 &#10003;   | 0             |
    | `comfort` | -1            | -2 &#10003;   | -1            |
    | `plan`    | +2 premature  | +1            | -2 &#10003;   |
    | `inform`  | +1 premature  | 0             | -2 &#10003;   |
    | `other`   | 0             | 0             | 0             |

    With $k$ the number of consecutive uses of the chosen strategy (1 the first time; so
    help shrinks by half a point with each repetition until it does nothing),
    stage floors $f = (3.0, 2.5, 1.0)$ (in half-points $f_h = 2(f-1) = (4, 3, 0)$) and
    noise $\varepsilon \in \{-1, 0, +1\}$ with $P(\varepsilon = \pm 1) = \text{noise}/2$:

    $$ e = \begin{cases} \min(e_{\text{role}}(\text{stage}) + k - 1,\ 0) & e_{\text{role}}(\text{stage}) < 0 \quad \text{(wear-off)} \\ e_{\text{role}}(\text{stage}) & \text{otherwise} \end{cases} $$
    $$ h' = \operatorname{clip}\big(\, [\,e < 0\,]\,\max(h + e, \min(h, f_h)) + [\,e \ge 0\,]\,(h + e) + \varepsilon,\; 0,\; 8 \big) $$

    that is, help never pushes the seeker below the floor of the current stage (being
    listened to alone does not solve the problem).  A fitting move with $k \le 2$ builds
    one progress point with probability $q$ (0.75; 0.6 for a ``guarded`` or
    ``skeptical`` persona, 0.9 for a ``talkative`` one); 2 points leave exploration, 2
    more leave comforting, and the progress counter restarts at each stage.

    ### Strategy roles

    | role      | ESConv (`strategies="esconv"`)                        | AFlow (`strategies="aflow"`)                               |
    |-----------|-------------------------------------------------------|------------------------------------------------------------|
    | `explore` | Question                                              | Clarification                                              |
    | `reflect` | Restatement or Paraphrasing, Reflection of feelings   | Reflective Statements                                      |
    | `comfort` | Affirmation and Reassurance, Self-disclosure          | Emotional Validation, Empathetic Statements, Affirmation   |
    | `plan`    | Providing Suggestions                                 | Collaborative Planning, Suggest Options                    |
    | `inform`  | Information                                           | Share Information                                          |
    | `other`   | Others                                                | -                                                          |

    Other strategy sets work when ``strategy_roles`` maps each of their names to a role.

    ## Action Space

    With ``action_mode="strategy"`` (default) the action is a `Discrete(n_strategies)`
    index into the strategy set (``env.unwrapped.strategies.names``).  With
    ``action_mode="strategy+text"`` it is a `Dict` with ``"strategy"`` (that index) and
    ``"utterance"`` (a non-empty string of at most 1000 characters): the text is recorded
    as the supporter's turn, but only the strategy drives the dynamics.
    ``action_mode="text"`` raises ``ValueError``: the stage model cannot tell which
    strategy a free text uses.  An action outside the action space raises ``ValueError``.

    ## Observation Space

    A `Dict` (``esc_env.spaces.observation_space``), the same as the LLM environment's:

    | Key              | Type                                | Min | Max              | Meaning                                                               |
    |------------------|-------------------------------------|-----|------------------|-----------------------------------------------------------------------|
    | `dialogue`       | `UnicodeText(16000)`                | ""  | 16000 chars      | the dialogue so far, ``Seeker: ...`` / ``Supporter: ...`` lines       |
    | `turn`           | `Discrete(max_turns + 1)`           | 0   | `max_turns`      | supporter turns taken                                                 |
    | `intensity`      | `Box(1, 5, (1,), float32)`          | 1.0 | 5.0              | the affect judge's reading: hidden intensity + N(0, `judge_noise`^2), clipped |
    | `last_strategy`  | `Discrete(n_strategies + 1)`        | 0   | `n_strategies`   | the last strategy's index; `n_strategies` before the first turn       |

    The stage, the progress and the exact intensity are hidden (``get_state()`` shows
    them); the seeker's templated replies hint at the stage and the intensity.

    ## Rewards

    The same default formula as ``esc_env/ESC-v0``, on the *hidden* intensity:

    $$ r_t = w\,(I_{t-1} - I_t) + b\,[\text{relief}] - p\,[\text{gave up}] $$

    with $w = $ ``improvement_weight``$/4 = 1/4$, $b = $ ``success_bonus`` $= 1$ and
    $p = $ ``give_up_penalty`` $= 1$ of :class:`esc_env.rewards.RewardConfig` (a
    ``turn_cost`` is subtracted every step when set; the rubric and outcome terms do not
    apply, as there are no LLM judges).  ``info["reward_terms"]`` holds ``improvement``,
    ``success``, ``give_up`` (as its negative contribution) and ``turn_cost``; they sum to
    the reward.  ``reward=callable(info) -> float`` replaces the formula (then
    :class:`OptimalPolicy` is unavailable).

    ## Starting State

    A persona is drawn uniformly from ``personas`` (or named by
    ``options={"persona_id": ...}`` / given as ``options={"persona": Persona}``).  The
    hidden intensity starts at ``max(persona.initial_intensity, 3)``, the stage at
    exploration with no progress, and the seeker opens with ``persona.opening`` (else
    ``persona.situation``).

    ## Episode End

    1. Termination (success, ``info["success"]``): the hidden intensity falls to
       ``relief_threshold`` (2.0) or below.
    2. Termination (failure, ``info["gave_up"]``): the intensity is 5 after two
       consecutive seeker replies, or has risen 1.5 or more above its start.
    3. Truncation: ``max_turns`` supporter turns (10).

    ``step`` after the end raises :class:`esc_env.core.EpisodeOverError`.

    ## Arguments

    | Parameter           | Type                         | Default      | Description                                                         |
    |---------------------|------------------------------|--------------|---------------------------------------------------------------------|
    | `strategies`        | **str \| StrategySet**       | `"esconv"`   | `"esconv"`, `"aflow"` or a set whose names `strategy_roles` covers  |
    | `action_mode`       | **str**                      | `"strategy"` | `"strategy"` or `"strategy+text"`                                   |
    | `max_turns`         | **int**                      | `10`         | supporter turns before truncation                                   |
    | `personas`          | **list[Persona] \| None**    | `None`       | seekers to draw from; `None`: `DEFAULT_PERSONAS` (4 built-in)       |
    | `noise`             | **float**                    | `0.3`        | $P(\varepsilon \ne 0)$ of the intensity noise, in [0, 1]            |
    | `judge_noise`       | **float**                    | `0.25`       | std of the observed intensity around the hidden one                 |
    | `relief_threshold`  | **float**                    | `2.0`        | relief at or below this intensity (a multiple of 0.5 in [1, 2.5])   |
    | `reward`            | **RewardConfig \| dict \| callable \| None** | `None` | reward weights (see *Rewards*); `None`: the defaults        |
    | `strategy_roles`    | **Mapping[str, str] \| None**| `None`       | extra strategy-name -> role entries                                  |
    | `render_mode`       | **str \| None**              | `None`       | `"ansi"` (``render()`` returns text) or `"human"` (prints it)       |

    ## Info

    ``reset`` and ``step`` return an :class:`esc_env.core.StageStepInfo`: the keys of
    ``esc_env/ESC-v0`` (:class:`esc_env.core.StepInfo`, where every key is described), with
    ``intensity`` the hidden intensity, ``judges == {"affect": observed intensity}`` and
    ``usage == {}`` (no LLM), plus ``stage`` (after the step), ``role`` (the strategy's
    role; ``step`` only) and ``seeker == "stage-model"``.

    ## Examples

    ```python
    >>> import gymnasium as gym
    >>> import esc_env
    >>> env = gym.make("esc_env/ESCStage-v0", strategies="esconv")
    >>> obs, info = env.reset(seed=0, options={"persona_id": "stage/job-loss"})
    >>> obs["turn"], info["seeker"], info["stage"]
    (0, 'stage-model', 'exploration')
    >>> obs, reward, terminated, truncated, info = env.step(0)   # "Question"
    >>> info["strategy"], sorted(info["reward_terms"])
    ('Question', ['give_up', 'improvement', 'success', 'turn_cost'])
    >>> state = env.unwrapped.get_state()        # JSON-serialisable, RNG included
    >>> [t.reward for t in env.unwrapped.transition([state, state], [1, 5])] == [
    ...     t.reward for t in env.unwrapped.transition([state, state], [1, 5])]
    True

    ```

    ``get_state()`` returns ``{"episode": ..., "np_random": ...}`` (the episode is an
    :class:`esc_env.state.EpisodeState` dict, as in ``esc_env/ESC-v0``, with the model's
    variables in ``hidden``: see :data:`esc_env.stage.model.HIDDEN_KEYS`) and ``set_state``
    restores it, after which stepping continues identically.  ``transition(states,
    actions)`` computes the next state of each pair without touching the environment's
    own state (for search such as AFlow's MCTS); every episode state carries its seed,
    from which each step's random draws follow (with the turn), so the same (state, action) always gives the same
    :class:`esc_env.core.Transition`.

    ## Reference returns

    Computed by :func:`esc_env.stage.reference.policy_returns` (``python -m esc_env.stage [--strategies aflow]``)
    with the default arguments: 2000 episodes per policy seeded 0..1999 (personas drawn
    uniformly), mean +- 95% confidence half-width.  ``best-fixed`` is the single strategy
    with the best mean return on episodes seeded 2000..3999; ``stage-oracle``
    (:func:`esc_env.stage.reference.stage_oracle_action`) reads the hidden stage; ``dp-optimal``
    (:class:`esc_env.stage.solver.OptimalPolicy`) acts on the whole hidden state with the exact
    dynamic-programming optimum, whose exact expected return is given as well: no policy
    that only sees observations can beat it.  (It takes more turns than the stage oracle
    because it lowers the intensity further before the relief step ends the episode.)

    ESConv strategies (``strategies="esconv"``):

    | policy       | mean return     | success      | gave up | turns | note                         |
    |--------------|-----------------|--------------|---------|-------|------------------------------|
    | random       | +0.182 +- 0.046 | 29.2% +- 2.0 | 28.5%   | 7.59  |                              |
    | best-fixed   | +0.043 +- 0.030 | 12.2% +- 1.4 | 17.8%   | 8.82  | always 'Question'            |
    | stage-oracle | +1.536 +- 0.014 | 98.4% +- 0.6 | 0.8%    | 5.59  |                              |
    | dp-optimal   | +1.559 +- 0.014 | 98.2% +- 0.6 | 0.8%    | 7.35  | exact expected return +1.562 |

    AFlow strategies (``strategies="aflow"``):

    | policy       | mean return     | success      | gave up | turns | note                           |
    |--------------|-----------------|--------------|---------|-------|--------------------------------|
    | random       | -0.300 +- 0.046 | 17.2% +- 1.7 | 49.2%   | 6.84  |                                |
    | best-fixed   | +0.043 +- 0.030 | 12.2% +- 1.4 | 17.8%   | 8.82  | always 'Reflective Statements' |
    | stage-oracle | +1.536 +- 0.014 | 98.4% +- 0.6 | 0.8%    | 5.59  |                                |
    | dp-optimal   | +1.556 +- 0.014 | 98.1% +- 0.6 | 0.8%    | 7.33  | exact expected return +1.560   |

    ## Version History

    * v0: Initial version.
    """

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4}

    def __init__(
        self,
        strategies: "str | StrategySet" = "esconv",
        action_mode: str = "strategy",
        max_turns: int = 10,
        personas: "Sequence[Persona] | None" = None,
        noise: float = 0.3,
        judge_noise: float = 0.25,
        relief_threshold: float = 2.0,
        reward: RewardSpec = None,
        strategy_roles: "Mapping[str, str] | None" = None,
        render_mode: str | None = None,
    ) -> None:
        self.strategies: StrategySet = get_strategy_set(strategies)
        role_map = dict(STRATEGY_ROLES)
        for name, role in (strategy_roles or {}).items():
            if role not in ROLES:
                raise ValueError(f"strategy_roles[{name!r}] = {role!r} is not a role; roles: {list(ROLES)}")
            role_map[name.lower()] = role
        missing = [n for n in self.strategies.names if n.lower() not in role_map]
        if missing:
            raise ValueError(
                f"strategies {missing} of set {self.strategies.name!r} have no role in the stage model; "
                f"pass strategy_roles={{name: role}} with roles from {list(ROLES)}"
            )
        self.roles: tuple[str, ...] = tuple(role_map[n.lower()] for n in self.strategies.names)
        self._names: list[str] = self.strategies.names

        if action_mode == "text":
            raise ValueError(
                "action_mode='text' is not supported by ESCStageEnv: the stage-model seeker reacts to the "
                "support strategy and cannot tell which strategy a free-text utterance uses. Use "
                "action_mode='strategy+text' (the text is recorded, the strategy drives the dynamics) or the "
                "LLM environment esc_env/ESC-v0."
            )
        if action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode must be 'strategy' or 'strategy+text', got {action_mode!r}")
        self.action_mode = action_mode
        if isinstance(max_turns, bool) or not isinstance(max_turns, (int, np.integer)) or max_turns < 1:
            raise ValueError(f"max_turns must be a positive integer, got {max_turns!r}")
        self.max_turns = int(max_turns)
        if not 0.0 <= float(noise) <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise!r}")
        if float(judge_noise) < 0.0:
            raise ValueError(f"judge_noise must be >= 0, got {judge_noise!r}")
        if relief_threshold not in (1.0, 1.5, 2.0, 2.5):
            raise ValueError(f"relief_threshold must be one of 1.0, 1.5, 2.0, 2.5, got {relief_threshold!r}")
        self.noise, self.judge_noise, self.relief_threshold = float(noise), float(judge_noise), float(relief_threshold)
        self.reward_config: RewardConfig
        self.reward_config, self.reward_fn = resolve_reward(reward)

        personas = list(DEFAULT_PERSONAS if personas is None else personas)
        if not personas or not all(isinstance(p, Persona) for p in personas):
            raise ValueError("personas must be a non-empty list of agents.personas.Persona")
        ids = [p.id for p in personas]
        if len(set(ids)) != len(ids):
            raise ValueError(f"persona ids must be unique, got {ids}")
        self.personas: dict[str, Persona] = {p.id: p for p in personas}

        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.render_mode = render_mode

        n = len(self.strategies)
        self.observation_space = observation_space(n, self.max_turns)
        self.action_space = action_space(action_mode, n)
        self.dynamics = StageDynamics(self.roles, self.noise, self.relief_threshold, self.max_turns)
        self.state: EpisodeState | None = None

    # ---- Gymnasium API ------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Observation, StageStepInfo]:
        """Start an episode; ``options``: ``{"persona_id": str}`` or ``{"persona": Persona}``
        (see :func:`esc_env.state.choose_persona`)."""
        super().reset(seed=seed)
        persona = choose_persona(self.personas, options, self.np_random)
        key = int(self.np_random.integers(0, 2**63 - 1))
        self.state = self.initial_state(persona, key)
        if self.render_mode == "human":
            self.render()
        return self.observation_of(self.state), self.reset_info(self.state)

    def step(self, action: "int | dict") -> tuple[Observation, float, bool, bool, StageStepInfo]:
        """One supporter turn and the seeker's reply.

        Raises ``ValueError`` for an action outside the action space (nothing changes) and
        :class:`esc_env.core.EpisodeOverError` before ``reset`` or after the episode ended.
        """
        if self.state is None:
            raise EpisodeOverError("call reset() before step()")
        if self.state.done:
            raise EpisodeOverError("the episode is over (terminated or truncated); call reset() before step()")
        self.state, obs, reward, terminated, truncated, info = self._advance(self.state, action)
        if self.render_mode == "human":
            self.render()
        return obs, reward, terminated, truncated, info  # type: ignore[return-value]

    def render(self) -> str | None:
        """``"ansi"``: the dialogue and the hidden state as text; ``"human"``: print it."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='ansi' or 'human'")
            return None
        if self.state is None:
            text = "(no episode: call reset())"
        else:
            s, hid = self.state, self.state.hidden
            head = (
                f"[turn {s.turn}/{self.max_turns} | persona {s.persona.id} | stage {hid['stage']} "
                f"(progress {hid['progress']}) | intensity {s.intensity:.1f} (judge {hid['observed']:.2f})"
                + (" | relieved" if s.success else "") + (" | gave up" if s.gave_up else "") + "]"
            )
            text = head + "\n" + format_dialogue(s.turns, with_strategies=True, last=2)
        if self.render_mode == "human":
            print(text)
            return None
        return text

    # ---- state API ------------------------------------------------------------------------
    def get_state(self) -> EnvState:
        """``{"episode": ..., "np_random": ...}``: the episode (an :class:`EpisodeState` dict,
        the model's variables in ``hidden``) and the env's reset RNG, as JSON-serialisable data."""
        if self.state is None:
            raise EpisodeOverError("no episode yet: call reset() before get_state()")
        return {"episode": self.state.to_dict(), "np_random": copy.deepcopy(self.np_random.bit_generator.state)}

    def set_state(self, state: Any) -> None:
        """Restore a state from :meth:`get_state` (or an episode from :meth:`transition`, or an
        :class:`EpisodeState`); stepping then continues exactly as from the original."""
        episode = self.episode_state(EpisodeState.coerce(state))  # a copy: the env owns its state
        if isinstance(state, Mapping) and "np_random" in state:
            self.np_random.bit_generator.state = copy.deepcopy(state["np_random"])
        self.state = episode

    def transition(self, states: Sequence[Any], actions: Sequence[Any]) -> list[Transition]:
        """The next state of each ``(state, action)`` pair; the environment's own state is unchanged.

        Pure: the same (state, action) always gives the same result, as each state carries
        its seed.  States that are already over raise ``EpisodeOverError``.
        """
        states, actions = list(states), list(actions)
        if len(states) != len(actions):
            raise ValueError(f"transition needs one action per state, got {len(states)} states and {len(actions)} actions")
        episodes = [self.episode_state(s) for s in states]
        if any(e.done for e in episodes):
            raise EpisodeOverError("transition() from a state whose episode is over")
        out = []
        for e, a in zip(episodes, actions):
            new, obs, reward, terminated, truncated, info = self._advance(e, a)
            out.append(Transition(new.to_dict(), obs, reward, terminated, truncated, info))
        return out

    def episode_state(self, state: Any) -> EpisodeState:
        """The :class:`EpisodeState` of a ``get_state()`` dict, an episode dict
        (``Transition.state``) or an ``EpisodeState`` (returned as is), checked against this env.
        The result may share lists with ``state``: read it, do not change it in place.

        Raises:
            ValueError: not a state of this model and strategy set; the message says why.
        """
        episode = state if isinstance(state, EpisodeState) else EpisodeState.from_dict(episode_of(state), copy_hidden=False)
        missing = [k for k in HIDDEN_KEYS if k not in episode.hidden]
        if missing:
            raise ValueError(f"the state is not an {MODEL_NAME} episode: its hidden variables lack {missing}")
        if episode.hidden["model"] != MODEL_NAME:
            raise ValueError(f"the state is from {episode.hidden['model']!r}, not {MODEL_NAME}")
        if episode.strategies:  # the last supporter turn's label names its strategy in this env's set
            i, label = episode.strategies[-1], (episode.turns[-2].strategy if len(episode.turns) >= 2 else None)
            if not 0 <= i < len(self._names) or self._names[i] != label:
                raise ValueError(f"the state's strategy {i} ({label!r}) is not that of this env's strategies "
                                 f"{self.strategies.names}")
        return episode

    def initial_state(self, persona: Persona, seed: int) -> EpisodeState:
        """The episode that ``reset`` starts for this persona and episode seed: the hidden
        intensity at ``max(persona.initial_intensity, 3)``, exploration with no progress,
        and the seeker's opening (``persona.opening``, else ``persona.situation``)."""
        i0 = start_intensity(persona)
        u = uniforms(seed, 0)
        return EpisodeState(
            persona=persona,
            turns=[Turn("seeker", persona.opening or persona.situation)],
            intensities=[i0],
            seed=int(seed),
            hidden={
                "model": MODEL_NAME,
                "stage": STAGES[0],
                "progress": 0,
                "repeat": 0,
                "high_streak": 0,
                "start_intensity": i0,
                "progress_prob": progress_probability(persona),
                "observed": judge_reading(i0, self.judge_noise, u[2], u[3]),
            },
        )

    @property
    def observation(self) -> Observation:
        """The observation of the current state."""
        if self.state is None:
            raise RuntimeError("no episode yet: call reset()")
        return self.observation_of(self.state)

    def observation_of(self, state: EpisodeState) -> Observation:
        """The observation of an episode: the affect judge's latest reading as the intensity."""
        return make_observation(format_dialogue(state.turns), state.turn, state.hidden["observed"],  # type: ignore[return-value]
                                state.last_strategy(len(self.strategies)))

    def reset_info(self, state: EpisodeState) -> StageStepInfo:
        """The ``info`` of ``reset`` (see :func:`esc_env.state.start_info`)."""
        return start_info(state, {"affect": state.hidden["observed"]}, stage=state.hidden["stage"],  # type: ignore[return-value]
                          seeker="stage-model")

    # ---- internals ------------------------------------------------------------------------
    def _advance(self, s: EpisodeState, action: Any) -> tuple[EpisodeState, Observation, float, bool, bool, StageStepInfo]:
        """One step from ``s`` (not changed): the next episode, its observation, the reward,
        terminated, truncated and ``info``."""
        a = parse_action(action, self.action_mode, self._names)
        idx, text = int(a.strategy), a.utterance  # type: ignore[arg-type]
        u = uniforms(s.seed, s.turn + 1)
        dyn = self.dynamics
        hidden = hidden_tuple(s, len(self.strategies))
        eff = dyn.effect(hidden, idx)
        res = dyn.outcome(hidden, idx, eff, dyn.eps_of(u[0]), bool(u[1] < s.hidden["progress_prob"]),
                          to_half_points(s.hidden["start_intensity"]))
        h1, stage, progress, _, rep, streak, turn = res.hidden
        before, after = s.intensity, 1.0 + h1 / 2.0
        role = self.roles[idx]
        if text is None:
            text = supporter_text(role, u[5])
        reply = seeker_reply(STAGES[stage], after, res.success, res.gave_up, eff.premature, eff.worn,
                             s.persona.problem_type, u[4])
        terminated = res.success or res.gave_up
        truncated = (not terminated) and turn >= self.max_turns
        observed = judge_reading(after, self.judge_noise, u[2], u[3])
        strategy = self._names[idx]
        terms = reward_terms(self.reward_config, before, after, res.success, res.gave_up)
        info = {
            "strategy": strategy,
            "supporter_utterance": text,
            "seeker_utterance": reply,
            "intensity": {"before": before, "after": after},
            "success": res.success,
            "gave_up": res.gave_up,
            "turn": turn,
            "persona_id": s.persona.id,
            "judges": {"affect": observed},
            "reward_terms": terms,
            "usage": {},
            "stage": STAGES[stage],
            "role": role,
            "seeker": "stage-model",
        }
        reward = float(sum(terms.values())) if self.reward_fn is None else float(self.reward_fn(info))
        if not math.isfinite(reward):
            raise ValueError(f"the reward function returned {reward!r}; rewards must be finite")
        new = EpisodeState(
            persona=s.persona,
            turns=s.turns + [Turn("supporter", text, strategy), Turn("seeker", reply)],
            intensities=s.intensities + [after],
            seed=s.seed,
            strategies=s.strategies + [idx],
            rewards=s.rewards + [reward],
            success=res.success,
            gave_up=res.gave_up,
            truncated=truncated,
            hidden=dict(s.hidden, stage=STAGES[stage], progress=progress, repeat=rep, high_streak=streak,
                        observed=observed),
        )
        return new, self.observation_of(new), reward, terminated, truncated, info  # type: ignore[return-value]
