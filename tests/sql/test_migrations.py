"""Migrations: upgrade, downgrade, prefixes side by side, and the schema check at open."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import alembic.config
import pytest
import sqlalchemy as sa
import trio
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gojob.errors import StoreUnavailable
from gojob.state import State
from gojob.store.base import HistoryQuery
from gojob.store.sql import DEFAULT_PREFIX, SchemaNotAtHead, SqliteStore, make_metadata, migrate
from gojob.store.sql.schema import version_table

from ..store import add_one


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


def table_names(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def schema_diff(url: str, prefix: str = DEFAULT_PREFIX) -> list[Any]:
    """Autogenerate's differences between the database and ``make_metadata(prefix)``."""
    metadata = make_metadata(prefix)

    def ours(name: str | None, type_: str, _parents: Any) -> bool:
        return type_ != "table" or name in metadata.tables

    engine = sa.create_engine(url)
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


def ours(prefix: str = DEFAULT_PREFIX) -> set[str]:
    return set(make_metadata(prefix).tables)


def test_upgrade_gives_exactly_the_models_then_downgrade_and_upgrade_again(url: str) -> None:
    assert migrate.current(url) is None
    assert not migrate.check(url)
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head()
    assert migrate.check(url)
    assert ours() <= table_names(url)
    assert schema_diff(url) == []

    migrate.downgrade(url, "base")
    assert migrate.current(url) is None
    # Only Alembic's bookkeeping stays, empty.
    assert table_names(url) == {version_table()}

    migrate.upgrade(url)
    assert schema_diff(url) == []
    assert migrate.check(url)


async def test_a_downgrade_below_0004_writes_both_records_of_a_paired_row(url: str) -> None:
    # 0004 lets one history row hold an add's Created and Scheduled records.
    migrate.upgrade(url)
    async with SqliteStore(url) as store:
        added = [await add_one(store) for _ in range(3)]
        before = [await store.history(HistoryQuery(uuid=a.uuid)) for a in added]
    assert [[r.state for r in records] for records in before] == [
        [State.CREATED, State.SCHEDULED]
    ] * 3

    await trio.to_thread.run_sync(migrate.downgrade, url, "0003")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT uuid, state, details FROM gojob_history ORDER BY seq")
            ).all()
    finally:
        engine.dispose()
    for a, records in zip(added, before, strict=True):
        assert [(r[1], json.loads(r[2])) for r in rows if r[0] == a.uuid] == [
            ("Created", {}),
            ("Scheduled", records[1].details),
        ]

    await trio.to_thread.run_sync(migrate.upgrade, url)
    async with SqliteStore(url) as store:
        after = [await store.history(HistoryQuery(uuid=a.uuid)) for a in added]
    assert [[(r.state, r.details, r.timestamp) for r in x] for x in after] == [
        [(r.state, r.details, r.timestamp) for r in x] for x in before
    ]


def test_the_comparison_sees_a_difference(url: str) -> None:
    migrate.upgrade(url)
    metadata = make_metadata()
    instances = metadata.tables[f"{DEFAULT_PREFIX}instances"]
    instances.append_column(sa.Column("extra", sa.Integer))
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"version_table": version_table(), "compare_type": True}
            )
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert [d[0] for d in diff] == ["add_column"]


def test_upgrading_twice_is_a_no_op(url: str) -> None:
    migrate.upgrade(url)
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head()


def test_two_prefixes_side_by_side(url: str) -> None:
    migrate.upgrade(url, prefix="app1_")
    migrate.upgrade(url, prefix="app2_")
    names = table_names(url)
    assert ours("app1_") | ours("app2_") <= names
    assert {version_table("app1_"), version_table("app2_")} <= names
    assert schema_diff(url, "app1_") == []
    assert schema_diff(url, "app2_") == []
    # Each prefix has its own version: downgrading one leaves the other alone.
    migrate.downgrade(url, "base", prefix="app1_")
    assert migrate.current(url, prefix="app1_") is None
    assert migrate.current(url, prefix="app2_") == migrate.head()
    assert not table_names(url) & ours("app1_")
    assert schema_diff(url, "app2_") == []


async def test_stores_with_two_prefixes_share_a_file_without_seeing_each_other(
    url: str,
) -> None:
    with trio.fail_after(10):
        async with (
            SqliteStore(url, prefix="app1_", auto_migrate=True) as first,
            SqliteStore(url, prefix="app2_", auto_migrate=True) as second,
        ):
            one = await add_one(first)
            two = await add_one(second)
            assert await first.get(two.uuid) is None
            assert await second.get(one.uuid) is None
            assert [i.uuid for i in await first.claim("n", None, 10, 30)] == [one.uuid]
            assert [i.uuid for i in await second.claim("n", None, 10, 30)] == [two.uuid]


async def test_a_store_refuses_to_open_an_empty_database(url: str) -> None:
    with trio.fail_after(10):
        sa.create_engine(url).dispose()
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            conn.execute("CREATE TABLE unrelated (x INTEGER)")
        with pytest.raises(SchemaNotAtHead) as caught:
            async with SqliteStore(url):
                pass  # pragma: no cover
        message = str(caught.value)
        assert f"gojob db upgrade --url {url}" in message
        assert "no gojob tables" in message


