"""Conformance: the node registry (heartbeat, nodes, remove_node)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import trio

from gojob.store.base import NodeRecord, Store

from . import LEASE, LONG_LEASE, TIMEOUT, wait_past


def node(node_id: str, kinds: list[str] | None = None, workers: int = 4) -> NodeRecord:
    return NodeRecord(
        node_id,
        kinds=kinds if kinds is not None else ["job.a", "job.b"],
        workers=workers,
        host="host-1",
        pid=4242,
        version="1.2.3",
        started_at=datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC),
    )


async def test_heartbeat_stores_the_node_with_store_times(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        before = await store.now()
        stored = await store.heartbeat(node("n1"), LONG_LEASE)
        after = await store.now()
        assert stored.node_id == "n1"
        assert stored.kinds == ["job.a", "job.b"]
        assert (stored.workers, stored.host, stored.pid, stored.version) == (
            4,
            "host-1",
            4242,
            "1.2.3",
        )
        assert stored.started_at == datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
        assert stored.last_seen is not None
        assert stored.expires_at is not None
        assert before - timedelta(milliseconds=1) <= stored.last_seen <= after
        assert stored.expires_at - stored.last_seen == timedelta(seconds=LONG_LEASE)
        [listed] = await store.nodes()
        assert listed == stored


async def test_heartbeat_replaces_the_record_and_moves_its_times(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        first = await store.heartbeat(node("n1"), LONG_LEASE)
        assert first.last_seen is not None
        await wait_past(store, first.last_seen)
        second = await store.heartbeat(node("n1", kinds=["job.c"], workers=8), LONG_LEASE)
        assert second.last_seen is not None
        assert second.last_seen > first.last_seen
        [listed] = await store.nodes()
        assert (listed.kinds, listed.workers) == (["job.c"], 8)
        assert listed.last_seen == second.last_seen


async def test_nodes_lists_the_live_ones_by_id(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.heartbeat(node("n2"), LONG_LEASE)
        await store.heartbeat(node("n1", kinds=[]), LONG_LEASE)
        short = await store.heartbeat(node("n3"), LEASE)
        assert [n.node_id for n in await store.nodes()] == ["n1", "n2", "n3"]
        assert (await store.nodes())[0].kinds == []
        assert short.expires_at is not None
        await wait_past(store, short.expires_at)
        assert [n.node_id for n in await store.nodes()] == ["n1", "n2"]
        # An expired node that announces itself again is back.
        await store.heartbeat(node("n3"), LONG_LEASE)
        assert [n.node_id for n in await store.nodes()] == ["n1", "n2", "n3"]


async def test_remove_node(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.heartbeat(node("n1"), LONG_LEASE)
        await store.heartbeat(node("n2"), LONG_LEASE)
        assert await store.remove_node("n1") is True
        assert await store.remove_node("n1") is False
        assert await store.remove_node("never") is False
        assert [n.node_id for n in await store.nodes()] == ["n2"]


async def test_returned_records_are_snapshots(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        sent = node("n1")
        stored = await store.heartbeat(sent, LONG_LEASE)
        sent.kinds.append("job.z")
        stored.kinds.append("job.y")
        [listed] = await store.nodes()
        assert listed.kinds == ["job.a", "job.b"]
        listed.kinds.clear()
        assert (await store.nodes())[0].kinds == ["job.a", "job.b"]
