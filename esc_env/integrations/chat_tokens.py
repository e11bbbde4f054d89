"""Token ids of a multi-turn chat, assembled turn by turn without re-tokenising what was sampled.

A multi-turn rollout trains on ONE token sequence per episode: the chat-templated opening
(``prompt_ids``), then, alternately, the tokens the policy sampled for its turn and the tokens
the template puts around the other side's reply (``completion_ids``).  The sampled ids are kept
verbatim; only the environment's segments are tokenised, each as the difference between two
renderings of the chat template::

    env segment = close + ids(template(messages + [reply], add_generation_prompt=True))[len(ids(template(messages))):]

where ``close`` are the tokens the template writes after the end-of-turn token (``"\\n"`` for
ChatML).  This is only right when the template *preserves prefixes*: rendering one more
message must extend, never rewrite, the ids of the shorter chat.  Templates that drop earlier
reasoning, print the number of messages, or date-stamp the system line break it;
:func:`check_prefix_preserving` finds that out before any training step and raises
:class:`ChatTemplateError` naming the model.

:func:`check_token_alignment` compares a finished episode's ids with a fresh tokenisation of
its final dialogue, the test that nothing drifted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from agents.errors import UserInputError

__all__ = [
    "ChatTemplateError",
    "ChatTokens",
    "EpisodeTokens",
    "TokenMismatch",
    "check_prefix_preserving",
    "check_token_alignment",
    "SegmentAlignment",
    "first_mismatch",
    "segment_alignment",
    "render_ids",
]

#: the short dialogue that :func:`check_prefix_preserving` renders turn by turn (our own words)
PROBE_DIALOGUE: tuple[dict[str, str], ...] = (
    {"role": "system", "content": "You listen to people and answer kindly."},
    {"role": "user", "content": "I failed my driving test again today."},
    {"role": "assistant", "content": "That must be really disappointing. How are you feeling?"},
    {"role": "user", "content": "Tired of trying, honestly."},
    {"role": "assistant", "content": "It makes sense to feel worn out after two tries."},
)


class ChatTemplateError(UserInputError):
    """A model whose chat template cannot be used for multi-turn token assembly (the message
    names the model and the first differing token)."""


@dataclass(frozen=True)
class TokenMismatch:
    """Where two token sequences first differ.

    Attributes:
        position: index of the first differing token (or the length of the shorter sequence).
        ours: the token text at ``position`` in the assembled ids (``None``: ours ended).
        fresh: the token text at ``position`` in the fresh tokenisation (``None``: it ended).
        context: the decoded text of the few tokens before ``position``.
    """

    position: int
    ours: str | None
    fresh: str | None
    context: str = ""

    def __str__(self) -> str:
        return f"token {self.position} (after {self.context!r}): {self.ours!r}, fresh {self.fresh!r}"


def _name(tokenizer: Any) -> str:
    return str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)


def render_ids(tokenizer: Any, messages: Sequence[dict], add_generation_prompt: bool = False) -> list[int]:
    """The token ids of ``apply_chat_template(messages)``: the template rendered to text, then
    tokenised without extra special tokens (the template writes its own)."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def first_mismatch(tokenizer: Any, ours: Sequence[int], fresh: Sequence[int]) -> TokenMismatch | None:
    """The first position where ``ours`` and ``fresh`` differ (``None``: equal)."""
    n = min(len(ours), len(fresh))
    pos = next((i for i in range(n) if int(ours[i]) != int(fresh[i])), n)
    if pos == len(ours) == len(fresh):
        return None

    def tok(ids: Sequence[int]) -> str | None:
        return tokenizer.decode([int(ids[pos])]) if pos < len(ids) else None

    return TokenMismatch(pos, tok(ours), tok(fresh), tokenizer.decode([int(t) for t in fresh[max(0, pos - 6):pos]]))


