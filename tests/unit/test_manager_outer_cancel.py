"""A manager cancelled from a scope around it: its own tasks are cancelled with it, so it
writes back what they held before it closes, at once."""

from __future__ import annotations

import trio
from trio.testing import MockClock

import gojob
from gojob import Instance, Job, State
from gojob.store.base import HistoryQuery


async def test_an_outer_cancel_releases_running_attempts_at_once(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    started = trio.Event()

    async def forever(inst: Instance) -> None:
        started.set()
        await trio.sleep_forever()

    with trio.CancelScope() as scope:
        async with gojob.open_manager(
            store, clock=clock, workers=2, lease=30, drain_grace=5
        ) as manager:
            manager.register(Job("forever", forever))
            inst = await manager.schedule("forever")
            await started.wait()
            scope.cancel()
            cancelled_at = trio.current_time()
            await trio.sleep(1)
    # No wait for workers that were cancelled too (the lease is 30 s, the grace 5 s).
    assert trio.current_time() - cancelled_at < 0.5
    released = await store.get(inst.uuid)
    assert released is not None
    assert released.state is State.SCHEDULED
    history = await store.history(HistoryQuery(uuid=inst.uuid))
    assert history[-1].state is State.SCHEDULED
    assert history[-1].details.get("reason") == "released"
    # Another node can take it at once, not after the 30 s lease.
    claimed = await store.claim("other", ["forever"], 1, 30)
    assert [i.uuid for i in claimed] == [inst.uuid]


async def test_an_outer_cancel_loses_no_decided_outcome(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    async def quick() -> int:
        return 7

    with trio.CancelScope() as scope:
        async with gojob.open_manager(store, clock=clock, workers=2, lease=30) as manager:
            manager.register(Job("quick", quick))
            inst = await manager.schedule("quick")
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
    done = await store.get(inst.uuid)
    assert done is not None
    assert done.state is State.COMPLETED
    assert done.result == 7
