"""Claiming ahead of the workers (prefetch) while the store has a backlog: a batch of
fast jobs, never slow ones, which other nodes could run meanwhile."""

from __future__ import annotations

import trio
from trio.testing import MockClock

import gojob
from gojob import Job, State


async def peak_held(manager: gojob.Manager, samples: int, every: float) -> int:
    """The most attempts the node held claimed and undecided (running, or queued for a
    worker) at the samples. (Processing in the store also counts attempts that ended
    and await their batched acknowledgement.)"""
    peak = 0
    for _ in range(samples):
        await trio.sleep(every)
        peak = max(peak, manager._busy)
    return peak


async def test_slow_jobs_are_not_claimed_ahead(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    async def slow() -> None:
        await trio.sleep(1)

    async with gojob.open_manager(store, clock=clock, workers=2, prefetch=50, lease=30) as m:
        m.register(Job("slow", slow))
        await m.schedule_many("slow", [()] * 40)
        # 1 s jobs, 2 workers: 0.1 s of work ahead is no job at all.
        assert await peak_held(m, samples=20, every=0.5) == 2
        other = await m.instances(state=State.SCHEDULED)
        assert len(other) >= 16  # 10 s, 2 workers: ~20 done, 2 running, the rest queued


async def test_fast_jobs_are_claimed_ahead_in_batches(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    async def fast() -> None:
        await trio.sleep(0.001)

    async with gojob.open_manager(store, clock=clock, workers=2, prefetch=50, lease=30) as m:
        m.register(Job("fast", fast))
        batch = await m.schedule_many("fast", [()] * 400)
        # 1 ms jobs, 2 workers: 100 jobs' worth of 0.05 s, capped by the prefetch of 50.
        peak = await peak_held(m, samples=20, every=0.01)
        assert 2 < peak <= 52
        for inst in batch:
            assert (await m.wait(inst)).state is State.COMPLETED
