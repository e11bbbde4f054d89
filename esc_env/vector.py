"""A natively batched vector env: one backend call per role per step for all conversations."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from agents.personas import Persona

from .build import build_engine, resolve_personas
from .env import render_transcript
from .recording import EpisodeRecorder, episode_record
from .spaces import action_space, observation_space
from .state import RESET_OPTIONS, EpisodeState, check_reset_options, choose_persona, find_persona, persona_option


class ESCVectorEnv(VectorEnv):
    """``num_envs`` conversations stepped together.

    Each ``step`` makes ONE batched ``generate`` call for the supporter, one for the
    seeker and one ``score`` call per judge, for all sub-envs; with an OpenAI-compatible
    backend the batch becomes concurrent requests that a vLLM server batches itself.

    Sub-env ``i`` reset with ``seed`` behaves exactly like ``ESCEnv`` reset with
    ``seed + i`` (same persona, same episode seed; under greedy decoding, the same
    transcript).  Autoreset follows Gymnasium 1.x's ``NEXT_STEP`` mode: the step after
    an episode ends resets that sub-env, ignores its action and returns reward 0.

    Arguments are those of :class:`esc_env.env.ESCEnv`, plus ``num_envs`` and
    ``record_path`` (a JSONL file that receives every finished episode).
    """

    metadata = {"render_modes": ["ansi"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 8,
        backend: Any = "embedded",
        *,
        personas: Any = "builtin",
        strategies: Any = "esconv",
        action_mode: str = "strategy",
        max_turns: int | None = None,
        render_mode: str | None = None,
        record_path: str | None = None,
        **engine_kwargs: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.num_envs = num_envs
        self.engine = build_engine(backend, strategies=strategies, action_mode=action_mode, max_turns=max_turns, **engine_kwargs)
        self.personas = resolve_personas(personas)
        self.strategies = self.engine.strategies
        self.render_mode = render_mode
        self.affect_judge = self.engine.affect_judge
        self.recorder = EpisodeRecorder(record_path) if record_path else None

        self.single_action_space = action_space(action_mode, len(self.strategies))
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.single_observation_space = observation_space(len(self.strategies), self.engine.max_turns)
        self.observation_space = batch_space(self.single_observation_space, num_envs)

        self._rngs = [seeding.np_random()[0] for _ in range(num_envs)]
        self.states: list[EpisodeState | None] = [None] * num_envs
        self._autoreset = np.zeros(num_envs, dtype=bool)

    # ---- Gymnasium API --------------------------------------------------------------
    def reset(self, *, seed: int | list[int | None] | None = None, options: dict | None = None):
        if seed is None:
            seeds: list[int | None] = [None] * self.num_envs
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} envs")
        for i, s in enumerate(seeds):
            if s is not None or self.states[i] is None:
                self._rngs[i], _ = seeding.np_random(s)
        personas = self._personas_from_options(options)
        idx = list(range(self.num_envs))
        self.states = self.engine.start(*self._draw(idx, personas))
        self._autoreset[:] = False
        infos: dict = {}
        for i, st in enumerate(self.states):
            infos = self._add_info(infos, self.engine.reset_info(st), i)
        return self._observations(), infos

    def step(self, actions):
        per_env = list(iterate(self.action_space, actions))
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        resetting = [i for i in range(self.num_envs) if self._autoreset[i]]
        stepping = [i for i in range(self.num_envs) if not self._autoreset[i]]
        for i in stepping:  # validate every action before any LLM call
            self.engine.parse_action(per_env[i])

        fresh = self.engine.open_unjudged(*self._draw(resetting, [None] * self.num_envs))
        results = self.engine.transition([self.states[i] for i in stepping], [per_env[i] for i in stepping], starting=fresh)

        infos: dict = {}
        for i, st in zip(resetting, fresh):
            self.states[i] = st
            infos = self._add_info(infos, self.engine.reset_info(st), i)
        for i, t in zip(stepping, results):
            self.states[i] = EpisodeState.from_dict(t.state)
            rewards[i], terminated[i], truncated[i] = t.reward, t.terminated, t.truncated
            infos = self._add_info(infos, t.info, i)
            if t.done and self.recorder is not None:
                self.recorder.write(episode_record(self.states[i], env_index=i))
        self._autoreset = terminated | truncated
        return self._observations(), rewards, terminated, truncated, infos

    def render(self):
        if self.render_mode != "ansi":
            return None
        return "\n\n".join(f"[env {i}] " + render_transcript(st) for i, st in enumerate(self.states))

    # ---- helpers --------------------------------------------------------------------
    def _personas_from_options(self, options: dict | None) -> list[Persona | None]:
        """The single env's options (``persona``, ``persona_id``: every sub-env), plus
        ``persona_ids`` (one id per sub-env)."""
        options = check_reset_options(options, RESET_OPTIONS + ("persona_ids",))
        if "persona_ids" in options:
            ids = list(options["persona_ids"])
            if len(ids) != self.num_envs:
                raise ValueError(f"options['persona_ids'] has {len(ids)} ids for {self.num_envs} envs")
            return [find_persona(self.personas, x) for x in ids]
        if "persona" in options:
            return [persona_option(options["persona"])] * self.num_envs
        if "persona_id" in options:
            return [find_persona(self.personas, options["persona_id"])] * self.num_envs
        return [None] * self.num_envs

    def _draw(self, idx: list[int], chosen: list[Persona | None]) -> tuple[list[Persona], list[int]]:
        """Persona and episode seed for each sub-env in ``idx``, as ESCEnv.reset draws them."""
        personas, seeds = [], []
        for i in idx:
            rng = self._rngs[i]
            p = chosen[i] if chosen[i] is not None else choose_persona(self.personas, None, rng)
            personas.append(p)
            seeds.append(int(rng.integers(2**31 - 1)))
        return personas, seeds

    def _observations(self):
        obs = [self.engine.observation(st) for st in self.states]
        out = create_empty_array(self.single_observation_space, self.num_envs)
        return concatenate(self.single_observation_space, obs, out)
