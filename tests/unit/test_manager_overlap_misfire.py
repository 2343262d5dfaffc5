"""Overlap policies (a slot due while the previous instance runs) and misfire policies
(slots missed while no manager was running), through the manager on virtual time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest
import trio
from trio.testing import MockClock

import gojob
from gojob import Job, Misfire, Overlap, State


def utc(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2025, 1, 1, hour, minute, second, tzinfo=UTC)


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float = 60) -> None:
    """Wait (virtual time) until ``check()`` holds."""
    with trio.fail_after(timeout):
        while True:
            if await check():
                return
            await trio.sleep(0.5)


class Runs:
    """Records each run's start and end (virtual seconds) and the peak concurrency."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self.active = 0
        self.peak = 0

    async def job(self, inst: gojob.Instance) -> None:
        self.active += 1
        self.peak = max(self.peak, self.active)
        start = trio.current_time()
        try:
            await trio.sleep(25.5)  # longer than two 10 s slots
        finally:
            self.active -= 1
        self.spans.append((start, trio.current_time()))


async def run_overlap(
    store: gojob.MemoryStore, clock: gojob.Clock, overlap: Overlap
) -> tuple[Runs, gojob.ScheduleRecord, list[gojob.Instance]]:
    runs = Runs()
    async with gojob.open_manager(
        store, workers=4, clock=clock, poll_interval=1, drain_grace=0
    ) as manager:
        origin = trio.current_time()
        manager.register(Job("long", runs.job))
        record = await manager.schedule("long", every=10, overlap=overlap)
        await trio.sleep(65)
        runs.spans = [(a - origin, b - origin) for a, b in runs.spans]
        found = await manager.instances(schedule_id=record.id, order_by="scheduled_at")
        return runs, await manager.get_schedule(record.id), found


async def test_overlap_allow_runs_concurrently(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    runs, record, found = await run_overlap(store, clock, Overlap.ALLOW)
    assert [i.fire_time for i in found] == [utc(0, 0, s) for s in range(0, 60, 10)] + [utc(0, 1)]
    assert runs.peak == 3
    assert record.skipped_count == 0


async def test_overlap_skip_records_the_skipped_slots(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    runs, record, found = await run_overlap(store, clock, Overlap.SKIP)
    assert [i.fire_time for i in found] == [utc(0, 0, 0), utc(0, 0, 30), utc(0, 1, 0)]
    assert runs.peak == 1
    assert record.skipped_count == 4
    assert record.recent_skips == [
        (utc(0, 0, 10), "overlap"),
        (utc(0, 0, 20), "overlap"),
        (utc(0, 0, 40), "overlap"),
        (utc(0, 0, 50), "overlap"),
    ]


async def test_overlap_wait_starts_when_the_previous_run_ends(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    runs, record, found = await run_overlap(store, clock, Overlap.WAIT)
    assert runs.peak == 1
    assert len(found) == 3  # started at 0, 25.5 and 51
    assert len(runs.spans) == 2
    (_, end0), (start1, _end1) = runs.spans
    assert start1 - end0 < 0.5  # the waiting slot started as soon as the previous ended
    assert found[2].processed_at is not None
    assert found[1].completed_at is not None
    assert (found[2].processed_at - found[1].completed_at).total_seconds() < 0.5
    assert all(reason in ("overlap", "misfire") for _, reason in record.recent_skips)
    assert record.skipped_count == len(record.recent_skips) > 0


@pytest.mark.parametrize(
    ("misfire", "fired", "skipped"),
    [
        (Misfire.CATCH_UP_ONCE, [utc(1, 0)], [utc(0, m) for m in (10, 20, 30, 40, 50)]),
        (
            Misfire.CATCH_UP_ALL,
            [utc(0, 40), utc(0, 50), utc(1, 0)],
            [utc(0, m) for m in (10, 20, 30)],
        ),
        (Misfire.SKIP, [], [utc(0, m) for m in (10, 20, 30, 40, 50)] + [utc(1, 0)]),
    ],
)
@pytest.mark.parametrize("redeclare", [True, False])
async def test_misfire_after_downtime(
    store: gojob.MemoryStore,
    clock: gojob.Clock,
    autojump_clock: MockClock,
    misfire: Misfire,
    fired: list[datetime],
    skipped: list[datetime],
    redeclare: bool,
) -> None:
    job = Job("report", noop)

    async def declare(manager: gojob.Manager) -> gojob.ScheduleRecord:
        return await manager.schedule("report", every="10m", misfire=misfire, misfire_cap=3)

    async with gojob.open_manager(store, clock=clock, node_id="first", drain_grace=0) as first:
        first.register(job)
        record = await declare(first)

        async def fired_once() -> bool:
            return len(await first.instances(schedule_id=record.id)) == 1

        await wait_for(fired_once)
        (inst,) = await first.instances(schedule_id=record.id)
        assert inst.fire_time == utc(0, 0)
        await first.wait(inst, timeout=5)

    await trio.sleep(3600 + 300)  # nobody runs from 00:00 to 01:05: six slots are missed

    async with gojob.open_manager(store, clock=clock, node_id="second", drain_grace=0) as second:
        second.register(job)
        if redeclare:  # every node declares its schedules at start-up: the cursor is kept
            again = await declare(second)
            assert again.id == record.id

        async def advanced() -> bool:
            return (await second.get_schedule(record.id)).next_fire_at == utc(1, 10)

        await wait_for(advanced)
        found = await second.instances(schedule_id=record.id, order_by="scheduled_at")
        assert [i.fire_time for i in found] == [utc(0, 0), *fired]
        for late in found[1:]:
            assert (await second.wait(late, timeout=5)).state is State.COMPLETED
        final = await second.get_schedule(record.id)
    assert final.skipped_count == len(skipped)
    assert final.recent_skips == [(slot, "misfire") for slot in skipped]
    assert final.fired_count == 1 + len(fired)


async def noop() -> None:
    pass
