"""Rows <-> objects: instances, history and log records, schedules.

Pure functions, no I/O. Times are integer epoch microseconds (exact both ways);
JSON values are compact JSON text.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ...instance import HistoryRecord, Instance, LogLevel, LogRecord
from ...policy import Backoff, Policy
from ...schedule import Misfire, Overlap, trigger_from_json
from ...state import State
from ..base import NodeRecord, ScheduleRecord

__all__ = [
    "INSTANCE_COLUMNS",
    "MUTABLE_COLUMNS",
    "dumps",
    "from_us",
    "history_params",
    "history_record",
    "instance_from_row",
    "instance_params",
    "log_params",
    "log_record",
    "mutable_params",
    "schedule_from_row",
    "schedule_params",
    "to_us",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_STATES = {s.value: s for s in State}
_LEVELS = {int(level): level for level in LogLevel}

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
dumps = _encoder.encode
"""Compact JSON text of a plain JSON value."""
_loads = json.loads


def to_us(value: datetime) -> int:
    """Epoch microseconds of an aware datetime (exact)."""
    return (value - _EPOCH) // _MICROSECOND


def from_us(value: int) -> datetime:
    """Aware UTC datetime of epoch microseconds (exact)."""
    return _EPOCH + timedelta(microseconds=value)


def _opt_us(value: datetime | None) -> int | None:
    return None if value is None else (value - _EPOCH) // _MICROSECOND


_DATETIMES: dict[int, datetime] = {}
"""Recent conversions of :func:`_opt_dt`: the rows of one batch share most of their times
(a claim sets the same ``now`` in three columns of every row), and a datetime is
immutable, so equal values may share one object."""
_DATETIMES_MAX = 512


def _opt_dt(value: int | None) -> datetime | None:
    if value is None:
        return None
    found = _DATETIMES.get(value)
    if found is None:
        if len(_DATETIMES) >= _DATETIMES_MAX:
            _DATETIMES.clear()
        found = _DATETIMES[value] = _EPOCH + timedelta(microseconds=value)
    return found


@functools.lru_cache(maxsize=512)
def _policy_from_text(text: str) -> Policy:
    # Policies are frozen and few: decode each distinct one once.
    data = _loads(text)
    if isinstance(data, list):
        # The positional form (see _policy_text).
        max_retries, (kind, base, factor, cap, jitter), custom, timeout, priority, rescues = data
        return Policy(
            max_retries=int(max_retries),
            backoff=Backoff(kind, float(base), float(factor), float(cap), float(jitter)),
            custom_backoff=bool(custom),
            timeout=None if timeout is None else float(timeout),
            priority=int(priority),
            max_rescues=int(rescues),
        )
    return Policy.from_json(data)  # the object form, written by earlier versions


@functools.lru_cache(maxsize=512)
def _policy_text(policy: Policy) -> str:
    """A policy as stored: every field, by position (a third of the object form's 170
    bytes, in a row of about 300 that every claim and completion writes again)::

        [max_retries, [backoff kind, base, factor, max, jitter], custom_backoff,
         timeout, priority, max_rescues]
    """
    b = policy.backoff
    return dumps(
        [
            policy.max_retries,
            [b.kind, b.base, b.factor, b.max, b.jitter],
            policy.custom_backoff,
            policy.timeout,
            policy.priority,
            policy.max_rescues,
        ]
    )


# -- instances -------------------------------------------------------------------------

INSTANCE_COLUMNS = (
    "seq",
    "uuid",
    "kind",
    "state",
    "policy",
    "args",
    "kwargs",
    "created_us",
    "scheduled_us",
    "updated_us",
    "attempts",
    "failures",
    "rescues",
    "dedupe_key",
    "schedule_id",
    "fire_us",
    "result",
    "error_message",
    "error_type",
    "traceback",
    "node_id",
    "worker",
    "claim_token",
    "lease_us",
    "cancel_requested",
    "processed_us",
    "completed_us",
    "terminated_us",
    "canceled_us",
    "timed_out_us",
)
"""The columns selected to build an :class:`Instance`, in the order
:func:`instance_from_row` reads them."""

MUTABLE_COLUMNS = (
    "state",
    "scheduled_us",
    "updated_us",
    "attempts",
    "failures",
    "rescues",
    "result",
    "error_message",
    "error_type",
    "traceback",
    "node_id",
    "worker",
    "claim_token",
    "lease_us",
    "cancel_requested",
    "processed_us",
    "completed_us",
    "terminated_us",
    "canceled_us",
    "timed_out_us",
    "finished_us",
)
"""The columns a transition may change (written back by :func:`mutable_params`)."""


def instance_from_row(row: Sequence[Any]) -> Instance:
    """Build an instance from a row of :data:`INSTANCE_COLUMNS` (a fresh object)."""
    (
        _seq,
        uuid,
        kind,
        state,
        policy,
        args,
        kwargs,
        created_us,
        scheduled_us,
        updated_us,
        attempts,
        failures,
        rescues,
        dedupe_key,
        schedule_id,
        fire_us,
        result,
        error_message,
        error_type,
        traceback,
        node_id,
        worker,
        claim_token,
        lease_us,
        cancel_requested,
        processed_us,
        completed_us,
        terminated_us,
        canceled_us,
        timed_out_us,
    ) = row
    inst = object.__new__(Instance)
    # Filled directly (a dataclass __init__ with 30 fields costs more, per row).
    inst.__dict__.update(
        uuid=uuid,
        kind=kind,
        args=_loads(args) if args != "[]" else [],
        kwargs=_loads(kwargs) if kwargs != "{}" else {},
        state=_STATES[state],
        policy=_policy_from_text(policy),
        created_at=_opt_dt(created_us),
        scheduled_at=_opt_dt(scheduled_us),
        attempts=attempts,
        failures=failures,
        rescues=rescues,
        dedupe_key=dedupe_key,
        schedule_id=schedule_id,
        fire_time=_opt_dt(fire_us),
        result=None if result is None else _loads(result),
        error_message=error_message,
        error_type=error_type,
        traceback=traceback,
        node_id=node_id,
        worker=worker,
        claim_token=claim_token,
        lease_expires_at=_opt_dt(lease_us),
        cancel_requested=bool(cancel_requested),
        processed_at=_opt_dt(processed_us),
        completed_at=_opt_dt(completed_us),
        terminated_at=_opt_dt(terminated_us),
        canceled_at=_opt_dt(canceled_us),
        timed_out_at=_opt_dt(timed_out_us),
        updated_at=_opt_dt(updated_us),
        _sink=None,
    )
    return inst


def instance_params(inst: Instance, args: str, kwargs: str) -> dict[str, Any]:
    """Insert parameters of a new instance (``args``/``kwargs`` already JSON text)."""
    params = mutable_params(inst)
    params.update(
        uuid=inst.uuid,
        kind=inst.kind,
        priority=inst.policy.priority,
        policy=_policy_text(inst.policy),
        args=args,
        kwargs=kwargs,
        created_us=_opt_us(inst.created_at),
        dedupe_key=inst.dedupe_key,
        schedule_id=inst.schedule_id,
        fire_us=_opt_us(inst.fire_time),
    )
    return params


def mutable_params(inst: Instance) -> dict[str, Any]:
    """Values of :data:`MUTABLE_COLUMNS` for ``inst``."""
    result = inst.result
    return {
        "state": inst.state.value,
        "scheduled_us": _opt_us(inst.scheduled_at),
        "updated_us": _opt_us(inst.updated_at),
        "attempts": inst.attempts,
        "failures": inst.failures,
        "rescues": inst.rescues,
        "result": None if result is None else dumps(result),
        "error_message": inst.error_message,
        "error_type": inst.error_type,
        "traceback": inst.traceback,
        "node_id": inst.node_id,
        "worker": inst.worker,
        "claim_token": inst.claim_token,
        "lease_us": _opt_us(inst.lease_expires_at),
        "cancel_requested": inst.cancel_requested,
        "processed_us": _opt_us(inst.processed_at),
        "completed_us": _opt_us(inst.completed_at),
        "terminated_us": _opt_us(inst.terminated_at),
        "canceled_us": _opt_us(inst.canceled_at),
        "timed_out_us": _opt_us(inst.timed_out_at),
        # When it reached its final state (None while not final): what prune judges.
        "finished_us": _opt_us(inst.finished_at),
    }


# -- history and logs ----------------------------------------------------------------------


def history_params(
    inst: Instance,
    state: State,
    now_us: int,
    info: dict[str, Any] | None,
    preceded_by: State | None = None,
) -> dict[str, Any]:
    """Insert parameters of one history record of ``inst`` (at its current attempt), or
    of two: a record of ``preceded_by`` without details, then this one (one row)."""
    return {
        "uuid": inst.uuid,
        "kind": inst.kind,
        "state": state.value,
        "ts_us": now_us,
        "attempt": inst.attempts,
        "details": dumps(info) if info else "{}",
        "preceded_by": None if preceded_by is None else preceded_by.value,
    }


def history_record(row: Sequence[Any]) -> HistoryRecord:
    """A record from a row of ``(seq, uuid, kind, state, ts_us, attempt, details)``."""
    seq, uuid, kind, state, ts_us, attempt, details = row
    return HistoryRecord(uuid, kind, _STATES[state], from_us(ts_us), attempt, _loads(details), seq)


def log_params(rec: LogRecord) -> dict[str, Any]:
    return {
        "uuid": rec.uuid,
        "kind": rec.kind,
        "ts_us": to_us(rec.timestamp),
        "level": int(rec.level),
        "message": rec.message,
        "attempt": rec.attempt,
        "logger": rec.logger,
    }


def log_record(row: Sequence[Any]) -> LogRecord:
    """A record from a row of ``(seq, uuid, kind, ts_us, level, message, attempt, logger)``."""
    seq, uuid, kind, ts_us, level, message, attempt, logger = row
    level_enum = _LEVELS.get(level)
    return LogRecord(
        uuid,
        kind,
        from_us(ts_us),
        level_enum if level_enum is not None else LogLevel.from_logging(level),
        message,
        attempt,
        logger,
        seq,
    )


# -- schedules -------------------------------------------------------------------------------

SCHEDULE_COLUMNS = (
    "id",
    "kind",
    "trigger",
    "args",
    "kwargs",
    "policy",
    "overlap",
    "misfire",
    "misfire_cap",
    "misfire_grace",
    "jitter",
    "paused",
    "next_fire_us",
    "last_fire_us",
    "last_instance",
    "fired_count",
    "skipped_count",
    "recent_skips",
    "created_us",
    "updated_us",
)


def node_params(node: NodeRecord) -> dict[str, Any]:
    """Row values of a node (its times must be set)."""
    assert node.last_seen is not None
    assert node.expires_at is not None
    return {
        "node_id": node.node_id,
        "kinds": dumps(node.kinds),
        "workers": node.workers,
        "host": node.host,
        "pid": node.pid,
        "version": node.version,
        "started_us": _opt_us(node.started_at),
        "last_seen_us": to_us(node.last_seen),
        "expires_us": to_us(node.expires_at),
    }


def node_from_row(row: Sequence[Any]) -> NodeRecord:
    """A node from a row of :data:`NODE_COLUMNS`."""
    node_id, kinds, workers, host, pid, version, started_us, last_seen_us, expires_us = row
    return NodeRecord(
        node_id,
        kinds=_loads(kinds),
        workers=workers,
        host=host,
        pid=pid,
        version=version,
        started_at=None if started_us is None else from_us(started_us),
        last_seen=from_us(last_seen_us),
        expires_at=from_us(expires_us),
    )


NODE_COLUMNS = (
    "node_id",
    "kinds",
    "workers",
    "host",
    "pid",
    "version",
    "started_us",
    "last_seen_us",
    "expires_us",
)
"""The columns of the nodes table, in :func:`node_from_row`'s order."""


