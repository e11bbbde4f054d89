"""esc-env episodes as a `verifiers <https://github.com/PrimeIntellect-ai/verifiers>`_ environment.

Written against verifiers 0.4.0 (``import verifiers.v1 as vf``; ``pip install "esc-env[verifiers]"``).
The policy under evaluation or training is verifiers' ``supporter`` agent: it writes every
supporter turn through verifiers' own model plumbing (the interception server that records
tokens, the trace, limits, scoring).  The help-seeker is **not** a verifiers agent: it is
esc-env's seeker, driven by the environment's own :class:`esc_env.engine.DialogueEngine`, so its
turns reach the supporter as user messages and are never sampled, never trainable.  The
env's reward is the task's reward: ``episode_return`` (the sum of the episode's esc-env step
rewards) is the only weighted reward, so ``trace.reward`` is the episode return; the per-term
returns (``return_<term>``), the number of turns and how the episode ended are metrics.

The pieces, all exported by this module so that verifiers finds them by plugin id
(:data:`PLUGIN_ID`, the top-level module ``esc_env_verifiers``, which importing this module
registers):

- :class:`ESCTaskset` (:class:`ESCTasksetConfig`): one task per persona (``"builtin"``,
  ``"esconv:valid"``, a persona file, ...) and episode, each with its own seed.
- :class:`ESCVerifiersEnv` (:class:`ESCEnvConfig`): one ``supporter`` seat, and the episode
  loop: the seeker opens, the supporter answers, esc-env's engine steps, until the engine
  terminates (relief / giving up) or truncates (``max_turns`` supporter turns).  One engine,
  one seeker model, serves every concurrent episode: :class:`EngineBatcher` gathers the
  episodes' steps into batched ``engine.transition`` calls run in a worker thread.
- :class:`ESCChatHarness`: the supporter's default program, a tool-less chat turn run
  in-process (one chat completion per segment through the rollout's interception endpoint).
  verifiers' own ``null`` harness is the same loop as a uv-managed subprocess; pin it with
  ``supporter.harness = {"id": "null"}`` where ``uv`` can install its script's packages.

Example (the verifiers eval loop, in-process, against any OpenAI-compatible server)::

    >>>     >>> from esc_env.integrations.verifiers_env import eval_config
    >>> from verifiers.v1.cli.eval.runner import run_eval
    >>> config = eval_config("http://127.0.0.1:8000/v1", "my-model", num_tasks=2, max_turns=2)
    >>> episodes = asyncio.run(run_eval(config))
    >>> [ep.traces[0].reward for ep in episodes]

or verifiers' own CLI with the env registered::

    python -m esc_env.integrations.verifiers_env esc-env-verifiers --model my-model \\
        --client.base-url http://127.0.0.1:8000/v1 -n 2 --env.max-turns 2 --no-push --no-rich
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Iterator

try:
    import httpx
    import verifiers.v1 as vf
    from verifiers.v1.dialects.chat import message_to_wire
    from verifiers.v1.errors import MODEL_TRANSPORT_ERROR_EXIT_CODE
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "esc_env.integrations.verifiers_env needs verifiers 0.4.0: pip install \"esc-env[verifiers]\""
    ) from e

from pydantic import Field, field_validator

from agents.personas import Persona, PersonaBank
from agents.supporter import free_supporter_prompt

from ..build import build_engine, resolve_personas
from ..spaces import MAX_UTTERANCE_CHARS
from ..state import EpisodeState, UnknownPersonaError, find_persona
from .batching import EngineBatcher

logger = logging.getLogger(__name__)

__all__ = [
    "PLUGIN_ID",
    "SUPPORTER_PROMPT",
    "ESCTaskData",
    "ESCTask",
    "ESCTasksetConfig",
    "ESCTaskset",
    "ESCChatHarnessConfig",
    "ESCChatHarness",
    "ESCEnvConfig",
    "ESCVerifiersEnv",
    "EngineBatcher",
    "eval_config",
]

#: the verifiers plugin id of this environment (``--env.taskset.id``): the taskset, its env
#: and its default harness are this module, registered as the top-level module ``esc_env_verifiers``
PLUGIN_ID = "esc-env-verifiers"
_PLUGIN_MODULE = "esc_env_verifiers"

#: the supporter's default system prompt (``ESCTasksetConfig.supporter_prompt``): esc-env's
#: supporter prompt with a free choice of strategy (the same in every trainer integration)
SUPPORTER_PROMPT = free_supporter_prompt()

#: the key of the episode record the env leaves in the supporter's ``trace.info``: ``persona_id``,
#: ``seed``, ``rewards`` (one per supporter turn), ``term_returns`` (reward term -> sum),
#: ``intensities``, ``success``, ``gave_up``, ``truncated``, ``ended_by`` (``"terminated"``,
#: ``"truncated"`` or ``"supporter_limit"``), ``clipped`` (replies cut to the action space's
#: 1000 characters) and ``turns`` (the whole dialogue, the seeker's last reply included)
EPISODE_INFO_KEY = "esc_env"


# ---- tasks ---------------------------------------------------------------------------------
class ESCTaskData(vf.TaskData):
    """One episode to play: the seeker's persona and the episode seed (the engine's row seed).

    ``prompt`` stays ``None``: the seeker opens the conversation, through the environment.
    """

    persona_id: str
    """Id of the seeker's persona in the taskset's persona source."""
    seed: int
    """Episode seed: the seeker's, the judges' and the engine's per-call seeds derive from it."""


