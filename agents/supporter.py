"""The supporter as an LLM: realises a chosen support strategy as one utterance, and
estimates which strategy the model itself would choose next.

The RL agent picks *which* strategy to use (the action); :meth:`SupporterAgent.respond`
turns each choice into words.  :meth:`SupporterAgent.strategy_probs` gives the model's
own prior over strategies (an ``llm`` policy, AFlow's MCTS prior).
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from . import prompts as P
from .backends.base import GenerationParams, LLMBackend
from .dialogue import Turn, as_chat, format_dialogue
from .seeker import MACHINE_ECHO, bound_length, clean_utterance, parse_markers
from .strategies import StrategySet, get_strategy_set

#: stop strings: a line that starts the seeker's (or a new) turn
SUPPORTER_STOP = ("\nSeeker:", "\nUser:", "\nPerson:", "\nSupporter:", "\nAssistant:", "\n\n\n")

#: the supporter's word limit (prompt and cleaning), as AFlow's supporter prompt has one
SUPPORTER_MAX_WORDS = 25


def free_supporter_prompt(max_words: int = SUPPORTER_MAX_WORDS) -> str:
    """The supporter's system prompt with a free choice of strategy: what a policy that writes
    its own utterances reads (the default of every trainer integration in ``esc_env.integrations``)."""
    return P.SUPPORTER_SYSTEM.format(strategy_block=P.SUPPORTER_FREE, max_words=max_words)


#: recent turns the supporter sees when it writes (older ones cost prefill time and invite copying)
SUPPORTER_CONTEXT_TURNS = 4

DEFAULT_SUPPORTER_PARAMS = GenerationParams(
    max_new_tokens=40, temperature=0.7, top_p=0.9, stop=SUPPORTER_STOP, repetition_penalty=1.15, no_repeat_ngram_size=4,
)

#: what the supporter says when the LLM wrote nothing usable, by strategy name (lower case)
FALLBACKS: dict[str, str] = {
    "question": "Could you tell me a bit more about what has been happening?",
    "restatement or paraphrasing": "So if I understand you, this has been weighing on you a lot.",
    "reflection of feelings": "It sounds like you are feeling really hurt and worn out by this.",
    "self-disclosure": "I have been through something similar, and I remember how hard it was.",
    "affirmation and reassurance": "You are doing your best in a hard situation, and reaching out took courage.",
    "providing suggestions": "Maybe one small step could be to talk this over with someone you trust.",
    "information": "Many people go through this, and there are people and services that can help.",
    "others": "Thank you for sharing this with me. I'm here to listen.",
    "reflective statements": "It sounds like this has been weighing on you a lot.",
    "clarification": "Can you help me understand what worries you most about it?",
    "emotional validation": "It makes complete sense that you feel this way after what happened.",
    "empathetic statements": "I'm really sorry you are going through this. I care about how you feel.",
    "affirmation": "You have handled a lot already, and that says something about your strength.",
    "collaborative planning": "What do you think could be a first small step we could plan together?",
    "suggest options": "You could talk to someone close, take a short break, or write down what worries you. What fits best?",
    "share information": "Feelings like these are common in situations like yours, and they can get better with support.",
}
DEFAULT_FALLBACK = "I'm here and listening. How are you feeling about all of this?"

# labels the model may put in front of its reply: role names and "Strategy:"-like tags
_STRATEGY_TAG = re.compile(r"^\s*(?:\[[^\]]{1,40}\]|\((?:strategy|technique)[^)]{0,40}\))\s*", re.I)


def distinct_labels(names: Sequence[str]) -> list[str]:
    """The shortest word prefixes that tell the names apart (e.g. ``"Restatement"`` for
    ``"Restatement or Paraphrasing"``); falls back to the full names when a name is a
    word prefix of another."""
    words = [n.split() for n in names]
    longest = max((len(w) for w in words), default=1)
    for k in range(1, longest + 1):
        labels = [" ".join(w[:k]) for w in words]
        if len({lab.lower() for lab in labels}) == len(labels):
            return labels
    return list(names)


class SupporterAgent:
    """An LLM supporter that speaks with a given support strategy.

    Args:
        backend: the shared LLM backend.
        strategies: a :class:`StrategySet` or its registered name (``"esconv"``, ``"aflow"``).
        params: sampling settings; default :data:`DEFAULT_SUPPORTER_PARAMS` (temperature
            0.7, top-p 0.9, 40 new tokens, repetition penalty 1.15, no repeated 4-gram,
            stop at a new speaker line).
        max_chars: longest utterance returned (cut at a sentence end where possible).
        context_turns: how many recent turns :meth:`strategy_probs` shows the model.
        max_words: word limit, asked for in the prompt and enforced by the cleaning (cut at
            a sentence end); ``None``: no limit.
        reply_context_turns: how many recent turns :meth:`respond` shows the model;
            ``None``: all.
        system_template: the system prompt template (:data:`agents.prompts.SUPPORTER_SYSTEM`,
            fields ``{strategy_block}`` and ``{max_words}``).
    """

    def __init__(
        self,
        backend: LLMBackend,
        strategies: "StrategySet | str" = "esconv",
        params: GenerationParams | None = None,
        max_chars: int = 600,
        context_turns: int = 8,
        max_words: int | None = SUPPORTER_MAX_WORDS,
        reply_context_turns: int | None = SUPPORTER_CONTEXT_TURNS,
        system_template: str = P.SUPPORTER_SYSTEM,
    ) -> None:
        if max_chars < 20:
            raise ValueError(f"max_chars must be >= 20, got {max_chars}")
        if max_words is not None and (isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 3):
            raise ValueError(f"max_words must be an int >= 3 or None, got {max_words!r}")
        if reply_context_turns is not None and (
            isinstance(reply_context_turns, bool) or not isinstance(reply_context_turns, int) or reply_context_turns < 1
        ):
            raise ValueError(f"reply_context_turns must be a positive int or None, got {reply_context_turns!r}")
        self.backend = backend
        self.strategies = get_strategy_set(strategies)
        self.params = params if params is not None else DEFAULT_SUPPORTER_PARAMS
        self.max_chars = int(max_chars)
        self.context_turns = int(context_turns)
        self.max_words = max_words
        self.reply_context_turns = reply_context_turns
        self.system_template = system_template
        self.labels = distinct_labels(self.strategies.names)

    # ---- respond ------------------------------------------------------------------------
    def _strategy_name(self, strategy: "str | int | None") -> str | None:
        if strategy is None:
            return None
        if isinstance(strategy, (int, np.integer)) and not isinstance(strategy, bool):
            return self.strategies[int(strategy)].name
        return self.strategies[self.strategies.index(str(strategy))].name

    def system_prompt(self, strategy: str | None) -> str:
        """The supporter's system prompt for one strategy (``None``: free choice)."""
        name = self._strategy_name(strategy)
        if name is None:
            block = P.SUPPORTER_FREE
        else:
            block = P.SUPPORTER_STRATEGY.format(name=name, definition=self.strategies.definition(name))
        return self.system_template.format(strategy_block=block, max_words=self.max_words if self.max_words is not None else 40)

    def conversation(self, dialogue: Sequence[Turn], strategy: str | None) -> list[dict]:
        """The chat the LLM sees: system prompt, then the dialogue from the supporter's side."""
        recent = list(dialogue)
        if self.reply_context_turns is not None and len(recent) > self.reply_context_turns:
            recent = recent[-self.reply_context_turns :]
        chat = as_chat(recent, me="supporter")
        if not chat or chat[0]["role"] == "assistant":
            chat.insert(0, {"role": "user", "content": P.SUPPORTER_CHAT_START})
        if chat[-1]["role"] == "assistant":  # the supporter spoke last: it goes on
            chat.append({"role": "user", "content": "..."})
        return [{"role": "system", "content": self.system_prompt(strategy)}] + chat

    def clean(self, raw: str, conversation: Sequence[dict] = (), strategy: str | None = None) -> str:
        """One raw LLM output as a supporter utterance (never empty)."""
        text, _, _ = parse_markers(raw if isinstance(raw, str) else "")
        text = _STRATEGY_TAG.sub("", text)
        echo = [line for m in conversation if m["role"] == "system" for line in m["content"].splitlines()]
        # the messages the LLM saw: copying one of them is not a new message
        echo += [m["content"] for m in conversation if m["role"] != "system"]
        labels = list(self.strategies.names) + ["strategy", "technique", "response", "reply"]
        text = clean_utterance(text, self.max_chars, echo_of=echo, extra_labels=labels,
                               max_words=self.max_words, role_echo=MACHINE_ECHO)
        for _ in range(2):  # a tag can also sit behind a role label the cleaner removed
            text = _STRATEGY_TAG.sub("", text).strip()
        if not re.search(r"[^\W_]", text):
            text = ""
        if not text:
            name = self._strategy_name(strategy)
            text = FALLBACKS.get((name or "").lower(), DEFAULT_FALLBACK)
            text = bound_length(text, self.max_chars)
        return text

    def _params(self, seed: "int | Sequence[int] | None") -> GenerationParams:
        p = self.params if self.params.n == 1 else self.params.replace(n=1)
        if p.max_words is None and self.max_words is not None:
            p = p.replace(max_words=self.max_words)  # no tokens after what the cleaning could keep
        return p.replace(seed=seed) if seed is not None else p

    def respond(
        self,
        dialogues: Sequence[Sequence[Turn]],
        strategies: Sequence["str | None"],
        seed: "int | Sequence[int] | None" = None,
    ) -> list[str]:
        """Realise each chosen strategy as ONE supporter utterance.

        Args:
            dialogues: ``n`` dialogues, normally ending with a seeker turn.
            strategies: ``n`` strategy names of the set (case-insensitive) or ``None``
                (the model chooses freely); an int is taken as the strategy's index.
            seed: sampling seed: one int for every row, or one per dialogue (then a
                row's utterance depends on its own seed only, not on its batch-mates).

        Returns:
            ``n`` cleaned utterances, none empty; ONE ``backend.generate`` call.

        Raises:
            KeyError: a strategy name is not in the set.
        """
        dialogues, strategies = list(dialogues), list(strategies)
        if len(dialogues) != len(strategies):
            raise ValueError(f"got {len(strategies)} strategies for {len(dialogues)} dialogues")
        if not dialogues:
            return []
        if seed is not None and hasattr(seed, "__iter__") and len(list(seed)) != len(dialogues):
            raise ValueError(f"got {len(list(seed))} seeds for {len(dialogues)} dialogues")
        names = [self._strategy_name(s) for s in strategies]
        convs = [self.conversation(d, s) for d, s in zip(dialogues, names)]
        comps = self.backend.generate(convs, self._params(seed))
        return [self.clean(c.text, conv, s) for c, conv, s in zip(comps, convs, names)]

    # ---- strategy prior -----------------------------------------------------------------
    def choice_conversation(self, dialogue: Sequence[Turn]) -> list[dict]:
        """The prompt of :meth:`strategy_probs`: transcript plus the named options."""
        transcript = format_dialogue(dialogue, last=self.context_turns) or "(nothing has been said yet)"
        options = "\n".join(
            f"- {label}: {s.definition}" if label == s.name else f"- {label} ({s.name}): {s.definition}"
            for label, s in zip(self.labels, self.strategies)
        )
        return [
            {"role": "system", "content": P.STRATEGY_CHOICE_SYSTEM},
            {"role": "user", "content": P.STRATEGY_CHOICE_USER.format(transcript=transcript, options=options)},
        ]

    def strategy_probs(self, dialogues: Sequence[Sequence[Turn]]) -> np.ndarray:
        """Probability that the model would choose each strategy next.

        The prompt lists the strategies by name; the candidates are the shortest word
        prefixes that tell the names apart (:func:`distinct_labels`), scored after
        ``"Next reply:"`` and renormalised over the strategies.

        Returns:
            float64 array of shape ``(n, n_strategies)``, columns in the order of the
            strategy set; every row is finite, non-negative and sums to 1.  ONE
            ``backend.score`` call (none when ``n == 0``).
        """
        dialogues = list(dialogues)
        k = len(self.strategies)
        if not dialogues:
            return np.zeros((0, k), dtype=np.float64)
        convs = [self.choice_conversation(d) for d in dialogues]
        cands = [" " + lab for lab in self.labels]
        res = self.backend.score(convs, cands, assistant_prefix=P.STRATEGY_CHOICE_PREFIX)
        p = res.normalized()
        p = np.where(np.isfinite(p), p, 0.0)
        sums = p.sum(axis=1, keepdims=True)
        p = np.where(sums > 0, p / np.where(sums > 0, sums, 1.0), 1.0 / k)
        return p.astype(np.float64)
