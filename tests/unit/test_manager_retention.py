"""The built-in retention job: old finished work is pruned on a schedule."""

from __future__ import annotations

from datetime import timedelta

import pytest
import trio
from trio.testing import MockClock

import gojob
from gojob import Job, State
from gojob.manager import PRUNE_KIND


async def quick(n: int) -> int:
    return n


async def test_retention_prunes_old_final_instances_and_keeps_recent_and_active(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    async with gojob.open_manager(
        store, clock=clock, retention=timedelta(hours=1), retention_every=600
    ) as manager:
        manager.register(Job("quick", quick))
        old = await manager.schedule("quick", 1)
        await manager.wait(old, timeout=10)
        future = await manager.schedule("quick", 2, after=timedelta(hours=5))
        await trio.sleep(2 * 3600)  # the old one is now 2 h old; prune ran every 10 min
        recent = await manager.schedule("quick", 3)
        await manager.wait(recent, timeout=10)
        await trio.sleep(700)  # one more prune slot

        assert await store.get(old.uuid) is None
        assert await manager.history(uuid=old.uuid) == []
        assert (await manager.get(recent.uuid)).state is State.COMPLETED
        assert (await manager.get(future.uuid)).state is State.SCHEDULED
        (schedule,) = [s for s in await manager.schedules() if s.id == PRUNE_KIND]
        assert schedule.fired_count >= 12
        runs = await manager.instances(kind=PRUNE_KIND, state=State.COMPLETED, limit=None)
        assert any(run.result and run.result["instances"] >= 1 for run in runs)


async def test_retention_must_be_positive(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    with pytest.raises(ValueError, match="retention"):
        async with gojob.open_manager(store, clock=clock, retention=0):
            pass
