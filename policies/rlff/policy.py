"""``RLFFPolicy``: a chat LM (with a LoRA adapter) that reasons, then answers.

It acts in ``esc_env/ESCText-v0`` (the action is the answer string) and in
``"strategy+text"`` mode (the action is ``{"strategy": i, "utterance": answer}``).  The
reasoning is returned in a side channel (``last_reasoning``, :meth:`act_with_reasoning`)
and is never part of the action: the seeker reads only the answer.

Reply format and generation: :mod:`policies.rlff.format`, :mod:`policies.rlff.generation`.

Saved as a folder: ``adapter.safetensors`` (the LoRA weights) and ``policy.json`` (the base
model and every setting).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.dialogue import Turn, format_dialogue
from esc_env.state import episode_of

from .format import (
    FALLBACK_ANSWER,
    STRATEGY_LABEL_PREFIX,
    STRATEGY_LABEL_SYSTEM,
    STRATEGY_LABEL_USER,
    Reply,
    build_messages,
    parse_dialogue_text,
    strip_reasoning,
)
from .generation import generate_replies
from esc_env.fileio import save_safetensors_atomic, write_json_atomic

EMBEDDED = "embedded"


@dataclass
class PolicyConfig:
    """Settings of :class:`RLFFPolicy` (saved in ``policy.json``).

    Attributes:
        max_reasoning_tokens: token budget of the reasoning (phase 1).
        max_answer_tokens: token budget of the answer (phase 2).
        temperature: sampling temperature when acting (0: greedy, deterministic).
        top_p: nucleus sampling when ``temperature > 0``.
        context_turns: dialogue turns in the prompt (the most recent ones).
        batch_size: rows per ``generate`` call.
        action_mode: ``"text"`` or ``"strategy+text"``.
        strategies: strategy set for ``"strategy+text"`` (``"esconv"``, ``"aflow"``).
        lora_r, lora_alpha, lora_dropout, lora_targets: the LoRA adapter.
    """

    max_reasoning_tokens: int = 48
    max_answer_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    context_turns: int = 12
    batch_size: int = 16
    action_mode: str = "text"
    strategies: str = "esconv"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def __post_init__(self) -> None:
        if self.action_mode not in ("text", "strategy+text"):
            raise ValueError(f"RLFFPolicy acts in 'text' or 'strategy+text' mode, got {self.action_mode!r}")


def resolve_base_model(base: str) -> str:
    """``"embedded"`` -> the folder of the embedded SmolLM2; a path stays a path."""
    if base == EMBEDDED:
        from agents.backends.embedded import embedded_model_dir

        return str(embedded_model_dir())
    return base


class RLFFPolicy:
    """The RLFF supporter policy.

    Args:
        base_model: ``"embedded"`` or a Hugging Face model folder.  A *separate* copy is
            loaded: the env's shared backend model is never wrapped or trained.
        config: :class:`PolicyConfig` (or keyword overrides of it).
        adapter_path: LoRA weights (``adapter.safetensors``) to load.
        device: torch device.
        seed: base seed of sampling (``temperature > 0``).

    Attributes:
        model: the PEFT-wrapped causal LM (``model.disable_adapter()`` gives the base model).
        tokenizer: its tokenizer.
        last_reasoning: reasoning of each row of the last ``act*`` call (side channel).
        last_replies: the parsed :class:`~policies.rlff.format.Reply` of each row.
    """

    def __init__(self, base_model: str = EMBEDDED, config: PolicyConfig | None = None, *,
                 adapter_path: "str | Path | None" = None, device: str = "cpu", seed: int = 0, **overrides: Any) -> None:
        import torch
        from peft import get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        cfg = asdict(config) if config is not None else {}
        cfg.update(overrides)
        self.config = PolicyConfig(**cfg)
        self.base_model = base_model
        path = resolve_base_model(base_model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        base = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(device)
        self.model = get_peft_model(base, self._lora_config())
        self.model.eval()
        #: adapters folded into the base weights by :meth:`merge_adapter`, in order
        self.merged: list[dict] = []
        self.device = device
        self.seed = int(seed)
        self._calls = 0
        self.last_reasoning: list[str] = []
        self.last_replies: list[Reply] = []
        self._strategy_set = None
        self._scorer = None
        #: ``False`` acts with the LoRA adapter disabled (the starting policy); see :meth:`base_view`
        self.use_adapter = True
        if adapter_path is not None:
            self.load_adapter(adapter_path)

    def _lora_config(self):
        from peft import LoraConfig

        c = self.config
        return LoraConfig(r=c.lora_r, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
                          target_modules=list(c.lora_targets), task_type="CAUSAL_LM")

    def merge_adapter(self) -> None:
        """Fold the current LoRA weights into the base weights and start a fresh adapter
        (initialised to the identity, so the policy does not change).

        Afterwards the adapter-disabled model -- GRPO's reference and :meth:`base_view` -- is the
        policy as it is now (e.g. after the format warm-up).  Build the trainer after merging:
        the model's parameters are new objects.
        """
        from peft import get_peft_model

        self.merged.append(self.adapter_state())
        base = self.model.merge_and_unload()
        self.model = get_peft_model(base, self._lora_config())
        self.model.eval()
        self._scorer = None

    def _adapter_ctx(self):
        import contextlib

        return contextlib.nullcontext() if self.use_adapter else self.model.disable_adapter()

    def base_view(self) -> "RLFFPolicy":
        """The same policy with the LoRA adapter disabled: the starting (untrained) policy.

        Shares the model and tokenizer (no extra memory); its own seed sequence and side channel.
        """
        import copy

        view = copy.copy(self)
        view.use_adapter = False
        view.last_reasoning, view.last_replies = [], []
        view._calls = 0
        return view

    @classmethod
    def from_backend(cls, backend: Any, **kwargs: Any) -> "RLFFPolicy":
        """A policy over the same base model as ``backend`` (a fresh copy of its weights)."""
        name = getattr(backend, "name", "")
        if name.startswith("embedded"):
            return cls(EMBEDDED, **kwargs)
        if not getattr(backend, "model_path", None):
            raise ValueError(f"backend {name or backend!r} serves a remote model: give the policy a local base model "
                             "(RLFFPolicy(base_model=...), or --policy-model in examples/train_rlff.py)")
        return cls(backend.model_path, **kwargs)

    # ---- replies ----------------------------------------------------------------------------
    def reply_batch(self, dialogues: Sequence[Sequence[Turn]], seed: "int | Sequence[int] | None" = None) -> list[Reply]:
        """Reasoning and answer for every dialogue (each ends with a seeker turn); batched.

        ``seed``: one int for the call (row ``i`` samples with a seed mixed from it and ``i``),
        or one seed per dialogue (a row's reply then depends on its own seed only);
        ``None``: the policy's own seed sequence.

        An empty answer is replaced by :data:`~policies.rlff.format.FALLBACK_ANSWER` so the
        seeker always gets an utterance; ``Reply.well_formed`` still says it was empty.
        """
        if not dialogues:
            return []
        c = self.config
        if seed is None:
            seed = self.seed * 1_000_003 + self._calls
        self._calls += 1
        msgs = [build_messages(d, last=c.context_turns) for d in dialogues]
        with self._adapter_ctx():
            gen = generate_replies(self.model, self.tokenizer, msgs, num_samples=1, max_reasoning_tokens=c.max_reasoning_tokens,
                                   max_answer_tokens=c.max_answer_tokens, temperature=c.temperature, top_p=c.top_p,
                                   seed=seed, batch_size=c.batch_size)
        out = []
        for r in gen.replies:
            answer = strip_reasoning(r.answer)[:1000].strip() or FALLBACK_ANSWER
            out.append(Reply(r.reasoning, answer, r.closed, r.well_formed, r.answer_clean))
        return out

    # ---- acting ------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Restart the sampling seed sequence (the evaluation harness calls it once per run)."""
        if seed is not None:
            self.seed = int(seed)
        self._calls = 0

    def act_batch(self, observations: Sequence[dict], states: Sequence[dict] | None = None) -> list[Any]:
        """Actions for a batch of env observations (one batched generation).

        Args:
            observations: env observations (their ``dialogue`` text is parsed into turns).
            states: optional episode states (dicts with ``"turns"``); when given, their turns
                are used instead of the (possibly clipped) observation text.

        Returns:
            answer strings (``"text"`` mode) or ``{"strategy", "utterance"}`` dicts; the
            reasoning of each row is in :attr:`last_reasoning`, never in the action.
        """
        if states is not None:
            dialogues = [[Turn.from_dict(t) for t in episode_of(s)["turns"]] for s in states]
        else:
            dialogues = [parse_dialogue_text(o["dialogue"]) for o in observations]
        return self.act_dialogues(dialogues)

    def act_dialogues(self, dialogues: Sequence[Sequence[Turn]], seed: int | None = None) -> list[Any]:
        """Like :meth:`act_batch`, from dialogues (lists of :class:`Turn`) instead of observations."""
        replies = self.reply_batch(dialogues, seed=seed)
        self.last_replies = replies
        self.last_reasoning = [r.reasoning for r in replies]
        answers = [r.answer for r in replies]
        if self.config.action_mode == "text":
            return answers
        labels = self.label_strategies(dialogues, answers)
        return [{"strategy": int(i), "utterance": a} for i, a in zip(labels, answers)]

    def act(self, observation: dict) -> Any:
        """The action for one observation; its reasoning is ``last_reasoning[0]``."""
        return self.act_batch([observation])[0]

    def act_with_reasoning(self, observation: dict) -> tuple[Any, str]:
        """``(action, reasoning)`` for one observation; the reasoning is not in the action."""
        action = self.act(observation)
        return action, self.last_reasoning[0]

    def propose(self, states: list[dict], seeds: Sequence[int]) -> list[tuple[int | None, str]]:
        """:class:`policies.rlff.simulator.FuturePolicy`: this policy writes the future supporter turns
        (one batched generation; row ``i`` samples with seed ``seeds[i]``)."""
        if len(seeds) != len(states):
            raise ValueError(f"got {len(seeds)} seeds for {len(states)} states")
        dialogues = [[Turn.from_dict(t) for t in episode_of(s)["turns"]] for s in states]
        replies = self.reply_batch(dialogues, seed=[int(s) for s in seeds])
        return [(None, r.answer) for r in replies]

    # ---- strategy labels (strategy+text mode) --------------------------------------------------
    @property
    def strategy_set(self):
        if self._strategy_set is None:
            from agents.strategies import get_strategy_set

            self._strategy_set = get_strategy_set(self.config.strategies)
        return self._strategy_set

    def label_strategies(self, dialogues: Sequence[Sequence[Turn]], answers: Sequence[str]) -> list[int]:
        """Index of the strategy the policy's own LM finds most likely for each answer.

        One batched scoring call; each strategy name's log-probability is divided by its
        number of tokens so that long names are not penalised.
        """
        from agents.backends.transformers_backend import TransformersBackend

        sset = self.strategy_set
        if self._scorer is None:
            self._scorer = TransformersBackend(self.base_model, model=self.model, tokenizer=self.tokenizer,
                                               max_batch_size=self.config.batch_size)
        options = "\n".join(f"- {s.name}: {s.definition}" for s in sset)
        convs = [[{"role": "system", "content": STRATEGY_LABEL_SYSTEM},
                  {"role": "user", "content": STRATEGY_LABEL_USER.format(
                      transcript=format_dialogue(d, last=6), reply=a, options=options)}]
                 for d, a in zip(dialogues, answers)]
        names = [" " + n for n in sset.names]
        with self._adapter_ctx():
            lp = self._scorer.score(convs, names, assistant_prefix=STRATEGY_LABEL_PREFIX).logprobs
        lengths = np.array([len(self.tokenizer(n, add_special_tokens=False)["input_ids"]) for n in names], dtype=np.float64)
        return [int(i) for i in np.argmax(lp / lengths[None, :], axis=1)]

    # ---- persistence --------------------------------------------------------------------------
    def adapter_state(self) -> dict:
        from peft import get_peft_model_state_dict

        return {k: v.detach().clone() for k, v in get_peft_model_state_dict(self.model).items()}

    def load_adapter(self, path: "str | Path") -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(self.model, load_file(str(path)))
        self.model.eval()

    def save(self, folder: "str | Path") -> Path:
        """``folder/adapter.safetensors``, ``folder/merged_<i>.safetensors`` (adapters folded in by
        :meth:`merge_adapter`) and ``folder/policy.json``; every file written atomically."""
        folder = Path(folder)
        merged = []
        for i, sd in enumerate(self.merged):
            save_safetensors_atomic(folder / f"merged_{i}.safetensors", sd, {"format": "esc_env.rlff.adapter/1"})
            merged.append(f"merged_{i}.safetensors")
        save_safetensors_atomic(folder / "adapter.safetensors", self.adapter_state(), {"format": "esc_env.rlff.adapter/1"})
        write_json_atomic(folder / "policy.json", {"base_model": self.base_model, "config": asdict(self.config),
                                                   "merged": merged, "seed": self.seed, "format": "esc_env.rlff.policy/1"},
                          indent=2, sort_keys=True)
        return folder

    @classmethod
    def load(cls, folder: "str | Path", device: str = "cpu", **overrides: Any) -> "RLFFPolicy":
        """A policy saved by :meth:`save`; ``overrides`` change acting settings (e.g. ``temperature``)."""
        folder = Path(folder)
        meta = json.loads((folder / "policy.json").read_text())
        cfg = dict(meta["config"])
        cfg.update(overrides)
        pol = cls(meta["base_model"], PolicyConfig(**cfg), device=device, seed=int(meta.get("seed", 0)))
        for name in meta.get("merged", []):
            pol.load_adapter(folder / name)
            pol.merge_adapter()
        pol.load_adapter(folder / "adapter.safetensors")
        return pol
