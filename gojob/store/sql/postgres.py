"""The PostgreSQL store: a durable queue shared by any number of nodes.

asyncpg does the talking, reached from Trio only through :mod:`gojob._aio` (one
crossing per transaction); :mod:`.pg_ops` holds the units of work, :mod:`.pg_statements`
their SQL, :mod:`.pg_listen` the notifications, :mod:`.pg_pool` the connections.
"""

from __future__ import annotations

from ... import _aio  # isort: skip  # before asyncpg: see gojob._aio

import asyncio
import hashlib
import logging
import math
import os
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, TypeVar

import asyncpg
import trio
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ...errors import LeaseLost, StoreError, StoreUnavailable
from ...instance import HistoryRecord, Instance, LogRecord
from ...state import State
from ..base import (
    Handover,
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
from . import pg_ops
from .pg_listen import Hub
from .pg_pool import PgPool
from .pg_statements import PgStatements
from .schema import DEFAULT_PREFIX, make_metadata, tables_of, version_table
from .transitions import check_outcome

__all__ = ["STATISTICS_RECHECK", "PostgresStore", "asyncpg_dsn"]

STATISTICS_RECHECK = 10.0
"""Seconds between a store's checks for planner statistics on the instances table, until
it finds them (see :func:`.pg_ops.ensure_statistics`): one cheap query per interval."""

T = TypeVar("T")

log = logging.getLogger(__name__)

# InternalClientError: what asyncpg raises on a connection its protocol left in an
# error state (the server went away mid-statement); a store error, so callers retry.
_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    TimeoutError,
)
_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InsufficientResourcesError,
    asyncpg.OperatorInterventionError,
    asyncpg.ConnectionDoesNotExistError,
    OSError,
    TimeoutError,
)


