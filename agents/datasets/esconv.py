"""Loader for ESConv (Liu et al., 2021), in both of its published layouts.

* the Hugging Face release (``train.jsonl`` / ``valid.jsonl``, one dialogue per line), whose
  turns are ``{"text", "speaker": "usr"|"sys", "strategy"}``;
* the canonical ``ESConv.json`` (one JSON list), whose turns are
  ``{"content", "speaker": "seeker"|"supporter", "annotation": {"strategy"} | {"feedback"}}``.

The layout is detected per turn, so either file type may hold either layout.  The corpus is
CC BY-NC 4.0 and is not shipped: a split name is looked up in a data folder (see
:func:`resolve_esconv_dir`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from agents.dialogue import Speaker, Turn

from .files import RecordLocation, raw_records
from .record import DialogueRecord

ENV_VAR = "ESC_ENV_ESCONV_DIR"
SPLITS = ("train", "valid")

ESConvDialogue = DialogueRecord
"""An ESConv dialogue: the shared :class:`~agents.datasets.record.DialogueRecord`."""

_SPEAKERS: dict[str, Speaker] = {"usr": "seeker", "seeker": "seeker", "sys": "supporter", "supporter": "supporter"}
_REQUIRED = ("emotion_type", "problem_type", "situation", "dialog")


# ----------------------------------------------------------------------------- locating data
def _default_dirs() -> list[Path]:
    repo = Path(__file__).resolve().parents[2]
    out = [repo.parent / "shared" / "data" / "esconv", Path.cwd().parent / "shared" / "data" / "esconv"]
    return list(dict.fromkeys(out))


def resolve_esconv_dir(data_dir: "str | os.PathLike | None" = None) -> Path:
    """The folder holding ``train.jsonl`` / ``valid.jsonl``.

    Order: ``data_dir`` if given, else ``$ESC_ENV_ESCONV_DIR``, else ``../shared/data/esconv``
    next to the repository, else ``../shared/data/esconv`` next to the working directory.

    Raises:
        FileNotFoundError: the folder does not exist (the message lists what was tried).
    """
    if data_dir is not None:
        tried = [Path(data_dir)]
    elif os.environ.get(ENV_VAR):
        tried = [Path(os.environ[ENV_VAR])]
    else:
        tried = _default_dirs()
    for d in tried:
        if d.is_dir():
            return d
    raise FileNotFoundError(
        f"ESConv data folder not found (tried: {', '.join(map(str, tried))}); pass data_dir= or set "
        f"${ENV_VAR}. ESConv is CC BY-NC 4.0 and not shipped: get it from thu-coai/Emotional-Support-Conversation."
    )


def _is_split_name(source: Any) -> bool:
    return isinstance(source, str) and not any(c in source for c in "/\\") and Path(source).suffix not in (".json", ".jsonl")


def _split_path(split: str, data_dir: "str | os.PathLike | None") -> Path:
    d = resolve_esconv_dir(data_dir)
    path = d / f"{split}.jsonl"
    if not path.is_file():
        have = sorted(p.stem for p in d.glob("*.jsonl"))
        raise FileNotFoundError(f"ESConv split {split!r} not found: no {path}; splits there: {have}")
    return path


# ----------------------------------------------------------------------------- parsing records
def _rating(value: Any, where: RecordLocation, field: str) -> int | None:
    """A 1-5 survey value given as ``"4"`` or ``4``; missing or ``""`` is ``None``."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise where.error(f"expected a rating 1-5, got {value!r}", field)
    try:
        n = int(value.strip()) if isinstance(value, str) else value
    except ValueError:
        raise where.error(f"expected a rating 1-5, got {value!r}", field) from None
    if not isinstance(n, int) or not 1 <= n <= 5:
        raise where.error(f"expected a rating 1-5, got {value!r}", field)
    return n


def _str_field(rec: dict, name: str, where: RecordLocation, optional: bool = False) -> str | None:
    v = rec.get(name)
    if v is None and optional:
        return None
    if not isinstance(v, str):
        raise where.error(f"expected a string, got {type(v).__name__}", name)
    return v.strip()


def _parse_turn(t: Any, i: int, where: RecordLocation) -> tuple[Turn, int | None]:
    """A :class:`Turn` and the seeker's feedback rating (canonical layout only)."""
    f = f"dialog[{i}]"
    if not isinstance(t, dict):
        raise where.error(f"expected a turn mapping, got {type(t).__name__}", f)
    raw_speaker = t.get("speaker")
    speaker = _SPEAKERS.get(raw_speaker) if isinstance(raw_speaker, str) else None
    if speaker is None:
        raise where.error(f"expected one of {sorted(_SPEAKERS)}, got {raw_speaker!r}", f"{f}.speaker")
    key = "content" if "content" in t else "text"
    text = t.get(key)
    if not isinstance(text, str):
        raise where.error(f"expected a string, got {type(text).__name__}", f"{f}.{key}")
    ann = t.get("annotation") or {}
    if not isinstance(ann, dict):
        raise where.error(f"expected a mapping, got {type(ann).__name__}", f"{f}.annotation")
    strategy = t.get("strategy", ann.get("strategy"))
    if strategy is not None and not isinstance(strategy, str):
        raise where.error(f"expected a string, got {type(strategy).__name__}", f"{f}.strategy")
    feedback = _rating(ann.get("feedback"), where, f"{f}.annotation.feedback") if speaker == "seeker" else None
    label = strategy.strip() or None if (speaker == "supporter" and strategy is not None) else None
    return Turn(speaker, text.strip(), label), feedback


