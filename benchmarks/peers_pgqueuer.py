"""pgqueuer, driven the way its documentation shows, for ``benchmarks.postgres``.

``python -m benchmarks.peers_pgqueuer DSN install``
``python -m benchmarks.peers_pgqueuer DSN process N BATCH_SIZE`` (BATCH_SIZE 0: its default)
``python -m benchmarks.peers_pgqueuer DSN enqueue N``
``python -m benchmarks.peers_pgqueuer DSN latency SAMPLES``

One asyncpg connection for the ``QueueManager`` (it is also its LISTEN connection),
as in pgqueuer's examples; the stock asyncio loop.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import asyncpg
from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
from pgqueuer.core.qm import QueueManager
from pgqueuer.domain.models import Job
from pgqueuer.queries import Queries

from .peers_common import emit, timed, truncate_all


async def _queries(dsn: str) -> tuple[asyncpg.Connection, Queries]:
    conn = await asyncpg.connect(dsn)
    return conn, Queries(AsyncpgDriver(conn))


async def install(dsn: str) -> None:
    conn, queries = await _queries(dsn)
    try:
        if not await queries.schema_is_installed():
            await queries.install()
    finally:
        await conn.close()


async def enqueue_many(dsn: str, n: int) -> None:
    conn, queries = await _queries(dsn)
    try:
        await queries.enqueue(["noop"] * n, [None] * n, [0] * n)
    finally:
        await conn.close()


async def process(dsn: str, n: int, batch_size: int) -> dict[str, Any]:
    await enqueue_many(dsn, n)
    conn, queries = await _queries(dsn)
    qm = QueueManager(queries)
    left = n

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        nonlocal left
        left -= 1
        if left == 0:
            qm.shutdown.set()

    async def body() -> None:
        if batch_size:
            await qm.run(batch_size=batch_size)
        else:
            await qm.run()

    try:
        return await timed(n, body)
    finally:
        await conn.close()


async def enqueue(dsn: str, n: int) -> dict[str, Any]:
    conn, queries = await _queries(dsn)
    await queries.enqueue(["warm"], [None], [0])  # statement preparation, not measured
    try:
        return await timed(n, lambda: queries.enqueue(["noop"] * n, [None] * n, [0] * n))  # type: ignore[arg-type,return-value]
    finally:
        await conn.close()


async def latency(dsn: str, samples: int) -> dict[str, Any]:
    worker_conn, worker_queries = await _queries(dsn)
    producer_conn, producer = await _queries(dsn)
    qm = QueueManager(worker_queries)
    started: list[float] = []
    arrived = asyncio.Event()

    @qm.entrypoint("probe")
    async def probe(job: Job) -> None:
        started.append(time.perf_counter())
        arrived.set()

    gaps: list[float] = []
    runner = asyncio.create_task(qm.run())
    try:
        await asyncio.sleep(0.5)  # the worker is listening and idle
        for _ in range(samples + 10):
            arrived.clear()
            await producer.enqueue("probe", None)
            t0 = time.perf_counter()
            await asyncio.wait_for(arrived.wait(), 10)
            gaps.append(started[-1] - t0)
            await asyncio.sleep(0.005)
    finally:
        qm.shutdown.set()
        await runner
        await producer_conn.close()
        await worker_conn.close()
    return {"gaps": gaps[10:]}


def main() -> None:
    dsn, op, *args = sys.argv[1:]
    if op == "install":
        asyncio.run(install(dsn))
        return
    truncate_all(dsn)
    if op == "process":
        emit(asyncio.run(process(dsn, int(args[0]), int(args[1]))))
    elif op == "enqueue":
        emit(asyncio.run(enqueue(dsn, int(args[0]))))
    elif op == "latency":
        emit(asyncio.run(latency(dsn, int(args[0]))))
    else:
        raise SystemExit(f"unknown operation {op}")


if __name__ == "__main__":
    main()
