"""Reference-based evaluation on ESConv (the protocol of the AFlow paper's Table 1).

For every supporter turn of an ESConv split (:func:`esc_env.datasets.esconv.esconv_prefixes`)
the policy sees the dialogue before it, predicts the next strategy and (with a supporter
LLM) writes the next utterance; both are compared with what the human supporter did.

Metrics
-------

==================  ===========================================================================
metric              how
==================  ===========================================================================
strategy accuracy   exact match of the predicted and the reference strategy (in the policy's set)
strategy macro-F1   :func:`esc_env.evaluation.metrics.macro_f1` over the policy's strategies
BLEU-2, BLEU-4      sacrebleu corpus BLEU (``max_ngram_order`` 2 / 4, 13a tokenisation,
                    lower-cased), 0-100
ROUGE-L             rouge-score ``rougeL`` F-measure (Porter stemming), mean over turns, 0-100
METEOR              nltk ``meteor_score`` (WordNet synonyms), mean over turns, 0-100; needs
                    WordNet (see :func:`load_wordnet`), else left out with the reason
Distinct-1, -2      distinct n-grams / all n-grams of the generated utterances, 0-100
perplexity          ``exp(-sum log p / sum tokens)`` of the human replies under the supporter
                    LLM, given the context and the policy's predicted strategy (only for
                    backends with a tokenizer and exact ``score``, e.g. ``embedded``, ``hf:``)
==================  ===========================================================================

Strategy sets
-------------

ESConv's annotations use ESConv's 8 strategies.  A policy acting in the AFlow set is
compared after mapping each reference into the AFlow set with this table (our own
mapping, by the definitions in :mod:`agents.strategies`):

=============================  ========================  =================================
ESConv strategy                AFlow strategy            note
=============================  ========================  =================================
Question                       Clarification             asking to understand more
Restatement or Paraphrasing    Reflective Statements     mirroring the seeker's words
Reflection of feelings         Emotional Validation      naming and accepting the feeling
Self-disclosure                Empathetic Statements     sharing to show understanding
Affirmation and Reassurance    Affirmation
Providing Suggestions          Suggest Options
Information                    Share Information
Others                         (none)                    greetings, thanks: no AFlow match;
                                                         left out of the strategy metrics
=============================  ========================  =================================

AFlow's *Collaborative Planning* has no ESConv counterpart, so it is never a reference
label (a policy that predicts it is counted wrong).  References left out of the strategy
metrics still count for the text metrics.

The policy's observation for a prefix is built as an environment would build it: the
dialogue text, ``turn`` = supporter turns so far, ``intensity`` = the dialogue's surveyed
initial intensity (3 when missing; ESConv has no per-turn intensity), ``last_strategy`` =
the last supporter turn's strategy (mapped into the policy's set) or "none".
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from agents.dialogue import Turn, as_chat, format_dialogue
from agents.strategies import StrategySet, get_strategy_set

from .metrics import accuracy, distinct_n, macro_f1

__all__ = [
    "ESCONV_TO_AFLOW",
    "map_strategy",
    "RefPoint",
    "reference_points",
    "strategy_metrics",
    "text_metrics",
    "load_wordnet",
    "WordNetUnavailable",
    "perplexity",
    "evaluate_reference",
    "format_reference_table",
]

ESCONV_TO_AFLOW: dict[str, str | None] = {
    "Question": "Clarification",
    "Restatement or Paraphrasing": "Reflective Statements",
    "Reflection of feelings": "Emotional Validation",
    "Self-disclosure": "Empathetic Statements",
    "Affirmation and Reassurance": "Affirmation",
    "Providing Suggestions": "Suggest Options",
    "Information": "Share Information",
    "Others": None,
}


def map_strategy(name: str | None, target: "str | StrategySet") -> str | None:
    """An ESConv strategy name in the ``target`` set (``None``: no counterpart or no name).

    A name already in ``target`` is returned in its canonical spelling.
    """
    if not name:
        return None
    target = get_strategy_set(target)
    for n in target.names:
        if n.lower() == name.lower():
            return n
    for k, v in ESCONV_TO_AFLOW.items():
        if k.lower() == name.lower() and v is not None and v in target.names:
            return v
    return None


@dataclass
class RefPoint:
    """One supporter turn of a recorded dialogue, as a test item."""

    id: str
    prefix: list[Turn]
    reference: Turn
    reference_strategy: str | None
    """The reference's strategy in the policy's set (``None``: left out of strategy metrics)."""
    intensity: float


def reference_points(
    split: str = "valid",
    *,
    strategies: "str | StrategySet" = "esconv",
    limit: int | None = None,
    max_per_dialogue: int | None = None,
    data_dir: "str | os.PathLike | None" = None,
) -> list[RefPoint]:
    """The first ``limit`` supporter turns of an ESConv split (or file), in file order.

    Raises:
        FileNotFoundError: the split or data folder is missing.
    """
    from esc_env.datasets.esconv import esconv_prefixes, load_esconv

    target = get_strategy_set(strategies)
    out: list[RefPoint] = []
    for rp in esconv_prefixes(load_esconv(split, data_dir=data_dir), max_per_dialogue=max_per_dialogue):
        k = len(rp.prefix)
        intensity = float(rp.dialogue.initial_intensity) if rp.dialogue.initial_intensity else 3.0
        out.append(RefPoint(f"{rp.dialogue.id}#{k}", rp.prefix, rp.reference, map_strategy(rp.reference.strategy, target), intensity))
        if limit is not None and len(out) >= limit:
            break
    return out


def observation_of(point: RefPoint, strategies: StrategySet, max_turns: int = 10) -> dict:
    """The environment-style observation of a prefix (see the module docstring)."""
    from esc_env.spaces import make_observation

    sup = [t for t in point.prefix if t.speaker == "supporter"]
    last = len(strategies)
    if sup:
        mapped = map_strategy(sup[-1].strategy, strategies)
        if mapped is not None:
            last = strategies.index(mapped)
    return make_observation(format_dialogue(point.prefix), min(len(sup), max_turns), point.intensity, last)


# ----------------------------------------------------------------------------- metrics
def strategy_metrics(y_true: Sequence[str | None], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Accuracy and macro-F1 over the points whose reference has a label in the set."""
    pairs = [(t, p) for t, p in zip(y_true, y_pred) if t is not None]
    if not pairs:
        return {"n": 0, "excluded": len(y_true), "accuracy": None, "macro_f1": None}
    t, p = [a for a, _ in pairs], [b for _, b in pairs]
    present = [c for c in labels if c in set(t) | set(p)]
    return {
        "n": len(pairs),
        "excluded": len(y_true) - len(pairs),
        "accuracy": 100 * accuracy(t, p),
        "macro_f1": 100 * macro_f1(t, p, labels=present),
        "labels": present,
    }


