"""The SQL side of :mod:`gojob.producer`: writing new instances on a caller's sync
SQLAlchemy connection, inside the caller's transaction.

The instances, their Created and Scheduled history records and the dedupe decision
are those of the SQL stores' ``add`` (:func:`gojob.store.sql.ops.add`, run through
SQLAlchemy Core on the caller's connection, so on SQLite and PostgreSQL alike). On
PostgreSQL the events of the write are also sent as the PostgreSQL store sends them
(:mod:`gojob.store.sql.pg_events`, one ``pg_notify`` statement on the store's
channel): NOTIFY is transactional, so running managers wake when, and only when, the
caller commits.

Nothing here begins, commits or rolls back the caller's transaction; a savepoint is
used on PostgreSQL only, around an insert that carries dedupe keys (a concurrent
transaction may commit the same key first: the savepoint is rolled back and the
holder looked up again, as the store retries its transaction).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, MetaData, text
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    SQLAlchemyError,
)

from .errors import StoreError, StoreUnavailable, UnsupportedStore
from .instance import Instance
from .store.sql import ops
from .store.sql.pg_events import encode_events
from .store.sql.pg_statements import NOW_US
from .store.sql.rows import from_us
from .store.sql.schema import Tables, make_metadata, tables_of
from .store.sql.statements import Statements

__all__ = ["ORIGIN", "channel", "insert", "now", "statements", "translate"]

ORIGIN = os.urandom(8).hex()
"""The origin named in this process's NOTIFY payloads (no store skips it as its own)."""

DIALECTS = ("sqlite", "postgresql")
MAX_TRIES = 5
"""Inserts retried after a concurrent transaction committed one of their dedupe keys."""

_NOW = text(f"SELECT {NOW_US}")
_NOTIFY = text("SELECT count(pg_notify(:channel, p)) FROM unnest(CAST(:payloads AS text[])) AS p")


def dialect_of(connection: Connection) -> str:
    name = connection.dialect.name
    if name not in DIALECTS:
        raise UnsupportedStore(
            f"gojob enqueues on SQLite and PostgreSQL connections, not on {name!r}"
        )
    return name


@functools.lru_cache(maxsize=32)
def statements(prefix: str, schema: str | None) -> Statements:
    """The store's statements for ``prefix``, their tables qualified by ``schema``
    (None: the connection's search path), run through SQLAlchemy (no driver SQL)."""
    tables = tables_of(make_metadata(prefix), prefix)
    if schema is not None:
        qualified = MetaData(naming_convention=tables.instances.metadata.naming_convention)
        tables = Tables(*(t.to_metadata(qualified, schema=schema) for t in tables))
    return Statements(tables)


def channel(schema: str | None, prefix: str) -> str:
    """The NOTIFY channel of a PostgreSQL deployment: the store's own."""
    from .store.sql.postgres import _channel  # asyncpg only once PostgreSQL is in use

    return _channel(schema, prefix)


def now(connection: Connection, dialect: str) -> datetime:
    """The store's clock: the database's (transaction start) on PostgreSQL, this
    machine's wall time on SQLite (as the SQLite store's default clock)."""
    if dialect == "postgresql":
        value: int = connection.execute(_NOW).scalar_one()
        return from_us(value)
    return datetime.now(UTC)


def insert(
    connection: Connection,
    dialect: str,
    prefix: str,
    schema: str | None,
    instances: Sequence[Instance],
    when: datetime,
) -> list[Instance]:
    """Insert ``instances`` (or find the live holders of their dedupe keys) on the
    caller's connection; on PostgreSQL, NOTIFY their events at the caller's commit."""
    st = statements(prefix, schema)
    guarded = dialect == "postgresql" and any(i.dedupe_key is not None for i in instances)
    for attempt in range(MAX_TRIES):
        if not guarded:
            added, events = ops.add(connection, st, instances, when)
            break
        savepoint = connection.begin_nested()
        try:
            added, events = ops.add(connection, st, instances, when)
        except IntegrityError:
            savepoint.rollback()
            if attempt + 1 < MAX_TRIES:
                continue
            raise
        savepoint.commit()
        break
    if dialect == "postgresql":
        payloads = encode_events(ORIGIN, events)
        if payloads:
            connection.execute(_NOTIFY, {"channel": channel(schema, prefix), "payloads": payloads})
    return added


def translate(exc: SQLAlchemyError, dialect: str) -> StoreError:
    """A SQLAlchemy error as gojob's: StoreUnavailable when the database cannot be used
    now (unreachable, locked, connection lost), else StoreError."""
    name = "PostgreSQL" if dialect == "postgresql" else "SQLite"
    detail = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text_ = str(detail).strip().splitlines()[0] if str(detail).strip() else type(detail).__name__
    message = f"{type(detail).__name__}: {text_}"
    if isinstance(exc, IntegrityError) and dialect == "sqlite":
        return StoreError(
            f"{name} error: {message} (a concurrent transaction took a dedupe key: "
            "retry the transaction)"
        )
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        if "no such table" in message:
            return StoreError(f"{name} error: {message} (run `gojob db upgrade`)")
        return StoreUnavailable(f"{name} unavailable: {message}")
    if "UndefinedTable" in message:
        return StoreError(f"{name} error: {message} (run `gojob db upgrade`)")
    return StoreError(f"{name} error: {message}")
