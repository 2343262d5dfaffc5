"""The units of work of the PostgreSQL store: asyncio coroutines on an asyncpg
connection, each run by :func:`run` as one crossing of the bridge (:mod:`gojob._aio`).

Every op takes a :class:`Tx` (the connection, the statements, the events collected)
and its arguments, and returns its result; the events it collected are delivered
in-process by the store once :func:`run` returns (after the commit), and were sent
to other processes by NOTIFY inside the transaction: at most one NOTIFY statement
per transaction, usually folded into the op's last write.

Ops that need more than one statement run in a transaction (``transaction=True``):
rows read and then changed are locked (``FOR UPDATE``, in uuid order where several
are), so concurrent nodes serialise on them; a deadlock, a serialization failure or
a unique violation (two nodes inserting the same dedupe key or schedule at once)
rolls the transaction back and runs the op again, up to :data:`MAX_TRIES` times.
Single-statement ops run without one (the statement is its own transaction).

The decisions themselves are :mod:`.transitions`', shared with the SQLite store;
rows are converted by :mod:`.rows`. Time is the database's (``now()``).
"""

from __future__ import annotations

from ... import _aio  # isort: skip  # before asyncpg: see gojob._aio

import contextlib
import os
from collections.abc import Awaitable, Callable, Collection, Iterator, Sequence
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Any, TypeVar, cast

import asyncpg

from ...errors import InstanceNotFound, InvalidTransition, LeaseLost, ScheduleNotFound
from ...instance import HistoryRecord, Instance, LogRecord
from ...state import FINAL, State
from ..base import (
    Event,
    EventType,
    HistoryQuery,
    InstanceQuery,
    LeaseReply,
    LogQuery,
    NodeRecord,
    Outcome,
    PruneResult,
    ScheduleRecord,
    copy_json,
    keyed_by_slot,
    outcome_details,
    record_fire,
)
from .pg_events import encode_events
from .pg_statements import (
    HISTORY_INSERT_COLUMNS,
    INSTANCE_INSERT_COLUMNS,
    LOG_INSERT_COLUMNS,
    PgStatements,
    compile_pg,
)
from .rows import (
    MUTABLE_COLUMNS,
    _policy_text,
    dumps,
    from_us,
    history_record,
    instance_from_row,
    log_params,
    log_record,
    mutable_params,
    node_from_row,
    node_params,
    schedule_from_row,
    schedule_params,
    to_us,
)
from .transitions import Changes, cancel_one, detach, finish_one, reap_one, requeue_one

__all__ = ["MAX_TRIES", "Tx", "run"]

T = TypeVar("T")

MAX_TRIES = 5
"""Runs of a transaction that keeps meeting a deadlock, serialization failure or
unique violation, before the error is raised."""

_RETRYABLE = (
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    asyncpg.UniqueViolationError,
)
_EMPTY_WRITE: list[Any] = []