class WordNetUnavailable(RuntimeError):
    """No WordNet data is installed, so METEOR cannot be computed."""


# the lexicographer files of WordNet 3.0, in file-number order (lexnames(5WN)); the
# Debian packages ship the database without this small index, which nltk needs
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_WN_FILES = ("index.sense", "index.noun", "index.verb", "index.adj", "index.adv", "data.noun", "data.verb",
             "data.adj", "data.adv", "noun.exc", "verb.exc", "adj.exc", "adv.exc", "cntlist.rev")
_WORDNET = None


def _debian_wordnet_dirs() -> list[Path]:
    dirs = [Path(os.environ["WNSEARCHDIR"])] if os.environ.get("WNSEARCHDIR") else []
    return dirs + [Path("/usr/share/wordnet")]


def load_wordnet():
    """nltk's WordNet reader, from nltk data if installed, else from Debian's packages.

    Nothing is downloaded.  Order: nltk's own ``corpora/wordnet`` (``nltk.download``
    done beforehand); else the WordNet 3.0 database of Debian's ``wordnet-base`` and
    ``wordnet-sense-index`` packages (``$WNSEARCHDIR`` or ``/usr/share/wordnet``), copied
    once into ``<esc-env cache>/nltk_data/corpora/wordnet`` with the ``lexnames`` index
    nltk expects.

    Raises:
        WordNetUnavailable: neither is installed (the message says what to install).
    """
    global _WORDNET
    if _WORDNET is not None:
        return _WORDNET
    import nltk

    try:
        nltk.data.find("corpora/wordnet")
        found = True
    except LookupError:
        found = False
    if not found:
        src = next((d for d in _debian_wordnet_dirs() if all((d / f).is_file() for f in _WN_FILES)), None)
        if src is None:
            raise WordNetUnavailable(
                "METEOR needs WordNet: install Debian's packages 'wordnet-base wordnet-sense-index' "
                "(apt-get install wordnet-base wordnet-sense-index) or nltk's 'wordnet' data"
            )
        from agents.backends.embedded import cache_root

        root = cache_root() / "nltk_data"
        dst = root / "corpora" / "wordnet"
        stamp = dst / ".esc-env-source"
        sig = f"{src} " + " ".join(str((src / f).stat().st_size) for f in _WN_FILES)
        if not (stamp.is_file() and stamp.read_text() == sig):
            dst.mkdir(parents=True, exist_ok=True)
            for f in _WN_FILES:
                shutil.copyfile(src / f, dst / f)
            (dst / "lexnames").write_text("".join(f"{i:02d}\t{n}\t{_lexfile_pos(n)}\n" for i, n in enumerate(_LEXNAMES)))
            stamp.write_text(sig)
        if str(root) not in nltk.data.path:
            nltk.data.path.insert(0, str(root))
    from nltk.corpus import wordnet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": not needed here
        wordnet.ensure_loaded()
    _WORDNET = wordnet
    return wordnet


