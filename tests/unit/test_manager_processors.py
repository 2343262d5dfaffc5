"""Processors: on_complete, on_terminate, on_state_change, and processors that fail."""

from __future__ import annotations

from typing import Any

import trio
from trio.testing import MockClock

import gojob
from gojob import Job, LogLevel, Manager, State


async def pair(a: int) -> tuple[int, int]:
    return a, a * 2


async def fails() -> None:
    raise ValueError("original failure")


async def flaky(inst: gojob.Instance) -> str:
    if inst.attempts == 1:
        raise RuntimeError("first attempt fails")
    return "second attempt works"


async def too_slow() -> None:
    await trio.sleep(100)


async def test_on_complete_gets_the_result(manager: Manager, autojump_clock: MockClock) -> None:
    seen: list[tuple[str, State, Any]] = []

    def on_complete(inst: gojob.Instance, result: Any) -> None:
        seen.append((inst.uuid, inst.state, result))

    manager.register(Job("pair", pair, on_complete=on_complete))
    inst = await manager.schedule("pair", 21)
    await manager.wait(inst, timeout=5)
    assert seen == [(inst.uuid, State.COMPLETED, [21, 42])]


async def test_on_terminate_returning_none_recovers(
    manager: Manager, autojump_clock: MockClock
) -> None:
    errors: list[BaseException] = []

    async def on_terminate(inst: gojob.Instance, error: BaseException) -> None:
        errors.append(error)

    manager.register(Job("fails", fails, max_retries=3, on_terminate=on_terminate))
    done = await manager.wait(await manager.schedule("fails"), timeout=5)

    assert done.state is State.COMPLETED
    assert done.attempts == 1  # recovered: no retry
    assert done.result is None
    assert [type(e) for e in errors] == [ValueError]
    history = await manager.history(uuid=done.uuid)
    assert history[-1].state is State.COMPLETED
    assert history[-1].details["reason"] == "recovered by on_terminate"


class ReplacedError(Exception):
    pass


async def test_on_terminate_returning_another_error_replaces_it(
    manager: Manager, autojump_clock: MockClock
) -> None:
    def on_terminate(inst: gojob.Instance, error: BaseException) -> BaseException:
        return ReplacedError(f"replaced: {error}")

    def keep(inst: gojob.Instance, error: BaseException) -> BaseException:
        return error

    manager.register(Job("fails", fails, on_terminate=on_terminate))
    manager.register(Job("kept", fails, on_terminate=keep))
    done = await manager.wait(await manager.schedule("fails"), timeout=5)
    kept = await manager.wait(await manager.schedule("kept"), timeout=5)

    assert done.state is State.TERMINATED
    assert done.error_type == "ReplacedError"
    assert done.error_message == "ReplacedError: replaced: original failure"
    assert kept.state is State.TERMINATED
    assert kept.error_type == "ValueError"


async def test_on_terminate_sees_timeouts(manager: Manager, autojump_clock: MockClock) -> None:
    errors: list[BaseException] = []

    def on_terminate(inst: gojob.Instance, error: BaseException) -> BaseException:
        errors.append(error)
        return error

    manager.register(Job("slow", too_slow, timeout=1, on_terminate=on_terminate))
    done = await manager.wait(await manager.schedule("slow"), timeout=10)
    assert done.state is State.TIMEDOUT
    assert [type(e) for e in errors] == [TimeoutError]


async def test_on_state_change_sees_every_transition(
    manager: Manager, autojump_clock: MockClock
) -> None:
    seen: dict[str, list[State]] = {}
    started = trio.Event()

    async def on_state_change(inst: gojob.Instance, state: State) -> None:
        seen.setdefault(inst.kind, []).append(state)

    async def waits() -> None:
        started.set()
        await trio.sleep_forever()

    manager.register(Job("flaky", flaky, max_retries=1, backoff=5, on_state_change=on_state_change))
    manager.register(Job("fails", fails, on_state_change=on_state_change))
    manager.register(Job("waits", waits, max_retries=2, on_state_change=on_state_change))
    await manager.wait(await manager.schedule("flaky"), timeout=30)
    await manager.wait(await manager.schedule("fails"), timeout=30)
    waiting = await manager.schedule("waits")
    with trio.fail_after(5):
        await started.wait()
    await manager.cancel(waiting)
    await manager.wait(waiting, timeout=5)

    assert seen["flaky"] == [
        State.PROCESSING,
        State.TERMINATED,
        State.SCHEDULED,
        State.PROCESSING,
        State.COMPLETED,
    ]
    assert seen["fails"] == [State.PROCESSING, State.TERMINATED]
    assert seen["waits"] == [State.PROCESSING, State.CANCELED]


async def test_a_failing_processor_is_logged_and_the_worker_goes_on(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    def on_complete(inst: gojob.Instance, result: Any) -> None:
        raise KeyError("processor bug")

    async def on_state_change(inst: gojob.Instance, state: State) -> None:
        raise RuntimeError(f"state processor bug at {state.value}")

    async with gojob.open_manager(store, workers=1, clock=clock, poll_interval=1) as manager:
        manager.register(Job("pair", pair, on_complete=on_complete))
        manager.register(Job("noisy", pair, on_state_change=on_state_change))
        first = await manager.wait(await manager.schedule("pair", 1), timeout=5)
        second = await manager.wait(await manager.schedule("noisy", 2), timeout=5)
        third = await manager.wait(await manager.schedule("pair", 3), timeout=5)

        assert [i.state for i in (first, second, third)] == [State.COMPLETED] * 3
        assert third.result == [3, 6]
        errors = await manager.logs(uuid=first.uuid, level="ERROR")
        assert len(errors) == 1
        assert errors[0].level is LogLevel.ERROR
        assert "on_complete processor failed" in errors[0].message
        assert "processor bug" in errors[0].message
        noisy = [r.message for r in await manager.logs(uuid=second.uuid, level=LogLevel.ERROR)]
        assert len(noisy) == 2
        assert "at Processing" in noisy[0]
        assert "at Completed" in noisy[1]


async def test_on_state_change_sees_a_queued_cancel(
    manager: Manager, autojump_clock: MockClock
) -> None:
    seen: list[tuple[str, State]] = []

    def on_state_change(inst: gojob.Instance, state: State) -> None:
        seen.append((inst.uuid, state))

    manager.register(Job("later", pair, on_state_change=on_state_change))
    inst = await manager.schedule("later", 1, after=3600)
    await manager.cancel(inst)
    assert seen == [(inst.uuid, State.CANCELED)]
