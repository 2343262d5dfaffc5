"""SQLite store specifics: URLs, pragmas, BEGIN IMMEDIATE, query plans, the store's
clock, notifications across stores, batches past the IN-list chunk size."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trio

from gojob.errors import StoreError, StoreUnavailable
from gojob.instance import Instance
from gojob.policy import INFINITE, Backoff, Policy
from gojob.state import State
from gojob.store.base import EventType, InstanceQuery, Outcome
from gojob.store.sql import SqliteStore, migrate

from ..store import add_one, make_instance

TIMEOUT = 20.0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    db = tmp_path / "jobs.db"
    migrate.upgrade(f"sqlite:///{db}")
    return db


@pytest.fixture
async def store(path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(path, poll_interval=0.1) as opened:
        yield opened


def engine_of(store: SqliteStore) -> sa.Engine:
    engine = store._engine
    assert engine is not None
    return engine


async def test_every_url_form_opens_the_same_file(path: Path, tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with SqliteStore(str(path)) as first:
            added = await add_one(first)
        forms: list[Any] = [
            path,
            f"sqlite:///{path}",
            f"sqlite+pysqlite:///{path}",
            sa.engine.URL.create("sqlite", database=str(path)),
        ]
        for form in forms:
            async with SqliteStore(form) as store:
                assert await store.get(added.uuid) is not None


async def test_connections_use_wal_normal_sync_and_a_busy_timeout(
    store: SqliteStore, path: Path
) -> None:
    with trio.fail_after(TIMEOUT):
        await add_one(store)
        with engine_of(store).connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


async def test_write_transactions_begin_immediate(store: SqliteStore) -> None:
    with trio.fail_after(TIMEOUT):
        begun: list[str] = []

        def trace(statement: str) -> None:
            if statement.startswith("BEGIN"):
                begun.append(statement)

        def on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
            dbapi_connection.set_trace_callback(trace)

        # Every statement the driver runs, BEGIN included, on fresh connections.
        engine = engine_of(store)
        sa.event.listen(engine, "connect", on_connect)
        engine.dispose()
        await add_one(store)  # a write
        await store.counts()  # a read
        claimed = await store.claim("n", None, 1, 30)
        await store.finish_many([(claimed[0].claim_token or "", Outcome(State.COMPLETED))])
        assert begun == ["BEGIN IMMEDIATE", "BEGIN", "BEGIN IMMEDIATE", "BEGIN IMMEDIATE"]


async def test_writers_of_two_engines_on_one_file_never_see_database_is_locked(
    path: Path,
) -> None:
    # Two stores stand for two processes: their writes (read-then-write transactions
    # such as finish) would fail at once with "database is locked" under pysqlite's
    # deferred BEGIN.
    with trio.fail_after(TIMEOUT):
        async with SqliteStore(path) as first, SqliteStore(path) as second:
            now = await first.now()
            await first.add([make_instance(now, args=[i]) for i in range(400)])
            done: list[str] = []

            async def worker(store: SqliteStore, node: str) -> None:
                while batch := await store.claim(node, None, 5, 30):
                    outcomes = [(i.claim_token or "", Outcome(State.COMPLETED)) for i in batch]
                    results = await store.finish_many(outcomes)
                    done.extend(r.uuid for r in results if isinstance(r, Instance))

            async with trio.open_nursery() as nursery:
                for n in range(4):
                    nursery.start_soon(worker, first, f"first-{n}")
                    nursery.start_soon(worker, second, f"second-{n}")
        assert len(done) == len(set(done)) == 400


def _plan(path: Path, statement: str, parameters: dict[str, Any]) -> str:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(f"EXPLAIN QUERY PLAN {statement}", parameters).fetchall()
    finally:
        conn.close()
    return " | ".join(str(row[-1]) for row in rows)


async def test_the_claim_and_the_dedupe_lookup_use_their_indexes(
    store: SqliteStore, path: Path
) -> None:
    st = store._statements
    for size in (1, 64):
        _, keys = st.list_params("p_keys", [f"k{n}" for n in range(size)])
        dedupe, _ = st.compiled(st.live_by_dedupe_key(size))
        assert "ux_gojob_instances_live_dedupe" in _plan(path, dedupe, keys)
        _, uuids = st.list_params("p_uuids", [f"u{n}" for n in range(size)])
        by_uuid, _ = st.compiled(st.instances_by_uuid(size))
        assert "ux_gojob_instances_uuid (uuid=?)" in _plan(path, by_uuid, uuids)
        _, kinds = st.list_params("p_kinds", [f"job.{n}" for n in range(size)])
        claim, constants = st.compiled(st.claim_kinds(size))
        params = {
            **constants,
            **kinds,
            "p_now": 0,
            "p_limit": 10,
            "p_node": "n",
            "p_nonce": "x",
            "p_until": 1,
        }
        claim_plan = _plan(path, claim, params)
        assert "ix_gojob_instances_claim" in claim_plan
        assert "TEMP B-TREE" not in claim_plan  # ordered by the index, not sorted
        assert "INTEGER PRIMARY KEY (rowid=?)" in claim_plan  # the outer UPDATE
        extend, _ = st.compiled(st.extend_leases(size))
        _, tokens = st.list_params("p_tokens", [f"u{n}/x" for n in range(size)])
        params = {**uuids, **tokens, "p_now": 0, "p_until": 1}
        assert "ux_gojob_instances_uuid (uuid=?)" in _plan(path, extend, params)


async def test_a_cancelled_write_leaves_no_lock_behind(store: SqliteStore, path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        for delay in (0.0, 0.0005, 0.001, 0.003):
            with trio.move_on_after(delay):
                await store.add([make_instance(now) for _ in range(50)])
        # Another connection gets the write lock at once: nothing is left mid-transaction.
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        finally:
            other.close()


async def test_a_write_lock_held_too_long_is_unavailable_not_a_hang(path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with SqliteStore(path, busy_timeout=0.2) as store:
            await add_one(store)
            other = sqlite3.connect(path, isolation_level=None)
            try:
                other.execute("BEGIN IMMEDIATE")  # another process writing, for ever
                started = trio.current_time()
                with pytest.raises(StoreUnavailable, match="locked"):
                    await add_one(store)
                with pytest.raises(StoreUnavailable, match="locked"):
                    await store.claim("n", None, 1, 30)
                assert trio.current_time() - started < 2
                # Readers are not blocked by a writer (WAL).
                assert await store.counts() == {("job.a", State.SCHEDULED): 1}
            finally:
                other.execute("ROLLBACK")
                other.close()
            assert len(await store.claim("n", None, 1, 30)) == 1


class FixedClock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def monotonic(self) -> float:
        return trio.current_time()


async def test_an_injected_clock_judges_due_times_and_leases(path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        start = datetime(2030, 1, 1, tzinfo=UTC)
        clock = FixedClock(start)
        async with SqliteStore(path, clock=clock) as store:
            assert await store.now() == start
            inst = await add_one(store, delay=60)
            assert inst.created_at == start
            assert await store.claim("n", None, 1, 30) == []
            clock.at = start + timedelta(seconds=60)
            (claimed,) = await store.claim("n", None, 1, 30)
            assert claimed.processed_at == clock.at
            assert claimed.lease_expires_at == clock.at + timedelta(seconds=30)
            clock.at += timedelta(seconds=31)
            (reaped,) = await store.reap_expired()
            assert reaped.state is State.SCHEDULED


async def test_changes_by_another_process_arrive_as_resync(path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        async with (
            SqliteStore(path, poll_interval=0.05) as watched,
            SqliteStore(path) as elsewhere,
            watched.subscribe() as sub,
        ):
            # An idle database: no event at all.
            with trio.move_on_after(0.3):
                batch = await sub.__anext__()
                pytest.fail(f"unexpected events {batch}")  # pragma: no cover
            await add_one(elsewhere)
            batch = await sub.__anext__()
            assert [e.type for e in batch] == [EventType.RESYNC]


async def test_a_store_that_is_not_open_says_so(path: Path) -> None:
    store = SqliteStore(path)
    with pytest.raises(StoreError, match="not open"):
        await store.counts()


async def test_batches_larger_than_one_in_list(store: SqliteStore) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        count = 6_000  # past the 5,000 values bound in one IN (...) list
        given = [make_instance(now, args=[i], dedupe_key=f"k{i}") for i in range(count)]
        added = await store.add(given)
        assert len(added) == count
        # Every key is live: adding them again returns the same instances.
        again = await store.add([make_instance(now, dedupe_key=f"k{i}") for i in range(count)])
        assert [a.uuid for a in again] == [g.uuid for g in given]
        claimed = await store.claim("n", None, count, 30)
        assert len(claimed) == count
        tokens = [c.claim_token or "" for c in claimed]
        reply = await store.extend_leases("n", tokens, 60)
        assert len(reply.extended) == count
        results = await store.finish_many([(t, Outcome(State.COMPLETED)) for t in tokens])
        assert all(isinstance(r, Instance) and r.state is State.COMPLETED for r in results)
        counts = await store.counts()
        assert counts == {("job.a", State.COMPLETED): count}
        found = await store.lookup_instances(InstanceQuery(states=[State.COMPLETED], limit=1))
        assert len(found) == 1


POLICIES = [
    Policy(),
    Policy(max_retries=INFINITE, timeout=1.5, priority=-3, max_rescues=0),
    Policy(
        max_retries=4,
        backoff=Backoff.exponential(0.25, factor=3.0, max=60.0, jitter=0.2),
        custom_backoff=True,
    ),
    Policy(backoff=Backoff("linear", 2.0)),
]


@pytest.mark.parametrize("policy", POLICIES)
async def test_policies_are_stored_compactly_and_read_back_whole(
    store: SqliteStore, policy: Policy
) -> None:
    added = await store.add([make_instance(datetime.now(UTC), policy=policy)])
    with engine_of(store).connect() as conn:
        (text,) = conn.execute(sa.text("SELECT policy FROM gojob_instances")).one()
    assert text.startswith("[")  # the positional form
    assert len(text) < 80
    got = await store.get(added[0].uuid)
    assert got is not None
    assert got.policy == policy


@pytest.mark.parametrize("policy", POLICIES)
async def test_policies_written_by_earlier_versions_still_read(
    store: SqliteStore, policy: Policy
) -> None:
    added = await store.add([make_instance(datetime.now(UTC))])
    with engine_of(store).begin() as conn:
        conn.execute(
            sa.text("UPDATE gojob_instances SET policy = :p"),
            {"p": json.dumps(policy.to_json())},  # the object form
        )
    got = await store.get(added[0].uuid)
    assert got is not None
    assert got.policy == policy