class PostgresStore(Store):
    """The Store contract on PostgreSQL, through asyncpg.

    ``url``: ``postgresql://user:password@host:port/database`` (``postgres://``,
    ``postgresql+asyncpg://`` and ``postgresql+psycopg://`` mean the same); a URL
    object works too. ``prefix`` starts every table name and ``schema`` (default: the
    server's ``search_path``) holds the tables, so deployments can share a database.
    The schema must be at head: ``gojob db upgrade --url ... [--schema ...]``.

    ``synchronous_claims``: whether a claim's commit waits for the WAL flush. By
    default it does not (every other write does): a claim is what a busy node's workers
    wait for, and after a crash of the database server (not a restart) a forgotten
    claim only means its jobs run again, as after a lost lease (see
    :meth:`.pg_statements.PgStatements._claim`).

    ``pool_size`` bounds the connections used for work (each subscription has one
    more, outside the pool); ``connect_timeout`` bounds each connection attempt, so
    an unreachable server fails fast with StoreUnavailable; ``poll_interval`` is how
    long a subscription's connection may stay quiet before it is checked.

    Opening the store opens the asyncio bridge loop (:func:`gojob._aio.acquire_loop`)
    unless the application already runs one.

    Deviations and choices:

    * **Clock.** The database's ``now()`` (a transaction's start), in every judgement:
      due times, leases, the reaper, timestamps.
    * **Concurrency.** Claims pick rows with ``FOR UPDATE SKIP LOCKED``; every other
      read-then-write locks its rows (in uuid order), so any number of nodes can work
      on one queue. A transaction that meets a deadlock or a concurrent insert of the
      same dedupe key or schedule runs again (a few times).
    * **Cancellation.** A cancelled caller's statement is cancelled on the server and
      its transaction rolled back before the call returns; a commit that has started
      finishes (the call then returns normally and the caller meets the cancellation
      at its next checkpoint).
    * **Notifications.** Events of this store object's writes are delivered in-process,
      exactly; other stores' arrive by LISTEN/NOTIFY (one NOTIFY statement per
      transaction), and as one ``RESYNC`` after a lost connection, or when a
      transaction's events were too many to send.
    """

    name = "postgresql"
    # A claim is a round trip and a commit (a WAL flush) whose fixed cost is large next to
    # its cost per row: with a backlog, claim batches of ~300. Measured with 10 workers on
    # no-op jobs (2 cores shared with the server): 90 -> 290 gave ~20% more jobs/s and a
    # third less client CPU per job; 490 little more, while holding more work ahead of
    # other nodes (the bound on how long a better instance may wait behind claimed ones).
    preferred_prefetch = 290

    def __init__(
        self,
        url: str | URL,
        *,
        prefix: str = DEFAULT_PREFIX,
        schema: str | None = None,
        pool_size: int = 10,
        connect_timeout: float = 5.0,
        poll_interval: float = 5.0,
        application_name: str = "gojob",
        synchronous_claims: bool = False,
    ) -> None:
        from .migrate import check_schema_name

        if pool_size < 1 or connect_timeout <= 0 or poll_interval <= 0:
            raise ValueError("pool_size >= 1, connect_timeout and poll_interval > 0")
        self.url = url
        self.dsn = asyncpg_dsn(url)
        self.prefix = prefix
        self.schema = None if schema is None else check_schema_name(schema)
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.synchronous_claims = synchronous_claims
        self._statements = PgStatements(
            tables_of(make_metadata(prefix), prefix), synchronous_claims=synchronous_claims
        )
        settings = {"application_name": application_name, "jit": "off"}
        if self.schema is not None:
            settings["search_path"] = self.schema
        self._options: dict[str, Any] = {"timeout": connect_timeout, "server_settings": settings}
        self.channel = _channel(self.schema, prefix)
        self.origin = os.urandom(8).hex()
        self._hub = Hub(self.dsn, self._options, self.channel, self.origin, poll_interval)
        self._bridge: _aio.Bridge | None = None
        self._pool: PgPool | None = None
        self._opened = 0
        self._open_lock = trio.Lock()
        self._statistics_check: float | None = -math.inf
        """When a claim next checks that the planner has statistics on the instances
        table (:func:`pg_ops.ensure_statistics`); None once it has."""

    def __repr__(self) -> str:
        url = self._display_url()
        return f"PostgresStore({url!r}, prefix={self.prefix!r}, schema={self.schema!r})"

    def _display_url(self) -> str:
        url = self.url
        if isinstance(url, URL):
            return url.render_as_string(hide_password=True)
        try:
            return make_url(_normalise(url)).render_as_string(hide_password=True)
        except ArgumentError:
            return "<invalid URL>"

    # -- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> PostgresStore:
        async with self._open_lock:
            if self._opened == 0:
                await self._open()
            self._opened += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with trio.CancelScope(shield=True):
            async with self._open_lock:
                self._opened -= 1
                if self._opened == 0:
                    await self._close()

    async def _open(self) -> None:
        from . import migrate

        bridge = await _aio.acquire_loop()
        _log_stray_loop_errors(bridge)
        pool = PgPool(bridge, self.dsn, self._options, self.pool_size)
        try:
            try:
                with trio.fail_after(self.connect_timeout * 2):
                    async with pool.connection() as conn:
                        found = await bridge.run(
                            pg_ops.schema_revision, conn, version_table(self.prefix)
                        )
            except trio.TooSlowError as exc:
                raise StoreUnavailable(
                    f"PostgreSQL at {self._display_url()} did not answer in time"
                ) from exc
            except _DRIVER_ERRORS as exc:
                raise StoreUnavailable(
                    f"cannot open the PostgreSQL database at {self._display_url()}: "
                    f"{_describe(exc)}"
                ) from exc
            expected = await trio.to_thread.run_sync(migrate.head)
            if found != expected:
                migrate.ensure_revision(found, self._display_url(), self.prefix, self.schema)
        except BaseException:
            with trio.CancelScope(shield=True):
                await pool.aclose()
                await bridge.release()
            raise
        self._bridge = bridge
        self._pool = pool
        self._hub.bridge = bridge

    async def _close(self) -> None:
        pool, bridge = self._pool, self._bridge
        self._pool = self._bridge = self._hub.bridge = None
        if pool is not None:
            await pool.aclose()
        if bridge is not None:
            await bridge.release()

    # -- units of work ----------------------------------------------------------------------------
    async def _call(
        self, op: Callable[..., Awaitable[T]], *args: Any, transaction: bool = False
    ) -> T:
        """Run one op of :mod:`.pg_ops` (one crossing), then deliver its events."""
        pool, bridge = self._pool, self._bridge
        if pool is None or bridge is None:
            raise StoreError(f"{self!r} is not open: use `async with store:`")
        st = self._statements
        try:
            async with pool.connection() as conn:
                result, events = await bridge.run(
                    pg_ops.run, conn, st, self.channel, self.origin, transaction, op, args
                )
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc
        # Right after the commit, with no checkpoint in between: in commit order.
        self._hub.emit(events)
        return result

    async def now(self) -> datetime:
        return await self._call(pg_ops.now)

    # -- queue ------------------------------------------------------------------------------------
    async def add(self, instances: Sequence[Instance]) -> list[Instance]:
        if not instances:
            await trio.lowlevel.checkpoint()
            return []
        keyed = any(i.dedupe_key is not None for i in instances)
        # Without dedupe keys, the insert is one statement: no transaction needed; a large
        # batch streams by COPY (pg_ops.COPY_THRESHOLD), in a transaction.
        large = not keyed and len(instances) >= pg_ops.COPY_THRESHOLD
        adopt = isinstance(instances, Handover)
        return await self._call(pg_ops.add, list(instances), adopt, transaction=keyed or large)

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
        if self._statistics_check is not None and trio.current_time() >= self._statistics_check:
            if await self._call(pg_ops.ensure_statistics):
                self._statistics_check = None
            else:
                self._statistics_check = trio.current_time() + STATISTICS_RECHECK
        return await self._call(pg_ops.claim, node_id, kind_list, limit, lease)

    async def next_due(self, kinds: Collection[str] | None) -> datetime | None:
        if kinds is not None and not kinds:
            await trio.lowlevel.checkpoint()
            return None
        return await self._call(pg_ops.next_due, None if kinds is None else list(kinds))

    async def extend_leases(
        self, node_id: str, tokens: Collection[str], lease: float
    ) -> LeaseReply:
        if not tokens:
            await trio.lowlevel.checkpoint()
            return LeaseReply()
        return await self._call(pg_ops.extend_leases, list(tokens), lease)

    async def finish_many(
        self, items: Sequence[tuple[str, Outcome]], *, returning: bool = True
    ) -> list[Instance | LeaseLost | None]:
        for _, outcome in items:
            check_outcome(outcome)  # before anything is written
        if not items:
            await trio.lowlevel.checkpoint()
            return []
        if not all(pg_ops.completes_simply(outcome) for _, outcome in items):
            return await self._call(pg_ops.finish_many, list(items), returning, transaction=True)
        # The common case, successes: one statement. What it leaves (a lost lease, a
        # repeated finish) is judged the general way.
        results: list[Instance | LeaseLost | None] = list(
            await self._call(pg_ops.complete, list(items), returning)
        )
        missed = [k for k, result in enumerate(results) if result is pg_ops.MISS]
        if missed:
            again = await self._call(
                pg_ops.finish_many, [items[k] for k in missed], returning, transaction=True
            )
            for k, result in zip(missed, again, strict=True):
                results[k] = result
        return results

    async def request_cancel(self, query: InstanceQuery) -> list[Instance]:
        return await self._call(pg_ops.request_cancel, query, transaction=True)

    async def reap_expired(self) -> list[Instance]:
        return await self._call(pg_ops.reap_expired, transaction=True)

    async def requeue(self, uuid: str, due: datetime) -> Instance:
        return await self._call(pg_ops.requeue, uuid, due, transaction=True)

    # -- lookups ----------------------------------------------------------------------------------
    async def get(self, uuid: str) -> Instance | None:
        return await self._call(pg_ops.get, uuid)

    async def lookup_instances(self, query: InstanceQuery) -> list[Instance]:
        return await self._call(pg_ops.lookup, query)

    async def counts(self) -> dict[tuple[str, State], int]:
        return await self._call(pg_ops.counts)

    async def history(self, query: HistoryQuery) -> list[HistoryRecord]:
        return await self._call(pg_ops.history, query)

    async def logs(self, query: LogQuery) -> list[LogRecord]:
        return await self._call(pg_ops.logs, query)

    async def append_logs(self, records: Sequence[LogRecord]) -> None:
        if not records:
            await trio.lowlevel.checkpoint()
            return
        await self._call(pg_ops.append_logs, list(records))

    # -- schedules --------------------------------------------------------------------------------
    async def put_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        return await self._call(pg_ops.put_schedule, record.copy(), transaction=True)

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        return await self._call(pg_ops.get_schedule, schedule_id)

    async def list_schedules(self, kind: str | None = None) -> list[ScheduleRecord]:
        return await self._call(pg_ops.list_schedules, kind)

    async def set_schedule_paused(
        self, schedule_id: str, paused: bool, next_fire_at: datetime | None = None
    ) -> ScheduleRecord:
        return await self._call(
            pg_ops.set_schedule_paused, schedule_id, paused, next_fire_at, transaction=True
        )

    async def delete_schedule(self, schedule_id: str) -> bool:
        return await self._call(pg_ops.delete_schedule, schedule_id, transaction=True)

    async def fire_schedule(
        self,
        schedule_id: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        instances: Sequence[Instance],
        skipped: Sequence[tuple[datetime, str]] = (),
        skipped_count: int = 0,
    ) -> list[Instance] | None:
        return await self._call(
            pg_ops.fire_schedule,
            schedule_id,
            expected_next_fire_at,
            next_fire_at,
            list(instances),
            list(skipped),
            skipped_count,
            transaction=True,
        )

    # -- nodes ---------------------------------------------------------------------------------
    async def heartbeat(self, node: NodeRecord, ttl: float) -> NodeRecord:
        return await self._call(pg_ops.heartbeat, node.copy(), ttl, transaction=True)

    async def nodes(self) -> list[NodeRecord]:
        return await self._call(pg_ops.nodes, transaction=True)

    async def remove_node(self, node_id: str) -> bool:
        return await self._call(pg_ops.remove_node, node_id, transaction=True)

    # -- retention and notifications -----------------------------------------------------------
    async def prune(self, before: datetime) -> PruneResult:
        return await self._call(pg_ops.prune, before, transaction=True)

    def subscribe(
        self, *, states: Collection[State] | None = None
    ) -> AbstractAsyncContextManager[Subscription]:
        # The hint is not used: other processes may want every event, so every event is
        # built and sent anyway.
        return self._hub.subscribe()


