"""schedule() on a node that can run the job now claims it in the same store call
(Store.add_and_claim): no round trip between enqueue and start."""

from __future__ import annotations

from collections.abc import Collection, Sequence

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
