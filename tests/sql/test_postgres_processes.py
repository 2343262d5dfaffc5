"""Several gojob nodes (OS processes, each running its own manager) on one PostgreSQL
schema: every job runs exactly once, a killed node's work is rescued, a cancel
reaches the node running the attempt, and cron slots fire once across nodes.

The nodes are ``_store_node.py``; each writes what it executed to files in a temporary
directory, and the database is checked directly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from pathlib import Path

import trio

from gojob.instance import Instance, new_uuid
from gojob.state import State
from gojob.store.base import HistoryQuery, InstanceQuery
from gojob.store.sql.postgres import PostgresStore

from ._postgres import fresh_schema

NODE = Path(__file__).parents[1] / "_store_node.py"
START_TIMEOUT = 60.0


class Nodes:
    """The node processes of one test."""

    def __init__(self, url: str, schema: str, out: Path) -> None:
        self.url = url
        self.schema = schema
        self.out = out
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, mode: str) -> None:
        command = [sys.executable, str(NODE), self.url, self.schema, str(self.out), name, mode]
        self.processes[name] = subprocess.Popen(command, stderr=subprocess.PIPE)

    async def ready(self, *names: str) -> None:
        deadline = trio.current_time() + START_TIMEOUT
        while not all((self.out / f"ready-{name}").exists() for name in names):
            for name in names:
                process = self.processes[name]
                if process.poll() is not None:
                    _, err = process.communicate()
                    raise AssertionError(f"node {name} died: {err.decode()}")
            assert trio.current_time() < deadline, "the nodes did not start"
            await trio.sleep(0.05)

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        os.kill(process.pid, signal.SIGKILL)
        process.communicate()

    def started(self, name: str) -> list[tuple[str, int]]:
        path = self.out / f"started-{name}"
        lines = path.read_text().split("\n") if path.exists() else []
        return [(uuid, int(attempt)) for uuid, attempt in (ln.split() for ln in lines if ln)]

    def canceled(self, name: str) -> list[str]:
        path = self.out / f"canceled-{name}"
        return path.read_text().split()[::2] if path.exists() else []

    async def stop(self) -> None:
        (self.out / "stop").touch()
        for name, process in list(self.processes.items()):
            _, err = await trio.to_thread.run_sync(process.communicate)
            assert process.returncode == 0, f"node {name} failed: {err.decode()}"
        self.processes.clear()

    def kill_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.communicate()


@contextmanager
def _cleanup(nodes: Nodes) -> Iterator[None]:
    try:
        yield
    finally:
        nodes.kill_all()


@asynccontextmanager
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[Nodes, PostgresStore]]:
    """Nodes on a fresh schema, and a store of the test's own on it."""
    async with fresh_schema() as (url, schema):
        nodes = Nodes(url, schema, tmp_path)
        with _cleanup(nodes):
            async with PostgresStore(url, schema=schema) as store:
                yield nodes, store


def instances(now: datetime, kind: str, n: int) -> list[Instance]:
    return [Instance(new_uuid(), kind, created_at=now, scheduled_at=now) for _ in range(n)]


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout: float, step: float = 0.05
) -> None:
    with trio.fail_after(timeout):
        while not await predicate():  # noqa: ASYNC110 - polls another process's work
            await trio.sleep(step)


async def test_ten_thousand_jobs_on_three_processes_run_exactly_once(tmp_path: Path) -> None:
    jobs = 10_000
    async with cluster(tmp_path) as (nodes, store):
        names = ["n1", "n2", "n3"]
        for name in names:
            nodes.start(name, "fast")
        await nodes.ready(*names)
        now = await store.now()
        given = instances(now, "noop", jobs)
        started = time.monotonic()
        await store.add(given)

        async def all_completed() -> bool:
            return await store.counts() == {("noop", State.COMPLETED): jobs}

        await wait_until(all_completed, 60, 0.1)
        elapsed = time.monotonic() - started
        await nodes.stop()
        executed = [uuid for name in names for uuid, _ in nodes.started(name)]
        assert len(executed) == jobs, "a job ran twice, or not at all"
        assert set(executed) == {i.uuid for i in given}
        per_node = {name: len(nodes.started(name)) for name in names}
        assert all(per_node.values()), f"a node ran nothing: {per_node}"
        processing = await store.history(HistoryQuery(states=[State.PROCESSING], limit=jobs + 1))
        assert set(Counter(r.uuid for r in processing).values()) == {1}
        print(f"\n{jobs} jobs on 3 nodes in {elapsed:.2f}s: {per_node}")


async def test_work_of_a_killed_node_is_rescued_by_another(tmp_path: Path) -> None:
    async with cluster(tmp_path) as (nodes, store):
        nodes.start("victim", "slow")
        await nodes.ready("victim")
        now = await store.now()
        given = instances(now, "work", 6)
        await store.add(given)
        # The victim has 4 workers: 4 attempts in flight, 2 left queued.
        await wait_until(lambda: _count_async(len(nodes.started("victim")) >= 4), 20)
        nodes.start("rescuer", "rescue")
        await nodes.ready("rescuer")
        in_flight = {uuid for uuid, _ in nodes.started("victim")}
        running = await store.lookup_instances(InstanceQuery(states=[State.PROCESSING]))
        assert {i.uuid for i in running if i.node_id == "victim"} == in_flight

        killed_at = time.monotonic()
        nodes.kill("victim")

        async def all_completed() -> bool:
            return await store.counts() == {("work", State.COMPLETED): 6}

        await wait_until(all_completed, 20)
        recovery = time.monotonic() - killed_at
        await nodes.stop()
        rerun = [uuid for uuid, attempt in nodes.started("rescuer") if attempt == 2]
        assert sorted(rerun) == sorted(in_flight)  # exactly the jobs in flight ran again
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
            abandoned = records[3]
            assert abandoned.details["reason"] == "abandoned"
            assert abandoned.details["node"] == "victim"
            assert records[5].details["node"] == "rescuer"
        # The lease is 1 s; the rescuer reaps every 0.2 s.
        assert recovery < 5, recovery
        print(f"\nrecovered {len(in_flight)} jobs {recovery:.2f}s after kill -9")


async def _count_async(value: bool) -> bool:
    await trio.lowlevel.checkpoint()
    return value


async def test_a_cancel_stops_an_attempt_running_on_another_node_within_a_second(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as (nodes, store):
        nodes.start("runner", "slow")
        await nodes.ready("runner")
        now = await store.now()
        (inst,) = await store.add(instances(now, "work", 1))
        await wait_until(lambda: _count_async(bool(nodes.started("runner"))), 20)

        asked = time.monotonic()
        await store.request_cancel(InstanceQuery(uuid=inst.uuid))

        async def canceled() -> bool:
            got = await store.get(inst.uuid)
            return got is not None and got.state is State.CANCELED

        await wait_until(canceled, 10, 0.01)
        took = time.monotonic() - asked
        await nodes.stop()
        assert nodes.canceled("runner") == [inst.uuid]
        assert took < 1.0, took
        print(f"\ncross-node cancel took {took * 1e3:.0f} ms")


async def test_cron_on_three_nodes_fires_each_slot_once(tmp_path: Path) -> None:
    async with cluster(tmp_path) as (nodes, store):
        names = ["c1", "c2", "c3"]
        for name in names:
            nodes.start(name, "cron")
        await nodes.ready(*names)
        await trio.sleep(4.5)
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
