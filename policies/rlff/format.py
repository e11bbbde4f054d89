"""The RLFF reply format: a private reasoning part, then the answer the seeker reads.

A policy reply is::

    <think>what the seeker seems to feel and what would help</think>
    the answer, 1-3 sentences

The prompt ends with ``<think>`` already written (a prefill), so the model writes the
reasoning, closes it with ``</think>`` and answers.  Small chat models seldom close the tag
on their own at first, so generation runs in two phases (see
:func:`policies.rlff.generation.generate_replies`): the reasoning is sampled up to
``max_reasoning_tokens`` and stops at ``</think>``; if the model did not close it, we append
``</think>`` ourselves (those forced tokens are not the model's choice and are masked out of
the GRPO loss); then the answer is sampled.  The format reward pays for closing the tag
unprompted and for a clean answer, so the policy learns the format instead of relying on
the forcing.

Only the answer is ever sent to the environment; the reasoning stays in a side channel.

All wordings here are our own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from agents.dialogue import Turn, as_chat

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
_TAG_RE = re.compile(r"</?\s*think\s*>", re.IGNORECASE)
_LABEL_RE = re.compile(r"^\s*(supporter|listener|assistant|answer|reply)\s*:\s*", re.IGNORECASE)

POLICY_SYSTEM = (
    "You are a warm, careful listener on an emotional-support chat. Before each reply, think briefly "
    "about what the person feels and what would help them most over the rest of the conversation; "
    "write that thinking inside <think> and </think>. After </think>, write only your reply to the "
    "person: one to three short, kind sentences in your own words. The person never sees your thinking."
)

#: what the supporter says when the model produced no usable answer at all
FALLBACK_ANSWER = "I'm here with you. Could you tell me a bit more about how you're feeling?"

POLICY_CHAT_START = "(The person has joined the chat.)"


def warmup_reasoning(emotion: str, problem: str, strategy_definition: str | None) -> str:
    """A short reasoning text for the format warm-up, built from ESConv labels (our wording)."""
    plan = strategy_definition[0].lower() + strategy_definition[1:] if strategy_definition else "listen and respond with care."
    return f"They feel {emotion} ({problem}). Next: {plan}"


def build_messages(turns: Sequence[Turn], system: str = POLICY_SYSTEM, last: int | None = 12) -> list[dict]:
    """Chat messages for the policy: the system prompt, then the dialogue as the supporter sees it.

    Args:
        turns: the dialogue so far; it should end with a seeker turn.
        system: the system prompt (``POLICY_SYSTEM`` by default).
        last: keep only the last ``last`` turns (``None``: all).

    Returns:
        ``[{"role": "system", ...}, {"role": "user", ...}, ...]``: seeker turns are ``user``
        messages, supporter turns ``assistant`` messages (answers only: past reasoning is
        never shown again).
    """
    turns = list(turns)
    if last is not None:
        turns = turns[-last:]
    msgs = as_chat(turns, me="supporter")
    if not msgs or msgs[0]["role"] != "user":
        msgs.insert(0, {"role": "user", "content": POLICY_CHAT_START})
    return [{"role": "system", "content": system}] + msgs


@dataclass(frozen=True)
class Reply:
    """A parsed policy reply.

    Attributes:
        reasoning: the text inside ``<think> ... </think>`` (private).
        answer: the text after ``</think>``, cleaned; what the seeker reads.
        closed: the model wrote ``</think>`` itself (not forced).
        well_formed: ``closed`` and ``answer_clean``.
        answer_clean: the answer is non-empty, the model ended it itself (not cut off by the
            token budget) and what the seeker is shown is exactly what was written, up to
            whitespace (no tag, role label or second paragraph removed).
    """

    reasoning: str
    answer: str
    closed: bool
    well_formed: bool
    answer_clean: bool = False


def clean_answer(text: str, max_chars: int = 600) -> str:
    """The answer as the seeker should read it: tags and a leading role label removed,
    trimmed to the first paragraph and ``max_chars`` characters."""
    text = _TAG_RE.sub(" ", text)
    text = text.strip()
    text = _LABEL_RE.sub("", text)
    para = text.split("\n\n")[0].strip()
    if len(para) > max_chars:
        cut = para[:max_chars]
        end = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
        para = cut[: end + 1] if end > 0 else cut
    return " ".join(para.split())


def shown_as_written(raw: str, answer: str) -> bool:
    """Whether the shown ``answer`` (:func:`clean_answer` of ``raw``) is the written ``raw`` up to
    whitespace: no tag, role label, second paragraph or cut was removed."""
    return " ".join(raw.split()) == answer


def parse_reply(text: str, *, answer_finished: bool = True) -> Reply:
    """Split a full reply (starting after the ``<think>`` prefill) into reasoning and answer.

    ``text`` is what the model wrote after the prefill: ``reasoning </think> answer``.  Without
    ``</think>`` the whole text counts as reasoning and the answer is empty.
    """
    if text.lstrip().lower().startswith(THINK_OPEN):
        text = text.lstrip()[len(THINK_OPEN):]
    k = text.find(THINK_CLOSE)
    if k < 0:
        return Reply(reasoning=text.strip(), answer="", closed=False, well_formed=False)
    reasoning, raw_answer = text[:k].strip(), text[k + len(THINK_CLOSE):]
    answer = clean_answer(raw_answer)
    clean = bool(answer) and shown_as_written(raw_answer, answer) and answer_finished
    return Reply(reasoning, answer, True, clean, clean)


def strip_reasoning(text: str) -> str:
    """Remove any ``<think> ... </think>`` block (and stray tags) from a text."""
    text = re.sub(r"<\s*think\s*>.*?<\s*/\s*think\s*>", " ", text, flags=re.IGNORECASE | re.DOTALL)
    return " ".join(_TAG_RE.sub(" ", text).split())


_LINE_RE = re.compile(r"^(Seeker|Supporter)(?: \[[^\]]*\])?:\s?(.*)$")


def parse_dialogue_text(text: str) -> list[Turn]:
    """Turns from an observation's ``dialogue`` text (``Seeker: ...`` / ``Supporter: ...`` lines).

    Lines that start with neither label continue the previous turn.  A dialogue clipped at
    the front may start mid-turn; that text is kept as a seeker turn.
    """
    turns: list[list] = []
    for line in text.split("\n"):
        m = _LINE_RE.match(line)
        if m:
            turns.append([m.group(1).lower(), m.group(2)])
        elif turns:
            turns[-1][1] += "\n" + line
        elif line.strip():
            turns.append(["seeker", line])
    return [Turn(s, t.strip()) for s, t in turns]


# ----------------------------------------------------------------------------- strategy labels
#: used in ``strategy+text`` mode: the policy's own LM names the strategy of the answer it wrote
STRATEGY_LABEL_SYSTEM = "You sort the replies of volunteers on an emotional-support chat by the kind of support they give."
STRATEGY_LABEL_USER = """Conversation:
{transcript}

The volunteer's reply:
{reply}

Kinds of reply:
{options}

Which kind of reply is the volunteer's reply? Answer with its name only."""
STRATEGY_LABEL_PREFIX = "Kind:"
