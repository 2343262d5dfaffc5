"""A pool of asyncpg connections kept on the Trio side of the bridge.

asyncpg's own pool costs several asyncio loop turns per acquire and release, which
through trio-asyncio are Trio scheduling steps (a few hundred microseconds per
transaction, measured): more than a small transaction itself. This pool keeps idle
connections in a list, bounds them with a ``trio.CapacityLimiter``, and hands one to
each unit of work, which then crosses the bridge once with it.

A connection comes back to the pool only if it is open, not inside a transaction
and its unit of work did not fail on the connection itself; any other (broken, or
left mid-transaction by an error) is closed.
"""

from __future__ import annotations

from ... import _aio  # isort: skip  # before asyncpg: see gojob._aio

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import trio

from . import pg_ops

__all__ = ["PgPool"]

_BROKEN = (
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    OSError,
    TimeoutError,
)
"""Failures after which a connection must not be reused, even if it looks open."""


class PgPool:
    """At most ``size`` connections to ``dsn``, opened on demand (``options`` are
    asyncpg's ``connect`` keywords)."""

    def __init__(
        self,
        bridge: _aio.Bridge,
        dsn: str,
        options: dict[str, Any],
        size: int,
        *,
        close_timeout: float = 5.0,
    ) -> None:
        self.bridge = bridge
        self.dsn = dsn
        self.options = options
        self.size = size
        self.close_timeout = close_timeout
        self._limiter = trio.CapacityLimiter(size)
        self._idle: list[asyncpg.Connection] = []
        self._closed = False

    async def connect(self) -> asyncpg.Connection:
        """A new connection outside the pool (the caller closes it: :meth:`discard`)."""
        return await self.bridge.run(pg_ops.connect, self.dsn, self.options)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """Borrow a connection for one unit of work."""
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        async with self._limiter:
            conn = None
            while self._idle and conn is None:
                conn = self._idle.pop()
                if conn.is_closed():  # the server went away meanwhile
                    conn = None
            if conn is None:
                conn = await self.connect()
            broken = False
            try:
                yield conn
            except _BROKEN:
                # The server went away mid-statement (a restart): asyncpg may not have
                # seen the connection close yet, and its protocol can be left waiting for
                # a reply that never comes ("another operation is in progress" on the
                # next use). Such a connection looks open and idle: never pool it again.
                broken = True
                raise
            finally:
                if broken:
                    conn.terminate()  # no goodbye on a broken protocol: drop the socket
                elif self._closed or conn.is_closed() or conn.is_in_transaction():
                    await self.discard(conn)
                else:
                    self._idle.append(conn)

    async def discard(self, conn: asyncpg.Connection) -> None:
        """Close a connection (shielded: runs even when the caller is cancelled)."""
        with trio.CancelScope(shield=True):
            if conn.is_closed():
                await trio.lowlevel.checkpoint()
            else:
                await self.bridge.run(pg_ops.close, conn, self.close_timeout)

    async def aclose(self) -> None:
        """Close the idle connections; the borrowed ones close when given back."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await self.discard(conn)

    def statistics(self) -> tuple[int, int]:
        """(borrowed, idle) connections."""
        return self._limiter.borrowed_tokens, len(self._idle)
