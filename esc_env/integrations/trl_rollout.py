"""Whole ``ESCText-v0`` episodes as a ``rollout_func`` for TRL's ``GRPOTrainer``.

The trainer's policy model writes every supporter turn; esc-env's seeker answers and its judges
score each turn.  One call of :class:`ESCRollout` plays one episode per prompt it is given (TRL's
sampler already repeats each prompt ``num_generations`` times) and returns, per episode:

* ``prompt_ids``: the chat-templated opening: the supporter's system prompt, the seeker's first
  message, the generation prompt;
* ``completion_ids``: everything after it: the policy's first turn (the ids it sampled, kept
  verbatim, ending with the end-of-turn token), the template's tokens around the seeker's reply
  and the next generation prompt, the policy's second turn, and so on; it ends with the policy's
  last turn (the seeker's answer to it is in the record, not in the ids);
* ``env_mask``: 1 exactly on the tokens the policy sampled, 0 on every seeker and template token.
  TRL multiplies its loss mask by it (its ``tool_mask``), so only the supporter is trained;
* ``logprobs``: the sampled tokens' log-probabilities under the sampling temperature (0.0 on
  masked tokens); TRL reads them only for vLLM's importance-sampling correction;
* reward columns, which TRL hands to every reward function as keyword arguments:
  ``episode_return`` (the sum of the env's step rewards, plus ``invalid_reply_penalty`` when the
  episode ended on a reply the env refuses) and ``return_<term>`` for every term of
  ``info["reward_terms"]`` summed over the episode (``improvement``, ``success``, ``give_up``,
  ``turn_cost``, one per weighted judge, and ``invalid_reply``).  :func:`episode_return_reward`
  and :func:`reward_term` are ready reward functions; TRL standardises the rewards within each
  group of ``num_generations`` episodes.  (TRL's ``completions`` argument is the decoded
  ``completion_ids``: the whole episode after the opening, the seeker's turns included.)

All episodes of one group share the persona, the reset seed (so the seeker's opening) and the
seeker's per-turn sampling seeds (common random numbers): their returns differ by what the
policy wrote.  :func:`episode_dataset` makes the prompt column that says which persona and seed.

Why not TRL's ``environment_factory``
-------------------------------------
``environment_factory`` turns an environment's methods into *tools*: the model must emit a tool
call, TRL runs the method and appends its output as a ``tool`` message, and the loop goes on
while the model keeps calling tools.  A seeker is not a tool the supporter asks for: the person
speaks after every supporter turn whether called or not, as a ``user`` message, and a supporter
trained through tool calls would learn to call ``reply()`` and read tool output, a chat format
it never meets in deployment.  A ``rollout_func`` writes the real chat: user, assistant, user.

Token assembly and its check
----------------------------
The ids are never re-tokenised: the policy's sampled ids are appended as they are, and each
seeker segment is the difference of two chat-template renderings
(:mod:`esc_env.integrations.chat_tokens`).  That needs a template that preserves prefixes, which
the constructor checks on a short dialogue (:class:`~esc_env.integrations.chat_tokens.ChatTemplateError`
names the model otherwise).  :func:`~esc_env.integrations.chat_tokens.check_token_alignment`
compares a finished episode with a fresh tokenisation of its final dialogue, id for id.  A
sampled turn may spell its text with other ids than a fresh tokenisation would (``" super" "f"
"icial"`` for ``" superficial"``): those ids are what the policy chose and what it must be
trained on, so they stay, and :func:`~esc_env.integrations.chat_tokens.segment_alignment` checks
the episode segment by segment instead (template and seeker ids exact, each sampled turn's text
exact, the mask on exactly the sampled segments) and lists such turns.
``examples/train_trl_grpo.py`` runs both on every episode it trains on (the strict one where no
turn was respelt).

A turn that reaches ``max_turn_tokens`` without its end-of-turn token gets that token appended
with mask 0 (listed in :attr:`EpisodeRecord.cut_turns`).  A reply ``ESCText-v0`` refuses
(empty or only whitespace once special tokens are removed, or over its character limit) ends
that episode there with reward ``invalid_reply_penalty``; the run goes on.

Generation
----------
Without vLLM, each turn of all active episodes is ONE batched ``generate`` of the trainer's
(unwrapped) model: left padding, ``torch.no_grad()``, the trainer's own sampling settings
(``temperature``, ``top_p``, ``top_k``, ``repetition_penalty``, ``generation_kwargs``) with
``max_new_tokens = max_turn_tokens``.  Each turn also costs one batched seeker call and one call
per judge (esc-env's :class:`~esc_env.engine.DialogueEngine`), whatever the batch size.
Sharded models (DeepSpeed ZeRO-3, FSDP) are not supported: episodes end at different turns on
different processes, and gathering parameters for each turn would need every process.

vLLM server mode (not run here: this machine has no GPU, and TRL's ``vllm`` extra pins
``vllm<=0.31``): start ``trl vllm-serve --model MODEL`` on a GPU, then train with
``GRPOConfig(use_vllm=True, vllm_mode="server")``.  :class:`ESCRollout` then sends each turn's
token ids to the server through ``trainer.vllm_generation.generate(prompts=ids, images=None,
num_generations=1)`` with the turn limit set, and passes vLLM's log-probabilities on to TRL's
importance-sampling correction; TRL syncs the weights to the server before each rollout.  With
vLLM, run one training process (the server call is a collective that every process would have
to make once per turn).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from agents.errors import UserInputError
from agents.supporter import free_supporter_prompt

from ..build import build_engine, resolve_personas
from ..state import EpisodeState, choose_persona, find_persona
from .chat_tokens import ChatTokens, EpisodeTokens, SegmentAlignment, check_token_alignment, segment_alignment

__all__ = [
    "ESCRollout",
    "EpisodeRecord",
    "episode_dataset",
    "episode_prompt",
    "episode_return_reward",
    "parse_episode_prompt",
    "reward_term",
]

#: one generate call: token-id prefixes -> per prefix (sampled ids, their log-probs)
Generator = Callable[[list[list[int]]], list[tuple[list[int], list[float]]]]


# ---- the prompt column -----------------------------------------------------------------------
def episode_prompt(persona_id: str, seed: int) -> str:
    """The prompt-column text of one episode: ``{"persona_id": ..., "seed": ...}`` as JSON."""
    return json.dumps({"persona_id": str(persona_id), "seed": int(seed)}, sort_keys=True)


def parse_episode_prompt(prompt: Any) -> tuple[str, int]:
    """``(persona_id, seed)`` from a prompt made by :func:`episode_prompt` (a string, or a chat
    whose last message holds that string).

    Raises:
        UserInputError: the prompt is not such a JSON object (the message shows it).
    """
    text = prompt[-1].get("content") if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict) else prompt
    try:
        spec = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        spec = None
    if (not isinstance(spec, dict) or not isinstance(spec.get("persona_id"), str)
            or isinstance(spec.get("seed"), bool) or not isinstance(spec.get("seed"), int)):
        raise UserInputError(f"prompt {str(prompt)[:120]!r}: ESCRollout expects the prompt column of episode_dataset(), "
                             'a JSON object {"persona_id": str, "seed": int}')
    return spec["persona_id"], spec["seed"]


def episode_dataset(n: int, seed: int = 0, personas: Any = "builtin") -> Any:
    """A ``datasets.Dataset`` of ``n`` episode starts for ``GRPOTrainer(train_dataset=...)``.

    Row ``i`` draws persona and episode seed exactly as ``ESCEnv.reset(seed=seed + i)`` does.
    Columns: ``prompt`` (:func:`episode_prompt`), ``persona_id``, ``episode_seed``.  Give
    :class:`ESCRollout` the same ``personas``.
    """
    from datasets import Dataset
    from gymnasium.utils import seeding

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserInputError(f"n must be a positive int, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UserInputError(f"seed must be an int, got {seed!r}")
    bank = resolve_personas(personas)
    ids, seeds = [], []
    for i in range(n):
        rng, _ = seeding.np_random(seed + i)
        ids.append(choose_persona(bank, None, rng).id)
        seeds.append(int(rng.integers(2**31 - 1)))
    return Dataset.from_dict({"prompt": [episode_prompt(p, s) for p, s in zip(ids, seeds)],
                              "persona_id": ids, "episode_seed": seeds})


# ---- reward functions (TRL's signature) -----------------------------------------------------
def episode_return_reward(completions: list, episode_return: list[float], **kwargs: Any) -> list[float]:
    """TRL reward function: each episode's return (the ``episode_return`` column)."""
    return [float(x) for x in episode_return]


