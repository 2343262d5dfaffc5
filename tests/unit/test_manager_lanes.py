"""Attempts that share a worker's cancel scope (a lane) stay independent of each other."""

from __future__ import annotations

import trio
from trio.testing import MockClock

import gojob
from gojob import Job, Manager, State


async def test_a_cancel_reaches_only_the_attempt_it_names(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    first_running = trio.Event()
    finished: list[int] = []

    async def job(n: int) -> int:
        if n == 0:
            first_running.set()
            await trio.sleep(100)  # cancelled here
        await trio.sleep(1)
        finished.append(n)
        return n

    async with gojob.open_manager(store, clock=clock, workers=1, drain_grace=1) as manager:
        manager.register(Job("chain", job))
        insts = await manager.schedule_many("chain", [(n,) for n in range(5)])
        with trio.fail_after(10):
            await first_running.wait()
        await manager.cancel(insts[0])
        done = [await manager.wait(i, timeout=60) for i in insts]

    assert done[0].state is State.CANCELED
    assert [d.state for d in done[1:]] == [State.COMPLETED] * 4
    assert finished == [1, 2, 3, 4]


async def test_an_executor_swallowing_its_cancel_does_not_cancel_the_next(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    started = trio.Event()

    async def stubborn(n: int) -> int:
        if n == 0:
            started.set()
            try:
                await trio.sleep(100)
            except trio.Cancelled:
                return -1  # swallows the cancellation: still recorded Canceled
        await trio.sleep(1)
        return n

    async with gojob.open_manager(store, clock=clock, workers=1, drain_grace=1) as manager:
        manager.register(Job("stubborn", stubborn))
        insts = await manager.schedule_many("stubborn", [(n,) for n in range(3)])
        with trio.fail_after(10):
            await started.wait()
        await manager.cancel(insts[0])
        done = [await manager.wait(i, timeout=60) for i in insts]

    assert done[0].state is State.CANCELED
    assert [(d.state, d.result) for d in done[1:]] == [(State.COMPLETED, 1), (State.COMPLETED, 2)]


async def test_timeouts_apply_per_attempt_in_one_lane(
    manager: Manager, autojump_clock: MockClock
) -> None:
    async def sleepy(seconds: float) -> float:
        await trio.sleep(seconds)
        return seconds

    manager.register(Job("sleepy", sleepy, timeout=5))
    await manager.resize(1)
    insts = await manager.schedule_many("sleepy", [(4.0,), (6.0,), (4.0,), (10.0,), (0.0,)])
    done = [await manager.wait(i, timeout=120) for i in insts]
    assert [d.state for d in done] == [
        State.COMPLETED,
        State.TIMEDOUT,
        State.COMPLETED,
        State.TIMEDOUT,
        State.COMPLETED,
    ]


async def test_an_exception_group_from_the_executor_is_a_failure_not_a_crash(
    manager: Manager, autojump_clock: MockClock
) -> None:
    async def spawns_failing_children() -> None:
        async def child(n: int) -> None:
            await trio.sleep(n)
            raise ValueError(f"child {n} failed")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(child, 1)
            nursery.start_soon(child, 2)
            await trio.sleep(10)

    async def fine() -> str:
        return "ok"

    manager.register(Job("group", spawns_failing_children))
    manager.register(Job("fine", fine))
    bad = await manager.schedule("group")
    good = await manager.schedule("fine")
    failed = await manager.wait(bad, timeout=60)
    assert failed.state is State.TERMINATED
    assert failed.error_type is not None
    assert "ExceptionGroup" in failed.error_type
    assert "child 1 failed" in (failed.traceback or "")
    assert (await manager.wait(good, timeout=60)).result == "ok"


async def test_an_error_raised_in_answer_to_a_stop_is_not_a_failure(
    manager: Manager, autojump_clock: MockClock
) -> None:
    running = trio.Event()

    async def converts(seconds: float) -> None:
        running.set()
        try:
            await trio.sleep(seconds)
        except trio.Cancelled:
            raise RuntimeError("interrupted") from None

    manager.register(Job("converts", converts, max_retries=3, timeout=5))
    canceled = await manager.schedule("converts", 100.0)
    with trio.fail_after(10):
        await running.wait()
    await manager.cancel(canceled)
    done = await manager.wait(canceled, timeout=60)
    assert done.state is State.CANCELED
    assert done.failures == 0

    timed_out = await manager.schedule("converts", 100.0, max_retries=0)
    done = await manager.wait(timed_out, timeout=60)
    assert done.state is State.TIMEDOUT
    assert done.error_type == "timeout"
