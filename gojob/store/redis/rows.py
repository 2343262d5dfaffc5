"""What the Redis store writes and reads, as plain values: pure functions, no I/O.

Times are epoch microseconds (integers, exact). Instances travel as the values of
:data:`.lua.FIELDS` in that order; history and log records as the strings the Lua
scripts store (see :mod:`.lua`); events as the JSON the scripts publish.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ...instance import HistoryRecord, Instance, LogLevel, LogRecord
from ...policy import Policy
from ...schedule import Misfire, Overlap, trigger_from_json
from ...state import State
from ..base import Event, EventType, NodeRecord, Outcome, ScheduleRecord, trigger_definition

__all__ = [
    "decode_events",
    "from_us",
    "history_from_record",
    "insert_args",
    "instance_from_row",
    "log_args",
    "log_from_record",
    "node_from_value",
    "node_json",
    "outcome_args",
    "schedule_args",
    "schedule_from_row",
    "to_us",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads
_STATES = {s.value: s for s in State}
_TYPES = {t.value: t for t in EventType}
_EMPTY_DATA = "[[],{}]"


def to_us(value: datetime) -> int:
    """Epoch microseconds of an aware datetime (exact)."""
    return (value - _EPOCH) // _MICROSECOND


def from_us(value: int | str) -> datetime:
    """Aware UTC datetime of epoch microseconds (exact)."""
    return _EPOCH + timedelta(microseconds=int(value))


def _opt_us(value: str | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=int(value))


# -- policies: few distinct values, cached both ways ----------------------------------------

_policy_json: dict[Policy, str] = {}
_policy_of: dict[str, Policy] = {}


def policy_json(policy: Policy) -> str:
    found = _policy_json.get(policy)
    if found is None:
        if len(_policy_json) > 1000:
            _policy_json.clear()
        found = _policy_json[policy] = _dumps(policy.to_json())
    return found


def policy_from_json(text: str) -> Policy:
    found = _policy_of.get(text)
    if found is None:
        if len(_policy_of) > 1000:
            _policy_of.clear()
        found = _policy_of[text] = Policy.from_json(_loads(text))
    return found


# -- instances ------------------------------------------------------------------------------


def insert_args(instances: Sequence[Instance]) -> list[str]:
    """The Lua arguments inserting ``instances`` (see :data:`.lua.INSERT_WIDTH`); every
    instance has ``created_at`` and ``scheduled_at`` set."""
    args: list[str] = []
    last_due: datetime | None = None
    due_us = due_iso = ""
    for inst in instances:
        due = inst.scheduled_at
        assert due is not None
        assert inst.created_at is not None
        if due is not last_due:
            last_due = due
            due_us, due_iso = str(to_us(due)), due.isoformat()
        policy = inst.policy
        data = _dumps([inst.args, inst.kwargs]) if inst.args or inst.kwargs else _EMPTY_DATA
        fire = inst.fire_time
        args += (
            inst.uuid,
            inst.kind,
            str(policy.priority),
            due_us,
            str(to_us(inst.created_at)),
            inst.dedupe_key or "",
            inst.schedule_id or "",
            "" if fire is None else str(to_us(fire)),
            data,
            policy_json(policy),
            str(policy.max_rescues),
            due_iso,
        )
    return args


def added_instance(given: Instance, now: datetime) -> Instance:
    """The snapshot of an instance inserted as given (what the store holds now)."""
    args, kwargs = (
        _loads(_dumps([given.args, given.kwargs])) if (given.args or given.kwargs) else ([], {})
    )
    clone = object.__new__(Instance)
    data = clone.__dict__
    data.update(given.__dict__)
    data["_sink"] = None
    data["args"] = args
    data["kwargs"] = kwargs
    data["state"] = State.SCHEDULED
    data["updated_at"] = now
    return clone


def instance_from_row(row: Sequence[str | None]) -> Instance:
    """An Instance from its :data:`.lua.FIELDS` values (the row of a stored instance)."""
    (
        uuid,
        kind,
        state,
        _priority,
        due,
        created,
        updated,
        attempts,
        failures,
        rescues,
        dedupe_key,
        schedule_id,
        fire,
        data,
        policy,
        result,
        error,
        error_type,
        traceback,
        node,
        worker,
        token,
        lease,
        cancel,
        processed,
        completed,
        terminated,
        canceled,
        timed_out,
    ) = row
    if data is None or data == _EMPTY_DATA:
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
    else:
        args, kwargs = _loads(data)
    inst = object.__new__(Instance)
    inst.__dict__ = {
        "uuid": uuid,
        "kind": kind,
        "args": args,
        "kwargs": kwargs,
        "state": _STATES[state or "Created"],
        "policy": policy_from_json(policy) if policy else Policy(),
        "created_at": _opt_us(created),
        "scheduled_at": _opt_us(due),
        "attempts": int(attempts or 0),
        "failures": int(failures or 0),
        "rescues": int(rescues or 0),
        "dedupe_key": dedupe_key,
        "schedule_id": schedule_id,
        "fire_time": _opt_us(fire),
        "result": None if result is None else _loads(result),
        "error_message": error,
        "error_type": error_type,
        "traceback": traceback,
        "node_id": node,
        "worker": worker,
        "claim_token": token,
        "lease_expires_at": _opt_us(lease),
        "cancel_requested": cancel == "1",
        "processed_at": _opt_us(processed),
        "completed_at": _opt_us(completed),
        "terminated_at": _opt_us(terminated),
        "canceled_at": _opt_us(canceled),
        "timed_out_at": _opt_us(timed_out),
        "updated_at": _opt_us(updated),
        "_sink": None,
    }
    return inst


def _opt(value: str | None) -> str:
    """An optional string for Lua: ``""`` for None, else ``"="`` and the value."""
    return "" if value is None else "=" + value


def outcome_args(token: str, outcome: Outcome) -> tuple[str, ...]:
    """The Lua arguments finishing the attempt of ``token`` with ``outcome`` (10)."""
    state = outcome.state
    result = outcome.result
    result_json = None if result is None else _dumps(result)
    # The history details but the node (the script knows it): ',"k":v,...'.
    tail = ',"worker":' + _dumps(outcome.worker)
    if state is State.COMPLETED:
        if result_json is not None:
            tail += ',"result":' + result_json
    elif outcome.error_message is not None:
        tail += ',"error":' + _dumps(outcome.error_message)
        tail += ',"error_type":' + _dumps(outcome.error_type)
        if outcome.traceback is not None:
            tail += ',"traceback":' + _dumps(outcome.traceback)
    if outcome.reason is not None:
        tail += ',"reason":' + _dumps(outcome.reason)
    retry = outcome.retry_at
    return (
        token,
        state.value,
        _opt(result_json if state is State.COMPLETED else None),
        _opt(outcome.error_message),
        _opt(outcome.error_type),
        _opt(outcome.traceback),
        "" if retry is None else str(to_us(retry)),
        "" if retry is None else retry.isoformat(),
        tail,
        "1" if outcome.counts_as_failure else "0",
    )


# -- history and logs -----------------------------------------------------------------------


def history_from_record(record: str) -> HistoryRecord:
    """A history record from its stored string (``seq uuid ts attempt state details kind``,
    tab-separated)."""
    seq, uuid, ts, attempt, state, info, kind = record.split("\t", 6)
    return HistoryRecord(
        uuid,
        kind,
        _STATES[state],
        _EPOCH + timedelta(microseconds=int(ts)),
        int(attempt),
        _loads(info) if info else {},
        int(seq),
    )


def history_uuid(record: str) -> str:
    return record.split("\t", 2)[1]


def log_args(records: Sequence[LogRecord]) -> list[str]:
    """The Lua arguments appending ``records``: uuid, kind, timestamp, JSON (4 each)."""
    args: list[str] = []
    for rec in records:
        ts = to_us(rec.timestamp)
        body = [rec.uuid, rec.kind, ts, int(rec.level), rec.message, rec.attempt, rec.logger]
        args += (rec.uuid, rec.kind, str(ts), _dumps(body))
    return args


def log_from_record(record: str) -> LogRecord:
    seq, body = record.split("\t", 1)
    uuid, kind, ts, level, message, attempt, logger = _loads(body)
    return LogRecord(
        uuid,
        kind,
        _EPOCH + timedelta(microseconds=ts),
        LogLevel(level),
        message,
        attempt,
        logger,
        int(seq),
    )


# -- events ---------------------------------------------------------------------------------


def decode_events(payload: str) -> list[Event]:
    """The events of a script's JSON (``[[type, uuid, kind, state, node, due, sid], ...]``)."""
    if not payload:
        return []
    states = _STATES
    events = []
    for etype, uuid, kind, state, node, due, sid in _loads(payload):
        events.append(
            Event(
                _TYPES[etype],
                uuid or None,
                kind or None,
                states[state] if state else None,
                node or None,
                _EPOCH + timedelta(microseconds=int(due)) if due else None,
                sid or None,
            )
        )
    return events


