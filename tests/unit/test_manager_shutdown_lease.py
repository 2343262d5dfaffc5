"""Leaving the manager drains; a node that loses its lease is rescued by another node."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractAsyncContextManager

import pytest
import trio
from trio.testing import MockClock

import gojob
from gojob import Job, State
from gojob.store.base import HistoryQuery, LeaseReply


async def test_drain_lets_a_short_attempt_finish(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    started = trio.Event()

    async def short() -> str:
        started.set()
        await trio.sleep(3)
        return "finished in the grace period"

    async with gojob.open_manager(store, clock=clock, drain_grace=5) as manager:
        manager.register(Job("short", short))
        inst = await manager.schedule("short")
        with trio.fail_after(5):
            await started.wait()
        leaving = trio.current_time()
    assert trio.current_time() - leaving == pytest.approx(3, abs=0.5)
    done = await store.get(inst.uuid)
    assert done is not None
    assert done.state is State.COMPLETED
    assert done.result == "finished in the grace period"


async def test_drain_releases_an_attempt_that_outlives_the_grace(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    started = trio.Event()
    cancelled: list[str] = []

    async def long(inst: gojob.Instance) -> str:
        if inst.attempts == 1:
            started.set()
            try:
                await trio.sleep(1000)
            finally:
                cancelled.append(inst.node_id or "")
        return f"done on {inst.node_id}"

    job = Job("long", long)
    async with gojob.open_manager(store, clock=clock, node_id="a", drain_grace=5) as first:
        first.register(job)
        inst = await first.schedule("long")
        with trio.fail_after(5):
            await started.wait()
        leaving = trio.current_time()
    assert trio.current_time() - leaving == pytest.approx(5, abs=0.5)
    assert cancelled == ["a"]
    released = await store.get(inst.uuid)
    assert released is not None
    assert released.state is State.SCHEDULED
    assert released.failures == 0
    history = await store.history(HistoryQuery(uuid=inst.uuid))
    assert history[-1].state is State.SCHEDULED
    assert history[-1].details["reason"] == "released"

    async with gojob.open_manager(store, clock=clock, node_id="b") as second:
        second.register(job)
        done = await second.wait(inst, timeout=10)
    assert done.state is State.COMPLETED
    assert done.result == "done on b"
    assert done.attempts == 2


async def test_leaving_with_an_error_does_not_wait_for_the_grace(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    started = trio.Event()

    async def long() -> None:
        started.set()
        await trio.sleep(1000)

    leaving = 0.0

    async def fail_inside() -> gojob.Instance:
        nonlocal leaving
        async with gojob.open_manager(store, clock=clock, drain_grace=60) as manager:
            manager.register(Job("long", long))
            inst = await manager.schedule("long")
            with trio.fail_after(5):
                await started.wait()
            leaving = trio.current_time()
            raise KeyError(inst.uuid)

    # The application's error comes out as raised, not wrapped in an ExceptionGroup.
    with pytest.raises(KeyError) as caught:
        await fail_inside()
    assert trio.current_time() - leaving < 1
    error = caught.value
    released = await store.get(error.args[0])
    assert released is not None
    assert released.state is State.SCHEDULED


class Partition:
    """Cuts one node off the store: its claims and lease extensions fail."""

    def __init__(self, store: gojob.MemoryStore, node_id: str) -> None:
        self.node_id = node_id
        self.active = False
        self._claim = store.claim
        self._extend = store.extend_leases

    async def claim(
        self, node_id: str, kinds: Collection[str] | None, limit: int, lease: float
    ) -> list[gojob.Instance]:
        if self.active and node_id == self.node_id:
            raise gojob.StoreUnavailable("partitioned")
        return await self._claim(node_id, kinds, limit, lease)

    async def extend_leases(
        self, node_id: str, tokens: Collection[str], lease: float
    ) -> LeaseReply:
        if self.active and node_id == self.node_id:
            raise gojob.StoreUnavailable("partitioned")
        return await self._extend(node_id, tokens, lease)


async def test_lease_loss_is_rescued_by_another_node(
    store: gojob.MemoryStore,
    clock: gojob.Clock,
    autojump_clock: MockClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    partition = Partition(store, "a")
    monkeypatch.setattr(store, "claim", partition.claim)
    monkeypatch.setattr(store, "extend_leases", partition.extend_leases)
    started_on_a = trio.Event()
    stopped_on_a = trio.Event()

    async def work(inst: gojob.Instance) -> str:
        if inst.node_id == "a":
            started_on_a.set()
            try:
                await trio.sleep_forever()
            finally:
                stopped_on_a.set()
        return f"done on {inst.node_id}"

    def node(node_id: str) -> AbstractAsyncContextManager[gojob.Manager]:
        return gojob.open_manager(
            store, node_id=node_id, clock=clock, lease=3, poll_interval=1, drain_grace=0
        )

    async with node("a") as a:
        a.register(Job("work", work, max_retries=0))
        inst = await a.schedule("work")
        with trio.fail_after(5):
            await started_on_a.wait()
        partition.active = True  # node a can no longer extend its lease

        async with node("b") as b:
            b.register(Job("work", work, max_retries=0))
            done = await b.wait(inst, timeout=30)
            assert done.state is State.COMPLETED
            assert done.result == "done on b"
            assert done.attempts == 2
            assert done.rescues == 1
            history = await b.history(uuid=inst.uuid)
            assert [(r.state, r.details.get("reason")) for r in history[2:]] == [
                (State.PROCESSING, None),
                (State.TERMINATED, "abandoned"),
                (State.SCHEDULED, "rescue"),
                (State.PROCESSING, None),
                (State.COMPLETED, None),
            ]
            assert history[3].details["node"] == "a"

            # A node whose lease ran out stops its attempt, partitioned or not.
            with trio.fail_after(10):
                await stopped_on_a.wait()
            partition.active = False
            await trio.sleep(5)  # a's keeper runs again: nothing of a's is written
            final = await b.get(inst.uuid)
            assert final.state is State.COMPLETED
            assert final.result == "done on b"
            assert len(await b.history(uuid=inst.uuid)) == len(history)
