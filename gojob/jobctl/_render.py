"""Text renderings of gojob.v1 messages: tables of many, fields of one, lines of streams.

Pure functions of the messages and a :class:`~gojob.jobctl._output.Printer` (for times);
the commands decide what to print and where.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .._generated import gojob_pb2 as gpb
from ._output import Printer, fmt_duration, message_data, table, truncate
from ._values import STATE_NAMES

__all__ = [
    "call_text",
    "event_line",
    "history_table",
    "instance_fields",
    "instances_table",
    "jobs_table",
    "log_line",
    "nodes_table",
    "schedule_fields",
    "schedules_table",
    "state",
    "unserved_table",
]

_LEVELS = {1: "DEBUG", 2: "INFO", 3: "WARN", 4: "ERROR"}
_EVENTS = {1: "STARTED", 2: "STATE", 3: "RESYNC"}


def _loads(text: str, default: Any) -> Any:
    return json.loads(text) if text else default


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def call_text(args_json: str, kwargs_json: str) -> str:
    """Arguments as a call's: ``1, 2, scale=3`` (strings quoted, as JSON)."""
    args = _loads(args_json, [])
    kwargs = _loads(kwargs_json, {})
    parts = [json.dumps(a, ensure_ascii=False) for a in args]
    parts += [f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in kwargs.items()]
    return ", ".join(parts)


def state(number: int) -> str:
    return STATE_NAMES.get(number, str(number))


def _outcome(inst: gpb.Instance) -> str:
    if inst.HasField("result_json"):
        return "-> " + _compact(_loads(inst.result_json, None))
    if inst.HasField("error"):  # its message names the exception type already
        return inst.error
    if inst.cancel_requested:
        return "cancel requested"
    return ""


def instances_table(p: Printer, instances: Sequence[gpb.Instance]) -> str:
    rows = [
        [
            i.uuid,
            i.kind,
            state(i.state),
            str(i.attempts),
            p.opt_time(i, "scheduled_at"),
            truncate(call_text(i.args_json, i.kwargs_json), 32),
            truncate(_outcome(i), 60),
        ]
        for i in instances
    ]
    headers = ["UUID", "KIND", "STATE", "TRIES", "SCHEDULED", "ARGS", "OUTCOME"]
    return table(headers, rows)


def _fields(pairs: Sequence[tuple[str, str]]) -> str:
    width = max(len(name) for name, _ in pairs) + 1
    return "\n".join(f"{(name + ':').ljust(width)}  {value}".rstrip() for name, value in pairs)


def _opt(msg: Any, name: str) -> str:
    return str(getattr(msg, name)) if msg.HasField(name) else "-"


def _opt_duration(msg: Any, name: str) -> str:
    return fmt_duration(getattr(msg, name)) if msg.HasField(name) else "-"


def _retries(count: int) -> str:
    return "for ever" if count < 0 else str(count)


def instance_fields(p: Printer, i: gpb.Instance) -> str:
    """Every field of an instance, one per line (the traceback last, indented)."""
    data = message_data(i)
    pairs = [
        ("uuid", i.uuid),
        ("kind", i.kind),
        ("state", state(i.state)),
        ("args", json.dumps(data["args"], ensure_ascii=False)),
        ("kwargs", json.dumps(data["kwargs"], ensure_ascii=False)),
        (
            "result",
            json.dumps(data["result"], ensure_ascii=False) if i.HasField("result_json") else "-",
        ),
        ("error", _opt(i, "error")),
        ("error type", _opt(i, "error_type")),
        ("priority", str(i.priority)),
        ("max retries", _retries(i.max_retries)),
        ("timeout", _opt_duration(i, "timeout")),
        ("attempts", str(i.attempts)),
        ("failures", str(i.failures)),
        ("rescues", str(i.rescues)),
        ("schedule id", _opt(i, "schedule_id")),
        ("dedupe key", _opt(i, "dedupe_key")),
        ("fire time", p.opt_time(i, "fire_time", precise=True)),
        ("node", _opt(i, "node_id")),
        ("worker", _opt(i, "worker")),
        ("cancel requested", "yes" if i.cancel_requested else "no"),
    ]
    for name in (
        "created",
        "scheduled",
        "processed",
        "completed",
        "terminated",
        "canceled",
        "timed_out",
        "updated",
        "lease_expires",
    ):
        pairs.append((name.replace("_", " "), p.opt_time(i, f"{name}_at", precise=True)))
    text = _fields(pairs)
    if i.HasField("traceback"):
        body = "\n".join("  " + line for line in i.traceback.rstrip().splitlines())
        text += "\ntraceback:\n" + body
    return text


def _details(details_json: str) -> str:
    details = _loads(details_json, {})
    if not isinstance(details, dict):
        return _compact(details)
    return " ".join(f"{k}={_compact(v)}" for k, v in details.items() if k != "traceback")


def history_table(p: Printer, records: Sequence[gpb.HistoryRecord], *, one: bool) -> str:
    """``one``: the records of a single instance (its uuid and kind are not repeated)."""
    headers = ["TIME", "STATE", "ATTEMPT", "DETAILS"]
    if not one:
        headers[1:1] = ["UUID", "KIND"]
    rows = []
    for r in records:
        row = [
            p.time(r.timestamp),
            state(r.state),
            str(r.attempt),
            truncate(_details(r.details_json), 80),
        ]
        if not one:
            row[1:1] = [r.uuid, r.kind]
        rows.append(row)
    return table(headers, rows)


