"""Per-instance log capture: Instance methods and stdlib logging, async and sync executors."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import trio
import trio.lowlevel
from trio.testing import MockClock

import gojob
from gojob import Job, LogLevel, Manager

jobs_log = logging.getLogger("tests.manager.jobs")


@pytest.fixture(autouse=True)
def debug_level() -> Iterator[None]:
    """The test logger lets DEBUG through, so capture is judged, not the level."""
    previous = jobs_log.level
    jobs_log.setLevel(logging.DEBUG)
    yield
    jobs_log.setLevel(previous)


async def chatty_async(inst: gojob.Instance, tag: str) -> None:
    inst.debug("debug %s", tag)
    inst.info("info %s", tag)
    inst.warn("warn %s", tag)
    inst.error("error %s", tag)
    jobs_log.debug("logging debug %s", tag)
    jobs_log.info("logging info %s", tag)
    jobs_log.warning("logging warning %s", tag)
    jobs_log.error("logging error %s", tag)
    await trio.lowlevel.checkpoint()


def chatty_sync(inst: gojob.Instance, tag: str) -> None:
    inst.info("thread info %s", tag)
    jobs_log.warning("thread logging warning %s", tag)
    try:
        raise ValueError("boom")
    except ValueError:
        jobs_log.exception("thread logging exception %s", tag)


LEVELS = [LogLevel.DEBUG, LogLevel.INFO, LogLevel.WARN, LogLevel.ERROR]


async def test_async_executor_logs_land_with_levels(
    manager: Manager, autojump_clock: MockClock
) -> None:
    manager.register(Job("chatty", chatty_async))
    inst = await manager.wait(await manager.schedule("chatty", "a"), timeout=5)

    records = await manager.logs(uuid=inst.uuid)
    assert [(r.level, r.message) for r in records] == [
        (LogLevel.DEBUG, "debug a"),
        (LogLevel.INFO, "info a"),
        (LogLevel.WARN, "warn a"),
        (LogLevel.ERROR, "error a"),
        (LogLevel.DEBUG, "logging debug a"),
        (LogLevel.INFO, "logging info a"),
        (LogLevel.WARN, "logging warning a"),
        (LogLevel.ERROR, "logging error a"),
    ]
    assert {r.logger for r in records[:4]} == {""}
    assert {r.logger for r in records[4:]} == {"tests.manager.jobs"}
    assert {r.attempt for r in records} == {1}
    assert {r.kind for r in records} == {"chatty"}


async def test_sync_executor_logs_land_with_levels() -> None:
    # Threads run in real time, so this test does too (autojump would race the thread).
    async with gojob.open_manager(workers=1, poll_interval=0.05, drain_grace=0) as manager:
        manager.register(Job("chatty", chatty_sync))
        inst = await manager.wait(await manager.schedule("chatty", "s"), timeout=5)
        records = await manager.logs(uuid=inst.uuid)

    assert [(r.level, r.message.splitlines()[0]) for r in records] == [
        (LogLevel.INFO, "thread info s"),
        (LogLevel.WARN, "thread logging warning s"),
        (LogLevel.ERROR, "thread logging exception s"),
    ]
    assert "ValueError: boom" in records[2].message  # the traceback comes along
    assert {r.attempt for r in records} == {1}
    assert all(r.timestamp.tzinfo is not None for r in records)


def thread_then_processor(inst: gojob.Instance) -> None:
    inst.info("executor 1")
    jobs_log.info("executor 2")


def log_in_processor(inst: gojob.Instance, result: object) -> None:
    inst.info("processor")


async def test_thread_records_stay_before_later_trio_records() -> None:
    """A sync executor's lines (stamped later, from Trio) still read before the lines
    its on_complete processor writes afterwards."""
    async with gojob.open_manager(workers=4, poll_interval=0.05, drain_grace=0) as manager:
        manager.register(Job("job", thread_then_processor, on_complete=log_in_processor))
        insts = await manager.schedule_many("job", [()] * 20)
        for inst in insts:
            await manager.wait(inst, timeout=5)
        for inst in insts:
            records = await manager.logs(uuid=inst.uuid)
            assert [r.message for r in records] == ["executor 1", "executor 2", "processor"]
            stamps = [r.timestamp for r in records]
            assert stamps == sorted(stamps)


async def test_log_filters_level_kind_limit_offset(
    manager: Manager, autojump_clock: MockClock
) -> None:
    manager.register(Job("a", chatty_async))
    manager.register(Job("b", chatty_async))
    first = await manager.wait(await manager.schedule("a", "one"), timeout=5)
    second = await manager.wait(await manager.schedule("b", "two"), timeout=5)

    warn_up = await manager.logs(uuid=first.uuid, level="WARN")
    assert [r.level for r in warn_up] == [LogLevel.WARN, LogLevel.ERROR] * 2
    assert [r.level for r in await manager.logs(uuid=first.uuid, level=LogLevel.ERROR)] == [
        LogLevel.ERROR,
        LogLevel.ERROR,
    ]
    only_b = await manager.logs(kind="b")
    assert len(only_b) == 8
    assert {r.uuid for r in only_b} == {second.uuid}
    assert len(await manager.logs()) == 16

    everything = [r.message for r in await manager.logs(uuid=first.uuid)]
    page = [r.message for r in await manager.logs(uuid=first.uuid, limit=3, offset=2)]
    assert page == everything[2:5]
    newest = await manager.logs(uuid=first.uuid, descending=True, limit=1)
    assert newest[0].message == everything[-1]
    with pytest.raises(ValueError, match="negative"):
        await manager.logs(limit=-1)


async def test_records_outside_an_attempt_are_not_captured(
    manager: Manager, autojump_clock: MockClock
) -> None:
    manager.register(Job("chatty", chatty_async))
    inst = await manager.wait(await manager.schedule("chatty", "x"), timeout=5)
    before = len(await manager.logs())

    jobs_log.error("outside any attempt")
    logging.getLogger().warning("root, outside any attempt")
    with pytest.raises(gojob.GojobError, match="not running here"):
        inst.info("the returned snapshot cannot log")

    assert len(await manager.logs()) == before
    assert all("outside" not in r.message for r in await manager.logs())
