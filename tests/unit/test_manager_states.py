"""Every state path an instance can take through the manager, on the virtual clock."""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest
import trio
from trio.testing import MockClock

import gojob
from gojob import Backoff, Job, Manager, State


async def add(a: int, b: int) -> tuple[int, str]:
    return a + b, "sum"


async def flaky(inst: gojob.Instance, fail_until: int) -> str:
    """Fail while this is attempt number < ``fail_until``, then succeed."""
    if inst.attempts < fail_until:
        raise RuntimeError(f"transient failure on attempt {inst.attempts}")
    return f"ok after {inst.attempts}"


async def slow_first(inst: gojob.Instance) -> int:
    """The first attempt sleeps past any short timeout; later ones return at once."""
    if inst.attempts == 1:
        await trio.sleep(100)
    return inst.attempts


async def always_fails() -> None:
    raise ValueError("broken")


async def fails_for_good() -> None:
    raise gojob.NonRetryable("bad input")


async def fails_from_non_retryable() -> None:
    try:
        raise gojob.NonRetryable("root cause")
    except gojob.NonRetryable as exc:
        raise RuntimeError("wrapped") from exc


async def asks_for_retry(inst: gojob.Instance) -> int:
    if inst.attempts == 1:
        raise gojob.Retry(after=30, reason="not yet")
    return inst.attempts


def states(history: list[gojob.HistoryRecord]) -> list[State]:
    return [rec.state for rec in history]


def processing_times(history: list[gojob.HistoryRecord]) -> list[datetime]:
    return [rec.timestamp for rec in history if rec.state is State.PROCESSING]


def gaps(times: list[datetime]) -> list[float]:
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


async def test_completed_path_history_result_and_lookup(
    manager: Manager, autojump_clock: MockClock
) -> None:
    manager.register(Job("add", add))
    inst = await manager.schedule("add", 1, 2)
    assert inst.state is State.SCHEDULED

    done = await manager.wait(inst, timeout=5)

    assert done.state is State.COMPLETED
    assert done.result == [3, "sum"]  # a tuple comes back as plain JSON
    assert done.attempts == 1
    assert done.failures == 0
    assert done.completed_at is not None
    history = await manager.history(uuid=inst.uuid)
    assert states(history) == [State.CREATED, State.SCHEDULED, State.PROCESSING, State.COMPLETED]
    assert [rec.attempt for rec in history] == [0, 0, 1, 1]
    stamps = [rec.timestamp for rec in history]
    assert stamps == sorted(stamps)
    assert history[-1].details["result"] == [3, "sum"]
    assert history[-1].details["node"] == "node-a"

    (found,) = await manager.instances(uuid=inst.uuid)
    assert found.state is State.COMPLETED
    assert found.result == [3, "sum"]
    assert [i.uuid for i in await manager.instances(kind="add", state="Completed")] == [inst.uuid]
    assert await manager.instances(kind="add", state=State.TERMINATED) == []


async def test_retry_after_terminated_respects_backoff(
    manager: Manager, autojump_clock: MockClock
) -> None:
    manager.register(Job("flaky", flaky, max_retries=2, backoff=Backoff.linear(10)))
    inst = await manager.schedule("flaky", 3)

    done = await manager.wait(inst, timeout=120)

    assert done.state is State.COMPLETED
    assert done.result == "ok after 3"
    assert done.attempts == 3
    assert done.failures == 2
    history = await manager.history(uuid=inst.uuid)
    assert states(history) == [
        State.CREATED,
        State.SCHEDULED,
        State.PROCESSING,
        State.TERMINATED,
        State.SCHEDULED,
        State.PROCESSING,
        State.TERMINATED,
        State.SCHEDULED,
        State.PROCESSING,
        State.COMPLETED,
    ]
    assert [rec.attempt for rec in history] == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3]
    terminated = [rec for rec in history if rec.state is State.TERMINATED]
    assert "transient failure on attempt 1" in terminated[0].details["error"]
    assert terminated[0].details["error_type"] == "RuntimeError"
    retries = [rec for rec in history if rec.details.get("reason") == "retry"]
    assert len(retries) == 2
    # Linear backoff: 10 s before the first retry, 20 s before the second.
    first, second = gaps(processing_times(history))
    assert 10 <= first < 11
    assert 20 <= second < 21


async def test_retry_after_timed_out(manager: Manager, autojump_clock: MockClock) -> None:
    manager.register(Job("slow", slow_first, timeout=2, max_retries=1, backoff=5))
    inst = await manager.schedule("slow")

    done = await manager.wait(inst, timeout=60)

    assert done.state is State.COMPLETED
    assert done.result == 2
    history = await manager.history(uuid=inst.uuid)
    assert states(history)[2:] == [
        State.PROCESSING,
        State.TIMEDOUT,
        State.SCHEDULED,
        State.PROCESSING,
        State.COMPLETED,
    ]
    timed_out = history[3]
    assert timed_out.details["reason"] == "timeout"
    # The attempt was stopped at its 2 s deadline, not after the 100 s sleep.
    assert 2 <= (timed_out.timestamp - history[2].timestamp).total_seconds() < 2.5
    (gap,) = gaps(processing_times(history))
    assert 7 <= gap < 8  # 2 s timeout + 5 s backoff


