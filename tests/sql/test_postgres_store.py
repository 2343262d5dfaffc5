"""PostgreSQL store specifics, beyond the conformance suite: start-up errors,
cancellation on the server, notifications between stores (other nodes), the database
clock, the manager on a PostgreSQL URL."""

from __future__ import annotations

import socket
import time
import uuid as uuid_module
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import trio

import gojob
from gojob.errors import StoreUnavailable
from gojob.state import State
from gojob.store.base import Event, EventType, InstanceQuery, Outcome, Subscription
from gojob.store.sql import SchemaNotAtHead
from gojob.store.sql.pg_ops import Tx
from gojob.store.sql.postgres import PostgresStore

from ..store import KIND, LONG_LEASE, NODE, add_one, claim_one, collect_events, make_instance
from ._postgres import fresh_schema, postgres_url, sql

TIMEOUT = 20.0


@asynccontextmanager
async def two_stores(**options: Any) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    """Two store objects on one fresh schema: two nodes, as far as the database knows."""
    async with (
        fresh_schema() as (url, schema),
        PostgresStore(url, schema=schema, **options) as first,
        PostgresStore(url, schema=schema, **options) as second,
    ):
        yield first, second


def of_type(events: list[Event], etype: EventType) -> list[Event]:
    return [e for e in events if e.type is etype]


async def settle(sub: Subscription, quiet: float = 0.3) -> list[Event]:
    """Every batch that arrives until ``quiet`` seconds pass without one."""
    events: list[Event] = []
    while True:
        with trio.move_on_after(quiet) as scope:
            events.extend(await sub.__anext__())
        if scope.cancelled_caught:
            return events


# -- start-up errors ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_a_refused_connection_fails_fast_with_store_unavailable() -> None:
    store = PostgresStore(f"postgresql://postgres@127.0.0.1:{_free_port()}/test")
    started = time.monotonic()
    with trio.fail_after(5), pytest.raises(StoreUnavailable, match="cannot open"):
        async with store:
            pass
    assert time.monotonic() - started < 3


async def test_a_server_that_never_answers_times_out_with_store_unavailable() -> None:
    # A socket that accepts TCP connections (backlog) but never speaks PostgreSQL.
    with trio.socket.socket() as silent:
        await silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        store = PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/test", connect_timeout=0.5)
        started = time.monotonic()
        with trio.fail_after(10), pytest.raises(StoreUnavailable):
            async with store:
                pass
        assert time.monotonic() - started < 3


def test_urls_that_are_not_postgresql_are_refused() -> None:
    with pytest.raises(StoreUnavailable, match="not a PostgreSQL URL"):
        PostgresStore("mysql://root@127.0.0.1/test")
    with pytest.raises(StoreUnavailable, match="not a database URL"):
        PostgresStore("no url at all")
    with pytest.raises(ValueError, match="schema names"):
        PostgresStore("postgresql://postgres@127.0.0.1/test", schema="bad; name")


@pytest.mark.parametrize(
    "url",
    [
        "postgres://u:secret@h:5/db",
        "postgresql+asyncpg://u:secret@h:5/db",
        "postgresql+psycopg://u:secret@h:5/db",
    ],
)
def test_every_spelling_of_a_postgresql_url_is_accepted(url: str) -> None:
    store = PostgresStore(url)
    assert store.dsn == "postgresql://u:secret@h:5/db"
    assert "secret" not in repr(store)


async def test_a_schema_that_is_not_at_head_is_refused_with_the_command_that_fixes_it() -> None:
    async with fresh_schema(migrate_to_head=False) as (url, schema):
        with trio.fail_after(TIMEOUT), pytest.raises(SchemaNotAtHead) as caught:
            async with PostgresStore(url, schema=schema):
                pass
        message = str(caught.value)
        assert "has no gojob tables" in message
        assert f"gojob db upgrade --url {url} --schema {schema}" in message


