"""Parsers of jobctl's option values (pure: no I/O), each raising ``ValueError`` with a
message fit for the user.

Durations are Go-style (``250ms``, ``10s``, ``5m``, ``1h30m``, ``2d``) or plain seconds
(``10``, ``2.5``); datetimes are ISO-8601 with an offset (``2025-06-01T07:00:00+02:00``,
``...Z``); states and log levels are gojob's names, case-insensitive.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from .._generated import gojob_pb2 as gpb
from .._generated import service_pb2 as pb

__all__ = [
    "LEVELS",
    "MISFIRES",
    "ORDERS",
    "OVERLAPS",
    "STATE_CHOICES",
    "STATE_NAMES",
    "json_array",
    "json_object",
    "parse_datetime",
    "parse_duration",
    "parse_level",
    "parse_retries",
    "parse_since",
    "parse_states",
]

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def parse_duration(text: str) -> timedelta:
    """``10s``, ``5m``, ``1h30m``, ``250ms``, ``1.5h``, ``2d`` or plain seconds; never
    negative."""
    value = text.strip().lower()
    if _NUMBER.fullmatch(value):
        return timedelta(seconds=float(value))
    pos = 0
    seconds = 0.0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos == 0 or pos != len(value):
        raise ValueError(
            f"invalid duration {text!r} (examples: 10s, 5m, 1h30m, 250ms, 2d, or seconds)"
        )
    return timedelta(seconds=seconds)


def parse_datetime(text: str) -> datetime:
    """An ISO-8601 datetime with an offset or ``Z``; a naive one is refused."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"invalid datetime {text!r} (ISO-8601, e.g. 2025-06-01T07:00:00+02:00)"
        ) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"datetime {text!r} has no time zone: add an offset (+02:00) or Z for UTC")
    return value


def parse_since(text: str, now: datetime) -> datetime:
    """A bound of a lookup: an ISO-8601 datetime, or a duration meaning that long ago."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_datetime(text)
    except ValueError:
        raise ValueError(
            f"invalid time {text!r} (ISO-8601 with an offset, or a duration ago like 10m)"
        ) from None


def parse_retries(text: str) -> int:
    """Re-tries after the first attempt: a count, or ``inf``/``-1`` for ever."""
    if text.strip().lower() in ("inf", "infinite", "forever", "-1"):
        return -1
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"invalid retry count {text!r} (a count, or 'inf')") from None
    if value < 0:
        raise ValueError(f"invalid retry count {text!r} (a count, or 'inf')")
    return value


_STATE_LIST: list[tuple[pb.JobState, str]] = [
    (pb.JOB_STATE_CREATED, "Created"),
    (pb.JOB_STATE_SCHEDULED, "Scheduled"),
    (pb.JOB_STATE_PROCESSING, "Processing"),
    (pb.JOB_STATE_COMPLETED, "Completed"),
    (pb.JOB_STATE_TERMINATED, "Terminated"),
    (pb.JOB_STATE_CANCELLED, "Canceled"),
    (pb.JOB_STATE_TIMED_OUT, "TimedOut"),
]
STATE_NAMES: dict[int, str] = {0: "Unset", **{int(n): name for n, name in _STATE_LIST}}
"""gojob's name of each go-job state number."""

_ACTIVE = [pb.JOB_STATE_CREATED, pb.JOB_STATE_SCHEDULED, pb.JOB_STATE_PROCESSING]
_FINAL = [
    pb.JOB_STATE_COMPLETED,
    pb.JOB_STATE_TERMINATED,
    pb.JOB_STATE_CANCELLED,
    pb.JOB_STATE_TIMED_OUT,
]
_STATES: dict[str, list[pb.JobState]] = {
    **{name.lower(): [number] for number, name in _STATE_LIST},
    "cancelled": [pb.JOB_STATE_CANCELLED],
    "timed_out": [pb.JOB_STATE_TIMED_OUT],
    "timed-out": [pb.JOB_STATE_TIMED_OUT],
    "active": _ACTIVE,
    "final": _FINAL,
}
STATE_CHOICES = [name for _, name in _STATE_LIST] + ["active", "final"]
"""What ``--state`` accepts (case-insensitive), for help and completion."""


def parse_states(names: list[str] | None) -> list[pb.JobState]:
    """State names (repeated or comma-separated) as go-job numbers, in order, once each."""
    found: list[pb.JobState] = []
    for item in names or []:
        for name in filter(None, (part.strip() for part in item.split(","))):
            numbers = _STATES.get(name.lower())
            if numbers is None:
                raise ValueError(f"unknown state {name!r} (choose from {', '.join(STATE_CHOICES)})")
            found.extend(n for n in numbers if n not in found)
    return found


LEVELS: dict[str, gpb.LogLevel] = {
    "debug": gpb.LOG_LEVEL_DEBUG,
    "info": gpb.LOG_LEVEL_INFO,
    "warn": gpb.LOG_LEVEL_WARN,
    "warning": gpb.LOG_LEVEL_WARN,
    "error": gpb.LOG_LEVEL_ERROR,
}


def parse_level(text: str) -> gpb.LogLevel:
    level = LEVELS.get(text.strip().lower())
    if level is None:
        raise ValueError(f"unknown log level {text!r} (choose from debug, info, warn, error)")
    return level


OVERLAPS: dict[str, gpb.Overlap] = {
    "allow": gpb.OVERLAP_ALLOW,
    "skip": gpb.OVERLAP_SKIP,
    "wait": gpb.OVERLAP_WAIT,
}
MISFIRES: dict[str, gpb.Misfire] = {
    "catch-up-once": gpb.MISFIRE_CATCH_UP_ONCE,
    "catch-up-all": gpb.MISFIRE_CATCH_UP_ALL,
    "skip": gpb.MISFIRE_SKIP,
}
ORDERS: dict[str, gpb.OrderBy] = {
    "created": gpb.ORDER_BY_CREATED_AT,
    "scheduled": gpb.ORDER_BY_SCHEDULED_AT,
    "updated": gpb.ORDER_BY_UPDATED_AT,
}


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        short = text if len(text) <= 40 else text[:37] + "..."
        raise ValueError(f"invalid JSON {short!r}: {exc}") from None


def _what(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    return "an array" if isinstance(value, list) else "null"


def json_array(text: str) -> str:
    """``--json-args``: JSON text that must be an array (returned as given)."""
    value = _json(text)
    if not isinstance(value, list):
        raise ValueError(f"must be a JSON array, not {_what(value)}")
    return text


def json_object(text: str) -> str:
    """``--kwargs``: JSON text that must be an object (returned as given)."""
    value = _json(text)
    if not isinstance(value, dict):
        raise ValueError(f"must be a JSON object, not {_what(value)}")
    return text