def reward_term(name: str) -> Callable[..., list[float]]:
    """A TRL reward function that reads the ``return_<name>`` column (one reward term summed
    over the episode), named ``return_<name>`` in TRL's logs.

    Example: ``reward_funcs=[reward_term("improvement"), reward_term("success")]`` with
    ``GRPOConfig(reward_weights=[1.0, 0.5])``.
    """
    if not isinstance(name, str) or not name.strip():
        raise UserInputError(f"reward_term: name must be a non-empty term name, got {name!r}")
    key = f"return_{name}"

    def reward(completions: list, **kwargs: Any) -> list[float]:
        if key not in kwargs:
            known = sorted(k[len("return_"):] for k in kwargs if k.startswith("return_"))
            raise UserInputError(f"reward_term({name!r}): no column {key!r} in this batch; terms: {known}")
        return [float(x) for x in kwargs[key]]

    reward.__name__ = reward.__qualname__ = key
    return reward


# ---- records ---------------------------------------------------------------------------------
@dataclass
class EpisodeRecord:
    """One episode of the last batch, for inspection.

    Attributes:
        persona_id, seed: the episode's start.
        messages: the policy's chat (system, user, assistant, ...), ending with its last turn.
        tokens: the ids, mask and log-probs returned to TRL.
        rewards: the env's reward for each stepped turn.
        reward_terms: each term of ``info["reward_terms"]`` summed over the turns.
        episode_return: ``sum(rewards)``, plus the penalty when ``ended == "invalid_reply"``.
        ended: ``"terminated"``, ``"truncated"`` or ``"invalid_reply"``.
        cut_turns: the (0-based) policy turns that hit ``max_turn_tokens``: their end-of-turn
            token was appended with mask 0.
        final_reply: the seeker's answer to the last stepped turn (not in the ids).
    """

    persona_id: str
    seed: int
    messages: list[dict]
    tokens: EpisodeTokens
    rewards: list[float] = field(default_factory=list)
    reward_terms: dict[str, float] = field(default_factory=dict)
    episode_return: float = 0.0
    ended: str = ""
    cut_turns: list[int] = field(default_factory=list)
    final_reply: str = ""

    def alignment(self, tokenizer: Any, close_ids: Sequence[int] | None = None):
        """:func:`~esc_env.integrations.chat_tokens.check_token_alignment` of this episode."""
        return check_token_alignment(tokenizer, self.messages, self.tokens.prompt_ids, self.tokens.completion_ids, close_ids)

    def segments(self, tokenizer: Any, close_ids: Sequence[int] | None = None) -> SegmentAlignment:
        """:func:`~esc_env.integrations.chat_tokens.segment_alignment` of this episode: ids and
        mask segment by segment against fresh renderings of its dialogue."""
        t = self.tokens
        return segment_alignment(tokenizer, self.messages, t.prompt_ids, t.completion_ids, t.env_mask, self.cut_turns, close_ids)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserInputError(f"{name} must be a positive int, got {value!r}")
    return value