async def test_a_closed_store_refuses_work() -> None:
    async with fresh_schema() as (url, schema):
        store = PostgresStore(url, schema=schema)
        with pytest.raises(gojob.StoreError, match="not open"):
            await store.now()
        async with store, store:  # nested users share it
            await store.now()
        with pytest.raises(gojob.StoreError, match="not open"):
            await store.now()


# -- transactions and cancellation -----------------------------------------------------------------


async def _lock_then_sleep(tx: Tx, uuid: str) -> None:
    """Take the instance's row lock with a change, then wait on the server."""
    await tx.conn.execute(
        "UPDATE gojob_instances SET attempts = attempts + 100 WHERE uuid = $1", uuid
    )
    await tx.conn.execute("SELECT pg_sleep(10)")


async def test_a_cancelled_transaction_is_cancelled_on_the_server_and_rolled_back() -> None:
    app = f"gojob-cancel-{uuid_module.uuid4().hex[:8]}"
    async with (
        fresh_schema() as (url, schema),
        PostgresStore(url, schema=schema, application_name=app) as store,
    ):
        inst = await add_one(store)
        started = time.monotonic()
        with trio.move_on_after(0.5) as scope:
            await store._call(_lock_then_sleep, inst.uuid, transaction=True)
        assert scope.cancelled_caught
        assert time.monotonic() - started < 3  # not the 10 s of pg_sleep

        def sessions() -> list[tuple[Any, ...]]:
            return sql(
                url,
                "SELECT state, query FROM pg_stat_activity WHERE application_name = %s",
                app,
            )

        rows = await trio.to_thread.run_sync(sessions)
        assert all(state == "idle" for state, _ in rows), rows  # no idle in transaction
        # The change was rolled back and the row lock released.
        attempts = await trio.to_thread.run_sync(
            lambda: sql(
                url,
                # NOWAIT: fails at once if the row lock were still held.
                f"SELECT attempts FROM {schema}.gojob_instances WHERE uuid = %s FOR UPDATE NOWAIT",
                inst.uuid,
            )
        )
        assert attempts == [(0,)]
        # The store still works.
        assert (await store.get(inst.uuid)) is not None
        claimed = await claim_one(store)
        assert claimed.attempts == 1


async def _change_with_slow_commit(tx: Tx, uuid: str) -> str:
    await tx.conn.execute(
        "UPDATE gojob_instances SET attempts = attempts + 100 WHERE uuid = $1", uuid
    )
    await tx.conn.execute("INSERT INTO slow_commit VALUES (1)")  # its trigger runs at COMMIT
    return "written"


async def test_a_commit_under_way_finishes_when_the_caller_is_cancelled() -> None:
    app = f"gojob-commit-{uuid_module.uuid4().hex[:8]}"
    async with fresh_schema() as (url, schema):
        # A deferred constraint trigger makes COMMIT itself take a second.
        await trio.to_thread.run_sync(
            lambda: sql(
                url,
                f"CREATE TABLE {schema}.slow_commit (x int);"
                f"CREATE FUNCTION {schema}.sleep_a_second() RETURNS trigger "
                "LANGUAGE plpgsql AS 'BEGIN PERFORM pg_sleep(1); RETURN NULL; END';"
                f"CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON {schema}.slow_commit "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
                f"EXECUTE FUNCTION {schema}.sleep_a_second()",
            )
        )
        async with PostgresStore(url, schema=schema, application_name=app) as store:
            inst = await add_one(store)
            outcome: list[str] = []
            with trio.move_on_after(0.4) as scope:
                outcome.append(
                    await store._call(_change_with_slow_commit, inst.uuid, transaction=True)
                )
                await trio.lowlevel.checkpoint()  # the caller meets its cancellation here
                outcome.append("not reached")
            assert scope.cancelled_caught
            # The commit finished: the call returned its result, the change is there.
            assert outcome == ["written"]
            got = await store.get(inst.uuid)
            assert got is not None
            assert got.attempts == 100
            rows = await trio.to_thread.run_sync(
                lambda: sql(
                    url, "SELECT state FROM pg_stat_activity WHERE application_name = %s", app
                )
            )
            assert all(state == "idle" for (state,) in rows), rows


