"""Transactional enqueue (gojob.producer) on real SQLite files and PostgreSQL schemas:
the job exists if and only if the caller's transaction commits, together with the
application's own rows, and a running manager on the same database then runs it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
import trio

import gojob
from gojob.errors import ArgumentError, InvalidSchedule, StoreError, StoreUnavailable
from gojob.instance import Instance
from gojob.producer import Producer, enqueue, enqueue_many
from gojob.state import State
from gojob.store.sql import SchemaNotAtHead, migrate
from gojob.store.sql.postgres import PostgresStore
from gojob.store.sql.sqlite import SqliteStore

from ._postgres import create_schema, drop_schema, postgres_url

T = TypeVar("T")
TIMEOUT = 20.0


async def add(a: int, b: int) -> int:
    return a + b


ADD = gojob.Job("add", add)


def in_thread(fn: Callable[[], T]) -> Any:
    """Run blocking database code off the Trio thread (a manager may be running)."""
    return trio.to_thread.run_sync(fn)


# -- databases --------------------------------------------------------------------------------


class Db:
    """One test database: a URL for the managers, a sync engine for the application,
    the schema (PostgreSQL) and an application table ``orders`` of the test's own."""

    def __init__(self, store_url: str, engine: sa.Engine, schema: str | None) -> None:
        self.store_url = store_url
        self.engine = engine
        self.schema = schema
        self.orders = sa.Table(
            "orders",
            sa.MetaData(schema=schema),
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("item", sa.String(50), nullable=False),
        )
        self.orders.create(engine)
        md = sa.MetaData(schema=schema)
        self.instances = sa.Table("gojob_instances", md, autoload_with=engine)
        self.history = sa.Table("gojob_history", md, autoload_with=engine)

    def store(self, **options: Any) -> gojob.Store:
        if self.schema is None:
            return SqliteStore(self.store_url, **options)
        return PostgresStore(self.store_url, schema=self.schema, **options)

    def producer(self, **options: Any) -> Producer:
        return Producer(self.store_url, schema=self.schema, **options)

    def count(self, table: sa.Table, *where: Any) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(table).where(*where)
                ).scalar_one()
            )

    def history_records(self) -> int:
        """Records in the history table (a row may hold two: ``preceded_by``)."""
        h = self.history
        with self.engine.connect() as conn:
            counts = sa.select(sa.func.count() + sa.func.count(h.c.preceded_by))
            return int(conn.execute(counts).scalar_one())

    def states(self, uuid: str) -> list[str]:
        h = self.history
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(h.c.preceded_by, h.c.state).where(h.c.uuid == uuid).order_by(h.c.seq)
            )
            # A row may hold two records: first one of ``preceded_by``, then its own.
            return [state for row in rows for state in row if state is not None]


def sqlite_db(tmp_path: Path) -> Iterator[Db]:
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate.upgrade(url)
    # The application's own engine: plain SQLAlchemy defaults (pysqlite's own BEGIN).
    engine = sa.create_engine(url)
    try:
        yield Db(url, engine, None)
    finally:
        engine.dispose()


def postgres_db() -> Iterator[Db]:
    url = postgres_url()
    schema = create_schema(url)
    engine = sa.create_engine(migrate.sync_url(url))
    try:
        yield Db(url, engine, schema)
    finally:
        engine.dispose()
        drop_schema(url, schema)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Db]:
    if request.param == "sqlite":
        yield from sqlite_db(tmp_path)
    else:
        yield from postgres_db()


@pytest.fixture
def pg() -> Iterator[Db]:
    yield from postgres_db()


def enqueue_with_order(db: Db, order_id: int, *args: Any, **options: Any) -> Instance:
    """In one application transaction: an order row, and its job."""
    with db.engine.begin() as conn:
        conn.execute(db.orders.insert().values(id=order_id, item="book"))
        return enqueue(conn, "add", *args, schema=db.schema, job=ADD, **options)


# -- committed, rolled back ---------------------------------------------------------------------


