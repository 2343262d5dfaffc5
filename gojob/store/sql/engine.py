"""SQLite engines: URL parsing, connection pragmas, and who emits BEGIN.

pysqlite begins a transaction lazily, as a *deferred* ``BEGIN``, just before the
first write statement. Two writers that both read first then both try to write
fail with "database is locked" at once, whatever ``busy_timeout`` says (SQLite
cannot wait for a lock that would deadlock). So the engines made here turn
pysqlite's own transaction handling off and emit BEGIN themselves, following
SQLAlchemy's documented recipe (``connect`` and ``begin`` event hooks): a
connection marked with :func:`immediate` begins with ``BEGIN IMMEDIATE``, which
takes the write lock up front (waiting up to ``busy_timeout`` for it), any other
with a plain deferred ``BEGIN`` (readers: a consistent WAL snapshot).
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from sqlalchemy import Connection, Engine, FromClause, create_engine, event
from sqlalchemy.dialects.sqlite.base import SQLiteCompiler
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ...errors import StoreUnavailable

__all__ = [
    "BUSY_TIMEOUT",
    "HintingSQLiteDialect",
    "create_sqlite_engine",
    "immediate",
    "sqlite_url",
]

BUSY_TIMEOUT = 5.0
"""Seconds a connection waits for another one's write lock before giving up."""

_BEGIN_OPTION = "gojob_begin"


def sqlite_url(url_or_path: str | os.PathLike[str] | URL) -> URL:
    """The SQLAlchemy URL of a SQLite database file.

    Accepts ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, the
    same with ``sqlite+pysqlite://``, a URL object, or a plain file path. In-memory
    databases are refused (each pooled connection would get its own); use
    :class:`~gojob.store.memory.MemoryStore`. Raises StoreUnavailable otherwise.
    """
    if isinstance(url_or_path, URL):
        url = url_or_path
    else:
        text = os.fspath(url_or_path)
        if "://" not in text:
            if text in ("", ":memory:"):
                raise StoreUnavailable(
                    "an in-memory SQLite database cannot be shared by a pool of threads: "
                    "give a file path, or use MemoryStore"
                )
            return URL.create("sqlite", database=text)
        try:
            url = make_url(text)
        except ArgumentError as exc:
            raise StoreUnavailable(f"not a database URL: {text!r}") from exc
    if url.get_backend_name() != "sqlite" or url.get_driver_name() not in ("pysqlite", ""):
        raise StoreUnavailable(
            f"not a SQLite URL: {url.render_as_string(hide_password=True)!r} "
            "(expected sqlite:///path/to/file.db)"
        )
    database = url.database or ""
    if database in ("", ":memory:") or url.query.get("mode") == "memory":
        raise StoreUnavailable(
            "an in-memory SQLite database cannot be shared by a pool of threads: "
            "give a file path (sqlite:///path/to/file.db), or use MemoryStore"
        )
    return url


def create_sqlite_engine(
    url: URL, *, busy_timeout: float = BUSY_TIMEOUT, pool_size: int = 5
) -> Engine:
    """An engine on a SQLite file: WAL, ``synchronous=NORMAL``, ``busy_timeout``, and
    BEGIN emitted by us (deferred, or IMMEDIATE on connections marked :func:`immediate`).
    """
    engine = create_engine(
        url,
        connect_args={"timeout": busy_timeout, "check_same_thread": False},
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=busy_timeout * 2,
    )
    timeout_ms = int(busy_timeout * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        # pysqlite must not emit BEGIN itself (see the module docstring).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            # Persistent in the file; a no-op once set. Commits in WAL mode with
            # synchronous=NORMAL do not fsync (durable at the next checkpoint).
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_BEGIN_OPTION) == "IMMEDIATE"
        # Straight to the driver: a full SQLAlchemy execution costs more than BEGIN does.
        driver = connection.connection.driver_connection
        assert driver is not None
        driver.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def immediate(connection: Connection) -> Connection:
    """Mark ``connection`` so that its next transaction begins with ``BEGIN IMMEDIATE``."""
    return connection.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})


class _HintingCompiler(SQLiteCompiler):
    def get_from_hint_text(self, table: FromClause, text: str | None) -> str | None:
        return text


class HintingSQLiteDialect(SQLiteDialect_pysqlite):
    """pysqlite with named parameters, rendering ``with_hint(..., "sqlite")`` hints after
    the table name: ``FROM t INDEXED BY ix``, ``UPDATE t INDEXED BY ix``.

    SQLite's planner, without statistics (a fresh database, or one never ANALYZEd),
    assumes about ten rows per value of any indexed column, so it may prefer scanning
    every live instance by state to probing a unique index once per listed value;
    INDEXED BY settles it (and fails loudly should the index become unusable).
    Used to compile the SQLite store's statements, not as an engine's dialect.
    """

    statement_compiler = _HintingCompiler

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("paramstyle", "named")
        super().__init__(**kwargs)
