"""Recurring schedules through the manager: cron across DST, idempotent declaration,
several nodes, pause/resume/delete, and fixed-rate intervals with jitter."""

from __future__ import annotations

from collections import Counter
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

import pytest
import trio
from trio.testing import MockClock

import gojob
from gojob import Job, Manager, State


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def quiet_manager(
    store: gojob.Store | None = None, clock: gojob.Clock | None = None, node_id: str | None = None
) -> AbstractAsyncContextManager[Manager]:
    """A manager with long polls: the scheduler still wakes for each slot, and virtual
    days pass in few steps."""
    return gojob.open_manager(
        store, clock=clock, node_id=node_id, poll_interval=3600, lease=600, drain_grace=0
    )


async def noop() -> None:
    pass


async def fire_times(manager: Manager, schedule_id: str) -> list[datetime]:
    found = await manager.instances(schedule_id=schedule_id, order_by="scheduled_at")
    return [i.fire_time for i in found if i.fire_time is not None]


@pytest.mark.parametrize(
    ("tz", "start", "expected"),
    [
        # Spring forward: 02:30 does not exist on 2025-03-09; it fires at 03:00 EDT.
        (
            "America/New_York",
            utc(2025, 3, 7, 12),
            [utc(2025, 3, 8, 7, 30), utc(2025, 3, 9, 7), utc(2025, 3, 10, 6, 30)],
        ),
        # Spring forward in Paris: 2025-03-30 02:30 does not exist; 03:00 CEST = 01:00Z.
        (
            "Europe/Paris",
            utc(2025, 3, 28, 12),
            [utc(2025, 3, 29, 1, 30), utc(2025, 3, 30, 1), utc(2025, 3, 31, 0, 30)],
        ),
    ],
)
async def test_cron_spring_forward(
    autojump_clock: MockClock, tz: str, start: datetime, expected: list[datetime]
) -> None:
    async with quiet_manager(clock=gojob.TrioWallClock(start)) as manager:
        manager.register(Job("daily", noop))
        record = await manager.schedule("daily", cron="30 2 * * *", tz=tz)
        await trio.sleep(3.5 * 86400)
        assert await fire_times(manager, record.id) == expected
        for inst in await manager.instances(schedule_id=record.id):
            assert inst.state is State.COMPLETED
            assert inst.processed_at is not None
            assert inst.fire_time is not None
            assert inst.processed_at - inst.fire_time < timedelta(seconds=1)


@pytest.mark.parametrize(
    ("tz", "spec", "start", "expected"),
    [
        # Fall back in Paris: 02:30 occurs twice on 2025-10-26; only the first (CEST) fires.
        (
            "Europe/Paris",
            "30 2 * * *",
            utc(2025, 10, 24, 12),
            [utc(2025, 10, 25, 0, 30), utc(2025, 10, 26, 0, 30), utc(2025, 10, 27, 1, 30)],
        ),
        # Fall back in New York: 01:30 occurs twice on 2025-11-02; only the first (EDT) fires.
        (
            "America/New_York",
            "30 1 * * *",
            utc(2025, 10, 31, 12),
            [utc(2025, 11, 1, 5, 30), utc(2025, 11, 2, 5, 30), utc(2025, 11, 3, 6, 30)],
        ),
    ],
)
async def test_cron_fall_back_fires_once(
    autojump_clock: MockClock, tz: str, spec: str, start: datetime, expected: list[datetime]
) -> None:
    async with quiet_manager(clock=gojob.TrioWallClock(start)) as manager:
        manager.register(Job("daily", noop))
        record = await manager.schedule("daily", cron=spec, tz=tz)
        await trio.sleep(3.5 * 86400)
        assert await fire_times(manager, record.id) == expected
        assert (await manager.get_schedule(record.id)).fired_count == 3


async def test_declaring_twice_gives_one_schedule(
    manager: Manager, autojump_clock: MockClock
) -> None:
    manager.register(Job("tick", noop))
    first = await manager.schedule("tick", cron="*/5 * * * *")
    second = await manager.schedule("tick", cron="*/5 * * * *")
    assert second.id == first.id
    assert [s.id for s in await manager.schedules()] == [first.id]
    named = await manager.schedule("tick", cron="*/5 * * * *", id="my-tick")
    assert named.id == "my-tick"
    assert len(await manager.schedules()) == 2

    await trio.sleep(16 * 60)
    times = await fire_times(manager, first.id)
    assert times == [utc(2025, 1, 1, 0, m) for m in (5, 10, 15)]


