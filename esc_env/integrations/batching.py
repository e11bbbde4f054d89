"""One engine for many concurrent episodes: asyncio micro-batching for the trainer integrations.

verl and verifiers run each episode as its own asyncio task and ask for one seeker reply at a
time.  :class:`EngineBatcher` gathers the requests that arrive together into ONE
``engine.start`` / ``engine.transition`` call (one seeker call and one call per judge for the
whole batch, as :class:`esc_env.engine.DialogueEngine` promises), run on one worker thread so
that the event loop keeps serving the policy's own model calls.  :class:`MicroBatcher` is the
generic part: requests in, one ``run_batch(items)`` call out.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from agents.dialogue import Turn
from agents.personas import Persona

from ..core import Transition
from ..state import EpisodeState

__all__ = ["EngineBatcher", "MicroBatcher", "llm_thread"]

_EXECUTOR: ThreadPoolExecutor | None = None


def llm_thread() -> ThreadPoolExecutor:
    """The one thread this process runs its engine calls on: engines may share a local model,
    which must not run in two threads at once."""
    global _EXECUTOR
    if _EXECUTOR is None:
        _EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="esc-env-engine")
    return _EXECUTOR


@dataclass
class _LoopQueue:
    """The requests gathered on one event loop."""

    pending: list = field(default_factory=list)
    timer: Any = None
    busy: bool = False
    task: Any = None


class MicroBatcher:
    """Gathers concurrent requests into one call of ``run_batch(items) -> results``.

    ``run_batch`` runs on ``executor``, one batch at a time per event loop.  The first request
    that finds the batcher idle waits ``wait_s`` seconds for others (none once ``max_batch`` are
    pending); requests that arrive while a batch runs form the next batch as soon as it ends, so
    the batch size follows the load.  An exception in ``run_batch`` is raised in every request
    of that batch; the batcher goes on.

    Args:
        run_batch: ``items -> results``, one result per item, in order.
        executor: where ``run_batch`` runs.
        wait_s: how long the first request of a batch waits for others (seconds).
        max_batch: the most items in one call.
        sizes: where to append each call's batch size (e.g. a ``deque(maxlen=...)``).
    """

    def __init__(self, run_batch: Callable[[list], list], executor: ThreadPoolExecutor, wait_s: float,
                 max_batch: int, sizes: Any = None) -> None:
        self.run_batch = run_batch
        self.executor = executor
        self.wait_s = float(wait_s)
        self.max_batch = int(max_batch)
        self.sizes = sizes if sizes is not None else deque(maxlen=10_000)
        self._queues: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue]" = weakref.WeakKeyDictionary()

    async def submit(self, item: Any) -> Any:
        """Queue one item; its result once its batch has run."""
        loop = asyncio.get_running_loop()
        q = self._queues.get(loop)
        if q is None:
            q = self._queues[loop] = _LoopQueue()
        fut = loop.create_future()
        q.pending.append((item, fut))
        if not q.busy:
            if len(q.pending) >= self.max_batch or self.wait_s <= 0:
                self._flush(loop, q)
            elif q.timer is None:
                q.timer = loop.call_later(self.wait_s, self._flush, loop, q)
        return await fut

    def fail_pending(self, error: BaseException) -> None:
        """Fail every queued request (of every event loop) with ``error``."""
        for q in list(self._queues.values()):
            if q.timer is not None:
                q.timer.cancel()
                q.timer = None
            for _, f in q.pending:
                if not f.done():
                    f.set_exception(error)
            q.pending = []

    def _flush(self, loop: asyncio.AbstractEventLoop, q: _LoopQueue) -> None:
        if q.timer is not None:
            q.timer.cancel()
            q.timer = None
        q.pending = [(item, f) for item, f in q.pending if not f.done()]  # drop cancelled requests
        if q.busy or not q.pending:
            return
        batch, q.pending = q.pending[: self.max_batch], q.pending[self.max_batch:]
        q.busy = True
        q.task = loop.create_task(self._run(loop, q, batch))

    async def _run(self, loop: asyncio.AbstractEventLoop, q: _LoopQueue, batch: list) -> None:
        self.sizes.append(len(batch))
        try:
            results = await loop.run_in_executor(self.executor, self.run_batch, [item for item, _ in batch])
        except Exception as e:  # every request of the batch sees the engine's error
            for _, f in batch:
                if not f.done():
                    f.set_exception(e)
        else:
            for (_, f), r in zip(batch, results):
                if not f.done():
                    f.set_result(r)
        finally:
            q.busy = False
            if q.pending:
                self._flush(loop, q)


class EngineBatcher:
    """One :class:`~esc_env.engine.DialogueEngine` (``action_mode="text"``) serving many
    concurrent episodes.

    Episodes ``await start(persona, seed)`` and ``await step(state, utterance)``; requests that
    arrive together go to the engine as one ``engine.start`` (or ``states_from_dialogues``, for
    openings given as text) and one ``engine.transition`` call, on :func:`llm_thread`.  Each
    action is checked on its own first (``engine.parse_action``), so a bad action fails only
    its own episode.

    Args:
        engine: the engine.
        wait_s: how long the first request of a batch waits for others (seconds).
        max_batch: the most episodes in one engine call.

    Attributes:
        batch_sizes: ``(kind, n)`` for every engine call made, ``kind`` being ``"start"`` or
            ``"step"`` (the last 10,000).
    """

    def __init__(self, engine: Any, wait_s: float = 0.05, max_batch: int = 256) -> None:
        if getattr(engine, "action_mode", None) != "text":
            raise ValueError(f"EngineBatcher needs an engine with action_mode='text', got {getattr(engine, 'action_mode', None)!r}")
        self.engine = engine
        self._sizes: deque = deque(maxlen=10_000)
        self._starts = MicroBatcher(self._start_batch, llm_thread(), wait_s, max_batch, _Tagged(self._sizes, "start"))
        self._steps = MicroBatcher(self._step_batch, llm_thread(), wait_s, max_batch, _Tagged(self._sizes, "step"))

    @property
    def batch_sizes(self) -> list[tuple[str, int]]:
        return list(self._sizes)

    async def start(self, persona: Persona, seed: int, opening: str | None = None) -> EpisodeState:
        """Open one episode: the seeker's opening (or ``opening``, used as it is) and the judged
        starting intensity."""
        return await self._starts.submit((persona, int(seed), opening))

    async def step(self, state: EpisodeState, utterance: str) -> Transition:
        """One supporter turn of one episode: the seeker's reply, the reward, the end flags.

        Raises:
            ValueError: the utterance is not an ``ESCText-v0`` action (before any batching).
        """
        self.engine.parse_action(utterance)
        return await self._steps.submit((state, utterance))

    async def close(self) -> None:
        """Fail the requests still queued with ``RuntimeError``."""
        for mb in (self._starts, self._steps):
            mb.fail_pending(RuntimeError("the engine batcher was closed"))

    def _start_batch(self, items: list) -> list[EpisodeState]:
        out: list[Any] = [None] * len(items)
        given = [i for i, (_, _, o) in enumerate(items) if o is not None]
        fresh = [i for i, (_, _, o) in enumerate(items) if o is None]
        if given:
            states = self.engine.states_from_dialogues([items[i][0] for i in given],
                                                       [[Turn("seeker", items[i][2])] for i in given],
                                                       [items[i][1] for i in given])
            for i, st in zip(given, states):
                out[i] = st
        if fresh:
            states = self.engine.start([items[i][0] for i in fresh], [items[i][1] for i in fresh])
            for i, st in zip(fresh, states):
                out[i] = st
        return out

    def _step_batch(self, items: list) -> list[Transition]:
        return self.engine.transition([s for s, _ in items], [a for _, a in items])


class _Tagged:
    """Appends ``(kind, n)`` to a shared deque."""

    def __init__(self, sink: deque, kind: str) -> None:
        self.sink, self.kind = sink, kind

    def append(self, n: int) -> None:
        self.sink.append((self.kind, n))
