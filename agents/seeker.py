"""The simulated help-seeker: an LLM playing a :class:`Persona`.

The seeker answers the supporter in one or two short sentences (at most
:data:`SEEKER_MAX_WORDS` words: asked for in the prompt, enforced by :func:`clean_utterance`,
which also removes loops, copies of earlier messages and sentences spoken in the helper's
role) and can end the episode with a marker:

* :data:`RELIEF_MARKER` ``"[RELIEVED]"``: the seeker feels better / the problem feels
  resolved (success);
* :data:`GIVE_UP_MARKER` ``"[LEAVE]"``: the seeker gives up and leaves (failure).

Marker rules (:func:`parse_markers`):

1. A marker is recognised anywhere in the text, in any letter case, inside any kind of
   brackets (``[RELIEVED]``, ``(relieved)``, ``<Leave>``, ``{ LEAVE }``, ``**RELIEVED**``).
   ``[RELIEF]``, ``[LEAVING]``, ``[LEFT]`` and ``[GIVE UP]`` are accepted as aliases.
2. Without brackets a marker is recognised only where it cannot be ordinary speech:
   written in capitals as a whole word (``... thanks RELIEVED``), or as a line of its own
   in any case (``thanks\\nrelieved``).  So "I'm relieved" or "I want to leave" are *not*
   markers.
3. If both markers occur, the one that occurs **last** wins: the seeker's final word on
   the matter counts.  ``relieved`` and ``gave_up`` are therefore never both true.
4. Every recognised marker is removed from the text the supporter sees.

Small models (the embedded 135M one) rarely write a marker on their own; episodes then
end by the turn limit or by the reward rules of the environment.

The background facts of the persona are revealed gradually: before the seeker's
``k``-th message (``k = 0`` is the opening) the first ``k`` facts are unlocked
(:func:`unlocked_facts`) and the newest of them (:data:`SEEKER_FACTS_SHOWN`) is put in the
prompt, so the model cannot tell them all at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from . import prompts as P
from .backends.base import GenerationParams, LLMBackend
from .dialogue import Turn, as_chat
from .personas.persona import Persona

RELIEF_MARKER = "[RELIEVED]"
"""Written by the seeker when they feel better / the problem feels resolved (success)."""

GIVE_UP_MARKER = "[LEAVE]"
"""Written by the seeker when they give up and leave the chat (failure)."""

_RELIEF_WORDS = ("RELIEVED", "RELIEF")
_GIVE_UP_WORDS = ("LEAVE", "LEAVING", "LEFT", "GIVE UP", "GIVE-UP", "GAVE UP")

#: text of a seeker message when the LLM wrote nothing usable
SEEKER_FALLBACK = "I'm not sure what to say. It's just a lot right now."

#: stop strings: a line that starts the other side's turn (or a new seeker turn)
SEEKER_STOP = ("\nSupporter:", "\nListener:", "\nHelper:", "\nUser:", "\nAssistant:", "\nSeeker:", "\n\n\n")

#: the seeker's word limit (prompt and cleaning), as AFlow's seeker prompt has one
SEEKER_MAX_WORDS = 20

#: recent turns the seeker sees (older ones cost prefill time and invite copying)
SEEKER_CONTEXT_TURNS = 4

#: unlocked background facts shown in the prompt: the newest ones only (prefill time)
SEEKER_FACTS_SHOWN = 1

DEFAULT_SEEKER_PARAMS = GenerationParams(
    max_new_tokens=32, temperature=0.7, top_p=0.9, stop=SEEKER_STOP, repetition_penalty=1.15, no_repeat_ngram_size=4,
)

#: the opening's settings: no ``repetition_penalty``, which penalises every token of the prompt
#: (the persona's own story and problem) as well as the reply's; repetition within the reply
#: is still bounded by ``no_repeat_ngram_size`` (counted over the reply only).  Measured
#: (README, "Measured"): generated openings on the persona's problem 0.12 -> 0.31 (42 openings)
DEFAULT_OPENING_PARAMS = DEFAULT_SEEKER_PARAMS.replace(repetition_penalty=1.0)

# ---- marker parsing -------------------------------------------------------------------

_OPEN, _CLOSE = r"[\[\(\{<]|\*\*", r"[\]\)\}>]|\*\*"


def _alts(words: Sequence[str]) -> str:
    return "|".join(re.escape(w).replace(r"\ ", r"[\s_-]*").replace(r"\-", r"[\s_-]*") for w in words)


_MARKER_PATTERNS = [
    # bracketed, any case, aliases allowed
    (re.compile(rf"(?:{_OPEN})\s*(?:{_alts(_RELIEF_WORDS)})\s*(?:{_CLOSE})", re.I), "relief"),
    (re.compile(rf"(?:{_OPEN})\s*(?:{_alts(_GIVE_UP_WORDS)})\s*(?:{_CLOSE})", re.I), "give_up"),
    # bare capitals, whole word (case-sensitive on purpose)
    (re.compile(r"(?<![A-Za-z])RELIEVED(?![A-Za-z])"), "relief"),
    (re.compile(r"(?<![A-Za-z])LEAVE(?![A-Za-z])"), "give_up"),
    # a line of its own, any case
    (re.compile(r"(?im)^[ \t]*relieved[ \t.!]*$"), "relief"),
    (re.compile(r"(?im)^[ \t]*leave[ \t.!]*$"), "give_up"),
]


def parse_markers(text: str) -> tuple[str, bool, bool]:
    """Find and remove the relief / give-up markers (rules in the module docstring).

    Returns:
        ``(text_without_markers, relieved, gave_up)``; at most one flag is true (the
        marker that occurs last wins).
    """
    text = text or ""
    spans: list[tuple[int, int, str]] = []
    for pattern, kind in _MARKER_PATTERNS:
        for m in pattern.finditer(text):
            if any(m.start() < e and s < m.end() for s, e, _ in spans):
                continue  # already covered by an earlier (bracketed) match
            spans.append((m.start(), m.end(), kind))
    if not spans:
        return text, False, False
    spans.sort()
    last_kind = spans[-1][2]
    pieces, pos = [], 0
    for s, e, _ in spans:
        pieces.append(text[pos:s])
        pos = e
    pieces.append(text[pos:])
    cleaned = " ".join(p.strip(" \t") for p in pieces if p.strip(" \t"))
    return cleaned, last_kind == "relief", last_kind == "give_up"


# ---- cleaning -------------------------------------------------------------------------

ROLE_WORDS = (
    "seeker", "supporter", "user", "assistant", "system", "listener", "helper", "volunteer",
    "counselor", "counsellor", "therapist", "person", "me", "you", "client", "patient", "ai", "bot",
)
_ROLE_ALT = "|".join(ROLE_WORDS)
_LEADING_LABEL = re.compile(rf"^\s*(?:\*\*)?\s*(?:{_ROLE_ALT})(?:\s*\([^)]{{0,30}}\))?\s*(?:\*\*)?\s*:\s*(?:\*\*)?\s*", re.I)
# a later line that starts a turn: a role label (any case) or a capitalised name label ("Anna: ...")
_TURN_LINE = re.compile(rf"^\s*(?:\*\*)?\s*(?:(?i:{_ROLE_ALT})|[A-Z][a-z]{{1,15}})(?:\s*\([^)]{{0,30}}\))?\s*(?:\*\*)?\s*:(?:\s|$)")
_ROLE_LINE = re.compile(rf"^\s*(?:\*\*)?\s*(?:{_ROLE_ALT})(?:\s*\([^)]{{0,30}}\))?\s*(?:\*\*)?\s*:", re.I)
_SPECIAL = re.compile(r"<\|im_start\|>[ \t]*(?:system|user|assistant)?|<\|[^|>]{1,40}\|>|</?s>|\[/?INST\]")
# stage directions / meta remarks in brackets: "(I will continue to respond ...)"
_META = re.compile(
    r"[\(\[][^()\[\]]{0,200}\b(?:respond|response|reply|message|continue|role|listener|chat|note|pause|sighs?)\b[^()\[\]]{0,200}[\)\]]",
    re.I,
)
_QUOTES = "\"'“”‘’«»`"
_SENTENCE_END = re.compile(r"[.!?…](?:[\"'”’)\]]*)(?=\s|$)")


def _norm(s: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", s.lower()).split())


def bound_length(text: str, max_chars: int) -> str:
    """Cut ``text`` to at most ``max_chars`` characters, at a sentence end when one lies in
    the last two thirds of the allowance, else at a word boundary."""
    if len(text) <= max_chars:
        return text
    head = text[:max_chars]
    ends = [m.end() for m in _SENTENCE_END.finditer(head)]
    if ends and ends[-1] >= max_chars // 3:
        return head[: ends[-1]].strip()
    cut = head.rsplit(" ", 1)[0] if " " in head[max_chars // 2 :] else head
    return cut.rstrip(" ,;:-")


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``, each ending with its punctuation (``. ! ? …``, closing
    quotes or brackets kept); a last piece without an end mark is a sentence too."""
    text = " ".join((text or "").split())
    out, pos = [], 0
    for m in _SENTENCE_END.finditer(text):
        piece = text[pos : m.end()].strip()
        if piece:
            out.append(piece)
        pos = m.end()
    rest = text[pos:].strip()
    if rest:
        out.append(rest)
    return out


