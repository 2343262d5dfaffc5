"""The PostgreSQL store's large adds: a batch of at least ``pg_ops.COPY_THRESHOLD`` new
instances streams by COPY in a transaction; what it stores, returns and announces must be
exactly what the one-statement insert of a small batch gives."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import trio

import gojob
from gojob.errors import StoreError
from gojob.instance import Instance, new_uuids
from gojob.policy import Policy
from gojob.state import State
from gojob.store.base import EventType, HistoryQuery, InstanceQuery
from gojob.store.sql import pg_ops
from gojob.store.sql.postgres import PostgresStore

from ..store import KIND, collect_events, make_instance
from ._postgres import fresh_schema, postgres_store, sql

TIMEOUT = 30.0
LARGE = pg_ops.COPY_THRESHOLD + 7
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def _rows(url: str, schema: str, uuids: list[str]) -> list[dict[str, Any]]:
    """The stored instance rows of ``uuids`` (seq left out), in ``uuids``' order."""
    found = sql(url, f"SELECT * FROM {schema}.gojob_instances WHERE uuid = ANY(%s)", uuids)
    names = [
        r[0]
        for r in sql(
            url,
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = 'gojob_instances' ORDER BY ordinal_position",
            schema,
        )
    ]
    by_uuid = {row[names.index("uuid")]: dict(zip(names, row, strict=True)) for row in found}
    out = []
    for u in uuids:
        row = by_uuid[u]
        del row["seq"]
        out.append(row)
    return out


def _varied(now: Any, count: int, plain: bool = False) -> list[Instance]:
    """Instances that differ in every column an add writes; ``plain``: none of them with
    a schedule or a result (a large add of such sends fewer columns)."""
    made = []
    for k in range(count):
        inst = make_instance(
            now,
            args=[k, "x" * (k % 3)] if k % 2 else [],
            kwargs={"k": k} if k % 3 == 0 else {},
            delay=k % 4,
            policy=Policy(priority=k % 5, max_retries=k % 2),
            schedule_id="sched" if k % 7 == 0 and not plain else None,
            fire_time=now if k % 7 == 0 and not plain else None,
        )
        if k % 11 == 0 and not plain:
            inst.result = {"kept": k}
        made.append(inst)
    return made


@pytest.mark.parametrize("plain", [False, True], ids=["every-column", "plain"])
async def test_a_large_add_stores_what_a_small_one_does(plain: bool) -> None:
    async with fresh_schema() as (url, schema), PostgresStore(url, schema=schema) as store:
        with trio.fail_after(TIMEOUT):
            now = await store.now()
            large = _varied(now, LARGE, plain)
            small = _varied(now, 12, plain)
            added_large = await store.add(large)
            added_small = []
            for k in range(0, 12, 3):  # below the threshold: the one-statement insert
                added_small += await store.add(small[k : k + 3])
        assert [a.uuid for a in added_large] == [i.uuid for i in large]
        rows_large = await trio.to_thread.run_sync(
            _rows, url, schema, [a.uuid for a in added_large[:12]]
        )
        rows_small = await trio.to_thread.run_sync(
            _rows, url, schema, [a.uuid for a in added_small]
        )
        skip = {"uuid", "created_us", "updated_us", "scheduled_us", "fire_us"}
        for big, little in zip(rows_large, rows_small, strict=True):
            assert {k: v for k, v in big.items() if k not in skip} == {
                k: v for k, v in little.items() if k not in skip
            }
            assert big["state"] == State.SCHEDULED.value
        # Returned snapshots are the stored values, detached from the given objects.
        for given, stored in zip(large, added_large, strict=True):
            assert stored is not given
            assert stored.state is State.SCHEDULED
            assert stored.args == given.args
            assert stored.kwargs == given.kwargs
            assert stored.args is not given.args
            assert stored.kwargs is not given.kwargs
            assert stored == await store.get(stored.uuid)
        got = await store.get(added_large[11].uuid)
        assert got is not None
        assert got.result == (None if plain else {"kept": 11})
        assert not got.cancel_requested


async def test_a_large_add_keeps_insertion_order_and_writes_both_history_records() -> None:
    async with postgres_store() as store:
        with trio.fail_after(TIMEOUT):
            now = await store.now()
            given = [make_instance(now) for _ in range(LARGE)]
            added = await store.add(given)
            listed = await store.lookup_instances(InstanceQuery(kind=KIND))
            # Claim order ends with insertion order: same priority and due time.
            claimed = await store.claim("node", [KIND], 5, 30.0)
            history = [await store.history(HistoryQuery(uuid=a.uuid)) for a in added[:5]]
        assert {i.uuid for i in listed} == {a.uuid for a in added}
        assert [c.uuid for c in claimed] == [a.uuid for a in added[:5]]
        due = now.isoformat()
        for records in history:
            assert [r.state for r in records][:2] == [State.CREATED, State.SCHEDULED]
            assert records[0].details == {}
            assert records[1].details == {"due": due}
            assert records[0].seq < records[1].seq


