"""Several OS processes on one SQLite file: each instance claimed exactly once, and
concurrent start-ups migrating one fresh file."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import trio

from gojob.state import State
from gojob.store.base import HistoryQuery
from gojob.store.sql import SqliteStore, migrate

from ..store import make_instance

CLAIMER = Path(__file__).with_name("_claimer.py")
PROCESSES = 3
JOBS = 2_000


def start_claimers(db: Path, workdir: Path) -> list[tuple[subprocess.Popen[bytes], Path]]:
    started = []
    for n in range(PROCESSES):
        out = workdir / f"claimed-{n}.txt"
        command = [sys.executable, str(CLAIMER), str(db), str(out), str(workdir)]
        started.append((subprocess.Popen(command, stderr=subprocess.PIPE), out))
    # Let them all open the store first, so that they claim at the same time.
    deadline = time.monotonic() + 60
    while len(list(workdir.glob("ready-*"))) < PROCESSES:
        assert time.monotonic() < deadline, "claimer processes did not start"
        assert all(p.poll() is None for p, _ in started), "a claimer process died"
        time.sleep(0.02)
    (workdir / "go").touch()
    return started


def wait_for(started: list[tuple[subprocess.Popen[bytes], Path]]) -> list[list[str]]:
    claimed = []
    for process, out in started:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr.decode()
        claimed.append(out.read_text().split())
    return claimed


async def test_three_processes_claim_every_instance_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    await trio.to_thread.run_sync(lambda: migrate.upgrade(f"sqlite:///{db}"))
    async with SqliteStore(db) as store:
        now = await store.now()
        given = [make_instance(now, args=[i]) for i in range(JOBS)]
        for start in range(0, JOBS, 500):
            await store.add(given[start : start + 500])

        started = await trio.to_thread.run_sync(start_claimers, db, tmp_path)
        claimed = await trio.to_thread.run_sync(wait_for, started)

        everything = [uuid for mine in claimed for uuid in mine]
        assert len(everything) == len(set(everything)), "an instance was claimed twice"
        assert set(everything) == {g.uuid for g in given}
        assert all(mine for mine in claimed), "a process claimed nothing: no concurrency"
        assert await store.counts() == {("job.a", State.COMPLETED): JOBS}
        processing = await store.history(HistoryQuery(states=[State.PROCESSING], limit=JOBS + 1))
        per_instance = Counter(r.uuid for r in processing)
        assert len(per_instance) == JOBS
        assert set(per_instance.values()) == {1}


def test_processes_migrating_one_fresh_file_at_once(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    # Each claimer opens the store with auto_migrate=True on the same empty file.
    started = start_claimers(db, tmp_path)
    claimed = wait_for(started)
    assert claimed == [[]] * PROCESSES
    assert migrate.check(f"sqlite:///{db}")