def _log_stray_loop_errors(bridge: _aio.Bridge) -> None:
    """Keep gojob's shared bridge loop alive through errors nobody is waiting for.

    A trio-asyncio loop's default exception handler re-raises whatever is reported to
    it, which ends the loop. asyncpg reports errors of its own there: when the server
    closes a connection during the handshake (a restart), a future holding
    ``ConnectionError('unexpected connection_lost() call')`` is never retrieved, and
    its report would end the shared loop and every store on it. On the loop gojob owns
    they are logged instead; an application's own loop keeps its handler.
    """
    loop = bridge.loop
    if bridge._shared is not None and loop.get_exception_handler() is None:
        loop.set_exception_handler(_log_loop_error)


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    exc = context.get("exception")
    log.warning("asyncio bridge: %s", context.get("message", "error"), exc_info=exc)


def _normalise(text: str) -> str:
    return (
        "postgresql://" + text.removeprefix("postgres://")
        if text.startswith("postgres://")
        else text
    )


def asyncpg_dsn(url: str | URL) -> str:
    """The asyncpg DSN of a PostgreSQL URL (any SQLAlchemy driver name); raises
    StoreUnavailable for anything else."""
    try:
        parsed = url if isinstance(url, URL) else make_url(_normalise(url))
    except ArgumentError as exc:
        raise StoreUnavailable(f"not a database URL: {url!r}") from exc
    if parsed.get_backend_name() != "postgresql":
        raise StoreUnavailable(
            f"not a PostgreSQL URL: {parsed.render_as_string(hide_password=True)!r} "
            "(expected postgresql://user@host:port/database)"
        )
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def _channel(schema: str | None, prefix: str) -> str:
    """The NOTIFY channel of one deployment (at most 63 bytes: an identifier)."""
    name = f"{schema}.{prefix}events" if schema else f"{prefix}events"
    if len(name) > 63:
        name = "gojob_" + hashlib.sha1(name.encode()).hexdigest()
    return name


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def _translate(exc: BaseException) -> StoreError:
    """A driver error as gojob's: StoreUnavailable when the database cannot be used now."""
    if isinstance(exc, _UNAVAILABLE):
        return StoreUnavailable(f"PostgreSQL unavailable: {_describe(exc)}")
    return StoreError(f"PostgreSQL error: {_describe(exc)}")
