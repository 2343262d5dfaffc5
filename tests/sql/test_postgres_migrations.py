"""Migrations on PostgreSQL: the same Alembic revisions as SQLite, run through psycopg,
in a schema of their own."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
import trio
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gojob.errors import StoreUnavailable
from gojob.state import State
from gojob.store.base import HistoryQuery
from gojob.store.sql import DEFAULT_PREFIX, make_metadata, migrate
from gojob.store.sql.pg_ops import COPY_THRESHOLD
from gojob.store.sql.postgres import PostgresStore
from gojob.store.sql.schema import version_table

from ..store import add_one, make_instance
from ._postgres import create_schema, drop_schema, postgres_url, sql


@pytest.fixture
def empty_schema() -> Iterator[tuple[str, str]]:
    """``(url, schema)``: a new schema without tables, dropped afterwards."""
    try:
        url = postgres_url()
        name = create_schema(url, migrate_to_head=False)
    except StoreUnavailable as exc:
        pytest.skip(str(exc))
    try:
        yield url, name
    finally:
        drop_schema(url, name)


def tables(url: str, schema: str) -> set[str]:
    rows = sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = %s", schema)
    return {name for (name,) in rows}


def schema_diff(url: str, schema: str, prefix: str = DEFAULT_PREFIX) -> list[Any]:
    """Autogenerate's differences between the schema and ``make_metadata(prefix)``."""
    metadata = make_metadata(prefix)

    def ours(name: str | None, type_: str, _parents: Any) -> bool:
        return type_ != "table" or name in metadata.tables

    engine = sa.create_engine(
        migrate.sync_url(url), connect_args={"options": f"-c search_path={schema}"}
    )
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "version_table": version_table(prefix),
                    "include_name": ours,
                    "compare_type": True,
                    "compare_server_default": True,
                },
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_upgrade_gives_exactly_the_models_then_downgrade_and_upgrade_again(
    empty_schema: tuple[str, str],
) -> None:
    url, schema = empty_schema
    assert migrate.current(url, schema=schema) is None
    assert not migrate.check(url, schema=schema)
    migrate.upgrade(url, schema=schema)
    assert migrate.current(url, schema=schema) == migrate.head()
    assert migrate.check(url, schema=schema)
    assert set(make_metadata().tables) <= tables(url, schema)
    assert schema_diff(url, schema) == []

    migrate.downgrade(url, "base", schema=schema)
    assert migrate.current(url, schema=schema) is None
    assert tables(url, schema) == {version_table()}

    migrate.upgrade(url, schema=schema)
    assert schema_diff(url, schema) == []


async def test_a_downgrade_below_0004_writes_both_records_of_a_paired_row(
    empty_schema: tuple[str, str],
) -> None:
    # 0004 lets one history row hold an add's Created and Scheduled records; the large
    # add (COPY) and the small one (one statement) both write them so.
    url, schema = empty_schema
    migrate.upgrade(url, schema=schema)
    async with PostgresStore(url, schema=schema) as store:
        now = await store.now()
        added = await store.add([make_instance(now) for _ in range(COPY_THRESHOLD)])
        added += [await add_one(store) for _ in range(2)]
        before = [await store.history(HistoryQuery(uuid=a.uuid)) for a in added]
    assert {tuple(r.state for r in records) for records in before} == {
        (State.CREATED, State.SCHEDULED)
    }
    paired = sql(url, f"SELECT count(*) FROM {schema}.gojob_history WHERE preceded_by IS NOT NULL")
    assert paired == [(len(added),)]

    await trio.to_thread.run_sync(lambda: migrate.downgrade(url, "0003", schema=schema))
    rows = sql(url, f"SELECT uuid, state, details FROM {schema}.gojob_history ORDER BY seq")
    by_uuid: dict[str, list[tuple[str, Any]]] = {}
    for uuid, state, details in rows:
        by_uuid.setdefault(uuid, []).append((state, json.loads(details)))
    for a, records in zip(added, before, strict=True):
        assert by_uuid[a.uuid] == [("Created", {}), ("Scheduled", records[1].details)]

    await trio.to_thread.run_sync(lambda: migrate.upgrade(url, schema=schema))
    async with PostgresStore(url, schema=schema) as store:
        after = [await store.history(HistoryQuery(uuid=a.uuid)) for a in added]
    assert [[(r.state, r.details, r.timestamp) for r in x] for x in after] == [
        [(r.state, r.details, r.timestamp) for r in x] for x in before
    ]