_CLAUSE_SPLIT = re.compile(r"(?<=[,;:])\s+")


def _dedupe_clauses(sentence: str) -> str:
    """``"I'm sorry, I'm sorry, I'm sorry."`` -> ``"I'm sorry."``: drop a clause (a piece between
    commas, semicolons or colons) whose words equal an earlier clause of the same sentence."""
    clauses = _CLAUSE_SPLIT.split(sentence)
    if len(clauses) < 2:
        return sentence
    seen: set[str] = set()
    kept: list[str] = []
    for c in clauses:
        key = _norm(c)
        if key and key in seen:
            continue
        seen.add(key)
        kept.append(c)
    out = " ".join(kept)
    end = sentence.rstrip()[-1:]
    if end in ".!?" and not out.rstrip().endswith(end):
        out = out.rstrip(" ,;:") + end
    return out


def drop_repeats(text: str, echo_of: Sequence[str] = (), min_words: int = 4) -> str:
    """Remove loops and copies, sentence by sentence.

    * a clause repeated inside a sentence is kept once (:func:`_dedupe_clauses`);
    * a sentence whose words equal an earlier sentence's is dropped;
    * a sentence of at least ``min_words`` words whose words occur, in order and
      contiguously, in one of ``echo_of`` (the prompt, earlier messages) is dropped.
    """
    echo = [f" {_norm(e)} " for e in echo_of if _norm(e)]
    seen: set[str] = set()
    kept: list[str] = []
    for s in split_sentences(text):
        s = _dedupe_clauses(s)
        key = _norm(s)
        if not key or key in seen:
            continue
        seen.add(key)
        if len(key.split()) >= min_words and any(f" {key} " in e for e in echo):
            continue
        kept.append(s)
    return " ".join(kept)


