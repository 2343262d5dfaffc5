"""Instances (one execution request of a job), their history records and log records."""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .errors import GojobError
from .policy import Policy
from .state import FINAL, State

__all__ = ["HistoryRecord", "Instance", "LogLevel", "LogRecord", "new_uuid", "new_uuids"]


def new_uuid() -> str:
    """A fresh instance id: a UUIDv7 (RFC 9562) as text.

    Version 7 starts with the Unix time in milliseconds, so ids sort roughly by creation
    and database indexes on them stay append-mostly; the other 74 bits are random.
    Built by hand: ``str(uuid.uuid4())`` alone costs more than twice as much, and this
    runs once per scheduled instance.
    """
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def new_uuids(n: int) -> list[str]:
    """``n`` fresh instance ids, as :func:`new_uuid` makes them (UUIDv7 text), for a
    batch: the clock is read once and the randomness drawn in one call."""
    ms = f"{(time.time_ns() // 1_000_000) & 0xFFFFFFFFFFFF:012x}"
    head = f"{ms[:8]}-{ms[8:12]}-7"
    rand = os.urandom(10 * n).hex()
    variant = _VARIANT
    return [
        f"{head}{r[1:4]}-{variant[r[4]]}{r[5:8]}-{r[8:20]}"
        for r in (rand[k : k + 20] for k in range(0, 20 * n, 20))
    ]


class LogLevel(enum.IntEnum):
    """Severity of an instance log record (ordered, so ``level >= WARN`` filters)."""

    DEBUG = 10
    INFO = 20
    WARN = 30
    ERROR = 40

    @classmethod
    def parse(cls, text: str | int) -> LogLevel:
        if isinstance(text, int):
            return cls(text)
        key = text.strip().upper()
        key = {"WARNING": "WARN", "CRITICAL": "ERROR", "FATAL": "ERROR"}.get(key, key)
        try:
            return cls[key]
        except KeyError:
            raise ValueError(f"unknown log level {text!r}") from None

    @classmethod
    def from_logging(cls, levelno: int) -> LogLevel:
        """Map a :mod:`logging` level number onto the four gojob levels."""
        if levelno >= 40:
            return cls.ERROR
        if levelno >= 30:
            return cls.WARN
        if levelno >= 20:
            return cls.INFO
        return cls.DEBUG


@dataclass(slots=True)
class LogRecord:
    """One line of an instance's log."""

    uuid: str
    kind: str
    timestamp: datetime
    level: LogLevel
    message: str
    attempt: int = 0
    logger: str = ""
    """Name of the :mod:`logging` logger it came from, or ``""`` for ``Instance.info()`` & co."""
    seq: int = 0
    """Order among the records of one instance; assigned by the store."""


@dataclass(slots=True)
class HistoryRecord:
    """One state transition of an instance, with what explains it.

    ``details`` keys in use: ``error``, ``error_type``, ``traceback``, ``result``,
    ``node``, ``worker``, ``reason`` (``abandoned``, ``retry``, ``released``, ``canceled``,
    ``timeout``, ``rescue-limit``), ``due`` (next due time on retry), ``token``.
    """

    uuid: str
    kind: str
    state: State
    timestamp: datetime
    attempt: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    seq: int = 0


LogSink = Callable[["Instance", LogLevel, str, str], None]


