"""Fencing on Redis: a node frozen (``SIGSTOP``) mid-attempt loses its lease to another
node's reaper; once resumed (``SIGCONT``) its stale finish is refused and changes nothing.

The nodes are ``_store_node.py`` (its ``stall`` and ``rescue`` modes); the harness is
the PostgreSQL one (``tests/sql/test_postgres_fencing.py``), pointed at that script.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from gojob.state import State
from gojob.store.base import HistoryQuery
from gojob.store.redis import RedisStore

from ..sql import test_postgres_fencing as pg
from ._redis import redis_store


class Nodes(pg.Nodes):
    """The PostgreSQL harness's nodes (``tests/_store_node.py``); ``schema`` is the prefix."""


@asynccontextmanager
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[Nodes, RedisStore]]:
    async with redis_store() as store:
        assert store.url is not None
        nodes = Nodes(store.url, store.prefix, tmp_path)
        try:
            yield nodes, store
        finally:
            nodes.kill_all()


async def test_a_stopped_node_whose_lease_was_reaped_cannot_commit_its_stale_attempt(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as (nodes, store):
        stale = nodes.start("stale", "stall")
        await nodes.ready("stale")
        now = await store.now()
        (inst,) = await store.add(pg.instances(now, "work", 1))

        async def stale_started() -> bool:
            await trio.lowlevel.checkpoint()
            return bool(nodes.started("stale"))

        await pg.wait_until(stale_started, 20, 0.01)
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
            # Another node (1 s lease, reaping every 0.2 s) reaps the frozen node's lease
            # once it runs out, and runs the attempt again.
            nodes.start("rescuer", "rescue")
            await nodes.ready("rescuer")

            async def completed() -> bool:
                got = await store.get(inst.uuid)
                return got is not None and got.state is State.COMPLETED

            await pg.wait_until(completed, 20)
            before = pg.snapshot(await store.get(inst.uuid))
            history_before = await store.history(HistoryQuery(uuid=inst.uuid))
        finally:
            os.kill(stale.pid, signal.SIGCONT)

        # Resumed, the stale node returns its result at once and tries to finish: the
        # store refuses it (its claim token no longer holds the lease).
        refused = f"lease of {inst.uuid} lost before finishing; attempt discarded"

        async def stale_finish_refused() -> bool:
            await trio.lowlevel.checkpoint()
            return refused in nodes.log("stale")

        await pg.wait_until(stale_finish_refused, 20)
        await nodes.stop()

        after = await store.get(inst.uuid)
        assert pg.snapshot(after) == before
        assert after is not None
        assert (after.state, after.attempts, after.node_id) == (State.COMPLETED, 2, "rescuer")
        assert after.result is None, "the stale node's late result was recorded"
        history = await store.history(HistoryQuery(uuid=inst.uuid))
        assert history == history_before
        assert [r.state for r in history] == [
            State.CREATED,
            State.SCHEDULED,
            State.PROCESSING,
            State.TERMINATED,
            State.SCHEDULED,
            State.PROCESSING,
            State.COMPLETED,
        ]
        assert history[2].details["node"] == "stale"
        assert history[3].details["reason"] == "abandoned"
        assert history[5].details["node"] == "rescuer"
        assert all("late result" not in repr(r.details) for r in history)
        assert nodes.started("stale") == [(inst.uuid, 1)]
        assert nodes.started("rescuer") == [(inst.uuid, 2)]
