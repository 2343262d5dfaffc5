"""Group commit for go-job's ``ScheduleJob``: concurrent calls share one store write.

A durable store pays a commit (an fsync) per transaction; one transaction per call caps
a server at its commits per second, and each call would also cross from asyncio into
Trio on its own. Instead, handlers (asyncio side) queue their request with
:meth:`ScheduleBatcher.submit` and wait for its outcome; writer tasks (Trio side, owned
by :func:`gojob.server.serve`'s nursery) take everything queued (up to ``max_batch``) in
one crossing, write it with :meth:`Manager.schedule_many` (one store write per kind and
priority in the batch), and hand the outcomes back in the crossing that takes the next
batch. No timer: requests that arrive while a batch is being written form the next
one, so an idle server adds no latency and a busy one writes big batches.

Errors stay per call: if a group is refused for its arguments (one payload over its
cap, say), its requests are written one by one, so only the bad one fails. A store or
manager error fails the calls of that write, each with the same status.

A caller that goes away (cancelled) after queuing may still have its instance
scheduled, exactly like a call cancelled during its own transaction.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from .._aio import Bridge
from ..errors import ArgumentError
from ..instance import Instance
from ..manager import Manager

__all__ = ["DEFAULT_MAX_BATCH", "DEFAULT_WRITERS", "ScheduleBatcher"]

DEFAULT_MAX_BATCH = 256
DEFAULT_WRITERS = 2
"""Two writers: one builds and writes a batch while the other waits for its commit."""


@dataclass(slots=True)
class _Request:
    kind: str
    values: Sequence[Any]
    priority: int | None
    future: asyncio.Future[Instance]


@dataclass(slots=True)
class _Outcome:
    instance: Instance | None = None
    error: BaseException | None = None


@dataclass
class ScheduleBatcher:
    """Queue of ScheduleJob requests (asyncio side) and its writers (Trio side)."""

    manager: Manager
    max_batch: int = DEFAULT_MAX_BATCH
    _queue: deque[_Request] = field(default_factory=deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ValueError("max_batch must be positive")

    # -- asyncio side ------------------------------------------------------------------------
    async def submit(self, kind: str, values: Sequence[Any], priority: int | None) -> Instance:
        """Schedule one instance of ``kind`` (arguments already coerced) in the next batch."""
        future: asyncio.Future[Instance] = asyncio.get_running_loop().create_future()
        self._queue.append(_Request(kind, values, priority, future))
        self._ready.set()
        return await future

    async def _settle_and_take(
        self, done: list[_Request], outcomes: list[_Outcome]
    ) -> list[_Request]:
        for request, outcome in zip(done, outcomes, strict=True):
            if request.future.done():  # the caller went away
                continue
            if outcome.error is not None:
                request.future.set_exception(outcome.error)
            else:
                assert outcome.instance is not None
                request.future.set_result(outcome.instance)
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        batch: list[_Request] = []
        while self._queue and len(batch) < self.max_batch:
            request = self._queue.popleft()
            if not request.future.done():
                batch.append(request)
        return batch

    # -- Trio side -----------------------------------------------------------------------------
    async def run_writer(
        self, bridge: Bridge, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Write batches until cancelled (requests of a batch cut by the cancel are ended
        by the server's shutdown, with ``UNAVAILABLE``)."""
        task_status.started()
        batch: list[_Request] = []
        outcomes: list[_Outcome] = []
        while True:
            batch = await bridge.run(self._settle_and_take, batch, outcomes)
            outcomes = await self._write(batch)

    async def _write(self, batch: list[_Request]) -> list[_Outcome]:
        groups: dict[tuple[str, int | None], list[int]] = {}
        for index, request in enumerate(batch):
            groups.setdefault((request.kind, request.priority), []).append(index)
        outcomes = [_Outcome() for _ in batch]
        for (kind, priority), indexes in groups.items():
            calls = [batch[i].values for i in indexes]
            try:
                added = await self.manager.schedule_many(kind, calls, priority=priority)
            except ArgumentError:
                # One bad request must not fail the others: write them one by one.
                for i in indexes:
                    outcomes[i] = await self._one(batch[i])
                continue
            except Exception as exc:
                # Not swallowed: every caller of this write gets it (and its status).
                for i in indexes:
                    outcomes[i].error = exc
                continue
            for i, inst in zip(indexes, added, strict=True):
                outcomes[i].instance = inst
        return outcomes

    async def _one(self, request: _Request) -> _Outcome:
        try:
            inst = await self.manager.schedule(
                request.kind, *request.values, priority=request.priority
            )
        except Exception as exc:  # handed to this request's caller
            return _Outcome(error=exc)
        return _Outcome(instance=inst)