def check_prefix_preserving(tokenizer: Any, dialogue: Sequence[dict] = PROBE_DIALOGUE) -> None:
    """Check that each turn of ``dialogue`` only extends the token ids of the chat before it.

    The renderings checked, in order: the opening with the generation prompt, then with the
    assistant's answer, then with the next user message and the generation prompt, and so on;
    each one's ids must start with the previous one's.

    Raises:
        ChatTemplateError: the first rendering that rewrites earlier ids, with the model's
            ``name_or_path`` and the first differing token; or a template that cannot render
            the dialogue at all (none set, no system role).
    """
    previous: list[int] | None = None
    prev_label = ""
    for k in range(2, len(dialogue) + 1):
        gen = dialogue[k - 1]["role"] != "assistant"
        try:
            ids = render_ids(tokenizer, dialogue[:k], add_generation_prompt=gen)
        except Exception as e:  # no template, no system role, a template error: all the model's
            raise ChatTemplateError(f"{_name(tokenizer)}: cannot render a system/user/assistant chat with its chat "
                                    f"template ({type(e).__name__}: {e})") from e
        label = f"{k} messages" + (" + generation prompt" if gen else "")
        if previous is not None and ids[: len(previous)] != previous:
            mm = first_mismatch(tokenizer, previous, ids[: len(previous)])
            raise ChatTemplateError(
                f"{_name(tokenizer)}: the chat template does not preserve prefixes: rendering {label} changes "
                f"{mm} of the rendering of {prev_label}; multi-turn training needs every turn's token ids to "
                "extend the previous ones (use a template that renders earlier turns unchanged)"
            )
        previous, prev_label = ids, label


@dataclass
class EpisodeTokens:
    """One episode's ids as TRL reads them, built segment by segment.

    Attributes:
        prompt_ids: the chat-templated opening (system, first user message, generation prompt).
        completion_ids: every later token, in order.
        env_mask: one per completion token: 1 where the policy sampled it, 0 elsewhere.
        logprobs: one per completion token: the sampled token's log-probability, 0.0 where
            ``env_mask`` is 0.
    """

    prompt_ids: list[int]
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)

    @property
    def ids(self) -> list[int]:
        """``prompt_ids + completion_ids``: what the policy reads before its next token."""
        return self.prompt_ids + self.completion_ids

    def add_sampled(self, ids: Sequence[int], logprobs: Sequence[float]) -> None:
        """Tokens the policy sampled (mask 1), verbatim."""
        if len(ids) != len(logprobs):
            raise ValueError(f"got {len(logprobs)} logprobs for {len(ids)} sampled tokens")
        self.completion_ids += [int(t) for t in ids]
        self.env_mask += [1] * len(ids)
        self.logprobs += [float(x) for x in logprobs]

    def add_env(self, ids: Sequence[int]) -> None:
        """Tokens the policy did not sample (mask 0, logprob 0.0)."""
        self.completion_ids += [int(t) for t in ids]
        self.env_mask += [0] * len(ids)
        self.logprobs += [0.0] * len(ids)


