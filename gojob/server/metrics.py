"""Prometheus metrics: go-job's nine metrics on a registry of their own.

``Metrics`` exposes exactly:

==============================  =========  ===========================================
``go_job_registered``           gauge      jobs registered on this node
``go_job_workers``              gauge      this node's target worker count
``go_job_queued{kind}``         gauge      the store's global count of Scheduled
                                           instances per kind (every node sees the
                                           same: take the max), refreshed by a Trio task
``go_job_executed_total``       counter    attempts started on this node, per kind
``go_job_completed_total``      counter    attempts that ended in that state on this
``go_job_terminated_total``                node, per kind (a failed attempt that is
``go_job_canceled_total``                  retried still counts: the history records
``go_job_timedout_total``                  it); cancels of queued instances made by
                                           this node count as canceled
``go_job_duration_seconds``     histogram  duration of each attempt, per kind
``gojob_abandoned_total``       counter    attempts of dead nodes this node reaped
``gojob_unserved_instances``    gauge      queued (Created or Scheduled) instances of
``{kind}``                                 kinds that no live node registers: they wait
                                           for nobody (refreshed with ``go_job_queued``;
                                           a warning is logged when a kind starts
                                           waiting)
==============================  =========  ===========================================

Counters are per node: sum them across nodes. No ``_created`` series is exposed. The
values are plain Python state (:mod:`gojob.server._families`), updated on the Trio
thread without locks and written as text there, by the endpoint's own Trio tasks (a few
milliseconds for 100 kinds); ``Metrics.registry`` offers them to ``prometheus_client``
too.

Attach a ``Metrics`` with ``open_manager(..., metrics=Metrics())``; serve it with
:func:`serve_metrics`, which also runs the ``go_job_queued`` refresher (a scrape never
touches the store).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING

import trio
from prometheus_client import CollectorRegistry

from ..errors import StoreError
from ..state import State
from ._exposition import DEFAULT_MAX_AGE, serve_exposition
from ._families import Families, FamiliesCollector, render

if TYPE_CHECKING:
    from .._runtime import Runtime
    from ..manager import Manager
    from ..store.base import Store

__all__ = ["DEFAULT_METRICS_PORT", "Metrics", "serve_metrics"]

log = logging.getLogger("gojob.metrics")

DEFAULT_METRICS_PORT = 9181
DEFAULT_QUEUED_INTERVAL = 5.0

_STATE_COUNTERS = {
    State.COMPLETED: 0,
    State.TERMINATED: 1,
    State.CANCELED: 2,
    State.TIMEDOUT: 3,
}


class Metrics:
    """go-job's metrics for one node (see the module docstring).

    ``registry`` is a ``prometheus_client`` registry of these metrics alone, for an
    application that serves them itself; :func:`serve_metrics` writes the same text
    faster from the state directly. ``store`` is where ``go_job_queued`` is counted (set
    by ``open_manager`` when not given); ``queued_interval`` is the refresher's period.
    """

    def __init__(
        self, *, store: Store | None = None, queued_interval: float = DEFAULT_QUEUED_INTERVAL
    ) -> None:
        if not queued_interval > 0:
            raise ValueError(f"queued_interval must be positive, got {queued_interval!r}")
        self.store = store
        self.queued_interval = queued_interval
        self.families = Families()
        self._manager: Manager | None = None
        self._unserved_kinds: set[str] = set()
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(FamiliesCollector(self.families))

    def render(self) -> bytes:
        """The text exposition (Prometheus format 0.0.4); call it on the Trio thread."""
        return render(self.families)

    # -- hooks called by the manager ----------------------------------------------------------
    def attach(self, runtime: Runtime) -> None:
        """Called by ``open_manager``: count on its store, take its gauges' values."""
        from ..manager import Manager  # the manager imports this module's type only

        if self.store is None:
            self.store = runtime.store
        if isinstance(runtime, Manager):
            self._manager = runtime
        self.set_registered(len(runtime.registry.kinds()))
        self.set_workers(runtime._pool.target)

    def set_registered(self, count: int) -> None:
        self.families.registered = count

    def set_workers(self, count: int) -> None:
        self.families.workers = count

    def attempt_started(self, kind: str) -> float:
        """An attempt starts: returns its start time, for :meth:`attempt_finished`."""
        self.families.kind(kind).executed += 1
        return time.perf_counter()

    def attempt_finished(self, kind: str, state: State | None, started: float | None) -> None:
        """An attempt's outcome is decided: ``state`` is the outcome's (None when its lease
        was lost), ``started`` is None if it never started."""
        counts = self.families.kind(kind)
        index = _STATE_COUNTERS.get(state) if state is not None else None
        if index is not None:
            counts.states[index] += 1
        if started is not None:
            counts.observe(time.perf_counter() - started)

    def canceled(self, kind: str) -> None:
        """A queued instance was canceled by this node."""
        self.families.kind(kind).states[2] += 1

    def abandoned(self, kind: str) -> None:
        self.families.kind(kind).abandoned += 1

    # -- the queued gauge ---------------------------------------------------------------------
    async def refresh_queued(self) -> None:
        """Set ``go_job_queued`` and ``gojob_unserved_instances`` from one read of the
        store's counts (kinds no longer queued drop to 0)."""
        if self.store is None:
            return
        counts = await self.store.counts()
        await self._refresh_unserved(counts)
        queued: dict[str, int] = {}
        for (kind, state), count in counts.items():
            if state is State.SCHEDULED:
                queued[kind] = queued.get(kind, 0) + max(count, 0)
        # Kinds no longer queued stay, at 0 (a series that vanishes reads as stale).
        self.families.queued = dict.fromkeys(self.families.queued, 0) | queued

    async def _refresh_unserved(self, counts: Mapping[tuple[str, State], int]) -> None:
        """Set ``gojob_unserved_instances`` from the attached manager's
        ``unserved_kinds()``; log when a kind starts (or stops) waiting for nobody."""
        if self._manager is None:
            return
        unserved = await self._manager.unserved_kinds(counts)
        for kind in sorted(unserved.keys() - self._unserved_kinds):
            log.warning(
                "%d instance(s) of kind %r are queued but no live node registers that kind: "
                "they wait until a node running it starts",
                unserved[kind],
                kind,
            )
        for kind in sorted(self._unserved_kinds - unserved.keys()):
            log.info("kind %r is served again (or no longer queued)", kind)
        self._unserved_kinds = set(unserved)
        self.families.unserved = dict.fromkeys(self.families.unserved, 0) | unserved

    async def run_queued_refresher(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Refresh ``go_job_queued`` and ``gojob_unserved_instances`` now, then every
        ``queued_interval`` seconds."""
        started = False
        while True:
            try:
                await self.refresh_queued()
            except StoreError as exc:
                log.warning("could not refresh go_job_queued: %s", exc)
            if not started:
                task_status.started()
                started = True
            await trio.sleep(self.queued_interval)


async def serve_metrics(
    metrics: Metrics,
    host: str = "127.0.0.1",
    port: int = DEFAULT_METRICS_PORT,
    *,
    max_age: float = DEFAULT_MAX_AGE,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the metrics over HTTP on ``host:port`` (``/metrics``; Trio tasks, the text
    rendered on the loop and reused for ``max_age`` seconds: see
    :mod:`gojob.server._exposition`) and refresh the queued gauges until cancelled.
    ``task_status.started`` reports the bound port (useful with ``port=0``)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"invalid metrics port {port!r}")
    if max_age < 0:
        raise ValueError(f"max_age must not be negative, got {max_age!r}")
    async with trio.open_nursery() as nursery:
        await nursery.start(metrics.run_queued_refresher)
        bound: int = await nursery.start(
            partial(serve_exposition, metrics.render, host, port, max_age=max_age)
        )
        task_status.started(bound)