# -- schedules ------------------------------------------------------------------------------


def _definition(record: ScheduleRecord) -> str:
    """What makes two declarations the same (``ScheduleRecord.same_definition``), as text."""
    return _dumps(
        [
            record.kind,
            trigger_definition(record.trigger),
            record.args,
            record.kwargs,
            record.policy.to_json(),
            record.overlap.value,
            record.misfire.value,
            record.misfire_cap,
            record.misfire_grace,
            record.jitter,
        ]
    )


def schedule_args(record: ScheduleRecord) -> list[str]:
    """The Lua arguments of ``put_schedule``: id, definition, JSON record, kind, cursor."""
    body = {
        "kind": record.kind,
        "trigger": record.trigger.to_json(),
        "args": record.args,
        "kwargs": record.kwargs,
        "policy": record.policy.to_json(),
        "overlap": record.overlap.value,
        "misfire": record.misfire.value,
        "misfire_cap": record.misfire_cap,
        "misfire_grace": record.misfire_grace,
        "jitter": record.jitter,
    }
    cursor = record.next_fire_at
    return [
        record.id,
        _definition(record),
        _dumps(body),
        record.kind,
        "" if cursor is None else str(to_us(cursor)),
    ]


def schedule_from_row(row: Sequence[Any]) -> ScheduleRecord:
    """A ScheduleRecord from its :data:`.lua.SCHEDULE_FIELDS` values and its skips."""
    (
        schedule_id,
        _kind,
        _definition_text,
        body_text,
        cursor,
        paused,
        last_fire,
        last_instance,
        fired,
        skipped,
        created,
        updated,
        skips,
    ) = row
    body = _loads(body_text)
    recent: list[tuple[datetime, str]] = []
    for item in skips or ():
        at, _, reason = item.partition("|")
        recent.append((from_us(at), reason))
    return ScheduleRecord(
        id=schedule_id,
        kind=body["kind"],
        trigger=trigger_from_json(body["trigger"]),
        args=body["args"],
        kwargs=body["kwargs"],
        policy=Policy.from_json(body["policy"]),
        overlap=Overlap(body["overlap"]),
        misfire=Misfire(body["misfire"]),
        misfire_cap=int(body["misfire_cap"]),
        misfire_grace=float(body["misfire_grace"]),
        jitter=float(body["jitter"]),
        paused=paused == "1",
        next_fire_at=_opt_us(cursor),
        last_fire_at=_opt_us(last_fire),
        last_instance=last_instance,
        fired_count=int(fired or 0),
        skipped_count=int(skipped or 0),
        recent_skips=recent,
        created_at=_opt_us(created),
        updated_at=_opt_us(updated),
    )


def skip_args(skipped: Sequence[tuple[datetime, str]]) -> list[str]:
    return [f"{to_us(at)}|{reason}" for at, reason in skipped]


# -- nodes ----------------------------------------------------------------------------------


def node_json(node: NodeRecord) -> str:
    started = node.started_at
    return _dumps(
        {
            "kinds": list(node.kinds),
            "workers": node.workers,
            "host": node.host,
            "pid": node.pid,
            "version": node.version,
            "started_at": None if started is None else to_us(started),
        }
    )


def node_from_value(node_id: str, value: str) -> NodeRecord:
    """A NodeRecord from its stored ``<last_seen>|<expires>|<json>``."""
    last_seen, expires, body_text = value.split("|", 2)
    body = _loads(body_text)
    started = body.get("started_at")
    return NodeRecord(
        node_id,
        kinds=list(body.get("kinds") or []),
        workers=int(body.get("workers", 0)),
        host=str(body.get("host", "")),
        pid=int(body.get("pid", 0)),
        version=str(body.get("version", "")),
        started_at=None if started is None else from_us(started),
        last_seen=from_us(last_seen),
        expires_at=from_us(expires),
    )
