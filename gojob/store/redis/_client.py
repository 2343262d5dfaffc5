"""The coredis client of a store: built from a URL, kept open in a system task.

Two workarounds for coredis 6.9 live here, each explained where it is:
:class:`ClientHost` (the client's task group outlives the caller's scopes) and
:func:`_closing_on_failure` (connections that fail to connect leak their buffers).
"""

from __future__ import annotations

import logging
from typing import Any

import coredis
import trio
from coredis.retry import NoRetryPolicy

__all__ = ["ClientHost", "make_client"]

log = logging.getLogger(__name__)

_subclasses: dict[type[Any], type[Any]] = {}


def _closing_on_failure(connection_class: type[Any]) -> type[Any]:
    """A subclass of a coredis connection class whose failed connection attempts close
    the memory streams the connection created (coredis leaves them open, and each one
    is reported as a ``ResourceWarning`` when it is collected, long after)."""
    found = _subclasses.get(connection_class)
    if found is not None:
        return found

    async def _connect(self: Any) -> Any:
        try:
            return await connection_class._connect(self)
        except BaseException:
            for name in (
                "_push_message_buffer_in",
                "_push_message_buffer_out",
                "_streamed_message_buffer_in",
                "_streamed_message_buffer_out",
                "_write_buffer_in",
                "_write_buffer_out",
            ):
                stream = getattr(self, name, None)
                if stream is not None:
                    stream.close()
            raise

    subclass = type(connection_class.__name__, (connection_class,), {"_connect": _connect})
    _subclasses[connection_class] = subclass
    return subclass


def make_client(url: str, connect_timeout: float, max_connections: int) -> coredis.Redis[Any]:
    """A client of ``url`` (not entered yet): decoded replies, no retries by the driver
    (scripts are not idempotent, a claim for one: callers retry)."""
    client: coredis.Redis[Any] = coredis.Redis.from_url(
        url,
        decode_responses=True,
        connect_timeout=connect_timeout,
        max_connections=max_connections,
        retry_policy=NoRetryPolicy(),
    )
    pool = client.connection_pool
    pool.connection_class = _closing_on_failure(pool.connection_class)
    return client


class ClientHost:
    """Keeps a coredis client entered for as long as the store is open.

    A coredis client runs its connections in a task group that must stay open while
    it is used. A store is entered by its callers in their own task, possibly inside a
    cancel scope that ends before the store is closed (``with trio.fail_after(...):
    await stack.enter_async_context(store)``), so the client cannot be entered there:
    it is entered in a Trio system task owned by the store, started by :meth:`open`
    and ended (and awaited) by :meth:`close`. Being a system task, it is not cancelled
    with the caller's scopes, only when the whole run ends.
    """

    def __init__(self) -> None:
        self._entered = trio.Event()
        self._release = trio.Event()
        self._done = trio.Event()
        self._error: BaseException | None = None

    async def open(self, client: coredis.Redis[Any]) -> None:
        trio.lowlevel.spawn_system_task(self._host, client, name="gojob-redis-client")
        await self._entered.wait()
        if self._error is not None:
            raise self._error

    async def close(self) -> None:
        self._release.set()
        await self._done.wait()

    async def _host(self, client: coredis.Redis[Any]) -> None:
        try:
            async with client:
                self._entered.set()
                await self._release.wait()
        except Exception as exc:  # reported to open(), or logged: a system task must not raise
            if self._entered.is_set():
                log.warning("the Redis client failed: %r", exc)
            self._error = exc
        finally:
            self._entered.set()
            self._done.set()