async def test_a_store_does_not_create_a_missing_file(tmp_path: Path) -> None:
    with trio.fail_after(10):
        missing = tmp_path / "typo.db"
        with pytest.raises(SchemaNotAtHead, match="no SQLite database") as caught:
            async with SqliteStore(missing):
                pass  # pragma: no cover
        assert f"gojob db upgrade --url sqlite:///{missing}" in str(caught.value)
        assert not missing.exists()


async def test_a_store_refuses_an_old_schema_and_names_the_prefix(url: str) -> None:
    with trio.fail_after(10):
        migrate.upgrade(url, prefix="app_")
        migrate.downgrade(url, "base", prefix="app_")
        with pytest.raises(SchemaNotAtHead) as caught:
            async with SqliteStore(url, prefix="app_"):
                pass  # pragma: no cover
        assert f"gojob db upgrade --url {url} --prefix app_" in str(caught.value)
        # Once upgraded, it opens.
        await trio.to_thread.run_sync(lambda: migrate.upgrade(url, prefix="app_"))
        async with SqliteStore(url, prefix="app_") as store:
            assert await store.counts() == {}


async def test_a_store_refuses_a_schema_newer_than_it_knows(url: str) -> None:
    with trio.fail_after(10):
        migrate.upgrade(url)
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {version_table()} SET version_num = 'ffff'"))
        engine.dispose()
        with pytest.raises(SchemaNotAtHead, match="unknown: a newer gojob"):
            async with SqliteStore(url):
                pass  # pragma: no cover


async def test_auto_migrate_creates_the_schema(url: str) -> None:
    with trio.fail_after(10):
        async with SqliteStore(url, auto_migrate=True) as store:
            await add_one(store)
        assert migrate.check(url)
        assert schema_diff(url) == []
        # Opening again without auto_migrate: at head, so it opens.
        async with SqliteStore(url) as store:
            assert len(await store.claim("n", None, 10, 30)) == 1


@pytest.mark.parametrize(
    "bad",
    [
        "postgresql://localhost/db",
        "sqlite://",
        "sqlite:///:memory:",
        ":memory:",
        "not a url://x",
    ],
)
def test_a_wrong_url_is_refused_clearly(bad: str) -> None:
    with pytest.raises(StoreUnavailable):
        SqliteStore(bad)


async def test_an_unreachable_file_is_unavailable_not_a_hang(tmp_path: Path) -> None:
    with trio.fail_after(10):
        missing = tmp_path / "no" / "such" / "dir" / "jobs.db"
        with pytest.raises(StoreUnavailable, match="cannot open"):
            async with SqliteStore(missing, auto_migrate=True):
                pass  # pragma: no cover
        garbage = tmp_path / "garbage.db"
        garbage.write_bytes(b"this is not a database file" * 200)
        with pytest.raises(StoreUnavailable):
            async with SqliteStore(garbage):
                pass  # pragma: no cover


def test_offline_sql_is_written_not_run(url: str) -> None:
    out = io.StringIO()
    migrate.upgrade(url, prefix="off_", sql=True, output=out)
    text = out.getvalue()
    assert "CREATE TABLE off_instances" in text
    assert "CREATE UNIQUE INDEX ux_off_instances_live_dedupe" in text
    assert migrate.current(url, prefix="off_") is None


def test_command_line(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert migrate.main(["check", "--url", url]) == 1
    assert migrate.main(["upgrade", "--url", url]) == 0
    assert migrate.main(["check", "--url", url]) == 0
    assert migrate.main(["current", "--url", url]) == 0
    assert migrate.head() in capsys.readouterr().out
    # The revision may also follow the options.
    assert migrate.main(["downgrade", "--url", url, "0002"]) == 0
    assert migrate.main(["current", "--url", url]) == 0
    assert capsys.readouterr().out.strip() == "0002"
    assert migrate.main(["downgrade", "base", "--url", url]) == 0
    assert migrate.main(["current", "--url", url]) == 0
    assert "(empty)" in capsys.readouterr().out


def test_the_alembic_command_line_takes_url_and_prefix(url: str) -> None:
    ini = Path(__file__).parents[2] / "migrations" / "alembic.ini"
    alembic.config.main(
        argv=["-c", str(ini), "-x", f"url={url}", "-x", "prefix=cli_", "upgrade", "head"]
    )
    assert migrate.current(url, prefix="cli_") == migrate.head()
    assert schema_diff(url, "cli_") == []
    assert migrate.current(url) is None  # the default prefix is untouched


def test_migrations_ship_inside_the_package() -> None:
    location = migrate.SCRIPT_LOCATION
    assert (location / "env.py").is_file()
    assert (location / "script.py.mako").is_file()
    assert any(location.glob("versions/*.py"))
    assert Path(migrate.__file__).parent in location.parents