# ---- the rollout -----------------------------------------------------------------------------
class ESCRollout:
    """A ``rollout_func`` for ``trl.GRPOTrainer`` that plays whole ``ESCText-v0`` episodes.

    Args:
        tokenizer: the policy's tokenizer (the trainer's ``processing_class``); its chat template
            is checked here (:class:`~esc_env.integrations.chat_tokens.ChatTemplateError`).
        backend: the backend of the seeker and judges (``"embedded"``, a spec string or an
            ``LLMBackend``); see :func:`esc_env.build.build_engine`.
        personas: the persona source; must hold the ids of the prompt column.
        max_turns: supporter turns per episode.
        max_turn_tokens: the most tokens the policy samples for one turn.
        invalid_reply_penalty: the reward of an episode's last turn when the env refuses the
            reply (empty or whitespace only); it ends the episode.
        system_prompt: the policy's system message (default: esc-env's supporter prompt with a
            free choice of strategy, ``agents.supporter.free_supporter_prompt()``).
        stop_ids: the ids that end a policy turn (default: the tokenizer's EOS).
        engine: a ready ``DialogueEngine`` with ``action_mode="text"`` (then ``backend``,
            ``max_turns`` and ``engine_kwargs`` are not used).
        **engine_kwargs: more :func:`~esc_env.build.build_engine` arguments (``reward``,
            ``judges``, ``seeker_params``, ...).

    Attributes:
        last_records: the :class:`EpisodeRecord` of each episode of the last call.

    TRL's ``max_completion_length`` does not bound an episode here (``max_turns`` and
    ``max_turn_tokens`` do; the seeker's segments add to that); with ``loss_type="dr_grpo"``,
    which divides by it, set it to the longest episode you expect.  Every completion ends with
    an end-of-turn token (sampled, or appended to a cut turn), so TRL's
    ``mask_truncated_completions`` never drops an episode.
    """

    def __init__(
        self,
        tokenizer: Any,
        backend: Any = "embedded",
        *,
        personas: Any = "builtin",
        max_turns: int = 4,
        max_turn_tokens: int = 48,
        invalid_reply_penalty: float = -1.0,
        system_prompt: str | None = None,
        stop_ids: Sequence[int] | None = None,
        engine: Any = None,
        **engine_kwargs: Any,
    ) -> None:
        self.max_turn_tokens = _positive_int("max_turn_tokens", max_turn_tokens)
        if (isinstance(invalid_reply_penalty, bool) or not isinstance(invalid_reply_penalty, (int, float))
                or not math.isfinite(invalid_reply_penalty)):
            raise UserInputError(f"invalid_reply_penalty must be a finite number, got {invalid_reply_penalty!r}")
        self.invalid_reply_penalty = float(invalid_reply_penalty)
        if system_prompt is not None and (not isinstance(system_prompt, str) or not system_prompt.strip()):
            raise UserInputError(f"system_prompt must be a non-empty str or None, got {system_prompt!r}")
        self.tokenizer = tokenizer
        self.chat = ChatTokens(tokenizer, stop_ids)  # the prefix check: before any model is loaded
        if engine is None:
            _positive_int("max_turns", max_turns)
            engine = build_engine(backend, action_mode="text", max_turns=max_turns, **engine_kwargs)
        elif engine_kwargs:
            raise UserInputError(f"engine= is given, so {sorted(engine_kwargs)} would not be used")
        if getattr(engine, "action_mode", None) != "text":
            raise UserInputError(f"engine must have action_mode='text' (ESCText-v0), got {getattr(engine, 'action_mode', None)!r}")
        self.engine = engine
        self.personas = resolve_personas(personas)
        self.system_prompt = system_prompt or free_supporter_prompt()
        self.last_records: list[EpisodeRecord] = []

    # ---- TRL's entry point ----------------------------------------------------------------
    def __call__(self, prompts: list, trainer: Any) -> dict[str, list]:
        """Play one episode per prompt with ``trainer``'s model (TRL's ``rollout_func(prompts, trainer)``)."""
        if getattr(trainer, "use_vllm", False):
            return self.rollout(prompts, self.vllm_generator(trainer))
        return self.rollout(prompts, self.trainer_generator(trainer))

    def trainer_generator(self, trainer: Any) -> Generator:
        """One batched ``generate`` per turn with the trainer's unwrapped model and sampling settings."""
        from trl.models import unwrap_model_for_generation

        plugin = getattr(trainer.accelerator.state, "deepspeed_plugin", None)
        sharded = getattr(trainer, "is_fsdp_enabled", False) or getattr(plugin, "zero_stage", None) == 3
        if sharded and trainer.accelerator.num_processes > 1:
            raise UserInputError("ESCRollout does not support sharded models (FSDP, DeepSpeed ZeRO-3) across processes: "
                                 "episodes end at different turns on each process, and gathering the weights for a "
                                 "turn needs all of them; use DDP, ZeRO-1/2 or vLLM server mode")
        config = copy.deepcopy(trainer.generation_config)
        config.max_new_tokens = self.max_turn_tokens

        def generate(prefixes: list[list[int]]) -> list[tuple[list[int], list[float]]]:
            with unwrap_model_for_generation(
                trainer.model_wrapped, trainer.accelerator,
                gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
                generation_kwargs=getattr(trainer, "generation_kwargs", None),
                gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
            ) as model:
                return sample_turns(model, prefixes, config, self._pad_id(), self.chat.stop_ids)

        return generate

    def local_generator(self, model: Any, *, temperature: float = 1.0, top_p: float = 1.0,
                        top_k: int | None = None, repetition_penalty: float = 1.0) -> Generator:
        """The same batched sampling with any causal LM, outside a trainer (tests, inspection)."""
        from transformers import GenerationConfig

        config = GenerationConfig(max_new_tokens=self.max_turn_tokens, do_sample=True, temperature=temperature,
                                  top_p=top_p, top_k=top_k, repetition_penalty=repetition_penalty,
                                  eos_token_id=sorted(self.chat.stop_ids), pad_token_id=self._pad_id())
        return lambda prefixes: sample_turns(model, prefixes, config, self._pad_id(), self.chat.stop_ids)

    def vllm_generator(self, trainer: Any) -> Generator:
        """Each turn through TRL's vLLM client (``vllm_mode="server"``; not run here, no GPU)."""
        if trainer.accelerator.num_processes > 1:
            raise UserInputError("ESCRollout with use_vllm=True runs one training process: each turn's server call "
                                 "would have to be made by every process at once")
        vg = trainer.vllm_generation

        def generate(prefixes: list[list[int]]) -> list[tuple[list[int], list[float]]]:
            saved = vg.max_completion_length
            vg.max_completion_length = self.max_turn_tokens
            try:
                _, completions, logprobs, _ = vg.generate(prompts=prefixes, images=None, num_generations=1)
            finally:
                vg.max_completion_length = saved
            out = []
            for i, ids in enumerate(completions):
                lps = logprobs[i] if logprobs is not None else [[0.0]] * len(ids)
                out.append((list(ids), [float("nan") if not x or x[0] is None else float(x[0]) for x in lps]))
            return out

        return generate

    def _pad_id(self) -> int:
        pad = getattr(self.tokenizer, "pad_token_id", None)
        return int(pad) if pad is not None else self.chat.end_id

    # ---- the episodes ---------------------------------------------------------------------
    def rollout(self, prompts: list, generate: Generator) -> dict[str, list]:
        """Play one episode per prompt, the policy's turns from ``generate``.

        Returns:
            TRL's rollout dict: ``prompt_ids``, ``completion_ids``, ``logprobs``, ``env_mask``,
            ``episode_return``, ``episode_turns`` (policy turns, a refused one included) and
            one ``return_<term>`` column per reward term (0.0 for an episode without that
            term); one row per prompt, in order.
        """
        starts = [parse_episode_prompt(p) for p in prompts]
        personas = [find_persona(self.personas, pid) for pid, _ in starts]
        states = self.engine.start(personas, [s for _, s in starts])
        records = [
            EpisodeRecord(pid, s, [{"role": "system", "content": self.system_prompt},
                                   {"role": "user", "content": st.turns[0].text}], EpisodeTokens([]))
            for (pid, s), st in zip(starts, states)
        ]
        for rec in records:
            rec.tokens.prompt_ids = self.chat.opening(rec.messages)
        active = list(range(len(records)))
        while active:
            sampled = generate([records[i].tokens.ids for i in active])
            if len(sampled) != len(active):
                raise RuntimeError(f"the generator returned {len(sampled)} turns for {len(active)} prefixes")
            stepping, actions = [], []
            for i, (ids, logprobs) in zip(active, sampled):
                rec = records[i]
                ids = [int(t) for t in ids]
                finished = bool(ids) and ids[-1] in self.chat.stop_ids
                body = ids[:-1] if finished else ids
                rec.tokens.add_sampled(ids, logprobs)
                if not finished:
                    rec.tokens.add_env([self.chat.end_id])
                    rec.cut_turns.append(sum(m["role"] == "assistant" for m in rec.messages))
                # the text verbatim (special tokens too), so that the template renders the same ids
                rec.messages.append({"role": "assistant", "content": self.tokenizer.decode(body, skip_special_tokens=False)})
                action = self.tokenizer.decode(body, skip_special_tokens=True)
                try:
                    self.engine.parse_action(action)
                except ValueError:
                    rec.ended = "invalid_reply"
                    rec.reward_terms["invalid_reply"] = self.invalid_reply_penalty
                    continue
                stepping.append(i)
                actions.append(action)
            results = self.engine.transition([states[i] for i in stepping], actions) if stepping else []
            active = []
            for i, t in zip(stepping, results):
                rec = records[i]
                states[i] = EpisodeState.from_dict(t.state)
                rec.rewards.append(float(t.reward))
                for name, value in t.info["reward_terms"].items():
                    rec.reward_terms[name] = rec.reward_terms.get(name, 0.0) + float(value)
                reply = {"role": "user", "content": t.info["seeker_utterance"]}
                if t.done:
                    rec.ended = "terminated" if t.terminated else "truncated"
                    rec.final_reply = reply["content"]
                    continue
                rec.tokens.add_env(self.chat.env_segment(rec.messages, reply))
                rec.messages.append(reply)
                active.append(i)
        for rec in records:
            rec.reward_terms.setdefault("invalid_reply", 0.0)
            rec.episode_return = float(sum(rec.rewards)) + rec.reward_terms["invalid_reply"]
        self.last_records = records
        terms = sorted(set().union(*(r.reward_terms for r in records))) if records else []
        out: dict[str, list] = {
            "prompt_ids": [r.tokens.prompt_ids for r in records],
            "completion_ids": [r.tokens.completion_ids for r in records],
            "logprobs": [r.tokens.logprobs for r in records],
            "env_mask": [r.tokens.env_mask for r in records],
            "episode_return": [r.episode_return for r in records],
            "episode_turns": [sum(m["role"] == "assistant" for m in r.messages) for r in records],
        }
        for name in terms:
            out[f"return_{name}"] = [r.reward_terms.get(name, 0.0) for r in records]
        return out


