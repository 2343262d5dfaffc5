"""A gojob node for the recovery benchmark (run as a script by ``benchmarks.postgres``).

``python -m benchmarks.peers_gojob_node URL SCHEMA DIR NAME ROLE WORKERS LEASE``: opens a
manager on the PostgreSQL schema with ``WORKERS`` workers and a lease of ``LEASE`` seconds
(other settings at their defaults: the reaper runs every lease), registers ``work``,
touches ``DIR/ready-NAME`` and runs until ``DIR/stop`` exists. Every execution start is
appended to ``DIR/started-NAME`` as ``<uuid> <attempt> <unix time>``, flushed at once so the
file survives a ``kill -9``. ROLE ``victim``: ``work`` sleeps (to be killed mid-job);
``rescuer``: ``work`` returns at once. The approach of ``tests/_store_node.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import trio

import gojob
from gojob.store.sql.postgres import PostgresStore


async def main(
    url: str, schema: str, out: Path, name: str, role: str, workers: int, lease: float
) -> None:
    started = (out / f"started-{name}").open("a", buffering=1)

    async def work(inst: gojob.Instance) -> None:
        started.write(f"{inst.uuid} {inst.attempts} {time.time()}\n")
        if role == "victim":
            await trio.sleep(600)

    async with gojob.open_manager(
        PostgresStore(url, schema=schema),
        node_id=name,
        capture_logging=False,
        drain_grace=0.5,
        workers=workers,
        lease=lease,
    ) as manager:
        manager.register(gojob.Job("work", work))
        await trio.Path(out / f"ready-{name}").touch()
        while not await trio.Path(out / "stop").exists():  # noqa: ASYNC110 - set by the parent
            await trio.sleep(0.02)


if __name__ == "__main__":
    _, url, schema, out, name, role, workers, lease = sys.argv
    trio.run(main, url, schema, Path(out), name, role, int(workers), float(lease))
