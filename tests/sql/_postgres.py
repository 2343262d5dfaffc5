"""PostgreSQL for the tests: the server's URL, and a fresh schema per test.

The URL comes from ``GOJOB_POSTGRES_URL``; unset, it is the local server of the
development and CI machines (``postgresql://postgres@127.0.0.1:5432/test``); set to
the empty string, PostgreSQL is unavailable (its tests skip, or fail under
``GOJOB_REQUIRE_SERVICES``).

Every test gets a schema of its own, ``gojob_t_<random>``, migrated to head by
``gojob db upgrade`` (Alembic, online), and dropped afterwards with what it holds;
nothing else in the database is touched.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import trio

from gojob.errors import StoreUnavailable
from gojob.store.sql import migrate
from gojob.store.sql.postgres import PostgresStore

__all__ = [
    "POSTGRES_URL_ENV",
    "create_schema",
    "drop_schema",
    "fresh_schema",
    "postgres_store",
    "postgres_url",
    "sql",
]

POSTGRES_URL_ENV = "GOJOB_POSTGRES_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
CONNECT_TIMEOUT = 3


def postgres_url() -> str:
    """The test server's URL; StoreUnavailable when PostgreSQL is switched off."""
    url = os.environ.get(POSTGRES_URL_ENV, DEFAULT_URL)
    if not url:
        raise StoreUnavailable(f"{POSTGRES_URL_ENV} is empty: PostgreSQL tests are off")
    return url


def _connect(url: str) -> psycopg.Connection[Any]:
    conninfo = url.replace("postgresql+asyncpg://", "postgresql://")
    try:
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"PostgreSQL at {url} is unreachable: {exc}") from exc


def sql(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement on a connection of its own (autocommit); its rows, if any."""
    with _connect(url) as conn:
        cursor = conn.execute(statement.encode(), params or None)
        return cursor.fetchall() if cursor.description else []


def create_schema(url: str, *, migrate_to_head: bool = True, prefix: str = "gojob_") -> str:
    """A new, uniquely named schema, migrated to head (unless told otherwise)."""
    name = f"gojob_t_{uuid.uuid4().hex[:12]}"
    sql(url, f"CREATE SCHEMA {name}")
    if migrate_to_head:
        try:
            migrate.upgrade(url, prefix=prefix, schema=name)
        except BaseException:
            drop_schema(url, name)
            raise
    return name


def drop_schema(url: str, name: str) -> None:
    """Drop a schema made by :func:`create_schema`, and everything in it."""
    assert name.startswith("gojob_t_"), name  # never drop what the tests did not create
    sql(url, f"DROP SCHEMA IF EXISTS {name} CASCADE")


@asynccontextmanager
async def fresh_schema(*, migrate_to_head: bool = True) -> AsyncIterator[tuple[str, str]]:
    """``(url, schema)``: a fresh schema for the block, dropped afterwards."""
    url = postgres_url()
    name = await trio.to_thread.run_sync(
        lambda: create_schema(url, migrate_to_head=migrate_to_head)
    )
    try:
        yield url, name
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(drop_schema, url, name)


@asynccontextmanager
async def postgres_store(**options: Any) -> AsyncIterator[PostgresStore]:
    """An opened PostgresStore on a fresh schema."""
    async with (
        fresh_schema() as (url, schema),
        PostgresStore(url, schema=schema, **options) as store,
    ):
        yield store
