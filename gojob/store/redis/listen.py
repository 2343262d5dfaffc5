"""Notifications of the Redis store: in-process fan-out plus pub/sub.

Every writing script PUBLISHes its events on ``{prefix}:events`` as
``<origin>\\n<json>`` and also returns the JSON, so events of this store object's own
writes are delivered to its subscriptions right after the write (:meth:`Hub.emit`),
exactly and in order. Each subscription holds a pub/sub connection of its own and
receives the events of every other store object (other processes, other nodes),
skipping its own origin's.

Lost notifications: Redis drops pub/sub messages published while a subscriber is
disconnected. When the subscription's connection fails (a restart, the network), it
reconnects with a growing pause, subscribes again and yields a ``RESYNC`` event, so
consumers catch up by querying. A quiet connection is checked with a ``PING`` every
``poll_interval`` seconds (coredis' keepalive), so a connection that died silently
is noticed too.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Collection
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
import trio
from coredis.exceptions import RedisError
from coredis.retry import NoRetryPolicy

from ...errors import StoreUnavailable
from ...state import State
from ..base import Event, EventType, Subscription
from .rows import decode_events

__all__ = ["Hub"]

log = logging.getLogger(__name__)

_RESYNC = Event(EventType.RESYNC)
_ERRORS = (
    RedisError,
    OSError,
    TimeoutError,
    trio.TooSlowError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
)


def _connection_failure(exc: BaseException) -> bool:
    """True for a failed connection, possibly reported in (nested) exception groups by
    coredis' task groups; False for anything else (cancellation included)."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_connection_failure(e) for e in exc.exceptions)
    return isinstance(exc, _ERRORS)


def _leaf(exc: BaseException) -> BaseException:
    """The first exception inside (nested) exception groups: the one worth logging."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


class _RedisSubscription(Subscription):
    def __init__(self, states: frozenset[State] | None) -> None:
        self.states = states
        self.pending: list[Event] = []
        self.wakeup = trio.Event()

    def push(self, events: list[Event]) -> None:
        states = self.states
        if states is not None:
            events = [e for e in events if e.type is not EventType.STATE or e.state in states]
            if not events:
                return
        self.pending.extend(events)
        self.wakeup.set()

    async def __anext__(self) -> list[Event]:
        while not self.pending:
            await self.wakeup.wait()
            self.wakeup = trio.Event()
        batch, self.pending = self.pending, []
        return batch


class Hub:
    """The subscriptions of one store: in-process delivery, and a pub/sub connection each."""

    def __init__(
        self, channel: str, origin: str, connect_timeout: float, poll_interval: float
    ) -> None:
        self.channel = channel
        self.origin = origin
        self._own_prefix = origin + "\n"
        self.connect_timeout = connect_timeout
        self.poll_interval = poll_interval
        self._subscribers: list[_RedisSubscription] = []

    @property
    def listening(self) -> bool:
        return bool(self._subscribers)

    def emit(self, payload: str) -> None:
        """Deliver the events of a script of this store (its returned JSON)."""
        if payload and self._subscribers:
            events = decode_events(payload)
            for sub in self._subscribers:
                sub.push(events)

    def subscribe(
        self, client: Any, states: Collection[State] | None
    ) -> AbstractAsyncContextManager[Subscription]:
        return self._subscription(client, None if states is None else frozenset(states))

    @asynccontextmanager
    async def _subscription(
        self, client: Any, states: frozenset[State] | None
    ) -> AsyncIterator[Subscription]:
        sub = _RedisSubscription(states)
        failed: StoreUnavailable | None = None
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(self._pump, client, sub)
            except StoreUnavailable as exc:
                # Raised outside the nursery: not wrapped in an exception group.
                failed = exc
            else:
                self._subscribers.append(sub)
                try:
                    yield sub
                finally:
                    self._subscribers.remove(sub)
                    nursery.cancel_scope.cancel()
        if failed is not None:
            raise failed

    async def _pump(
        self,
        client: Any,
        sub: _RedisSubscription,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Move published events into ``sub``; reconnect (then RESYNC) when the
        connection fails. Raises StoreUnavailable only if the first subscribe fails."""
        started = False
        backoff = 0.05
        while True:
            try:
                with trio.fail_after(self.connect_timeout) as connecting:
                    pubsub = client.pubsub(
                        channels=[self.channel],
                        retry_policy=NoRetryPolicy(),
                        subscription_timeout=self.connect_timeout,
                        max_idle_seconds=self.poll_interval,
                    )
                    async with pubsub:
                        connecting.deadline = float("inf")
                        if started:
                            log.info("pub/sub connection restored on %s", self.channel)
                            sub.push([_RESYNC])
                        else:
                            started = True
                            task_status.started()
                        backoff = 0.05
                        await self._receive(pubsub, sub)
                log.warning("pub/sub connection on %s closed; reconnecting", self.channel)
            except BaseException as exc:
                if not _connection_failure(exc):
                    raise
                if not started:
                    raise StoreUnavailable(
                        f"cannot subscribe to {self.channel}: {_leaf(exc)!r}"
                    ) from exc
                log.warning(
                    "pub/sub connection failed (retrying in %.2fs): %r", backoff, _leaf(exc)
                )
            await trio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    async def _receive(self, pubsub: Any, sub: _RedisSubscription) -> None:
        own = self._own_prefix
        async for message in pubsub:
            if message["type"] != "message":
                continue  # the subscription's acknowledgement
            data = message["data"]
            if not isinstance(data, str) or data.startswith(own):
                continue
            _, _, payload = data.partition("\n")
            try:
                events = decode_events(payload)
            except (ValueError, TypeError, KeyError):
                events = [_RESYNC]  # not ours to read: catch up instead
            if events:
                sub.push(events)