async def test_two_managers_declaring_the_same_cron_fire_each_slot_once(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    runs: Counter[datetime] = Counter()

    async def tick(inst: gojob.Instance) -> None:
        assert inst.fire_time is not None
        runs[inst.fire_time] += 1

    async with (
        quiet_manager(store, clock, "a") as a,
        quiet_manager(store, clock, "b") as b,
    ):
        for manager in (a, b):
            manager.register(Job("tick", tick))
            await manager.schedule("tick", cron="* * * * *")
        await trio.sleep(10 * 60 + 30)
        assert len(await a.schedules()) == 1
        instances = await a.instances(kind="tick")
    assert len(instances) == 10
    assert Counter(i.fire_time for i in instances).most_common(1)[0][1] == 1
    assert runs == Counter({utc(2025, 1, 1, 0, m): 1 for m in range(1, 11)})


async def test_pause_resume_delete(manager: Manager, autojump_clock: MockClock) -> None:
    manager.register(Job("tick", noop))
    record = await manager.schedule("tick", every=60)  # anchored now: 00:00, 00:01, ...
    await trio.sleep(90)
    assert await fire_times(manager, record.id) == [utc(2025, 1, 1), utc(2025, 1, 1, 0, 1)]

    paused = await manager.pause_schedule(record.id)
    assert paused.paused
    await trio.sleep(300)  # 00:01:30 -> 00:06:30: five slots pass while paused
    assert len(await fire_times(manager, record.id)) == 2

    resumed = await manager.resume_schedule(record.id)
    assert not resumed.paused
    assert resumed.next_fire_at == utc(2025, 1, 1, 0, 7)
    await trio.sleep(120)
    assert await fire_times(manager, record.id) == [
        utc(2025, 1, 1),
        utc(2025, 1, 1, 0, 1),
        utc(2025, 1, 1, 0, 7),
        utc(2025, 1, 1, 0, 8),
    ]

    await manager.delete_schedule(record.id)
    assert await manager.schedules() == []
    with pytest.raises(gojob.ScheduleNotFound):
        await manager.get_schedule(record.id)
    with pytest.raises(gojob.ScheduleNotFound):
        await manager.delete_schedule(record.id)
    with pytest.raises(gojob.ScheduleNotFound):
        await manager.pause_schedule(record.id)
    await trio.sleep(300)
    assert len(await fire_times(manager, record.id)) == 4  # deleted: no more fires


async def test_every_is_fixed_rate_without_drift(
    manager: Manager, autojump_clock: MockClock
) -> None:
    async def slowish() -> None:
        await trio.sleep(3.7)  # each run takes a while; the grid must not slide

    manager.register(Job("slowish", slowish))
    start = utc(2025, 1, 1) + timedelta(seconds=5)
    record = await manager.schedule("slowish", every="10s", start=start)
    await trio.sleep(5 + 60 + 5)  # the last run (from 00:01:05) has finished
    found = await manager.instances(schedule_id=record.id, order_by="scheduled_at")
    expected = [start + timedelta(seconds=10 * k) for k in range(7)]
    assert [i.fire_time for i in found] == expected
    assert [i.scheduled_at for i in found] == expected
    for inst in found:
        assert inst.state is State.COMPLETED
        assert inst.processed_at is not None
        assert inst.scheduled_at is not None
        assert inst.processed_at - inst.scheduled_at < timedelta(seconds=0.5)


async def test_jitter_stays_within_bounds(manager: Manager, autojump_clock: MockClock) -> None:
    manager.register(Job("tick", noop))
    record = await manager.schedule("tick", every=60, jitter=20)
    await trio.sleep(30 * 60 + 30)
    found = await manager.instances(schedule_id=record.id)
    assert len(found) == 31
    offsets = []
    for inst in found:
        assert inst.fire_time is not None
        assert inst.scheduled_at is not None
        assert inst.fire_time.second == 0  # the slot itself stays on the grid
        offset = (inst.scheduled_at - inst.fire_time).total_seconds()
        assert 0 <= offset <= 20
        offsets.append(offset)
        assert inst.state is State.COMPLETED
    assert len(set(offsets)) > 1  # really jittered
