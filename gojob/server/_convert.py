"""gojob's records as protobuf messages (one function per message; nothing else here).

go-job's ``job.v1`` messages (``JobInstance``, ``Job``) and gojob's ``gojob.v1`` ones
(``Instance``, ``JobInfo``, ``HistoryRecord``, ``LogEntry``, ``RecurringSchedule``,
``Node``); the state and log-level numbers both ways.
"""

from __future__ import annotations

import functools
import inspect
import json
import typing
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from .._generated import gojob_pb2 as gpb
from .._generated import service_pb2 as pb
from ..codec import dumps
from ..instance import HistoryRecord, Instance, LogLevel, LogRecord
from ..job import Job
from ..schedule import Cron, Every, Misfire, Overlap
from ..state import State
from ..store.base import NodeRecord, ScheduleRecord

__all__ = [
    "LEVEL_FROM_PROTO",
    "MISFIRE_FROM_PROTO",
    "OVERLAP_FROM_PROTO",
    "PROTO_TO_STATE",
    "STATE_TO_PROTO",
    "history_to_proto",
    "instance_to_gojob",
    "instance_to_proto",
    "job_info",
    "log_to_proto",
    "node_to_proto",
    "schedule_to_proto",
    "set_duration",
    "set_ts",
]

STATE_TO_PROTO: dict[State, pb.JobState] = {
    State.CREATED: pb.JOB_STATE_CREATED,
    State.SCHEDULED: pb.JOB_STATE_SCHEDULED,
    State.PROCESSING: pb.JOB_STATE_PROCESSING,
    State.CANCELED: pb.JOB_STATE_CANCELLED,
    State.TIMEDOUT: pb.JOB_STATE_TIMED_OUT,
    State.COMPLETED: pb.JOB_STATE_COMPLETED,
    State.TERMINATED: pb.JOB_STATE_TERMINATED,
}
PROTO_TO_STATE: dict[int, State] = {int(n): state for state, n in STATE_TO_PROTO.items()}

LEVEL_TO_PROTO: dict[LogLevel, gpb.LogLevel] = {
    LogLevel.DEBUG: gpb.LOG_LEVEL_DEBUG,
    LogLevel.INFO: gpb.LOG_LEVEL_INFO,
    LogLevel.WARN: gpb.LOG_LEVEL_WARN,
    LogLevel.ERROR: gpb.LOG_LEVEL_ERROR,
}
LEVEL_FROM_PROTO: dict[int, LogLevel] = {int(n): level for level, n in LEVEL_TO_PROTO.items()}

OVERLAP_TO_PROTO: dict[Overlap, gpb.Overlap] = {
    Overlap.ALLOW: gpb.OVERLAP_ALLOW,
    Overlap.SKIP: gpb.OVERLAP_SKIP,
    Overlap.WAIT: gpb.OVERLAP_WAIT,
}
OVERLAP_FROM_PROTO: dict[int, Overlap] = {int(n): o for o, n in OVERLAP_TO_PROTO.items()}

MISFIRE_TO_PROTO: dict[Misfire, gpb.Misfire] = {
    Misfire.CATCH_UP_ONCE: gpb.MISFIRE_CATCH_UP_ONCE,
    Misfire.CATCH_UP_ALL: gpb.MISFIRE_CATCH_UP_ALL,
    Misfire.SKIP: gpb.MISFIRE_SKIP,
}
MISFIRE_FROM_PROTO: dict[int, Misfire] = {int(n): m for m, n in MISFIRE_TO_PROTO.items()}


def set_ts(target: Any, when: datetime | None) -> None:
    """Fill a Timestamp field (left unset for None)."""
    if when is not None:
        target.FromDatetime(when)


def set_duration(target: Any, seconds: float | timedelta | None) -> None:
    """Fill a Duration field (left unset for None)."""
    if seconds is not None:
        delta = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        target.FromTimedelta(delta)


def _text(value: Any) -> str:
    """One go-job wire string per value: a string as is, anything else as compact JSON."""
    return value if isinstance(value, str) else dumps(value)