async def test_a_large_add_announces_every_instance_then_due() -> None:
    async with postgres_store() as store:
        with trio.fail_after(TIMEOUT):
            now = await store.now()
            async with store.subscribe() as sub:
                added = await store.add([make_instance(now, delay=5) for _ in range(LARGE)])

                def done(events: list[Any]) -> bool:
                    return any(e.type is EventType.DUE for e in events)

                events = await collect_events(sub, done)
        states = [e for e in events if e.type is EventType.STATE]
        assert [(e.uuid, e.state) for e in states] == [(a.uuid, State.SCHEDULED) for a in added]
        assert events[-1].type is EventType.DUE
        assert events[-1].due == now + timedelta(seconds=5)


async def test_a_large_add_that_fails_writes_nothing() -> None:
    async with fresh_schema() as (url, schema), PostgresStore(url, schema=schema) as store:
        with trio.fail_after(TIMEOUT):
            now = await store.now()
            (first,) = await store.add([make_instance(now)])
            batch = [make_instance(now) for _ in range(LARGE)]
            batch[-1].uuid = first.uuid  # a duplicate uuid: the unique index refuses it
            with pytest.raises(StoreError):
                await store.add(batch)
        count = await trio.to_thread.run_sync(
            sql, url, f"SELECT count(*) FROM {schema}.gojob_instances"
        )
        assert count == [(1,)]


async def test_schedule_many_on_postgres_gives_fresh_ids_and_separate_arguments() -> None:
    async with postgres_store() as store, gojob.open_manager(store, capture_logging=False) as m:

        async def noop() -> None:
            pass

        m.register(gojob.Job("bulk.noop", noop))
        with trio.fail_after(TIMEOUT):
            added = await m.schedule_many("bulk.noop", [()] * LARGE, after=3600)
        assert len({a.uuid for a in added}) == LARGE
        assert all(UUID7.match(a.uuid) for a in added)
        added[0].args.append(1)
        added[0].kwargs["x"] = 1
        assert added[1].args == []
        assert added[1].kwargs == {}


def test_new_uuids_are_version_7_and_distinct() -> None:
    ids = new_uuids(5000)
    assert len(set(ids)) == 5000
    assert all(UUID7.match(u) for u in ids)
    assert new_uuids(0) == []


# -- planner statistics before the first claim ------------------------------------------------


def _reltuples(url: str, schema: str) -> float:
    rows = sql(
        url, "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", f"{schema}.gojob_instances"
    )
    return float(rows[0][0])


async def test_the_first_claim_analyzes_a_table_never_analyzed_once_it_holds_rows() -> None:
    async with fresh_schema() as (url, schema):
        async with PostgresStore(url, schema=schema) as store:
            with trio.fail_after(TIMEOUT):
                assert await store.claim("node", [KIND], 10, 30.0) == []
                # Empty: nothing to learn, nothing analyzed.
                assert await trio.to_thread.run_sync(_reltuples, url, schema) < 0
        async with PostgresStore(url, schema=schema) as store:
            with trio.fail_after(TIMEOUT):
                now = await store.now()
                added = await store.add([make_instance(now) for _ in range(LARGE)])
                assert await trio.to_thread.run_sync(_reltuples, url, schema) < 0
                claimed = await store.claim("node", [KIND], 10, 30.0)
                assert [c.uuid for c in claimed] == [a.uuid for a in added[:10]]
                assert await trio.to_thread.run_sync(_reltuples, url, schema) == LARGE


async def test_a_large_add_cancelled_midway_writes_nothing_and_the_store_goes_on() -> None:
    async with fresh_schema() as (url, schema), PostgresStore(url, schema=schema) as store:
        with trio.fail_after(TIMEOUT):
            now = await store.now()
            batch = [make_instance(now) for _ in range(20 * LARGE)]
            with trio.move_on_after(0.005) as scope:
                await store.add(batch)
            count = await trio.to_thread.run_sync(
                sql, url, f"SELECT count(*) FROM {schema}.gojob_instances"
            )
            if scope.cancelled_caught:
                assert count == [(0,)]
            else:  # the add won the race: it is whole
                assert count == [(len(batch),)]
            again = await store.add([make_instance(now) for _ in range(LARGE)])
            assert len(again) == LARGE