async def test_a_transaction_error_rolls_back_every_statement_of_it() -> None:
    async def change_then_fail(tx: Tx, uuid: str) -> None:
        await tx.conn.execute(
            "UPDATE gojob_instances SET attempts = attempts + 100 WHERE uuid = $1", uuid
        )
        await tx.conn.execute("SELECT 1 / 0")

    async with fresh_schema() as (url, schema), PostgresStore(url, schema=schema) as store:
        inst = await add_one(store)
        with pytest.raises(gojob.StoreError, match="division by zero"):
            await store._call(change_then_fail, inst.uuid, transaction=True)
        got = await store.get(inst.uuid)
        assert got is not None
        assert got.attempts == 0


# -- the database's clock --------------------------------------------------------------------------


async def test_leases_and_times_come_from_the_database_clock() -> None:
    async with fresh_schema() as (url, schema), PostgresStore(url, schema=schema) as store:
        (db_now,) = (await trio.to_thread.run_sync(lambda: sql(url, "SELECT now()")))[0]
        store_now = await store.now()
        assert abs((store_now - db_now).total_seconds()) < 1
        await add_one(store)
        claimed = await store.claim(NODE, None, 1, 12.5)
        (inst,) = claimed
        assert inst.lease_expires_at is not None
        assert inst.processed_at is not None
        assert inst.lease_expires_at - inst.processed_at == timedelta(seconds=12.5)


# -- claims under contention --------------------------------------------------------------------


async def test_concurrent_claims_from_two_stores_never_share_an_instance() -> None:
    async with two_stores() as (first, second):
        now = await first.now()
        given = [make_instance(now, args=[i]) for i in range(600)]
        await first.add(given)
        claimed: list[str] = []

        async def claimer(store: PostgresStore, node: str) -> None:
            while batch := await store.claim(node, None, 7, LONG_LEASE):
                claimed.extend(i.uuid for i in batch)

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for k in range(3):
                    nursery.start_soon(claimer, first, f"a{k}")
                    nursery.start_soon(claimer, second, f"b{k}")
        assert len(claimed) == len(set(claimed)) == 600


@pytest.mark.parametrize("synchronous", [False, True])
async def test_a_claim_commits_without_waiting_for_the_wal_flush_unless_asked(
    synchronous: bool,
) -> None:
    # A claim is what a busy node's workers wait for: by default its transaction alone
    # has synchronous_commit off (a database crash may forget it: its jobs run again).
    async def claim_then_look(tx: Tx) -> tuple[str, str, int]:
        async with tx.conn.transaction():
            rows = await tx.conn.fetch(
                tx.st.claim_any, 10, NODE, "n", 30_000_000, "{}", tx.channel, '"o"'
            )
            inside = await tx.conn.fetchval("SHOW synchronous_commit")
        after = await tx.conn.fetchval("SHOW synchronous_commit")
        return inside, after, len(rows)

    async with (
        fresh_schema() as (url, schema),
        PostgresStore(url, schema=schema, synchronous_claims=synchronous) as store,
    ):
        with trio.fail_after(TIMEOUT):
            await add_one(store)
            inside, after, claimed = await store._call(claim_then_look)
            assert claimed == 1
            assert (inside, after) == ("on" if synchronous else "off", "on")
            # And the store's own claims go on as usual.
            await add_one(store)
            assert len(await store.claim(NODE, None, 10, LONG_LEASE)) == 1


# -- notifications between stores ---------------------------------------------------------------