#: sentences in which the seeker speaks as the helper, or either side as a machine; the
#: cleaning drops them (``role_echo`` in :func:`clean_utterance`)
ROLE_ECHO = re.compile(
    r"\b(?:how (?:can|may|could) i (?:help|assist|support) you"
    r"|i'?m here (?:to|for) (?:listen|help|support|you)|i am here (?:to|for) (?:listen|help|support|you)"
    r"|(?:i'?ll|i will|i can|let me|i'?m going to|i want to) (?:\w+ ){0,4}(?:help|support|comfort) you"
    r"|(?:here|there) for you|sorry to hear|you'?re not alone|proud of you|good listener|not (?:a )?human"
    r"|as (?:a|your) (?:listener|helper|supporter|volunteer|counsell?or|therapist)"
    r"|as an? (?:ai|language model|assistant|chatbot)|i'?m (?:an? )?(?:ai|language model|chatbot)\b)",
    re.I,
)
#: the machine part of :data:`ROLE_ECHO`, dropped from the supporter's sentences too
MACHINE_ECHO = re.compile(r"\b(?:as an? (?:ai|language model|assistant|chatbot)|i'?m (?:an? )?(?:ai|language model|chatbot)\b)", re.I)


def drop_role_echo(text: str, pattern: "re.Pattern[str]" = ROLE_ECHO) -> str:
    """Drop the sentences of ``text`` that match ``pattern`` (a role echo)."""
    return " ".join(s for s in split_sentences(text) if not pattern.search(s.replace("’", "'")))


