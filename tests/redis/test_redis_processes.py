"""Several gojob nodes (OS processes, each running its own manager) on one Redis prefix:
every job runs exactly once, a killed node's work is rescued, a cancel reaches the
node running the attempt, and cron slots fire once across nodes.

The nodes are ``_store_node.py``; the harness is the PostgreSQL one
(``tests/sql/test_postgres_processes.py``), pointed at that script.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from gojob.state import State
from gojob.store.base import HistoryQuery, InstanceQuery
from gojob.store.redis import RedisStore

from ..sql import test_postgres_processes as pg
from ._redis import redis_store


class Nodes(pg.Nodes):
    """The PostgreSQL harness's nodes (``tests/_store_node.py``); ``schema`` is the prefix."""


@asynccontextmanager
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[Nodes, RedisStore]]:
    """Nodes on a fresh prefix, and a store of the test's own on it."""
    async with redis_store() as store:
        assert store.url is not None
        nodes = Nodes(store.url, store.prefix, tmp_path)
        try:
            yield nodes, store
        finally:
            nodes.kill_all()


async def _true_when(value: bool) -> bool:
    await trio.lowlevel.checkpoint()
    return value


@pytest.mark.slow
async def test_ten_thousand_jobs_on_three_processes_run_exactly_once(tmp_path: Path) -> None:
    jobs = 10_000
    async with cluster(tmp_path) as (nodes, store):
        names = ["n1", "n2", "n3"]
        for name in names:
            nodes.start(name, "fast")
        await nodes.ready(*names)
        now = await store.now()
        given = pg.instances(now, "noop", jobs)
        started = time.monotonic()
        await store.add(given)

        async def all_completed() -> bool:
            return await store.counts() == {("noop", State.COMPLETED): jobs}

        await pg.wait_until(all_completed, 60, 0.1)
        elapsed = time.monotonic() - started
        await nodes.stop()
        executed = [uuid for name in names for uuid, _ in nodes.started(name)]
        assert len(executed) == jobs, "a job ran twice, or not at all"
        assert set(executed) == {i.uuid for i in given}
        per_node = {name: len(nodes.started(name)) for name in names}
        assert all(per_node.values()), f"a node ran nothing: {per_node}"
        processing = await store.history(HistoryQuery(states=[State.PROCESSING], limit=jobs + 1))
        assert len(processing) == jobs
        assert set(Counter(r.uuid for r in processing).values()) == {1}
        print(f"\n{jobs} jobs on 3 nodes in {elapsed:.2f}s: {per_node}")


async def test_work_of_a_killed_node_is_rescued_by_another(tmp_path: Path) -> None:
    async with cluster(tmp_path) as (nodes, store):
        nodes.start("victim", "slow")
        await nodes.ready("victim")
        now = await store.now()
        given = pg.instances(now, "work", 6)
        await store.add(given)
        # The victim has 4 workers: 4 attempts in flight, 2 left queued.
        await pg.wait_until(lambda: _true_when(len(nodes.started("victim")) >= 4), 20)
        nodes.start("rescuer", "rescue")
        await nodes.ready("rescuer")
        in_flight = {uuid for uuid, _ in nodes.started("victim")}
        running = await store.lookup_instances(InstanceQuery(states=[State.PROCESSING]))
        assert {i.uuid for i in running if i.node_id == "victim"} == in_flight

        killed_at = time.monotonic()
        nodes.kill("victim")

        async def all_completed() -> bool:
            return await store.counts() == {("work", State.COMPLETED): 6}

        await pg.wait_until(all_completed, 20)
        recovery = time.monotonic() - killed_at
        await nodes.stop()
        executed = nodes.started("rescuer")
        rerun = [uuid for uuid, attempt in executed if attempt == 2]
        assert sorted(rerun) == sorted(in_flight)  # exactly the jobs in flight ran again
        assert sorted(uuid for uuid, _ in executed) == sorted(i.uuid for i in given)
        for uuid in in_flight:
            records = await store.history(HistoryQuery(uuid=uuid))
            states = [r.state for r in records]
            assert states == [
                State.CREATED,
                State.SCHEDULED,
                State.PROCESSING,
                State.TERMINATED,
                State.SCHEDULED,
                State.PROCESSING,
                State.COMPLETED,
            ], states
            assert records[3].details["reason"] == "abandoned"
            assert records[3].details["node"] == "victim"
            assert records[5].details["node"] == "rescuer"
        # The lease is 1 s (extended every 1/3 s until the kill); the rescuer reaps
        # every 0.2 s.
        assert recovery < 5, recovery
        print(f"\nrecovered {len(in_flight)} jobs {recovery:.2f}s after kill -9")


async def test_a_cancel_stops_an_attempt_running_on_another_node_within_a_second(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as (nodes, store):
        nodes.start("runner", "slow")
        await nodes.ready("runner")
        now = await store.now()
        (inst,) = await store.add(pg.instances(now, "work", 1))
        await pg.wait_until(lambda: _true_when(bool(nodes.started("runner"))), 20)

        asked = time.monotonic()
        await store.request_cancel(InstanceQuery(uuid=inst.uuid))

        async def canceled() -> bool:
            got = await store.get(inst.uuid)
            return got is not None and got.state is State.CANCELED

        await pg.wait_until(canceled, 10, 0.01)
        took = time.monotonic() - asked
        await nodes.stop()
        assert nodes.canceled("runner") == [inst.uuid]
        assert took < 1.0, took
        print(f"\ncross-node cancel took {took * 1e3:.0f} ms")


@pytest.mark.slow
async def test_cron_on_three_nodes_fires_each_slot_once(tmp_path: Path) -> None:
    async with cluster(tmp_path) as (nodes, store):
        names = ["c1", "c2", "c3"]
        for name in names:
            nodes.start(name, "cron")
        await nodes.ready(*names)
        await trio.sleep(4.5)  # the slots of the next seconds, on every node
        await nodes.stop()
        schedules = await store.list_schedules()
        assert [s.id for s in schedules] == ["every-second"]
        fired = await store.lookup_instances(InstanceQuery(schedule_id="every-second"))
        slots = Counter(i.fire_time for i in fired)
        assert len(slots) >= 3, slots
        assert set(slots.values()) == {1}, "a slot fired twice"
        executed = Counter(uuid for name in names for uuid, _ in nodes.started(name))
        done = [i.uuid for i in fired if i.state is State.COMPLETED]
        assert done
        assert all(executed[uuid] == 1 for uuid in done)
        assert all(count == 1 for count in executed.values())
