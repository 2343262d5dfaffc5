"""The grpclib servicer of go-job's ``job.v1.JobService``: thin handlers over the Manager.

Handlers run as asyncio tasks on the trio-asyncio loop (see :mod:`gojob.server.serve`);
each one crosses into Trio once (:func:`gojob._aio.call_trio`) to call the Manager, and
maps gojob's errors to precise statuses:

* unknown kind, unknown uuid: ``NOT_FOUND``;
* bad arguments (arity, a string that does not coerce, an oversized payload), an empty
  kind, a bad state number: ``INVALID_ARGUMENT``, with the reason as the message;
* the manager closed or the store unreachable: ``UNAVAILABLE``;
* anything else: ``INTERNAL`` with the exception's message (the server keeps serving).

A handler cancelled by the server's shutdown ends its call with ``UNAVAILABLE`` trailers,
so the client learns at once instead of hanging.

``LookupInstances`` returns at most :data:`DEFAULT_LOOKUP_LIMIT` instances (oldest first);
a missing query matches every instance. ``CancelInstances`` with a missing or empty query
cancels every non-final instance, as go-job does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import typing
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

from grpclib import GRPCError
from grpclib.const import Status
from grpclib.server import Stream

from .. import __version__
from .._aio import call_trio
from .._generated import service_pb2 as pb
from .._generated.service_grpc import JobServiceBase
from ..codec import coerce_call, dumps
from ..errors import (
    ArgumentError,
    InstanceNotFound,
    InvalidSchedule,
    ManagerClosed,
    StoreUnavailable,
    UnknownJob,
)
from ..instance import Instance
from ..job import Job
from ..manager import Manager
from ..schedule import Cron
from ..state import ACTIVE, State

__all__ = ["API_VERSION", "DEFAULT_LOOKUP_LIMIT", "JobService", "instance_to_proto"]

DEFAULT_LOOKUP_LIMIT = 1000
"""The most instances one ``LookupInstances`` returns (go-job's call has no limit field)."""

API_VERSION = "1"
"""The version of the gRPC API this servicer speaks (``job.v1``)."""

STATE_TO_PROTO: dict[State, int] = {
    State.CREATED: pb.JOB_STATE_CREATED,
    State.SCHEDULED: pb.JOB_STATE_SCHEDULED,
    State.PROCESSING: pb.JOB_STATE_PROCESSING,
    State.CANCELED: pb.JOB_STATE_CANCELLED,
    State.TIMEDOUT: pb.JOB_STATE_TIMED_OUT,
    State.COMPLETED: pb.JOB_STATE_COMPLETED,
    State.TERMINATED: pb.JOB_STATE_TERMINATED,
}
PROTO_TO_STATE: dict[int, State] = {number: state for state, number in STATE_TO_PROTO.items()}

Req = TypeVar("Req")
Resp = TypeVar("Resp")
_Handler = Callable[[Any, Stream[Req, Resp]], Coroutine[Any, Any, None]]


def _status_of(exc: Exception) -> tuple[Status, str] | None:
    if isinstance(exc, UnknownJob | InstanceNotFound):
        return Status.NOT_FOUND, str(exc).strip("'\"")
    if isinstance(exc, ArgumentError | InvalidSchedule | ValueError):
        return Status.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, ManagerClosed | StoreUnavailable):
        return Status.UNAVAILABLE, str(exc)
    return None


def _handler(fn: _Handler[Req, Resp]) -> _Handler[Req, Resp]:
    """Map gojob errors to statuses; on shutdown, end the call with UNAVAILABLE."""

    @functools.wraps(fn)
    async def wrapper(self: Any, stream: Stream[Req, Resp]) -> None:
        try:
            await fn(self, stream)
        except GRPCError:
            raise
        except asyncio.CancelledError:
            # grpclib cancels handlers on close() without trailers: send them, or a
            # client in the middle of a call hangs.
            with contextlib.suppress(Exception):  # the stream may already be gone
                await stream.send_trailing_metadata(
                    status=Status.UNAVAILABLE, status_message="the server is shutting down"
                )
            raise
        except Exception as exc:
            mapped = _status_of(exc)
            if mapped is None:
                raise GRPCError(Status.INTERNAL, f"{type(exc).__name__}: {exc}") from exc
            raise GRPCError(mapped[0], mapped[1]) from exc

    return wrapper


def _text(value: Any) -> str:
    """One wire string per value: a string as is, anything else as compact JSON."""
    return value if isinstance(value, str) else dumps(value)


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


def _ts(target: Any, when: datetime | None) -> None:
    if when is not None:
        target.FromDatetime(when)


def instance_to_proto(inst: Instance, job: Job | None = None) -> pb.JobInstance:
    """Every field of go-job's JobInstance, from a gojob Instance (``job`` tells whether
    a returned list is several values)."""
    msg = pb.JobInstance(
        kind=inst.kind,
        uuid=inst.uuid,
        state=STATE_TO_PROTO[inst.state],  # type: ignore[arg-type]
        arguments=[_text(arg) for arg in inst.args],
        results=_results(inst, job),
        attempts=inst.attempts,
    )
    if inst.error_message is not None:
        msg.error = inst.error_message
    _ts(msg.created_at, inst.created_at)
    _ts(msg.scheduled_at, inst.scheduled_at)
    _ts(msg.processed_at, inst.processed_at)
    _ts(msg.completed_at, inst.completed_at)
    _ts(msg.terminated_at, inst.terminated_at)
    _ts(msg.canceled_at, inst.canceled_at)
    _ts(msg.timed_out_at, inst.timed_out_at)
    return msg