def limit_words(text: str, max_words: int) -> str:
    """At most ``max_words`` words, cut at a sentence end.

    A last piece without an end mark (the model was cut off mid-sentence) is dropped when a
    complete sentence comes before it.  Whole sentences are kept while they fit.  When even
    the first sentence is longer, it is cut at its last comma, semicolon or colon within the
    limit (if that keeps at least half the limit), else after ``max_words`` words, and ends
    with a full stop.
    """
    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    sents = split_sentences(text)
    if len(sents) > 1 and not _SENTENCE_END.search(sents[-1]):
        sents = sents[:-1]
    kept, n = [], 0
    for s in sents:
        w = len(s.split())
        if n + w > max_words:
            break
        kept.append(s)
        n += w
    if kept:
        return " ".join(kept)
    if not sents:
        return ""
    head = sents[0].split()[:max_words]
    cut = len(head)
    for k in range(len(head) - 1, max(0, max_words // 2 - 1) - 1, -1):
        if head[k].endswith((",", ";", ":")):
            cut = k + 1
            break
    out = " ".join(head[:cut]).rstrip(" ,;:-")
    return out + "." if out and out[-1] not in ".!?…" else out


def clean_utterance(
    text: str,
    max_chars: int,
    echo_of: Sequence[str] = (),
    extra_labels: Sequence[str] = (),
    max_words: int | None = None,
    role_echo: "re.Pattern[str] | None" = None,
) -> str:
    """Turn raw LLM output into one chat utterance (may return ``""``; callers fall back).

    Steps: drop chat-template tokens; drop leading role labels (``"Seeker:"``,
    ``"Supporter:"``, ``"User:"``, ``"Assistant:"``, ... and ``extra_labels`` such as a
    persona's name); keep only the first speaker's part (cut at the first later line that
    starts with a role label or a ``Name:`` label); drop lines that repeat the prompt
    (``echo_of``: lines of the prompt of 20+ characters, and the previous message);
    drop bracketed stage directions about the chat itself ("(I will continue to respond
    ...)"); strip surrounding quotes; collapse white space; drop repeated clauses and
    sentences and sentences copied from ``echo_of`` (:func:`drop_repeats`); drop sentences
    matching ``role_echo`` (e.g. :data:`ROLE_ECHO`); keep at most ``max_words`` words, cut at
    a sentence end (:func:`limit_words`); bound to ``max_chars`` characters.
    """
    text = _SPECIAL.sub("\n", text or "")
    extra = [re.escape(x.strip()) for x in extra_labels if x and x.strip()]
    extra_re = re.compile(rf"^\s*(?:{'|'.join(extra)})\s*:\s*", re.I) if extra else None
    echo = {_norm(e) for e in echo_of if len(_norm(e)) >= 20}
    echo_texts = [_norm(e) for e in echo_of if len(_norm(e)) >= 20]

    kept: list[str] = []
    for line in text.splitlines():
        if kept and (_TURN_LINE.match(line) or (extra_re and extra_re.match(line))):
            break  # another speaker's turn (or a new turn) starts here
        stripped = line
        for _ in range(3):  # labels can be stacked: "Assistant: Seeker: ..."
            new = _LEADING_LABEL.sub("", stripped)
            if extra_re is not None:
                new = extra_re.sub("", new)
            if new == stripped:
                break
            stripped = new
        if not kept and not stripped.strip() and _ROLE_LINE.match(line):
            continue  # a bare label line before the utterance
        n = _norm(stripped)
        if n and (n in echo or any(len(n) >= 20 and n in e for e in echo_texts)):
            continue  # the model repeated (part of) its prompt or the previous message
        if stripped.strip():
            kept.append(stripped.strip())
    out = " ".join(kept)
    out = _META.sub(" ", out)
    out = " ".join(out.split())
    for _ in range(2):
        out = out.strip().strip(_QUOTES).strip()
    if out.count('"') % 2 == 1:
        out = out.replace('"', "")
    if out.startswith("(") and ")" not in out:
        out = out[1:].lstrip()  # an unclosed stage-direction bracket
    out = drop_repeats(out, echo_of)
    if role_echo is not None:
        out = drop_role_echo(out, role_echo)
    if max_words is not None:
        out = limit_words(out, max_words)
    out = bound_length(out, max_chars)
    if not re.search(r"[^\W_]", out):  # no letter or digit at all
        return ""
    return out


# ---- the agent ------------------------------------------------------------------------


@dataclass
class SeekerReply:
    """One seeker message.

    Attributes:
        text: the cleaned utterance the supporter sees: markers, role labels and prompt
            echo removed, at most ``max_chars`` characters, never empty (a fallback text
            replaces output with nothing usable in it).
        relieved: the seeker signalled that they feel better (success).
        gave_up: the seeker signalled that they give up and leave (failure).
        raw: exactly what the LLM wrote (or the persona's fixed opening).
    """

    text: str
    relieved: bool
    gave_up: bool
    raw: str


def unlocked_facts(persona: Persona, n_seeker_turns: int) -> tuple[str, ...]:
    """The background facts the seeker may mention in its next message.

    Before the ``k``-th seeker message (``k = n_seeker_turns`` messages already sent; the
    opening is ``k = 0``) the first ``k`` facts are unlocked: none in the opening, then
    one more with every message.  The newest one is last.
    """
    k = max(0, int(n_seeker_turns))
    return tuple(persona.background[:k])


def _style(persona: Persona) -> str:
    parts = [P.STYLE_DESCRIPTIONS.get(t.lower(), t) for t in persona.traits]
    return "; ".join(parts) if parts else P.STYLE_DEFAULT


def _intensity_level(value: float | None, persona: Persona) -> int:
    if value is None:
        return persona.initial_intensity
    try:
        v = float(value)
    except (TypeError, ValueError):
        return persona.initial_intensity
    if v != v:  # NaN
        return persona.initial_intensity
    return int(min(5, max(1, round(v))))


class SeekerAgent:
    """An LLM that plays the help-seeker described by a :class:`Persona`.

    Args:
        backend: the shared LLM backend.
        params: sampling settings; default :data:`DEFAULT_SEEKER_PARAMS` (temperature
            0.7, top-p 0.9, 32 new tokens, repetition penalty 1.15, no repeated 4-gram,
            stop at a new speaker line).
        max_chars: longest utterance returned (cut at a sentence end where possible).
        system_template: the system prompt template (:data:`agents.prompts.SEEKER_SYSTEM`;
            its ``{max_words}`` field is filled with ``max_words``).
        max_words: word limit, asked for in the prompt and enforced by the cleaning (cut at
            a sentence end, :func:`limit_words`); ``None``: no limit.
        context_turns: how many recent turns of the dialogue the LLM sees; ``None``: all.
        reminder: add :data:`agents.prompts.SEEKER_REMINDER` (answer as yourself, about your
            problem) under the listener's last message.
        opening_params: sampling settings of a generated opening (:meth:`open`); default
            ``params`` without the repetition penalty, which would push the opening away
            from the persona's own words (:data:`DEFAULT_OPENING_PARAMS` for the default
            ``params``).
    """

    def __init__(
        self,
        backend: LLMBackend,
        params: GenerationParams | None = None,
        max_chars: int = 400,
        system_template: str = P.SEEKER_SYSTEM,
        max_words: int | None = SEEKER_MAX_WORDS,
        context_turns: int | None = SEEKER_CONTEXT_TURNS,
        reminder: bool = True,
        opening_params: GenerationParams | None = None,
    ) -> None:
        if max_chars < 20:
            raise ValueError(f"max_chars must be >= 20, got {max_chars}")
        if max_words is not None and (isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 3):
            raise ValueError(f"max_words must be an int >= 3 or None, got {max_words!r}")
        if context_turns is not None and (isinstance(context_turns, bool) or not isinstance(context_turns, int) or context_turns < 1):
            raise ValueError(f"context_turns must be a positive int or None, got {context_turns!r}")
        self.backend = backend
        self.params = params if params is not None else DEFAULT_SEEKER_PARAMS
        self.max_chars = int(max_chars)
        self.system_template = system_template
        self.max_words = max_words
        self.context_turns = context_turns
        self.reminder = bool(reminder)
        self.opening_params = opening_params if opening_params is not None else self.params.replace(repetition_penalty=1.0)

    # ---- prompts ----------------------------------------------------------------------
    def system_prompt(self, persona: Persona, n_seeker_turns: int = 0, intensity: float | None = None) -> str:
        """The seeker's system prompt before its ``n_seeker_turns``-th message.

        ``intensity`` (1-5) describes how strongly the seeker feels now; default the
        persona's initial intensity.
        """
        return self.system_template.format(**self._fields(persona, n_seeker_turns, intensity))

    def instruction_lines(self, persona: Persona, n_seeker_turns: int = 0, intensity: float | None = None) -> list[str]:
        """Lines of the system prompt that hold instructions, not the persona's own story:
        a reply that repeats one of them is prompt echo and is removed."""
        fields = self._fields(persona, n_seeker_turns, intensity)
        lines = []
        for line in self.system_template.splitlines():
            if "{situation}" in line or "{facts_block}" in line:
                continue
            try:
                lines.append(line.format(**fields))
            except (KeyError, IndexError, ValueError):
                continue
        return lines

    def _fields(self, persona: Persona, n_seeker_turns: int, intensity: float | None) -> dict:
        level = _intensity_level(intensity, persona)
        facts = unlocked_facts(persona, n_seeker_turns)[-SEEKER_FACTS_SHOWN:]
        facts_block = P.SEEKER_FACTS_SOME.format(facts=" | ".join(facts)) if facts else P.SEEKER_FACTS_NONE
        return dict(
            situation=persona.situation.strip(),
            emotion=persona.emotion_type,
            problem=persona.problem_type,
            intensity=level,
            intensity_words=P.INTENSITY_WORDS[level],
            style=_style(persona),
            facts_block=facts_block,
            relief=RELIEF_MARKER,
            give_up=GIVE_UP_MARKER,
            max_words=self.max_words if self.max_words is not None else 40,
        )

    def conversation(self, persona: Persona, dialogue: Sequence[Turn], intensity: float | None = None) -> list[dict]:
        """The chat the LLM sees: system prompt, then the dialogue from the seeker's side."""
        n_seeker = sum(1 for t in dialogue if t.speaker == "seeker")
        msgs = [{"role": "system", "content": self.system_prompt(persona, n_seeker, intensity)}]
        recent = list(dialogue)
        if self.context_turns is not None and len(recent) > self.context_turns:
            recent = recent[-self.context_turns :]
        chat = as_chat(recent, me="seeker")
        if not chat:
            chat = [{"role": "user", "content": P.SEEKER_OPEN_USER.format(problem=persona.problem_type)}]
        elif chat[0]["role"] == "assistant":
            chat.insert(0, {"role": "user", "content": P.SEEKER_CHAT_START})
        if chat[-1]["role"] == "assistant":  # the seeker spoke last: ask it to go on
            chat.append({"role": "user", "content": "..."})
        if self.reminder and dialogue:
            chat[-1] = {"role": "user", "content": chat[-1]["content"] + "\n\n" + self._reminder(persona)}
        return msgs + chat

    def _reminder(self, persona: Persona) -> str:
        return P.SEEKER_REMINDER.format(problem=persona.problem_type,
                                        max_words=self.max_words if self.max_words is not None else 40)

    def _echo(self, persona: Persona, conversation: Sequence[dict], intensity: float | None = None) -> list[str]:
        n_seeker = sum(1 for m in conversation if m["role"] == "assistant")
        echo = self.instruction_lines(persona, n_seeker, intensity)
        echo += [P.SEEKER_OPEN_USER.format(problem=persona.problem_type), P.SEEKER_CHAT_START, self._reminder(persona)]
        # the messages the LLM saw: copying one of them is not a new message
        echo += [m["content"] for m in conversation[1:]]
        return echo

    # ---- parsing ------------------------------------------------------------------------
    def parse(self, raw: str, echo: Sequence[str] = (), persona: Persona | None = None,
              fallback: str = SEEKER_FALLBACK) -> SeekerReply:
        """Clean one raw LLM output into a :class:`SeekerReply` (never empty).

        Args:
            raw: the LLM's text.
            echo: prompt lines whose repetition is removed (see :func:`clean_utterance`).
            persona: its id's last part is also removed as a speaker label.
            fallback: the text used when nothing usable is left.
        """
        raw = raw if isinstance(raw, str) else ""
        text, relieved, gave_up = parse_markers(raw)
        labels = [persona.id.split("/")[-1]] if persona is not None else []
        text = clean_utterance(text, self.max_chars, echo_of=echo, extra_labels=labels,
                               max_words=self.max_words, role_echo=ROLE_ECHO)
        # a marker may still hide behind a label the cleaner removed; parse once more
        text, r2, g2 = parse_markers(text)
        if r2 or g2:
            relieved, gave_up = r2, g2
            text = clean_utterance(text, self.max_chars, max_words=self.max_words)
        if not text:
            text = bound_length(" ".join(fallback.split()), self.max_chars)
        return SeekerReply(text=text, relieved=relieved, gave_up=gave_up, raw=raw)

    # ---- public API ---------------------------------------------------------------------
    def _params(self, seed: "int | Sequence[int] | None", opening: bool = False) -> GenerationParams:
        p = self.opening_params if opening else self.params
        if p.n != 1:
            p = p.replace(n=1)
        if p.max_words is None and self.max_words is not None:
            p = p.replace(max_words=self.max_words)  # no tokens after what the cleaning could keep
        if seed is not None:
            p = p.replace(seed=seed)
        return p

    def open(self, personas: Sequence[Persona], seed: "int | Sequence[int] | None" = None) -> list[SeekerReply]:
        """The seeker's first message for each persona.

        ``persona.opening`` is used verbatim where set (no LLM call for those); the others
        are generated with ONE ``backend.generate`` call with :attr:`opening_params` (none
        if every persona has an opening).

        Returns:
            ``len(personas)`` replies in order.
        """
        personas = list(personas)
        out: list[SeekerReply | None] = [None] * len(personas)
        todo = []
        for i, p in enumerate(personas):
            if p.opening is not None:
                text = bound_length(" ".join(p.opening.split()), self.max_chars)
                out[i] = SeekerReply(text=text, relieved=False, gave_up=False, raw=p.opening)
            else:
                todo.append(i)
        if todo:
            convs = [self.conversation(personas[i], []) for i in todo]
            if seed is not None and hasattr(seed, "__iter__"):  # one seed per row
                seed = _row_seeds(seed, len(personas), "personas")
                seed = [seed[i] for i in todo]
            comps = self.backend.generate(convs, self._params(seed, opening=True))
            for i, conv, c in zip(todo, convs, comps):
                fallback = _first_sentence(personas[i].situation) or SEEKER_FALLBACK
                out[i] = self.parse(c.text, self._echo(personas[i], conv), personas[i], fallback=fallback)
        return out  # type: ignore[return-value]

    def reply(
        self,
        personas: Sequence[Persona],
        dialogues: Sequence[Sequence[Turn]],
        seed: "int | Sequence[int] | None" = None,
        intensities: Sequence[float | None] | None = None,
    ) -> list[SeekerReply]:
        """The seeker's next message in each dialogue (each should end with a supporter turn).

        Args:
            personas: ``n`` personas.
            dialogues: ``n`` dialogues.
            seed: sampling seed: one int for every row, or one per dialogue (then a
                row's reply depends on its own seed only, not on its batch-mates).
            intensities: optional current intensity (1-5) of each seeker, e.g. the affect
                judge's last estimate, used in the prompt instead of the initial one.

        Returns:
            ``n`` replies; ONE ``backend.generate`` call for the batch.
        """
        personas, dialogues = list(personas), list(dialogues)
        if len(personas) != len(dialogues):
            raise ValueError(f"got {len(personas)} personas for {len(dialogues)} dialogues")
        if intensities is not None and len(intensities) != len(dialogues):
            raise ValueError(f"got {len(intensities)} intensities for {len(dialogues)} dialogues")
        if not dialogues:
            return []
        ints = list(intensities) if intensities is not None else [None] * len(dialogues)
        if seed is not None and hasattr(seed, "__iter__"):  # one seed per row
            seed = _row_seeds(seed, len(dialogues), "dialogues")
        convs = [self.conversation(p, d, v) for p, d, v in zip(personas, dialogues, ints)]
        comps = self.backend.generate(convs, self._params(seed))
        return [
            self.parse(c.text, self._echo(p, conv, v), p)
            for c, conv, p, v in zip(comps, convs, personas, ints)
        ]


def _row_seeds(seed: Sequence[int], n: int, what: str) -> list[int]:
    seeds = [int(s) for s in seed]
    if len(seeds) != n:
        raise ValueError(f"got {len(seeds)} seeds for {n} {what}")
    return seeds


def _first_sentence(text: str, max_chars: int = 200) -> str:
    text = " ".join((text or "").split())
    m = _SENTENCE_END.search(text)
    s = text[: m.end()] if m else text
    return bound_length(s, max_chars)
