"""Sampling where every row of a batch draws from its own seeded random stream.

``model.generate(do_sample=True)`` draws the whole batch from one global random stream, so
a row's reply depends on which rows share its batch and in which order.  :class:`RowSampler`
is a transformers logits processor that samples each row's next token itself, from the
row's own ``torch.Generator``, and returns scores that make that token the only choice; run
with ``do_sample=False`` (greedy), ``model.generate`` then emits exactly the sampled tokens.
Row ``r`` consumes one draw per decoding step whatever its batch-mates do, so its reply
depends only on its prompt and its seed (up to the floating-point effect of padding).

The draw is the exponential race: the token is ``argmax_t p_t / E_t`` with ``E_t ~ Exp(1)``
i.i.d., which picks token ``t`` with probability ``p_t``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integer parts (``numpy.random.SeedSequence`` mixing: nearby parts give
    unrelated seeds, unlike ``a + b``)."""
    state = np.random.SeedSequence([int(p) % (1 << 64) for p in parts]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def row_generators(seeds: Sequence[int], device) -> list:
    """One ``torch.Generator`` on ``device`` per seed, seeded with it."""
    import torch

    out = []
    for s in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(s))
        out.append(g)
    return out


def top_p_filter(logits, top_p: float, k: int = 64):
    """``logits`` ``(batch, vocab)`` with every token outside the nucleus set to ``-inf``.

    The nucleus of a row is its most likely tokens, in decreasing order, up to and including
    the first one at which their probability mass reaches ``top_p`` (at least one token): the
    rule of transformers' ``TopPLogitsWarper``.  Without sorting the whole vocabulary at every
    step: the ``k`` most likely tokens are taken with ``topk``, and only a row whose ``k``
    tokens hold less than ``top_p`` of the probability is sorted in full (on the embedded
    model's 49k-token vocabulary a full sort made a sampled decoding step about 30% slower).
    """
    import torch

    if top_p >= 1.0:
        return logits
    probs = logits.float().softmax(-1)
    top, idx = probs.topk(min(int(k), logits.shape[-1]), dim=-1)  # descending
    before = top.cumsum(-1) - top  # mass of the strictly more likely tokens
    keep_top = before < top_p
    keep_top[:, 0] = True
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, idx, keep_top)
    for r in (top.sum(-1) < top_p).nonzero(as_tuple=True)[0].tolist():  # nucleus wider than k: sort this row
        p, order = probs[r].sort(descending=True)
        row_keep = (p.cumsum(-1) - p) < top_p
        row_keep[0] = True
        keep[r] = torch.zeros_like(keep[r]).scatter_(0, order, row_keep)
    return logits.masked_fill(~keep, float("-inf"))


class RowSampler:
    """Logits processor: sample row ``r``'s next token from ``generators[r]`` (temperature, top-p).

    Put it last in the ``logits_processor`` list (after the repetition controls) and call
    ``model.generate`` with ``do_sample=False``: the returned scores are ``0`` for the sampled
    token and ``-inf`` elsewhere.

    Args:
        generators: one ``torch.Generator`` per batch row (on the scores' device).
        temperature: > 0; the logits are divided by it.
        top_p: nucleus mass in (0, 1].
    """

    def __init__(self, generators: Sequence, temperature: float = 1.0, top_p: float = 1.0) -> None:
        if not temperature > 0:
            raise ValueError(f"RowSampler: temperature must be > 0, got {temperature!r}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"RowSampler: top_p must be in (0, 1], got {top_p!r}")
        self.generators = list(generators)
        self.temperature = float(temperature)
        self.top_p = float(top_p)

    def sample(self, scores):
        """Token ids ``(batch,)`` drawn from ``softmax(top_p(scores / temperature))``, row by row."""
        import torch

        if scores.shape[0] != len(self.generators):
            raise ValueError(f"RowSampler: {scores.shape[0]} rows of scores for {len(self.generators)} generators")
        probs = top_p_filter(scores.float() / self.temperature, self.top_p).softmax(-1)
        tokens = []
        for r, g in enumerate(self.generators):
            race = torch.empty(probs.shape[1], dtype=torch.float32, device=probs.device).exponential_(generator=g)
            tokens.append(int((probs[r] / race).argmax()))
        return torch.tensor(tokens, dtype=torch.long, device=scores.device)

    def __call__(self, input_ids, scores):
        """``scores`` ``(batch, vocab)`` -> ``0`` at each row's sampled token, ``-inf`` elsewhere."""
        import torch

        tokens = self.sample(scores)
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(tokens), device=scores.device), tokens] = 0.0
        return out
