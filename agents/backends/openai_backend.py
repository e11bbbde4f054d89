"""Any OpenAI-compatible HTTP server (vLLM, llama.cpp, SGLang, TGI, OpenAI itself).

``generate`` sends one ``chat.completions`` request per reply, concurrently, with a hard
bound on the requests in flight, spread round-robin over one or more replicas, with our own
retry policy (exponential backoff on connection errors, timeouts, HTTP 408/429/5xx).

``score`` reads the top log-probabilities of the first reply token and matches each
candidate by its first token (``method="first-token"``, see :func:`first_token_logprobs`).
Two endpoints can serve it:

* ``/v1/completions`` with a prompt rendered locally from the model's chat template
  (``chat_template=...``), so that ``assistant_prefix`` is really forced: the prompt ends
  with ``<assistant header> + assistant_prefix``.  This is what llama.cpp's servers need.
* ``/v1/chat/completions`` with ``logprobs=True, top_logprobs=K``.  A non-empty
  ``assistant_prefix`` is then sent as a final assistant message, which only works on
  servers that *continue* that message; pass ``continue_final_message=True`` to say that
  yours does (vLLM, which gets ``continue_final_message=True, add_generation_prompt=False``
  in the request body).  llama.cpp's servers do not: they open a new assistant turn after it.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import openai

from .base import BackendError, Completion, GenerationParams, LLMBackend, Message, ScoreResult, cut_at_stop, reply_seed

#: HTTP statuses that are retried (besides connection errors and timeouts).
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
LOG2 = math.log(2.0)
MAX_TOP_LOGPROBS = 20

#: What renders a conversation into the model's prompt text: an object with
#: ``apply_chat_template`` (a Hugging Face tokenizer), a folder holding one, the string
#: ``"embedded"`` (the tokenizer of the embedded SmolLM2), or a function
#: ``conversation -> prompt``.
ChatTemplateLike = Any


class BackendRequestError(BackendError):
    """A request failed for good (retries exhausted or a non-retryable answer).

    Attributes:
        urls: the base URLs that were tried, in order.
        attempts: how many attempts were made.
        status: the last HTTP status, or ``None`` for connection errors and timeouts.
    """

    def __init__(self, message: str, urls: Sequence[str], attempts: int, status: int | None = None) -> None:
        super().__init__(message)
        self.urls = list(urls)
        self.attempts = attempts
        self.status = status


class NoLogprobsError(RuntimeError):
    """The server answered a scoring request without log-probabilities."""


# ---- first-token matching ---------------------------------------------------------------
def _norm(s: str) -> str:
    return s.strip().lower()


def _logsumexp(values: Sequence[float]) -> float:
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values))


def first_token_logprobs(top: Sequence[tuple[str, float]], candidates: Sequence[str]) -> np.ndarray:
    """Log-probability of each candidate from the top log-probabilities of ONE token.

    The rule (``method="first-token"``):

    1. Strings are compared after ``strip().lower()``: ``"Sad"``, ``" sad"`` and ``"sad"``
       are the same answer to a judge.
    2. A listed token *matches* a candidate when its normalised text is non-empty and a
       prefix of the normalised candidate (``"an"`` matches ``"anxious"``).  A candidate
       that is only whitespace matches tokens with exactly its text.
    3. Of the matching tokens only those with the longest normalised text count (the most
       specific match: ``"anxious"`` beats ``"an"`` when both are listed), and their
       probabilities are added (``" Sad"`` and ``"sad"`` both count for ``"sad"``).
    4. A candidate that matches no listed token gets ``log(p_min / 2)``, where ``p_min`` is
       the probability of the least likely listed token: an unlisted token is at most as
       likely as ``p_min`` (the list is the top K), and halving it keeps every unlisted
       candidate strictly below every listed one while staying finite, so
       :meth:`ScoreResult.normalized` still works.

    Candidates sharing their first token (``"very sad"``, ``"very happy"``) get the same
    value: only the first token is scored.

    Args:
        top: ``(token_text, logprob)`` pairs, the top K alternatives for one position.
        candidates: the candidate strings.

    Returns:
        float64 array of ``len(candidates)`` log-probabilities (all finite, ``<= 0``).
    """
    pairs = [(str(t), float(lp)) for t, lp in top if lp is not None and math.isfinite(float(lp))]
    if not pairs:
        raise ValueError("first_token_logprobs: no finite top log-probabilities to match against")
    floor = min(lp for _, lp in pairs) - LOG2
    normed = [(_norm(t), t, lp) for t, lp in pairs]
    out = np.empty(len(candidates), dtype=np.float64)
    for j, cand in enumerate(candidates):
        nc = _norm(cand)
        best, vals = 0, []
        for nt, raw, lp in normed:
            if nc:
                if not nt or not nc.startswith(nt):
                    continue
                length = len(nt)
            else:  # whitespace-only candidate: exact text only
                if raw != cand:
                    continue
                length = 1
            if length > best:
                best, vals = length, [lp]
            elif length == best:
                vals.append(lp)
        out[j] = min(_logsumexp(vals), 0.0) if vals else floor
    return out


# ---- prompt rendering -------------------------------------------------------------------
def make_renderer(chat_template: ChatTemplateLike) -> Callable[[Sequence[Message]], str]:
    """A function ``conversation -> prompt text`` (ending with the assistant header).

    Args:
        chat_template: a Hugging Face tokenizer (anything with ``apply_chat_template``), a
            local folder holding one, ``"embedded"`` (the embedded SmolLM2's tokenizer), or a
            callable returning the prompt text.
    """
    if callable(chat_template) and not hasattr(chat_template, "apply_chat_template"):
        return chat_template
    tok = chat_template
    if isinstance(tok, (str, Path)):
        from transformers import AutoTokenizer

        if str(tok) == "embedded":
            from .embedded import embedded_model_dir

            folder = embedded_model_dir()
        else:
            folder = Path(tok)
            if not folder.is_dir():
                raise FileNotFoundError(
                    f"chat_template={str(tok)!r} is neither 'embedded' nor a local tokenizer folder "
                    "(nothing is downloaded at run time)"
                )
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if not hasattr(tok, "apply_chat_template"):
        raise TypeError(
            f"chat_template must be a tokenizer with apply_chat_template, a folder, 'embedded' or a callable, "
            f"got {type(chat_template).__name__}"
        )
    if not getattr(tok, "chat_template", None):
        raise ValueError(f"chat_template: the tokenizer {type(tok).__name__} has no chat template")

    def render(conversation: Sequence[Message]) -> str:
        return tok.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)

    return render


# ---- the backend ------------------------------------------------------------------------
class OpenAICompatibleBackend(LLMBackend):
    """Batched client of one or more OpenAI-compatible servers serving the same model.

    Args:
        base_urls: one URL per replica, e.g. ``["http://10.0.0.1:8000/v1"]``; requests go
            round-robin over them, and a retry goes to the next replica.
        model: the served model's name (``model`` field of each request).
        api_key: the API key; default ``$OPENAI_API_KEY``, else ``"EMPTY"``.  It is never
            logged, printed or put in error messages.
        max_in_flight: hard bound on requests in flight at once, over all replicas and all
            threads sharing this backend.
        timeout: seconds before one request is abandoned (then retried).
        max_retries: retries after the first attempt (so ``max_retries + 1`` attempts).
            The ``openai`` client's own retries are disabled: this policy is the only one.
        backoff: first retry delay in seconds; it doubles on every retry (with jitter in
            ``[d/2, d]``), capped at ``max_backoff``; a ``Retry-After`` header on a 429/503
            is honoured up to ``max_backoff``.
        max_backoff: the longest single delay.
        chat_template: renders prompts locally for scoring through ``/v1/completions``
            (see :func:`make_renderer`); needed to force ``assistant_prefix`` on servers
            that do not continue a final assistant message (llama.cpp).
        score_endpoint: ``"completions"``, ``"chat"`` or ``"auto"`` (completions when a
            ``chat_template`` is given, else chat).
        continue_final_message: in chat scoring, the server continues a final assistant
            message when asked with ``continue_final_message=True,
            add_generation_prompt=False`` (vLLM).  Without it a non-empty
            ``assistant_prefix`` cannot be scored through the chat endpoint.
        top_logprobs: K alternatives asked for per scored position (1 to 20; OpenAI's own
            legacy completions endpoint allows at most 5).
        max_tokens_field: request field for ``max_new_tokens``: ``"max_tokens"`` (vLLM,
            llama.cpp) or ``"max_completion_tokens"`` (OpenAI's reasoning models).
        extra_body: extra JSON fields merged into every request (e.g. ``{"top_k": 20}``).
        repetition_penalty_field: the request field that carries
            ``GenerationParams.repetition_penalty``, which the OpenAI API does not have:
            ``"repetition_penalty"`` for vLLM, SGLang and TGI, ``"repeat_penalty"`` for
            llama.cpp's servers; ``None`` (default): the setting is ignored.

    Repetition controls of :class:`GenerationParams`: ``frequency_penalty`` and
    ``presence_penalty`` are sent as the API's fields of those names (when not 0);
    ``repetition_penalty`` only with ``repetition_penalty_field`` (when not 1.0);
    ``no_repeat_ngram_size`` is ignored (no server API has it), and so is ``max_words``
    (``max_new_tokens`` still bounds the reply).

    ``generate`` asks for ``n`` replies as ``n`` separate requests (reply ``j`` of a
    conversation with seed ``s`` -- the seed, or its entry of a per-row seed list -- sends
    seed ``s + j``): llama.cpp's servers ignore ``n``, and separate
    requests give exact per-reply token counts.
    """

    def __init__(
        self,
        base_urls: Sequence[str] | str,
        model: str,
        api_key: str | None = None,
        max_in_flight: int = 16,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        chat_template: ChatTemplateLike | None = None,
        score_endpoint: Literal["auto", "completions", "chat"] = "auto",
        continue_final_message: bool = False,
        top_logprobs: int = MAX_TOP_LOGPROBS,
        max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens",
        extra_body: dict | None = None,
        repetition_penalty_field: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(base_urls, str):
            base_urls = [base_urls]
        urls = [str(u).strip().rstrip("/") for u in base_urls if str(u).strip()]
        if not urls:
            raise ValueError(f"OpenAICompatibleBackend: give at least one base URL, got {base_urls!r}")
        for u in urls:
            if not u.startswith(("http://", "https://")):
                raise ValueError(f"OpenAICompatibleBackend: base URL {u!r} must start with http:// or https://")
        if not isinstance(model, str) or not model:
            raise ValueError(f"OpenAICompatibleBackend: model must be a non-empty string, got {model!r}")
        if not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ValueError(f"OpenAICompatibleBackend: max_in_flight must be a positive int, got {max_in_flight!r}")
        if not timeout > 0:
            raise ValueError(f"OpenAICompatibleBackend: timeout must be > 0 seconds, got {timeout!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"OpenAICompatibleBackend: max_retries must be an int >= 0, got {max_retries!r}")
        if backoff < 0 or max_backoff < 0:
            raise ValueError(f"OpenAICompatibleBackend: backoff and max_backoff must be >= 0, got {backoff!r}, {max_backoff!r}")
        if not isinstance(top_logprobs, int) or not 1 <= top_logprobs <= MAX_TOP_LOGPROBS:
            raise ValueError(f"OpenAICompatibleBackend: top_logprobs must be an int in 1..{MAX_TOP_LOGPROBS}, got {top_logprobs!r}")
        if score_endpoint not in ("auto", "completions", "chat"):
            raise ValueError(f"OpenAICompatibleBackend: score_endpoint must be 'auto', 'completions' or 'chat', got {score_endpoint!r}")
        if max_tokens_field not in ("max_tokens", "max_completion_tokens"):
            raise ValueError(f"OpenAICompatibleBackend: max_tokens_field must be 'max_tokens' or 'max_completion_tokens', got {max_tokens_field!r}")

        self.base_urls = urls
        self.model = model
        self.name = f"openai:{','.join(urls)}#{model}"
        self.max_in_flight = max_in_flight
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.top_logprobs = top_logprobs
        self.max_tokens_field = max_tokens_field
        self.extra_body = dict(extra_body or {})
        if repetition_penalty_field is not None and (not isinstance(repetition_penalty_field, str) or not repetition_penalty_field):
            raise ValueError(
                f"OpenAICompatibleBackend: repetition_penalty_field must be a non-empty string or None, got {repetition_penalty_field!r}"
            )
        self.repetition_penalty_field = repetition_penalty_field
        self.continue_final_message = bool(continue_final_message)

        self._render = make_renderer(chat_template) if chat_template is not None else None
        if score_endpoint == "auto":
            score_endpoint = "completions" if self._render is not None else "chat"
        if score_endpoint == "completions" and self._render is None:
            raise ValueError(
                "OpenAICompatibleBackend: score_endpoint='completions' needs chat_template=... to render prompts"
            )
        self.score_endpoint = score_endpoint

        key = api_key if api_key is not None else (os.environ.get("OPENAI_API_KEY") or "EMPTY")
        limits_cls = getattr(openai, "DefaultHttpxClient", None)
        self._clients = []
        for u in urls:
            http_client = None
            if limits_cls is not None and max_in_flight > 100:  # the default pool holds 100 connections
                import httpx2 as _httpx  # the HTTP library of openai 3.x

                http_client = limits_cls(limits=_httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight))
            self._clients.append(
                openai.OpenAI(base_url=u, api_key=key, timeout=self.timeout, max_retries=0, http_client=http_client)
            )
        del key

        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._stats_lock = threading.Lock()
        self._rr = itertools.count()
        self._in_flight = 0
        self._max_observed = 0
        self.requests_per_url: Counter = Counter()  # attempts sent to each URL
        self.retries = 0
        #: seconds of each successful request (the last 100,000), for load tests
        self.latencies: deque = deque(maxlen=100_000)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    # ---- stats ----------------------------------------------------------------------
    @property
    def max_in_flight_observed(self) -> int:
        """The most requests ever in flight at once (for load tests)."""
        return self._max_observed

    @property
    def in_flight(self) -> int:
        """Requests in flight right now."""
        return self._in_flight

    def reset_stats(self) -> None:
        """Zero :attr:`max_in_flight_observed`, :attr:`requests_per_url` and :attr:`retries`."""
        with self._stats_lock:
            self._max_observed = self._in_flight
            self.requests_per_url = Counter()
            self.retries = 0
            self.latencies.clear()

    # ---- transport ------------------------------------------------------------------
    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="esc-openai")
            return self._pool

    def _delay(self, attempt: int, error: Exception) -> float:
        d = min(self.backoff * (2.0**attempt), self.max_backoff)
        d = d / 2 + random.random() * d / 2
        response = getattr(error, "response", None)
        if response is not None:
            retry_after = response.headers.get("retry-after")
            try:
                if retry_after is not None:
                    d = max(d, min(float(retry_after), self.max_backoff))
            except ValueError:
                pass
        return d

    def _call(self, kind: str, start: int, **kwargs):
        """One request with retries; ``kind`` is ``"chat"`` or ``"completions"``."""
        n_rep = len(self.base_urls)
        tried: list[str] = []
        last: Exception | None = None
        status: int | None = None
        for attempt in range(self.max_retries + 1):
            r = (start + attempt) % n_rep
            url = self.base_urls[r]
            if url not in tried:
                tried.append(url)
            client = self._clients[r]
            endpoint = client.chat.completions if kind == "chat" else client.completions
            with self._slots:
                with self._stats_lock:
                    self._in_flight += 1
                    self._max_observed = max(self._max_observed, self._in_flight)
                    self.requests_per_url[url] += 1
                try:
                    t0 = time.perf_counter()
                    response = endpoint.create(model=self.model, **kwargs)
                    with self._stats_lock:
                        self.latencies.append(time.perf_counter() - t0)
                    return url, response
                except (openai.APIConnectionError, openai.APIStatusError) as e:  # timeouts are connection errors
                    last = e
                    status = getattr(e, "status_code", None)
                    retryable = status is None or status in RETRY_STATUSES
                    if not retryable:
                        msg = _error_text(e)
                        raise BackendRequestError(
                            f"{type(self).__name__}: {url} answered HTTP {status} to a {kind} request: {msg}",
                            tried, attempt + 1, status,
                        ) from e
                finally:
                    with self._stats_lock:
                        self._in_flight -= 1
            if attempt < self.max_retries:
                with self._stats_lock:
                    self.retries += 1
                time.sleep(self._delay(attempt, last))
        where = tried[0] if len(tried) == 1 else ", ".join(tried)
        what = f"HTTP {status}: {_error_text(last)}" if status is not None else f"{type(last).__name__}: {_error_text(last)}"
        raise BackendRequestError(
            f"{type(self).__name__}: {kind} request to {where} failed after {self.max_retries + 1} attempt(s) "
            f"(timeout {self.timeout:g} s each); last error: {what}",
            tried, self.max_retries + 1, status,
        ) from last

    def _run_all(self, jobs: list[tuple[str, dict]]) -> list[tuple[str, Any]]:
        """Run ``(kind, kwargs)`` requests concurrently, results in order."""
        starts = [next(self._rr) for _ in jobs]
        if len(jobs) == 1:
            return [self._call(jobs[0][0], starts[0], **jobs[0][1])]
        pool = self._executor()
        futures = [pool.submit(self._call, kind, s, **kw) for (kind, kw), s in zip(jobs, starts)]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def _body(self, extra: dict | None = None) -> dict | None:
        body = {**self.extra_body, **(extra or {})}
        return body or None

    # ---- generate -------------------------------------------------------------------
    def _generate(self, conversations: list[list[Message]], params: GenerationParams) -> list[Completion]:
        jobs = []
        row_seeds = params.row_seeds(len(conversations))
        for conv, row_seed in zip(conversations, row_seeds):
            for j in range(params.n):
                kw: dict[str, Any] = {
                    "messages": conv,
                    self.max_tokens_field: params.max_new_tokens,
                    "temperature": params.temperature,
                    "top_p": params.top_p,
                }
                if params.stop:
                    kw["stop"] = list(params.stop)
                if row_seed is not None:
                    kw["seed"] = reply_seed(row_seed, j)
                if params.frequency_penalty:
                    kw["frequency_penalty"] = params.frequency_penalty
                if params.presence_penalty:
                    kw["presence_penalty"] = params.presence_penalty
                extra = None
                if self.repetition_penalty_field is not None and params.repetition_penalty != 1.0:
                    extra = {self.repetition_penalty_field: params.repetition_penalty}
                body = self._body(extra)
                if body:
                    kw["extra_body"] = body
                jobs.append(("chat", kw))
        out = []
        for url, resp in self._run_all(jobs):
            if not resp.choices:
                raise RuntimeError(f"{type(self).__name__}: {url} returned no choices")
            choice = resp.choices[0]
            text, cut = cut_at_stop(choice.message.content or "", params.stop)
            finish = "length" if (choice.finish_reason == "length" and not cut) else "stop"
            usage = resp.usage
            out.append(
                Completion(
                    text=text,
                    finish_reason=finish,
                    prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                    completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                )
            )
        return out

    # ---- score ----------------------------------------------------------------------
    def render(self, conversation: Sequence[Message], assistant_prefix: str = "") -> str:
        """The prompt sent to ``/v1/completions`` (needs ``chat_template``)."""
        if self._render is None:
            raise ValueError(f"{type(self).__name__}: no chat_template was given, so prompts cannot be rendered locally")
        return self._render(list(conversation)) + assistant_prefix

    def _score(self, conversations, candidates, assistant_prefix) -> ScoreResult:
        jobs = []
        k = self.top_logprobs
        for conv in conversations:
            if self.score_endpoint == "completions":
                kw = {"prompt": self.render(conv, assistant_prefix), "max_tokens": 1, "temperature": 0.0, "logprobs": k}
                body = self._body()
                if body:
                    kw["extra_body"] = body
                jobs.append(("completions", kw))
            else:
                messages = list(conv)
                extra = None
                if assistant_prefix:
                    if not self.continue_final_message:
                        raise ValueError(
                            f"{type(self).__name__}: assistant_prefix={assistant_prefix!r} cannot be forced through the "
                            "chat endpoint unless the server continues a final assistant message; give "
                            "chat_template=... (scores through /v1/completions) or continue_final_message=True (vLLM)"
                        )
                    messages.append({"role": "assistant", "content": assistant_prefix})
                    extra = {"continue_final_message": True, "add_generation_prompt": False}
                kw = {"messages": messages, self.max_tokens_field: 1, "temperature": 0.0, "logprobs": True, "top_logprobs": k}
                body = self._body(extra)
                if body:
                    kw["extra_body"] = body
                jobs.append(("chat", kw))
        out = np.empty((len(conversations), len(candidates[0])), dtype=np.float64)
        for i, (url, resp) in enumerate(self._run_all(jobs)):
            top = _top_of_first_token(resp, self.score_endpoint)
            if not top:
                raise NoLogprobsError(
                    f"{type(self).__name__}: the server at {url} gave no log-probabilities for a "
                    f"{self.score_endpoint} request with top_logprobs={k}; it cannot score candidates "
                    "(llama-cpp-python needs logits_all; OpenAI's legacy completions allow top_logprobs <= 5)"
                )
            out[i] = first_token_logprobs(top, candidates[i])
        return ScoreResult(out, "first-token")

    def close(self) -> None:
        """Stop the worker threads and close the HTTP connections.  Safe to call twice."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        for c in self._clients:
            try:
                c.close()
            except Exception:  # pragma: no cover - closing is best effort
                pass


def _error_text(e: Exception | None) -> str:
    if e is None:
        return "no error recorded"
    msg = getattr(e, "message", None) or str(e) or type(e).__name__
    return " ".join(str(msg).split())[:300]


def _top_of_first_token(resp, endpoint: str) -> list[tuple[str, float]]:
    """``(token, logprob)`` alternatives of the first generated token, or ``[]``."""
    if not getattr(resp, "choices", None):
        return []
    lp = resp.choices[0].logprobs
    if lp is None:
        return []
    if endpoint == "completions":
        tops = getattr(lp, "top_logprobs", None) or []
        if not tops or not tops[0]:
            return []
        return [(t, v) for t, v in dict(tops[0]).items()]
    content = getattr(lp, "content", None) or []
    if not content:
        return []
    alts = content[0].top_logprobs or []
    pairs = [(a.token, a.logprob) for a in alts]
    if not pairs and content[0].token is not None:
        pairs = [(content[0].token, content[0].logprob)]
    return pairs