def parse_esconv_record(rec: Any, *, id: str, source: str = "esconv", where: RecordLocation | None = None) -> DialogueRecord:
    """One ESConv dialogue (either layout), already parsed from JSON, as a :class:`DialogueRecord`.

    ``where`` locates the record in its file for error messages.

    Raises:
        DatasetError: a field is missing or has the wrong type or value.
    """
    where = where or RecordLocation("<record>", None, 0)
    if not isinstance(rec, dict):
        raise where.error(f"expected a dialogue mapping, got {type(rec).__name__}")
    for name in _REQUIRED:
        if name not in rec:
            raise where.error("is missing", name)
    survey = rec.get("survey_score") or {}
    if not isinstance(survey, dict):
        raise where.error(f"expected a mapping, got {type(survey).__name__}", "survey_score")
    seeker = survey.get("seeker") or {}
    if not isinstance(seeker, dict):
        raise where.error(f"expected a mapping, got {type(seeker).__name__}", "survey_score.seeker")
    dialog = rec["dialog"]
    if not isinstance(dialog, list):
        raise where.error(f"expected a list of turns, got {type(dialog).__name__}", "dialog")
    turns: list[Turn] = []
    feedback: dict[int, int] = {}
    for i, t in enumerate(dialog):
        turn, fb = _parse_turn(t, i, where)
        turns.append(turn)
        if fb is not None:
            feedback[i] = fb

    def score(name: str) -> int | None:
        return _rating(seeker.get(name), where, f"survey_score.seeker.{name}")

    return DialogueRecord(
        id=id,
        emotion_type=_str_field(rec, "emotion_type", where),
        problem_type=_str_field(rec, "problem_type", where),  # type: ignore[arg-type]
        situation=_str_field(rec, "situation", where),  # type: ignore[arg-type]
        experience_type=_str_field(rec, "experience_type", where, optional=True),
        initial_intensity=score("initial_emotion_intensity"),
        final_intensity=score("final_emotion_intensity"),
        empathy=score("empathy"),
        relevance=score("relevance"),
        turns=turns,
        feedback=feedback,
        source=source,
    )


# ----------------------------------------------------------------------------- public API
def load_esconv(source: "str | os.PathLike", data_dir: "str | os.PathLike | None" = None) -> list[DialogueRecord]:
    """Load ESConv dialogues.

    Args:
        source: a split name (``"train"``, ``"valid"``: ``<data dir>/<split>.jsonl``), or a path
            to a ``.jsonl`` file (HF release layout) or a ``.json`` file (canonical ``ESConv.json``,
            one JSON list).  Either layout is accepted in either file type.
        data_dir: where split files live; see :func:`resolve_esconv_dir`.

    Returns:
        The dialogues in file order, with ids ``"esconv:<split or file stem>/<index>"`` (0-based).

    Raises:
        FileNotFoundError: the split or file does not exist.
        DatasetError: the file is malformed; the message names the file, line or record and field.
    """
    path = _split_path(str(source), data_dir) if _is_split_name(source) else Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"ESConv file not found: {path}")
    name = path.stem
    out: list[DialogueRecord] = []
    for index, (line, rec) in enumerate(raw_records(path, "expected .jsonl (HF release) or .json (ESConv.json)")):
        where = RecordLocation(str(path), line, index)
        out.append(parse_esconv_record(rec, id=f"esconv:{name}/{index}", source=f"esconv:{name}", where=where))
    return out


class ReferencePoint(NamedTuple):
    """A point in a recorded dialogue where the human supporter spoke next."""

    dialogue: DialogueRecord
    prefix: list[Turn]
    """All turns before the supporter turn (the context a model would see)."""
    reference: Turn
    """The human supporter's turn (with its strategy): the reference answer."""


def esconv_prefixes(
    dialogues: Iterable[DialogueRecord],
    *,
    min_prefix_turns: int = 1,
    strategies: "Iterable[str] | None" = None,
    max_per_dialogue: int | None = None,
) -> Iterator[ReferencePoint]:
    """Yield ``(dialogue, prefix, reference)`` for every supporter turn, for reference-based evaluation.

    Args:
        dialogues: recorded dialogues (e.g. from :func:`load_esconv`).
        min_prefix_turns: skip supporter turns with fewer preceding turns (the default 1 skips a
            supporter greeting that opens the dialogue with no context).
        strategies: keep only references with one of these strategies (case-insensitive).
        max_per_dialogue: at most this many points per dialogue (the earliest ones).
    """
    wanted = None if strategies is None else {s.lower() for s in strategies}
    for d in dialogues:
        n = 0
        for i, t in enumerate(d.turns):
            if max_per_dialogue is not None and n >= max_per_dialogue:
                break
            if t.speaker != "supporter" or i < min_prefix_turns:
                continue
            if wanted is not None and (t.strategy or "").lower() not in wanted:
                continue
            n += 1
            yield ReferencePoint(d, list(d.turns[:i]), t)
