"""Scheduling one-off instances: options, validation, registry, dedupe, priority, wait()."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

import gojob
from gojob import Backoff, Job, Manager, State

from ..conftest import START


async def add(a: int, b: int) -> int:
    return a + b


async def clash(priority: int, timeout: float, after: str) -> list[Any]:
    """Parameter names that are also scheduling options."""
    return [priority, timeout, after]


async def sleeper(seconds: float) -> None:
    await trio.sleep(seconds)


async def flaky(inst: gojob.Instance, fail_until: int) -> int:
    if inst.attempts < fail_until:
        raise RuntimeError("not yet")
    return inst.attempts


async def noop() -> None:
    pass


async def test_per_instance_overrides_are_persisted_and_applied(
    manager: Manager, autojump_clock: MockClock
) -> None:
    manager.register(Job("sleeper", sleeper))  # defaults: no timeout, no retries
    inst = await manager.schedule("sleeper", 100.0, priority=1, timeout=2, max_retries=3, backoff=4)

    stored = await manager.get(inst.uuid)
    assert stored.policy.priority == 1
    assert stored.policy.timeout == 2.0
    assert stored.policy.max_retries == 3
    assert stored.policy.backoff == Backoff.constant(4.0)
    assert manager.job("sleeper").policy.max_retries == 0  # the job's default is untouched

    done = await manager.wait(inst, timeout=120)
    assert done.state is State.TIMEDOUT  # the 2 s timeout stopped each 100 s sleep
    assert done.attempts == 4  # 1 + max_retries
    stamps = [r.timestamp for r in await manager.history(uuid=inst.uuid, state="Processing")]
    for a, b in itertools.pairwise(stamps):
        assert 6 <= (b - a).total_seconds() < 6.5  # timeout 2 s + backoff 4 s


async def test_override_with_backoff_object_and_timedelta(
    manager: Manager, autojump_clock: MockClock
) -> None:
    manager.register(Job("flaky", flaky))
    inst = await manager.schedule(
        "flaky", 3, max_retries=2, backoff=Backoff.linear(2), timeout=timedelta(seconds=9)
    )
    done = await manager.wait(inst, timeout=60)
    assert done.state is State.COMPLETED
    assert done.policy.timeout == 9.0
    assert done.policy.backoff == Backoff.linear(2)


async def test_executor_parameters_named_like_options(
    manager: Manager, autojump_clock: MockClock
) -> None:
    manager.register(Job("clash", clash))
    positional = await manager.schedule("clash", 7, 1.5, "soon")
    keywords = await manager.schedule(
        "clash", kwargs={"priority": 8, "timeout": 2.5, "after": "later"}, priority=2, timeout=30
    )

    assert (await manager.wait(positional, timeout=5)).result == [7, 1.5, "soon"]
    done = await manager.wait(keywords, timeout=5)
    assert done.result == [8, 2.5, "later"]
    # The scheduling options went to the policy, not to the executor.
    assert done.policy.priority == 2
    assert done.policy.timeout == 30.0


@pytest.mark.parametrize(
    "options",
    [
        {"cron": "61 * * * *"},
        {"cron": "* * *"},
        {"cron": "not a cron"},
        {"cron": "0 3 * * *", "tz": "Mars/Olympus_Mons"},
        {"cron": "@every"},
        {"every": "-5s"},
        {"every": 0},
        {"at": datetime(2025, 6, 1, 12, 0)},  # naive
        {"at": START, "after": 5},
        {"after": -1},
        {"cron": "0 3 * * *", "every": 60},
        {"cron": "0 3 * * *", "after": 10},
        {"every": 60, "start": datetime(2025, 6, 1)},  # naive start
    ],
)
async def test_invalid_schedules_are_rejected(
    manager: Manager, autojump_clock: MockClock, options: dict[str, Any]
) -> None:
    manager.register(Job("noop", noop))
    with pytest.raises(gojob.InvalidSchedule):
        await manager.schedule("noop", **options)
    assert await manager.instances() == []
    assert await manager.schedules() == []


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((1,), None, "b"),  # missing argument
        ((1, 2, 3), None, "3"),  # too many
        (("x", 2), None, "a"),  # wrong type for `a: int`
        ((1,), {"c": 2}, "c"),  # unknown keyword
        ((1, 2), {"a": 3}, "a"),  # given twice
    ],
)
async def test_bad_arguments_are_rejected_at_schedule_time(
    manager: Manager,
    autojump_clock: MockClock,
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    message: str,
) -> None:
    manager.register(Job("add", add))
    with pytest.raises(gojob.ArgumentError, match=message):
        await manager.schedule("add", *args, kwargs=kwargs)
    with pytest.raises(gojob.ArgumentError):
        await manager.schedule("add", *args, kwargs=kwargs, every=60)
    if kwargs is None:
        with pytest.raises(gojob.ArgumentError):
            await manager.schedule_many("add", [(1, 2), args])
    assert await manager.instances() == []


async def test_registry_errors_and_replace(manager: Manager, autojump_clock: MockClock) -> None:
    with pytest.raises(gojob.UnknownJob):
        await manager.schedule("nope")
    with pytest.raises(gojob.UnknownJob):
        manager.job("nope")
    with pytest.raises(gojob.UnknownJob):
        manager.unregister("nope")

    manager.register(Job("calc", add))
    with pytest.raises(gojob.DuplicateJob):
        manager.register(Job("calc", flaky))
    assert manager.job("calc").executor is add

    async def multiply(a: int, b: int) -> int:
        return a * b

    manager.register(Job("calc", multiply), replace=True)
    assert [j.kind for j in manager.jobs()] == ["calc"]
    done = await manager.wait(await manager.schedule("calc", 3, 4), timeout=5)
    assert done.result == 12


async def test_unregister_leaves_queued_instances_queued(
    manager: Manager, autojump_clock: MockClock
) -> None:
    manager.register(Job("add", add))
    manager.unregister("add")
    assert manager.jobs() == []
    with pytest.raises(gojob.UnknownJob):
        await manager.schedule("add", 1, 2)

    job = Job("add", add)
    inst = await manager.schedule(job, 1, 2)  # a Job object registers itself
    manager.unregister("add")
    late = await manager.store.add(
        [gojob.Instance(uuid="queued-1", kind="add", args=[5, 5], scheduled_at=START)]
    )
    with pytest.raises(trio.TooSlowError):
        await manager.wait(late[0], timeout=30)
    assert (await manager.get("queued-1")).state is State.SCHEDULED

    manager.register(job)
    assert (await manager.wait("queued-1", timeout=5)).result == 10
    assert (await manager.wait(inst, timeout=5)).result == 3


async def test_dedupe_key_returns_the_pending_instance(
    manager: Manager, autojump_clock: MockClock
) -> None:
    manager.register(Job("add", add))
    first = await manager.schedule("add", 1, 2, after=100, dedupe_key="nightly")
    second = await manager.schedule("add", 5, 5, after=10, dedupe_key="nightly")

    assert second.uuid == first.uuid
    assert second.args == [1, 2]
    assert len(await manager.instances(kind="add")) == 1

    done = await manager.wait(first, timeout=200)
    assert done.result == 3
    third = await manager.schedule("add", 5, 5, dedupe_key="nightly")
    assert third.uuid != first.uuid
    assert (await manager.wait(third, timeout=5)).result == 10


async def run_in_priority_order(
    store: gojob.MemoryStore, clock: gojob.Clock, *, fill_capacity: bool
) -> list[str]:
    """One worker, busy while four instances come due; return the order they ran in."""
    order: list[str] = []
    release = trio.Event()

    async def blocker() -> None:
        await release.wait()

    async def record(name: str) -> None:
        order.append(name)

    async with gojob.open_manager(store, workers=1, clock=clock, poll_interval=1) as manager:
        manager.register(Job("blocker", blocker))
        manager.register(Job("record", record))
        while True:
            # Blockers until one stays queued: the node then holds all it will claim
            # (attempts claimed ahead of the worker included).
            block = await manager.schedule("blocker", priority=0)
            await trio.testing.wait_all_tasks_blocked()
            if not fill_capacity or (await manager.get(block.uuid)).state is State.SCHEDULED:
                break
        now = clock.now()
        # Created in this order; due times break the tie between equal priorities.
        await manager.schedule("record", "p9", priority=9)
        await manager.schedule("record", "p5-late", priority=5, at=now + timedelta(seconds=2))
        await manager.schedule("record", "p1", priority=1, at=now + timedelta(seconds=3))
        await manager.schedule("record", "p5-early", priority=5, at=now + timedelta(seconds=1))
        await trio.sleep(5)  # every one of them is due before the worker frees up
        release.set()
        for inst in await manager.instances(kind="record"):
            await manager.wait(inst, timeout=10)
    return order


async def test_priority_then_due_time_order(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    order = await run_in_priority_order(store, clock, fill_capacity=True)
    assert order == ["p1", "p5-early", "p5-late", "p9"]


async def test_priority_order_for_work_arriving_while_workers_are_busy(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    order = await run_in_priority_order(store, clock, fill_capacity=False)
    assert order == ["p1", "p5-early", "p5-late", "p9"]


async def test_wait_returns_only_when_final(manager: Manager, autojump_clock: MockClock) -> None:
    manager.register(Job("flaky", flaky, max_retries=2, backoff=10))
    recovers = await manager.schedule("flaky", 3)
    gives_up = await manager.schedule("flaky", 10)

    done = await manager.wait(recovers, timeout=60)
    assert done.state is State.COMPLETED
    assert done.attempts == 3
    failed = await manager.wait(gives_up.uuid, timeout=60)
    assert failed.state is State.TERMINATED
    assert failed.attempts == 3


async def test_wait_timeout_and_unknown_instance(
    manager: Manager, autojump_clock: MockClock
) -> None:
    manager.register(Job("noop", noop))
    later = await manager.schedule("noop", after=3600)
    start = trio.current_time()
    with pytest.raises(trio.TooSlowError):
        await manager.wait(later, timeout=5)
    assert trio.current_time() - start == pytest.approx(5)
    with pytest.raises(gojob.InstanceNotFound):
        await manager.wait("00000000-0000-0000-0000-000000000000", timeout=5)
    with pytest.raises(gojob.InstanceNotFound):
        await manager.get("00000000-0000-0000-0000-000000000000")
    assert (await manager.wait(later, timeout=3700)).state is State.COMPLETED
