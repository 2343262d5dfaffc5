"""Enqueue jobs inside the caller's own database transaction, and a small sync producer.

:func:`enqueue` and :func:`enqueue_many` write new instances (with their Created and
Scheduled history records) on a SQLAlchemy **sync** ``Connection`` the caller passes,
inside the caller's transaction: they never begin, commit or roll it back, so the jobs
exist if and only if the caller commits, together with whatever else it wrote::

    with engine.begin() as conn:
        conn.execute(orders.insert().values(id=42))
        enqueue(conn, "send_receipt", 42)

Both work on SQLite and PostgreSQL databases migrated by ``gojob db upgrade`` (same
``prefix``, and on PostgreSQL the same ``schema`` the stores use; ``schema=None`` means
the connection's search path). On PostgreSQL the write also issues the NOTIFY the
PostgreSQL store sends for new due work, delivered at commit, so running managers start
the job at once; on SQLite managers notice within their poll interval.

:class:`Producer` is for applications that do not run Trio (a Flask or Django view):
it opens its own sync engine on a URL and runs each call in its own transaction, or
several enqueues and the application's own writes in one (:meth:`Producer.transaction`).

Arguments are validated and encoded by the executor's signature and annotations when
``job=`` (a :class:`~gojob.Job`) is given, exactly as ``Manager.schedule`` does; without
it they are encoded as plain JSON (:func:`gojob.codec.encode`) and the job's policy is
the default one, changed by the ``priority``, ``timeout`` and ``max_retries`` given.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError as SQLAlchemyArgumentError
from sqlalchemy.exc import SQLAlchemyError

from . import _producer_sql as sql
from .codec import JSON, Limits, check_size, encode, encode_call
from .errors import ArgumentError, InvalidSchedule, UnsupportedStore
from .instance import Instance
from .job import Job
from .policy import Policy, seconds
from .store.sql.schema import DEFAULT_PREFIX

__all__ = ["Producer", "enqueue", "enqueue_many"]

_DEFAULT_POLICY = Policy()
_DEFAULT_LIMITS = Limits()


def enqueue(
    connection: Connection,
    kind: str | Job,
    *args: Any,
    kwargs: Mapping[str, Any] | None = None,
    after: float | timedelta | None = None,
    at: datetime | None = None,
    priority: int | None = None,
    timeout: float | timedelta | None = None,
    max_retries: int | None = None,
    dedupe_key: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    schema: str | None = None,
    job: Job | None = None,
    limits: Limits | None = None,
) -> Instance:
    """Enqueue one instance of ``kind`` with ``args``/``kwargs`` on ``connection``, in its
    transaction (begun by the caller, or begun now by SQLAlchemy's autobegin; committed
    or rolled back by the caller only).

    Due now, ``after`` a delay or ``at`` an aware datetime. With ``dedupe_key``, when a
    live (non-final) instance holds the key it is returned instead and nothing is
    written. ``job`` (or a Job as ``kind``) validates the arguments by its executor and
    gives the policy defaults. Returns the instance as stored (Scheduled).

    Raises ArgumentError (bad arguments), InvalidSchedule (``after``/``at``),
    StoreUnavailable (the database cannot be used now) or StoreError (any other
    database error: the caller's transaction is then unusable and must be rolled back).
    """
    (added,) = _enqueue(
        connection,
        kind,
        [(args, kwargs)],
        after=after,
        at=at,
        priority=priority,
        timeout=timeout,
        max_retries=max_retries,
        dedupe_key=dedupe_key,
        prefix=prefix,
        schema=schema,
        job=job,
        limits=limits,
    )
    return added


def enqueue_many(
    connection: Connection,
    kind: str | Job,
    calls: Iterable[Sequence[Any]],
    *,
    after: float | timedelta | None = None,
    at: datetime | None = None,
    priority: int | None = None,
    timeout: float | timedelta | None = None,
    max_retries: int | None = None,
    prefix: str = DEFAULT_PREFIX,
    schema: str | None = None,
    job: Job | None = None,
    limits: Limits | None = None,
) -> list[Instance]:
    """Enqueue one instance of ``kind`` per positional-argument tuple of ``calls``, in
    the caller's transaction (batched statements); as :func:`enqueue` otherwise. Every
    call is validated before anything is written."""
    return _enqueue(
        connection,
        kind,
        [(call, None) for call in calls],
        after=after,
        at=at,
        priority=priority,
        timeout=timeout,
        max_retries=max_retries,
        dedupe_key=None,
        prefix=prefix,
        schema=schema,
        job=job,
        limits=limits,
    )


def _enqueue(
    connection: Connection,
    kind: str | Job,
    calls: Sequence[tuple[Sequence[Any], Mapping[str, Any] | None]],
    *,
    after: float | timedelta | None,
    at: datetime | None,
    priority: int | None,
    timeout: float | timedelta | None,
    max_retries: int | None,
    dedupe_key: str | None,
    prefix: str,
    schema: str | None,
    job: Job | None,
    limits: Limits | None,
) -> list[Instance]:
    if not isinstance(connection, Connection):
        raise TypeError(
            f"enqueue needs a SQLAlchemy sync Connection, not {type(connection).__name__}"
        )
    job, kind_name = _job_and_kind(kind, job)
    if dedupe_key is not None and not isinstance(dedupe_key, str):
        raise ArgumentError(f"dedupe_key must be a string, not {type(dedupe_key).__name__}")
    if schema is not None:
        from .store.sql.migrate import check_schema_name

        schema = check_schema_name(schema)
    _check_when(after, at)
    policy = _policy(job, priority, timeout, max_retries)
    cap = (limits or _DEFAULT_LIMITS).max_args_bytes
    encoded = [_encode_args(job, args, kwargs, cap) for args, kwargs in calls]
    if not encoded:
        return []
    dialect = sql.dialect_of(connection)
    try:
        now = sql.now(connection, dialect)
        due = _due(now, after, at)
        instances = [
            Instance.new(kind_name, enc_args, enc_kwargs, policy, now, due, dedupe_key)
            for enc_args, enc_kwargs in encoded
        ]
        return sql.insert(connection, dialect, prefix, schema, instances, now)
    except SQLAlchemyError as exc:
        raise sql.translate(exc, dialect) from exc


def _job_and_kind(kind: str | Job, job: Job | None) -> tuple[Job | None, str]:
    if isinstance(kind, Job):
        if job is not None and job is not kind:
            raise ArgumentError("give the job either as `kind` or as `job=`, not both")
        job = kind
        kind = kind.kind
    if not isinstance(kind, str) or not kind.strip():
        raise ArgumentError(f"kind must be a non-empty string, got {kind!r}")
    if job is not None:
        if not isinstance(job, Job):
            raise ArgumentError(f"`job` must be a gojob.Job, not {type(job).__name__}")
        if job.kind != kind:
            raise ArgumentError(f"kind {kind!r} does not match the job's kind {job.kind!r}")
    return job, kind


def _policy(
    job: Job | None,
    priority: int | None,
    timeout: float | timedelta | None,
    max_retries: int | None,
) -> Policy:
    policy = _DEFAULT_POLICY if job is None else job.policy
    if priority is None and timeout is None and max_retries is None:
        return policy
    for name, value in (("priority", priority), ("max_retries", max_retries)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise ArgumentError(f"{name} must be an integer, got {value!r}")
    try:
        return policy.with_overrides(
            priority=priority, timeout=seconds(timeout), max_retries=max_retries
        )
    except (ValueError, TypeError) as exc:
        raise ArgumentError(str(exc)) from exc


def _encode_args(
    job: Job | None, args: Sequence[Any], kwargs: Mapping[str, Any] | None, cap: int
) -> tuple[list[JSON], dict[str, JSON]]:
    if isinstance(args, str | bytes) or not isinstance(args, Sequence):
        raise ArgumentError(f"a call's arguments must be a sequence, got {args!r}")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise ArgumentError(f"kwargs must be a mapping, got {type(kwargs).__name__}")
    if job is not None:
        enc_args, enc_kwargs = encode_call(job.plan, args, kwargs or {})
    else:
        enc_args = [encode(value, path=f"args[{i}]") for i, value in enumerate(args)]
        enc_kwargs = {}
        for key, value in (kwargs or {}).items():
            if not isinstance(key, str):
                raise ArgumentError(f"keyword argument names must be strings, got {key!r}")
            enc_kwargs[key] = encode(value, path=f"kwargs[{key!r}]")
    if enc_args or enc_kwargs:
        check_size([enc_args, enc_kwargs], cap, "arguments")
    return enc_args, enc_kwargs


def _check_when(after: float | timedelta | None, at: datetime | None) -> None:
    """Validate ``after``/``at`` before touching the database (as Manager.schedule)."""
    if after is not None and at is not None:
        raise InvalidSchedule("give either `after` or `at`, not both")
    if at is not None:
        if not isinstance(at, datetime):
            raise InvalidSchedule(f"`at` must be a datetime, not {type(at).__name__}")
        if at.tzinfo is None or at.utcoffset() is None:
            raise InvalidSchedule(
                f"`at` must be timezone-aware, got naive {at.isoformat()}; "
                "use e.g. datetime(..., tzinfo=ZoneInfo('Europe/Paris'))"
            )
    if after is not None:
        if not isinstance(after, int | float | timedelta) or isinstance(after, bool):
            raise InvalidSchedule(f"`after` must be a duration, got {after!r}")
        delay = seconds(after)
        if delay is None or not math.isfinite(delay) or delay < 0:
            raise InvalidSchedule(f"`after` must be a non-negative duration, got {after!r}")


def _due(now: datetime, after: float | timedelta | None, at: datetime | None) -> datetime:
    if at is not None:
        return at
    if after is not None:
        return now + timedelta(seconds=seconds(after) or 0.0)
    return now


# -- the sync producer ----------------------------------------------------------------------


class Producer:
    """A sync producer on a database URL, for applications that do not run Trio.

    ``url``: ``sqlite:///path/jobs.db`` (or a file path) or ``postgresql://...`` (any
    PostgreSQL driver suffix: the producer connects through psycopg). ``prefix`` and
    ``schema`` name the deployment's tables, as for the stores. Opening (``with``)
    checks that the schema is at head; the engine itself connects lazily, so the
    producer also works without ``with`` (then :meth:`close` it).

    Each :meth:`enqueue` runs in a transaction of its own; :meth:`transaction` yields a
    connection whose transaction commits when the block ends (rolls back on an
    exception), to group enqueues with the application's own writes. On SQLite that
    transaction begins with ``BEGIN IMMEDIATE`` (the write lock up front, waiting up
    to ``busy_timeout``), so it cannot fail half-way on a lock another writer took.
    """

    def __init__(
        self,
        url: str | os.PathLike[str] | URL,
        *,
        prefix: str = DEFAULT_PREFIX,
        schema: str | None = None,
        pool_size: int = 5,
        connect_timeout: float = 5.0,
        busy_timeout: float = 5.0,
        limits: Limits | None = None,
    ) -> None:
        from .store.sql.engine import create_sqlite_engine, sqlite_url
        from .store.sql.migrate import check_schema_name, sync_url
        from .store.sql.schema import make_metadata

        if pool_size < 1 or connect_timeout <= 0 or busy_timeout <= 0:
            raise ValueError("pool_size >= 1, connect_timeout and busy_timeout > 0")
        make_metadata(prefix)  # validates the prefix
        self.prefix = prefix
        self.schema = None if schema is None else check_schema_name(schema)
        self.limits = limits
        if isinstance(url, URL):
            text = url.render_as_string(hide_password=False)
        elif isinstance(url, str | os.PathLike):
            text = os.fspath(url)
        else:
            raise UnsupportedStore(f"not a database URL: {url!r}")
        self.engine: Engine
        if "://" not in text or text.startswith("sqlite"):
            if schema is not None:
                raise ValueError("`schema` applies to PostgreSQL only")
            self.url = sqlite_url(text)
            self.dialect = "sqlite"
            self.engine = create_sqlite_engine(
                self.url, busy_timeout=busy_timeout, pool_size=pool_size
            )
        elif text.startswith(("postgresql", "postgres://")):
            try:
                self.url = sync_url(text)
            except SQLAlchemyArgumentError as exc:
                raise UnsupportedStore(f"not a database URL: {text!r}") from exc
            self.dialect = "postgresql"
            self.engine = create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                connect_args={
                    "connect_timeout": max(1, math.ceil(connect_timeout)),
                    "application_name": "gojob-producer",
                },
            )
        else:
            raise UnsupportedStore(
                f"the producer needs a SQLite or PostgreSQL URL, not "
                f"{make_url(text).render_as_string(hide_password=True)!r}"
            )

    def __repr__(self) -> str:
        url = self.url.render_as_string(hide_password=True)
        return f"Producer({url!r}, prefix={self.prefix!r}, schema={self.schema!r})"

    def __enter__(self) -> Producer:
        try:
            self.check_schema()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()

    def check_schema(self) -> None:
        """Raise SchemaNotAtHead (naming the fixing command) unless the schema is at head;
        StoreUnavailable when the database cannot be reached."""
        from alembic.runtime.migration import MigrationContext

        from .store.sql import migrate
        from .store.sql.schema import version_table

        opts: dict[str, Any] = {"version_table": version_table(self.prefix)}
        if self.schema is not None:
            opts["version_table_schema"] = self.schema
        try:
            with self.engine.connect() as conn:
                found = MigrationContext.configure(conn, opts=opts).get_current_revision()
        except SQLAlchemyError as exc:
            raise sql.translate(exc, self.dialect) from exc
        display = self.url.render_as_string(hide_password=True)
        migrate.ensure_revision(found, display, self.prefix, self.schema)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection in a new transaction, committed when the block ends (rolled back
        if it raises). Errors of connecting and committing are gojob's (StoreUnavailable,
        StoreError); the block's own errors pass through unchanged."""
        try:
            conn = self.engine.connect()
        except SQLAlchemyError as exc:
            raise sql.translate(exc, self.dialect) from exc
        try:
            if self.dialect == "sqlite":
                from .store.sql.engine import immediate

                immediate(conn)
            try:
                tx = conn.begin()
            except SQLAlchemyError as exc:
                raise sql.translate(exc, self.dialect) from exc
            try:
                yield conn
            except BaseException:
                with suppress(SQLAlchemyError):
                    tx.rollback()
                raise
            try:
                tx.commit()
            except SQLAlchemyError as exc:
                raise sql.translate(exc, self.dialect) from exc
        finally:
            with suppress(SQLAlchemyError):
                conn.close()

    def enqueue(
        self,
        kind: str | Job,
        *args: Any,
        kwargs: Mapping[str, Any] | None = None,
        after: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int | None = None,
        timeout: float | timedelta | None = None,
        max_retries: int | None = None,
        dedupe_key: str | None = None,
        job: Job | None = None,
    ) -> Instance:
        """:func:`enqueue`, committed in a transaction of its own."""
        with self.transaction() as conn:
            return enqueue(
                conn,
                kind,
                *args,
                kwargs=kwargs,
                after=after,
                at=at,
                priority=priority,
                timeout=timeout,
                max_retries=max_retries,
                dedupe_key=dedupe_key,
                prefix=self.prefix,
                schema=self.schema,
                job=job,
                limits=self.limits,
            )

    def enqueue_many(
        self,
        kind: str | Job,
        calls: Iterable[Sequence[Any]],
        *,
        after: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int | None = None,
        timeout: float | timedelta | None = None,
        max_retries: int | None = None,
        job: Job | None = None,
    ) -> list[Instance]:
        """:func:`enqueue_many`, committed in a transaction of its own."""
        with self.transaction() as conn:
            return enqueue_many(
                conn,
                kind,
                calls,
                after=after,
                at=at,
                priority=priority,
                timeout=timeout,
                max_retries=max_retries,
                prefix=self.prefix,
                schema=self.schema,
                job=job,
                limits=self.limits,
            )