def _lexfile_pos(name: str) -> int:
    return {"noun": 1, "verb": 2, "adj": 3, "adv": 4}[name.split(".")[0]]


def _tokens(text: str) -> list[str]:
    from nltk.tokenize import wordpunct_tokenize

    return wordpunct_tokenize(text.lower())


def text_metrics(hypotheses: Sequence[str], references: Sequence[str], meteor: bool = True) -> dict:
    """BLEU-2/4, ROUGE-L, METEOR, Distinct-1/2 of generated utterances (0-100).

    ``meteor`` is ``None`` with ``meteor_note`` giving the reason when WordNet is missing.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"got {len(hypotheses)} hypotheses and {len(references)} references")
    if not hypotheses:
        raise ValueError("text_metrics needs at least one hypothesis")
    from rouge_score import rouge_scorer
    from sacrebleu.metrics import BLEU

    hyps, refs = list(hypotheses), list(references)
    out: dict[str, Any] = {"n": len(hyps)}
    for order in (2, 4):
        out[f"bleu{order}"] = BLEU(max_ngram_order=order, lowercase=True).corpus_score(hyps, [refs]).score
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    out["rougeL"] = 100 * float(np.mean([scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)]))
    out["meteor"] = None
    if meteor:
        try:
            wn = load_wordnet()
            from nltk.translate.meteor_score import meteor_score

            out["meteor"] = 100 * float(np.mean([meteor_score([_tokens(r)], _tokens(h), wordnet=wn) for h, r in zip(hyps, refs)]))
        except WordNetUnavailable as e:
            out["meteor_note"] = str(e)
    else:
        out["meteor_note"] = "METEOR not requested"
    out["distinct1"] = 100 * distinct_n(hyps, 1)
    out["distinct2"] = 100 * distinct_n(hyps, 2)
    return out


# ----------------------------------------------------------------------------- the supporter
def supporter_messages(supporter: Any, dialogue: Sequence[Turn], strategy: str | None) -> list[dict]:
    """The chat messages the supporter LLM reads before writing its reply."""
    for name in ("conversation", "messages", "build_messages"):
        fn = getattr(supporter, name, None)
        if callable(fn):
            return list(fn(list(dialogue), strategy))
    from agents import prompts
    from agents.supporter import SUPPORTER_MAX_WORDS

    block = (prompts.SUPPORTER_STRATEGY.format(name=strategy, definition=supporter.strategies.definition(strategy))
             if strategy is not None else prompts.SUPPORTER_FREE)
    system = prompts.SUPPORTER_SYSTEM.format(strategy_block=block, max_words=SUPPORTER_MAX_WORDS)
    chat = as_chat(dialogue, "supporter") or [{"role": "user", "content": prompts.SUPPORTER_CHAT_START}]
    if chat[0]["role"] == "assistant":
        chat = [{"role": "user", "content": prompts.SUPPORTER_CHAT_START}] + chat
    return [{"role": "system", "content": system}] + chat


def perplexity(backend: Any, conversations: Sequence[list[dict]], replies: Sequence[str], batch_size: int = 8) -> dict:
    """Perplexity of ``replies`` as the assistant's answers to ``conversations``.

    Uses ``backend.score`` (the summed log-probability of the reply's tokens) and
    ``backend.tokenizer`` for the token count: ``exp(-sum(log p) / sum(tokens))``.

    Returns ``{"perplexity", "tokens", "n"}``, or ``{"perplexity": None, "note"}`` when the
    backend cannot give exact log-probabilities.
    """
    tok = getattr(backend, "tokenizer", None)
    if tok is None or not callable(getattr(backend, "score", None)):
        return {"perplexity": None, "note": f"{type(backend).__name__} has no tokenizer: perplexity needs a local model (embedded, hf:)"}
    items = [(c, r.strip()) for c, r in zip(conversations, replies) if r.strip()]
    total_lp, total_tok = 0.0, 0
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        res = backend.score([c for c, _ in chunk], [[r] for _, r in chunk])
        if res.method != "exact":
            return {"perplexity": None, "note": f"the backend's scores are {res.method!r}, not exact log-probabilities"}
        for (_, text), lp in zip(chunk, res.logprobs[:, 0]):
            if math.isfinite(lp):
                total_lp += float(lp)
                total_tok += len(tok(text, add_special_tokens=False)["input_ids"])
    if total_tok == 0:
        return {"perplexity": None, "note": "no reply could be scored"}
    return {"perplexity": float(math.exp(-total_lp / total_tok)), "tokens": total_tok, "n": len(replies)}


# ----------------------------------------------------------------------------- the protocol
def evaluate_reference(
    policy: Any,
    points: Sequence[RefPoint],
    strategies: "str | StrategySet",
    *,
    supporter: Any = None,
    generate: bool = True,
    ppl: bool = True,
    meteor: bool = True,
    batch_size: int = 16,
    progress: bool = True,
    seed: int = 0,
) -> tuple[dict, list[dict]]:
    """Run the reference-based protocol; returns ``(metrics, predictions)``.

    Args:
        policy: ``act_batch(observations[, states])`` returns, per prefix, a strategy index,
            a ``{"strategy", "utterance"}`` dict, or an utterance string (text-only policies:
            no strategy metrics).
        points: from :func:`reference_points`.
        strategies: the policy's strategy set.
        supporter: a ``SupporterAgent`` that writes the utterances the policy does not write
            (for its predicted strategies) and scores perplexity.
        generate: write utterances and compute the text metrics.
        ppl: compute the perplexity of the human replies (needs ``supporter``).
        meteor: compute METEOR (needs WordNet).
        batch_size: prefixes per policy / LLM call.
    """
    from tqdm.auto import tqdm

    sset = get_strategy_set(strategies)
    if not points:
        raise ValueError("no reference points (is the split empty?)")
    from .interactive import act_batch

    preds: list[dict] = []
    conversations: list[list[dict]] = []
    with tqdm(total=len(points), desc="evaluate-ref", unit="turn", disable=not progress, leave=False, dynamic_ncols=True) as bar:
        for start in range(0, len(points), batch_size):
            chunk = points[start : start + batch_size]
            obs = [observation_of(p, sset) for p in chunk]
            states = [{"turns": [t.to_dict() for t in p.prefix]} for p in chunk]
            actions = act_batch(policy, obs, states)
            names: list[str | None] = []
            texts: list[str | None] = []
            for a in actions:  # a strategy index, a {"strategy", "utterance"} dict, or an utterance
                idx = a.get("strategy") if isinstance(a, dict) else (None if isinstance(a, str) else a)
                names.append(sset.names[int(idx)] if idx is not None else None)
                texts.append(a.get("utterance") if isinstance(a, dict) else (a if isinstance(a, str) else None))
            if generate and supporter is not None:
                need = [i for i, t in enumerate(texts) if t is None]
                if need:
                    written = supporter.respond([list(chunk[i].prefix) for i in need], [names[i] for i in need], seed=seed + start)
                    for i, t in zip(need, written):
                        texts[i] = t
            elif not generate:
                texts = [None] * len(chunk)
            if supporter is not None and ppl:
                conversations += [supporter_messages(supporter, p.prefix, n) for p, n in zip(chunk, names)]
            for p, n, t in zip(chunk, names, texts):
                preds.append({
                    "id": p.id, "context": format_dialogue(p.prefix[-4:]), "reference": p.reference.text,
                    "reference_strategy_esconv": p.reference.strategy, "reference_strategy": p.reference_strategy,
                    "predicted_strategy": n, "prediction": t,
                })
            bar.update(len(chunk))
    metrics: dict[str, Any] = {"n_points": len(points), "strategy_set": sset.name}
    scored = [p for p in preds if p["predicted_strategy"] is not None]
    if scored:
        metrics["strategy"] = strategy_metrics([p["reference_strategy"] for p in scored], [p["predicted_strategy"] for p in scored], sset.names)
    else:
        metrics["strategy"] = {"n": 0, "excluded": len(preds), "accuracy": None, "macro_f1": None,
                               "note": "the policy predicts no strategies"}
    made = [(p["prediction"], p["reference"]) for p in preds if p["prediction"] is not None]
    if made:
        metrics["text"] = text_metrics([h for h, _ in made], [r for _, r in made], meteor=meteor)
    else:
        metrics["text"] = None
        metrics["text_note"] = "no utterances generated (give a supporter backend, or the policy writes none)"
    if supporter is not None and ppl:
        metrics["perplexity"] = perplexity(supporter.backend, conversations, [p["reference"] for p in preds], batch_size=batch_size)
    else:
        metrics["perplexity"] = {"perplexity": None, "note": "no supporter LLM to score the human replies"}
    return metrics, preds


def format_reference_table(metrics: dict, title: str = "") -> str:
    """A plain-text table of :func:`evaluate_reference` metrics."""
    def f(v: Any, suffix: str = "") -> str:
        return "-" if v is None else f"{v:.2f}{suffix}"

    s = metrics["strategy"]
    rows = [("points", str(metrics["n_points"])),
            ("strategy points", f"{s['n']} ({s['excluded']} left out: no counterpart in the {metrics['strategy_set']} set)"),
            ("strategy accuracy (%)", f(s["accuracy"])), ("strategy macro-F1 (%)", f(s["macro_f1"]))]
    t = metrics.get("text")
    if t:
        rows += [("BLEU-2", f(t["bleu2"])), ("BLEU-4", f(t["bleu4"])), ("ROUGE-L", f(t["rougeL"])),
                 ("METEOR", f(t["meteor"]) if t["meteor"] is not None else f"- ({t.get('meteor_note', 'not computed')})"),
                 ("Distinct-1", f(t["distinct1"])), ("Distinct-2", f(t["distinct2"]))]
    else:
        rows.append(("text metrics", f"- ({metrics.get('text_note', 'not computed')})"))
    p = metrics.get("perplexity") or {}
    rows.append(("perplexity", f(p.get("perplexity")) if p.get("perplexity") is not None else f"- ({p.get('note', 'not computed')})"))
    w = max(len(a) for a, _ in rows)
    lines = [title] if title else []
    lines += [f"{a:<{w}}  {b}" for a, b in rows]
    return "\n".join(lines)