class Tx:
    """One unit of work: the connection, the statements and the events to announce."""

    __slots__ = ("channel", "conn", "events", "notified", "origin", "st")

    def __init__(
        self, conn: asyncpg.Connection, st: PgStatements, channel: str, origin: str
    ) -> None:
        self.conn = conn
        self.st = st
        self.channel = channel
        self.origin = origin
        self.events: list[Event] = []
        self.notified = 0
        """How many of :attr:`events` were sent already."""

    def payloads(self) -> list[str]:
        """The payloads of the events not sent yet (marked sent)."""
        pending = self.events[self.notified :]
        self.notified = len(self.events)
        return encode_events(self.origin, pending)

    async def now(self) -> datetime:
        value: int = await self.conn.fetchval(self.st.now)
        return from_us(value)

    async def write(
        self,
        new_rows: Sequence[dict[str, Any]] = (),
        ch: Changes | None = None,
    ) -> None:
        """Insert ``new_rows``, write back ``ch``'s changed instances, append its history
        and NOTIFY every event so far: one statement."""
        if ch is not None:
            self.events.extend(ch.events)
            ch.events = []
        args: list[Any] = [[row[c] for row in new_rows] for c in INSTANCE_INSERT_COLUMNS]
        dirty = [] if ch is None else [mutable_params(inst) for inst in ch.dirty.values()]
        args.append([] if ch is None else list(ch.dirty))
        args.extend([row[c] for row in dirty] for c in MUTABLE_COLUMNS)
        history = [] if ch is None else ch.history
        args.extend([row[c] for row in history] for c in HISTORY_INSERT_COLUMNS)
        args.append(self.payloads())
        args.append(self.channel)
        await self.conn.execute(self.st.write, *args)

    async def add(self, new: Sequence[Instance], ch: Changes) -> None:
        """Insert the new Scheduled instances ``new`` with their history (Created, then
        Scheduled, at ``ch``'s now) and NOTIFY every event so far: one statement.
        ``ch`` holds no other change."""
        assert not ch.dirty
        assert not ch.history
        self.events.extend(ch.events)
        ch.events = []
        params = _add_params(new, ch.now_us)
        await self.conn.execute(self.st.add, *params, self.payloads(), self.channel)

    async def copy_add(
        self,
        given: Sequence[Instance],
        ch: Changes,
        stored_as: Callable[[Instance, datetime], Instance],
    ) -> list[Instance]:
        """Insert new instances without dedupe keys as :meth:`add` does, for a large
        batch, in the transaction the caller opened; returns the stored copies.

        The rows stream to the server by ``COPY`` (one for the instances, one for their
        history, each in the order given, so ``seq`` is insertion order as with
        :meth:`add`) while later ones are still being built: the client's work per
        instance (``stored_as``: :func:`_fresh` or :func:`_adopt`; the row) overlaps the
        server's. The state events are
        collected in ``ch``, in order; the NOTIFY follows (:meth:`notify_rest`)."""
        assert not ch.dirty
        assert not ch.history
        stored: list[Instance] = []
        tables = self.st.tables
        conn = self.conn
        plain = all(_unset(i) == _UNSET_VALUES for i in given)
        await conn.copy_records_to_table(
            tables.instances.name,
            records=_copy_rows(given, ch, stored, stored_as, plain),
            columns=PLAIN_INSERT_COLUMNS if plain else COPY_INSERT_COLUMNS,
        )
        await conn.copy_records_to_table(
            tables.history.name,
            records=_copy_history(stored, ch.now_us),
            columns=HISTORY_INSERT_COLUMNS,
        )
        return stored

    async def notify_rest(self) -> None:
        """NOTIFY the events not sent yet (at the end of the transaction)."""
        if self.notified < len(self.events):
            await self.conn.execute(self.st.notify, self.payloads(), self.channel)

    async def core(self, statement: Any, params: dict[str, Any] | None = None) -> str:
        """Execute a fixed SQLAlchemy statement of ``st.core``; its status string."""
        sql, names, bound = self.st.sql(statement)
        values = {**bound, **(params or {})}
        status: str = await self.conn.execute(sql, *[values[n] for n in names])
        return status

    async def core_rows(
        self, statement: Any, params: dict[str, Any] | None = None
    ) -> list[asyncpg.Record]:
        sql, names, bound = self.st.sql(statement)
        values = {**bound, **(params or {})}
        return await self.conn.fetch(sql, *[values[n] for n in names])

    async def query(self, statement: Any) -> list[asyncpg.Record]:
        """Run a statement built for this call (compiled each time)."""
        sql, names, bound = compile_pg(statement)
        return await self.conn.fetch(sql, *[bound[n] for n in names])


# -- running ------------------------------------------------------------------------------


async def run(
    conn: asyncpg.Connection,
    st: PgStatements,
    channel: str,
    origin: str,
    transaction: bool,
    op: Callable[..., Awaitable[T]],
    args: tuple[Any, ...],
) -> tuple[T, list[Event]]:
    """Run ``op(tx, *args)``, in a transaction if asked; return its result and events.

    The commit (or the rollback after an error or a cancel) runs to its end even when
    the caller is cancelled meanwhile: a cancelled statement is cancelled on the server
    (asyncpg sends the cancel request) and rolled back, never left idle in transaction.
    """
    for attempt in range(MAX_TRIES):
        tx = Tx(conn, st, channel, origin)
        if not transaction:
            try:
                result = await op(tx, *args)
                await tx.notify_rest()
            except _RETRYABLE:
                if attempt + 1 < MAX_TRIES:
                    continue
                raise
            return result, tx.events
        tr = conn.transaction()
        await tr.start()
        try:
            result = await op(tx, *args)
            await tx.notify_rest()
        except BaseException as exc:
            await _rollback(tr)
            if isinstance(exc, _RETRYABLE) and attempt + 1 < MAX_TRIES:
                continue
            raise
        await _aio.uncancellable(tr.commit())
        return result, tx.events
    raise AssertionError("unreachable")  # pragma: no cover


async def _rollback(tr: Any) -> None:
    # A broken connection fails to roll back: the server does, and the store drops it.
    with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        await _aio.uncancellable(tr.rollback())


