"""Notifications of the PostgreSQL store: in-process fan-out plus LISTEN/NOTIFY.

Events of this store's own writes are delivered to its subscriptions right after the
transaction commits (:class:`Hub`), exactly and in order. Every write transaction
also NOTIFYs its events on the store's channel (see :mod:`.pg_events`), and each
subscription LISTENs on a dedicated connection outside the pool, so it receives the
events of every other store (other processes, other nodes) in commit order, skipping
its own store's (delivered already).

Lost notifications: when the LISTEN connection fails (database restart, network),
the subscription reconnects with a backoff, LISTENs again and yields ``RESYNC``, so
consumers catch up by querying. A slow poll is the safety net for a connection that
dies silently: after ``poll_interval`` without a notification the subscription
checks its connection with a query, and reconnects if that fails.
"""

from __future__ import annotations

from ... import _aio  # isort: skip  # before asyncpg: see gojob._aio

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncpg
import trio

from ...errors import StoreUnavailable
from ..base import Event, EventType, Subscription
from .pg_events import decode_payload

__all__ = ["Hub", "Listener"]

log = logging.getLogger(__name__)

_RESYNC = [Event(EventType.RESYNC)]
_LISTEN_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
    ConnectionError,
)


# -- asyncio side --------------------------------------------------------------------------------


class Listener:
    """A LISTENing connection and the payloads it received (asyncio side)."""

    def __init__(self, conn: asyncpg.Connection, queue: asyncio.Queue[str | None]) -> None:
        self.conn = conn
        self.queue = queue


async def listen(dsn: str, options: dict[str, Any], channel: str) -> Listener:
    """Connect and LISTEN on ``channel``."""
    conn = await asyncpg.connect(dsn, **options)
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
        queue.put_nowait(payload)

    def on_terminate(_conn: Any) -> None:
        queue.put_nowait(None)

    try:
        await conn.add_listener(channel, on_notify)
        conn.add_termination_listener(on_terminate)
    except BaseException:
        conn.terminate()
        raise
    return Listener(conn, queue)


async def next_payloads(listener: Listener, poll_interval: float) -> list[str]:
    """The payloads received, waiting up to ``poll_interval`` for one; after a quiet
    interval, check the connection (and return none). Raise ConnectionError when the
    connection is lost."""
    queue = listener.queue
    try:
        first = await asyncio.wait_for(queue.get(), poll_interval)
    except TimeoutError:
        await listener.conn.fetchval("SELECT 1", timeout=poll_interval)
        return []
    items = [first]
    while not queue.empty():
        items.append(queue.get_nowait())
    if None in items:
        raise ConnectionError("the LISTEN connection was lost")
    return [item for item in items if item is not None]


async def close(listener: Listener, timeout: float) -> None:
    try:
        await listener.conn.close(timeout=timeout)
    except _LISTEN_ERRORS:
        listener.conn.terminate()


# -- Trio side -----------------------------------------------------------------------------------


class _PgSubscription(Subscription):
    def __init__(self) -> None:
        self.pending: list[Event] = []
        self.wakeup = trio.Event()

    def push(self, events: list[Event]) -> None:
        self.pending.extend(events)
        self.wakeup.set()

    async def __anext__(self) -> list[Event]:
        while not self.pending:
            await self.wakeup.wait()
            self.wakeup = trio.Event()
        batch, self.pending = self.pending, []
        return batch


class Hub:
    """The subscriptions of one store: in-process delivery, and a LISTEN connection each."""

    def __init__(
        self,
        dsn: str,
        options: dict[str, Any],
        channel: str,
        origin: str,
        poll_interval: float,
        close_timeout: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.options = options
        self.channel = channel
        self.origin = origin
        self.poll_interval = poll_interval
        self.close_timeout = close_timeout
        self.bridge: _aio.Bridge | None = None
        self._subscribers: list[_PgSubscription] = []

    def emit(self, events: list[Event]) -> None:
        """Deliver the events of a committed transaction of this store."""
        if events:
            for sub in self._subscribers:
                sub.push(events)

    def subscribe(self) -> AbstractAsyncContextManager[Subscription]:
        return self._subscription()

    async def _listen(self) -> Listener:
        bridge = self.bridge
        if bridge is None:
            raise StoreUnavailable("the PostgreSQL store is not open: use `async with store:`")
        return await bridge.run(listen, self.dsn, self.options, self.channel)

    async def _close(self, listener: Listener) -> None:
        bridge = self.bridge
        with trio.CancelScope(shield=True):
            if bridge is None:
                listener.conn.terminate()
            else:
                await bridge.run(close, listener, self.close_timeout)

    @asynccontextmanager
    async def _subscription(self) -> AsyncIterator[Subscription]:
        try:
            listener = await self._listen()
        except _LISTEN_ERRORS as exc:
            raise StoreUnavailable(f"cannot LISTEN for notifications: {exc}") from exc
        sub = _PgSubscription()
        self._subscribers.append(sub)
        holder = [listener]
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, holder, sub)
                try:
                    yield sub
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            self._subscribers.remove(sub)
            for current in holder:
                await self._close(current)

    async def _pump(self, holder: list[Listener], sub: _PgSubscription) -> None:
        """Move notifications into ``sub``; reconnect (then RESYNC) when the connection fails."""
        backoff = 0.05
        while True:
            bridge = self.bridge
            if bridge is None:
                return
            try:
                if not holder:
                    holder.append(await self._listen())
                    log.info("LISTEN connection restored on %s", self.channel)
                    sub.push(list(_RESYNC))
                    backoff = 0.05
                payloads = await bridge.run(next_payloads, holder[0], self.poll_interval)
            except _LISTEN_ERRORS as exc:
                log.warning("LISTEN connection failed (retrying in %.2fs): %s", backoff, exc)
                if holder:
                    await self._close(holder.pop())
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self.poll_interval)
                continue
            events = [e for payload in payloads for e in decode_payload(payload, self.origin)]
            if events:
                sub.push(events)