class ESCTask(vf.Task[ESCTaskData, vf.State, vf.TaskConfig]):
    """An esc-env episode; its scoring reads the episode record the env leaves on the trace."""

    @property
    def key(self) -> str:
        return f"{self.data.persona_id}@{self.data.seed}"

    @vf.reward
    async def episode_return(self, trace) -> float:
        """The episode's return: the sum of esc-env's step rewards (the only weighted reward)."""
        return float(sum(_episode_record(trace)["rewards"]))

    @vf.metric
    async def esc_metrics(self, trace) -> dict[str, float]:
        """Per-term returns (``return_<term>``), supporter turns and how the episode ended."""
        record = _episode_record(trace)
        out = {f"return_{name}": float(value) for name, value in record["term_returns"].items()}
        out["esc_turns"] = float(len(record["rewards"]))
        for flag in ("success", "gave_up", "truncated"):
            out[f"esc_{flag}"] = float(bool(record[flag]))
        return out


def _episode_record(trace) -> dict[str, Any]:
    record = trace.info.get(EPISODE_INFO_KEY)
    if record is None:
        raise ValueError("the trace carries no esc-env episode record (trace.info['esc_env']): "
                         "the episode did not run to a scored end")
    return record


class ESCTasksetConfig(vf.TasksetConfig):
    """Which episodes to play (``--env.taskset.*``)."""

    personas: str = "builtin"
    """Persona source: ``"builtin"``, ``"esconv:valid"``, ``"esconv:train"`` or a persona file path."""
    persona_ids: list[str] | None = None
    """Only these personas (ids from the source), in this order; ``None``: all of them."""
    episodes_per_persona: int = Field(1, ge=1)
    """Tasks per persona, each with its own seed."""
    seed: int = Field(0, ge=0)
    """Seed of the first task; task ``i`` (in load order) gets ``seed + i``."""
    supporter_prompt: str = Field(SUPPORTER_PROMPT, min_length=1)
    """The supporter's system prompt."""


class ESCTaskset(vf.Taskset[ESCTask, ESCTasksetConfig]):
    """One task per (episode, persona): ``episodes_per_persona`` rounds over the personas.

    Raises:
        ValueError: ``personas`` is not a persona source, or ``persona_ids`` names an unknown
            persona (the message names the field and the closest ids).
    """

    def __init__(self, config: ESCTasksetConfig) -> None:
        super().__init__(config)
        try:
            self.personas: PersonaBank = resolve_personas(config.personas)
        except (ValueError, FileNotFoundError) as e:
            raise ValueError(f"taskset.personas={config.personas!r}: {e}") from None
        ids = config.persona_ids if config.persona_ids is not None else [p.id for p in self.personas]
        if not ids:
            raise ValueError("taskset.persona_ids is empty; leave it unset for every persona")
        for pid in ids:
            try:
                find_persona(self.personas, pid)
            except UnknownPersonaError as e:
                raise ValueError(f"taskset.persona_ids: {e}") from None
        self.persona_ids: list[str] = list(ids)

    def persona(self, persona_id: str) -> Persona:
        """The persona with this id (``UnknownPersonaError`` if none)."""
        return find_persona(self.personas, persona_id)

    def load(self) -> Iterator[ESCTask]:
        i = 0
        for _ in range(self.config.episodes_per_persona):
            for pid in self.persona_ids:
                seed = self.config.seed + i
                data = ESCTaskData(id=f"{pid}@{seed}", name=pid, persona_id=pid, seed=seed,
                                   prompt=None, system_prompt=self.config.supporter_prompt)
                yield ESCTask(data, self.config.task)
                i += 1