@dataclass(eq=False)
class Instance:
    """One execution request of a job and everything known about it.

    Instances returned by a store are snapshots: changing one changes nothing stored.
    Inside an executor (ask for it with a parameter annotated ``Instance``) it also
    writes the instance's log with :meth:`info`, :meth:`warn`, :meth:`error` and
    :meth:`debug` (``%``-style arguments, like :mod:`logging`).
    """

    uuid: str
    kind: str
    args: list[Any] = field(default_factory=list)
    """Positional arguments, as plain JSON."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments, as plain JSON."""
    state: State = State.CREATED
    policy: Policy = field(default_factory=Policy)
    created_at: datetime | None = None
    scheduled_at: datetime | None = None
    """When it is (or was last) due."""
    attempts: int = 0
    """Attempts started (claims), abandoned ones included."""
    failures: int = 0
    """Failed attempts (Terminated or TimedOut); what ``max_retries`` is judged on."""
    rescues: int = 0
    """Times it was returned to the queue after its node died."""
    dedupe_key: str | None = None
    schedule_id: str | None = None
    fire_time: datetime | None = None
    """The schedule slot it was created for (UTC, before jitter)."""
    result: Any = None
    """The executor's return value as plain JSON (a tuple becomes a list)."""
    error_message: str | None = None
    """Message of the last failure (``error_type`` names its exception class)."""
    error_type: str | None = None
    traceback: str | None = None
    node_id: str | None = None
    worker: str | None = None
    claim_token: str | None = None
    lease_expires_at: datetime | None = None
    cancel_requested: bool = False
    processed_at: datetime | None = None
    completed_at: datetime | None = None
    terminated_at: datetime | None = None
    canceled_at: datetime | None = None
    timed_out_at: datetime | None = None
    updated_at: datetime | None = None
    _sink: LogSink | None = field(default=None, repr=False, compare=False)

    @classmethod
    def new(
        cls,
        kind: str,
        args: list[Any],
        kwargs: dict[str, Any],
        policy: Policy,
        created_at: datetime,
        scheduled_at: datetime,
        dedupe_key: str | None = None,
    ) -> Instance:
        """A new CREATED instance with a fresh uuid (the fast path of scheduling: the
        generated ``__init__`` of 35 fields costs several microseconds)."""
        inst = object.__new__(cls)
        data = inst.__dict__
        data.update(_NEW_TEMPLATE)
        data["uuid"] = new_uuid()
        data["kind"] = kind
        data["args"] = args
        data["kwargs"] = kwargs
        data["policy"] = policy
        data["created_at"] = created_at
        data["scheduled_at"] = scheduled_at
        data["dedupe_key"] = dedupe_key
        return inst

    @classmethod
    def new_many(
        cls,
        kind: str,
        calls: Sequence[tuple[list[Any], dict[str, Any]]],
        policy: Policy,
        created_at: datetime,
        scheduled_at: datetime,
    ) -> list[Instance]:
        """:meth:`new` for a batch of ``(args, kwargs)`` calls sharing everything else."""
        common = dict(_NEW_TEMPLATE)
        common.update(kind=kind, policy=policy, created_at=created_at, scheduled_at=scheduled_at)
        new = object.__new__
        made = []
        for uuid, (args, kwargs) in zip(new_uuids(len(calls)), calls, strict=True):
            inst = new(cls)
            data = common.copy()
            data["uuid"] = uuid
            data["args"] = args
            data["kwargs"] = kwargs
            inst.__dict__ = data
            made.append(inst)
        return made

    # -- identity ------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        return isinstance(other, Instance) and other.uuid == self.uuid

    def __hash__(self) -> int:
        return hash(self.uuid)

    @property
    def is_final(self) -> bool:
        return self.state in FINAL

    @property
    def finished_at(self) -> datetime | None:
        """When it reached its final state (None while it is not final).

        The latest end time: an instance that failed, was retried and then ended keeps
        the times of its earlier failures too."""
        if self.state not in FINAL:
            return None
        ends = [
            t
            for t in (self.completed_at, self.terminated_at, self.canceled_at, self.timed_out_at)
            if t is not None
        ]
        return max(ends) if ends else self.updated_at

    def snapshot(self) -> Instance:
        """A detached copy (cheap: a dict copy; args/kwargs/result are shared JSON)."""
        clone = object.__new__(Instance)
        clone.__dict__.update(self.__dict__)
        clone._sink = None
        return clone

    # -- logging from inside an executor --------------------------------------------
    def _log(self, level: LogLevel, message: str, args: tuple[Any, ...]) -> None:
        sink = self._sink
        if sink is None:
            raise GojobError(
                f"instance {self.uuid} is not running here: it can log only during an attempt "
                "or a processor"
            )
        if args:
            message = message % args
        sink(self, level, str(message), "")

    def debug(self, message: str, *args: Any) -> None:
        self._log(LogLevel.DEBUG, message, args)

    def info(self, message: str, *args: Any) -> None:
        self._log(LogLevel.INFO, message, args)

    def warn(self, message: str, *args: Any) -> None:
        self._log(LogLevel.WARN, message, args)

    warning = warn

    def error(self, message: str, *args: Any) -> None:
        self._log(LogLevel.ERROR, message, args)

    # -- serialisation (stores that persist rows use this) ----------------------------
    def to_json(self) -> dict[str, Any]:
        def ts(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "uuid": self.uuid,
            "kind": self.kind,
            "args": self.args,
            "kwargs": self.kwargs,
            "state": self.state.value,
            "policy": self.policy.to_json(),
            "created_at": ts(self.created_at),
            "scheduled_at": ts(self.scheduled_at),
            "attempts": self.attempts,
            "failures": self.failures,
            "rescues": self.rescues,
            "dedupe_key": self.dedupe_key,
            "schedule_id": self.schedule_id,
            "fire_time": ts(self.fire_time),
            "result": self.result,
            "error_message": self.error_message,
            "error_type": self.error_type,
            "traceback": self.traceback,
            "node_id": self.node_id,
            "worker": self.worker,
            "claim_token": self.claim_token,
            "lease_expires_at": ts(self.lease_expires_at),
            "cancel_requested": self.cancel_requested,
            "processed_at": ts(self.processed_at),
            "completed_at": ts(self.completed_at),
            "terminated_at": ts(self.terminated_at),
            "canceled_at": ts(self.canceled_at),
            "timed_out_at": ts(self.timed_out_at),
            "updated_at": ts(self.updated_at),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Instance:
        def ts(key: str) -> datetime | None:
            value = data.get(key)
            return None if value is None else datetime.fromisoformat(value)

        return cls(
            uuid=data["uuid"],
            kind=data["kind"],
            args=list(data.get("args") or []),
            kwargs=dict(data.get("kwargs") or {}),
            state=State(data["state"]),
            policy=Policy.from_json(data.get("policy") or {}),
            created_at=ts("created_at"),
            scheduled_at=ts("scheduled_at"),
            attempts=int(data.get("attempts", 0)),
            failures=int(data.get("failures", 0)),
            rescues=int(data.get("rescues", 0)),
            dedupe_key=data.get("dedupe_key"),
            schedule_id=data.get("schedule_id"),
            fire_time=ts("fire_time"),
            result=data.get("result"),
            error_message=data.get("error_message"),
            error_type=data.get("error_type"),
            traceback=data.get("traceback"),
            node_id=data.get("node_id"),
            worker=data.get("worker"),
            claim_token=data.get("claim_token"),
            lease_expires_at=ts("lease_expires_at"),
            cancel_requested=bool(data.get("cancel_requested", False)),
            processed_at=ts("processed_at"),
            completed_at=ts("completed_at"),
            terminated_at=ts("terminated_at"),
            canceled_at=ts("canceled_at"),
            timed_out_at=ts("timed_out_at"),
            updated_at=ts("updated_at"),
        )


# Field values of a fresh instance (kind, uuid and the rest are set by Instance.new).
_NEW_TEMPLATE: dict[str, Any] = dict(Instance(uuid="", kind="").__dict__)