async def connect(dsn: str, options: dict[str, Any]) -> asyncpg.Connection:
    """A new connection (asyncio side)."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn, **options)
    return conn


async def close(conn: asyncpg.Connection, timeout: float) -> None:
    """Close gracefully, or drop the connection when that fails or takes too long."""
    try:
        await conn.close(timeout=timeout)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
        conn.terminate()


# -- rows ------------------------------------------------------------------------------------


def _seq(row: asyncpg.Record) -> Sequence[Any]:
    """A record as the sequence :mod:`.rows` unpacks (it is one, untyped as such)."""
    return cast("Sequence[Any]", row)


def _instances(rows: Sequence[asyncpg.Record]) -> list[Instance]:
    return [instance_from_row(_seq(row)) for row in rows]


async def _lock(tx: Tx, uuids: Collection[str]) -> tuple[dict[str, Instance], datetime]:
    """Lock the instances ``uuids``; with the database's now."""
    rows = await tx.conn.fetch(tx.st.lock_by_uuids, list(uuids))
    if not rows:
        return {}, await tx.now()
    found = {}
    for row in rows:
        inst = instance_from_row(row[:-1])
        found[inst.uuid] = inst
    return found, from_us(rows[0][-1])


# -- queue --------------------------------------------------------------------------------


def _same(values: list[Any]) -> tuple[Any, list[Any] | None]:
    """``(value, None)`` when every one of ``values`` equals the first, else ``(None,
    values)``: a column sent once for the whole batch, or one value per row."""
    first = values[0] if values else None
    if values.count(first) == len(values):
        return first, None
    return None, values


def _us_column(values: list[datetime | None]) -> tuple[int | None, list[int | None] | None]:
    value, array = _same(values)
    if array is None:
        return (None if value is None else to_us(value)), None
    return None, [None if v is None else to_us(v) for v in array]


def _json_column(values: list[Any], empty: str) -> tuple[str | None, list[Any] | None]:
    # Compared as text: equal values may be spelled differently (1 and 1.0).
    return _same([dumps(v) if v else empty for v in values])


def _opt_json_column(values: list[Any]) -> tuple[str | None, list[Any] | None]:
    value, array = _same(values)
    if array is None:
        return (None if value is None else dumps(value)), None
    return _same([None if v is None else dumps(v) for v in array])


_PLAIN = tuple(
    (name, attrgetter(name))
    for name in ("kind", "dedupe_key", "schedule_id", "attempts", "failures", "rescues",
                 "error_message", "error_type", "traceback", "node_id", "worker",
                 "claim_token", "cancel_requested")
)  # fmt: skip
_TIMES = {
    "created_us": attrgetter("created_at"),
    "fire_us": attrgetter("fire_time"),
    "scheduled_us": attrgetter("scheduled_at"),
    "updated_us": attrgetter("updated_at"),
    "lease_us": attrgetter("lease_expires_at"),
    "processed_us": attrgetter("processed_at"),
    "completed_us": attrgetter("completed_at"),
    "terminated_us": attrgetter("terminated_at"),
    "canceled_us": attrgetter("canceled_at"),
    "timed_out_us": attrgetter("timed_out_at"),
    "finished_us": attrgetter("finished_at"),
}


def _add_params(stored: Sequence[Instance], now_us: int) -> list[Any]:
    """The parameters of :attr:`PgStatements.add` before the payloads and channel."""
    columns: dict[str, tuple[Any, list[Any] | None]] = {}
    for name, get in _PLAIN:
        columns[name] = _same(list(map(get, stored)))
    for name, get in _TIMES.items():
        columns[name] = _us_column(list(map(get, stored)))
    policy, policies = _same([i.policy for i in stored])
    if policies is None:
        columns["policy"] = (None if policy is None else _policy_text(policy)), None
        columns["priority"] = (None if policy is None else policy.priority), None
    else:
        columns["policy"] = None, [_policy_text(p) for p in policies]
        columns["priority"] = None, [p.priority for p in policies]
    state, states = _same([i.state for i in stored])
    columns["state"] = (
        (None if state is None else state.value, None)
        if states is None
        else (None, [s.value for s in states])
    )
    columns["args"] = _json_column([i.args for i in stored], "[]")
    columns["kwargs"] = _json_column([i.kwargs for i in stored], "{}")
    columns["result"] = _opt_json_column([i.result for i in stored])
    params: list[Any] = [[i.uuid for i in stored]]
    for name in INSTANCE_INSERT_COLUMNS[1:]:
        params.extend(columns[name])
    # The details of Scheduled (an ISO time needs no JSON escaping); one time object
    # shared by the batch is spelled once (equal times may be spelled differently).
    times = [i.scheduled_at for i in stored]
    first = times[0] if times else None
    if first is not None and all(t is first for t in times):
        params.extend((f'{{"due":"{first.isoformat()}"}}', None))
    else:
        params.extend(_same([f'{{"due":"{cast(datetime, t).isoformat()}"}}' for t in times]))
    params.append(now_us)
    return params


COPY_THRESHOLD = 500
"""Batches of at least this many new instances (without dedupe keys) are inserted by
``COPY`` in a transaction (:meth:`Tx.copy_add`): a few more round trips than the one
statement of :meth:`Tx.add`, repaid many times over by a cheaper insert on the server
and by building rows while the server is already storing the first ones."""


