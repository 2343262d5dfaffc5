"""procrastinate, driven the way its documentation shows, for ``benchmarks.postgres``.

``python -m benchmarks.peers_procrastinate DSN install``
``python -m benchmarks.peers_procrastinate DSN process N``  (worker at its defaults)
``python -m benchmarks.peers_procrastinate DSN enqueue N``  (``batch_defer_async``)
``python -m benchmarks.peers_procrastinate DSN latency SAMPLES``

``PsycopgConnector`` (a psycopg pool) at its defaults; the stock asyncio loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any

import procrastinate

from .peers_common import emit, timed, truncate_all

logging.getLogger("procrastinate").setLevel(logging.WARNING)


def _app(dsn: str) -> procrastinate.App:
    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))


async def install(dsn: str) -> None:
    app = _app(dsn)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def process(dsn: str, n: int) -> dict[str, Any]:
    app = _app(dsn)

    @app.task(name="noop")
    async def noop() -> None:
        pass

    async with app.open_async():
        await noop.batch_defer_async(*({} for _ in range(n)))
        # wait=False: the worker stops once it has caught up with the queue.
        return await timed(n, lambda: app.run_worker_async(wait=False))


async def enqueue(dsn: str, n: int) -> dict[str, Any]:
    app = _app(dsn)

    @app.task(name="noop")
    async def noop() -> None:
        pass

    async with app.open_async():
        await noop.batch_defer_async({})  # warm the pool, not measured
        return await timed(n, lambda: noop.batch_defer_async(*({} for _ in range(n))))  # type: ignore[arg-type,return-value]


async def latency(dsn: str, samples: int) -> dict[str, Any]:
    app = _app(dsn)
    started: list[float] = []
    arrived = asyncio.Event()

    @app.task(name="probe")
    async def probe() -> None:
        started.append(time.perf_counter())
        arrived.set()

    gaps: list[float] = []
    async with app.open_async():
        worker = asyncio.create_task(app.run_worker_async(install_signal_handlers=False))
        try:
            await asyncio.sleep(0.5)  # the worker is listening and idle
            for _ in range(samples + 10):
                arrived.clear()
                await probe.defer_async()
                t0 = time.perf_counter()
                await asyncio.wait_for(arrived.wait(), 10)
                gaps.append(started[-1] - t0)
                await asyncio.sleep(0.005)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
    return {"gaps": gaps[10:]}


def main() -> None:
    dsn, op, *args = sys.argv[1:]
    if op == "install":
        asyncio.run(install(dsn))
        return
    truncate_all(dsn)
    if op == "process":
        emit(asyncio.run(process(dsn, int(args[0]))))
    elif op == "enqueue":
        emit(asyncio.run(enqueue(dsn, int(args[0]))))
    elif op == "latency":
        emit(asyncio.run(latency(dsn, int(args[0]))))
    else:
        raise SystemExit(f"unknown operation {op}")


if __name__ == "__main__":
    main()
