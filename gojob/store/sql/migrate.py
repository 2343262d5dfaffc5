"""Schema migrations: Alembic, driven programmatically (and by ``gojob db ...``).

The Alembic scripts ship inside the package, in ``gojob/store/sql/migrations/``
(:data:`SCRIPT_LOCATION`: ``env.py``, ``script.py.mako``, ``versions/``), so they are
found wherever gojob is installed, editable or not; the repository's top-level
``migrations/`` only points there (and holds an ``alembic.ini`` for developers).

Every function takes the database URL and the table prefix: the prefix reaches the
migrations through ``Config.attributes["gojob_prefix"]`` (or ``-x prefix=...`` on the
``alembic`` command line) and names the tables and the version table
(``<prefix>alembic_version``), so deployments with different prefixes migrate
independently in one database.

On SQLite every migration runs in one ``BEGIN IMMEDIATE`` transaction: it is atomic,
and processes that migrate one file at the same time take turns (the later ones find
the schema at head and do nothing).

On PostgreSQL the migrations run through a *sync* driver, psycopg 3, whatever the
URL's driver (``postgresql://``, ``postgresql+asyncpg://``... all mean the same
database): Alembic's sync ``env.py`` cannot run on asyncpg, and the PostgreSQL store
itself uses asyncpg. ``schema`` (PostgreSQL only) puts the tables in that schema (the
connection's ``search_path``); a migration holds a transaction-scoped advisory lock,
so processes migrating one database at the same time take turns there too.

The functions block: from Trio, call them through ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from ...errors import StoreError, StoreUnavailable
from .engine import create_sqlite_engine, immediate, sqlite_url
from .errors import SchemaNotAtHead
from .schema import DEFAULT_PREFIX, make_metadata, version_table

__all__ = [
    "PREFIX_ATTRIBUTE",
    "SCRIPT_LOCATION",
    "SchemaNotAtHead",
    "alembic_config",
    "check",
    "check_schema_name",
    "current",
    "current_revision",
    "downgrade",
    "ensure_at_head",
    "ensure_revision",
    "fix_command",
    "head",
    "main",
    "migration_prefix",
    "run_env",
    "sync_url",
    "upgrade",
    "upgrade_connection",
]

SCRIPT_LOCATION = Path(__file__).with_name("migrations")
"""The Alembic script directory shipped with gojob."""

PREFIX_ATTRIBUTE = "gojob_prefix"
"""``Config.attributes`` key carrying the table prefix into ``env.py`` and the revisions."""

_CONNECTION_ATTRIBUTE = "connection"
_SCHEMA_ATTRIBUTE = "gojob_schema"


def fix_command(url: str | URL, prefix: str, schema: str | None = None) -> str:
    """The command that brings the schema of ``url`` and ``prefix`` to head."""
    text = url if isinstance(url, str) else url.render_as_string(hide_password=True)
    command_line = f"gojob db upgrade --url {text}"
    if prefix != DEFAULT_PREFIX:
        command_line += f" --prefix {prefix}"
    return command_line if schema is None else f"{command_line} --schema {schema}"


def check_schema_name(schema: str) -> str:
    """``schema`` if it is a plain PostgreSQL identifier (it is spliced into settings)."""
    if not (
        schema
        and schema.isascii()
        and schema.replace("_", "a").isalnum()
        and not schema[0].isdigit()
        and len(schema) <= 63
    ):
        raise ValueError(
            f"schema names must be ASCII letters, digits and underscores, not starting "
            f"with a digit: {schema!r}"
        )
    return schema


def sync_url(url: str | URL) -> URL:
    """The URL Alembic connects with: PostgreSQL URLs get the psycopg (sync) driver."""
    text = url.render_as_string(hide_password=False) if isinstance(url, URL) else url
    if text.startswith("postgres://"):
        text = "postgresql://" + text.removeprefix("postgres://")
    parsed = make_url(text)
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    return parsed


# -- configuration ------------------------------------------------------------------------------


def alembic_config(
    url: str | URL | None = None,
    prefix: str = DEFAULT_PREFIX,
    *,
    connection: Connection | None = None,
    output: TextIO | None = None,
) -> Config:
    """An Alembic ``Config`` for gojob's scripts, the URL (or an open connection) and prefix."""
    config = Config(output_buffer=output, stdout=output or sys.stdout)
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    if url is not None:
        text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", text.replace("%", "%%"))
    config.attributes[PREFIX_ATTRIBUTE] = prefix
    if connection is not None:
        config.attributes[_CONNECTION_ATTRIBUTE] = connection
    return config


@functools.cache
def head() -> str:
    """The newest revision of gojob's schema."""
    revision = ScriptDirectory(str(SCRIPT_LOCATION)).get_current_head()
    assert revision is not None
    return revision


@functools.cache
def _known_revisions() -> frozenset[str]:
    return frozenset(s.revision for s in ScriptDirectory(str(SCRIPT_LOCATION)).walk_revisions())


