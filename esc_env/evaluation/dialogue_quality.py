"""Readability metrics of generated dialogue: plain functions of plain text.

Definitions (issue 16; every function below implements one of them):

* **word tokens**: lower-cased runs of letters, digits and apostrophes (``"I'm"`` is one
  word, punctuation is dropped).
* **repeated-trigram share** of one utterance: ``(T - D) / T`` where ``T`` is the number of
  word trigrams and ``D`` the number of distinct ones; 0 with fewer than three words.
  ``"I am sad I am sad"`` has ``T = 4`` trigrams, ``D = 3`` distinct: 0.25.
* **sentence repeats**: how often the most frequent sentence occurs in one utterance
  (sentences split at ``. ! ? ;`` and line breaks, compared as lower-cased words).
* an utterance is **degenerate** when its repeated-trigram share is over 0.30 or one
  sentence occurs three times or more.
* **distinct-n**: :func:`esc_env.evaluation.metrics.distinct_n` (distinct n-grams over all
  n-grams of all utterances).
* a **role break**: a seeker utterance that speaks as the helper (offers help or support,
  calls itself a listener, an assistant or an AI), a supporter utterance that calls itself an
  AI or a language model, or either side **echoing its prompt**: the utterance shares a run
  of :data:`ECHO_NGRAM` words with the instructions it was given.
* an opening is **on its persona's problem** when it shares at least one content-word stem
  (first five letters of a word of three or more letters that is not in :data:`STOPWORDS`)
  with the persona's problem type and situation.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

from .metrics import distinct_n

__all__ = [
    "DEGENERATE_TRIGRAM_SHARE",
    "DEGENERATE_SENTENCE_REPEATS",
    "ECHO_NGRAM",
    "words",
    "sentences",
    "repeated_trigram_share",
    "max_sentence_repeats",
    "is_degenerate",
    "degenerate_share",
    "echoes_prompt",
    "speaks_as_helper",
    "speaks_as_ai",
    "is_role_break",
    "opening_on_problem",
    "dialogue_quality",
]

DEGENERATE_TRIGRAM_SHARE = 0.30
"""An utterance whose repeated-trigram share is over this is degenerate."""

DEGENERATE_SENTENCE_REPEATS = 3
"""An utterance in which one sentence occurs this often is degenerate."""

ECHO_NGRAM = 6
"""An utterance that shares a run of this many words with its prompt echoes the prompt."""

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?;…])\s+|\n+")

#: common words that say nothing about a persona's problem
STOPWORDS = frozenset(
    """the and you your was but not for can get got all one how why who any out off too are has had
    her his him its our she they did does she'll i'll i'd you're it'd we're day days now see say way
    yet let lot bit ago try tried back well""".split()
    + """about above after again against also always because been before being below between both
    could didn't does doesn't doing don't down during each even ever every feel feeling feels felt
    from further have haven't having here hers herself himself i'm i've into it's itself just know
    like little lot lots make many more most much myself need never now only other ought ourselves
    over really right same should so some still such than that that's their theirs them themselves
    then there these they thing things think this those through time today together tell told under
    until very want was wasn't were what when where which while will with would yeah yes your yours
    yourself yourselves going gonna getting anything something someone everything nothing sure okay
    people person problem problems help talk talking chat listen listener""".split()
)

#: phrases with which a seeker speaks as the helper (matched on lower-cased text)
HELPER_PATTERNS = (
    r"\bhow (?:can|may|could) i (?:help|support|assist)\b",
    r"\bi'?m (?:here|always here) (?:to|for) (?:listen|help|support|you)\b",
    r"\bi am (?:here|always here) (?:to|for) (?:listen|help|support|you)\b",
    r"\bas (?:a|your) (?:listener|helper|supporter|volunteer|counsell?or|therapist)\b",
    r"\bi'?m (?:a|your) (?:listener|helper|supporter|volunteer|counsell?or|therapist)\b",
    r"\bwhat(?:'s| is) (?:troubling|bothering|worrying) you\b",
    r"\bthank you for (?:reaching out|sharing (?:that|this) with me)\b",
    r"\b(?:i'?ll|i will|i can|let me|i'?m going to|i want to) (?:\w+ ){0,4}(?:help|support|comfort) you\b",
    r"\b(?:here|there) for you\b",
    r"\bsorry to hear\b",
    r"\byou'?re not alone\b",
    r"\bproud of you\b",
    r"\bgood listener\b",
    r"\bif you need (?:anything|any help|someone|to talk)\b",
    r"\bi'?m not (?:a )?(?:human|person|real person)\b",
    r"\bsorry for (?:your loss|any (?:inconvenience|confusion|misunderstanding))\b",
    r"\bit sounds like you'?re going through\b",
)
#: phrases with which either side speaks as a machine
AI_PATTERNS = (
    r"\bas an? (?:ai|artificial intelligence|language model|assistant|chatbot|bot)\b",
    r"\bi'?m (?:an? )?(?:ai|language model|chatbot)\b",
    r"\bi am (?:an? )?(?:ai|language model|chatbot)\b",
    r"\b(?:ai|language) model\b",
    r"\bsmollm\b",
)
_HELPER = re.compile("|".join(HELPER_PATTERNS))
_AI = re.compile("|".join(AI_PATTERNS))


def words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (letters, digits, inner apostrophes)."""
    return _WORD.findall((text or "").lower().replace("’", "'"))


def sentences(text: str) -> list[str]:
    """The non-empty sentences of ``text`` (split after ``. ! ? ; …`` and at line breaks)."""
    return [s.strip() for s in _SENTENCE_SPLIT.split(text or "") if s and s.strip()]