class _Memo:
    """The last value converted, and its conversion: the instances of a batch share
    their times and policy objects, so each is converted once, not once per row."""

    __slots__ = ("convert", "key", "value")

    def __init__(self, convert: Callable[[Any], Any]) -> None:
        self.convert = convert
        self.key: Any = _UNSET
        self.value: Any = None

    def __call__(self, key: Any) -> Any:
        if key is not self.key:
            self.key = key
            self.value = self.convert(key)
        return self.value


_UNSET: Any = object()


def _opt_us(value: datetime | None) -> int | None:
    return None if value is None else to_us(value)


def _due_details(due: datetime | None) -> str:
    # An ISO time needs no JSON escaping.
    assert due is not None
    return f'{{"due":"{due.isoformat()}"}}'


PLAIN_INSERT_COLUMNS = (
    "uuid", "kind", "priority", "policy", "args", "kwargs", "created_us", "state",
    "scheduled_us", "updated_us", "attempts", "failures", "rescues",
)  # fmt: skip
"""The columns :func:`_copy_rows` sends for plain new instances: the others of such an
instance are NULL (or, ``cancel_requested``, false), which the table's defaults give."""

COPY_INSERT_COLUMNS = (
    *PLAIN_INSERT_COLUMNS,
    "dedupe_key", "schedule_id", "fire_us", "result", "error_message", "error_type",
    "traceback", "node_id", "worker", "claim_token", "lease_us", "cancel_requested",
    "processed_us", "completed_us", "terminated_us", "canceled_us", "timed_out_us",
    "finished_us",
)  # fmt: skip
"""Every column of a new instance (:data:`INSTANCE_INSERT_COLUMNS`), in the order of
:func:`_copy_rows`: the plain ones first."""
assert sorted(COPY_INSERT_COLUMNS) == sorted(INSTANCE_INSERT_COLUMNS)

_unset = attrgetter(
    "schedule_id", "fire_time", "result", "error_message", "error_type", "traceback",
    "node_id", "worker", "claim_token", "lease_expires_at", "processed_at", "completed_at",
    "terminated_at", "canceled_at", "timed_out_at", "cancel_requested",
)  # fmt: skip
"""What a plain new instance leaves unset (:data:`_UNSET_VALUES`): most new instances,
and every one of ``schedule_many``."""
_UNSET_VALUES = (None,) * 15 + (False,)


def _copy_rows(
    given: Sequence[Instance],
    ch: Changes,
    stored: list[Instance],
    stored_as: Callable[[Instance, datetime], Instance],
    plain: bool,
) -> Iterator[tuple[Any, ...]]:
    """The rows for ``COPY``, built as consumed: of :data:`PLAIN_INSERT_COLUMNS` when
    ``plain`` (less than half the columns to encode here and to parse on the server),
    else of :data:`COPY_INSERT_COLUMNS`. Each given instance's stored snapshot
    (``stored_as``) is appended to ``stored`` and its state event to ``ch``."""
    created, fire, scheduled, updated = (_Memo(_opt_us) for _ in range(4))
    policy_text = _Memo(_policy_text)
    now = ch.now
    events = ch.events
    scheduled_state = State.SCHEDULED
    state_value = scheduled_state.value
    for one in given:
        i = stored_as(one, now)
        stored.append(i)
        events.append(Event(EventType.STATE, i.uuid, i.kind, scheduled_state))
        args, kwargs = i.args, i.kwargs
        policy = i.policy
        row: tuple[Any, ...] = (
            i.uuid, i.kind, policy.priority, policy_text(policy),
            dumps(args) if args else "[]", dumps(kwargs) if kwargs else "{}",
            created(i.created_at), state_value, scheduled(i.scheduled_at),
            updated(i.updated_at), i.attempts, i.failures, i.rescues,
        )  # fmt: skip
        if not plain:
            result = i.result
            row += (
                i.dedupe_key, i.schedule_id, fire(i.fire_time),
                None if result is None else dumps(result), i.error_message, i.error_type,
                i.traceback, i.node_id, i.worker, i.claim_token, _opt_us(i.lease_expires_at),
                i.cancel_requested, _opt_us(i.processed_at), _opt_us(i.completed_at),
                _opt_us(i.terminated_at), _opt_us(i.canceled_at), _opt_us(i.timed_out_at),
                None,
            )  # fmt: skip
        yield row


def _copy_history(stored: Sequence[Instance], now_us: int) -> Iterator[tuple[Any, ...]]:
    """The history rows of :data:`HISTORY_INSERT_COLUMNS` for ``COPY``, one per instance
    holding its Created and Scheduled records (as :attr:`PgStatements.add` writes them)."""
    created, scheduled = State.CREATED.value, State.SCHEDULED.value
    due = _Memo(_due_details)
    for i in stored:
        yield i.uuid, i.kind, scheduled, now_us, i.attempts, due(i.scheduled_at), created