def test_the_asyncpg_url_of_the_store_migrates_too(empty_schema: tuple[str, str]) -> None:
    url, schema = empty_schema
    asyncpg_url = url.replace("postgresql://", "postgresql+asyncpg://")
    migrate.upgrade(asyncpg_url, schema=schema)
    assert migrate.check(asyncpg_url, schema=schema)


def test_prefixes_side_by_side_in_one_schema(empty_schema: tuple[str, str]) -> None:
    url, schema = empty_schema
    migrate.upgrade(url, prefix="app1_", schema=schema)
    migrate.upgrade(url, prefix="app2_", schema=schema)
    assert schema_diff(url, schema, "app1_") == []
    migrate.downgrade(url, "base", prefix="app1_", schema=schema)
    assert migrate.current(url, prefix="app1_", schema=schema) is None
    assert migrate.current(url, prefix="app2_", schema=schema) == migrate.head()


def test_processes_migrating_at_once_take_turns(empty_schema: tuple[str, str]) -> None:
    url, schema = empty_schema
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            migrate.upgrade(url, schema=schema)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert migrate.check(url, schema=schema)


def test_offline_sql_for_postgresql_sets_the_schema(empty_schema: tuple[str, str]) -> None:
    url, schema = empty_schema
    out = io.StringIO()
    migrate.upgrade(url, schema=schema, sql=True, output=out)
    text = out.getvalue()
    assert f"SET search_path TO {schema}" in text
    assert "CREATE TABLE gojob_instances" in text
    assert "BIGSERIAL" in text
    assert migrate.current(url, schema=schema) is None  # nothing ran


def test_the_command_line_with_a_schema(
    empty_schema: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    url, schema = empty_schema
    assert migrate.main(["check", "--url", url, "--schema", schema]) == 1
    assert migrate.main(["upgrade", "--url", url, "--schema", schema]) == 0
    assert migrate.main(["check", "--url", url, "--schema", schema]) == 0
    capsys.readouterr()
    assert migrate.main(["current", "--url", url, "--schema", schema]) == 0
    assert capsys.readouterr().out.strip() == migrate.head()
    assert migrate.main(["current", "--url", url, "--schema", "bad;name"]) == 2


def test_an_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(StoreUnavailable, match="cannot migrate"):
        migrate.upgrade("postgresql://postgres@127.0.0.1:1/test")


def test_index_methods_and_predicates_follow_the_models(empty_schema: tuple[str, str]) -> None:
    """What autogenerate does not compare: access methods and partial-index predicates
    (the hot writes of a job touch only the indexes their rows belong to)."""
    url, schema = empty_schema
    migrate.upgrade(url, schema=schema)

    def definitions() -> dict[str, str]:
        rows = sql(url, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", schema)
        return {str(name): str(definition) for name, definition in rows}

    found = definitions()
    p = DEFAULT_PREFIX
    assert "USING brin (ts_us)" in found[f"ix_{p}history_ts"]
    assert "USING brin (ts_us)" in found[f"ix_{p}logs_ts"]
    assert "(priority, scheduled_us, seq) WHERE" in found[f"ix_{p}instances_claim"]
    assert "'Scheduled'" in found[f"ix_{p}instances_claim"]
    assert "'Processing'" in found[f"ix_{p}instances_lease"]
    assert "finished_us IS NOT NULL" in found[f"ix_{p}instances_finished"]
    assert "schedule_id IS NOT NULL" in found[f"ix_{p}instances_schedule"]
    assert "dedupe_key IS NOT NULL" in found[f"ux_{p}instances_live_dedupe"]
    # Back to 0002: the B-trees of 0001.
    migrate.downgrade(url, "0002", schema=schema)
    found = definitions()
    assert "USING btree (ts_us)" in found[f"ix_{p}history_ts"]
    assert "WHERE" not in found[f"ix_{p}instances_claim"]
    assert f"ix_{p}instances_lease" not in found
