"""Fencing and outages on PostgreSQL.

* A node frozen (``SIGSTOP``) mid-attempt loses its lease to another node's reaper;
  once resumed (``SIGCONT``) its stale finish is refused and changes nothing.
* A restart of the PostgreSQL server while a manager processes a queue loses no job
  and runs none twice (marked ``pg_restart``: it restarts the machine's server).

The nodes are ``_store_node.py`` (see its ``stall`` and ``rescue`` modes).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio

import gojob
from gojob.errors import StoreError
from gojob.instance import Instance, new_uuid
from gojob.state import State
from gojob.store.base import HistoryQuery
from gojob.store.sql.postgres import PostgresStore

from ._postgres import fresh_schema, sql

NODE = Path(__file__).parents[1] / "_store_node.py"
START_TIMEOUT = 60.0


class Nodes:
    """The ``_store_node.py`` processes of one test."""

    def __init__(self, url: str, schema: str, out: Path) -> None:
        self.url = url
        self.schema = schema
        self.out = out
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, mode: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, str(NODE), self.url, self.schema, str(self.out), name, mode]
        process = self.processes[name] = subprocess.Popen(command, stderr=subprocess.PIPE)
        return process

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

    def log(self, name: str) -> str:
        path = self.out / f"log-{name}"
        return path.read_text() if path.exists() else ""

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
                process.send_signal(signal.SIGCONT)  # a stopped process dies only once resumed
                process.kill()
            process.communicate()


@asynccontextmanager
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[Nodes, PostgresStore]]:
    """Nodes on a fresh schema, and a store of the test's own on it."""
    async with fresh_schema() as (url, schema):
        nodes = Nodes(url, schema, tmp_path)
        try:
            async with PostgresStore(url, schema=schema) as store:
                yield nodes, store
        finally:
            nodes.kill_all()


def instances(now: datetime, kind: str, n: int) -> list[Instance]:
    return [Instance(new_uuid(), kind, created_at=now, scheduled_at=now) for _ in range(n)]


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout: float, step: float = 0.05
) -> None:
    with trio.fail_after(timeout):
        while not await predicate():  # noqa: ASYNC110 - polls another process's work
            await trio.sleep(step)


def snapshot(inst: Instance | None) -> tuple[Any, ...]:
    assert inst is not None
    return (
        inst.state,
        inst.attempts,
        inst.result,
        inst.node_id,
        inst.worker,
        inst.claim_token,
        inst.finished_at,
    )


# -- SIGSTOP: a stale attempt cannot commit ------------------------------------------------------