# ---- the supporter's program ------------------------------------------------------------------
class ESCChatHarnessConfig(vf.HarnessConfig):
    """No options: the supporter's sampling is the run's (``--sampling.*``)."""


class ESCChatHarness(vf.Harness[ESCChatHarnessConfig]):
    """A tool-less chat turn, in-process: each segment is one chat completion of the
    conversation so far, sent to the rollout's interception ``endpoint`` (which records it on
    the trace and forwards it, with the run's model and sampling, to the real server).

    verifiers' harness contract allows an in-process loop "as long as every model call goes
    through ``endpoint`` + ``secret``"; this one needs no subprocess and no ``uv``.
    """

    APPENDS_SYSTEM_PROMPT = True
    SUPPORTS_RESUME = True  # the default resume() relaunches on the accreted conversation
    EXECUTES_CODE = False
    NEEDS_CONTAINER = False

    async def launch(self, ctx, trace, runtime, endpoint: str, secret: str, mcp_urls: dict[str, str],
                     data: vf.TaskData, tool_interception_url: str | None = None) -> vf.ProgramResult:
        """One chat completion of ``data``'s conversation through ``endpoint``; the reply lands
        on ``trace`` through the interception server.  A transport failure or a non-200 answer
        is a non-zero exit (verifiers raises ``InterceptionError`` / ``HarnessError``)."""
        system, prompt = self.resolve_prompt(data)
        messages: list[dict] = [{"role": "system", "content": system}] if system else []
        if isinstance(prompt, str):
            messages.append({"role": "user", "content": prompt})
        elif prompt:
            messages.extend(message_to_wire(m) for m in prompt)
        url = endpoint.rstrip("/") + "/chat/completions"
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(None, connect=30.0)) as client:
                resp = await client.post(url, json={"model": ctx.model, "messages": messages},
                                         headers={"Authorization": f"Bearer {secret}"})
        except httpx.TransportError as e:
            return vf.ProgramResult(MODEL_TRANSPORT_ERROR_EXIT_CODE, "", f"{type(e).__name__}: {e}")
        if resp.status_code != 200:
            return vf.ProgramResult(1, "", f"chat completion failed: HTTP {resp.status_code}: {resp.text[:1000]}")
        return vf.ProgramResult(0, "", "")


# ---- the environment --------------------------------------------------------------------------
class ESCEnvConfig(vf.EnvConfig):
    """The env's knobs (``--env.*``): the supporter seat and esc-env's engine (``ESCText-v0``)."""

    supporter: vf.AgentConfig = vf.AgentConfig(runtime={"type": "subprocess"})
    """The policy under evaluation/training; its harness defaults to :class:`ESCChatHarness`."""
    backend: str = "embedded"
    """esc-env backend spec for the seeker and the judges (``"embedded"``, ``"hf:PATH"``,
    ``"openai:URL#model"``, ``"vllm:MODEL"``)."""
    seeker_backend: str | None = None
    """The seeker's own backend spec (default: ``backend``)."""
    judge_backend: str | None = None
    """The judges' own backend spec (default: ``backend``)."""
    max_turns: int = Field(10, ge=1)
    """Supporter turns before esc-env truncates the episode."""
    judges: list[str] = ["affect"]
    """esc-env judges run every step (``"affect"``, ``"rubric"``, ``"outcome"``)."""
    affect_judge: str = "auto"
    """``"auto"``, ``"prompted"``, ``"calibrated"`` or ``"calibrated:NAME_OR_PATH"``."""
    reward: dict[str, Any] | None = None
    """Fields of :class:`esc_env.rewards.RewardConfig` (``None``: the default reward)."""
    seeker_params: dict[str, Any] | None = None
    """Generation parameters of the seeker (``agents.backends.GenerationParams`` fields)."""
    seeker_emotion: str | None = None
    """A seeker-emotion preset (``"sage"``) instead of the affect judge."""
    batch_wait_s: float = Field(0.05, ge=0.0)
    """How long an engine batch waits for more episodes' steps (:class:`EngineBatcher`)."""

    @field_validator("judges")
    @classmethod
    def _judges_not_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("judges must name at least 'affect'")
        return v