async def test_a_committed_enqueue_is_run_by_a_running_manager(db: Db) -> None:
    # The manager polls rarely: on PostgreSQL the producer's NOTIFY must wake it; on
    # SQLite the store's poll of the file notices the commit.
    poll = 30.0 if db.schema is not None else 0.2
    with trio.fail_after(TIMEOUT):
        async with gojob.open_manager(db.store(), workers=2, lease=5, poll_interval=poll) as m:
            m.register(ADD)
            await trio.sleep(0.3)  # idle: waiting for a notification or its poll
            started = time.monotonic()
            inst = await in_thread(lambda: enqueue_with_order(db, 1, 2, 3))
            assert inst.state is State.SCHEDULED
            done = await m.wait(inst.uuid)
            waited = time.monotonic() - started
    assert done.state is State.COMPLETED
    assert done.result == 5
    assert db.count(db.orders) == 1
    assert db.states(inst.uuid) == ["Created", "Scheduled", "Processing", "Completed"]
    assert waited < 5.0


def test_a_rolled_back_transaction_leaves_no_instance_no_history_and_no_order(db: Db) -> None:
    class Boom(Exception):
        pass

    seen: list[Instance] = []

    def write_then_fail() -> None:
        with db.engine.begin() as conn:
            conn.execute(db.orders.insert().values(id=1, item="book"))
            seen.append(enqueue(conn, "add", 1, 2, schema=db.schema, job=ADD))
            seen.append(enqueue(conn, "anything", {"free": "json"}, schema=db.schema))
            # Visible inside the transaction...
            count = sa.select(sa.func.count()).select_from(db.instances)
            assert conn.execute(count).scalar() == 2
            raise Boom

    with pytest.raises(Boom):
        write_then_fail()
    # ...and gone with it.
    assert len(seen) == 2
    assert db.count(db.instances) == 0
    assert db.history_records() == 0
    assert db.count(db.orders) == 0


def test_the_application_row_and_the_job_commit_together(db: Db) -> None:
    inst = enqueue_with_order(db, 7, 1, 2, priority=3, max_retries=2, timeout=9)
    with db.engine.connect() as conn:
        order = conn.execute(sa.select(db.orders.c.item).where(db.orders.c.id == 7)).scalar()
        row = conn.execute(
            sa.select(db.instances.c.kind, db.instances.c.state, db.instances.c.priority).where(
                db.instances.c.uuid == inst.uuid
            )
        ).one()
    assert order == "book"
    assert tuple(row) == ("add", "Scheduled", 3)
    assert db.states(inst.uuid) == ["Created", "Scheduled"]
    assert inst.policy.priority == 3
    assert inst.policy.max_retries == 2
    assert inst.policy.timeout == 9.0


def test_the_enqueue_never_ends_the_callers_transaction(db: Db) -> None:
    with db.engine.connect() as conn:
        conn.begin()
        enqueue(conn, "add", 1, 2, schema=db.schema, job=ADD)
        assert conn.in_transaction()
        conn.rollback()
    assert db.count(db.instances) == 0


# -- dedupe --------------------------------------------------------------------------------------


async def test_a_live_dedupe_key_returns_its_holder(db: Db) -> None:
    def first_two() -> tuple[Instance, Instance, Instance]:
        with db.engine.begin() as conn:
            a = enqueue(conn, "add", 1, 2, dedupe_key="k", schema=db.schema, job=ADD)
            b = enqueue(conn, "add", 5, 5, dedupe_key="k", schema=db.schema, job=ADD)
        with db.engine.begin() as conn:
            c = enqueue(conn, "add", 7, 7, dedupe_key="k", schema=db.schema, job=ADD)
        return a, b, c

    a, b, c = await in_thread(first_two)
    assert a.uuid == b.uuid == c.uuid
    assert c.args == [1, 2]
    assert db.count(db.instances) == 1
    assert db.history_records() == 2
    # Once the holder is final, the key is free again.
    with trio.fail_after(TIMEOUT):
        async with gojob.open_manager(db.store(), workers=1, lease=5, poll_interval=0.2) as m:
            m.register(ADD)
            assert (await m.wait(a.uuid)).state is State.COMPLETED

    def once_more() -> Instance:
        with db.producer() as producer:
            return producer.enqueue("add", 3, 3, dedupe_key="k", job=ADD)

    d = await in_thread(once_more)
    assert d.uuid != a.uuid
    assert db.count(db.instances) == 2