def repeated_trigram_share(text: str) -> float:
    """``(T - D) / T`` over the word trigrams of ``text`` (0.0 with fewer than 3 words)."""
    w = words(text)
    grams = [tuple(w[i : i + 3]) for i in range(len(w) - 2)]
    if not grams:
        return 0.0
    return (len(grams) - len(set(grams))) / len(grams)


def max_sentence_repeats(text: str) -> int:
    """How often the most frequent sentence occurs (sentences compared as word lists); 0 for no text."""
    keys = [" ".join(words(s)) for s in sentences(text)]
    keys = [k for k in keys if k]
    return max(Counter(keys).values()) if keys else 0


def is_degenerate(text: str, trigram_share: float = DEGENERATE_TRIGRAM_SHARE,
                  sentence_repeats: int = DEGENERATE_SENTENCE_REPEATS) -> bool:
    """Over ``trigram_share`` of the word trigrams repeat, or one sentence occurs ``sentence_repeats`` times."""
    return repeated_trigram_share(text) > trigram_share or max_sentence_repeats(text) >= sentence_repeats


def degenerate_share(texts: Iterable[str]) -> float:
    """Share of degenerate utterances; ``nan`` for no utterance."""
    flags = [is_degenerate(t) for t in texts]
    return sum(flags) / len(flags) if flags else float("nan")


def _ngrams(w: Sequence[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


def echoes_prompt(text: str, prompt_texts: Iterable[str], n: int = ECHO_NGRAM) -> bool:
    """Whether ``text`` shares a run of ``n`` words with any of ``prompt_texts``."""
    mine = _ngrams(words(text), n)
    if not mine:
        return False
    return any(mine & _ngrams(words(p), n) for p in prompt_texts)


def speaks_as_helper(text: str) -> bool:
    """A phrase of the helper's role (:data:`HELPER_PATTERNS`): offering help, calling oneself a listener."""
    return bool(_HELPER.search((text or "").lower().replace("’", "'")))


def speaks_as_ai(text: str) -> bool:
    """A phrase in which the speaker presents itself as a machine (:data:`AI_PATTERNS`)."""
    return bool(_AI.search((text or "").lower().replace("’", "'")))


def is_role_break(text: str, speaker: str, prompt_texts: Iterable[str] = ()) -> bool:
    """Whether one utterance breaks its role (module docstring).

    Args:
        text: the utterance.
        speaker: ``"seeker"`` or ``"supporter"``.
        prompt_texts: the instructions the speaker was given (echo check).
    """
    if speaker not in ("seeker", "supporter"):
        raise ValueError(f"speaker must be 'seeker' or 'supporter', got {speaker!r}")
    if speaks_as_ai(text) or echoes_prompt(text, prompt_texts):
        return True
    return speaker == "seeker" and speaks_as_helper(text)


def _stems(text: str) -> set[str]:
    return {w[:5] for w in words(text) if len(w) >= 3 and w not in STOPWORDS}


def opening_on_problem(opening: str, problem_type: str, situation: str = "") -> bool:
    """Whether ``opening`` shares a content-word stem with the persona's problem and situation."""
    return bool(_stems(opening) & _stems(f"{problem_type} {situation}"))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def dialogue_quality(
    dialogues: Sequence[Sequence[Mapping[str, Any]]],
    prompts: Mapping[str, Sequence[str]] | None = None,
    openings: Sequence[tuple[str, str, str]] = (),
) -> dict[str, float]:
    """Every metric of this module over a set of dialogues.

    Args:
        dialogues: dialogues as lists of turns ``{"speaker": "seeker"|"supporter", "text": str}``
            (``Turn.to_dict()`` or an episode record's ``turns``).
        prompts: instruction texts per speaker for the echo check,
            ``{"seeker": [...], "supporter": [...]}``.
        openings: ``(opening, problem_type, situation)`` triples for :func:`opening_on_problem`.

    Returns:
        ``utterances``, ``degenerate_share``, ``distinct_1``, ``distinct_2``,
        ``words_seeker``, ``words_supporter`` (mean words per utterance), ``role_break_share``,
        ``role_break_seeker``, ``role_break_supporter`` and ``opening_on_problem`` (share of
        ``openings``; ``nan`` when none is given).
    """
    prompts = prompts or {}
    texts: list[str] = []
    by_role: dict[str, list[str]] = {"seeker": [], "supporter": []}
    breaks: dict[str, list[bool]] = {"seeker": [], "supporter": []}
    for d in dialogues:
        for t in d:
            sp, text = t["speaker"], t["text"]
            texts.append(text)
            by_role[sp].append(text)
            breaks[sp].append(is_role_break(text, sp, prompts.get(sp, ())))
    all_breaks = breaks["seeker"] + breaks["supporter"]
    return {
        "utterances": float(len(texts)),
        "degenerate_share": degenerate_share(texts),
        "distinct_1": distinct_n(texts, 1) if texts else float("nan"),
        "distinct_2": distinct_n(texts, 2) if texts else float("nan"),
        "words_seeker": _mean([len(words(t)) for t in by_role["seeker"]]),
        "words_supporter": _mean([len(words(t)) for t in by_role["supporter"]]),
        "role_break_share": _mean([float(b) for b in all_breaks]),
        "role_break_seeker": _mean([float(b) for b in breaks["seeker"]]),
        "role_break_supporter": _mean([float(b) for b in breaks["supporter"]]),
        "opening_on_problem": _mean([float(opening_on_problem(*o)) for o in openings]),
    }