def _json(value: Any) -> str:
    """JSON text of a stored value (history details may hold non-JSON leftovers)."""
    try:
        return dumps(value)
    except Exception:
        return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


# -- go-job's job.v1 ------------------------------------------------------------------


@functools.cache
def _returns_tuple(func: Callable[..., Any]) -> bool:
    """True when the executor is annotated to return a tuple (several values)."""
    target = func if inspect.isroutine(func) else type(func).__call__
    try:
        hints = typing.get_type_hints(target)
    except Exception:
        return False
    ret = hints.get("return")
    return ret is tuple or typing.get_origin(ret) is tuple


def _results(inst: Instance, job: Job | None) -> list[str]:
    if inst.state is not State.COMPLETED or inst.result is None:
        return []
    value = inst.result
    if isinstance(value, list) and job is not None and _returns_tuple(job.executor):
        return [_text(item) for item in value]
    return [_text(value)]


def instance_to_proto(inst: Instance, job: Job | None = None) -> pb.JobInstance:
    """Every field of go-job's JobInstance, from a gojob Instance (``job`` tells whether
    a returned list is several values)."""
    msg = pb.JobInstance(
        kind=inst.kind,
        uuid=inst.uuid,
        state=STATE_TO_PROTO[inst.state],
        arguments=[_text(arg) for arg in inst.args],
        results=_results(inst, job),
        attempts=inst.attempts,
    )
    if inst.error_message is not None:
        msg.error = inst.error_message
    set_ts(msg.created_at, inst.created_at)
    set_ts(msg.scheduled_at, inst.scheduled_at)
    set_ts(msg.processed_at, inst.processed_at)
    set_ts(msg.completed_at, inst.completed_at)
    set_ts(msg.terminated_at, inst.terminated_at)
    set_ts(msg.canceled_at, inst.canceled_at)
    set_ts(msg.timed_out_at, inst.timed_out_at)
    return msg


def job_to_proto(job: Job, registered_at: datetime, now: datetime) -> pb.Job:
    """go-job's Job: the kind, and its default schedule (cron spec, next fire)."""
    msg = pb.Job(kind=job.kind, description=job.description)
    msg.registered_at.FromDatetime(registered_at)
    if job.schedule is not None:
        if isinstance(job.schedule, Cron):
            msg.cron_spec = job.schedule.spec
        msg.schedule_at.FromDatetime(job.schedule.next_fire(now))
    return msg


# -- gojob's gojob.v1 -------------------------------------------------------------------


def instance_to_gojob(inst: Instance) -> gpb.Instance:
    """Everything known about an instance."""
    policy = inst.policy
    msg = gpb.Instance(
        kind=inst.kind,
        uuid=inst.uuid,
        state=STATE_TO_PROTO[inst.state],
        args_json=_json(inst.args),
        kwargs_json=_json(inst.kwargs),
        priority=policy.priority,
        max_retries=policy.max_retries,
        attempts=inst.attempts,
        failures=inst.failures,
        rescues=inst.rescues,
        cancel_requested=inst.cancel_requested,
    )
    if inst.state is State.COMPLETED:
        msg.result_json = _json(inst.result)
    for name, value in (
        ("error", inst.error_message),
        ("error_type", inst.error_type),
        ("traceback", inst.traceback),
        ("schedule_id", inst.schedule_id),
        ("dedupe_key", inst.dedupe_key),
        ("node_id", inst.node_id),
        ("worker", inst.worker),
    ):
        if value is not None:
            setattr(msg, name, value)
    set_duration(msg.timeout, policy.timeout)
    set_ts(msg.fire_time, inst.fire_time)
    set_ts(msg.created_at, inst.created_at)
    set_ts(msg.scheduled_at, inst.scheduled_at)
    set_ts(msg.processed_at, inst.processed_at)
    set_ts(msg.completed_at, inst.completed_at)
    set_ts(msg.terminated_at, inst.terminated_at)
    set_ts(msg.canceled_at, inst.canceled_at)
    set_ts(msg.timed_out_at, inst.timed_out_at)
    set_ts(msg.updated_at, inst.updated_at)
    set_ts(msg.lease_expires_at, inst.lease_expires_at)
    return msg