def log_line(p: Printer, entry: gpb.LogEntry, *, one: bool) -> str:
    """``2025-06-01 07:00:00  INFO   #1  message`` (prefixed by kind and uuid unless
    ``one``; a ``logging`` logger's name before the message)."""
    level = _LEVELS.get(entry.level, str(entry.level))
    who = "" if one else f"{entry.kind} {entry.uuid}  "
    source = f"{entry.logger}: " if entry.logger else ""
    return f"{p.time(entry.timestamp)}  {who}{level:<5}  #{entry.attempt}  {source}{entry.message}"


def event_line(p: Printer, event: gpb.InstanceEvent) -> str:
    kind = _EVENTS.get(event.type, str(event.type))
    when = p.time(event.observed_at)
    if event.type == gpb.EVENT_TYPE_STARTED:
        return f"{when}  {kind:<7}  watching (Ctrl-C to stop)"
    if event.type == gpb.EVENT_TYPE_RESYNC:
        return f"{when}  {kind:<7}  events may have been lost: query to catch up"
    node = f"  on {event.node_id}" if event.node_id else ""
    return f"{when}  {kind:<7}  {event.uuid}  {event.kind}  {state(event.state)}{node}"


def schedules_table(p: Printer, schedules: Sequence[gpb.RecurringSchedule]) -> str:
    rows = [
        [
            s.id,
            s.kind,
            "paused" if s.paused else "active",
            truncate(s.description, 40),
            p.opt_time(s, "next_fire_at"),
            p.opt_time(s, "last_fire_at"),
            str(s.fired_count),
            str(s.skipped_count),
        ]
        for s in schedules
    ]
    headers = ["ID", "KIND", "STATUS", "TRIGGER", "NEXT", "LAST", "FIRED", "SKIPPED"]
    return table(headers, rows)


def schedule_fields(p: Printer, s: gpb.RecurringSchedule) -> str:
    data = message_data(s)
    pairs = [
        ("id", s.id),
        ("kind", s.kind),
        ("status", "paused" if s.paused else "active"),
        ("trigger", s.description),
        ("cron", _opt(s, "cron")),
        ("tz", _opt(s, "tz")),
        ("every", _opt_duration(s, "every")),
        ("anchor", p.opt_time(s, "anchor", precise=True)),
        ("args", json.dumps(data["args"], ensure_ascii=False)),
        ("kwargs", json.dumps(data["kwargs"], ensure_ascii=False)),
        ("priority", str(s.priority)),
        ("max retries", _retries(s.max_retries)),
        ("timeout", _opt_duration(s, "timeout")),
        ("overlap", data["overlap"]),
        ("misfire", data["misfire"]),
        ("misfire cap", str(s.misfire_cap)),
        ("misfire grace", fmt_duration(s.misfire_grace)),
        ("jitter", fmt_duration(s.jitter)),
        ("next fire", p.opt_time(s, "next_fire_at", precise=True)),
        ("last fire", p.opt_time(s, "last_fire_at", precise=True)),
        ("last instance", _opt(s, "last_instance")),
        ("fired", str(s.fired_count)),
        ("skipped", str(s.skipped_count)),
        ("created", p.opt_time(s, "created_at", precise=True)),
        ("updated", p.opt_time(s, "updated_at", precise=True)),
    ]
    for skip in s.recent_skips:
        pairs.append(("skipped slot", f"{p.time(skip.slot, precise=True)} ({skip.reason})"))
    return _fields(pairs)


def nodes_table(p: Printer, nodes: Sequence[gpb.Node]) -> str:
    rows = [
        [
            n.node_id,
            n.host,
            str(n.pid),
            str(n.workers),
            n.version,
            p.opt_time(n, "started_at"),
            p.opt_time(n, "last_seen"),
            truncate(",".join(n.kinds), 60),
        ]
        for n in nodes
    ]
    headers = ["NODE", "HOST", "PID", "WORKERS", "VERSION", "STARTED", "LAST SEEN", "KINDS"]
    return table(headers, rows)


def jobs_table(jobs: Sequence[gpb.JobInfo]) -> str:
    rows = [
        [
            j.kind,
            truncate(f"({j.signature})", 40),
            str(j.priority),
            _retries(j.max_retries),
            _opt_duration(j, "timeout"),
            truncate(j.schedule, 36) if j.HasField("schedule") else "-",
            truncate(j.description, 60),
        ]
        for j in jobs
    ]
    headers = ["KIND", "SIGNATURE", "PRIORITY", "RETRIES", "TIMEOUT", "SCHEDULE", "DESCRIPTION"]
    return table(headers, rows)


def unserved_table(unserved: Mapping[str, int]) -> str:
    """Kinds with queued instances that no live node registers (they wait for one)."""
    rows = [[kind, str(count)] for kind, count in sorted(unserved.items())]
    return table(["UNSERVED KIND", "QUEUED"], rows)