def test_a_dedupe_key_committed_by_a_concurrent_transaction_is_found(pg: Db) -> None:
    """Two transactions insert the same key; the second blocks on the unique index
    until the first commits, then (after its savepoint) returns the first's instance."""
    results: dict[str, Instance] = {}
    with pg.engine.connect() as first:
        first.begin()
        results["first"] = enqueue(first, "add", 1, 1, dedupe_key="race", schema=pg.schema)

        def second() -> None:
            with pg.engine.begin() as conn:
                conn.execute(pg.orders.insert().values(id=2, item="pen"))
                results["second"] = enqueue(conn, "add", 2, 2, dedupe_key="race", schema=pg.schema)

        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive()  # waiting for the first transaction's key
        first.commit()
        thread.join(TIMEOUT)
    assert results["second"].uuid == results["first"].uuid
    assert pg.count(pg.instances) == 1
    assert pg.count(pg.orders) == 1  # the second transaction went on and committed


# -- validation ---------------------------------------------------------------------------------


def test_arguments_are_validated_by_the_job_before_anything_is_written(db: Db) -> None:
    with db.engine.connect() as conn:
        conn.begin()
        with pytest.raises(ArgumentError, match="expected int"):
            enqueue(conn, "add", 1, "two", schema=db.schema, job=ADD)
        with pytest.raises(ArgumentError):
            enqueue(conn, "add", 1, schema=db.schema, job=ADD)
        with pytest.raises(ArgumentError):
            enqueue(conn, "add", 1, 2, kwargs={"c": 3}, schema=db.schema, job=ADD)
        with pytest.raises(ArgumentError, match="does not match"):
            enqueue(conn, "other", 1, 2, schema=db.schema, job=ADD)
        with pytest.raises(ArgumentError):  # not JSON without a job to say how
            enqueue(conn, "free", object(), schema=db.schema)
        with pytest.raises(ArgumentError):
            enqueue(conn, "add", 1, 2, priority="high", schema=db.schema)  # type: ignore[arg-type]
        with pytest.raises(InvalidSchedule, match="timezone-aware"):
            enqueue(conn, "add", 1, 2, at=datetime(2030, 1, 1), schema=db.schema, job=ADD)
        with pytest.raises(InvalidSchedule):
            enqueue(conn, "add", 1, 2, after=-1, schema=db.schema, job=ADD)
        with pytest.raises(InvalidSchedule):
            enqueue(conn, "add", 1, 2, after=1, at=datetime.now().astimezone(), job=ADD)
        # The transaction is still usable: nothing was sent.
        ok = enqueue(conn, ADD, 1, 2, schema=db.schema)  # a Job as the kind
        conn.commit()
    assert ok.args == [1, 2]
    assert db.count(db.instances) == 1


def test_plain_json_arguments_and_due_times(db: Db) -> None:
    at = datetime.now().astimezone() + timedelta(hours=2)
    with db.engine.begin() as conn:
        free = enqueue(conn, "free", [1, "a"], {"k": None}, kwargs={"when": at}, schema=db.schema)
        later = enqueue(conn, "free", after=60, schema=db.schema)
        fixed = enqueue(conn, "free", at=at, schema=db.schema)
    assert free.args == [[1, "a"], {"k": None}]
    assert free.kwargs == {"when": at.isoformat()}
    assert free.policy == gojob.Policy()
    assert later.scheduled_at is not None
    assert later.created_at is not None
    assert later.scheduled_at - later.created_at == timedelta(seconds=60)
    assert fixed.scheduled_at == at


# -- batch ----------------------------------------------------------------------------------------