class ChatTokens:
    """A tokenizer's chat template, checked and split into the pieces a rollout needs.

    Args:
        tokenizer: a Hugging Face tokenizer with a chat template.
        stop_ids: the ids that end the policy's turn (default: ``tokenizer.eos_token_id``);
            the template's end-of-assistant-turn token must be one of them.

    Raises:
        ChatTemplateError: the template does not preserve prefixes (:func:`check_prefix_preserving`),
            changes the assistant's text, or does not end an assistant turn with a stop id.

    Attributes:
        end_id: the end-of-turn token the template writes after an assistant message (appended,
            mask 0, to a turn cut at its token limit).
        close_ids: the tokens the template writes after ``end_id`` (``"\\n"`` for ChatML).
    """

    def __init__(self, tokenizer: Any, stop_ids: Sequence[int] | None = None) -> None:
        self.tokenizer = tokenizer
        if stop_ids is None:
            eos = getattr(tokenizer, "eos_token_id", None)
            stop_ids = [] if eos is None else [eos]
        self.stop_ids = frozenset(int(t) for t in stop_ids)
        if not self.stop_ids:
            raise ChatTemplateError(f"{_name(tokenizer)}: the tokenizer has no eos_token_id; pass stop_ids")
        check_prefix_preserving(tokenizer)
        self.end_id, self.close_ids = self._turn_end(PROBE_DIALOGUE[:3])

    def _turn_end(self, chat: Sequence[dict]) -> tuple[int, list[int]]:
        tok = self.tokenizer
        before = tok.apply_chat_template(list(chat[:-1]), tokenize=False, add_generation_prompt=True)
        after = tok.apply_chat_template(list(chat), tokenize=False)
        content = chat[-1]["content"]
        if not after.startswith(before + content):
            raise ChatTemplateError(
                f"{_name(tok)}: the chat template does not write the assistant's message verbatim after the "
                f"generation prompt (it renders {after[len(before):][:80]!r}); sampled tokens could not be kept as they are"
            )
        tail = list(tok(after[len(before) + len(content):], add_special_tokens=False)["input_ids"])
        if not tail or tail[0] not in self.stop_ids:
            raise ChatTemplateError(
                f"{_name(tok)}: the chat template ends an assistant turn with {tok.decode(tail[:1])!r}, which is "
                f"not a stop id {sorted(self.stop_ids)}; the policy's turns could not end where the template's do"
            )
        return int(tail[0]), tail[1:]

    def opening(self, messages: Sequence[dict]) -> list[int]:
        """``prompt_ids``: the chat rendered with the generation prompt."""
        return render_ids(self.tokenizer, messages, add_generation_prompt=True)

    def env_segment(self, messages: Sequence[dict], reply: dict) -> list[int]:
        """The tokens between the end of the policy's last turn (its ``end_id``) and its next
        turn: the template's ``close_ids``, ``reply`` in the template, the generation prompt.

        ``messages`` ends with the policy's (assistant) message.

        Raises:
            ChatTemplateError: adding ``reply`` rewrote earlier ids (the dialogue shows what
                the probe in the constructor did not).
        """
        done = render_ids(self.tokenizer, messages)
        nxt = render_ids(self.tokenizer, list(messages) + [reply], add_generation_prompt=True)
        if nxt[: len(done)] != done:
            raise ChatTemplateError(
                f"{_name(self.tokenizer)}: the chat template does not preserve prefixes: adding a "
                f"{reply.get('role')!r} message changes {first_mismatch(self.tokenizer, done, nxt[: len(done)])}"
            )
        if done[len(done) - len(self.close_ids) - 1:] != [self.end_id] + self.close_ids:
            raise ChatTemplateError(
                f"{_name(self.tokenizer)}: the rendered chat does not end with the end-of-turn tokens "
                f"{self.tokenizer.decode([self.end_id] + self.close_ids)!r}"
            )
        return list(self.close_ids) + nxt[len(done):]


def check_token_alignment(
    tokenizer: Any,
    messages: Sequence[dict],
    prompt_ids: Sequence[int],
    completion_ids: Sequence[int],
    close_ids: Sequence[int] | None = None,
) -> TokenMismatch | None:
    """Compare an episode's ids with a fresh ``apply_chat_template`` of its final dialogue.

    ``prompt_ids + completion_ids`` must equal the fresh ids of ``messages`` (ending with the
    policy's last turn), except that the fresh ids may go on with the template's tokens after
    the final end-of-turn token (``"\\n"`` for ChatML), which a rollout leaves out so that TRL
    sees the completion end with EOS.  ``close_ids``: those tokens (default: found from the
    template by :class:`ChatTokens`).

    Returns:
        ``None`` when they agree, else the first :class:`TokenMismatch`.
    """
    ours = [int(t) for t in prompt_ids] + [int(t) for t in completion_ids]
    fresh = render_ids(tokenizer, messages)
    if len(fresh) > len(ours) and ours == fresh[: len(ours)]:
        if close_ids is None:
            close_ids = ChatTokens(tokenizer).close_ids
        if fresh[len(ours):] == list(close_ids):
            return None
    return first_mismatch(tokenizer, ours, fresh)



@dataclass(frozen=True)
class SegmentAlignment:
    """What :func:`segment_alignment` found.

    Attributes:
        mismatch: the first difference that must not happen (``None``: none): an id of the prompt
            or of a mask-0 segment (template, seeker) that a fresh rendering does not have, a
            mask-1 segment whose text is not the assistant message's, or segments that do not
            line up (a mask that marks a seeker or template token 1, or a sampled token 0).
            ``position`` counts from the start of ``prompt_ids``.
        resampled_turns: the policy turns whose sampled ids are a different tokenisation of the
            same text than a fresh tokenisation gives (e.g. ``" super" "f" "icial"`` for
            ``" superficial"``): kept as sampled, since those are the ids the policy chose.
    """

    mismatch: TokenMismatch | None
    resampled_turns: tuple[int, ...] = ()