def _fresh(inst: Instance, now: datetime) -> Instance:
    """:func:`detach` of a new instance, as stored: Scheduled, its times set (nothing to
    copy in empty arguments: :func:`_adopt` gives the copy containers of its own)."""
    data = inst.__dict__.copy()
    args, kwargs, result = data["args"], data["kwargs"], data["result"]
    if args:
        data["args"] = copy_json(args)
    if kwargs:
        data["kwargs"] = copy_json(kwargs)
    if result is not None:
        data["result"] = copy_json(result)
    clone = object.__new__(Instance)
    clone.__dict__ = data
    return _adopt(clone, now)


def _adopt(inst: Instance, now: datetime) -> Instance:
    """A new instance made the stored snapshot itself (handed over, or a copy made by
    :func:`_fresh`): Scheduled, its times set. Empty arguments get containers of its own
    (a caller may share one empty list among many calls)."""
    data = inst.__dict__
    if not data["args"] and type(data["args"]) is list:
        data["args"] = []
    if not data["kwargs"] and type(data["kwargs"]) is dict:
        data["kwargs"] = {}
    data["_sink"] = None
    data["state"] = State.SCHEDULED
    data["created_at"] = data["created_at"] or now
    data["scheduled_at"] = data["scheduled_at"] or now
    data["updated_at"] = now
    return inst


async def _insert(
    tx: Tx,
    instances: Sequence[Instance],
    ch: Changes,
    stored_as: Callable[[Instance, datetime], Instance],
) -> tuple[list[Instance], list[Instance]]:
    """Decide the insertion of new instances as Scheduled (history Created, Scheduled),
    or return the live holder of their dedupe key in their place; returns the result
    and the instances to insert (written by :meth:`Tx.add`)."""
    holders: dict[str, Instance] = {}
    keys = list({i.dedupe_key for i in instances if i.dedupe_key is not None})
    if keys:
        for row in await tx.conn.fetch(tx.st.live_by_keys, keys):
            holder = instance_from_row(_seq(row))
            assert holder.dedupe_key is not None
            holders[holder.dedupe_key] = holder
    now = ch.now
    new: list[Instance] = []
    result: list[Instance] = []
    events = ch.events
    scheduled_state = State.SCHEDULED
    for given in instances:
        key = given.dedupe_key
        if key is not None:
            live = holders.get(key)
            if live is not None:
                result.append(detach(live))
                continue
        # One snapshot: what is stored is written as values, and it is returned.
        stored = stored_as(given, now)
        new.append(stored)
        events.append(Event(EventType.STATE, stored.uuid, stored.kind, scheduled_state))
        if key is not None:
            holders[key] = stored
        result.append(stored)
    return result, new


async def add(tx: Tx, instances: Sequence[Instance], adopt: bool = False) -> list[Instance]:
    """Add ``instances``; ``adopt``: they were handed over (:class:`~..base.Handover`), so
    they become the stored snapshots instead of copies."""
    ch = Changes(await tx.now())
    stored_as = _adopt if adopt else _fresh
    if (
        len(instances) >= COPY_THRESHOLD
        and tx.conn.is_in_transaction()
        and all(i.dedupe_key is None for i in instances)
    ):
        added = await tx.copy_add(instances, ch, stored_as)
        _announce_added(added, ch)
        tx.events.extend(ch.events)
        return added
    added, new = await _insert(tx, instances, ch, stored_as)
    _announce_added(added, ch)
    await tx.add(new, ch)
    return added


def _announce_added(added: Sequence[Instance], ch: Changes) -> None:
    """The DUE event of an add, after its state events."""
    if added:
        earliest = min(i.scheduled_at or ch.now for i in added)
        ch.due(earliest, added[0].kind if len(added) == 1 else None)


async def claim(
    tx: Tx, node_id: str, kinds: Collection[str] | None, limit: int, lease: float
) -> list[Instance]:
    st = tx.st
    nonce = os.urandom(8).hex()
    lease_us = round(lease * 1_000_000)
    details = dumps({"node": node_id})
    origin = dumps(tx.origin)
    if kinds is None:
        rows = await tx.conn.fetch(
            st.claim_any, limit, node_id, nonce, lease_us, details, tx.channel, origin
        )
    else:
        rows = await tx.conn.fetch(
            st.claim_kinds, limit, node_id, nonce, lease_us, details, tx.channel,
            list(kinds), origin,
        )  # fmt: skip
    if not rows:
        return []
    claimed = [instance_from_row(row[:-1]) for row in rows]  # in claim order
    # Delivered in-process; NOTIFY was sent by the statement itself.
    tx.events.extend(
        Event(EventType.STATE, inst.uuid, inst.kind, State.PROCESSING, node_id) for inst in claimed
    )
    tx.notified = len(tx.events)
    return claimed