def migration_prefix() -> str:
    """The table prefix of the migration being run (for revision scripts)."""
    from alembic import context

    prefix: str = context.config.attributes[PREFIX_ATTRIBUTE]
    return prefix


# -- env.py ----------------------------------------------------------------------------------


def run_env() -> None:
    """The body of ``env.py``: run the migrations online (on the connection given in
    the config's attributes, or on a new one to the config's URL) or offline (SQL)."""
    from alembic import context

    config = context.config
    x_args = context.get_x_argument(as_dictionary=True)
    prefix = config.attributes.get(PREFIX_ATTRIBUTE) or x_args.get("prefix", DEFAULT_PREFIX)
    config.attributes[PREFIX_ATTRIBUTE] = prefix
    metadata = make_metadata(prefix)

    def include_name(name: str | None, type_: str, _parents: Any) -> bool:
        # Another prefix's tables in the same database are not ours to compare.
        return type_ != "table" or name in metadata.tables

    options: dict[str, Any] = {
        "target_metadata": metadata,
        "version_table": version_table(prefix),
        "include_name": include_name,
        "compare_type": True,
    }
    url = config.get_main_option("sqlalchemy.url") or x_args.get("url")
    if context.is_offline_mode():
        if url is None:
            raise StoreError("offline migrations need a URL (sqlalchemy.url or -x url=...)")
        dialect = make_url(url).get_backend_name()
        context.configure(
            url=url, literal_binds=True, render_as_batch=dialect == "sqlite", **options
        )
        with context.begin_transaction():
            schema = config.attributes.get(_SCHEMA_ATTRIBUTE)
            if schema is not None:
                context.execute(f"SET search_path TO {check_schema_name(schema)}")
            context.run_migrations()
        return
    given = config.attributes.get(_CONNECTION_ATTRIBUTE)
    if given is not None:
        _run_online(given, options)
        return
    if url is None:
        raise StoreError("migrations need a URL (sqlalchemy.url or -x url=...)")
    engine = _engine(url)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                immediate(connection)
            with connection.begin():
                _run_online(connection, options)
    finally:
        engine.dispose()


def _run_online(connection: Connection, options: dict[str, Any]) -> None:
    from alembic import context

    sqlite = connection.dialect.name == "sqlite"
    # Our SQLite connections emit BEGIN themselves, so DDL is transactional there too.
    context.configure(
        connection=connection, render_as_batch=sqlite, transactional_ddl=True, **options
    )
    with context.begin_transaction():
        context.run_migrations()


# -- programmatic commands ------------------------------------------------------------------------


def _engine(url: str | URL, schema: str | None = None) -> Engine:
    try:
        parsed = sync_url(url)
        if parsed.get_backend_name() == "sqlite":
            if schema is not None:
                raise ValueError("SQLite has no schemas: use a table prefix")
            return create_sqlite_engine(sqlite_url(parsed), pool_size=1)
        if schema is not None:
            options = f"-c search_path={check_schema_name(schema)}"
            return create_engine(parsed, connect_args={"options": options})
        return create_engine(parsed)
    except (SQLAlchemyError, ValueError) as exc:
        # A malformed URL or an unknown dialect: say which, not a driver traceback.
        raise StoreUnavailable(f"cannot use database URL {url!s}: {exc}") from exc


def _translate(exc: SQLAlchemyError, url: str | URL) -> StoreError:
    text = url if isinstance(url, str) else url.render_as_string(hide_password=True)
    return StoreUnavailable(f"cannot migrate the database at {text}: {exc}")