def schedule_params(record: ScheduleRecord) -> dict[str, Any]:
    """Row values of a schedule (every column of :data:`SCHEDULE_COLUMNS`)."""
    return {
        "id": record.id,
        "kind": record.kind,
        "trigger": dumps(record.trigger.to_json()),
        "args": dumps(record.args),
        "kwargs": dumps(record.kwargs),
        "policy": _policy_text(record.policy),
        "overlap": record.overlap.value,
        "misfire": record.misfire.value,
        "misfire_cap": record.misfire_cap,
        "misfire_grace": float(record.misfire_grace),
        "jitter": float(record.jitter),
        "paused": record.paused,
        "next_fire_us": _opt_us(record.next_fire_at),
        "last_fire_us": _opt_us(record.last_fire_at),
        "last_instance": record.last_instance,
        "fired_count": record.fired_count,
        "skipped_count": record.skipped_count,
        "recent_skips": dumps([[when.isoformat(), why] for when, why in record.recent_skips]),
        "created_us": _opt_us(record.created_at),
        "updated_us": _opt_us(record.updated_at),
    }


def schedule_from_row(row: Sequence[Any]) -> ScheduleRecord:
    """A schedule from a row of :data:`SCHEDULE_COLUMNS`."""
    (
        schedule_id,
        kind,
        trigger,
        args,
        kwargs,
        policy,
        overlap,
        misfire,
        misfire_cap,
        misfire_grace,
        jitter,
        paused,
        next_fire_us,
        last_fire_us,
        last_instance,
        fired_count,
        skipped_count,
        recent_skips,
        created_us,
        updated_us,
    ) = row
    return ScheduleRecord(
        id=schedule_id,
        kind=kind,
        trigger=trigger_from_json(_loads(trigger)),
        args=_loads(args),
        kwargs=_loads(kwargs),
        policy=_policy_from_text(policy),
        overlap=Overlap(overlap),
        misfire=Misfire(misfire),
        misfire_cap=misfire_cap,
        misfire_grace=misfire_grace,
        jitter=jitter,
        paused=bool(paused),
        next_fire_at=_opt_dt(next_fire_us),
        last_fire_at=_opt_dt(last_fire_us),
        last_instance=last_instance,
        fired_count=fired_count,
        skipped_count=skipped_count,
        recent_skips=[(datetime.fromisoformat(when), why) for when, why in _loads(recent_skips)],
        created_at=_opt_dt(created_us),
        updated_at=_opt_dt(updated_us),
    )