async def next_due(tx: Tx, kinds: Collection[str] | None) -> datetime | None:
    if kinds is None:
        value = await tx.conn.fetchval(tx.st.next_due_any)
    else:
        value = await tx.conn.fetchval(tx.st.next_due_kinds, list(kinds))
    return None if value is None else from_us(value)


async def extend_leases(tx: Tx, tokens: Collection[str], lease: float) -> LeaseReply:
    wanted = list(dict.fromkeys(tokens))
    uuids = [t.partition("/")[0] for t in wanted]
    rows = await tx.conn.fetch(tx.st.extend_leases, uuids, wanted, round(lease * 1_000_000))
    extended = frozenset(row[0] for row in rows)
    cancel = frozenset(row[0] for row in rows if row[1])
    return LeaseReply(extended, frozenset(wanted) - extended, cancel)


async def finish_many(
    tx: Tx, items: Sequence[tuple[str, Outcome]], returning: bool
) -> list[Instance | LeaseLost | None]:
    found, now = await _lock(tx, {token.partition("/")[0] for token, _ in items})
    ch = Changes(now)
    results = [
        finish_one(found.get(token.partition("/")[0]), token, outcome, ch, returning)
        for token, outcome in items
    ]
    if ch.dirty or ch.history:
        await tx.write((), ch)
    return results


MISS: Any = object()
"""In :func:`complete`'s result: an item to judge the general way (:func:`finish_many`)."""


def completes_simply(outcome: Outcome) -> bool:
    """True for an outcome :func:`complete` can apply: a plain success."""
    return (
        outcome.state is State.COMPLETED
        and outcome.retry_at is None
        and not outcome.counts_as_failure
        and outcome.error_message is None
    )


async def complete(
    tx: Tx, items: Sequence[tuple[str, Outcome]], returning: bool
) -> list[Instance | None]:
    """Complete attempts in one statement (every outcome :func:`completes_simply`); an
    item whose token no longer holds its lease (or a repeated one) comes back as
    :data:`MISS`, unchanged, for :func:`finish_many` to judge."""
    uuids: list[str] = []
    results: list[str | None] = []
    rests: list[str] = []
    tokens: list[str] = []
    plain_rests: dict[str | None, str] = {}
    for token, outcome in items:
        tokens.append(token)
        uuids.append(token.partition("/")[0])
        if outcome.result is None and outcome.reason is None:
            # The common case: details {"worker": ...} of one of a few workers.
            worker = outcome.worker
            rest = plain_rests.get(worker)
            if rest is None:
                rest = plain_rests[worker] = dumps({"worker": worker})
            results.append(None)
            rests.append(rest)
            continue
        results.append(None if outcome.result is None else dumps(outcome.result))
        info = outcome_details(outcome, None)
        del info["node"]  # put back first by the statement, from the row
        rests.append(dumps(info))
    statement = tx.st.complete if returning else tx.st.complete_quiet
    rows = await tx.conn.fetch(
        statement, uuids, tokens, results, rests, tx.channel, dumps(tx.origin)
    )
    done: list[Instance | None] = [MISS] * len(items)
    for row in rows:  # in array order
        position = row[-2] - 1
        if returning:
            inst = instance_from_row(row[:-2])
            done[position] = inst
            kind, node_id = inst.kind, inst.node_id
        else:
            done[position] = None
            kind, node_id = row[1], row[2]
        tx.events.append(Event(EventType.STATE, uuids[position], kind, State.COMPLETED, node_id))
    tx.notified = len(tx.events)
    return done


async def request_cancel(tx: Tx, query: InstanceQuery) -> list[Instance]:
    ch = Changes(await tx.now())
    matched = []
    statement = tx.st.core.to_cancel(query).with_for_update()
    for row in await tx.query(statement):
        inst = instance_from_row(_seq(row))
        cancel_one(inst, ch)
        matched.append(detach(inst))
    if ch.dirty or ch.events:
        await tx.write((), ch)
    return matched


async def reap_expired(tx: Tx) -> list[Instance]:
    ch = Changes(await tx.now())
    reaped = []
    for row in await tx.conn.fetch(tx.st.lock_expired, ch.now_us):
        inst = instance_from_row(_seq(row))
        reap_one(inst, ch)
        reaped.append(detach(inst))
    if reaped:
        await tx.write((), ch)
    return reaped


async def requeue(tx: Tx, uuid: str, due: datetime) -> Instance:
    found, now = await _lock(tx, [uuid])
    inst = found.get(uuid)
    if inst is None:
        raise InstanceNotFound(uuid)
    if inst.state not in FINAL:
        raise InvalidTransition(f"instance {uuid} is {inst.state.value}, not final")
    key = inst.dedupe_key
    if key is not None:
        holder = await tx.conn.fetchval(tx.st.other_live_holder, key, uuid)
        if holder is not None:
            raise InvalidTransition(f"another instance ({holder}) holds dedupe key {key!r}")
    ch = Changes(now)
    requeue_one(inst, due, ch)
    await tx.write((), ch)
    return detach(inst)


