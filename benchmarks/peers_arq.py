"""arq, driven the way its documentation shows, for ``benchmarks.redis``.

``python -m benchmarks.peers_arq URL process N``
``python -m benchmarks.peers_arq URL enqueue N``
``python -m benchmarks.peers_arq URL latency SAMPLES``

``arq.create_pool`` and an ``arq.Worker`` with its defaults (``max_jobs=10``, like
gojob's default pool; ``poll_delay=0.5`` s: arq polls its queue) but results not kept,
signals not handled, on a queue of its own per measurement; job ids carry the same tag,
so the keys of a measurement are deleted afterwards (arq's job keys are ``arq:...``,
shared by every queue). The stock asyncio loop. arq has no batch enqueue: a batch is
``enqueue_job`` for every job, run concurrently (``asyncio.gather``).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker, func

from .peers_common import emit, timed
from .peers_redis import delete_tagged, new_tag

_CHUNK = 1000


async def _enqueue(pool: ArqRedis, tag: str, n: int, start: int = 0) -> None:
    for first in range(start, start + n, _CHUNK):
        last = min(first + _CHUNK, start + n)
        await asyncio.gather(
            *(pool.enqueue_job("noop", _job_id=f"{tag}-{i}") for i in range(first, last))
        )


def _worker(url: str, tag: str, function: Any, name: str, *, burst: bool = False) -> Worker:
    return Worker(
        functions=[func(function, name=name)],
        redis_settings=RedisSettings.from_dsn(url),
        queue_name=tag,
        keep_result=0,
        handle_signals=False,
        burst=burst,
    )


async def process(url: str, tag: str, n: int) -> dict[str, Any]:
    pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=tag)
    await _enqueue(pool, tag, n)
    ran = 0

    async def noop(ctx: Any) -> None:
        nonlocal ran
        ran += 1

    # Burst mode: the worker returns once the queue is empty and its jobs are done.
    worker = _worker(url, tag, noop, "noop", burst=True)
    try:
        result = await timed(n, worker.main)
        assert ran == n, (ran, n)
        return result
    finally:
        await worker.close()
        await pool.aclose()


async def enqueue(url: str, tag: str, n: int) -> dict[str, Any]:
    pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=tag)
    await pool.enqueue_job("warm", _job_id=f"{tag}-warm")  # connections open: not measured
    try:
        return await timed(n, lambda: _enqueue(pool, tag, n))
    finally:
        await pool.aclose()


async def latency(url: str, tag: str, samples: int) -> dict[str, Any]:
    pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=tag)
    started: list[float] = []
    arrived = asyncio.Event()

    async def probe(ctx: Any) -> None:
        started.append(time.perf_counter())
        arrived.set()

    worker = _worker(url, tag, probe, "probe")
    runner = asyncio.create_task(worker.main())
    gaps: list[float] = []
    try:
        await asyncio.sleep(0.5)  # the worker is polling and idle
        for i in range(samples + 3):
            arrived.clear()
            await pool.enqueue_job("probe", _job_id=f"{tag}-{i}")
            t0 = time.perf_counter()
            await asyncio.wait_for(arrived.wait(), 10)
            gaps.append(started[-1] - t0)
            await asyncio.sleep(0.005)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await worker.close()
        await pool.aclose()
    return {"gaps": gaps[3:]}


async def _run(url: str, op: str, count: int) -> dict[str, Any]:
    tag = new_tag("arq")
    try:
        if op == "process":
            return await process(url, tag, count)
        if op == "enqueue":
            return await enqueue(url, tag, count)
        if op == "latency":
            return await latency(url, tag, count)
        raise SystemExit(f"unknown operation {op}")
    finally:
        await delete_tagged(url, tag)


def main() -> None:
    url, op, count = sys.argv[1:]
    emit(asyncio.run(_run(url, op, int(count))))


if __name__ == "__main__":
    main()
