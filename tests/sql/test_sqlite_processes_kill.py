"""Two gojob processes on one SQLite file: one is killed (``kill -9``) mid-job, and the
other rescues exactly the attempts that were in flight, once their lease runs out.

The nodes are ``_sqlite_node.py``; each writes what it executed to a file in a
temporary directory, and the database is checked directly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from gojob.instance import Instance, new_uuid
from gojob.state import State
from gojob.store.base import HistoryQuery, InstanceQuery
from gojob.store.sql import SqliteStore, migrate

from ._sqlite_node import LEASE, WORKERS

NODE = Path(__file__).with_name("_sqlite_node.py")
START_TIMEOUT = 60.0
JOBS = WORKERS + 2
"""The victim runs ``WORKERS`` attempts; the rest stay queued for the other process."""


class Processes:
    """The node processes of one test, on the SQLite file ``db``."""

    def __init__(self, db: Path, out: Path) -> None:
        self.db = db
        self.out = out
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, mode: str) -> None:
        command = [sys.executable, str(NODE), str(self.db), str(self.out), name, mode]
        self.processes[name] = subprocess.Popen(command, stderr=subprocess.PIPE)

    async def ready(self, name: str) -> None:
        process = self.processes[name]
        with trio.fail_after(START_TIMEOUT):
            while not (self.out / f"ready-{name}").exists():
                if process.poll() is not None:
                    _, err = process.communicate()
                    raise AssertionError(f"node {name} died: {err.decode()}")
                await trio.sleep(0.05)

    def started(self, name: str) -> list[tuple[str, int]]:
        path = self.out / f"started-{name}"
        lines = path.read_text().split("\n") if path.exists() else []
        return [(uuid, int(attempt)) for uuid, attempt in (ln.split() for ln in lines if ln)]

    def kill(self, name: str) -> None:
        process = self.processes.pop(name)
        os.kill(process.pid, signal.SIGKILL)
        process.communicate()

    async def stop(self) -> None:
        (self.out / "stop").touch()
        with trio.fail_after(30):
            for name, process in list(self.processes.items()):
                _, err = await trio.to_thread.run_sync(process.communicate)
                assert process.returncode == 0, f"node {name} failed: {err.decode()}"
        self.processes.clear()

    def kill_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
            process.communicate()


async def wait_until(predicate: Callable[[], Awaitable[bool]], timeout: float) -> None:
    with trio.fail_after(timeout):
        while not await predicate():  # noqa: ASYNC110 - polls another process's work
            await trio.sleep(0.05)


async def test_jobs_in_flight_in_a_killed_process_are_rescued_by_the_other(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    await trio.to_thread.run_sync(lambda: migrate.upgrade(f"sqlite:///{db}"))
    nodes = Processes(db, tmp_path)
    try:
        async with SqliteStore(db) as store:
            nodes.start("victim", "slow")
            await nodes.ready("victim")
            now = await store.now()
            given = [
                Instance(new_uuid(), "work", created_at=now, scheduled_at=now) for _ in range(JOBS)
            ]
            await store.add(given)

            async def victim_busy() -> bool:
                await trio.lowlevel.checkpoint()
                return len(nodes.started("victim")) >= WORKERS

            await wait_until(victim_busy, 20)
            # The second process runs what the victim left queued, alongside it.
            nodes.start("rescuer", "rescue")
            await nodes.ready("rescuer")
            in_flight = {uuid for uuid, _ in nodes.started("victim")}
            assert len(in_flight) == WORKERS
            running = await store.lookup_instances(InstanceQuery(states=[State.PROCESSING]))
            assert {i.uuid for i in running if i.node_id == "victim"} == in_flight

            killed_at = time.monotonic()
            nodes.kill("victim")

            async def all_completed() -> bool:
                return await store.counts() == {("work", State.COMPLETED): JOBS}

            await wait_until(all_completed, 20)
            recovery = time.monotonic() - killed_at
            await nodes.stop()

            executed = nodes.started("rescuer")
            rerun = sorted(uuid for uuid, attempt in executed if attempt == 2)
            assert rerun == sorted(in_flight)  # exactly the jobs in flight ran again
            # It ran the rest once, and nothing else.
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
                abandoned = records[3]
                assert abandoned.details["reason"] == "abandoned"
                assert abandoned.details["node"] == "victim"
                assert records[5].details["node"] == "rescuer"
                inst = await store.get(uuid)
                assert inst is not None
                assert inst.attempts == 2
            for inst in given:
                if inst.uuid not in in_flight:
                    got = await store.get(inst.uuid)
                    assert got is not None
                    assert (got.attempts, got.node_id) == (1, "rescuer")
            # Rescued once the lease (extended every LEASE/3 until the kill) ran out.
            assert LEASE / 2 < recovery < LEASE + 4, recovery
            print(f"\nSQLite: recovered {len(in_flight)} jobs {recovery:.2f}s after kill -9")
    finally:
        nodes.kill_all()
