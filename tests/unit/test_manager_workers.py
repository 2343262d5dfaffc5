"""The worker pool under load: resize, statistics, and a poison job among good ones."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
from trio.testing import MockClock

import gojob
from gojob import Job, Manager, State


async def wait_for(check: Callable[[], Awaitable[bool] | bool], timeout: float = 60) -> None:
    """Wait (virtual time) until ``check()`` holds."""
    with trio.fail_after(timeout):
        while True:
            value = check()
            if value if isinstance(value, bool) else await value:
                return
            await trio.sleep(0.1)


class Load:
    """A slow job that tracks how many of its runs are active, and when each started."""

    def __init__(self, seconds: float = 10) -> None:
        self.seconds = seconds
        self.active = 0
        self.peak = 0
        self.starts: list[tuple[float, int]] = []  # (time, active after starting)

    async def job(self, n: int) -> int:
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.starts.append((trio.current_time(), self.active))
        try:
            await trio.sleep(self.seconds)
        finally:
            self.active -= 1
        return n


async def test_resize_under_load(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    load = Load()
    async with gojob.open_manager(store, workers=2, clock=clock, poll_interval=1) as manager:
        manager.register(Job("slow", load.job))
        insts = await manager.schedule_many("slow", [(n,) for n in range(50)])
        await wait_for(lambda: load.active == 2)
        stats = await manager.statistics()
        assert (stats.workers, stats.target_workers, stats.busy_workers) == (2, 2, 2)
        assert stats.by_kind["slow"][State.SCHEDULED] == stats.queued
        assert stats.queued + stats.by_state[State.PROCESSING] == 50

        await manager.resize(6)  # growing returns at once
        assert manager.workers == 6
        await wait_for(lambda: load.active == 6, timeout=1)
        assert load.peak == 6
        stats = await manager.statistics()
        assert (stats.workers, stats.target_workers, stats.busy_workers) == (6, 6, 6)
        assert stats.queued < 48

        requested = trio.current_time()
        await manager.resize(1)  # shrinking waits for the busy workers to finish
        waited = trio.current_time() - requested
        assert 0 < waited <= load.seconds + 0.5
        stats = await manager.statistics()
        assert (stats.workers, stats.target_workers) == (1, 1)
        assert stats.busy_workers <= 1
        # Once shrinking was asked for, no attempt started beyond the new size.
        assert all(active <= 1 for t, active in load.starts if t > requested)

        for inst in insts:
            assert (await manager.wait(inst, timeout=1000)).state is State.COMPLETED
        stats = await manager.statistics()
        assert stats.by_state[State.COMPLETED] == 50
        assert stats.queued == 0
        assert stats.busy_workers == 0
        history = await manager.history(kind="slow")
        assert not [r for r in history if r.details.get("reason") == "released"]


async def test_shrink_with_cancel_busy_releases_attempts(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    load = Load(seconds=100)
    async with gojob.open_manager(store, workers=4, clock=clock, poll_interval=1) as manager:
        manager.register(Job("slow", load.job))
        insts = await manager.schedule_many("slow", [(n,) for n in range(4)])
        await wait_for(lambda: load.active == 4)
        requested = trio.current_time()
        await manager.resize(1, cancel_busy=True)
        assert trio.current_time() - requested < 1  # did not wait for 100 s attempts
        assert (await manager.statistics()).workers == 1
        for inst in insts:
            assert (await manager.wait(inst, timeout=1000)).state is State.COMPLETED
        released = [
            r for r in await manager.history(kind="slow") if r.details.get("reason") == "released"
        ]
        assert len(released) == 3
        assert all(r.state is State.SCHEDULED for r in released)


async def test_grow_while_shrinking_ends_at_the_latest_size(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    load = Load(seconds=10)
    async with gojob.open_manager(store, workers=4, clock=clock, poll_interval=1) as manager:
        manager.register(Job("slow", load.job))
        insts = await manager.schedule_many("slow", [(n,) for n in range(4)])
        await wait_for(lambda: load.active == 4)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(manager.resize, 1)  # waits for three busy workers
            await wait_for(lambda: manager.workers == 1)
            await manager.resize(3)
        for inst in insts:
            await manager.wait(inst, timeout=100)
        assert manager.workers == 3
        stats = await manager.statistics()
        assert (stats.workers, stats.target_workers) == (3, 3)
        more = await manager.schedule_many("slow", [(n,) for n in range(6)])
        load.peak = 0
        for inst in more:
            await manager.wait(inst, timeout=100)
        assert load.peak == 3


async def test_resize_rejects_bad_sizes(manager: Manager, autojump_clock: MockClock) -> None:
    for bad in (0, -1):
        with pytest.raises(ValueError, match="positive"):
            await manager.resize(bad)
    assert manager.workers == 4
    assert (await manager.statistics()).workers == 4


async def test_poison_job_does_not_stop_other_work(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    async def poison() -> None:
        raise RuntimeError("poison")

    async def good(n: int) -> int:
        await trio.sleep(1)
        return n * n

    async with gojob.open_manager(store, workers=2, clock=clock, poll_interval=1) as manager:
        manager.register(Job("poison", poison, max_retries=2, backoff=0.5))
        manager.register(Job("good", good))
        before = [await manager.schedule("good", n) for n in range(10)]
        bad = await manager.schedule("poison")
        after = [await manager.schedule("good", n) for n in range(10, 20)]

        for n, inst in enumerate(before + after):
            done = await manager.wait(inst, timeout=100)
            assert done.state is State.COMPLETED
            assert done.result == n * n
        failed = await manager.wait(bad, timeout=100)
        assert failed.state is State.TERMINATED
        assert failed.attempts == 3
        assert (await manager.statistics()).workers == 2
