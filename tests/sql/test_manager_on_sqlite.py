"""The manager end to end on a SQLite file: jobs survive a restart of the manager."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

import gojob
from gojob.store.sql import SchemaNotAtHead, migrate


async def add(a: int, b: int) -> int:
    return a + b


async def test_manager_runs_jobs_on_a_sqlite_url_and_they_survive_a_restart(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    await trio.to_thread.run_sync(lambda: migrate.upgrade(url, prefix="gojob_"))
    with trio.fail_after(30):
        async with gojob.open_manager(url, workers=4, lease=5, poll_interval=0.2) as manager:
            manager.register(gojob.Job("add", add))
            now_ = await manager.schedule("add", 1, 2)
            later = await manager.schedule("add", 3, 4, after=3600)
            done = await manager.wait(now_)
            assert done.state is gojob.State.COMPLETED
            assert done.result == 3
        # A new manager (a restart) sees the finished one and the queued one.
        async with gojob.open_manager(url, workers=1, lease=5, poll_interval=0.2) as manager:
            history = await manager.history(uuid=now_.uuid)
            assert [r.state for r in history] == [
                gojob.State.CREATED,
                gojob.State.SCHEDULED,
                gojob.State.PROCESSING,
                gojob.State.COMPLETED,
            ]
            queued = await manager.get(later.uuid)
            assert queued.state is gojob.State.SCHEDULED
            assert queued.args == [3, 4]


async def test_a_sqlite_url_without_the_schema_is_refused_with_the_fix(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(SchemaNotAtHead, match="gojob db upgrade"):
        async with gojob.open_manager(url):
            pass