async def test_another_store_receives_the_events_by_notify_and_its_own_only_once() -> None:
    async with two_stores() as (writer, reader):
        with trio.fail_after(TIMEOUT):
            async with writer.subscribe() as own, reader.subscribe() as remote:
                inst = await add_one(writer)
                claimed = await claim_one(writer, node="node-w")
                await writer.finish(claimed.claim_token or "", Outcome(State.COMPLETED))

                def three_states(events: list[Event]) -> bool:
                    return len(of_type(events, EventType.STATE)) >= 3

                far = await collect_events(remote, three_states)
                near = await collect_events(own, three_states)
                later = await settle(own)
        for events in (far, near):
            assert [(e.uuid, e.kind, e.state) for e in of_type(events, EventType.STATE)] == [
                (inst.uuid, KIND, State.SCHEDULED),
                (inst.uuid, KIND, State.PROCESSING),
                (inst.uuid, KIND, State.COMPLETED),
            ]
            assert of_type(events, EventType.STATE)[1].node_id == "node-w"
            assert of_type(events, EventType.DUE)
        assert of_type(later, EventType.STATE) == []  # no echo of its own NOTIFY


async def test_a_cancel_request_reaches_the_node_of_another_store() -> None:
    async with two_stores() as (runner, canceller):
        with trio.fail_after(TIMEOUT):
            async with runner.subscribe() as sub:
                inst = await add_one(runner)
                await claim_one(runner, node="node-r")
                await canceller.request_cancel(InstanceQuery(uuid=inst.uuid))
                events = await collect_events(sub, lambda ev: bool(of_type(ev, EventType.CANCEL)))
        (cancel,) = of_type(events, EventType.CANCEL)
        assert (cancel.uuid, cancel.node_id) == (inst.uuid, "node-r")


async def test_big_batches_are_chunked_and_huge_ones_become_one_resync() -> None:
    async with two_stores() as (writer, reader):
        with trio.fail_after(TIMEOUT):
            async with reader.subscribe() as remote:
                now = await writer.now()
                # About 200 events: several payloads, every event delivered.
                medium = await writer.add([make_instance(now) for _ in range(200)])
                events = await collect_events(
                    remote, lambda ev: len(of_type(ev, EventType.STATE)) >= 200
                )
                assert [e.uuid for e in of_type(events, EventType.STATE)] == [
                    i.uuid for i in medium
                ]
                # A claim of 200 (payloads built by the claim statement itself).
                claimed = await writer.claim(NODE, None, 200, LONG_LEASE)
                events = await collect_events(
                    remote, lambda ev: len(of_type(ev, EventType.STATE)) >= 200
                )
                assert {e.uuid for e in of_type(events, EventType.STATE)} == {
                    i.uuid for i in claimed
                }
                assert {e.state for e in of_type(events, EventType.STATE)} == {State.PROCESSING}
                # Thousands: one resync marker instead.
                await writer.add([make_instance(now) for _ in range(3000)])
                batch = await remote.__anext__()
                assert [e.type for e in batch] == [EventType.RESYNC]


async def test_completions_of_several_kinds_and_nodes_reach_another_store() -> None:
    # The completion statement builds its payloads in SQL, one group per kind and node.
    other_kind = 'quote"d\\kind ' + "é" * 40
    async with two_stores() as (writer, reader):
        with trio.fail_after(TIMEOUT):
            async with reader.subscribe() as remote:
                now = await writer.now()
                await writer.add(
                    [make_instance(now) for _ in range(130)]
                    + [make_instance(now, other_kind) for _ in range(120)]
                )
                first = await writer.claim("node-a", None, 150, LONG_LEASE)
                second = await writer.claim('node "b"', None, 100, LONG_LEASE)
                await settle(remote)
                claimed = first + second
                await writer.finish_many(
                    [(i.claim_token or "", Outcome(State.COMPLETED)) for i in claimed]
                )
                events = await collect_events(
                    remote, lambda ev: len(of_type(ev, EventType.STATE)) >= len(claimed)
                )
        got = {(e.uuid, e.kind, e.state, e.node_id) for e in of_type(events, EventType.STATE)}
        assert got == {(i.uuid, i.kind, State.COMPLETED, i.node_id) for i in claimed}
        assert len(of_type(events, EventType.STATE)) == len(claimed) == 250
        assert {i.kind for i in claimed} == {KIND, other_kind}


