"""Output of jobctl: plain-text tables and fields for people, JSON for programs.

JSON is the reply messages, field names as in the ``.proto``, with a few readability
rules: states are gojob's names (``Completed``), log levels and event types their short
names (``INFO``, ``STATE``), overlap/misfire the CLI's choices (``skip``,
``catch-up-once``); timestamps ISO-8601 in UTC, durations seconds (a number); a
``*_json`` field is decoded and keyed without the suffix (``args``, ``result``,
``details``); an optional field that is not set is ``null``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from google.protobuf.message import Message

from ._values import MISFIRES, OVERLAPS, STATE_NAMES

__all__ = [
    "Printer",
    "fmt_duration",
    "fmt_seconds",
    "fmt_time",
    "message_data",
    "table",
    "truncate",
]

_ENUM_NAMES: dict[str, dict[int, str]] = {
    "job.v1.JobState": dict(STATE_NAMES),
    "gojob.v1.LogLevel": {0: "", 1: "DEBUG", 2: "INFO", 3: "WARN", 4: "ERROR"},
    "gojob.v1.EventType": {0: "", 1: "STARTED", 2: "STATE", 3: "RESYNC"},
    "gojob.v1.Overlap": {0: "allow", **{int(n): name for name, n in OVERLAPS.items()}},
    "gojob.v1.Misfire": {0: "catch-up-once", **{int(n): name for name, n in MISFIRES.items()}},
}


def _scalar(field: Any, value: Any) -> Any:
    if field.message_type is not None:
        name = field.message_type.full_name
        if name == "google.protobuf.Timestamp":
            return value.ToJsonString()
        if name == "google.protobuf.Duration":
            return value.ToTimedelta().total_seconds()
        return message_data(value)
    if field.enum_type is not None:
        names = _ENUM_NAMES.get(field.enum_type.full_name, {})
        return names.get(int(value), int(value))
    return value


def message_data(msg: Message) -> dict[str, Any]:
    """A message as JSON-ready data (see the module's rules)."""
    out: dict[str, Any] = {}
    for field in msg.DESCRIPTOR.fields:
        name = field.name
        value = getattr(msg, name)
        data: Any
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value_field = field.message_type.fields_by_name["value"]
            data = {key: _scalar(value_field, item) for key, item in sorted(value.items())}
        elif field.is_repeated:
            data = [_scalar(field, item) for item in value]
        elif field.has_presence and not msg.HasField(name):
            data = None
        else:
            data = _scalar(field, value)
        if name.endswith("_json"):
            name = name.removesuffix("_json")
            data = json.loads(data) if data else None
        out[name] = data
    return out


# -- text -----------------------------------------------------------------------------


def fmt_seconds(seconds: float) -> str:
    """``250ms``, ``5s``, ``1.5s``, ``1m30s``, ``2h``, ``1d2h``."""
    if seconds < 0:
        return "-" + fmt_seconds(-seconds)
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    whole = int(seconds)
    if whole != seconds and seconds < 60:
        return f"{seconds:.3g}s"
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


def fmt_duration(msg: Any) -> str:
    """A Duration field's value as text."""
    seconds: float = msg.ToTimedelta().total_seconds()
    return fmt_seconds(seconds)


def fmt_time(msg: Any, *, utc: bool, precise: bool = False) -> str:
    """A Timestamp as local (or UTC) time: ``2025-06-01 07:00:00``; ``precise`` gives
    ISO-8601 with milliseconds and the offset."""
    when: datetime = msg.ToDatetime(tzinfo=UTC)
    if not utc:
        when = when.astimezone()
    if precise:
        return when.isoformat(timespec="milliseconds")
    return when.strftime("%Y-%m-%d %H:%M:%S") + ("Z" if utc else "")


def truncate(text: str, width: int = 48) -> str:
    """One line, at most ``width`` characters (``...`` marks a cut)."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: width - 3] + "..."


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns aligned on two spaces; the last one is not padded."""
    body = [list(row) for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))
    lines = []
    for row in [list(headers), *body]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + row[-1:]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


class Printer:
    """Where a command writes: stdout, as text or as JSON (``--json``)."""

    def __init__(self, *, as_json: bool, utc: bool, out: TextIO | None = None) -> None:
        self.as_json = as_json
        self.utc = utc
        self.out = out or sys.stdout

    def text(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def json(self, data: Any) -> None:
        """One JSON document, indented."""
        print(json.dumps(data, indent=2, ensure_ascii=False), file=self.out, flush=True)

    def json_line(self, data: Any) -> None:
        """One message of a stream: one JSON document per line (JSON Lines)."""
        print(json.dumps(data, ensure_ascii=False), file=self.out, flush=True)

    def time(self, msg: Any, *, precise: bool = False) -> str:
        return fmt_time(msg, utc=self.utc, precise=precise)

    def opt_time(self, parent: Message, name: str, *, precise: bool = False) -> str:
        """A Timestamp field as text, ``-`` when unset."""
        if not parent.HasField(name):
            return "-"
        return self.time(getattr(parent, name), precise=precise)
