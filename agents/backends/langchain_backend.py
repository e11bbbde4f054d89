"""Any LangChain chat model (``BaseChatModel``) behind the batched backend protocol.

``generate`` runs ``chat_model.bind(...).batch(inputs, config={"max_concurrency": ...})``;
generation settings are bound under the names the model declares (``max_tokens`` or
``max_output_tokens`` or ``num_predict``..., ``temperature``, ``top_p``, ``seed``), and
settings a model does not declare are left out (listed in ``dropped_params``) rather than
sent to a model that would reject them.  ``stop`` is LangChain's standard call argument and
is always passed.

``score`` uses log-probabilities when the model returns them in
``response_metadata["logprobs"]`` (``ChatOpenAI`` does when bound with ``logprobs=True,
top_logprobs=K``): the first reply token's alternatives are matched to the candidates by
:func:`~agents.backends.openai_backend.first_token_logprobs` (``method="first-token"``).
Otherwise it samples replies and counts how often each candidate starts one, add-one
smoothed (``method="sampled-estimate"``).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence

import numpy as np

from .base import Completion, GenerationParams, LLMBackend, Message, ScoreResult, cut_at_stop, reply_seed
from .openai_backend import MAX_TOP_LOGPROBS, NoLogprobsError, first_token_logprobs

#: Field names under which chat models take each generation setting, in order of preference.
PARAM_FIELDS: dict[str, tuple[str, ...]] = {
    "max_new_tokens": ("max_tokens", "max_output_tokens", "max_new_tokens", "num_predict", "max_length"),
    "temperature": ("temperature",),
    "top_p": ("top_p",),
    "seed": ("seed", "random_seed"),
    "frequency_penalty": ("frequency_penalty",),
    "presence_penalty": ("presence_penalty",),
    "repetition_penalty": ("repetition_penalty", "repeat_penalty"),
    "no_repeat_ngram_size": ("no_repeat_ngram_size",),
}

_LENGTH_REASONS = {"length", "max_tokens", "MAX_TOKENS", "max_output_tokens"}


def _norm(s: str) -> str:
    return s.strip().lower()


class LangChainBackend(LLMBackend):
    """Wrap a LangChain chat model.

    Args:
        chat_model: a ``BaseChatModel`` (or a ``RunnableBinding`` of one, e.g. made by
            ``.bind(...)``).
        max_concurrency: most calls in flight at once in a batch.
        score_method: ``"auto"`` (log-probabilities when the model returns them, else the
            sampled estimate), ``"logprobs"`` (fail if there are none) or ``"sampled"``.
        top_logprobs: K alternatives asked for when scoring with log-probabilities (1-20).
        n_samples: replies sampled per conversation for the sampled estimate.
        sample_temperature, sample_max_tokens, sample_seed: settings of those samples
            (sample ``j`` uses seed ``sample_seed + j`` when the model takes a seed).
        assistant_prefill: the model continues a final assistant message (Anthropic's
            prefill; vLLM behind ``ChatOpenAI`` with ``continue_final_message`` bound by
            you).  Then a non-empty ``assistant_prefix`` is sent as that message.  Without
            it, a non-empty prefix cannot be forced: ``score`` then uses the sampled
            estimate and strips the prefix from replies that begin with it.
        legacy_max_tokens: also send ``max_tokens`` in ``extra_body``.  ``ChatOpenAI``
            renames ``max_tokens`` to ``max_completion_tokens``, which llama.cpp's servers
            ignore (they would generate to the context limit).  ``None``: on for a
            ``ChatOpenAI`` with a ``base_url`` other than api.openai.com.

    Generation settings go to the chat model's own fields (:data:`PARAM_FIELDS`: e.g.
    ``max_tokens`` or ``num_predict``).  Repetition controls are sent only when set (not
    1.0 / 0): ``frequency_penalty`` and ``presence_penalty`` to fields of those names
    (``ChatOpenAI``), ``repetition_penalty`` to ``repetition_penalty`` or ``repeat_penalty``
    (``ChatOllama``, Hugging Face models), ``no_repeat_ngram_size`` to a field of that name.
    A setting the model has no field for is ignored and its name is added to
    :attr:`dropped_params`.  ``max_words`` is ignored (``max_new_tokens`` still bounds the reply).

    Seeds: a bound model takes one seed, so ``generate`` runs one ``batch`` per distinct
    seed; with a per-row seed list (the env's episodes) that is one request at a time per
    row group, less concurrent than one batch, but each row's reply depends on its own seed.
    """

    def __init__(
        self,
        chat_model,
        max_concurrency: int = 8,
        score_method: Literal["auto", "logprobs", "sampled"] = "auto",
        top_logprobs: int = MAX_TOP_LOGPROBS,
        n_samples: int = 8,
        sample_temperature: float = 1.0,
        sample_max_tokens: int = 16,
        sample_seed: int | None = 0,
        assistant_prefill: bool = False,
        legacy_max_tokens: bool | None = None,
    ) -> None:
        super().__init__()
        from langchain_core.language_models import BaseChatModel
        from langchain_core.runnables import RunnableBinding

        base = chat_model.bound if isinstance(chat_model, RunnableBinding) else chat_model
        if not isinstance(base, BaseChatModel):
            raise TypeError(f"LangChainBackend needs a langchain BaseChatModel, got {type(chat_model).__name__}")
        if not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise ValueError(f"LangChainBackend: max_concurrency must be a positive int, got {max_concurrency!r}")
        if score_method not in ("auto", "logprobs", "sampled"):
            raise ValueError(f"LangChainBackend: score_method must be 'auto', 'logprobs' or 'sampled', got {score_method!r}")
        if not isinstance(top_logprobs, int) or not 1 <= top_logprobs <= MAX_TOP_LOGPROBS:
            raise ValueError(f"LangChainBackend: top_logprobs must be an int in 1..{MAX_TOP_LOGPROBS}, got {top_logprobs!r}")
        if not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"LangChainBackend: n_samples must be a positive int, got {n_samples!r}")
        self.chat_model = chat_model
        self._base = base
        self.max_concurrency = max_concurrency
        self.score_method = score_method
        self.top_logprobs = top_logprobs
        self.n_samples = n_samples
        self.sample_params = GenerationParams(
            max_new_tokens=sample_max_tokens, temperature=sample_temperature, seed=sample_seed
        )
        self.assistant_prefill = bool(assistant_prefill)
        self.name = f"langchain:{type(base).__name__}:{getattr(base, 'model_name', None) or getattr(base, 'model', '')}"

        fields = type(base).model_fields
        names = set(fields) | {f.alias for f in fields.values() if f.alias}
        self._fields = names
        #: generation setting -> the model's field name for it (None: not taken)
        self.param_fields: dict[str, str | None] = {
            key: next((n for n in candidates if n in names), None) for key, candidates in PARAM_FIELDS.items()
        }
        #: settings that were asked for but the model does not take (filled as they occur)
        self.dropped_params: set[str] = set()
        if legacy_max_tokens is None:
            api_base = getattr(base, "openai_api_base", None)
            legacy_max_tokens = bool(api_base) and "extra_body" in names and "api.openai.com" not in str(api_base)
        self.legacy_max_tokens = bool(legacy_max_tokens)

    # ---- helpers --------------------------------------------------------------------
    @staticmethod
    def to_messages(conversation: Sequence[Message], prefill: str = ""):
        """LangChain messages for a chat conversation (plus a final assistant prefill)."""
        from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

        kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
        out = [kinds[m["role"]](content=m["content"]) for m in conversation]
        if prefill:
            out.append(AIMessage(content=prefill))
        return out

    def _bind(self, max_new_tokens: int | None = None, temperature: float | None = None, top_p: float | None = None,
              seed: int | None = None, stop: Sequence[str] = (), frequency_penalty: float | None = None,
              presence_penalty: float | None = None, repetition_penalty: float | None = None,
              no_repeat_ngram_size: int | None = None, **extra):
        kwargs: dict[str, Any] = {}
        for key, value in (("max_new_tokens", max_new_tokens), ("temperature", temperature),
                           ("top_p", top_p), ("seed", seed), ("frequency_penalty", frequency_penalty),
                           ("presence_penalty", presence_penalty), ("repetition_penalty", repetition_penalty),
                           ("no_repeat_ngram_size", no_repeat_ngram_size)):
            if value is None:
                continue
            field = self.param_fields[key]
            if field is None:
                self.dropped_params.add(key)
            else:
                kwargs[field] = value
        if self.legacy_max_tokens and max_new_tokens is not None:
            body = dict(getattr(self._base, "extra_body", None) or {})
            body["max_tokens"] = max_new_tokens
            kwargs["extra_body"] = body
        if stop:
            kwargs["stop"] = list(stop)
        kwargs.update(extra)
        return self.chat_model.bind(**kwargs) if kwargs else self.chat_model

    def _batch(self, runnable, inputs: list) -> list:
        if not inputs:
            return []
        return runnable.batch(inputs, config={"max_concurrency": self.max_concurrency})

    @staticmethod
    def _text(msg) -> str:
        text = getattr(msg, "text", None)  # a str in langchain-core >= 1, a method before
        if isinstance(text, str):
            return str(text)
        if callable(text):
            text = text()
            if isinstance(text, str):
                return text
        content = getattr(msg, "content", "")
        if isinstance(content, str):
            return content
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)

    def _completion(self, msg, params: GenerationParams) -> Completion:
        text, cut = cut_at_stop(self._text(msg), params.stop)
        meta = getattr(msg, "response_metadata", None) or {}
        reason = meta.get("finish_reason") or meta.get("stop_reason") or meta.get("done_reason") or "stop"
        usage = getattr(msg, "usage_metadata", None) or {}
        return Completion(
            text=text,
            finish_reason="length" if (reason in _LENGTH_REASONS and not cut) else "stop",
            prompt_tokens=int(usage.get("input_tokens", 0) or 0),
            completion_tokens=int(usage.get("output_tokens", 0) or 0),
        )

    # ---- generate -------------------------------------------------------------------
    def _generate(self, conversations: list[list[Message]], params: GenerationParams, prefill: str = "") -> list[Completion]:
        msgs = [self.to_messages(c, prefill) for c in conversations]
        n = params.n
        common = dict(
            max_new_tokens=params.max_new_tokens,
            temperature=params.temperature,
            top_p=params.top_p if params.top_p < 1.0 else None,
            stop=params.stop,
            frequency_penalty=params.frequency_penalty or None,
            presence_penalty=params.presence_penalty or None,
            repetition_penalty=params.repetition_penalty if params.repetition_penalty != 1.0 else None,
            no_repeat_ngram_size=params.no_repeat_ngram_size or None,
        )
        seeds = params.row_seeds(len(msgs))
        if params.seed is None or self.param_fields["seed"] is None:
            if params.seed is not None:
                self.dropped_params.add("seed")
            results = self._batch(self._bind(seed=None, **common), [m for m in msgs for _ in range(n)])
        else:
            # a bound model takes one seed: one batch per distinct seed (reply j of a row with
            # seed s uses s + j), so a row's reply never depends on its batch-mates' seeds
            results = [None] * (len(msgs) * n)
            groups: dict[int, list[int]] = {}
            for i, s in enumerate(seeds):
                for j in range(n):
                    groups.setdefault(reply_seed(s, j), []).append(i * n + j)
            for s, rows in groups.items():
                for r, out in zip(rows, self._batch(self._bind(seed=s, **common), [msgs[k // n] for k in rows])):
                    results[r] = out
        return [self._completion(r, params) for r in results]

    # ---- score ----------------------------------------------------------------------
    def _score(self, conversations, candidates, assistant_prefix) -> ScoreResult:
        prefix_forced = not assistant_prefix or self.assistant_prefill
        can_logprobs = "logprobs" in self._fields and "top_logprobs" in self._fields
        if self.score_method == "logprobs" and not (can_logprobs and prefix_forced):
            why = (
                f"{type(self._base).__name__} has no logprobs/top_logprobs settings" if not can_logprobs else
                f"assistant_prefix={assistant_prefix!r} cannot be forced without assistant_prefill=True"
            )
            raise ValueError(f"LangChainBackend: score_method='logprobs' is impossible: {why}")
        if self.score_method != "sampled" and can_logprobs and prefix_forced:
            res = self._score_logprobs(conversations, candidates, assistant_prefix)
            if res is not None:
                return res
            if self.score_method == "logprobs":
                raise NoLogprobsError(
                    f"LangChainBackend: {self.name} returned no response_metadata['logprobs'] although it was "
                    f"bound with logprobs=True, top_logprobs={self.top_logprobs}"
                )
        return self._score_sampled(conversations, candidates, assistant_prefix)

    def _score_logprobs(self, conversations, candidates, prefix) -> ScoreResult | None:
        runnable = self._bind(max_new_tokens=1, temperature=0.0, logprobs=True, top_logprobs=self.top_logprobs)
        inputs = [self.to_messages(c, prefix if self.assistant_prefill else "") for c in conversations]
        out = np.empty((len(conversations), len(candidates[0])), dtype=np.float64)
        for i, msg in enumerate(self._batch(runnable, inputs)):
            top = _first_token_top(msg)
            if not top:
                return None
            out[i] = first_token_logprobs(top, candidates[i])
        return ScoreResult(out, "first-token")

    def _score_sampled(self, conversations, candidates, prefix) -> ScoreResult:
        """Frequencies of candidates starting sampled replies, add-one smoothed.

        A candidate starts a reply when the reply (stripped, lower-cased, with the prefix
        removed if it was not forced and the reply repeats it) begins with the candidate
        (stripped, lower-cased); when several candidates do, the longest one counts.
        ``logprob = log((count + 1) / (n_samples + k))``.
        """
        prefill = prefix if self.assistant_prefill else ""
        params = self.sample_params.replace(n=self.n_samples)
        replies = self._generate(conversations, params, prefill=prefill)
        k = len(candidates[0])
        out = np.empty((len(conversations), k), dtype=np.float64)
        strip = _norm(prefix) if (prefix and not self.assistant_prefill) else ""
        for i in range(len(conversations)):
            counts = np.zeros(k)
            normed = [_norm(c) for c in candidates[i]]
            for rep in replies[i * self.n_samples:(i + 1) * self.n_samples]:
                text = _norm(rep.text)
                if strip and text.startswith(strip):
                    text = text[len(strip):].strip()
                hits = [j for j, c in enumerate(normed) if c and text.startswith(c)]
                if hits:
                    counts[max(hits, key=lambda j: len(normed[j]))] += 1
            out[i] = np.log((counts + 1.0) / (self.n_samples + k))
        return ScoreResult(out, "sampled-estimate")


def _first_token_top(msg) -> list[tuple[str, float]]:
    """``(token, logprob)`` alternatives of the first reply token from an AIMessage."""
    meta = getattr(msg, "response_metadata", None) or {}
    lp = meta.get("logprobs")
    if not lp:
        return []
    content = lp.get("content") if isinstance(lp, dict) else None
    if not content:
        return []
    first = content[0]
    alts = first.get("top_logprobs") or []
    pairs = [(a["token"], a["logprob"]) for a in alts if a.get("logprob") is not None and math.isfinite(a["logprob"])]
    if not pairs and first.get("logprob") is not None:
        pairs = [(first["token"], first["logprob"])]
    return pairs
