"""A node's announcement of itself in the store's node registry.

While a manager runs, :class:`Heartbeat` keeps its :class:`~gojob.store.base.NodeRecord`
alive in the store: every ``interval`` seconds, and at once when what it announces
changes (a job registered or unregistered, the pool resized). The record expires
``ttl`` seconds after the last announcement, so a node killed without a goodbye drops
out of ``store.nodes()`` by itself; a clean shutdown removes it at once.

Other nodes read the registry to tell which kinds some live node can run (instances of
the others wait for nobody: ``Manager.unserved_kinds``), and operators to list nodes.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime

import trio

from .errors import StoreError
from .store.base import NodeRecord, Store

__all__ = ["Heartbeat"]

log = logging.getLogger("gojob.heartbeat")

REMOVE_TIMEOUT = 5.0
"""Seconds a goodbye may take at shutdown before it is given up (the record expires)."""


class Heartbeat:
    """Announces one node: ``describe()`` gives the kinds and workers to announce now."""

    def __init__(
        self,
        store: Store,
        node_id: str,
        describe: Callable[[], tuple[list[str], int]],
        *,
        interval: float,
        ttl: float,
        started_at: datetime,
        version: str,
    ) -> None:
        self.store = store
        self.node_id = node_id
        self._describe = describe
        self.interval = interval
        self.ttl = ttl
        self._started_at = started_at
        self._version = version
        self._changed = trio.Event()

    def changed(self) -> None:
        """What the node announces changed: announce it now rather than at the next beat."""
        self._changed.set()

    def record(self) -> NodeRecord:
        kinds, workers = self._describe()
        return NodeRecord(
            self.node_id,
            kinds=sorted(kinds),
            workers=workers,
            host=socket.gethostname(),
            pid=os.getpid(),
            version=self._version,
            started_at=self._started_at,
        )

    async def beat(self) -> None:
        """One announcement; a store error is logged (the next beat tries again)."""
        try:
            await self.store.heartbeat(self.record(), self.ttl)
        except StoreError as exc:
            log.warning("node heartbeat failed: %s", exc)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Announce now, report started, then announce every ``interval`` or on change,
        until cancelled."""
        await self.beat()
        task_status.started()
        while True:
            with trio.move_on_after(self.interval):
                await self._changed.wait()
            self._changed = trio.Event()
            await self.beat()

    async def remove(self) -> None:
        """Say goodbye (shielded, bounded): the node leaves the registry at once."""
        with trio.CancelScope(shield=True), trio.move_on_after(REMOVE_TIMEOUT):
            try:
                await self.store.remove_node(self.node_id)
            except StoreError as exc:
                log.warning("node removal failed (its record will expire): %s", exc)
