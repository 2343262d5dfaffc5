"""The units of work of the SQL stores: one function per store method, each run inside
one transaction on a sync SQLAlchemy connection.

Every function takes the connection (its transaction already begun), the
:class:`~.statements.Statements`, its arguments and the store's ``now``, and returns
its result with the events to announce once the transaction has committed. Fixed
statements go through :func:`_run` and :func:`_run_many`: straight to the driver
when the statements were compiled for one (SQLite), else through SQLAlchemy. Reads
then modifications of the same rows (finish, reap, cancel, requeue, dedupe,
schedule compare-and-set) rely on the transaction holding the database's write
lock from its start: SQLite's ``BEGIN IMMEDIATE``. A store on a database with row
locks must take them (``SELECT ... FOR UPDATE``) instead.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection

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
    keyed_by_slot,
    record_fire,
)
from .rows import (
    dumps,
    from_us,
    history_params,
    history_record,
    instance_from_row,
    instance_params,
    log_params,
    log_record,
    mutable_params,
    node_from_row,
    node_params,
    schedule_from_row,
    schedule_params,
    to_us,
)
from .statements import MAX_LIST, Statements
from .transitions import (
    Changes,
    cancel_one,
    detach,
    finish_one,
    reap_one,
    requeue_one,
)

__all__ = [
    "add",
    "append_logs",
    "claim",
    "counts",
    "delete_schedule",
    "extend_leases",
    "finish_many",
    "fire_schedule",
    "get",
    "get_schedule",
    "history",
    "list_schedules",
    "logs",
    "lookup",
    "next_due",
    "prune",
    "put_schedule",
    "reap_expired",
    "request_cancel",
    "requeue",
    "set_schedule_paused",
]

Events = list[Event]
T = TypeVar("T")

_CHUNK = MAX_LIST
"""Lists longer than this are looked up in several statements."""


class _Result(Protocol):
    """What both a driver cursor and a SQLAlchemy result offer."""

    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> Sequence[Any]: ...

    def fetchone(self) -> Any: ...


def _run(conn: Connection, st: Statements, statement: Any, params: dict[str, Any]) -> _Result:
    """Execute a fixed statement of ``st`` with ``params``."""
    if st.dialect is None:
        return conn.execute(statement, params)
    sql, constants = st.compiled(statement)
    if constants:
        params = {**constants, **params}
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor: _Result = driver.execute(sql, params)
    return cursor


def _run_many(conn: Connection, st: Statements, statement: Any, rows: list[dict[str, Any]]) -> None:
    """Execute a fixed statement of ``st`` once per parameter set (executemany)."""
    if st.dialect is None:
        conn.execute(statement, rows)
        return
    sql, constants = st.compiled(statement)
    if constants:
        rows = [{**constants, **row} for row in rows]
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.executemany(sql, rows)


def _chunks(values: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _flush(conn: Connection, st: Statements, ch: Changes) -> None:
    """Write the instances changed and the history records collected."""
    if ch.dirty:
        rows = []
        for inst in ch.dirty.values():
            params = mutable_params(inst)
            params["b_uuid"] = inst.uuid
            rows.append(params)
        _run_many(conn, st, st.write_back, rows)
    if ch.history:
        _run_many(conn, st, st.insert_history, ch.history)


def _load(conn: Connection, st: Statements, uuids: Collection[str]) -> dict[str, Instance]:
    found: dict[str, Instance] = {}
    for chunk in _chunks(list(uuids)):
        size, params = st.list_params("p_uuids", chunk)
        for row in _run(conn, st, st.instances_by_uuid(size), params).fetchall():
            inst = instance_from_row(row)
            found[inst.uuid] = inst
    return found


# -- queue --------------------------------------------------------------------------------


def _insert(
    conn: Connection, st: Statements, instances: Sequence[Instance], ch: Changes
) -> list[Instance]:
    """Insert new instances as Scheduled (history Created, Scheduled), or return the live
    holder of their dedupe key in their place."""
    holders: dict[str, Instance] = {}
    keys = list({i.dedupe_key for i in instances if i.dedupe_key is not None})
    for chunk in _chunks(keys):
        size, params = st.list_params("p_keys", chunk)
        for row in _run(conn, st, st.live_by_dedupe_key(size), params).fetchall():
            holder = instance_from_row(row)
            assert holder.dedupe_key is not None
            holders[holder.dedupe_key] = holder
    now = ch.now
    new_rows: list[dict[str, Any]] = []
    result: list[Instance] = []
    for given in instances:
        key = given.dedupe_key
        if key is not None:
            live = holders.get(key)
            if live is not None:
                result.append(detach(live))
                continue
        stored = detach(given)
        stored.state = State.SCHEDULED
        stored.created_at = stored.created_at or now
        stored.scheduled_at = stored.scheduled_at or now
        stored.updated_at = now
        new_rows.append(instance_params(stored, dumps(stored.args), dumps(stored.kwargs)))
        ch.record(
            stored,
            State.SCHEDULED,
            {"due": stored.scheduled_at.isoformat()},
            preceded_by=State.CREATED,
        )
        ch.events.append(Event(EventType.STATE, stored.uuid, stored.kind, State.SCHEDULED))
        if key is not None:
            holders[key] = stored
        result.append(detach(stored))
    if new_rows:
        _run_many(conn, st, st.insert_instance, new_rows)
    return result


def add(
    conn: Connection, st: Statements, instances: Sequence[Instance], now: datetime
) -> tuple[list[Instance], Events]:
    ch = Changes(now)
    added = _insert(conn, st, instances, ch)
    if added:
        earliest = min(i.scheduled_at or now for i in added)
        ch.due(earliest, added[0].kind if len(added) == 1 else None)
    _flush(conn, st, ch)
    return added, ch.events


def claim(
    conn: Connection,
    st: Statements,
    node_id: str,
    kinds: Collection[str] | None,
    limit: int,
    lease: float,
    now: datetime,
) -> tuple[list[Instance], Events]:
    now_us = to_us(now)
    params: dict[str, Any] = {
        "p_now": now_us,
        "p_limit": limit,
        "p_node": node_id,
        "p_nonce": os.urandom(8).hex(),
        "p_until": to_us(now + timedelta(seconds=lease)),
    }
    if kinds is None:
        stmt = st.claim_any
    else:
        # Not chunked (ordering spans every kind): a node has at most a few hundred.
        size, kind_params = st.list_params("p_kinds", list(kinds))
        stmt = st.claim_kinds(size)
        params.update(kind_params)
    rows = _run(conn, st, stmt, params).fetchall()
    if not rows:
        return [], []
    # RETURNING gives no order: restore the claim's (priority, due time, seq).
    loaded = [(instance_from_row(row), row[8], row[0]) for row in rows]
    loaded.sort(key=lambda item: (item[0].policy.priority, item[1], item[2]))
    claimed = [inst for inst, _, _ in loaded]
    info = {"node": node_id}
    _run_many(
        conn,
        st,
        st.insert_history,
        [history_params(inst, State.PROCESSING, now_us, info) for inst in claimed],
    )
    events = [
        Event(EventType.STATE, inst.uuid, inst.kind, State.PROCESSING, node_id) for inst in claimed
    ]
    return claimed, events


def next_due(conn: Connection, st: Statements, kinds: Collection[str] | None) -> datetime | None:
    if kinds is None:
        row = _run(conn, st, st.next_due_any, {}).fetchone()
    else:
        size, params = st.list_params("p_kinds", list(kinds))
        row = _run(conn, st, st.next_due_kinds(size), params).fetchone()
    value = None if row is None else row[0]
    return None if value is None else from_us(value)


def extend_leases(
    conn: Connection, st: Statements, tokens: Collection[str], lease: float, now: datetime
) -> tuple[LeaseReply, Events]:
    wanted = list(dict.fromkeys(tokens))
    extended: set[str] = set()
    cancel: set[str] = set()
    until = to_us(now + timedelta(seconds=lease))
    for chunk in _chunks(wanted):
        # A token embeds its instance's uuid: the uuid index finds the rows.
        size, params = st.list_params("p_tokens", chunk)
        uuids = [t.partition("/")[0] for t in chunk]
        params.update(st.list_params("p_uuids", uuids)[1])
        params["p_now"] = to_us(now)
        params["p_until"] = until
        stmt = st.extend_leases(size)
        for token, cancel_requested in _run(conn, st, stmt, params).fetchall():
            extended.add(token)
            if cancel_requested:
                cancel.add(token)
    lost = frozenset(wanted) - extended
    return LeaseReply(frozenset(extended), lost, frozenset(cancel)), []


def finish_many(
    conn: Connection,
    st: Statements,
    items: Sequence[tuple[str, Outcome]],
    returning: bool,
    now: datetime,
) -> tuple[list[Instance | LeaseLost | None], Events]:
    found = _load(conn, st, {token.partition("/")[0] for token, _ in items})
    ch = Changes(now)
    results = [
        finish_one(found.get(token.partition("/")[0]), token, outcome, ch, returning)
        for token, outcome in items
    ]
    _flush(conn, st, ch)
    return results, ch.events


def request_cancel(
    conn: Connection, st: Statements, query: InstanceQuery, now: datetime
) -> tuple[list[Instance], Events]:
    ch = Changes(now)
    matched = []
    for row in conn.execute(st.to_cancel(query)).all():
        inst = instance_from_row(row)
        cancel_one(inst, ch)
        matched.append(detach(inst))
    _flush(conn, st, ch)
    return matched, ch.events


def reap_expired(conn: Connection, st: Statements, now: datetime) -> tuple[list[Instance], Events]:
    ch = Changes(now)
    reaped = []
    for row in _run(conn, st, st.expired, {"p_now": to_us(now)}).fetchall():
        inst = instance_from_row(row)
        reap_one(inst, ch)
        reaped.append(detach(inst))
    _flush(conn, st, ch)
    return reaped, ch.events


def requeue(
    conn: Connection, st: Statements, uuid: str, due: datetime, now: datetime
) -> tuple[Instance, Events]:
    inst = _load(conn, st, [uuid]).get(uuid)
    if inst is None:
        raise InstanceNotFound(uuid)
    if inst.state not in FINAL:
        raise InvalidTransition(f"instance {uuid} is {inst.state.value}, not final")
    key = inst.dedupe_key
    if key is not None:
        params = {"p_key": key, "p_uuid": uuid}
        holder = _run(conn, st, st.other_live_holder, params).fetchone()
        if holder is not None:
            raise InvalidTransition(f"another instance ({holder[0]}) holds dedupe key {key!r}")
    ch = Changes(now)
    requeue_one(inst, due, ch)
    _flush(conn, st, ch)
    return detach(inst), ch.events


# -- lookups --------------------------------------------------------------------------------


def get(conn: Connection, st: Statements, uuid: str) -> Instance | None:
    size, params = st.list_params("p_uuids", [uuid])
    row = _run(conn, st, st.instances_by_uuid(size), params).fetchone()
    return None if row is None else instance_from_row(row)


def lookup(conn: Connection, st: Statements, query: InstanceQuery) -> list[Instance]:
    return [instance_from_row(row) for row in conn.execute(st.lookup(query))]


def counts(conn: Connection, st: Statements) -> dict[tuple[str, State], int]:
    rows = _run(conn, st, st.counts, {}).fetchall()
    return {(kind, State(state)): n for kind, state, n in rows}


def history(conn: Connection, st: Statements, query: HistoryQuery) -> list[HistoryRecord]:
    return [history_record(row) for row in conn.execute(st.history(query))]


def logs(conn: Connection, st: Statements, query: LogQuery) -> list[LogRecord]:
    return [log_record(row) for row in conn.execute(st.logs(query))]


def append_logs(
    conn: Connection, st: Statements, records: Sequence[LogRecord]
) -> tuple[None, Events]:
    _run_many(conn, st, st.insert_log, [log_params(rec) for rec in records])
    events: dict[str, Event] = {}
    for rec in records:
        events.setdefault(rec.uuid, Event(EventType.LOG, rec.uuid, rec.kind))
    return None, list(events.values())


# -- schedules --------------------------------------------------------------------------------


def get_schedule(conn: Connection, st: Statements, schedule_id: str) -> ScheduleRecord | None:
    row = _run(conn, st, st.schedule_by_id, {"p_id": schedule_id}).fetchone()
    return None if row is None else schedule_from_row(row)


def list_schedules(conn: Connection, st: Statements, kind: str | None) -> list[ScheduleRecord]:
    if kind is None:
        rows = _run(conn, st, st.all_schedules, {})
    else:
        rows = _run(conn, st, st.schedules_of_kind, {"p_kind": kind})
    return [schedule_from_row(row) for row in rows.fetchall()]


def _store_schedule(conn: Connection, st: Statements, record: ScheduleRecord) -> None:
    params = schedule_params(record)
    params["b_id"] = params.pop("id")
    _run(conn, st, st.update_schedule, params)


def put_schedule(
    conn: Connection, st: Statements, record: ScheduleRecord, now: datetime
) -> tuple[ScheduleRecord, Events]:
    existing = get_schedule(conn, st, record.id)
    if existing is not None and existing.same_definition(record):
        return existing, []
    stored = record.copy()
    stored.updated_at = now
    if existing is None:
        stored.created_at = now
        _run(conn, st, st.insert_schedule, schedule_params(stored))
    else:
        stored.created_at = existing.created_at
        stored.paused = existing.paused
        stored.fired_count = existing.fired_count
        stored.skipped_count = existing.skipped_count
        stored.recent_skips = list(existing.recent_skips)
        stored.last_fire_at = existing.last_fire_at
        stored.last_instance = existing.last_instance
        _store_schedule(conn, st, stored)
    event = Event(EventType.SCHEDULE, schedule_id=record.id, due=stored.next_fire_at)
    return stored.copy(), [event]


def set_schedule_paused(
    conn: Connection,
    st: Statements,
    schedule_id: str,
    paused: bool,
    next_fire_at: datetime | None,
    now: datetime,
) -> tuple[ScheduleRecord, Events]:
    found = get_schedule(conn, st, schedule_id)
    if found is None:
        raise ScheduleNotFound(schedule_id)
    found.paused = paused
    if next_fire_at is not None:
        found.next_fire_at = next_fire_at
    found.updated_at = now
    _store_schedule(conn, st, found)
    return found, [Event(EventType.SCHEDULE, schedule_id=schedule_id, due=found.next_fire_at)]


def delete_schedule(conn: Connection, st: Statements, schedule_id: str) -> tuple[bool, Events]:
    existed = _run(conn, st, st.delete_schedule, {"p_id": schedule_id}).rowcount > 0
    return existed, [Event(EventType.SCHEDULE, schedule_id=schedule_id)] if existed else []


# -- nodes ----------------------------------------------------------------------------------


def heartbeat(
    conn: Connection, st: Statements, node: NodeRecord, ttl: float, now: datetime
) -> tuple[NodeRecord, Events]:
    stored = node.copy()
    stored.last_seen = now
    stored.expires_at = now + timedelta(seconds=ttl)
    _run(conn, st, st.delete_node, {"p_id": node.node_id})
    _run(conn, st, st.insert_node, node_params(stored))
    return stored, []


def nodes(conn: Connection, st: Statements, now: datetime) -> tuple[list[NodeRecord], Events]:
    _run(conn, st, st.delete_expired_nodes, {"p_now": to_us(now)})
    rows = _run(conn, st, st.live_nodes, {"p_now": to_us(now)}).fetchall()
    return [node_from_row(row) for row in rows], []


def remove_node(conn: Connection, st: Statements, node_id: str) -> tuple[bool, Events]:
    return _run(conn, st, st.delete_node, {"p_id": node_id}).rowcount > 0, []


def fire_schedule(
    conn: Connection,
    st: Statements,
    schedule_id: str,
    expected_next_fire_at: datetime,
    next_fire_at: datetime,
    instances: Sequence[Instance],
    skipped: Sequence[tuple[datetime, str]],
    skipped_count: int,
    now: datetime,
) -> tuple[list[Instance] | None, Events]:
    found = get_schedule(conn, st, schedule_id)
    if found is None or found.paused or found.next_fire_at != expected_next_fire_at:
        return None, []
    ch = Changes(now)
    given: list[Instance] = []
    given.extend(keyed_by_slot(schedule_id, instances))
    added = _insert(conn, st, given, ch)
    record_fire(found, added, now, next_fire_at, skipped, skipped_count)
    if added:
        ch.due(min(i.scheduled_at or now for i in added), found.kind)
    _store_schedule(conn, st, found)
    _flush(conn, st, ch)
    return added, ch.events


# -- retention ---------------------------------------------------------------------------------


def prune(conn: Connection, st: Statements, before: datetime) -> tuple[PruneResult, Events]:
    params = {"p_before": to_us(before)}
    # History and logs first: their statements find the pruned instances by subquery.
    # Counted as records (a row may hold two), in the transaction that deletes them.
    history_count = int(_run(conn, st, st.prune_history_count, params).fetchone()[0])
    _run(conn, st, st.prune_history, params)
    log_count = _run(conn, st, st.prune_logs, params).rowcount
    instance_count = _run(conn, st, st.prune_instances, params).rowcount
    return PruneResult(instance_count, history_count, log_count), []
