"""The node registry seen from managers: announcements, goodbyes, expiry and the kinds
that no live node runs."""

from __future__ import annotations

from datetime import timedelta

import trio
import trio.testing
from trio.testing import MockClock

import gojob
from gojob import Job, NodeRecord


async def noop() -> None:
    return None


async def settled() -> None:
    """Let every task run until all are blocked (the heartbeat included)."""
    await trio.testing.wait_all_tasks_blocked()


async def test_nodes_announce_their_kinds_and_workers_and_leave_on_exit(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    async with gojob.open_manager(store, clock=clock, node_id="a", workers=3, lease=9) as a:
        a.register(Job("add", noop))
        async with gojob.open_manager(store, clock=clock, node_id="b", workers=2, lease=9) as b:
            b.register(Job("mul", noop))
            await settled()
            nodes = await a.nodes()
            assert [(n.node_id, n.kinds, n.workers) for n in nodes] == [
                ("a", ["add"], 3),
                ("b", ["mul"], 2),
            ]
            assert all(n.version == gojob.__version__ and n.pid > 0 for n in nodes)
            # A change is announced at once, not at the next beat.
            b.register(Job("div", noop))
            await b.resize(5)
            await settled()
            assert [(n.kinds, n.workers) for n in await a.nodes() if n.node_id == "b"] == [
                (["div", "mul"], 5)
            ]
        # b said goodbye on exit.
        assert [n.node_id for n in await a.nodes()] == ["a"]


async def test_the_heartbeat_keeps_a_node_alive_past_its_ttl(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    async with gojob.open_manager(store, clock=clock, node_id="a", lease=9) as a:
        first = (await a.nodes())[0]
        await trio.sleep(60)  # many times the 9 s ttl
        [again] = await a.nodes()
        assert again.node_id == "a"
        assert first.last_seen is not None
        assert again.last_seen is not None
        assert again.last_seen - first.last_seen >= timedelta(seconds=50)
        assert again.started_at == first.started_at


async def test_a_node_that_stops_announcing_itself_expires(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    async with gojob.open_manager(store, clock=clock, node_id="a", lease=9) as a:
        # A node killed without a goodbye: its last heartbeat, then silence.
        await store.heartbeat(NodeRecord("dead", kinds=["add"], workers=1), ttl=9)
        assert [n.node_id for n in await a.nodes()] == ["a", "dead"]
        await trio.sleep(10)
        assert [n.node_id for n in await a.nodes()] == ["a"]


async def test_unserved_kinds_are_those_no_live_node_registered(
    store: gojob.MemoryStore, clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    async with gojob.open_manager(store, clock=clock, node_id="a", lease=9) as a:
        a.register(Job("report", noop))
        a.register(Job("mail", noop))
        await a.schedule("report", after=3600)
        await a.schedule("report", after=3600)
        await a.schedule("mail", after=3600)
        assert await a.unserved_kinds() == {}
        a.unregister("report")
        a.unregister("mail")
        assert await a.unserved_kinds() == {"mail": 1, "report": 2}
        # Another live node that runs "report" serves it.
        async with gojob.open_manager(store, clock=clock, node_id="b", lease=9) as b:
            b.register(Job("report", noop))
            await settled()
            assert await a.unserved_kinds() == {"mail": 1}
        assert await a.unserved_kinds() == {"mail": 1, "report": 2}


async def test_a_failing_heartbeat_does_not_stop_the_manager(
    clock: gojob.Clock, autojump_clock: MockClock
) -> None:
    class FlakyRegistry(gojob.MemoryStore):
        beats = 0

        async def heartbeat(self, node: NodeRecord, ttl: float) -> NodeRecord:
            self.beats += 1
            if self.beats % 2:
                raise gojob.StoreUnavailable("registry down")
            return await super().heartbeat(node, ttl)

    store = FlakyRegistry(clock=clock)
    async with gojob.open_manager(store, clock=clock, node_id="a", lease=9) as a:
        a.register(Job("add", noop))
        done = await a.wait(await a.schedule("add"))
        assert done.state is gojob.State.COMPLETED
        await trio.sleep(10)
        assert store.beats >= 3
        assert [n.node_id for n in await a.nodes()] == ["a"]