# -- lookups ----------------------------------------------------------------------------------


async def now(tx: Tx) -> datetime:
    return await tx.now()


async def get(tx: Tx, uuid: str) -> Instance | None:
    row = await tx.conn.fetchrow(tx.st.by_uuid, uuid)
    return None if row is None else instance_from_row(_seq(row))


async def lookup(tx: Tx, query: InstanceQuery) -> list[Instance]:
    return _instances(await tx.query(tx.st.core.lookup(query)))


async def counts(tx: Tx) -> dict[tuple[str, State], int]:
    rows = await tx.conn.fetch(tx.st.counts)
    return {(kind, State(state)): n for kind, state, n in rows}


async def history(tx: Tx, query: HistoryQuery) -> list[HistoryRecord]:
    return [history_record(_seq(row)) for row in await tx.query(tx.st.core.history(query))]


async def logs(tx: Tx, query: LogQuery) -> list[LogRecord]:
    return [log_record(_seq(row)) for row in await tx.query(tx.st.core.logs(query))]


async def append_logs(tx: Tx, records: Sequence[LogRecord]) -> None:
    rows = [log_params(rec) for rec in records]
    events: dict[str, Event] = {}
    for rec in records:
        events.setdefault(rec.uuid, Event(EventType.LOG, rec.uuid, rec.kind))
    tx.events.extend(events.values())
    args: list[Any] = [[row[c] for row in rows] for c in LOG_INSERT_COLUMNS]
    await tx.conn.execute(tx.st.insert_logs, *args, tx.payloads(), tx.channel)


# -- schedules ----------------------------------------------------------------------------------


async def get_schedule(tx: Tx, schedule_id: str, *, lock: bool = False) -> ScheduleRecord | None:
    statement = tx.st.core.schedule_by_id
    if lock:
        statement = tx.st.locked_schedule
    rows = await tx.core_rows(statement, {"p_id": schedule_id})
    return schedule_from_row(_seq(rows[0])) if rows else None


async def list_schedules(tx: Tx, kind: str | None) -> list[ScheduleRecord]:
    core = tx.st.core
    if kind is None:
        rows = await tx.core_rows(core.all_schedules)
    else:
        rows = await tx.core_rows(core.schedules_of_kind, {"p_kind": kind})
    return [schedule_from_row(_seq(row)) for row in rows]


async def _store_schedule(tx: Tx, record: ScheduleRecord) -> None:
    params = schedule_params(record)
    params["b_id"] = params.pop("id")
    await tx.core(tx.st.core.update_schedule, params)


async def put_schedule(tx: Tx, record: ScheduleRecord) -> ScheduleRecord:
    existing = await get_schedule(tx, record.id, lock=True)
    if existing is not None and existing.same_definition(record):
        return existing
    now = await tx.now()
    stored = record.copy()
    stored.updated_at = now
    if existing is None:
        stored.created_at = now
        # A node declaring the same schedule at the same time: a unique violation, and
        # the transaction runs again (then finds it).
        await tx.core(tx.st.core.insert_schedule, schedule_params(stored))
    else:
        stored.created_at = existing.created_at
        stored.paused = existing.paused
        stored.fired_count = existing.fired_count
        stored.skipped_count = existing.skipped_count
        stored.recent_skips = list(existing.recent_skips)
        stored.last_fire_at = existing.last_fire_at
        stored.last_instance = existing.last_instance
        await _store_schedule(tx, stored)
    tx.events.append(Event(EventType.SCHEDULE, schedule_id=record.id, due=stored.next_fire_at))
    return stored.copy()


async def set_schedule_paused(
    tx: Tx, schedule_id: str, paused: bool, next_fire_at: datetime | None
) -> ScheduleRecord:
    found = await get_schedule(tx, schedule_id, lock=True)
    if found is None:
        raise ScheduleNotFound(schedule_id)
    found.paused = paused
    if next_fire_at is not None:
        found.next_fire_at = next_fire_at
    found.updated_at = await tx.now()
    await _store_schedule(tx, found)
    tx.events.append(Event(EventType.SCHEDULE, schedule_id=schedule_id, due=found.next_fire_at))
    return found


async def delete_schedule(tx: Tx, schedule_id: str) -> bool:
    status = await tx.core(tx.st.core.delete_schedule, {"p_id": schedule_id})
    existed = _count(status) > 0
    if existed:
        tx.events.append(Event(EventType.SCHEDULE, schedule_id=schedule_id))
    return existed


# -- nodes --------------------------------------------------------------------------------------