class JobService(JobServiceBase):
    """go-job's five calls, served from a :class:`~gojob.manager.Manager`."""

    def __init__(self, manager: Manager, *, lookup_limit: int = DEFAULT_LOOKUP_LIMIT) -> None:
        if lookup_limit < 1:
            raise ValueError("lookup_limit must be positive")
        self.manager = manager
        self.lookup_limit = lookup_limit
        self.started_at = manager.clock.now()
        self._seen: dict[str, datetime] = {}

    # -- helpers (Trio side) ------------------------------------------------------------
    def _protos(self, insts: list[Instance]) -> list[pb.JobInstance]:
        find = self.manager.registry.find
        return [instance_to_proto(inst, find(inst.kind)) for inst in insts]

    def _job_proto(self, job: Job, now: datetime) -> pb.Job:
        # gojob keeps no registration time: the first time this server saw the kind
        # (its start, for the jobs registered before it).
        seen = self._seen.setdefault(job.kind, self.started_at if not self._seen else now)
        msg = pb.Job(kind=job.kind, description=job.description)
        msg.registered_at.FromDatetime(seen)
        if job.schedule is not None:
            if isinstance(job.schedule, Cron):
                msg.cron_spec = job.schedule.spec
            msg.schedule_at.FromDatetime(job.schedule.next_fire(now))
        return msg

    async def _schedule(self, kind: str, args: list[str], priority: int | None) -> pb.JobInstance:
        job = self.manager.job(kind)
        values, _ = coerce_call(job.plan, args)
        inst = await self.manager.schedule(kind, *values, priority=priority)
        return instance_to_proto(inst, job)

    async def _lookup(self, query: _Query) -> list[pb.JobInstance]:
        insts = await self.manager.instances(
            uuid=query.uuid, kind=query.kind, state=query.state, limit=self.lookup_limit
        )
        return self._protos(insts)

    async def _cancel(self, query: _Query) -> list[pb.JobInstance]:
        if query.uuid is None and query.kind is None and query.state is None:
            insts = await self.manager.cancel(state=ACTIVE)
        else:
            insts = await self.manager.cancel(query.uuid, kind=query.kind, state=query.state)
        return self._protos(insts)

    async def _jobs(self) -> list[pb.Job]:
        now = self.manager.clock.now()
        return [self._job_proto(job, now) for job in self.manager.jobs()]

    # -- handlers (asyncio side) --------------------------------------------------------
    @_handler
    async def GetVersion(  # noqa: N802 (gRPC method name)
        self, stream: Stream[pb.GetVersionRequest, pb.GetVersionResponse]
    ) -> None:
        await stream.recv_message()
        await stream.send_message(
            pb.GetVersionResponse(version=__version__, api_version=API_VERSION)
        )

    @_handler
    async def ScheduleJob(  # noqa: N802 (gRPC method name)
        self, stream: Stream[pb.ScheduleJobRequest, pb.ScheduleJobResponse]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        if not req.kind:
            raise GRPCError(Status.INVALID_ARGUMENT, "kind is required")
        # go-job: -1 means unset.
        priority = req.priority if req.HasField("priority") and req.priority != -1 else None
        inst = await call_trio(self._schedule, req.kind, list(req.arguments), priority)
        await stream.send_message(pb.ScheduleJobResponse(instance=inst))

    @_handler
    async def ListRegisteredJobs(  # noqa: N802 (gRPC method name)
        self, stream: Stream[pb.ListRegisteredJobsRequest, pb.ListRegisteredJobsResponse]
    ) -> None:
        await stream.recv_message()
        jobs = await call_trio(self._jobs)
        await stream.send_message(pb.ListRegisteredJobsResponse(jobs=jobs))

    @_handler
    async def LookupInstances(  # noqa: N802 (gRPC method name)
        self, stream: Stream[pb.LookupInstancesRequest, pb.LookupInstancesResponse]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        query = _Query.parse(req.query if req.HasField("query") else None)
        found = await call_trio(self._lookup, query)
        await stream.send_message(pb.LookupInstancesResponse(instances=found))

    @_handler
    async def CancelInstances(  # noqa: N802 (gRPC method name)
        self, stream: Stream[pb.CancelInstancesRequest, pb.CancelInstancesResponse]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        query = _Query.parse(req.query if req.HasField("query") else None)
        found = await call_trio(self._cancel, query)
        await stream.send_message(pb.CancelInstancesResponse(instances=found))


class _Query:
    __slots__ = ("kind", "state", "uuid")

    def __init__(self, kind: str | None, uuid: str | None, state: State | None) -> None:
        self.kind = kind
        self.uuid = uuid
        self.state = state

    @classmethod
    def parse(cls, query: pb.Query | None) -> _Query:
        """A missing query, or unset (or empty) fields, match everything."""
        if query is None:
            return cls(None, None, None)
        kind = query.kind if query.HasField("kind") and query.kind else None
        uuid = query.uuid if query.HasField("uuid") and query.uuid else None
        state: State | None = None
        if query.HasField("state") and query.state != pb.JOB_STATE_UNSET:
            found = PROTO_TO_STATE.get(int(query.state))
            if found is None:
                raise GRPCError(Status.INVALID_ARGUMENT, f"unknown job state {int(query.state)}")
            state = found
        return cls(kind, uuid, state)