async def test_enqueue_many_in_one_transaction_runs_every_call(db: Db) -> None:
    def batch() -> list[Instance]:
        with db.engine.begin() as conn:
            conn.execute(db.orders.insert().values(id=1, item="batch"))
            return enqueue_many(
                conn, "add", [(i, i) for i in range(100)], schema=db.schema, job=ADD
            )

    with trio.fail_after(TIMEOUT):
        async with gojob.open_manager(db.store(), workers=8, lease=5, poll_interval=0.2) as m:
            m.register(ADD)
            added = await in_thread(batch)
            assert len({i.uuid for i in added}) == 100
            results = [(await m.wait(i.uuid)).result for i in added]
    assert results == [2 * i for i in range(100)]
    h = db.history
    created = sa.or_(h.c.state == "Created", h.c.preceded_by == "Created")
    assert db.count(h, created) == 100
    with db.engine.begin() as conn:
        assert enqueue_many(conn, "add", [], schema=db.schema, job=ADD) == []
        with pytest.raises(ArgumentError):
            enqueue_many(conn, "add", [(1, 2), (1, "x")], schema=db.schema, job=ADD)
    assert db.count(db.instances) == 100


def test_a_rolled_back_batch_leaves_nothing(db: Db) -> None:
    conn = db.engine.connect()
    try:
        conn.begin()
        enqueue_many(conn, "free", [(i,) for i in range(300)], schema=db.schema)
        conn.rollback()
    finally:
        conn.close()
    assert db.count(db.instances) == 0
    assert db.history_records() == 0


# -- the sync producer ---------------------------------------------------------------------------


async def test_the_producer_enqueues_for_a_running_manager(db: Db) -> None:
    poll = 30.0 if db.schema is not None else 0.2
    with trio.fail_after(TIMEOUT), db.producer() as producer:
        async with gojob.open_manager(db.store(), workers=2, lease=5, poll_interval=poll) as m:
            m.register(ADD)
            one = await in_thread(lambda: producer.enqueue("add", 20, 22, job=ADD))
            many = await in_thread(lambda: producer.enqueue_many(ADD, [(1, 1), (2, 2)]))
            assert (await m.wait(one.uuid)).result == 42
            assert [(await m.wait(i.uuid)).result for i in many] == [2, 4]


def test_the_producers_transaction_groups_enqueues_with_application_writes(db: Db) -> None:
    class Boom(Exception):
        pass

    with db.producer() as producer:
        with producer.transaction() as conn:
            conn.execute(db.orders.insert().values(id=1, item="kept"))
            kept = enqueue(conn, "add", 1, 2, schema=db.schema, job=ADD)
            again = producer_enqueue_in(conn, db)

        def write_then_fail() -> None:
            with producer.transaction() as conn:
                conn.execute(db.orders.insert().values(id=2, item="dropped"))
                enqueue(conn, "add", 3, 4, schema=db.schema, job=ADD)
                raise Boom

        with pytest.raises(Boom):
            write_then_fail()
        with pytest.raises(ArgumentError):
            producer.enqueue("add", "x", 1, job=ADD)
    assert again.uuid != kept.uuid
    assert db.count(db.orders) == 1
    assert db.count(db.instances) == 2
    assert db.history_records() == 4


def producer_enqueue_in(conn: sa.Connection, db: Db) -> Instance:
    return enqueue_many(conn, "add", [(5, 6)], schema=db.schema, job=ADD)[0]


def test_the_producer_refuses_a_database_without_the_schema(tmp_path: Path) -> None:
    with pytest.raises(SchemaNotAtHead, match="gojob db upgrade"):
        Producer(f"sqlite:///{tmp_path / 'empty.db'}").__enter__()
    # Without the check, the enqueue itself says what to do.
    producer = Producer(tmp_path / "empty2.db")
    try:
        with pytest.raises(StoreError, match="gojob db upgrade"):
            producer.enqueue("free", 1)
    finally:
        producer.close()


def test_the_producer_reports_an_unreachable_server() -> None:
    producer = Producer("postgresql://postgres@127.0.0.1:1/test", connect_timeout=1)
    with pytest.raises(StoreUnavailable, match="PostgreSQL unavailable"):
        producer.enqueue("free", 1)
    producer.close()


def test_unsupported_urls_and_connections_are_refused() -> None:
    with pytest.raises(gojob.UnsupportedStore):
        Producer("mysql://localhost/db")
    engine = sa.create_engine("sqlite://")
    try:
        with engine.connect() as conn, pytest.raises(TypeError):
            enqueue(conn.connection, "free")  # type: ignore[arg-type]
    finally:
        engine.dispose()
