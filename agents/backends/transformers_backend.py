"""Local Hugging Face causal LM, batched, on CPU or GPU."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from .base import Completion, GenerationParams, LLMBackend, Message, ScoreResult, cut_at_stop, reply_seed
from .row_sampling import RowSampler, row_generators, top_p_filter


def repetition_controls(params: GenerationParams) -> dict:
    """The ``model.generate`` keyword arguments for the repetition control transformers has
    built in and that we pass as it is: ``repetition_penalty`` (when not 1.0; transformers
    applies it to the prompt's tokens too, as vLLM does).  ``no_repeat_ngram_size``,
    ``frequency_penalty`` and ``presence_penalty`` are logits processors over the reply's
    tokens only (:class:`ReplyNoRepeatNGram`, :class:`OpenAIPenalties`)."""
    out: dict = {}
    if params.repetition_penalty != 1.0:
        out["repetition_penalty"] = float(params.repetition_penalty)
    return out


class ReplyNoRepeatNGram:
    """No n-gram twice **within the reply**, as a transformers logits processor.

    transformers' own ``no_repeat_ngram_size`` also bans every n-gram of the prompt, so a
    seeker whose prompt holds its persona's story cannot say "lost my job" when the story
    does.  Here only the generated tokens count: when the reply's last ``n - 1`` tokens
    occurred earlier in the reply followed by token ``t``, ``t`` is banned (logit
    ``-inf``).

    Args:
        prompt_length: columns of ``input_ids`` that belong to the (left-padded) prompt.
        n: the n-gram size (>= 1; 1 bans every token already generated).
    """

    def __init__(self, prompt_length: int, n: int) -> None:
        if n < 1:
            raise ValueError(f"ReplyNoRepeatNGram: n must be >= 1, got {n}")
        self.prompt_length = int(prompt_length)
        self.n = int(n)

    def __call__(self, input_ids, scores):
        """``input_ids``: ``(batch, prompt_length + generated)``; ``scores``: ``(batch, vocab)``."""
        gen = input_ids[:, self.prompt_length :]
        n, length = self.n, gen.shape[1]
        if length < n:  # no complete n-gram can be repeated yet
            return scores
        windows = gen.unfold(1, n, 1)  # (batch, length - n + 1, n): every n-gram of the reply
        if n == 1:
            match = windows.new_ones(windows.shape[:2], dtype=bool)
        else:
            prefix = gen[:, length - n + 1 :]  # (batch, n - 1): the reply's last n - 1 tokens
            match = (windows[:, :, : n - 1] == prefix[:, None, :]).all(-1)
        rows, cols = match.nonzero(as_tuple=True)
        if rows.numel():
            scores = scores.clone()
            scores[rows, windows[rows, cols, n - 1]] = float("-inf")
        return scores


class OpenAIPenalties:
    """OpenAI's frequency and presence penalties as a transformers logits processor.

    For every token ``t`` generated ``c[t]`` times so far (prompt tokens do not count):
    ``logit[t] -= frequency_penalty * c[t] + presence_penalty * (c[t] > 0)``.

    Args:
        prompt_length: columns of ``input_ids`` that belong to the (padded) prompt.
        frequency_penalty, presence_penalty: as in :class:`GenerationParams`.
    """

    def __init__(self, prompt_length: int, frequency_penalty: float = 0.0, presence_penalty: float = 0.0) -> None:
        self.prompt_length = int(prompt_length)
        self.frequency_penalty = float(frequency_penalty)
        self.presence_penalty = float(presence_penalty)

    def __call__(self, input_ids, scores):
        """``input_ids``: ``(batch, prompt_length + generated)``; ``scores``: ``(batch, vocab)``."""
        import torch

        generated = input_ids[:, self.prompt_length :]
        if generated.shape[1] == 0:
            return scores
        counts = torch.zeros_like(scores)
        counts.scatter_add_(1, generated, torch.ones_like(generated, dtype=scores.dtype))
        return scores - self.frequency_penalty * counts - self.presence_penalty * (counts > 0).to(scores.dtype)


def _output_cache(res):
    """The KV cache of a model output: ``res["cache"]`` on transformers 5.x (reading
    ``res.past_key_values`` there logs a deprecation warning), ``res["past_key_values"]`` on 4.x."""
    keys = res.keys()
    return res["cache"] if "cache" in keys else res["past_key_values"]


class TemperatureTopP:
    """Temperature, then nucleus (top-p) filtering, as a transformers logits processor
    (:func:`agents.backends.row_sampling.top_p_filter`: transformers' ``TopPLogitsWarper`` rule
    without a full-vocabulary sort at every step).

    Args:
        temperature: > 0; the scores are divided by it first.
        top_p: in (0, 1]; 1 keeps every token.
        k: tokens taken before the exact fallback.
    """

    def __init__(self, temperature: float, top_p: float, k: int = 64) -> None:
        if not temperature > 0:
            raise ValueError(f"TemperatureTopP: temperature must be > 0, got {temperature!r}")
        if not 0 < top_p <= 1:
            raise ValueError(f"TemperatureTopP: top_p must be in (0, 1], got {top_p!r}")
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.k = int(k)

    def __call__(self, input_ids, scores):
        """``scores``: ``(batch, vocab)``; returns the tempered scores with ``-inf`` outside the nucleus."""
        return top_p_filter(scores / self.temperature, self.top_p, self.k)


class StopOnTextOrWords:
    """Stops each row of a batch on a stop string or once its reply holds more than
    ``max_words`` words (a transformers stopping criterion).

    Decodes the generated tokens of the rows still running at every step (a few dozen
    tokens: cheap next to a forward pass) instead of transformers' ``stop_strings``
    machinery.

    Args:
        tokenizer: decodes the generated tokens.
        prompt_length: columns of ``input_ids`` that belong to the (left-padded) prompt.
        stop: stop strings; a row stops when its reply contains one.
        max_words: stop a row whose reply holds more than this many words; ``None``: no limit.
    """

    def __init__(self, tokenizer, prompt_length: int, stop: Sequence[str] = (), max_words: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = int(prompt_length)
        self.stop = tuple(stop)
        self.max_words = max_words
        self._done = None

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        if self._done is None or self._done.shape[0] != input_ids.shape[0]:
            self._done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        rows = (~self._done).nonzero(as_tuple=True)[0].tolist()
        texts = self.tokenizer.batch_decode(input_ids[rows, self.prompt_length :], skip_special_tokens=True)
        for r, text in zip(rows, texts):
            if any(s in text for s in self.stop) or (self.max_words is not None and len(text.split()) > self.max_words):
                self._done[r] = True
        return self._done.clone()


class TransformersBackend(LLMBackend):
    """Any local Hugging Face causal LM (a folder with weights and a chat template).

    Generation is batched with left padding; prompts are grouped by length so that a
    batch wastes little on padding.  Greedy decoding (``temperature=0``) is
    deterministic; with a ``seed`` (one per conversation or one for all), each row samples
    from its own seeded generator (:class:`agents.backends.row_sampling.RowSampler`), so a
    reply depends on its conversation and seed only, not on the rest of the batch.

    Repetition controls of :class:`GenerationParams`: ``repetition_penalty`` goes to
    ``model.generate`` as it is (transformers applies it to the prompt's tokens as well as
    the reply's, as vLLM does); ``no_repeat_ngram_size`` bans an n-gram repeated within the
    reply (:class:`ReplyNoRepeatNGram`; unlike transformers' own option, the prompt's
    n-grams stay allowed); ``frequency_penalty`` and ``presence_penalty`` are applied with
    OpenAI's definition over the reply's tokens only (:class:`OpenAIPenalties`).  Nothing is
    ignored.

    Args:
        model_path: folder of a Hugging Face model (``config.json``, weights, tokenizer).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; default: CUDA when available.
        dtype: torch dtype name (``"float32"``, ``"bfloat16"``, ``"float16"``); default
            float32 on CPU, bfloat16 on GPU.
        max_batch_size: most rows in one forward pass; larger batches are split.
        model, tokenizer: an already-loaded model and tokenizer (then ``model_path`` is
            only used as the name).
    """

    def __init__(
        self,
        model_path: str | Path,
        device: str | None = None,
        dtype: str | None = None,
        max_batch_size: int = 32,
        model=None,
        tokenizer=None,
    ) -> None:
        super().__init__()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path = str(model_path)
        self.name = f"transformers:{self.model_path}"
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if dtype is None:
            dtype = "float32" if self.device.type == "cpu" else "bfloat16"
        self.dtype = getattr(torch, dtype)
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self.max_batch_size = max_batch_size

        if model is None:
            if not Path(self.model_path).is_dir():
                raise FileNotFoundError(
                    f"TransformersBackend: model folder {self.model_path!r} does not exist "
                    "(give a local folder; nothing is downloaded at run time)"
                )
            model = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=self.dtype)
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "left"
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"TransformersBackend: the tokenizer of {self.model_path!r} has no chat template")
        # A model is not thread safe; agents in threads share it through this lock.
        self._model_lock = threading.Lock()

    # ---- prompts ------------------------------------------------------------------
    def render(self, conversation: Sequence[Message], assistant_prefix: str = "") -> str:
        """The exact prompt string the model sees for ``conversation``."""
        text = self.tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)
        return text + assistant_prefix

    def _encode(self, texts: list[str]):
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)

    @staticmethod
    def _position_ids(attention_mask):
        pos = attention_mask.long().cumsum(-1) - 1
        return pos.clamp(min=0)

    # ---- generate -----------------------------------------------------------------
    def _generate(self, conversations: list[list[Message]], params: GenerationParams) -> list[Completion]:
        import torch

        prompts = [self.render(c) for c in conversations for _ in range(params.n)]
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Completion | None] = [None] * len(prompts)
        gen_kwargs = dict(
            max_new_tokens=params.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self.tokenizer.eos_token_id,
        )
        if params.greedy:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:  # temperature and top-p: TemperatureTopP, after the repetition controls
            gen_kwargs.update(do_sample=True, temperature=1.0, top_p=1.0, top_k=0)
        gen_kwargs.update(repetition_controls(params))

        # with a seed, each row samples from its own generator (RowSampler, greedy over its pick):
        # a row's reply does not depend on its batch-mates; reply j of conversation i uses
        # reply_seed(seed_i, j)
        per_row = not params.greedy and params.seed is not None
        if per_row:
            gen_kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            seeds = [reply_seed(s, j) for s in params.row_seeds(len(conversations)) for j in range(params.n)]
            generators = row_generators(seeds, self.device)
        with self._model_lock, torch.inference_mode():
            for start in range(0, len(order), self.max_batch_size):
                idx = order[start : start + self.max_batch_size]
                enc = self._encode([prompts[i] for i in idx])
                kwargs = self._step_controls(enc["input_ids"].shape[1], params, gen_kwargs,
                                             [generators[i] for i in idx] if per_row else None)
                out = self.model.generate(**enc, **kwargs)
                new = out[:, enc["input_ids"].shape[1] :]
                prompt_lens = enc["attention_mask"].sum(-1).tolist()
                for row, i in enumerate(idx):
                    results[i] = self._completion(new[row], int(prompt_lens[row]), params)
        return results  # type: ignore[return-value]

    def _step_controls(self, prompt_length: int, params: GenerationParams, gen_kwargs: dict,
                       generators: list | None = None) -> dict:
        """``gen_kwargs`` plus our logits processors (the reply-only repetition controls, then
        temperature and top-p when sampling, then with ``generators`` one seeded draw per row) and
        stopping criterion (stop strings, ``max_words``)."""
        from transformers import LogitsProcessorList, StoppingCriteriaList

        processors: list = []
        if params.no_repeat_ngram_size > 0:
            processors.append(ReplyNoRepeatNGram(prompt_length, params.no_repeat_ngram_size))
        if params.frequency_penalty or params.presence_penalty:
            processors.append(OpenAIPenalties(prompt_length, params.frequency_penalty, params.presence_penalty))
        if not params.greedy:
            processors.append(TemperatureTopP(params.temperature, params.top_p))
        if generators is not None:  # the draw itself, per row (temperature and top-p applied above)
            processors.append(RowSampler(generators, temperature=1.0, top_p=1.0))
        kwargs = dict(gen_kwargs)
        if processors:
            kwargs["logits_processor"] = LogitsProcessorList(processors)
        if params.stop or params.max_words is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList(
                [StopOnTextOrWords(self.tokenizer, prompt_length, params.stop, params.max_words)])
        return kwargs

    def _completion(self, token_ids, prompt_tokens: int, params: GenerationParams) -> Completion:
        ids = token_ids.tolist()
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        ended = False
        n = len(ids)
        for k, t in enumerate(ids):
            if t == eos:
                n, ended = k, True
                break
        ids = ids[:n]
        # trailing pad tokens (rows that finished early) are not part of the reply
        while ids and ids[-1] == pad and pad != eos:
            ids.pop()
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        text, cut = cut_at_stop(text, params.stop)
        finish = "stop" if (ended or cut or len(ids) < params.max_new_tokens) else "length"
        return Completion(text=text, finish_reason=finish, prompt_tokens=prompt_tokens, completion_tokens=len(ids))

    # ---- score --------------------------------------------------------------------
    def _score(self, conversations, candidates, assistant_prefix) -> ScoreResult:
        import torch

        prompts = [self.render(c, assistant_prefix) for c in conversations]
        cand_ids = [[self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in row] for row in candidates]
        k = len(candidates[0])
        out = np.full((len(prompts), k), -np.inf)
        with self._model_lock, torch.inference_mode():
            for start in range(0, len(prompts), self.max_batch_size):
                rows = list(range(start, min(start + self.max_batch_size, len(prompts))))
                enc = self._encode([prompts[i] for i in rows])
                single = all(len(ids) == 1 for i in rows for ids in cand_ids[i])
                res = self.model(
                    **enc,
                    position_ids=self._position_ids(enc["attention_mask"]),
                    use_cache=not single,
                    logits_to_keep=1,  # only the last position's logits: (rows, 1, V), not (rows, T, V)
                )
                first = torch.log_softmax(res.logits[:, -1, :].float(), dim=-1)
                if single:
                    for r, i in enumerate(rows):
                        for j, ids in enumerate(cand_ids[i]):
                            out[i, j] = first[r, ids[0]].item()
                    continue
                out[rows] = self._score_multi(enc, _output_cache(res), first, [cand_ids[i] for i in rows])
        return ScoreResult(out, "exact")

    @property
    def _cache_kwarg(self) -> str:
        """The name of the model's KV-cache argument: ``cache`` (transformers 5.x, where
        ``past_key_values`` is deprecated and goes in 5.40) or ``past_key_values`` (4.x)."""
        name = getattr(self, "_cache_kwarg_name", None)
        if name is None:
            import inspect

            model = self.model
            get_base = getattr(model, "get_base_model", None)  # a peft model forwards **kwargs to its base
            if callable(get_base):
                model = get_base()
            params = inspect.signature(model.forward).parameters
            name = "cache" if "cache" in params else "past_key_values"
            self._cache_kwarg_name = name
        return name

    def _score_multi(self, enc, cache, first_logprobs, cand_ids) -> np.ndarray:
        """Score multi-token candidates by reusing the prompt's KV cache for each one."""
        import torch

        b = len(cand_ids)
        k = len(cand_ids[0])
        flat = [ids for row in cand_ids for ids in row]  # b*k, row-major
        length = max(len(ids) for ids in flat)
        pad = self.tokenizer.pad_token_id
        cand = torch.full((b * k, length), pad, dtype=torch.long, device=self.device)
        cand_mask = torch.zeros((b * k, length), dtype=torch.long, device=self.device)
        for r, ids in enumerate(flat):
            cand[r, : len(ids)] = torch.tensor(ids, device=self.device)
            cand_mask[r, : len(ids)] = 1
        prompt_mask = enc["attention_mask"].repeat_interleave(k, dim=0)
        cache.batch_repeat_interleave(k)
        prompt_len = prompt_mask.sum(-1, keepdim=True)
        positions = prompt_len + torch.arange(length, device=self.device)[None, :]
        res = self.model(
            input_ids=cand,
            attention_mask=torch.cat([prompt_mask, cand_mask], dim=-1),
            position_ids=positions,
            use_cache=False,
            **{self._cache_kwarg: cache},
        )
        logp = torch.log_softmax(res.logits.float(), dim=-1)  # (b*k, L, V)
        first = first_logprobs.repeat_interleave(k, dim=0)
        total = first.gather(1, cand[:, :1]).squeeze(1)
        if length > 1:
            nxt = logp[:, :-1, :].gather(2, cand[:, 1:, None]).squeeze(2)
            total = total + (nxt * cand_mask[:, 1:]).sum(-1)
        return total.view(b, k).cpu().numpy().astype(np.float64)

    # ---- embeddings ---------------------------------------------------------------
    def embed(self, texts: Sequence[str], max_length: int = 256, truncation_side: str = "left") -> np.ndarray:
        """Mean-pooled last hidden states, shape ``(len(texts), hidden_size)``.

        Args:
            texts: the texts.
            max_length: most tokens read per text.
            truncation_side: which end of a longer text is cut: ``"left"`` (default: the
                beginning, so the newest turns of a dialogue survive) or ``"right"``.
        """
        import torch

        if truncation_side not in ("left", "right"):
            raise ValueError(f"truncation_side must be 'left' or 'right', got {truncation_side!r}")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.model.config.hidden_size), dtype=np.float32)
        chunks = []
        with self._model_lock, torch.inference_mode():
            side = self.tokenizer.truncation_side
            self.tokenizer.truncation_side = truncation_side
            try:
                encs = [
                    self.tokenizer(
                        texts[start : start + self.max_batch_size],
                        return_tensors="pt", padding=True, truncation=True, max_length=max_length,
                    ).to(self.device)
                    for start in range(0, len(texts), self.max_batch_size)
                ]
            finally:
                self.tokenizer.truncation_side = side
            for enc in encs:
                res = self.model(
                    **enc, position_ids=self._position_ids(enc["attention_mask"]), output_hidden_states=True,
                    use_cache=False,
                )
                h = res.hidden_states[-1].float()
                m = enc["attention_mask"][..., None].float()
                chunks.append(((h * m).sum(1) / m.sum(1).clamp(min=1)).cpu().numpy())
        return np.concatenate(chunks).astype(np.float32)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)