def sample_turns(model: Any, prefixes: list[list[int]], config: Any, pad_id: int,
                 stop_ids: frozenset[int] | set[int]) -> list[tuple[list[int], list[float]]]:
    """One batched, left-padded ``model.generate`` under ``torch.no_grad()``.

    Returns:
        per prefix, the sampled ids up to and including the first stop id (all of them when
        none came) and each one's log-probability under ``logits / temperature``.
    """
    import torch

    config = copy.copy(config)
    config.return_dict_in_generate, config.output_logits = True, True
    device = next(model.parameters()).device
    width = max(len(p) for p in prefixes)
    input_ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prefixes], dtype=torch.long, device=device)
    attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prefixes], dtype=torch.long, device=device)
    with torch.no_grad():
        out = model.generate(input_ids=input_ids, attention_mask=attention, generation_config=config)
        new = out.sequences[:, width:]
        temperature = float(config.temperature or 1.0) if config.do_sample else 1.0
        logits = torch.stack(out.logits, dim=1)[:, : new.shape[1]].float() / temperature
        logps = torch.log_softmax(logits, dim=-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
    rows = []
    for ids, lps in zip(new.tolist(), logps.tolist()):
        end = next((k + 1 for k, t in enumerate(ids) if t in stop_ids), len(ids))
        rows.append((ids[:end], lps[:end]))
    return rows
