"""Several managers on one store, default schedules, retry(), closed managers, and
attempts that end in unusual ways (unencodable results, swallowed cancellation)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import pytest
import trio
import trio.testing
from trio.testing import MockClock

import gojob
from gojob import Job, Manager, State


def node(
    store: gojob.MemoryStore, clock: gojob.Clock, node_id: str, workers: int = 2
) -> AbstractAsyncContextManager[Manager]:
    return gojob.open_manager(
        store, clock=clock, node_id=node_id, workers=workers, lease=10, poll_interval=1
    )


async def test_cancel_and_wait_across_nodes(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    started = trio.Event()
    cancelled_on: list[str] = []

    async def runs(inst: gojob.Instance) -> None:
        started.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled_on.append(inst.node_id or "")

    async with node(store, clock, "runner") as runner, node(store, clock, "client") as client:
        runner.register(Job("runs", runs, max_retries=3))
        # The client knows the kind only to validate arguments; it never claims it.
        client.register(Job("runs", runs))
        client.unregister("runs")
        inst = await runner.schedule("runs")
        with trio.fail_after(5):
            await started.wait()

        (matched,) = await client.cancel(inst.uuid)
        assert matched.cancel_requested
        done = await client.wait(inst, timeout=5)  # waiting from the other node works too
    assert done.state is State.CANCELED
    assert cancelled_on == ["runner"]
    assert done.attempts == 1


async def test_cancel_an_attempt_claimed_but_not_started(
    manager: Manager, autojump_clock: MockClock
) -> None:
    await manager.resize(1)
    release = trio.Event()
    ran: list[str] = []

    async def blocker() -> None:
        await release.wait()

    async def victim() -> None:
        ran.append("victim")

    manager.register(Job("blocker", blocker))
    manager.register(Job("victim", victim))
    await manager.schedule("blocker")
    inst = await manager.schedule("victim")
    await trio.testing.wait_all_tasks_blocked()
    # Queued in the store, or claimed ahead of the busy worker: either way it never runs.
    assert (await manager.get(inst.uuid)).state in (State.SCHEDULED, State.PROCESSING)
    await manager.cancel(inst)
    release.set()
    done = await manager.wait(inst, timeout=5)
    assert done.state is State.CANCELED
    assert ran == []


async def test_default_schedule_is_declared_at_registration(
    manager: Manager, autojump_clock: MockClock
) -> None:
    async def tick() -> None:
        pass

    manager.register(Job("tick", tick, schedule=gojob.Cron("*/10 * * * *")))
    await trio.sleep(35 * 60)
    (record,) = await manager.schedules(kind="tick")
    assert record.fired_count == 3
    found = await manager.instances(schedule_id=record.id, state="Completed")
    assert len(found) == 3


async def test_retry_requeues_a_final_instance(manager: Manager, autojump_clock: MockClock) -> None:
    calls: list[int] = []

    async def fails_once(inst: gojob.Instance) -> int:
        calls.append(inst.attempts)
        if len(calls) == 1:
            raise RuntimeError("first run fails")
        return len(calls)

    manager.register(Job("job", fails_once))
    failed = await manager.wait(await manager.schedule("job"), timeout=5)
    assert failed.state is State.TERMINATED
    with pytest.raises(gojob.InvalidTransition):
        await manager.retry(await manager.schedule("job", after=100))

    requeued = await manager.retry(failed, after=30)
    assert requeued.state is State.SCHEDULED
    done = await manager.wait(failed, timeout=60)
    assert done.state is State.COMPLETED
    assert done.failures == 0
    history = await manager.history(uuid=failed.uuid)
    assert [r.details.get("reason") for r in history if r.state is State.SCHEDULED][-1] == (
        "requeued"
    )
    with pytest.raises(gojob.InstanceNotFound):
        await manager.retry("no-such-uuid")


async def test_a_closed_manager_refuses_new_work(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    async def noop() -> None:
        pass

    async with node(store, clock, "a") as manager:
        manager.register(Job("noop", noop))
    with pytest.raises(gojob.ManagerClosed):
        await manager.schedule("noop")
    with pytest.raises(gojob.ManagerClosed):
        await manager.schedule_many("noop", [()])


class Opaque:
    pass


async def test_unencodable_or_oversized_results_terminate(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    async def opaque() -> Opaque:
        return Opaque()

    async def huge() -> str:
        return "x" * 1000

    limits = gojob.Limits(max_result_bytes=100)
    async with gojob.open_manager(store, clock=clock, limits=limits) as manager:
        manager.register(Job("opaque", opaque))
        manager.register(Job("huge", huge))
        bad = await manager.wait(await manager.schedule("opaque"), timeout=5)
        big = await manager.wait(await manager.schedule("huge"), timeout=5)
    assert bad.state is State.TERMINATED
    assert bad.error_type == "EncodeError"
    assert big.state is State.TERMINATED
    assert big.error_type == "PayloadTooLarge"


async def test_swallowed_cancellation_still_ends_the_attempt(
    manager: Manager, autojump_clock: MockClock
) -> None:
    started = {"timeout": trio.Event(), "cancel": trio.Event()}

    async def stubborn(case: str) -> str:
        started[case].set()
        try:
            await trio.sleep(100)
        except trio.Cancelled:
            return "swallowed"  # wrong, but it must not count as a success
        return "finished"

    manager.register(Job("stubborn", stubborn))
    timed = await manager.wait(await manager.schedule("stubborn", "timeout", timeout=1), timeout=10)
    assert timed.state is State.TIMEDOUT
    assert timed.result is None

    inst = await manager.schedule("stubborn", "cancel")
    with trio.fail_after(5):
        await started["cancel"].wait()
    await manager.cancel(inst)
    canceled = await manager.wait(inst, timeout=5)
    assert canceled.state is State.CANCELED
    assert canceled.result is None
