"""Politeness removal: what an affect judge should not read.

Thanks, greetings and goodbyes say where a conversation is (its start or its end), not how
the seeker feels.  A judge trained on ESConv's survey ratings, which exist only for the
start and the end of a dialogue, learns them as intensity cues ("Thanks. I still feel
hopeless" scored calmer than "I still feel hopeless"), and a supporter can then earn
reward by getting the seeker to thank or say goodbye.  :func:`strip_politeness` removes
these formulas so that the judge reads only the rest.

What is removed (case-insensitive, wherever it occurs in an utterance):

* thanks: ``thank you``, ``thanks``, ``thx``, ``ty``, ``many thanks``, ``cheers`` with
  intensifiers (``so much``, ``a lot``, ``again``...) and a ``for ...`` tail up to the end
  of its clause (``thanks for listening``, ``thank you for your help``);
* appreciation: ``I (really) appreciate it/that/you/your ...`` up to the end of the clause,
  ``much appreciated``, ``I'm grateful for/to ...``;
* greetings: ``hi``, ``hello``, ``hey``, ``hiya``, ``good morning/afternoon/evening``,
  ``how are you (doing) (today)``, ``nice to meet/talk to you``, ``you're welcome``;
* goodbyes: ``bye``, ``goodbye``, ``see you (later/soon)``, ``take care``, ``have a
  good/nice/great... day/night/evening/weekend/one``, ``good night``, ``talk to you
  later/soon``, and ``you too`` when it is a whole clause.

What is kept: everything else, including statements about feelings ("I feel better",
"I'm relieved"): those are what the judge is for.  The list is hand-written and
English-only; a formula it does not know still leaks through (``benchmarks/reward_hacking.py``
measures how much).
"""

from __future__ import annotations

import re

_INTENS = r"(?:\s+(?:so|very|really|soo+|a\s+lot|a\s+ton|a\s+bunch|lots|heaps|again|kindly|much|too|everyone))*"
#: the rest of a clause, stopping before a conjunction that starts new content ("... but I still ...")
_CLAUSE = r"[^.!?,;\n]*?(?=\s+(?:but|and|though|although|because|yet|still|however)\b|[.!?,;\n]|$)"
_FOR_TAIL = r"(?:\s+for\b" + _CLAUSE + r")?"
#: start of a clause (start of text or after punctuation), with a filler word allowed
_START = r"(?:^|(?<=[.!?,;\n]))\s*(?:(?:and|so|ok|okay|well|anyway|alright)\s+)?"
_END = r"(?=[\s.!?,;:)\-]|$)"

_PATTERNS: tuple[re.Pattern[str], ...] = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        # thanks (+ intensifiers) (+ "for ..." up to the end of the clause)
        r"\b(?:many\s+|big\s+|huge\s+)?(?:thank\s*(?:you|u|ya|yo)|thanks|thanx|thx|ty|cheers)(?!\s+to\b)" + _INTENS + _FOR_TAIL + _END,
        # appreciation
        r"\b(?:i\s+)?(?:really\s+|truly\s+|do\s+|so\s+|very\s+much\s+)?appreciate\s+(?:it|that|this|you|your|all|everything)\b" + _CLAUSE,
        r"\b(?:much|greatly|really|very\s+much|truly)\s+appreciated\b",
        r"\bi(?:\s+am|'m|\s*m)\s+(?:so\s+|really\s+|very\s+|truly\s+)?(?:grateful|thankful)\s+(?:for|to)\b" + _CLAUSE,
        # greetings
        _START + r"(?:hi|hello|hey|hiya|heya|howdy|greetings)(?:\s+(?:there|again|friend|everyone))?" + _END,
        _START + r"good\s+(?:morning|afternoon|evening)" + _END,
        r"\b(?:and\s+)?how\s+(?:are|r)\s+(?:you|u)(?:\s+doing)?(?:\s+(?:today|tonight|this\s+\w+))?(?=\s*(?:[.!?,;\n]|$))",
        r"\bhow(?:'s|\s+is)\s+it\s+going(?=\s*(?:[.!?,;\n]|$))",
        r"\b(?:it'?s\s+)?(?:nice|good|great|lovely)\s+to\s+(?:meet|talk\s+to|chat\s+with|speak\s+with|see)\s+you(?:\s+too)?" + _END,
        r"\byou(?:'re|\s+are)\s+(?:very\s+|so\s+)?welcome" + _END,
        # goodbyes
        r"\b(?:good\s*-?\s*bye|bye(?:\s*-?\s*bye)?)(?:\s+(?:now|for\s+now))?" + _END,
        _START + r"see\s+(?:you|ya|u)(?:\s+(?:later|soon|around|tomorrow|next\s+time))?" + _END,
        r"\btake\s+care(?:\s+of\s+yourself)?(?!\s+of\b)" + _END,
        _START + r"(?:you\s+)?have\s+a\s+(?:good|great|nice|lovely|wonderful|blessed|pleasant)\s+(?:day|night|evening|weekend|one|afternoon|morning)(?:\s+too)?" + _END,
        r"\bgood\s*-?\s*night" + _END,
        _START + r"talk\s+(?:to\s+(?:you|ya|u)\s+)?(?:later|soon|tomorrow)" + _END,
        _START + r"(?:you\s+too|same\s+to\s+you)(?=\s*(?:[.!?,;\n]|$))",
    )
)

_SPLIT = re.compile(r"([.!?,;:\n]+)")
#: words that mean nothing once the formula around them is gone ("Cheers mate" -> "mate")
_FILLER = frozenset("and but so ok okay well oh mate again too also anyway alright really very much lol haha".split())
_HAS_WORD = re.compile(r"[A-Za-z0-9]")


def _tidy(text: str) -> str:
    """Drop clauses left with only filler words and the punctuation a removal leaves dangling."""
    parts = _SPLIT.split(text)  # text, punct, text, punct, ...
    kept: list[str] = []
    for i in range(0, len(parts), 2):
        words = re.findall(r"[a-z0-9']+", parts[i].lower())
        punct = parts[i + 1] if i + 1 < len(parts) else ""
        if not words or all(w in _FILLER for w in words):
            continue
        end = punct.strip()
        if end and end[0] in ".!?":
            end = end.rstrip(",;:") or end[0]
        kept.append(parts[i].strip() + (end[:3] if end else ""))
    out = " ".join(k for k in kept if k)
    return out.rstrip(",;:").strip()


def strip_politeness(text: str) -> str:
    """``text`` without thanks, greetings and goodbyes (see the module docstring).

    Returns the rest, whitespace-normalised; where a formula was removed, clauses left with
    only filler words ("and", "mate", "okay") and dangling punctuation go too; ``""`` when nothing with a letter or digit remains (an utterance
    that was only politeness).  Words are never partly cut: ``"they"`` keeps its ``"hey"``.
    """
    if not isinstance(text, str):
        raise TypeError(f"strip_politeness expects a str, got {type(text).__name__}")
    out, removed = text, 0
    for p in _PATTERNS:
        out, k = p.subn(" ", out)
        removed += k
    if not removed:
        return " ".join(text.split())
    out = _tidy(" ".join(out.split()))
    if not _HAS_WORD.search(out):
        return ""
    return out[0].upper() + out[1:] if out[0].islower() and text.lstrip()[:1].isupper() else out
