"""The SQLite store: durable, embedded, shared by the processes of one machine.

Runs SQLAlchemy's sync engine (pysqlite) in worker threads, one thread hop per
transaction, through the store's own thread limiters (so blocked executors can
never starve it): one token for writes, which SQLite serialises anyway (waiting in
Trio is cheaper than in SQLite's busy handler), a few for reads.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, TypeVar

import trio
from sqlalchemy import Connection, Engine
from sqlalchemy.engine import URL
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from ...clock import Clock
from ...errors import LeaseLost, StoreError, StoreUnavailable
from ...instance import HistoryRecord, Instance, LogRecord
from ...state import State
from ..base import (
    Event,
    HistoryQuery,
    InstanceQuery,
    LeaseReply,
    LogQuery,
    NodeRecord,
    Outcome,
    PruneResult,
    ScheduleRecord,
    Store,
    Subscription,
)
from . import ops
from .engine import (
    BUSY_TIMEOUT,
    HintingSQLiteDialect,
    create_sqlite_engine,
    immediate,
    sqlite_url,
)
from .errors import SchemaNotAtHead
from .notify import DataVersion, Hub
from .schema import DEFAULT_PREFIX, make_metadata, tables_of
from .statements import Statements
from .transitions import check_outcome

__all__ = ["SqliteStore"]

T = TypeVar("T")

_UNAVAILABLE_MARKERS = (
    "database is locked",
    "unable to open",
    "disk i/o error",
    "readonly database",
    "not a database",
    "database or disk is full",
)


class SqliteStore(Store):
    """The Store contract on a SQLite database file.

    ``url_or_path``: ``sqlite:///relative.db``, ``sqlite:////absolute.db`` (or
    ``sqlite+pysqlite://``), a URL object or a plain path; in-memory databases are
    refused. ``prefix`` starts every table name (several deployments can share a
    file). The schema must be at head (``gojob db upgrade``) unless ``auto_migrate``
    is true, when opening the store migrates it.

    Deviations and choices:

    * **Clock.** The store's clock is ``clock`` if given, else this machine's wall
      time, read inside each transaction (under the write lock, so every process on
      the machine judges leases by one clock). SQLite has no server clock.
    * **Cancellation.** A cancelled caller still waits for its transaction: the
      thread runs to its commit or rollback (``abandon_on_cancel=False``), so a write
      is never half done and a connection never returns to the pool mid-transaction.
      Transactions are short (milliseconds), so this delays the cancel only briefly.
    * **Notifications.** Events of this process's writes are exact. Changes made by
      other processes arrive as one ``RESYNC`` within about ``poll_interval`` (see
      :mod:`.notify`).
    * **Ordering.** "Insertion order" is the order instances were added; a retried or
      requeued instance keeps its place in that order.
    """

    name = "sqlite"
    # A claim is a write transaction and a hop to the store's thread, whose fixed cost is
    # large next to a row's: with a backlog, claim batches of ~150. Measured with 10
    # workers on 10,000 no-op jobs: claims of 10 (no prefetch) 1,500 jobs/s; 50: 3,300;
    # 150: 3,900; 290: 4,100 (and a longer hold of the database's write lock).
    preferred_prefetch = 150

    def __init__(
        self,
        url_or_path: str | os.PathLike[str] | URL,
        *,
        prefix: str = DEFAULT_PREFIX,
        clock: Clock | None = None,
        auto_migrate: bool = False,
        poll_interval: float = 1.0,
        busy_timeout: float = BUSY_TIMEOUT,
        readers: int = 4,
    ) -> None:
        if poll_interval <= 0 or busy_timeout <= 0 or readers < 1:
            raise ValueError("poll_interval and busy_timeout must be positive, readers >= 1")
        self.url = sqlite_url(url_or_path)
        self.prefix = prefix
        self.clock = clock
        self.auto_migrate = auto_migrate
        self.busy_timeout = busy_timeout
        # Compiled for pysqlite's named parameters: the fixed statements run on the
        # driver directly (see .statements).
        self._statements = Statements(
            tables_of(make_metadata(prefix), prefix), dialect=HintingSQLiteDialect()
        )
        self._writer = trio.CapacityLimiter(1)
        self._readers = trio.CapacityLimiter(readers)
        self._pool_size = readers + 1
        self._engine: Engine | None = None
        self._version: DataVersion | None = None
        self._hub = Hub(poll_interval, self._read_version)
        self._opened = 0
        self._open_lock = trio.Lock()

    def __repr__(self) -> str:
        return f"SqliteStore({self.url.database!r}, prefix={self.prefix!r})"

    # -- lifecycle ------------------------------------------------------------------------
    async def __aenter__(self) -> SqliteStore:
        async with self._open_lock:
            if self._opened == 0:
                await trio.to_thread.run_sync(self._open, limiter=self._writer)
            self._opened += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        async with self._open_lock:
            self._opened -= 1
            if self._opened == 0:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._close, limiter=self._writer)

    def _open(self) -> None:
        from . import migrate  # Alembic is only needed here: import it lazily

        path = self.url.database or ""
        if not self.auto_migrate and not os.path.exists(path):
            # Connecting would create an empty file (a typo in a path, say): refuse first.
            raise SchemaNotAtHead(
                f"there is no SQLite database at {path!r}: create it with "
                f"`{migrate.fix_command(self.url, self.prefix)}`, "
                "or open the store with auto_migrate=True"
            )
        engine = create_sqlite_engine(
            self.url, busy_timeout=self.busy_timeout, pool_size=self._pool_size
        )
        try:
            with engine.connect() as conn:
                if self.auto_migrate:
                    immediate(conn)
                with conn.begin():
                    if self.auto_migrate:
                        migrate.upgrade_connection(conn, self.prefix)
                    else:
                        migrate.ensure_at_head(conn, self.url, self.prefix)
            version = DataVersion(self.url.database or "", self.busy_timeout)
        except SQLAlchemyError as exc:
            engine.dispose()
            raise StoreUnavailable(
                f"cannot open the SQLite database {self.url.database!r}: {exc.__cause__ or exc}"
            ) from exc
        except BaseException:
            engine.dispose()
            raise
        self._engine = engine
        self._version = version

    def _close(self) -> None:
        if self._version is not None:
            self._version.close()
            self._version = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    async def now(self) -> datetime:
        return self.clock.now() if self.clock is not None else datetime.now(UTC)

    # -- transactions -----------------------------------------------------------------------
    def _given_now(self) -> datetime | None:
        # An injected clock may be Trio's: read it here, on the Trio thread.
        return None if self.clock is None else self.clock.now()

    def _transaction(self, fn: Callable[..., T], args: tuple[Any, ...], write: bool) -> T:
        """Run ``fn(conn, statements, *args)`` in one transaction (in a worker thread)."""
        engine = self._engine
        if engine is None:
            raise StoreError(f"{self!r} is not open: use `async with store:`")
        try:
            with engine.connect() as conn:
                if write:
                    immediate(conn)
                with conn.begin():
                    return fn(conn, self._statements, *args)
        except (SQLAlchemyError, sqlite3.Error) as exc:
            # sqlite3's own errors come from the statements run on the driver directly.
            raise _translate(exc) from exc

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(
            self._transaction, fn, args, False, limiter=self._readers
        )

    async def _write(self, fn: Callable[..., tuple[T, list[Event]]], *args: Any) -> T:
        result, events = await trio.to_thread.run_sync(
            self._transaction, fn, args, True, limiter=self._writer
        )
        # Right after the hop, with no checkpoint in between: events go out in commit order.
        self._hub.emit(events)
        return result

    async def _write_now(self, fn: Callable[..., tuple[T, list[Event]]], *args: Any) -> T:
        """A write whose last argument is the store's now (read in the transaction)."""
        given = self._given_now()

        def with_now(conn: Connection, st: Statements, *inner: Any) -> tuple[T, list[Event]]:
            return fn(conn, st, *inner, given or datetime.now(UTC))

        return await self._write(with_now, *args)

    async def _read_version(self) -> int:
        version = self._version
        if version is None:
            raise StoreError(f"{self!r} is not open: use `async with store:`")
        try:
            return await trio.to_thread.run_sync(version.read, limiter=self._readers)
        except sqlite3.Error as exc:  # pragma: no cover - the file went away
            raise _translate(exc) from exc

    # -- queue ---------------------------------------------------------------------------------
    async def add(self, instances: Sequence[Instance]) -> list[Instance]:
        if not instances:
            await trio.lowlevel.checkpoint()
            return []
        return await self._write_now(ops.add, list(instances))

    async def claim(
        self,
        node_id: str,
        kinds: Collection[str] | None,
        limit: int,
        lease: float,
    ) -> list[Instance]:
        if limit <= 0 or (kinds is not None and not kinds):
            await trio.lowlevel.checkpoint()
            return []
        kind_list = None if kinds is None else list(kinds)
        return await self._write_now(ops.claim, node_id, kind_list, limit, lease)

    async def next_due(self, kinds: Collection[str] | None) -> datetime | None:
        if kinds is not None and not kinds:
            await trio.lowlevel.checkpoint()
            return None
        return await self._read(ops.next_due, None if kinds is None else list(kinds))

    async def extend_leases(
        self, node_id: str, tokens: Collection[str], lease: float
    ) -> LeaseReply:
        if not tokens:
            await trio.lowlevel.checkpoint()
            return LeaseReply()
        return await self._write_now(ops.extend_leases, list(tokens), lease)

    async def finish_many(
        self, items: Sequence[tuple[str, Outcome]], *, returning: bool = True
    ) -> list[Instance | LeaseLost | None]:
        for _, outcome in items:
            check_outcome(outcome)  # before anything is written
        if not items:
            await trio.lowlevel.checkpoint()
            return []
        return await self._write_now(ops.finish_many, list(items), returning)

    async def request_cancel(self, query: InstanceQuery) -> list[Instance]:
        return await self._write_now(ops.request_cancel, query)

    async def reap_expired(self) -> list[Instance]:
        return await self._write_now(ops.reap_expired)

    async def requeue(self, uuid: str, due: datetime) -> Instance:
        return await self._write_now(ops.requeue, uuid, due)

    # -- lookups ---------------------------------------------------------------------------------
    async def get(self, uuid: str) -> Instance | None:
        return await self._read(ops.get, uuid)

    async def lookup_instances(self, query: InstanceQuery) -> list[Instance]:
        return await self._read(ops.lookup, query)

    async def counts(self) -> dict[tuple[str, State], int]:
        return await self._read(ops.counts)

    async def history(self, query: HistoryQuery) -> list[HistoryRecord]:
        return await self._read(ops.history, query)

    async def logs(self, query: LogQuery) -> list[LogRecord]:
        return await self._read(ops.logs, query)

    async def append_logs(self, records: Sequence[LogRecord]) -> None:
        if not records:
            await trio.lowlevel.checkpoint()
            return
        await self._write(ops.append_logs, list(records))

    # -- schedules ---------------------------------------------------------------------------------
    async def put_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        return await self._write_now(ops.put_schedule, record.copy())

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        return await self._read(ops.get_schedule, schedule_id)

    async def list_schedules(self, kind: str | None = None) -> list[ScheduleRecord]:
        return await self._read(ops.list_schedules, kind)

    async def set_schedule_paused(
        self, schedule_id: str, paused: bool, next_fire_at: datetime | None = None
    ) -> ScheduleRecord:
        return await self._write_now(ops.set_schedule_paused, schedule_id, paused, next_fire_at)

    async def delete_schedule(self, schedule_id: str) -> bool:
        return await self._write(ops.delete_schedule, schedule_id)

    async def fire_schedule(
        self,
        schedule_id: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        instances: Sequence[Instance],
        skipped: Sequence[tuple[datetime, str]] = (),
        skipped_count: int = 0,
    ) -> list[Instance] | None:
        return await self._write_now(
            ops.fire_schedule,
            schedule_id,
            expected_next_fire_at,
            next_fire_at,
            list(instances),
            list(skipped),
            skipped_count,
        )

    # -- nodes ---------------------------------------------------------------------------------
    async def heartbeat(self, node: NodeRecord, ttl: float) -> NodeRecord:
        return await self._write_now(ops.heartbeat, node.copy(), ttl)

    async def nodes(self) -> list[NodeRecord]:
        return await self._write_now(ops.nodes)

    async def remove_node(self, node_id: str) -> bool:
        return await self._write(ops.remove_node, node_id)

    # -- retention and notifications -----------------------------------------------------------
    async def prune(self, before: datetime) -> PruneResult:
        return await self._write(ops.prune, before)

    def subscribe(
        self, *, states: Collection[State] | None = None
    ) -> AbstractAsyncContextManager[Subscription]:
        # The hint is not used: events are built from the rows written anyway.
        return self._hub.subscribe()


def _translate(exc: SQLAlchemyError | sqlite3.Error) -> StoreError:
    """A driver error as gojob's: StoreUnavailable when the database cannot be used now."""
    orig = getattr(exc, "orig", None)
    message = str(orig if orig is not None else exc)
    if isinstance(exc, OperationalError | sqlite3.OperationalError) and any(
        marker in message.lower() for marker in _UNAVAILABLE_MARKERS
    ):
        return StoreUnavailable(f"SQLite database unavailable: {message}")
    return StoreError(f"SQLite error: {message}")
