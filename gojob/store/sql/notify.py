"""Notifications of the SQLite store: in-process fan-out, plus a poll for other processes.

Events of this process's writes are delivered to every subscription right after the
transaction commits, in commit order. SQLite has no LISTEN/NOTIFY, so changes made
by *other* processes are noticed by polling: a subscription idle for
``poll_interval`` reads ``PRAGMA data_version`` on a connection of its own (it
changes whenever another connection commits) and, if the database changed since
it last looked, yields a ``RESYNC`` event: consumers then catch up by querying. So
changes made elsewhere are seen within about one poll interval, as one ``RESYNC``
rather than precise events; an idle database yields nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import trio

from ..base import Event, EventType, Subscription

__all__ = ["DataVersion", "Hub"]

_RESYNC = [Event(EventType.RESYNC)]


class DataVersion:
    """``PRAGMA data_version`` of a database file, read on a dedicated connection.

    The value changes whenever a connection other than this one commits (this
    process's pooled connections included, which costs at most one spare RESYNC).
    """

    def __init__(self, path: str, busy_timeout: float) -> None:
        self._conn = sqlite3.connect(
            path, timeout=busy_timeout, check_same_thread=False, isolation_level=None
        )

    def read(self) -> int:
        """Blocking: call from a worker thread (one at a time)."""
        row = self._conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def close(self) -> None:
        self._conn.close()


class Hub:
    """The subscriptions of one store, and the shared poll of ``data_version``."""

    def __init__(self, poll_interval: float, read_version: Callable[[], Awaitable[int]]) -> None:
        self.poll_interval = poll_interval
        self._read_version = read_version
        self._subscribers: list[_SqlSubscription] = []
        self._lock = trio.Lock()
        self._version: int | None = None
        self._read_at = -float("inf")

    def emit(self, events: list[Event]) -> None:
        """Deliver the events of a committed transaction to every subscription."""
        if events:
            for sub in self._subscribers:
                sub.push(events)

    async def version(self) -> int:
        """The database's data_version, read at most once per half poll interval."""
        async with self._lock:
            if self._version is None or trio.current_time() - self._read_at >= (
                self.poll_interval / 2
            ):
                self._version = await self._read_version()
                self._read_at = trio.current_time()
            return self._version

    def subscribe(self) -> AbstractAsyncContextManager[Subscription]:
        return _SubscriptionContext(self)


class _SqlSubscription(Subscription):
    def __init__(self, hub: Hub, seen: int) -> None:
        self._hub = hub
        self._seen = seen
        self.pending: list[Event] = []
        self.wakeup = trio.Event()

    def push(self, events: list[Event]) -> None:
        self.pending.extend(events)
        self.wakeup.set()

    async def __anext__(self) -> list[Event]:
        while not self.pending:
            with trio.move_on_after(self._hub.poll_interval):
                await self.wakeup.wait()
            if self.wakeup.is_set():
                self.wakeup = trio.Event()
                continue
            version = await self._hub.version()
            if version != self._seen and not self.pending:
                self._seen = version
                return list(_RESYNC)
        batch, self.pending = self.pending, []
        self.wakeup = trio.Event()
        return batch


class _SubscriptionContext:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._sub: _SqlSubscription | None = None

    async def __aenter__(self) -> Subscription:
        self._sub = _SqlSubscription(self._hub, await self._hub.version())
        self._hub._subscribers.append(self._sub)
        return self._sub

    async def __aexit__(self, *exc_info: object) -> None:
        if self._sub is not None:
            self._hub._subscribers.remove(self._sub)
