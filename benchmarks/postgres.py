"""The PostgreSQL store: processing of pre-enqueued no-op jobs by one manager process,
batch enqueue, and enqueue-to-start latency on an idle manager.

Every measurement runs on a fresh schema of its own (created, migrated, dropped), in
the database of ``--url`` (default ``GOJOB_POSTGRES_URL``, else the local server).

* **processing**: ``n`` no-op jobs already in the database when the manager starts,
  until the last one ran; with the default pool (10 workers: claims of 10) and with
  bigger batches (``prefetch``: claims of 100);
* **batch enqueue**: ``schedule_many`` of ``n`` jobs (one store write);
* **latency**: from ``schedule()`` returning to the executor's first line, 200 jobs one
  at a time on an idle manager (same process: the dispatcher is woken in-process).
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import psycopg
import trio

import gojob
from gojob.instance import Instance, new_uuid
from gojob.manager import DEFAULT_WORKERS
from gojob.store.sql import migrate
from gojob.store.sql.postgres import PostgresStore

from ._runner import Measurement, Result, measure, paired_rounds, percentile

__all__ = ["DEFAULT_URL", "run"]

DEFAULT_URL = os.environ.get("GOJOB_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"


def _sql(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement.encode())


def _create_schema(url: str) -> str:
    name = f"gojob_b_{uuid.uuid4().hex[:12]}"
    _sql(url, f"CREATE SCHEMA {name}")
    migrate.upgrade(url, schema=name)
    return name


@asynccontextmanager
async def fresh_store(url: str) -> AsyncIterator[PostgresStore]:
    name = await trio.to_thread.run_sync(_create_schema, url)
    try:
        async with PostgresStore(url, schema=name) as store:
            yield store
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_sql, url, f"DROP SCHEMA {name} CASCADE")


class _Counter:
    def __init__(self, n: int) -> None:
        self.left = n
        self.done = trio.Event()

    async def noop(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set()


def _instances(now: datetime, n: int) -> list[Instance]:
    return [Instance(new_uuid(), "noop", created_at=now, scheduled_at=now) for _ in range(n)]


async def processing(url: str, n: int, workers: int, prefetch: int) -> Measurement:
    """One manager process working through ``n`` pre-enqueued no-op jobs."""
    counter = _Counter(n)
    async with fresh_store(url) as store:
        await store.add(_instances(await store.now(), n))

        async def body() -> None:
            async with gojob.open_manager(
                store, workers=workers, prefetch=prefetch, capture_logging=False
            ) as manager:
                manager.register(gojob.Job("noop", counter.noop))
                await counter.done.wait()

        return await measure(n, body)


async def batch_enqueue(url: str, n: int) -> Measurement:
    """``schedule_many`` of ``n`` jobs: one store write."""
    async with (
        fresh_store(url) as store,
        gojob.open_manager(store, capture_logging=False) as manager,
    ):
        # Registered, but never due: only the enqueue is measured.
        manager.register(gojob.Job("noop", _Counter(n).noop))

        async def body() -> None:
            await manager.schedule_many("noop", [()] * n, after=3600)

        return await measure(n, body)


async def latency(url: str, samples: int) -> list[float]:
    """Seconds from `schedule` returning to the executor's first line, idle manager."""
    started: list[float] = []
    arrived = trio.Event()

    async def probe() -> None:
        started.append(time.perf_counter())
        arrived.set()

    gaps: list[float] = []
    async with (
        fresh_store(url) as store,
        gojob.open_manager(store, capture_logging=False) as manager,
    ):
        manager.register(gojob.Job("probe", probe))
        for _ in range(samples + 10):
            arrived = trio.Event()
            await manager.schedule("probe")
            t0 = time.perf_counter()
            await arrived.wait()
            gaps.append(started[-1] - t0)
            await trio.sleep(0.005)  # idle again between samples
    return gaps[10:]  # the first ones warm the connections and statement caches


def _report(title: str, results: dict[str, Result]) -> None:
    print(f"\n## {title}")
    print(f"{'contender':<56} {'median jobs/s':>14} {'CPU µs/job':>11}  runs")
    for name, res in results.items():
        runs = ", ".join(f"{m.rate:,.0f}" for m in res.runs)
        print(f"{name:<56} {res.median_rate:>14,.0f} {res.median_cpu:>11.1f}  [{runs}]")


async def run(n: int = 10_000, rounds: int = 3, url: str = DEFAULT_URL) -> None:
    workers = DEFAULT_WORKERS
    print(f"# PostgreSQL store, {n:,} no-op async jobs, {rounds} paired rounds")
    results = await paired_rounds(
        rounds,
        {
            f"processing, {workers} workers (claims of {workers})": lambda: processing(
                url, n, workers, 0
            ),
            f"processing, {workers} workers + prefetch 90 (claims of 100)": lambda: processing(
                url, n, workers, 90
            ),
            "processing, 100 workers (claims of 100)": lambda: processing(url, n, 100, 0),
        },
    )
    _report("processing pre-enqueued jobs, one manager process", results)
    enqueue = await paired_rounds(rounds, {"schedule_many": lambda: batch_enqueue(url, n)})
    _report(f"batch enqueue of {n:,} jobs", enqueue)
    gaps = await latency(url, 200)
    print("\n## enqueue-to-start latency, idle manager, 200 jobs")
    print(
        f"p50 {statistics.median(gaps) * 1e3:.3f} ms   p95 {percentile(gaps, 95) * 1e3:.3f} ms"
        f"   max {max(gaps) * 1e3:.3f} ms"
    )