def _runs(mask: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(value, start, end)`` of each run of equal values."""
    out: list[tuple[int, int, int]] = []
    for k, m in enumerate(mask):
        if out and out[-1][0] == m:
            out[-1] = (m, out[-1][1], k + 1)
        else:
            out.append((int(m), k, k + 1))
    return out


def segment_alignment(
    tokenizer: Any,
    messages: Sequence[dict],
    prompt_ids: Sequence[int],
    completion_ids: Sequence[int],
    env_mask: Sequence[int],
    cut_turns: Sequence[int] = (),
    close_ids: Sequence[int] | None = None,
) -> SegmentAlignment:
    """Check an episode segment by segment against fresh renderings of its dialogue.

    ``messages`` holds the opening (everything before the first assistant message) and ends
    with the policy's last (assistant) message.  The fresh pieces come from whole renderings
    only: the prompt is ``template(opening, add_generation_prompt=True)``; policy turn ``k``
    spans from the end of the rendering before it (with the generation prompt) to the end of
    the rendering through it, less the template's closing tokens; the tokens up to the next
    turn are an environment segment.  A turn in ``cut_turns`` hit its token limit: its
    end-of-turn token belongs to the environment segment (it was appended, not sampled).

    The episode's runs of ``env_mask`` must be these segments in order: mask-0 runs equal to
    the fresh ids, mask-1 runs equal to them or, failing that, decoding to the same text (then
    the turn is listed in ``resampled_turns``).  Unlike :func:`check_token_alignment`, this
    accepts sampled ids that a fresh tokenisation would spell differently.
    """
    if len(env_mask) != len(completion_ids):
        raise ValueError(f"env_mask has {len(env_mask)} values for {len(completion_ids)} completion ids")
    if close_ids is None:
        close_ids = ChatTokens(tokenizer).close_ids
    close = list(close_ids)
    turns = [j for j, m in enumerate(messages) if m["role"] == "assistant"]
    if not turns or turns[-1] != len(messages) - 1:
        raise ValueError("messages must contain an assistant message and end with one")
    prompt = render_ids(tokenizer, messages[: turns[0]], add_generation_prompt=True)
    if list(prompt_ids) != prompt:
        return SegmentAlignment(first_mismatch(tokenizer, list(prompt_ids), prompt))
    # fresh (mask, ids) segments, from whole renderings
    fresh: list[tuple[int, list[int]]] = []
    before = prompt
    for k, j in enumerate(turns):
        through = render_ids(tokenizer, messages[: j + 1])
        if through[: len(before)] != before:
            return SegmentAlignment(first_mismatch(tokenizer, before, through[: len(before)]))
        policy = through[len(before): len(through) - len(close)]
        env: list[int] = []
        if k in set(cut_turns):
            policy, env = policy[:-1], policy[-1:]
        if k + 1 < len(turns):
            nxt = render_ids(tokenizer, messages[: turns[k + 1]], add_generation_prompt=True)
            if nxt[: len(through)] != through:
                return SegmentAlignment(first_mismatch(tokenizer, through, nxt[: len(through)]))
            env += nxt[len(through) - len(close):]
            before = nxt
        fresh.append((1, policy))
        if env:
            fresh.append((0, env))
    ours = [(m, list(completion_ids[a:b])) for m, a, b in _runs(env_mask)]
    everything = list(prompt_ids) + [int(t) for t in completion_ids]

    def at(position: int, got: str | None, want: str | None) -> TokenMismatch:
        return TokenMismatch(position, got, want, tokenizer.decode(everything[max(0, position - 6):position]))

    resampled: list[int] = []
    offset, turn = len(prompt), 0
    for (want_mask, want), (got_mask, got) in zip(fresh, ours):
        if want_mask != got_mask:
            return SegmentAlignment(at(offset, f"a mask-{got_mask} run", f"a mask-{want_mask} segment"), tuple(resampled))
        if want != got:
            if want_mask == 0 or tokenizer.decode(want) != tokenizer.decode(got):
                mm = first_mismatch(tokenizer, got, want)
                return SegmentAlignment(at(offset + mm.position, mm.ours, mm.fresh), tuple(resampled))
            resampled.append(turn)
        turn += want_mask
        offset += len(got)
    if len(fresh) != len(ours):
        return SegmentAlignment(at(offset, f"{len(ours)} mask runs", f"{len(fresh)} segments"), tuple(resampled))
    return SegmentAlignment(None, tuple(resampled))