def _lock(connection: Connection, prefix: str) -> None:
    """PostgreSQL: take turns with other processes migrating this database (and prefix)."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            "SELECT pg_advisory_xact_lock(hashtext(%(key)s))", {"key": f"gojob-migrate:{prefix}"}
        )


def _on_connection(
    url: str | URL, prefix: str, revision: str, *, up: bool, schema: str | None = None
) -> None:
    engine = _engine(url, schema)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                immediate(connection)
            with connection.begin():
                _lock(connection, prefix)
                config = alembic_config(url, prefix, connection=connection)
                if up:
                    command.upgrade(config, revision)
                else:
                    command.downgrade(config, revision)
    except SQLAlchemyError as exc:
        raise _translate(exc, url) from exc
    finally:
        engine.dispose()


def _offline_config(
    url: str | URL, prefix: str, schema: str | None, output: TextIO | None
) -> Config:
    config = alembic_config(sync_url(url), prefix, output=output)
    if schema is not None:
        config.attributes[_SCHEMA_ATTRIBUTE] = check_schema_name(schema)
    return config


def upgrade(
    url: str | URL,
    revision: str = "head",
    *,
    prefix: str = DEFAULT_PREFIX,
    schema: str | None = None,
    sql: bool = False,
    output: TextIO | None = None,
) -> None:
    """Upgrade the schema of ``prefix`` to ``revision``; ``sql=True`` writes the SQL to
    ``output`` (stdout) instead of running it."""
    if sql:
        command.upgrade(_offline_config(url, prefix, schema, output), revision, sql=True)
    else:
        _on_connection(url, prefix, revision, up=True, schema=schema)


def downgrade(
    url: str | URL,
    revision: str,
    *,
    prefix: str = DEFAULT_PREFIX,
    schema: str | None = None,
    sql: bool = False,
    output: TextIO | None = None,
) -> None:
    """Downgrade the schema of ``prefix`` to ``revision`` (``"base"``: drop every table)."""
    if sql:
        command.downgrade(_offline_config(url, prefix, schema, output), revision, sql=True)
    else:
        _on_connection(url, prefix, revision, up=False, schema=schema)


def current_revision(connection: Connection, prefix: str = DEFAULT_PREFIX) -> str | None:
    """The revision the schema of ``prefix`` is at, on an open connection (None: empty)."""
    context = MigrationContext.configure(connection, opts={"version_table": version_table(prefix)})
    return context.get_current_revision()


def current(
    url: str | URL, *, prefix: str = DEFAULT_PREFIX, schema: str | None = None
) -> str | None:
    """The revision the schema of ``prefix`` is at (None for an empty database)."""
    engine = _engine(url, schema)
    try:
        with engine.connect() as connection:
            return current_revision(connection, prefix)
    except SQLAlchemyError as exc:
        raise _translate(exc, url) from exc
    finally:
        engine.dispose()


def check(url: str | URL, *, prefix: str = DEFAULT_PREFIX, schema: str | None = None) -> bool:
    """True when the schema of ``prefix`` is at head."""
    return current(url, prefix=prefix, schema=schema) == head()


def ensure_at_head(connection: Connection, url: str | URL, prefix: str = DEFAULT_PREFIX) -> None:
    """Raise :class:`SchemaNotAtHead`, naming the command that fixes it, unless the
    schema of ``prefix`` is at head."""
    ensure_revision(current_revision(connection, prefix), url, prefix)


def ensure_revision(
    found: str | None, url: str | URL, prefix: str = DEFAULT_PREFIX, schema: str | None = None
) -> None:
    """Raise :class:`SchemaNotAtHead`, naming the command that fixes it, unless ``found``
    (the revision a database is at; None: no gojob tables) is head."""
    expected = head()
    if found == expected:
        return
    if found is None:
        state = "has no gojob tables"
    else:
        state = f"is at revision {found}"
        if found not in _known_revisions():
            state += " (unknown: a newer gojob?)"
    raise SchemaNotAtHead(
        f"the database schema for table prefix {prefix!r} {state}, not at head {expected}: "
        f"run `{fix_command(url, prefix, schema)}`"
    )


def upgrade_connection(connection: Connection, prefix: str = DEFAULT_PREFIX) -> None:
    """Upgrade to head on an open connection whose transaction has begun (the caller
    commits); does nothing when already at head."""
    found = current_revision(connection, prefix)
    if found == head():
        return
    if found is not None and found not in _known_revisions():
        raise SchemaNotAtHead(
            f"the database schema for table prefix {prefix!r} is at revision {found}, "
            "unknown to this gojob (a newer gojob?): it cannot be migrated from here"
        )
    command.upgrade(alembic_config(None, prefix, connection=connection), "head")


# -- command line ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gojob.store.sql.migrate upgrade|downgrade|current|check --url URL``."""
    parser = argparse.ArgumentParser(
        prog="gojob db", description="Create or migrate gojob's database schema."
    )
    parser.add_argument("action", choices=["upgrade", "downgrade", "current", "check"])
    parser.add_argument("revision", nargs="?", help="target revision (upgrade: head)")
    parser.add_argument("--url", required=True, help="database URL, e.g. sqlite:///jobs.db")
    parser.add_argument("--prefix", default=DEFAULT_PREFIX, help="table prefix (gojob_)")
    parser.add_argument("--schema", help="PostgreSQL schema of the tables (default: search_path)")
    parser.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    # Intermixed: the revision may come after the options (`downgrade --url U base`).
    args = parser.parse_intermixed_args(argv)
    try:
        if args.action == "upgrade":
            upgrade(
                args.url,
                args.revision or "head",
                prefix=args.prefix,
                schema=args.schema,
                sql=args.sql,
            )
        elif args.action == "downgrade":
            if args.revision is None:
                parser.error("downgrade needs a target revision (base: drop everything)")
            downgrade(args.url, args.revision, prefix=args.prefix, schema=args.schema, sql=args.sql)
        elif args.action == "current":
            print(current(args.url, prefix=args.prefix, schema=args.schema) or "(empty)")
        else:
            at_head = check(args.url, prefix=args.prefix, schema=args.schema)
            print("at head" if at_head else f"not at head {head()}: run upgrade")
            return 0 if at_head else 1
    except (StoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
