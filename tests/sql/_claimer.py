"""A claiming process for the multi-process tests (run as a script, not collected).

``python _claimer.py DB OUT DIR``: opens the SQLite store at DB (migrating it if
needed), signals ``DIR/ready-<pid>``, waits for ``DIR/go``, then claims batches and
finishes them until nothing is left, writing each claimed uuid to OUT, one a line.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import trio

from gojob.state import State
from gojob.store.base import Outcome
from gojob.store.sql import SqliteStore

BATCH = 25
PROCESSES = 3
"""As many as tests/sql/test_processes.py starts."""


def wait_for_go(sync: Path) -> None:
    deadline = time.monotonic() + 60
    while not (sync / "go").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("no go signal")
        time.sleep(0.01)


def wait_for_all_first(sync: Path) -> None:
    deadline = time.monotonic() + 60
    while len(list(sync.glob("first-*"))) < PROCESSES:
        if time.monotonic() > deadline:
            raise TimeoutError("not every claimer got a first batch")
        time.sleep(0.01)


async def run(db: str, out: Path, sync: Path) -> None:
    node = f"node-{os.getpid()}"
    async with SqliteStore(db, auto_migrate=True) as store:
        await trio.Path(sync / f"ready-{os.getpid()}").touch()
        await trio.to_thread.run_sync(wait_for_go, sync)
        claimed: list[str] = []
        first = True
        while batch := await store.claim(node, None, BATCH, 60):
            claimed.extend(i.uuid for i in batch)
            await store.finish_many(
                [(i.claim_token or "", Outcome(State.COMPLETED, worker=node)) for i in batch]
            )
            if first:
                # Every process holds a batch before any goes on: on a loaded machine one
                # process could otherwise wake after the others had drained the queue.
                first = False
                await trio.Path(sync / f"first-{os.getpid()}").touch()
                await trio.to_thread.run_sync(wait_for_all_first, sync)
    await trio.Path(out).write_text("".join(f"{uuid}\n" for uuid in claimed))


if __name__ == "__main__":
    trio.run(run, sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