async def test_events_too_big_for_a_payload_become_a_resync_not_an_error() -> None:
    # The longest kind and node id, escaped, still fit beside 100 uuids; uuids of escaped
    # characters (the Store API takes any text) do not: a resync, and the claim stands.
    long_name = "\x01" * 255
    async with two_stores() as (writer, reader):
        with trio.fail_after(TIMEOUT):
            async with reader.subscribe() as remote:
                now = await writer.now()
                await writer.add([make_instance(now, long_name) for _ in range(100)])
                await settle(remote)
                claimed = await writer.claim(long_name, None, 100, LONG_LEASE)
                events = await collect_events(
                    remote, lambda ev: len(of_type(ev, EventType.STATE)) >= 100
                )
                assert {(e.uuid, e.kind, e.node_id) for e in events} == {
                    (i.uuid, long_name, long_name) for i in claimed
                }
                odd = [
                    replace(make_instance(now), uuid="\x01" * 33 + f"{k:03}") for k in range(100)
                ]
                await writer.add(odd)
                await settle(remote)
                claimed = await writer.claim(NODE, None, 100, LONG_LEASE)
                assert {i.uuid for i in claimed} == {i.uuid for i in odd}
                batch = await remote.__anext__()
        assert [e.type for e in batch] == [EventType.RESYNC]


async def test_a_lost_listen_connection_is_restored_with_a_resync() -> None:
    app = f"gojob-listen-{uuid_module.uuid4().hex[:8]}"
    async with two_stores() as (writer, _):
        url = postgres_url()
        reader = PostgresStore(url, schema=writer.schema, application_name=app, poll_interval=0.5)
        with trio.fail_after(TIMEOUT):
            async with reader, reader.subscribe() as remote:
                await add_one(writer)
                assert of_type(await collect_events(remote, bool), EventType.STATE)
                killed = await trio.to_thread.run_sync(
                    lambda: sql(
                        url,
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = %s",
                        app,
                    )
                )
                assert killed
                batch = await remote.__anext__()
                assert [e.type for e in batch] == [EventType.RESYNC]
                # Listening again: later events arrive.
                inst = await add_one(writer)
                events = await collect_events(remote, lambda ev: bool(of_type(ev, EventType.STATE)))
                assert [e.uuid for e in of_type(events, EventType.STATE)] == [inst.uuid]
                # The pool dropped its dead connections too.
                assert await reader.get(inst.uuid) is not None


# -- the manager ---------------------------------------------------------------------------------


async def double(x: int) -> int:
    return 2 * x


async def test_the_manager_runs_jobs_on_a_postgresql_url() -> None:
    async with fresh_schema() as (url, schema):
        # The URL's unknown query parameters are server settings (asyncpg): the schema.
        with trio.fail_after(TIMEOUT):
            async with gojob.open_manager(
                f"{url}?search_path={schema}", workers=2, lease=5, poll_interval=0.5
            ) as manager:
                manager.register(gojob.Job("double", double))
                inst = await manager.schedule("double", 21)
                done = await manager.wait(inst)
        assert done.state is State.COMPLETED
        assert done.result == 42


async def test_nodes_adding_one_dedupe_key_at_once_get_one_instance() -> None:
    async with two_stores() as (first, second):
        now = await first.now()
        returned: list[str] = []

        async def add(store: PostgresStore) -> None:
            (inst,) = await store.add([make_instance(now, dedupe_key="the-key")])
            returned.append(inst.uuid)

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for k in range(10):
                    nursery.start_soon(add, first if k % 2 else second)
        assert len(set(returned)) == 1
        assert await first.counts() == {(KIND, State.SCHEDULED): 1}


async def test_nodes_declaring_one_schedule_at_once_get_one_schedule() -> None:
    from gojob.schedule import Every
    from gojob.store.base import ScheduleRecord

    async with two_stores() as (first, second):
        now = await first.now()

        async def declare(store: PostgresStore) -> None:
            record = ScheduleRecord("tick", "job.tick", Every(timedelta(minutes=1), anchor=now))
            record.next_fire_at = now
            await store.put_schedule(record)

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                for k in range(6):
                    nursery.start_soon(declare, first if k % 2 else second)
        assert [s.id for s in await second.list_schedules()] == ["tick"]
