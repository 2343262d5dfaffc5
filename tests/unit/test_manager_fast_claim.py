"""schedule() on a node that can run the job now claims it in the same store call
(Store.add_and_claim): no round trip between enqueue and start."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

import trio
from trio.testing import MockClock

import gojob
from gojob import Instance, Job, State


class CountingStore(gojob.MemoryStore):
    """A memory store that records which enqueue path each call took."""

    def __init__(self, clock: gojob.Clock) -> None:
        super().__init__(clock=clock)
        self.calls: list[tuple[str, int]] = []
        self._fused = False

    async def add(self, instances: Sequence[Instance]) -> list[Instance]:
        if not self._fused:  # the default add_and_claim adds through here too
            self.calls.append(("add", len(instances)))
        return await super().add(instances)

    async def add_and_claim(
        self,
        instances: Sequence[Instance],
        node_id: str,
        kinds: Collection[str] | None,
        limit: int,
        lease: float,
    ) -> tuple[list[Instance], list[Instance]]:
        self.calls.append(("add_and_claim", limit))
        self._fused = True
        try:
            return await super().add_and_claim(instances, node_id, kinds, limit, lease)
        finally:
            self._fused = False


async def test_an_immediate_job_is_claimed_by_schedule_itself(
    clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    store = CountingStore(clock)
    release = trio.Event()
    started: list[str] = []

    async def work(inst: Instance) -> None:
        started.append(inst.uuid)
        await release.wait()

    async with gojob.open_manager(store, clock=clock, workers=2, lease=10) as manager:
        manager.register(Job("work", work))
        first = await manager.schedule("work")
        assert store.calls[-1] == ("add_and_claim", 2)
        # Claimed before schedule() returned: it runs without another store call.
        calls = len(store.calls)
        await trio.testing.wait_all_tasks_blocked()
        assert started == [first.uuid]
        assert store.calls[calls:] == []
        assert (await manager.get(first.uuid)).state is State.PROCESSING

        await manager.schedule("work")
        assert store.calls[-1] == ("add_and_claim", 1)
        # Both workers busy: a plain add, claimed later by the dispatcher.
        await trio.testing.wait_all_tasks_blocked()
        third = await manager.schedule("work")
        assert store.calls[-1] == ("add", 1)
        # A delayed job is a plain add too.
        await manager.schedule("work", after=60)
        assert store.calls[-1] == ("add", 1)
        release.set()
        assert (await manager.wait(third)).state is State.COMPLETED


async def test_schedule_many_claims_what_the_free_workers_can_take(
    clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    store = CountingStore(clock)

    async def noop() -> None:
        return None

    async with gojob.open_manager(store, clock=clock, workers=2, lease=10) as manager:
        manager.register(Job("noop", noop))
        batch = await manager.schedule_many("noop", [(), (), ()])
        assert store.calls[-1] == ("add_and_claim", 2)
        for added in batch:
            assert (await manager.wait(added)).state is State.COMPLETED


async def add(a: int, b: int) -> int:
    # Async: a sync job runs in a thread, and the virtual clock jumps while it does.
    return a + b


class DispatchCountingStore(CountingStore):
    """Also counts the dispatcher's claims and next_due queries."""

    def __init__(self, clock: gojob.Clock) -> None:
        super().__init__(clock)
        self.claims = 0
        self.next_dues = 0

    async def claim(
        self, node_id: str, kinds: Collection[str] | None, limit: int, lease: float
    ) -> list[Instance]:
        if not self._fused:
            self.claims += 1
        return await super().claim(node_id, kinds, limit, lease)

    async def next_due(self, kinds: Collection[str] | None) -> datetime | None:
        self.next_dues += 1
        return await super().next_due(kinds)


async def test_an_idle_node_runs_enqueued_jobs_without_claims_of_its_dispatcher(
    clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    # Each job is claimed by schedule() itself and its add's DUE event finds nothing
    # left: the dispatcher neither claims after the add nor after the job finished.
    store = DispatchCountingStore(clock)
    async with gojob.open_manager(store, clock=clock, workers=4, lease=10) as manager:
        manager.register(Job("add", add))
        await manager.wait(await manager.schedule("add", 0, 0))  # settle start-up
        claims, next_dues = store.claims, store.next_dues
        for k in range(20):
            inst = await manager.schedule("add", k, 1)
            assert (await manager.wait(inst)).result == k + 1
            await trio.sleep(0.01)
        assert (store.claims - claims, store.next_dues - next_dues) == (0, 0)


async def test_an_add_whose_claim_came_back_full_still_wakes_the_dispatcher(
    clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    # One worker: the fused claim takes one job of three, so the add's DUE event is not
    # redundant and the other two are claimed as the worker frees up.
    store = DispatchCountingStore(clock)
    async with gojob.open_manager(
        store, clock=clock, workers=1, lease=10, poll_interval=3600
    ) as manager:
        manager.register(Job("add", add))
        added = await manager.schedule_many("add", [(1, 1), (2, 2), (3, 3)])
        with trio.fail_after(5):
            done = [await manager.wait(inst) for inst in added]
        assert [d.result for d in done] == [2, 4, 6]
