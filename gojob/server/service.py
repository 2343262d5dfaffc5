"""The grpclib servicer of go-job's ``job.v1.JobService``: thin handlers over the Manager.

Handlers run as asyncio tasks on the trio-asyncio loop (see :mod:`gojob.server.serve`);
each one crosses into Trio once (:func:`gojob._aio.call_trio`) to call the Manager, and
maps gojob's errors to precise statuses:

* unknown kind, unknown uuid: ``NOT_FOUND``;
* bad arguments (arity, a string that does not coerce, an oversized payload), an empty
  kind, a bad state number: ``INVALID_ARGUMENT``, with the reason as the message;
* the manager closed or the store unreachable: ``UNAVAILABLE``;
* anything else: ``INTERNAL`` with the exception's message (the server keeps serving).

(The whole table is in :mod:`gojob.server._status`.) A handler cancelled by the server's
shutdown ends its call with ``UNAVAILABLE`` trailers (:mod:`gojob.server._guard`).

``LookupInstances`` returns at most :data:`DEFAULT_LOOKUP_LIMIT` instances (oldest first),
and no more than fit in one reply; a missing query matches every instance.
``CancelInstances`` with a missing or empty query cancels every non-final instance, as
go-job does.

``ScheduleJob`` calls are group-committed when a :class:`~gojob.server._batch.ScheduleBatcher`
is given (as :func:`~gojob.server.serve` does): concurrent calls share one store write.
"""

from __future__ import annotations

from datetime import datetime

from grpclib import GRPCError
from grpclib.const import Status
from grpclib.server import Stream

from .. import __version__
from .._aio import call_trio
from .._generated import service_pb2 as pb
from .._generated.service_grpc import JobServiceBase
from ..codec import coerce_call
from ..instance import Instance
from ..job import Job
from ..manager import Manager
from ..state import ACTIVE, State
from . import _requests as rq
from ._batch import ScheduleBatcher
from ._codec import DEFAULT_MAX_MESSAGE_BYTES
from ._convert import PROTO_TO_STATE, STATE_TO_PROTO, instance_to_proto, job_to_proto
from ._status import handler
from .gojob_service import DEFAULT_LOOKUP_LIMIT, fit

__all__ = [
    "API_VERSION",
    "DEFAULT_LOOKUP_LIMIT",
    "PROTO_TO_STATE",
    "STATE_TO_PROTO",
    "JobService",
    "instance_to_proto",
]

API_VERSION = "1"
"""The version of the gRPC API this servicer speaks (``job.v1``)."""


class JobService(JobServiceBase):
    """go-job's five calls, served from a :class:`~gojob.manager.Manager`."""

    def __init__(
        self,
        manager: Manager,
        *,
        lookup_limit: int = DEFAULT_LOOKUP_LIMIT,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        batcher: ScheduleBatcher | None = None,
    ) -> None:
        if lookup_limit < 1:
            raise ValueError("lookup_limit must be positive")
        self.manager = manager
        self.batcher = batcher
        self.lookup_limit = lookup_limit
        self.max_message_bytes = max_message_bytes
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
        return job_to_proto(job, seen, now)

    async def _schedule(self, kind: str, args: list[str], priority: int | None) -> pb.JobInstance:
        job = self.manager.job(kind)
        values, _ = coerce_call(job.plan, args)
        inst = await self.manager.schedule(kind, *values, priority=priority)
        return instance_to_proto(inst, job)

    async def _lookup(self, query: _Query) -> list[pb.JobInstance]:
        insts = await self.manager.instances(
            uuid=query.uuid, kind=query.kind, state=query.state, limit=self.lookup_limit
        )
        # No more than fit in one reply (go-job's call has no offset to page with).
        page = rq.Page(self.lookup_limit, 0)
        kept, _ = fit(self._protos(insts), page, self.max_message_bytes - 1024)
        return kept

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
    @handler
    async def GetVersion(  # noqa: N802 (gRPC method name)
        self, stream: Stream[pb.GetVersionRequest, pb.GetVersionResponse]
    ) -> None:
        await stream.recv_message()
        await stream.send_message(
            pb.GetVersionResponse(version=__version__, api_version=API_VERSION)
        )

    @handler
    async def ScheduleJob(  # noqa: N802 (gRPC method name)
        self, stream: Stream[pb.ScheduleJobRequest, pb.ScheduleJobResponse]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        if not req.kind:
            raise GRPCError(Status.INVALID_ARGUMENT, "kind is required")
        # go-job: -1 means unset.
        priority = req.priority if req.HasField("priority") and req.priority != -1 else None
        if self.batcher is None:
            inst = await call_trio(self._schedule, req.kind, list(req.arguments), priority)
        else:
            # Validated here (unknown kind, arity, coercion: this call's own status), then
            # written with the concurrent calls in one store write.
            job = self.manager.job(req.kind)
            values, _ = coerce_call(job.plan, list(req.arguments))
            inst = instance_to_proto(await self.batcher.submit(req.kind, values, priority), job)
        await stream.send_message(pb.ScheduleJobResponse(instance=inst))

    @handler
    async def ListRegisteredJobs(  # noqa: N802 (gRPC method name)
        self, stream: Stream[pb.ListRegisteredJobsRequest, pb.ListRegisteredJobsResponse]
    ) -> None:
        await stream.recv_message()
        jobs = await call_trio(self._jobs)
        await stream.send_message(pb.ListRegisteredJobsResponse(jobs=jobs))

    @handler
    async def LookupInstances(  # noqa: N802 (gRPC method name)
        self, stream: Stream[pb.LookupInstancesRequest, pb.LookupInstancesResponse]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        query = _Query.parse(req.query if req.HasField("query") else None)
        found = await call_trio(self._lookup, query)
        await stream.send_message(pb.LookupInstancesResponse(instances=found))

    @handler
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
