"""Values of the etcd store's keys <-> objects (pure functions, no I/O).

An instance record is one JSON object holding the instance, its history and its queue
sequence number: one key per instance, so a transition and its history records are one
put (atomic by construction) and a range read of instances needs no join.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ...instance import HistoryRecord, Instance, LogLevel, LogRecord
from ...policy import Policy
from ...schedule import Misfire, Overlap, trigger_from_json
from ...state import State
from ..base import Event, EventType, NodeRecord, ScheduleRecord

__all__ = [
    "Rec",
    "decode_events",
    "decode_logs",
    "decode_node",
    "decode_schedule",
    "dumps",
    "encode_events",
    "encode_logs",
    "encode_node",
    "encode_schedule",
    "from_us",
    "index_value",
    "parse_index_value",
    "to_us",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_STATES = {s.value: s for s in State}
_EVENT_TYPES = {t.value: t for t in EventType}

dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads


def to_us(value: datetime) -> int:
    return (value - _EPOCH) // _MICROSECOND


def from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


HistoryRow = list[Any]
"""A stored history record: ``[state, timestamp (ISO), attempt, details, seq]``."""


@dataclass(slots=True)
class Rec:
    """An instance record as read (or about to be written), with its key's revisions."""

    inst: Instance
    hist: list[HistoryRow]
    qseq: int | None
    """Sequence number of its queue entry while it is queued (the index keys use it)."""
    mod: int = 0
    """``mod_revision`` of the instance key when read (0: not stored yet)."""
    version: int = 0
    """``version`` of the instance key when read (0: not stored yet)."""

    @classmethod
    def decode(cls, text: str, mod: int, version: int) -> Rec:
        data = _loads(text)
        return cls(Instance.from_json(data["i"]), data["h"], data.get("q"), mod, version)

    def encode(self) -> str:
        return dumps({"i": self.inst.to_json(), "h": self.hist, "q": self.qseq})

    def record(self, state: State, now: datetime, seq: int, info: dict[str, Any] | None) -> None:
        self.hist.append([state.value, now.isoformat(), self.inst.attempts, info or {}, seq])

    def history(self) -> list[HistoryRecord]:
        inst = self.inst
        return [
            HistoryRecord(
                inst.uuid, inst.kind, _STATES[row[0]], datetime.fromisoformat(row[1]), *row[2:]
            )
            for row in self.hist
        ]


def index_value(record: str, due_us: int, version: int) -> str:
    """The value of a queue index entry (see ``keys``): due time, instance version, record."""
    return f"{max(due_us, 0):016d}:{version}:{record}"


def parse_index_value(value: str) -> tuple[int, int, str]:
    """(due µs, instance version, record text) of a queue index entry."""
    due, version, record = value.split(":", 2)
    return int(due), int(version), record


# -- events -----------------------------------------------------------------------------------


def encode_events(events: list[Event]) -> str:
    return dumps(
        [
            [
                e.type.value,
                e.uuid,
                e.kind,
                None if e.state is None else e.state.value,
                e.node_id,
                _iso(e.due),
                e.schedule_id,
            ]
            for e in events
        ]
    )


def decode_events(text: str) -> list[Event]:
    return [
        Event(
            _EVENT_TYPES[row[0]],
            row[1],
            row[2],
            None if row[3] is None else _STATES[row[3]],
            row[4],
            _dt(row[5]),
            row[6],
        )
        for row in _loads(text)
    ]


# -- logs -------------------------------------------------------------------------------------


def encode_logs(records: list[LogRecord]) -> str:
    """One key's worth of log records (all of one instance), seqs already assigned."""
    return dumps(
        [
            [r.kind, r.timestamp.isoformat(), int(r.level), r.message, r.attempt, r.logger, r.seq]
            for r in records
        ]
    )


def decode_logs(uuid: str, text: str) -> list[LogRecord]:
    return [
        LogRecord(uuid, row[0], datetime.fromisoformat(row[1]), LogLevel(row[2]), row[3], *row[4:])
        for row in _loads(text)
    ]


# -- schedules --------------------------------------------------------------------------------


def encode_schedule(record: ScheduleRecord) -> str:
    return dumps(
        {
            "id": record.id,
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
            "paused": record.paused,
            "next_fire_at": _iso(record.next_fire_at),
            "last_fire_at": _iso(record.last_fire_at),
            "last_instance": record.last_instance,
            "fired_count": record.fired_count,
            "skipped_count": record.skipped_count,
            "recent_skips": [[slot.isoformat(), why] for slot, why in record.recent_skips],
            "created_at": _iso(record.created_at),
            "updated_at": _iso(record.updated_at),
        }
    )


def decode_schedule(text: str) -> ScheduleRecord:
    data = _loads(text)
    return ScheduleRecord(
        id=data["id"],
        kind=data["kind"],
        trigger=trigger_from_json(data["trigger"]),
        args=data["args"],
        kwargs=data["kwargs"],
        policy=Policy.from_json(data["policy"]),
        overlap=Overlap(data["overlap"]),
        misfire=Misfire(data["misfire"]),
        misfire_cap=data["misfire_cap"],
        misfire_grace=data["misfire_grace"],
        jitter=data["jitter"],
        paused=data["paused"],
        next_fire_at=_dt(data["next_fire_at"]),
        last_fire_at=_dt(data["last_fire_at"]),
        last_instance=data["last_instance"],
        fired_count=data["fired_count"],
        skipped_count=data["skipped_count"],
        recent_skips=[(datetime.fromisoformat(s), why) for s, why in data["recent_skips"]],
        created_at=_dt(data["created_at"]),
        updated_at=_dt(data["updated_at"]),
    )


# -- nodes ------------------------------------------------------------------------------------


def encode_node(node: NodeRecord) -> str:
    return dumps(
        {
            "node_id": node.node_id,
            "kinds": node.kinds,
            "workers": node.workers,
            "host": node.host,
            "pid": node.pid,
            "version": node.version,
            "started_at": _iso(node.started_at),
            "last_seen": _iso(node.last_seen),
            "expires_at": _iso(node.expires_at),
        }
    )


def decode_node(text: str) -> NodeRecord:
    data = _loads(text)
    return NodeRecord(
        data["node_id"],
        kinds=list(data["kinds"]),
        workers=data["workers"],
        host=data["host"],
        pid=data["pid"],
        version=data["version"],
        started_at=_dt(data["started_at"]),
        last_seen=_dt(data["last_seen"]),
        expires_at=_dt(data["expires_at"]),
    )