async def test_final_terminated_when_retries_exhausted(
    manager: Manager, autojump_clock: MockClock
) -> None:
    manager.register(Job("broken", always_fails, max_retries=1))
    inst = await manager.schedule("broken")

    done = await manager.wait(inst, timeout=60)

    assert done.state is State.TERMINATED
    assert done.attempts == 2
    assert done.failures == 2
    assert done.error_type == "ValueError"
    assert done.error_message is not None
    assert "broken" in done.error_message
    assert done.traceback is not None
    assert "ValueError" in done.traceback
    history = await manager.history(uuid=inst.uuid)
    assert states(history).count(State.PROCESSING) == 2
    assert states(history)[-1] is State.TERMINATED


async def test_final_timed_out_when_retries_exhausted(
    manager: Manager, autojump_clock: MockClock
) -> None:
    manager.register(Job("slow", slow_first, timeout=1))
    inst = await manager.schedule("slow")
    done = await manager.wait(inst, timeout=60)
    assert done.state is State.TIMEDOUT
    assert done.attempts == 1
    assert done.timed_out_at is not None


async def test_infinite_retries_keep_going_until_success(
    manager: Manager, autojump_clock: MockClock
) -> None:
    manager.register(Job("flaky", flaky, max_retries=gojob.INFINITE, backoff=1))
    inst = await manager.schedule("flaky", 8)

    done = await manager.wait(inst, timeout=300)

    assert done.state is State.COMPLETED
    assert done.attempts == 8
    assert done.failures == 7


async def test_retry_signal_reschedules_without_consuming_retries(
    manager: Manager, autojump_clock: MockClock
) -> None:
    manager.register(Job("patient", asks_for_retry, max_retries=0))
    inst = await manager.schedule("patient")

    done = await manager.wait(inst, timeout=120)

    assert done.state is State.COMPLETED
    assert done.result == 2
    assert done.attempts == 2
    assert done.failures == 0
    history = await manager.history(uuid=inst.uuid)
    assert states(history) == [
        State.CREATED,
        State.SCHEDULED,
        State.PROCESSING,
        State.SCHEDULED,
        State.PROCESSING,
        State.COMPLETED,
    ]
    rescheduled = history[3]
    assert rescheduled.details["reason"] == "retry-requested"
    assert rescheduled.details["error"] == "not yet"
    (gap,) = gaps(processing_times(history))
    assert 30 <= gap < 31


async def test_non_retryable_fails_at_once(manager: Manager, autojump_clock: MockClock) -> None:
    manager.register(Job("fatal", fails_for_good, max_retries=5))
    manager.register(Job("wrapped", fails_from_non_retryable, max_retries=5))
    direct = await manager.schedule("fatal")
    chained = await manager.schedule("wrapped")

    for inst in (direct, chained):
        done = await manager.wait(inst, timeout=60)
        assert done.state is State.TERMINATED
        assert done.attempts == 1
    assert (await manager.get(direct.uuid)).error_type == "NonRetryable"


async def test_exponential_backoff_with_jitter_stays_in_bounds(
    manager: Manager, autojump_clock: MockClock
) -> None:
    backoff = Backoff.exponential(10, factor=2, jitter=0.2)
    manager.register(Job("flaky", flaky, max_retries=3, backoff=backoff))
    insts = [await manager.schedule("flaky", 4) for _ in range(5)]

    delays: list[list[float]] = []
    for inst in insts:
        done = await manager.wait(inst, timeout=600)
        assert done.state is State.COMPLETED
        delays.append(gaps(processing_times(await manager.history(uuid=inst.uuid))))

    nominal = [10.0, 20.0, 40.0]
    for row in delays:
        for delay, base in zip(row, nominal, strict=True):
            # ±20% jitter, plus the dispatcher's latency on the virtual clock.
            assert base * 0.8 <= delay <= base * 1.2 + 0.5
    # The jitter is applied: 15 draws all landing within 1 ms of nominal would be absurd.
    assert any(abs(d - n) > 0.001 for row in delays for d, n in zip(row, nominal, strict=True))


def by_attempt(inst: gojob.Instance) -> float:
    return 3.0 * inst.attempts


async def test_callable_backoff(manager: Manager, autojump_clock: MockClock) -> None:
    manager.register(Job("flaky", flaky, max_retries=2, backoff=by_attempt))
    inst = await manager.schedule("flaky", 3)

    done = await manager.wait(inst, timeout=120)

    assert done.state is State.COMPLETED
    first, second = gaps(processing_times(await manager.history(uuid=inst.uuid)))
    assert 3 <= first < 3.5
    assert 6 <= second < 6.5


@pytest.mark.parametrize("max_retries", [0, 2])
async def test_retry_count_matches_attempts(
    manager: Manager, autojump_clock: MockClock, max_retries: int
) -> None:
    manager.register(Job("broken", always_fails, max_retries=max_retries))
    done = await manager.wait(await manager.schedule("broken"), timeout=60)
    assert done.state is State.TERMINATED
    assert done.attempts == max_retries + 1