class ESCVerifiersEnv(vf.Env[ESCEnvConfig]):
    """esc-env as a verifiers environment: the ``supporter`` agent against esc-env's seeker.

    One episode (:meth:`run`): the engine opens it (the seeker's first message); then, turn by
    turn, the seeker's message is the supporter's user turn, the supporter's reply is the
    ``ESCText-v0`` action, and the engine answers with the seeker's reply, the step reward and
    the end flags.  The episode ends when the engine terminates or truncates it (or the
    supporter's own verifiers limits end its run first).  The episode record (step rewards,
    reward terms, the whole dialogue, end flags) goes to ``trace.info["esc_env"]`` before the
    supporter's run closes, so the task's scoring (:class:`ESCTask`) reads it.  A reply longer
    than ``ESCText-v0``'s 1000 characters is cut there (counted in the record's ``clipped``);
    an empty reply is not an action, so it fails the episode with the engine's ``ValueError``.

    Raises (at construction, before any rollout):
        ValueError / TypeError: a bad engine option (the message names it), or a bad taskset
            option (:class:`ESCTaskset`).
    """

    def __init__(self, config: ESCEnvConfig) -> None:
        super().__init__(config)
        if not isinstance(self.taskset, ESCTaskset):
            raise TypeError(f"ESCVerifiersEnv plays an ESCTaskset (taskset.id={PLUGIN_ID!r}), "
                            f"got {type(self.taskset).__name__}")
        c = config
        try:
            self.engine = build_engine(
                c.backend, seeker_backend=c.seeker_backend, judge_backend=c.judge_backend,
                action_mode="text", max_turns=c.max_turns, reward=c.reward, judges=tuple(c.judges),
                affect_judge=c.affect_judge, seeker_params=c.seeker_params, seeker_emotion=c.seeker_emotion,
            )
        except (ValueError, TypeError) as e:
            raise type(e)(f"ESCVerifiersEnv config (env.*): {e}") from None
        self.batcher = EngineBatcher(self.engine, wait_s=c.batch_wait_s)

    async def stop(self) -> None:
        sizes = self.batcher.batch_sizes
        if sizes:
            steps = [n for kind, n in sizes if kind == "step"]
            logger.info("esc-env engine: %d start call(s) for %d episode(s), %d transition call(s) for %d step(s)",
                        len(sizes) - len(steps), sum(n for kind, n in sizes if kind == "start"), len(steps), sum(steps))
        await self.batcher.close()

    async def run(self, task: ESCTask, agents) -> None:
        persona = self.taskset.persona(task.data.persona_id)
        state = await self.batcher.start(persona, task.data.seed)
        record: dict[str, Any] = {
            "persona_id": persona.id, "seed": int(task.data.seed), "rewards": [], "term_returns": {},
            "intensities": list(state.intensities), "success": False, "gave_up": False,
            "truncated": False, "ended_by": None, "clipped": 0, "turns": [{"speaker": "seeker", "text": state.turns[-1].text}],
        }
        async with agents.supporter.interaction(task) as chat:
            seeker_text = state.turns[-1].text
            while True:
                segment = await chat.turn(seeker_text)
                if segment.terminated:  # a verifiers limit (max_turns, tokens) ended the supporter's run
                    record["ended_by"] = "supporter_limit"
                    break
                utterance = segment.last_reply.strip()
                if len(utterance) > MAX_UTTERANCE_CHARS:  # ESCText-v0's action space caps utterances
                    utterance = utterance[:MAX_UTTERANCE_CHARS].rstrip()
                    record["clipped"] += 1
                t = await self.batcher.step(state, utterance)
                state = EpisodeState.from_dict(t.state)
                record["rewards"].append(float(t.reward))
                for name, value in t.info["reward_terms"].items():
                    record["term_returns"][name] = record["term_returns"].get(name, 0.0) + float(value)
                record["intensities"] = list(state.intensities)
                record["turns"] += [{"speaker": "supporter", "text": utterance},
                                    {"speaker": "seeker", "text": t.info["seeker_utterance"]}]
                if t.terminated or t.truncated:
                    record.update(success=bool(t.info["success"]), gave_up=bool(t.info["gave_up"]),
                                  truncated=bool(t.truncated), ended_by="truncated" if t.truncated else "terminated")
                    break
                seeker_text = t.info["seeker_utterance"]
            chat.trace.info[EPISODE_INFO_KEY] = record


