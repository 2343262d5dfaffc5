"""Robustness of the manager, workers, scheduler and log buffer (from a code review).

Each test pins a failure found by reading the code: lost wake-ups, poison backoffs,
transient store errors, drains racing a claim, waiter leaks. Store subclasses here only
add latency or a transient error the Store contract allows (a checkpoint, a
``StoreError``); none changes the memory store's semantics.
"""

from __future__ import annotations

import signal
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from types import FrameType

import pytest
import trio
from trio.testing import MockClock

import gojob
from gojob import Instance, Job, Retry, State
from gojob.errors import LeaseLost, StoreUnavailable
from gojob.instance import LogRecord
from gojob.store.base import Outcome, ScheduleRecord
from gojob.worker import _is_non_retryable


def _crash(group: BaseExceptionGroup[BaseException]) -> str:
    return f"the manager crashed: {group.exceptions!r}"


# -- 1. lost wake-up: the dispatcher sleeps for ever after a full batch -------------------


async def test_an_instance_due_later_runs_after_a_full_batch(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    async def quick() -> str:
        return "ok"

    async with gojob.open_manager(store, clock=clock, workers=1, poll_interval=1) as manager:
        manager.register(Job("quick", quick))
        later = await manager.schedule("quick", after=100)
        await trio.sleep(0.25)  # the dispatcher has seen it and polls (poll_interval)
        # Claimed alone, a batch as large as the free slots: the dispatcher then waits
        # for a wake-up that never comes once the worker's own claim finds nothing.
        await manager.schedule("quick")
        try:
            done = await manager.wait(later, timeout=300)
        except trio.TooSlowError:
            pytest.fail("the instance due in 100 s was still not run after 300 s")
    assert done.state is State.COMPLETED


# -- 2. poison job: a custom backoff that raises escapes the worker ---------------------------


async def test_a_raising_custom_backoff_does_not_crash_the_manager(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    delays = [1.0, 2.0]

    def backoff(inst: Instance) -> float:
        return delays[inst.failures]  # IndexError on the third failure

    async def failing() -> None:
        raise ValueError("always fails")

    async def fine() -> str:
        return "fine"

    try:
        async with gojob.open_manager(store, clock=clock, workers=1) as manager:
            manager.register(Job("poison", failing, max_retries=5, backoff=backoff))
            manager.register(Job("fine", fine))
            poison = await manager.schedule("poison")
            done = await manager.wait(poison, timeout=60)
            after = await manager.wait(await manager.schedule("fine"), timeout=60)
    except BaseExceptionGroup as group:
        pytest.fail(_crash(group))
    assert done.state is State.TERMINATED
    assert after.state is State.COMPLETED


# -- 3. a job with a default `Every` schedule crashes the manager ----------------------------


async def test_a_default_every_schedule_fires(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    ticks: list[float] = []

    async def tick() -> None:
        ticks.append(trio.current_time())

    try:
        async with gojob.open_manager(store, clock=clock, workers=1, poll_interval=1) as manager:
            manager.register(Job("tick", tick, schedule=gojob.Every(timedelta(seconds=10))))
            await trio.sleep(35)
    except BaseExceptionGroup as group:
        pytest.fail(_crash(group))
    assert len(ticks) >= 3


# -- 4. unguarded store calls in manager tasks -----------------------------------------------


class _FlakyNextDue(gojob.MemoryStore):
    """``next_due`` fails once, as a database call may."""

    failures = 1

    async def next_due(self, kinds: Collection[str] | None) -> datetime | None:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("connection reset by peer")
        return await super().next_due(kinds)


async def test_a_transient_next_due_error_does_not_crash_the_manager(
    clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    store = _FlakyNextDue(clock=clock)

    async def quick() -> str:
        return "ok"

    try:
        async with gojob.open_manager(store, clock=clock, workers=2, poll_interval=1) as manager:
            manager.register(Job("quick", quick))
            done = await manager.wait(await manager.schedule("quick", after=5), timeout=60)
    except BaseExceptionGroup as group:
        pytest.fail(_crash(group))
    assert done.state is State.COMPLETED


class _FlakyLogs(gojob.MemoryStore):
    """``append_logs`` fails once."""

    failures = 1

    async def append_logs(self, records: Sequence[LogRecord]) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("connection reset by peer")
        await super().append_logs(records)


async def test_a_transient_log_write_error_does_not_crash_the_manager(
    clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    store = _FlakyLogs(clock=clock)

    async def chatty(inst: Instance, n: int) -> int:
        inst.info("line %d", n)
        await trio.sleep(1)
        return n

    try:
        async with gojob.open_manager(store, clock=clock, workers=1) as manager:
            manager.register(Job("chatty", chatty))
            first = await manager.wait(await manager.schedule("chatty", 1), timeout=60)
            second = await manager.wait(await manager.schedule("chatty", 2), timeout=60)
    except BaseExceptionGroup as group:
        pytest.fail(_crash(group))
    assert first.state is State.COMPLETED
    assert second.state is State.COMPLETED


# -- 5. a default schedule is dropped for good after one store error --------------------------


class _FlakyPutSchedule(gojob.MemoryStore):
    failures = 1

    async def put_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("connection reset by peer")
        return await super().put_schedule(record)


async def test_a_default_schedule_is_declared_after_a_transient_error(
    clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    store = _FlakyPutSchedule(clock=clock)

    async def tick() -> None:
        pass

    async with gojob.open_manager(store, clock=clock, workers=1, poll_interval=1) as manager:
        manager.register(Job("tick", tick, schedule=gojob.Cron("* * * * *")))
        await trio.sleep(10)  # ten scheduler passes
        declared = await manager.schedules("tick")
    assert len(declared) == 1


# -- 6. a claim in flight when the manager drains is never run nor released -------------------


class _SlowClaim(gojob.MemoryStore):
    """A claim is a round trip that, once sent, runs to its commit (as the SQLite store's
    ``to_thread.run_sync(..., abandon_on_cancel=False)`` does)."""

    def __init__(self, clock: gojob.Clock) -> None:
        super().__init__(clock=clock)
        self.claiming = trio.Event()

    async def claim(
        self, node_id: str, kinds: Collection[str] | None, limit: int, lease: float
    ) -> list[Instance]:
        self.claiming.set()
        with trio.CancelScope(shield=True):
            await trio.sleep(0.5)
            return await super().claim(node_id, kinds, limit, lease)
        raise AssertionError("unreachable: nothing cancels a shielded scope without a deadline")


async def test_drain_releases_a_claim_that_was_in_flight(
    clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    store = _SlowClaim(clock)

    async def quick() -> str:
        return "ok"

    async with gojob.open_manager(store, clock=clock, workers=1, drain_grace=5) as manager:
        manager.register(Job("quick", quick))
        inst = await manager.schedule("quick")
        await store.claiming.wait()
    after = await store.get(inst.uuid)
    assert after is not None
    assert after.state in (State.SCHEDULED, State.COMPLETED)


# -- 7. _forget() drops the entry of the instance's next attempt --------------------------------


class _AckLatency(gojob.MemoryStore):
    """``finish_many`` commits, then its reply takes a moment to come back."""

    async def finish_many(
        self, items: Sequence[tuple[str, Outcome]], *, returning: bool = True
    ) -> list[Instance | LeaseLost | None]:
        results = await super().finish_many(items, returning=returning)
        await trio.sleep(0.05)
        return results


async def test_a_cancel_reaches_a_retry_claimed_before_the_previous_ack_returned(
    clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    store = _AckLatency(clock=clock)
    second_running = trio.Event()
    cancelled_at: list[float] = []

    async def flaky(inst: Instance) -> str:
        if inst.attempts == 1:
            raise Retry()  # straight back to the queue
        second_running.set()
        try:
            await trio.sleep(1000)
        finally:
            cancelled_at.append(trio.current_time())
        return "unreachable"

    async with gojob.open_manager(store, clock=clock, workers=1, lease=30) as manager:
        manager.register(Job("flaky", flaky))
        inst = await manager.schedule("flaky")
        with trio.fail_after(10):
            await second_running.wait()
        await trio.sleep(1)  # the first attempt's ack has long returned
        asked = trio.current_time()
        await manager.cancel(inst)
        done = await manager.wait(inst, timeout=60)
    assert done.state is State.CANCELED
    assert cancelled_at[0] - asked < 1.0  # not at the lease keeper's next tick


# -- 8. on_state_change is not told when the store turns a retry into Canceled -------------------


async def test_state_processor_sees_the_cancel_that_finish_applied(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    states: list[State] = []
    deciding = trio.Event()
    decide = trio.Event()

    async def failing() -> None:
        raise ValueError("boom")

    async def on_terminate(inst: Instance, error: BaseException) -> BaseException:
        deciding.set()
        await decide.wait()
        return error  # keep the failure: retry

    def on_state_change(inst: Instance, state: State) -> None:
        states.append(state)

    job = Job(
        "j",
        failing,
        max_retries=3,
        backoff=10,
        on_terminate=on_terminate,
        on_state_change=on_state_change,
    )
    async with gojob.open_manager(store, clock=clock, workers=1) as manager:
        manager.register(job)
        inst = await manager.schedule("j")
        with trio.fail_after(10):
            await deciding.wait()
        await manager.cancel(inst)  # running: flagged; its executor already returned
        decide.set()
        done = await manager.wait(inst, timeout=60)
    assert done.state is State.CANCELED
    assert states[-1] is State.CANCELED, states


# -- 9. wait() leaks an Event per call on a final (or unknown) instance -------------------------


async def test_wait_leaves_no_waiter_behind(
    manager: gojob.Manager, autojump_clock: MockClock
) -> None:
    async def quick() -> str:
        return "ok"

    manager.register(Job("quick", quick))
    inst = await manager.wait(await manager.schedule("quick"), timeout=10)
    for _ in range(3):
        await manager.wait(inst, timeout=10)
    with pytest.raises(gojob.InstanceNotFound):
        await manager.wait("no-such-uuid", timeout=10)
    assert manager._waiters == {}


# -- 10. a self-caused exception hangs the whole Trio run ----------------------------------------


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise TimeoutError("_is_non_retryable did not return within 2 s")


def test_a_self_caused_error_is_judged_without_hanging() -> None:
    err = ValueError("wrapped itself")
    err.__cause__ = err  # what `raise err from err` does
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 2.0)
    try:
        assert _is_non_retryable(err) is False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- 11. a transient error on the acknowledgement throws a finished result away ------------------


class _FlakyFinish(gojob.MemoryStore):
    """``finish_many`` fails once (before writing anything)."""

    failures = 1

    async def finish_many(
        self, items: Sequence[tuple[str, Outcome]], *, returning: bool = True
    ) -> list[Instance | LeaseLost | None]:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("connection reset by peer")
        return await super().finish_many(items, returning=returning)


async def test_a_transient_ack_error_does_not_rerun_a_completed_job(
    clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    store = _FlakyFinish(clock=clock)
    runs: list[float] = []

    async def once() -> str:
        runs.append(trio.current_time())
        return "done"

    async with gojob.open_manager(store, clock=clock, workers=1, lease=10) as manager:
        manager.register(Job("once", once))
        done = await manager.wait(await manager.schedule("once"), timeout=120)
    assert done.state is State.COMPLETED
    assert len(runs) == 1
    assert done.rescues == 0


# -- 12. the public scheduling API is not a Trio checkpoint -------------------------------------


async def test_schedule_is_a_checkpoint(manager: gojob.Manager, autojump_clock: MockClock) -> None:
    async def quick() -> None:
        pass

    manager.register(Job("quick", quick))
    with trio.testing.assert_checkpoints():
        await manager.schedule("quick")
