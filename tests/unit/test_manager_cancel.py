"""Cancellation (queued, running, by filter) and sync executors in threads."""

from __future__ import annotations

import threading
import time

import pytest
import trio
from trio.testing import MockClock

import gojob
from gojob import Job, Manager, State


async def test_cancel_while_queued_never_runs(manager: Manager, autojump_clock: MockClock) -> None:
    ran = False

    async def job() -> None:
        nonlocal ran
        ran = True

    manager.register(Job("later", job, max_retries=3))
    inst = await manager.schedule("later", after=3600)

    (matched,) = await manager.cancel(inst)

    assert matched.uuid == inst.uuid
    assert matched.state is State.CANCELED
    done = await manager.wait(inst, timeout=1)
    assert done.state is State.CANCELED
    assert done.canceled_at is not None
    await trio.sleep(4000)  # well past the due time: still nothing runs
    assert not ran
    assert (await manager.get(inst.uuid)).attempts == 0
    history = await manager.history(uuid=inst.uuid)
    assert [r.state for r in history] == [State.CREATED, State.SCHEDULED, State.CANCELED]


async def test_cancel_while_running_cancels_the_whole_task_tree(
    manager: Manager, autojump_clock: MockClock
) -> None:
    started = trio.Event()
    finished: list[str] = []

    async def child(name: str) -> None:
        try:
            await trio.sleep_forever()
        finally:
            finished.append(name)

    async def tree() -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(child, "child-1")
                nursery.start_soon(child, "child-2")
                started.set()
        finally:
            finished.append("parent")

    manager.register(Job("tree", tree, max_retries=5, backoff=1))
    inst = await manager.schedule("tree")
    with trio.fail_after(5):
        await started.wait()
    assert (await manager.get(inst.uuid)).state is State.PROCESSING

    (matched,) = await manager.cancel(inst.uuid)
    assert matched.uuid == inst.uuid

    done = await manager.wait(inst, timeout=5)
    assert done.state is State.CANCELED
    assert done.is_final
    assert sorted(finished) == ["child-1", "child-2", "parent"]
    await trio.sleep(60)  # retries were left, yet a cancel is final: no new attempt
    again = await manager.get(inst.uuid)
    assert again.state is State.CANCELED
    assert again.attempts == 1
    history = await manager.history(uuid=inst.uuid)
    assert [r.state for r in history][-2:] == [State.PROCESSING, State.CANCELED]
    assert history[-1].details["reason"] == "canceled"


async def test_cancel_by_kind_and_by_state(manager: Manager, autojump_clock: MockClock) -> None:
    started = trio.Event()

    async def busy() -> None:
        started.set()
        await trio.sleep(1000)

    async def noop() -> None:
        pass

    manager.register(Job("a", noop))
    manager.register(Job("b", noop))
    manager.register(Job("busy", busy))
    running = await manager.schedule("busy")
    with trio.fail_after(5):
        await started.wait()
    a_insts = [await manager.schedule("a", after=100) for _ in range(3)]
    b_inst = await manager.schedule("b", after=100)

    with pytest.raises(ValueError, match="needs"):
        await manager.cancel()

    by_kind = await manager.cancel(kind="a")
    assert {i.uuid for i in by_kind} == {i.uuid for i in a_insts}
    assert all(i.state is State.CANCELED for i in by_kind)
    assert (await manager.get(b_inst.uuid)).state is State.SCHEDULED

    by_state = await manager.cancel(state="Scheduled")
    assert [i.uuid for i in by_state] == [b_inst.uuid]
    # The running instance was not matched by state=Scheduled.
    assert (await manager.get(running.uuid)).state is State.PROCESSING

    (busy_inst,) = await manager.cancel(kind="busy", state=[State.PROCESSING])
    assert busy_inst.uuid == running.uuid
    assert (await manager.wait(running, timeout=5)).state is State.CANCELED
    assert await manager.cancel(kind="a") == []  # final instances are not matched again


# -- sync executors run in real threads: these tests run on real time ----------------


async def test_sync_executor_times_out_at_the_deadline() -> None:
    thread_done = threading.Event()

    def sleepy() -> str:
        time.sleep(0.5)
        thread_done.set()
        return "too late"

    async with gojob.open_manager(workers=2, poll_interval=0.05, drain_grace=0) as manager:
        manager.register(Job("sleepy", sleepy, timeout=0.1))
        inst = await manager.schedule("sleepy")
        start = trio.current_time()
        done = await manager.wait(inst, timeout=5)
        elapsed = trio.current_time() - start

        assert done.state is State.TIMEDOUT
        assert 0.1 <= elapsed < 0.4  # recorded at the deadline, not when the thread returned
        assert not thread_done.is_set()
        assert await trio.to_thread.run_sync(thread_done.wait, 5)
        # The thread's eventual result is discarded.
        after = await manager.get(inst.uuid)
        assert after.state is State.TIMEDOUT
        assert after.result is None
        assert State.COMPLETED not in [r.state for r in await manager.history(uuid=inst.uuid)]


async def test_sync_executor_cooperates_with_cancellation() -> None:
    started = threading.Event()
    saw_cancel = threading.Event()
    loops = 0

    def cooperative() -> None:
        nonlocal loops
        started.set()
        try:
            while True:
                trio.from_thread.check_cancelled()
                loops += 1
                time.sleep(0.005)
        except trio.Cancelled:
            saw_cancel.set()
            raise

    async with gojob.open_manager(workers=2, poll_interval=0.05, drain_grace=0) as manager:
        manager.register(Job("coop", cooperative, max_retries=3))
        inst = await manager.schedule("coop")
        assert await trio.to_thread.run_sync(started.wait, 5)
        await manager.cancel(inst)

        done = await manager.wait(inst, timeout=5)
        assert done.state is State.CANCELED
        assert done.attempts == 1
        assert await trio.to_thread.run_sync(saw_cancel.wait, 5)
        stopped_at = loops
        await trio.to_thread.run_sync(time.sleep, 0.05)
        assert loops == stopped_at  # the thread really left its loop


async def test_sync_executor_cooperating_with_its_timeout() -> None:
    saw_cancel = threading.Event()

    def cooperative() -> None:
        try:
            while True:
                trio.from_thread.check_cancelled()
                time.sleep(0.005)
        except trio.Cancelled:
            saw_cancel.set()
            raise

    async with gojob.open_manager(workers=1, poll_interval=0.05, drain_grace=0) as manager:
        manager.register(Job("coop", cooperative, timeout=0.1))
        done = await manager.wait(await manager.schedule("coop"), timeout=5)
        assert done.state is State.TIMEDOUT
        assert await trio.to_thread.run_sync(saw_cancel.wait, 5)
