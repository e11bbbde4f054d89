"""Two-phase reply generation for the RLFF policy, and token log-probabilities for GRPO.

Phase 1 (reasoning): the prompt ends with ``<think>``; the model samples at most
``max_reasoning_tokens`` tokens and stops when it has written ``</think>``.  If it did not,
we append the tokens of ``</think>`` ourselves (``sampled_mask`` 0 for them).
Phase 2 (answer): the model continues after ``</think>`` for at most ``max_answer_tokens``
tokens, until its end-of-message token or the end of its first paragraph (a blank line after
some text), whichever comes first.  The seeker is only ever shown the first paragraph, so
the tokens after it are dropped from the completion: what GRPO trains on is what is shown
(the kept tokens are a prefix of the sampled ones, so their probabilities are unchanged).

Every row of a phase is one batched ``model.generate`` call (split into ``batch_size`` rows).
With a seed, every row samples from its own ``torch.Generator``, one per phase
(:class:`agents.backends.row_sampling.RowSampler`), so a row's reply depends on
its prompt and seed only, not on the other rows of the batch.
The token ids of the prompt and of the completion are kept exactly as sampled, so that the
GRPO ratio ``pi_theta / pi_old`` is computed on the tokens the model actually produced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from agents.backends.row_sampling import RowSampler, mix_seed, row_generators

from .format import THINK_CLOSE, THINK_OPEN, Reply, clean_answer, shown_as_written


@dataclass
class Generation:
    """Replies to ``n_prompts`` prompts, ``num_samples`` each, prompt-major (row ``i * num_samples + g``).

    Attributes:
        prompt_ids: token ids of each row's prompt (ending with ``<think>``).
        completion_ids: the row's reasoning tokens, ``</think>`` (forced or not), answer tokens
            and the end-of-message token when the model wrote it.
        sampled_mask: 1 where the model sampled the token, 0 where we forced it; same lengths
            as ``completion_ids``.
        replies: the parsed replies (reasoning, answer, format flags).
        answer_finished: the model ended its answer itself (not cut by ``max_answer_tokens``).
    """

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    sampled_mask: list[list[int]]
    replies: list[Reply]
    answer_finished: list[bool]
    n_prompts: int
    num_samples: int


def render_prompt(tokenizer, messages: Sequence[dict]) -> str:
    """The chat-template prompt with the reasoning opened: ``... <|im_start|>assistant\\n<think>``."""
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True) + THINK_OPEN


def _left_pad(rows: list[list[int]], pad_id: int):
    import torch

    n = max(len(r) for r in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, n - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, n - len(r):] = 1
    return ids, mask


def _sample(model, tokenizer, rows: list[list[int]], max_new_tokens: int, temperature: float, top_p: float,
            stop: Sequence[str], batch_size: int, generators: Sequence | None = None) -> list[list[int]]:
    """New tokens of each row (cut after the end-of-message token, which is kept).

    ``generators``: one ``torch.Generator`` per row (sampling row by row), or ``None`` (the
    global random stream)."""
    import torch

    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=pad, eos_token_id=eos)
    per_row = temperature > 0 and generators is not None
    if per_row:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    elif temperature > 0:
        kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    if stop:
        kwargs.update(stop_strings=list(stop), tokenizer=tokenizer)
    out: list[list[int]] = []
    device = next(model.parameters()).device
    for s in range(0, len(rows), batch_size):
        ids, mask = _left_pad(rows[s : s + batch_size], pad)
        kw = kwargs
        if per_row:
            from transformers import LogitsProcessorList

            kw = dict(kwargs, logits_processor=LogitsProcessorList([RowSampler(generators[s : s + batch_size], temperature, top_p)]))
        with torch.inference_mode():
            gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kw)
        for row in gen[:, ids.shape[1]:].tolist():
            if eos in row:
                row = row[: row.index(eos) + 1]
            elif pad != eos:  # rows that stopped at a stop string are padded
                while row and row[-1] == pad:
                    row.pop()
            out.append(row)
    return out


def _paragraph_end(tokenizer, ids: list[int]) -> int | None:
    """Smallest ``k`` such that the decoded ``ids[:k]`` has a blank line after some text, else ``None``."""
    for k in range(1, len(ids) + 1):
        if "\n" in tokenizer.decode(ids[k - 1 : k]) and "\n\n" in tokenizer.decode(ids[:k]).lstrip():
            return k
    return None


def shown_tokens(tokenizer, ids: list[int]) -> tuple[list[int], bool]:
    """The answer tokens that are shown to the seeker, and whether the model ended them.

    ``ids`` are the sampled answer tokens (maybe ending with the end-of-message token).  They
    are cut after the first paragraph's blank line when there is one (the seeker only reads
    the first paragraph); the model ended its answer if it wrote that blank line or the
    end-of-message token.
    """
    eos = tokenizer.eos_token_id
    body = ids[:-1] if ids and ids[-1] == eos else ids
    k = _paragraph_end(tokenizer, body)
    if k is not None:
        return list(ids[:k]), True
    return list(ids), bool(ids) and ids[-1] == eos


def _close_index(tokenizer, ids: list[int]) -> int | None:
    """Smallest ``k`` such that the decoded ``ids[:k]`` contains ``</think>``, else ``None``."""
    for k in range(1, len(ids) + 1):
        if ">" in tokenizer.decode(ids[k - 1 : k]) and THINK_CLOSE in tokenizer.decode(ids[:k]):
            return k
    return None


def generate_replies(
    model,
    tokenizer,
    messages: Sequence[Sequence[dict]],
    *,
    num_samples: int = 1,
    max_reasoning_tokens: int = 48,
    max_answer_tokens: int = 64,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: "int | Sequence[int] | None" = None,
    batch_size: int = 16,
) -> Generation:
    """Reasoning then answer for every chat in ``messages``, ``num_samples`` times each.

    Args:
        model, tokenizer: a causal chat LM (a PEFT model is fine).
        messages: ``n`` chats (from :func:`policies.rlff.format.build_messages`).
        num_samples: replies per chat (``G`` in GRPO).
        max_reasoning_tokens, max_answer_tokens: token budgets of the two phases.
        temperature: 0 for greedy decoding; else sampling with ``top_p``.
        seed: one seed per chat (row ``(i, g)`` samples phase ``k`` from a generator seeded
            with ``mix_seed(seed[i], g, k)``, whatever the other chats), or one int for the call
            (chat ``i``'s seed is then ``mix_seed(seed, i)``), or ``None`` (torch's global
            random stream).
        batch_size: rows per ``generate`` call.
    """
    import torch

    eos = tokenizer.eos_token_id
    prompts = [tokenizer(render_prompt(tokenizer, m), add_special_tokens=False)["input_ids"] for m in messages]
    rows = [p for p in prompts for _ in range(num_samples)]
    forced_close = tokenizer(THINK_CLOSE, add_special_tokens=False)["input_ids"]
    generators = None
    if seed is not None:
        if hasattr(seed, "__iter__"):
            chat_seeds = [int(x) for x in seed]
            if len(chat_seeds) != len(messages):
                raise ValueError(f"generate_replies: got {len(chat_seeds)} seeds for {len(messages)} chats")
        else:
            chat_seeds = [mix_seed(int(seed), i) for i in range(len(messages))]
        # one stream per row AND phase: a row's draws in phase 1 continue while its batch-mates
        # are still writing, so a shared stream would carry their length into phase 2
        device = next(model.parameters()).device
        generators = [row_generators([mix_seed(cs, g, phase) for cs in chat_seeds for g in range(num_samples)], device)
                      for phase in (1, 2)]
    was_training = model.training
    model.eval()
    try:
        first = _sample(model, tokenizer, rows, max_reasoning_tokens, temperature, top_p, (THINK_CLOSE,), batch_size,
                        generators and generators[0])
        phase1, masks, closed = [], [], []
        for ids in first:
            k = _close_index(tokenizer, ids)
            if k is not None:
                phase1.append(ids[:k])
                masks.append([1] * k)
                closed.append(True)
            else:
                body = ids[:-1] if ids and ids[-1] == eos else ids
                phase1.append(body + forced_close)
                masks.append([1] * len(body) + [0] * len(forced_close))
                closed.append(False)
        second = _sample(model, tokenizer, [r + p for r, p in zip(rows, phase1)], max_answer_tokens,
                         temperature, top_p, (), batch_size, generators and generators[1])
    finally:
        model.train(was_training)
    completions, sampled, replies, finished = [], [], [], []
    for p1, m1, ok, ans in zip(phase1, masks, closed, second):
        ans, done = shown_tokens(tokenizer, ans)
        completions.append(p1 + ans)
        sampled.append(m1 + [1] * len(ans))
        text = tokenizer.decode(p1 + (ans[:-1] if ans and ans[-1] == eos else ans), skip_special_tokens=True)
        k = text.find(THINK_CLOSE)
        reasoning, raw = (text[:k], text[k + len(THINK_CLOSE):]) if k >= 0 else (text, "")
        answer = clean_answer(raw)
        clean = done and bool(answer) and shown_as_written(raw, answer)
        replies.append(Reply(reasoning.strip(), answer, ok, ok and clean, clean))
        finished.append(done)
    return Generation(rows, completions, sampled, replies, finished, len(messages), num_samples)


def completion_logprobs(model, prompt_ids: Sequence[list[int]], completion_ids: Sequence[list[int]], pad_id: int,
                        temperature: float = 1.0, micro_batch: int = 8):
    """Log-probability of every completion token under ``model``.

    Rows are laid out ``[pad ... prompt | completion ... pad]`` so that all completions start
    at the same column and only the last ``Lc + 1`` positions need logits.

    Returns:
        ``(logp, mask)``: float tensor ``(N, Lc)`` (with gradients when grad is enabled) and a
        0/1 tensor ``(N, Lc)`` of real (non-pad) completion positions, ``Lc`` the longest completion.
    """
    import torch

    device = next(model.parameters()).device
    out_lp, out_mask = [], []
    lc_all = max(len(c) for c in completion_ids)
    for s in range(0, len(prompt_ids), micro_batch):
        ps, cs = prompt_ids[s : s + micro_batch], completion_ids[s : s + micro_batch]
        p_ids, p_mask = _left_pad(list(ps), pad_id)
        lc = lc_all
        c_ids = torch.full((len(cs), lc), pad_id, dtype=torch.long)
        c_mask = torch.zeros((len(cs), lc), dtype=torch.long)
        for i, c in enumerate(cs):
            c_ids[i, : len(c)] = torch.tensor(c, dtype=torch.long)
            c_mask[i, : len(c)] = 1
        ids = torch.cat([p_ids, c_ids], 1).to(device)
        mask = torch.cat([p_mask, c_mask], 1).to(device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=lc + 1, use_cache=False).logits
        logits = logits[:, :-1, :].float() / temperature  # position P-1+t predicts completion token t
        lp = torch.log_softmax(logits, -1).gather(-1, c_ids.to(device)[..., None]).squeeze(-1)
        out_lp.append(lp)
        out_mask.append(c_mask.to(device))
    return torch.cat(out_lp, 0), torch.cat(out_mask, 0)
