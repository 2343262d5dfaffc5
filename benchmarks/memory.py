"""The memory store in one process: throughput of no-op async jobs next to a bare Trio
baseline, and enqueue-to-start latency on an idle manager.

Baseline: a nursery of the same number of worker tasks reading a memory channel and
awaiting a no-op coroutine per item (the floor any Trio job runner stands on).
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, datetime

import trio

import gojob
from gojob.instance import Instance, new_uuid
from gojob.manager import DEFAULT_WORKERS

from ._runner import Measurement, measure, paired_rounds, percentile, report

__all__ = ["run"]


async def _noop() -> None:
    return None


async def bare_trio(n: int, workers: int) -> Measurement:
    send, receive = trio.open_memory_channel[int](workers)

    async def worker() -> None:
        async for _ in receive:
            await _noop()

    async def body() -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(workers):
                nursery.start_soon(worker)
            async with send:
                for i in range(n):
                    await send.send(i)

    return await measure(n, body)


class _Counter:
    def __init__(self, n: int) -> None:
        self.left = n
        self.done = trio.Event()

    async def noop(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set()


async def gojob_end_to_end(n: int, workers: int) -> Measurement:
    """schedule_many(n) then run them all: enqueue and processing together."""
    counter = _Counter(n)

    async def body() -> None:
        async with gojob.open_manager(workers=workers, capture_logging=False) as manager:
            manager.register(gojob.Job("noop", counter.noop))
            await manager.schedule_many("noop", [()] * n)
            await counter.done.wait()

    return await measure(n, body)


async def gojob_preenqueued(n: int, workers: int) -> Measurement:
    """Processing only: n instances already in the store when the manager starts."""
    counter = _Counter(n)
    store = gojob.MemoryStore()
    now = datetime.now(UTC)
    await store.add(
        [Instance(new_uuid(), "noop", created_at=now, scheduled_at=now) for _ in range(n)]
    )

    async def body() -> None:
        async with gojob.open_manager(store, workers=workers, capture_logging=False) as manager:
            manager.register(gojob.Job("noop", counter.noop))
            await counter.done.wait()

    return await measure(n, body)


async def latency(samples: int) -> list[float]:
    """Seconds from `schedule` returning to the executor's first line, idle manager."""
    started: list[float] = []
    arrived = trio.Event()

    async def probe() -> None:
        started.append(time.perf_counter())
        arrived.set()

    gaps: list[float] = []
    async with gojob.open_manager(capture_logging=False) as manager:
        manager.register(gojob.Job("probe", probe))
        for _ in range(samples):
            arrived = trio.Event()
            await manager.schedule("probe")
            t0 = time.perf_counter()
            await arrived.wait()
            gaps.append(started[-1] - t0)
            await trio.sleep(0.002)  # idle again between samples
    return gaps


async def run(n: int = 100_000, rounds: int = 5) -> None:
    workers = DEFAULT_WORKERS
    print(f"# memory store, {n:,} no-op async jobs, {workers} workers, {rounds} paired rounds")
    results = await paired_rounds(
        rounds,
        {
            "bare Trio (channel + workers)": lambda: bare_trio(n, workers),
            "gojob processing (pre-enqueued)": lambda: gojob_preenqueued(n, workers),
            "gojob end to end (schedule_many)": lambda: gojob_end_to_end(n, workers),
        },
    )
    report("throughput", results, "bare Trio (channel + workers)")
    gaps = await latency(200)
    print("\n## enqueue-to-start latency, idle manager, 200 jobs")
    print(
        f"p50 {statistics.median(gaps) * 1e3:.3f} ms   p95 {percentile(gaps, 95) * 1e3:.3f} ms"
        f"   max {max(gaps) * 1e3:.3f} ms"
    )