# ---- building a run ------------------------------------------------------------------------------
def eval_config(
    base_url: str,
    model: str,
    *,
    num_tasks: int | None = None,
    rollouts_per_task: int = 1,
    max_turns: int = 10,
    personas: str = "builtin",
    persona_ids: list[str] | None = None,
    seed: int = 0,
    max_tokens: int | None = 64,
    temperature: float | None = None,
    backend: str = "embedded",
    api_key_var: str = "OPENAI_API_KEY",
    output_dir: str | Path = "outputs",
    env: dict[str, Any] | None = None,
    client: dict[str, Any] | None = None,
    max_concurrent: int | None = 32,
) -> "Any":
    """A verifiers ``EvalConfig`` for esc-env episodes against an OpenAI-compatible server.

    Run it with verifiers' own eval loop, ``verifiers.v1.cli.eval.runner.run_eval(config)``
    (what ``vf-eval`` runs), which returns the episodes and writes ``traces.jsonl`` under
    ``output_dir``.  Nothing is pushed to any platform (``push=False``) and the live dashboard
    is off.

    Args:
        base_url: the supporter's server, e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name the server knows.
        num_tasks: evaluate the first ``num_tasks`` tasks (``None``: all).
        rollouts_per_task: episodes per task (verifiers' group size).
        max_turns: supporter turns per episode (esc-env's truncation).
        personas, persona_ids, seed: the taskset (:class:`ESCTasksetConfig`).
        max_tokens, temperature: the supporter's sampling.
        backend: esc-env's backend for the seeker and the judges.
        api_key_var: environment variable holding the server's API key (``"EMPTY"`` if unset).
        output_dir: where verifiers writes the run.
        env: more :class:`ESCEnvConfig` fields (e.g. ``{"judges": ["affect", "rubric"]}``).
        client: more verifiers client fields, e.g. ``{"type": "train", "renderer_model_name": ...}``
            for token ids and logprobs from a vLLM ``/inference/v1/generate`` server (prime-rl's).
        max_concurrent: episodes in flight.

    Raises:
        pydantic.ValidationError: a bad field (the error names it).
    """
    from verifiers.v1.configs.cli.eval import EvalConfig

    sampling = {k: v for k, v in {"max_tokens": max_tokens, "temperature": temperature}.items() if v is not None}
    taskset = {"id": PLUGIN_ID, "personas": personas, "persona_ids": persona_ids, "seed": seed}
    env_cfg = {"taskset": taskset, "max_turns": max_turns, "backend": backend, **(env or {})}
    select = {"limit": num_tasks} if num_tasks is not None else {}
    return EvalConfig.model_validate({
        "env": env_cfg, "model": model,
        "client": {"type": "eval", "base_url": base_url, "api_key_var": api_key_var, **(client or {})},
        "sampling": sampling, "select": select, "num_rollouts": rollouts_per_task, "max_concurrent": max_concurrent,
        "rich": None, "push": False, "output_dir": str(output_dir),
    })


if __name__ == "__main__":
    # `python -m esc_env.integrations.verifiers_env esc-env-verifiers [vf-eval options]`: verifiers'
    # own eval CLI, with this environment registered (the module proper, not this __main__ copy)
    import importlib

    importlib.import_module("esc_env.integrations.verifiers_env")
    from verifiers.v1.cli.eval.main import main as _vf_eval

    _vf_eval()
else:
    # verifiers resolves plugins by top-level module name (`--env.taskset.id esc-env-verifiers`
    # imports `esc_env_verifiers`); this module is that plugin once imported.
    sys.modules.setdefault(_PLUGIN_MODULE, sys.modules[__name__])