async def heartbeat(tx: Tx, node: NodeRecord, ttl: float) -> NodeRecord:
    now = await tx.now()
    stored = node.copy()
    stored.last_seen = now
    stored.expires_at = now + timedelta(seconds=ttl)
    await tx.core(tx.st.core.delete_node, {"p_id": node.node_id})
    await tx.core(tx.st.core.insert_node, node_params(stored))
    return stored


async def nodes(tx: Tx) -> list[NodeRecord]:
    now_us = to_us(await tx.now())
    await tx.core(tx.st.core.delete_expired_nodes, {"p_now": now_us})
    rows = await tx.core_rows(tx.st.core.live_nodes, {"p_now": now_us})
    return [node_from_row(_seq(row)) for row in rows]


async def remove_node(tx: Tx, node_id: str) -> bool:
    return _count(await tx.core(tx.st.core.delete_node, {"p_id": node_id})) > 0


async def fire_schedule(
    tx: Tx,
    schedule_id: str,
    expected_next_fire_at: datetime,
    next_fire_at: datetime,
    instances: Sequence[Instance],
    skipped: Sequence[tuple[datetime, str]],
    skipped_count: int,
) -> list[Instance] | None:
    # The row lock makes the compare-and-set exact across nodes.
    found = await get_schedule(tx, schedule_id, lock=True)
    if found is None or found.paused or found.next_fire_at != expected_next_fire_at:
        return None
    ch = Changes(await tx.now())
    now = ch.now
    given: list[Instance] = []
    given.extend(keyed_by_slot(schedule_id, instances))
    added, new = await _insert(tx, given, ch, _fresh)
    record_fire(found, added, now, next_fire_at, skipped, skipped_count)
    if added:
        ch.due(min(i.scheduled_at or now for i in added), found.kind)
    await _store_schedule(tx, found)
    await tx.add(new, ch)
    return added


# -- retention ---------------------------------------------------------------------------------


async def prune(tx: Tx, before: datetime) -> PruneResult:
    core = tx.st.core
    params = {"p_before": to_us(before)}
    # History and logs first: their statements find the pruned instances by subquery.
    # Counted as records (a row may hold two), in the transaction that deletes them.
    history_count = int((await tx.core_rows(core.prune_history_count, params))[0][0])
    await tx.core(core.prune_history, params)
    log_count = _count(await tx.core(core.prune_logs, params))
    instance_count = _count(await tx.core(core.prune_instances, params))
    return PruneResult(instance_count, history_count, log_count)


def _count(status: str) -> int:
    """The row count of a command status (``"DELETE 3"``)."""
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else 0


_CLAIM_COLUMNS = "state, priority, scheduled_us, cancel_requested, kind"


async def ensure_statistics(tx: Tx) -> bool:
    """ANALYZE the instances table if it never was (``reltuples`` unknown, or zero while
    it holds rows); True if the table has statistics now (False: it is empty, or the
    ANALYZE had to be skipped).

    Until a table is analyzed the planner's estimates for it are defaults that make every
    row filter look nearly empty, and with them it plans the claim as a bitmap scan of
    every due instance followed by a sort, on every claim (a cost in the backlog, not in
    the batch), instead of an ordered walk of the claim index that stops at the limit.
    Autovacuum analyzes a table some time after it filled; this covers the time before
    (a fresh deployment's first backlog), and servers where autovacuum is off. ANALYZE
    samples a bounded number of rows, so this costs tens of milliseconds once; it is
    skipped when the table is locked by a VACUUM or ANALYZE (which then provides the
    statistics), or left to the server's warning when this role does not own it."""
    table = tx.st.tables.instances.name
    row = await tx.conn.fetchrow(
        "SELECT c.reltuples, EXISTS (SELECT FROM " + table + ") "
        "FROM pg_class c WHERE c.oid = $1::regclass",
        table,
    )
    if row is None or not row[1]:
        return False
    if row[0] > 0:
        return True
    try:
        async with tx.conn.transaction():
            # Never wait behind a VACUUM or another ANALYZE of the table: skip instead.
            await tx.conn.execute("SET LOCAL lock_timeout = '100ms'")
            # The columns the claim filters and orders by: half the time of all of them.
            # Autovacuum's analyze covers the others later.
            await tx.conn.execute(f"ANALYZE {table} ({_CLAIM_COLUMNS})")
    except asyncpg.LockNotAvailableError:
        return False
    return True


async def schema_revision(conn: asyncpg.Connection, version_table: str) -> str | None:
    """The Alembic revision of the schema (None: no version table)."""
    quoted = '"' + version_table.replace('"', '""') + '"'
    if await conn.fetchval("SELECT to_regclass($1)::text", quoted) is None:
        return None
    revision: str | None = await conn.fetchval(f"SELECT version_num FROM {quoted}")
    return revision
