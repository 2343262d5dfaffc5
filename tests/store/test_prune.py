"""Conformance: retention (prune)."""

from __future__ import annotations

from datetime import datetime, timedelta

import trio

from gojob.instance import Instance, LogLevel, LogRecord
from gojob.state import State
from gojob.store.base import HistoryQuery, InstanceQuery, LogQuery, Outcome, PruneResult, Store

from . import TIMEOUT, add_one, claim_one, complete, tick


async def add_log(store: Store, inst: Instance, message: str) -> datetime:
    at = await store.now()
    await store.append_logs([LogRecord(inst.uuid, inst.kind, at, LogLevel.INFO, message)])
    return at


async def test_prune_removes_final_instances_finished_before_the_cutoff(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        old_done = await add_one(store, priority=1)
        await complete(store, await claim_one(store))
        await add_log(store, old_done, "old")
        old_queued = await add_one(store, delay=3600)
        old_running = await add_one(store, priority=1)
        await claim_one(store)
        cutoff = await tick(store)
        new_done = await add_one(store, priority=1)
        await complete(store, await claim_one(store))
        await add_log(store, new_done, "new")

        result = await store.prune(cutoff)
        assert result.instances == 1
        assert await store.get(old_done.uuid) is None
        assert await store.history(HistoryQuery(uuid=old_done.uuid)) == []
        assert await store.logs(LogQuery(uuid=old_done.uuid)) == []
        # Active instances are kept whatever their age, and so are the recently finished.
        remaining = await store.lookup_instances(InstanceQuery())
        assert {i.uuid for i in remaining} == {old_queued.uuid, old_running.uuid, new_done.uuid}
        assert [r.state for r in await store.history(HistoryQuery(uuid=new_done.uuid))] == [
            State.CREATED,
            State.SCHEDULED,
            State.PROCESSING,
            State.COMPLETED,
        ]
        assert [r.message for r in await store.logs(LogQuery(uuid=new_done.uuid))] == ["new"]
        # Nothing more to prune at the same cutoff.
        again = await store.prune(cutoff)
        assert again.instances == 0


async def test_prune_counts_what_it_removed(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        assert await store.prune(await store.now()) == PruneResult(0, 0, 0)
        done = await add_one(store)
        await complete(store, await claim_one(store))
        await add_log(store, done, "one")
        await add_log(store, done, "two")
        result = await store.prune(await tick(store))
        assert result == PruneResult(instances=1, history=4, logs=2)


async def test_prune_also_drops_old_records_of_kept_instances(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        queued = await add_one(store, delay=3600)
        await add_log(store, queued, "old")
        cutoff = await tick(store)
        await add_log(store, queued, "new")
        result = await store.prune(cutoff)
        assert result == PruneResult(instances=0, history=2, logs=1)
        assert await store.get(queued.uuid) is not None
        assert await store.history(HistoryQuery(uuid=queued.uuid)) == []
        assert [r.message for r in await store.logs(LogQuery(uuid=queued.uuid))] == ["new"]


async def test_prune_judges_an_instance_by_when_it_became_final(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        # Failed long ago (retry pending), canceled after the cutoff: recently final.
        retried = await add_one(store, priority=1)
        claimed = await claim_one(store)
        assert claimed.claim_token is not None
        failure = Outcome(
            State.TERMINATED,
            error_message="boom",
            retry_at=await store.now() + timedelta(hours=1),
            counts_as_failure=True,
        )
        await store.finish(claimed.claim_token, failure)
        # Completed long ago, requeued and canceled after the cutoff: recently final too.
        requeued = await add_one(store, priority=1)
        await complete(store, await claim_one(store))
        await store.requeue(requeued.uuid, await store.now() + timedelta(hours=1))
        cutoff = await tick(store)
        await store.request_cancel(InstanceQuery(uuids=[retried.uuid, requeued.uuid]))

        result = await store.prune(cutoff)
        assert result.instances == 0
        for uuid in (retried.uuid, requeued.uuid):
            kept = await store.get(uuid)
            assert kept is not None
            assert kept.state is State.CANCELED
