"""Notifications of the etcd store: a watch on its events key.

Every write transaction that emits events also puts them, as one JSON list, on the
events key (``<prefix>ev``): etcd's watch delivers every revision of that key in
commit order, so a subscriber sees each transaction's events once and in order, and
only one key is ever written for them (compaction drops the old revisions).

A subscription delivers the events of the revisions after the one current when it was
entered. Its watch runs in a task of its own (in the subscription's nursery), started
by the first read. A dropped connection is resumed from the first revision not
delivered, so nothing is lost; if that revision has been compacted away meanwhile (etcd
then cancels the watch), the subscription emits ``RESYNC`` and goes on from the current
revision: consumers catch up by querying. When etcd stays unreachable for the client's
``retry_for``, the next read raises StoreUnavailable.
"""

from __future__ import annotations

import base64
import json
import logging
import math
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import httpx
import trio

from ...errors import StoreError, StoreUnavailable
from ...state import State
from ..base import Event, EventType, Subscription
from .client import EtcdClient, b64
from .codec import decode_events

__all__ = ["EtcdSubscription", "current_revision", "open_subscription"]

log = logging.getLogger("gojob.store.etcd")


async def current_revision(client: EtcdClient, key: str) -> int:
    """The store's revision now (a cheap count-only read of ``key``)."""
    data = await client.call("/v3/kv/range", {"key": b64(key), "count_only": True})
    return int((data.get("header") or {}).get("revision", 0))


class _Resync(Exception):
    """The watch was canceled: its next revision is compacted (or the server dropped it)."""


class EtcdSubscription(Subscription):
    """Batches of events from the watched events key (see the module docstring)."""

    def __init__(
        self,
        client: EtcdClient,
        key: str,
        states: frozenset[State] | None,
        nursery: trio.Nursery,
        start: int,
    ) -> None:
        self._client = client
        self._key = key
        self._states = states
        self._nursery = nursery
        self._next = start
        """The first revision not delivered yet."""
        self._send, self._receive = trio.open_memory_channel[list[Event] | StoreError](math.inf)
        self._started = False

    async def __anext__(self) -> list[Event]:
        if not self._started:
            self._started = True
            self._nursery.start_soon(self._pump)
        item = await self._receive.receive()
        if isinstance(item, StoreError):
            raise item
        return item

    async def _pump(self) -> None:
        """Follow the watch, reconnecting and resynchronising, until cancelled."""
        delay = 0.05
        failing_since: float | None = None
        while True:
            try:
                await self._follow()
                failing_since = None  # the stream ended cleanly: reconnect at once
                continue
            except _Resync:
                failing_since = None
                try:
                    self._next = await current_revision(self._client, self._key) + 1
                except StoreError as exc:
                    self._send.send_nowait(exc)
                    return
                self._send.send_nowait([Event(EventType.RESYNC)])
                continue
            except (StoreError, ValueError, httpx.TransportError, httpx.StreamError) as exc:
                now = trio.current_time()
                if failing_since is None:
                    failing_since = now
                    delay = 0.05
                    log.info("etcd watch interrupted (%r); resuming at %d", exc, self._next)
                elif now - failing_since > self._client.retry_for:
                    error = exc if isinstance(exc, StoreError) else StoreUnavailable(repr(exc))
                    self._send.send_nowait(error)
                    return
            await trio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def _follow(self) -> None:
        """One watch connection: deliver its batches until it ends or fails."""
        stop: Exception | None = None
        with trio.CancelScope() as scope:
            async with self._client.watch(self._key, self._next) as lines:
                async for line in lines:
                    if stop is not None or not line.strip():
                        continue
                    try:
                        batch = self._parse(json.loads(line))
                    except (_Resync, StoreError, ValueError) as exc:
                        # Stop reading by cancellation, which unwinds httpx's line
                        # iterators (leaving the loop would leave them suspended for the
                        # garbage collector); lines already buffered are skipped.
                        stop = exc
                        scope.cancel()
                        continue
                    if batch:
                        self._send.send_nowait(batch)
        if stop is not None:
            raise stop

    def _parse(self, data: dict[str, Any]) -> list[Event]:
        result = data.get("result")
        if result is None:
            raise StoreError(f"etcd watch: {data.get('error') or data}")
        if result.get("canceled") or result.get("compact_revision"):
            log.warning(
                "etcd watch canceled at revision %d (compacted up to %s): resync",
                self._next,
                result.get("compact_revision"),
            )
            raise _Resync
        batch: list[Event] = []
        states = self._states
        for change in result.get("events", ()):
            kv = change.get("kv") or {}
            self._next = max(self._next, int(kv.get("mod_revision", 0)) + 1)
            if change.get("type") == "DELETE" or not kv.get("value"):
                continue
            for event in decode_events(base64.b64decode(kv["value"]).decode()):
                if (
                    states is not None
                    and event.type is EventType.STATE
                    and event.state not in states
                ):
                    continue
                batch.append(event)
        return batch


class open_subscription:  # noqa: N801 (an async context manager, named as a function)
    """``async with open_subscription(...) as sub``: the nursery of its watch task."""

    def __init__(self, client: EtcdClient, key: str, states: frozenset[State] | None) -> None:
        self._client = client
        self._key = key
        self._states = states
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Subscription:
        start = await current_revision(self._client, self._key) + 1
        nursery = await self._stack.enter_async_context(trio.open_nursery())
        self._stack.callback(nursery.cancel_scope.cancel)
        return EtcdSubscription(self._client, self._key, self._states, nursery, start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        return await self._stack.__aexit__(exc_type, exc, tb)
