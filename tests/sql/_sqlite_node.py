"""A gojob node for the SQLite multi-process tests (run as a script, not collected).

``python _sqlite_node.py DB DIR NAME MODE``: opens a manager on the SQLite file DB
(already migrated), registers the ``work`` job, touches ``DIR/ready-NAME``, and runs
until ``DIR/stop`` exists (then drains and exits). Every execution start is appended
to ``DIR/started-NAME`` as ``<uuid> <attempt>`` (flushed at once: the file survives a
``kill -9``).

Modes: ``slow`` (``work`` sleeps 60 s: to be killed), ``rescue`` (``work`` returns at
once; reaps expired leases every 0.2 s). Both hold short leases (``LEASE``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

import gojob
from gojob.store.sql import SqliteStore

LEASE = 1.0
"""Short, so that a killed node's work is rescued quickly (extended every lease/3)."""
WORKERS = 4


async def main(db: str, out: Path, name: str, mode: str) -> None:
    started = (out / f"started-{name}").open("a", buffering=1)

    async def work(inst: gojob.Instance) -> None:
        started.write(f"{inst.uuid} {inst.attempts}\n")
        if mode == "slow":
            await trio.sleep(60)

    store = SqliteStore(db, poll_interval=0.1)
    async with gojob.open_manager(
        store,
        node_id=name,
        capture_logging=False,
        drain_grace=0.5,
        poll_interval=0.2,
        workers=WORKERS,
        prefetch=0,
        lease=LEASE,
        reap_interval=0.2 if mode == "rescue" else None,
    ) as manager:
        manager.register(gojob.Job("work", work))
        await trio.Path(out / f"ready-{name}").touch()
        while not await trio.Path(out / "stop").exists():  # noqa: ASYNC110 - set by the test
            await trio.sleep(0.05)


if __name__ == "__main__":
    _, db, out, name, mode = sys.argv
    trio.run(main, db, Path(out), name, mode)
