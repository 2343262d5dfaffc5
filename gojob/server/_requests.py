"""gojob.v1 requests read into the Manager's arguments (validation only; no I/O).

Everything a request can get wrong that is not the Manager's to judge is refused here
with ``INVALID_ARGUMENT`` (through ``ValueError``/``ArgumentError``, mapped by
:mod:`gojob.server._status`): unknown enum numbers, negative limits, malformed JSON,
options that do not apply to the kind of schedule asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .._generated import gojob_pb2 as gpb
from ..codec import loads
from ..errors import ArgumentError, InvalidSchedule
from ..instance import LogLevel
from ..schedule import Misfire, Overlap
from ..state import State
from ._convert import LEVEL_FROM_PROTO, MISFIRE_FROM_PROTO, OVERLAP_FROM_PROTO, PROTO_TO_STATE

__all__ = ["Page", "ScheduleCall", "level", "opt_str", "page", "schedule_call", "states", "ts"]


def opt_str(msg: Any, name: str) -> str | None:
    """An optional string field: None when unset or empty."""
    value: str = getattr(msg, name)
    return value if value and msg.HasField(name) else None


def ts(msg: Any, name: str) -> datetime | None:
    """An optional Timestamp field as an aware UTC datetime."""
    if not msg.HasField(name):
        return None
    value: datetime = getattr(msg, name).ToDatetime(tzinfo=UTC)
    return value


def _seconds(msg: Any, name: str) -> float | None:
    if not msg.HasField(name):
        return None
    delta: timedelta = getattr(msg, name).ToTimedelta()
    return delta.total_seconds()


def states(numbers: Any) -> frozenset[State] | None:
    """Repeated JobState numbers as states (empty: None, i.e. every state)."""
    found = set()
    for number in numbers:
        state = PROTO_TO_STATE.get(int(number))
        if state is None:
            raise ValueError(f"unknown job state {int(number)}")
        found.add(state)
    return frozenset(found) or None


def level(number: int) -> LogLevel | None:
    if number == gpb.LOG_LEVEL_UNSPECIFIED:
        return None
    found = LEVEL_FROM_PROTO.get(int(number))
    if found is None:
        raise ValueError(f"unknown log level {int(number)}")
    return found


@dataclass(frozen=True, slots=True)
class Page:
    """A lookup's window: ``fetch`` rows are read (one more than returned, to tell
    whether another page follows)."""

    limit: int
    offset: int

    @property
    def fetch(self) -> int:
        return self.limit + 1


def page(limit: int, offset: int, cap: int) -> Page:
    """``limit`` 0 means the cap; more than the cap is cut to it."""
    if limit < 0 or offset < 0:
        raise ValueError("limit and offset must not be negative")
    return Page(min(limit or cap, cap), offset)


def _json_args(req: gpb.ScheduleRequest) -> tuple[list[Any], dict[str, Any]]:
    args: Any = []
    kwargs: Any = {}
    if req.args_json:
        args = loads(req.args_json)
        if not isinstance(args, list):
            raise ArgumentError(f"args_json must be a JSON array, not {type(args).__name__}")
    if req.kwargs_json:
        kwargs = loads(req.kwargs_json)
        if not isinstance(kwargs, dict):
            raise ArgumentError(f"kwargs_json must be a JSON object, not {type(kwargs).__name__}")
    return args, kwargs


def _enum(table: dict[int, Any], number: int, what: str) -> Any:
    if number == 0:
        return None
    found = table.get(int(number))
    if found is None:
        raise ValueError(f"unknown {what} {int(number)}")
    return found


@dataclass(slots=True)
class ScheduleCall:
    """What ``Manager.schedule`` is called with for one ScheduleRequest."""

    kind: str
    strings: list[str] | None
    """go-job's string arguments, to coerce by the executor's annotations."""
    args: list[Any]
    kwargs: dict[str, Any]
    cron: str | None = None
    tz: str = "UTC"
    every: timedelta | None = None
    after: float | None = None
    at: datetime | None = None
    policy: dict[str, Any] = field(default_factory=dict)
    """priority, timeout, max_retries, backoff (only those given)."""
    recurring: dict[str, Any] = field(default_factory=dict)
    """id, overlap, misfire, misfire_cap, misfire_grace, jitter, start (only those given)."""
    dedupe_key: str | None = None


def schedule_call(req: gpb.ScheduleRequest) -> ScheduleCall:
    """Read a ScheduleRequest; refuses mixed argument styles and misplaced options."""
    if not req.kind:
        raise ArgumentError("kind is required")
    strings = list(req.arguments)
    if strings and (req.args_json or req.kwargs_json):
        raise ArgumentError("give `arguments` (strings) or `args_json`/`kwargs_json`, not both")
    args, kwargs = _json_args(req)
    call = ScheduleCall(req.kind, strings if strings else None, args, kwargs)
    when = req.WhichOneof("when")
    if when == "cron":
        call.cron = req.cron
        call.tz = req.tz or "UTC"
    elif req.tz:
        raise InvalidSchedule("`tz` applies only to cron schedules")
    if when == "every":
        call.every = req.every.ToTimedelta()
    elif when == "after":
        call.after = req.after.ToTimedelta().total_seconds()
    elif when == "at":
        call.at = req.at.ToDatetime(tzinfo=UTC)
    for name in ("priority", "max_retries"):
        if req.HasField(name):
            call.policy[name] = getattr(req, name)
    for name in ("timeout", "backoff"):
        seconds = _seconds(req, name)
        if seconds is not None:
            call.policy[name] = seconds
    overlap: Overlap | None = _enum(OVERLAP_FROM_PROTO, req.overlap, "overlap")
    misfire: Misfire | None = _enum(MISFIRE_FROM_PROTO, req.misfire, "misfire")
    recurring: dict[str, Any] = {
        "id": req.schedule_id or None,
        "overlap": overlap,
        "misfire": misfire,
        "misfire_cap": req.misfire_cap if req.HasField("misfire_cap") else None,
        "misfire_grace": _seconds(req, "misfire_grace"),
        "jitter": _seconds(req, "jitter"),
        "start": ts(req, "start"),
    }
    call.recurring = {k: v for k, v in recurring.items() if v is not None}
    if call.recurring and when not in ("cron", "every"):
        raise InvalidSchedule(
            f"{', '.join(sorted(call.recurring))}: only for cron or every schedules"
        )
    if req.dedupe_key:
        if when in ("cron", "every"):
            raise InvalidSchedule("`dedupe_key` applies only to one-off instances")
        call.dedupe_key = req.dedupe_key
    if "misfire_cap" in call.recurring and call.recurring["misfire_cap"] < 1:
        raise InvalidSchedule("misfire_cap must be at least 1")
    for name in ("misfire_grace", "jitter"):
        if call.recurring.get(name, 0) < 0:
            raise InvalidSchedule(f"{name} must not be negative")
    return call
