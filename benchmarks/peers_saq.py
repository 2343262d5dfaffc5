"""SAQ, driven the way its documentation shows, for ``benchmarks.redis``.

``python -m benchmarks.peers_saq URL process N``
``python -m benchmarks.peers_saq URL enqueue N``
``python -m benchmarks.peers_saq URL latency SAMPLES``

A ``saq.Queue`` on the Redis of URL (a queue name of its own for each measurement, its
keys deleted afterwards) and a ``saq.Worker`` with its defaults (``concurrency=10``,
like gojob's default pool); the stock asyncio loop. SAQ has no batch enqueue: a batch
is ``Queue.enqueue`` for every job, run concurrently (``asyncio.gather``), which SAQ
pipelines through its pool (at most ``max_concurrent_ops``, 20, at once).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from saq import Queue, Worker

from .peers_common import emit, timed
from .peers_redis import delete_tagged, new_tag


async def _enqueue(queue: Queue, n: int) -> None:
    await asyncio.gather(*(queue.enqueue("noop") for _ in range(n)))


async def process(url: str, tag: str, n: int) -> dict[str, Any]:
    queue = Queue.from_url(url, name=tag)
    await queue.connect()
    await _enqueue(queue, n)
    left = n
    done = asyncio.Event()

    async def noop(ctx: Any) -> None:
        nonlocal left
        left -= 1
        if left == 0:
            done.set()

    worker = Worker(queue, functions=[("noop", noop)])

    async def body() -> None:
        runner = asyncio.create_task(worker.start())
        await done.wait()
        await worker.stop()
        await runner

    try:
        return await timed(n, body)
    finally:
        await queue.disconnect()


async def enqueue(url: str, tag: str, n: int) -> dict[str, Any]:
    queue = Queue.from_url(url, name=tag)
    await queue.connect()
    await queue.enqueue("warm")  # scripts loaded, connections open: not measured
    try:
        return await timed(n, lambda: _enqueue(queue, n))
    finally:
        await queue.disconnect()


async def latency(url: str, tag: str, samples: int) -> dict[str, Any]:
    worker_queue = Queue.from_url(url, name=tag)
    producer = Queue.from_url(url, name=tag)
    await worker_queue.connect()
    await producer.connect()
    started: list[float] = []
    arrived = asyncio.Event()

    async def probe(ctx: Any) -> None:
        started.append(time.perf_counter())
        arrived.set()

    worker = Worker(worker_queue, functions=[("probe", probe)])
    runner = asyncio.create_task(worker.start())
    gaps: list[float] = []
    try:
        await asyncio.sleep(0.5)  # the worker is waiting and idle
        for _ in range(samples + 10):
            arrived.clear()
            await producer.enqueue("probe")
            t0 = time.perf_counter()
            await asyncio.wait_for(arrived.wait(), 10)
            gaps.append(started[-1] - t0)
            await asyncio.sleep(0.005)
    finally:
        await worker.stop()
        await runner
        await producer.disconnect()
        await worker_queue.disconnect()
    return {"gaps": gaps[10:]}


async def _run(url: str, op: str, count: int) -> dict[str, Any]:
    tag = new_tag("saq")
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
