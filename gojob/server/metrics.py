"""Prometheus metrics: go-job's nine metrics on a registry of their own.

``Metrics`` owns a ``CollectorRegistry`` exposing exactly:

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
==============================  =========  ===========================================

Counters are per node: sum them across nodes. No ``_created`` series is exposed: the
metrics live on a private registry, and the exposed one holds a collector that drops
those samples (``prometheus_client.disable_created_metrics()`` would do it for the
whole process, including registries that are not gojob's).

Attach a ``Metrics`` with ``open_manager(..., metrics=Metrics())``; serve it with
:func:`serve_metrics`, which also runs the ``go_job_queued`` refresher. Metrics are
updated from the Trio thread and read by ``prometheus_client``'s HTTP thread (its
metrics are thread-safe); the scrape thread never touches the store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from functools import partial
from typing import TYPE_CHECKING

import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from ..errors import StoreError
from ..state import State

if TYPE_CHECKING:
    from .._runtime import Runtime
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


class _WithoutCreated(Collector):
    """Exposes another registry's families without their ``_created`` samples."""

    def __init__(self, inner: CollectorRegistry) -> None:
        self._inner = inner

    def collect(self) -> Iterable[Metric]:
        for family in self._inner.collect():
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            kept.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield kept


class _KindMetrics:
    """The labelled children of one kind (``labels()`` costs a lock and a lookup)."""

    __slots__ = ("abandoned", "duration", "executed", "states")

    def __init__(self, metrics: Metrics, kind: str) -> None:
        self.executed = metrics._executed.labels(kind)
        self.states = (
            metrics._completed.labels(kind),
            metrics._terminated.labels(kind),
            metrics._canceled.labels(kind),
            metrics._timedout.labels(kind),
        )
        self.duration = metrics._duration.labels(kind)
        self.abandoned = metrics._abandoned.labels(kind)


class Metrics:
    """go-job's metrics for one node (see the module docstring).

    ``registry`` is what to expose; ``store`` is where ``go_job_queued`` is counted (set
    by ``open_manager`` when not given); ``queued_interval`` is the refresher's period.
    """

    def __init__(
        self, *, store: Store | None = None, queued_interval: float = DEFAULT_QUEUED_INTERVAL
    ) -> None:
        if not queued_interval > 0:
            raise ValueError(f"queued_interval must be positive, got {queued_interval!r}")
        self.store = store
        self.queued_interval = queued_interval
        inner = CollectorRegistry(auto_describe=True)
        self._registered = Gauge("go_job_registered", "Number of registered jobs", registry=inner)
        self._workers = Gauge("go_job_workers", "Number of workers", registry=inner)
        self._queued = Gauge(
            "go_job_queued", "Number of queued (Scheduled) jobs by kind", ["kind"], registry=inner
        )
        self._executed = Counter(
            "go_job_executed", "Number of job attempts executed", ["kind"], registry=inner
        )
        self._completed = Counter(
            "go_job_completed", "Number of jobs completed", ["kind"], registry=inner
        )
        self._terminated = Counter(
            "go_job_terminated", "Number of jobs terminated", ["kind"], registry=inner
        )
        self._canceled = Counter(
            "go_job_canceled", "Number of jobs canceled", ["kind"], registry=inner
        )
        self._timedout = Counter(
            "go_job_timedout", "Number of jobs timed out", ["kind"], registry=inner
        )
        self._duration = Histogram(
            "go_job_duration_seconds", "Duration of job attempts by kind", ["kind"], registry=inner
        )
        self._abandoned = Counter(
            "gojob_abandoned",
            "Attempts abandoned by a dead node and reaped by this one",
            ["kind"],
            registry=inner,
        )
        self._kinds: dict[str, _KindMetrics] = {}
        self._queued_kinds: set[str] = set()
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_WithoutCreated(inner))

    def _kind(self, kind: str) -> _KindMetrics:
        found = self._kinds.get(kind)
        if found is None:
            found = self._kinds[kind] = _KindMetrics(self, kind)
        return found

    # -- hooks called by the manager ----------------------------------------------------------
    def attach(self, runtime: Runtime) -> None:
        """Called by ``open_manager``: count on its store, take its gauges' values."""
        if self.store is None:
            self.store = runtime.store
        self.set_registered(len(runtime.registry.kinds()))
        self.set_workers(runtime._pool.target)

    def set_registered(self, count: int) -> None:
        self._registered.set(count)

    def set_workers(self, count: int) -> None:
        self._workers.set(count)

    def attempt_started(self, kind: str) -> float:
        """An attempt starts: returns its start time, for :meth:`attempt_finished`."""
        self._kind(kind).executed.inc()
        return time.perf_counter()

    def attempt_finished(self, kind: str, state: State | None, started: float | None) -> None:
        """An attempt's outcome is decided: ``state`` is the outcome's (None when its lease
        was lost), ``started`` is None if it never started."""
        children = self._kind(kind)
        index = _STATE_COUNTERS.get(state) if state is not None else None
        if index is not None:
            children.states[index].inc()
        if started is not None:
            children.duration.observe(time.perf_counter() - started)

    def canceled(self, kind: str) -> None:
        """A queued instance was canceled by this node."""
        self._kind(kind).states[2].inc()

    def abandoned(self, kind: str) -> None:
        self._kind(kind).abandoned.inc()

    # -- the queued gauge ---------------------------------------------------------------------
    async def refresh_queued(self) -> None:
        """Set ``go_job_queued`` from the store's counts (kinds no longer queued drop to 0)."""
        if self.store is None:
            return
        counts = await self.store.counts()
        queued: dict[str, int] = {}
        for (kind, state), count in counts.items():
            if state is State.SCHEDULED:
                queued[kind] = queued.get(kind, 0) + max(count, 0)
        for kind in self._queued_kinds - queued.keys():
            self._queued.labels(kind).set(0)
        for kind, count in queued.items():
            self._queued.labels(kind).set(count)
        self._queued_kinds |= queued.keys()

    async def run_queued_refresher(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Refresh ``go_job_queued`` now, then every ``queued_interval`` seconds."""
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
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``metrics.registry`` over HTTP (``prometheus_client.start_http_server``, in
    its own thread) on ``host:port`` and refresh the queued gauge until cancelled.
    ``task_status.started`` reports the bound port (useful with ``port=0``)."""
    if not 0 <= port <= 65535:
        raise ValueError(f"invalid metrics port {port!r}")
    server, thread = await trio.to_thread.run_sync(
        partial(start_http_server, port, addr=host, registry=metrics.registry)
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(metrics.run_queued_refresher)
            task_status.started(server.server_port)
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(server.shutdown)
            server.server_close()
            await trio.to_thread.run_sync(thread.join)
