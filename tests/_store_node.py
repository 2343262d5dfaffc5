"""A gojob node for the multi-process tests of every networked store (run as a script,
not collected).

``python _store_node.py URL SCOPE DIR NAME MODE``: opens a manager on the store of URL
(``postgresql://``: SCOPE is the schema; ``redis://``/``valkey://`` and ``etcd://``:
SCOPE is the key prefix), registers the jobs below, touches ``DIR/ready-NAME``, and
runs until ``DIR/stop`` exists (then drains and exits). Every execution start is
appended to ``DIR/started-NAME`` as ``<uuid> <attempt>`` (flushed at once: the file
survives a ``kill -9``), and every cancelled attempt to ``DIR/canceled-NAME``.

Modes: ``fast`` (the ``noop`` and ``tick`` jobs return at once; big batches),
``slow`` (``work`` sleeps 60 s: to be killed or cancelled), ``rescue`` (``work``
returns at once, a short lease and reap interval), ``cron`` (declares the ``tick``
schedule, every second, like every other node), ``stall`` (``work`` blocks the
whole process for ``STALL`` seconds, a stretch in which the test ``SIGSTOP``s it, then
returns ``"late result of NAME"``; a lease of ``STALL_LEASE``; the manager's warnings
go to ``DIR/log-NAME``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import trio

import gojob
from gojob.store.base import Store

LEASE = 1.0
"""Short, so that a killed node's work is rescued quickly (extended every lease/3)."""
STALL = 1.0
"""How long a ``stall`` node's ``work`` blocks: well within its lease unless stopped."""
STALL_LEASE = 2.0
"""A ``stall`` node's lease: at least ``STALL_LEASE * 2/3`` left when ``work`` blocks."""


class Node:
    def __init__(self, out: Path, name: str, mode: str) -> None:
        self.name = name
        self.mode = mode
        self.started = (out / f"started-{name}").open("a", buffering=1)
        self.canceled = (out / f"canceled-{name}").open("a", buffering=1)

    def record(self, inst: gojob.Instance) -> None:
        self.started.write(f"{inst.uuid} {inst.attempts}\n")

    async def noop(self, inst: gojob.Instance) -> None:
        self.record(inst)

    async def work(self, inst: gojob.Instance) -> str | None:
        self.record(inst)
        if self.mode == "stall":
            # Blocks the event loop on purpose: once the process resumes, this attempt
            # returns before any other task (the lease keeper) can run, so its finish
            # reaches the store, which must refuse it.
            time.sleep(STALL)  # noqa: ASYNC251
            return f"late result of {self.name}"
        if self.mode == "slow":
            try:
                await trio.sleep(60)
            except trio.Cancelled:
                self.canceled.write(f"{inst.uuid} {time.time()}\n")
                raise
        return None

    async def tick(self, inst: gojob.Instance) -> None:
        self.record(inst)


def open_store(url: str, scope: str) -> tuple[Store, int]:
    """The store of ``url`` under ``scope``, and the prefetch of a ``fast`` node."""
    if url.startswith("postgres"):
        from gojob.store.sql.postgres import PostgresStore

        return PostgresStore(url, schema=scope), 50
    if url.startswith(("redis", "valkey")):
        from gojob.store.redis import RedisStore

        return RedisStore(url, prefix=scope, poll_interval=1.0), 100
    if url.startswith("etcd"):
        from gojob.store.etcd import EtcdStore

        return EtcdStore(url, prefix=scope), 50
    raise SystemExit(f"no store for {url!r}")


async def main(url: str, scope: str, out: Path, name: str, mode: str) -> None:
    node = Node(out, name, mode)
    store, fast_prefetch = open_store(url, scope)
    fast = mode == "fast"
    lease = 30.0 if fast else STALL_LEASE if mode == "stall" else LEASE
    if mode == "stall":
        handler = logging.FileHandler(out / f"log-{name}")
        handler.setLevel(logging.WARNING)
        logging.getLogger("gojob").addHandler(handler)
    async with gojob.open_manager(
        store,
        node_id=name,
        capture_logging=False,
        drain_grace=0.5,
        poll_interval=1.0,
        workers=50 if fast else 4,
        prefetch=fast_prefetch if fast else 0,
        lease=lease,
        reap_interval=0.2 if mode == "rescue" else None,
    ) as manager:
        manager.register(gojob.Job("noop", node.noop))
        manager.register(gojob.Job("work", node.work))
        manager.register(gojob.Job("tick", node.tick))
        if mode == "cron":
            await manager.schedule("tick", cron="* * * * * *", id="every-second")
        await trio.Path(out / f"ready-{name}").touch()
        while not await trio.Path(out / "stop").exists():  # noqa: ASYNC110 - set by the test
            await trio.sleep(0.05)


if __name__ == "__main__":
    _, url, scope, out, name, mode = sys.argv
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    trio.run(main, url, scope, Path(out), name, mode)