def _signature(job: Job) -> str:
    """The executor's parameters as written, without the injected Instance."""
    try:
        sig = inspect.signature(job.executor, eval_str=True)
    except Exception:  # an annotation that does not evaluate: show it as written
        try:
            sig = inspect.signature(job.executor)
        except (TypeError, ValueError):
            return ""
    params = [p for name, p in sig.parameters.items() if name != job.plan.instance_param]
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))[1:-1]


def job_info(job: Job) -> gpb.JobInfo:
    """A registered job with its defaults."""
    policy = job.policy
    msg = gpb.JobInfo(
        kind=job.kind,
        description=job.description,
        priority=policy.priority,
        max_retries=policy.max_retries,
        signature=_signature(job),
        is_async=job.is_async,
    )
    set_duration(msg.timeout, policy.timeout)
    if job.schedule is not None:
        msg.schedule = job.schedule.describe()
    return msg


def history_to_proto(rec: HistoryRecord) -> gpb.HistoryRecord:
    msg = gpb.HistoryRecord(
        uuid=rec.uuid,
        kind=rec.kind,
        state=STATE_TO_PROTO[rec.state],
        attempt=rec.attempt,
        details_json=_json(rec.details),
        seq=rec.seq,
    )
    msg.timestamp.FromDatetime(rec.timestamp)
    return msg


def log_to_proto(rec: LogRecord) -> gpb.LogEntry:
    msg = gpb.LogEntry(
        uuid=rec.uuid,
        kind=rec.kind,
        level=LEVEL_TO_PROTO[rec.level],
        message=rec.message,
        attempt=rec.attempt,
        logger=rec.logger,
        seq=rec.seq,
    )
    msg.timestamp.FromDatetime(rec.timestamp)
    return msg


def schedule_to_proto(rec: ScheduleRecord) -> gpb.RecurringSchedule:
    policy = rec.policy
    msg = gpb.RecurringSchedule(
        id=rec.id,
        kind=rec.kind,
        description=rec.trigger.describe(),
        args_json=_json(rec.args),
        kwargs_json=_json(rec.kwargs),
        priority=policy.priority,
        max_retries=policy.max_retries,
        overlap=OVERLAP_TO_PROTO[rec.overlap],
        misfire=MISFIRE_TO_PROTO[rec.misfire],
        misfire_cap=rec.misfire_cap,
        paused=rec.paused,
        fired_count=rec.fired_count,
        skipped_count=rec.skipped_count,
    )
    trigger = rec.trigger
    if isinstance(trigger, Cron):
        msg.cron = trigger.spec
        msg.tz = trigger.tz
    elif isinstance(trigger, Every):
        msg.every.FromTimedelta(trigger.interval)
        set_ts(msg.anchor, trigger.anchor)
    set_duration(msg.timeout, policy.timeout)
    set_duration(msg.misfire_grace, rec.misfire_grace)
    set_duration(msg.jitter, rec.jitter)
    set_ts(msg.next_fire_at, rec.next_fire_at)
    set_ts(msg.last_fire_at, rec.last_fire_at)
    if rec.last_instance is not None:
        msg.last_instance = rec.last_instance
    for slot, reason in rec.recent_skips:
        skip = msg.recent_skips.add(reason=reason)
        skip.slot.FromDatetime(slot)
    set_ts(msg.created_at, rec.created_at)
    set_ts(msg.updated_at, rec.updated_at)
    return msg


def node_to_proto(node: NodeRecord) -> gpb.Node:
    msg = gpb.Node(
        node_id=node.node_id,
        kinds=node.kinds,
        workers=node.workers,
        host=node.host,
        pid=node.pid,
        version=node.version,
    )
    set_ts(msg.started_at, node.started_at)
    set_ts(msg.last_seen, node.last_seen)
    set_ts(msg.expires_at, node.expires_at)
    return msg