async def test_a_stopped_node_whose_lease_was_reaped_cannot_commit_its_stale_attempt(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as (nodes, store):
        stale = nodes.start("stale", "stall")
        await nodes.ready("stale")
        now = await store.now()
        (inst,) = await store.add(instances(now, "work", 1))

        async def stale_started() -> bool:
            await trio.lowlevel.checkpoint()
            return bool(nodes.started("stale"))

        await wait_until(stale_started, 20, 0.01)
        # The attempt blocks its node for _store_node.STALL seconds: freeze it meanwhile.
        os.kill(stale.pid, signal.SIGSTOP)
        try:
            running = await store.get(inst.uuid)
            assert running is not None
            assert (running.state, running.node_id, running.attempts) == (
                State.PROCESSING,
                "stale",
                1,
            ), "the stale node finished before it was stopped (a very slow machine?)"

            # Another node (1 s lease, reaping every 0.2 s) reaps the frozen node's
            # lease once it runs out, and runs the attempt again.
            nodes.start("rescuer", "rescue")
            await nodes.ready("rescuer")

            async def completed() -> bool:
                got = await store.get(inst.uuid)
                return got is not None and got.state is State.COMPLETED

            await wait_until(completed, 20)
            before = snapshot(await store.get(inst.uuid))
            history_before = await store.history(HistoryQuery(uuid=inst.uuid))
        finally:
            os.kill(stale.pid, signal.SIGCONT)

        # Resumed, the stale node returns its result at once and tries to finish: the
        # store refuses the finish (its claim token no longer holds the lease).
        refused = f"lease of {inst.uuid} lost before finishing; attempt discarded"

        async def stale_finish_refused() -> bool:
            await trio.lowlevel.checkpoint()
            return refused in nodes.log("stale")

        await wait_until(stale_finish_refused, 20)
        await nodes.stop()

        after = await store.get(inst.uuid)
        assert snapshot(after) == before
        assert after is not None
        assert (after.state, after.attempts, after.node_id) == (State.COMPLETED, 2, "rescuer")
        assert after.result is None, "the stale node's late result was recorded"
        history = await store.history(HistoryQuery(uuid=inst.uuid))
        assert history == history_before
        states = [r.state for r in history]
        assert states == [
            State.CREATED,
            State.SCHEDULED,
            State.PROCESSING,
            State.TERMINATED,
            State.SCHEDULED,
            State.PROCESSING,
            State.COMPLETED,
        ], states
        assert states.count(State.COMPLETED) == 1
        assert history[2].details["node"] == "stale"
        assert history[3].details["reason"] == "abandoned"
        assert history[3].details["node"] == "stale"
        assert history[5].details["node"] == "rescuer"
        assert all("late result" not in repr(r.details) for r in history)
        # Each node ran it once: the stale node its first attempt, the rescuer the second.
        assert nodes.started("stale") == [(inst.uuid, 1)]
        assert nodes.started("rescuer") == [(inst.uuid, 2)]


# -- a PostgreSQL restart during processing ------------------------------------------------------

RESTART_JOBS = 2_000
RESTART_TIMEOUT = 60.0


def _restart_command() -> list[str]:
    clusters = Path("/etc/postgresql")
    if shutil.which("pg_ctlcluster") is None or not clusters.is_dir():
        pytest.skip("no pg_ctlcluster on this machine: cannot restart PostgreSQL")
    (version,) = sorted(p.name for p in clusters.iterdir())
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"]


def _accepts_connections(url: str) -> bool:
    try:
        sql(url, "SELECT 1")
    except (StoreError, psycopg.Error):
        return False
    return True


async def _wait_for_server(url: str, command: list[str]) -> None:
    """Wait until the server accepts connections; start it if it is down."""
    with trio.fail_after(RESTART_TIMEOUT):
        if not await trio.to_thread.run_sync(_accepts_connections, url):
            await trio.run_process([*command[:-1], "start"], check=False)
        while not await trio.to_thread.run_sync(_accepts_connections, url):  # noqa: ASYNC110
            await trio.sleep(0.1)


@pytest.mark.pg_restart
async def test_a_postgresql_restart_during_processing_loses_and_repeats_nothing() -> None:
    command = _restart_command()
    executed: Counter[str] = Counter()

    async def work(inst: gojob.Instance) -> None:
        executed[inst.uuid] += 1
        await trio.sleep(0.02)  # 10 workers: under 500 jobs/s, so the restart lands mid-way

    async with fresh_schema() as (url, schema):
        try:
            async with (
                PostgresStore(url, schema=schema, connect_timeout=2.0, poll_interval=1.0) as store,
                gojob.open_manager(
                    store,
                    node_id="survivor",
                    workers=10,
                    # Longer than the outage: no attempt loses its lease, none runs twice.
                    lease=10.0,
                    reap_interval=1.0,
                    poll_interval=0.5,
                    drain_grace=5.0,
                    capture_logging=False,
                ) as manager,
            ):
                manager.register(gojob.Job("work", work))
                now = await store.now()
                given = await store.add(instances(now, "work", RESTART_JOBS))
                booted = sql(url, "SELECT pg_postmaster_start_time()")

                async def some_done() -> bool:
                    await trio.lowlevel.checkpoint()
                    return len(executed) >= RESTART_JOBS // 10

                await wait_until(some_done, 30, 0.01)
                with trio.fail_after(RESTART_TIMEOUT):
                    await trio.run_process(command, capture_stdout=True, capture_stderr=True)
                await _wait_for_server(url, command)
                done_at_restart = len(executed)
                assert sql(url, "SELECT pg_postmaster_start_time()") != booted

                async def all_completed() -> bool:
                    try:
                        return await store.counts() == {("work", State.COMPLETED): RESTART_JOBS}
                    except StoreError:
                        return False  # a pooled connection from before the restart

                await wait_until(all_completed, 30, 0.1)
                history = await store.history(
                    HistoryQuery(states=[State.COMPLETED], limit=RESTART_JOBS + 1)
                )
        finally:
            # Whatever happened, leave the server running for the next tests.
            with trio.CancelScope(shield=True):
                await _wait_for_server(url, command)

    assert done_at_restart < RESTART_JOBS, "the restart did not happen during processing"
    assert set(executed) == {i.uuid for i in given}, "a job was lost"
    assert set(executed.values()) == {1}, "a job ran twice"
    completed = Counter(r.uuid for r in history)
    assert len(completed) == RESTART_JOBS
    assert set(completed.values()) == {1}
    print(f"\nPostgreSQL restart: {done_at_restart} of {RESTART_JOBS} jobs done when it was back")
