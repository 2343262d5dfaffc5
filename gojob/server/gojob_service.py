"""The grpclib servicer of gojob's own ``gojob.v1.GojobService``: thin handlers over the
Manager.

Each handler reads its request on the asyncio side, crosses into Trio once
(:func:`gojob._aio.call_trio`) to call the Manager, and sends the reply; streams send
each message back across the bridge (:mod:`gojob.server._streams`). Errors map to
statuses as :mod:`gojob.server._status` says.

Lookups (instances, history, logs) return at most ``lookup_limit`` rows
(:data:`DEFAULT_LOOKUP_LIMIT`, 1000, unless ``serve`` is told otherwise), and no more
than fit in one reply of ``max_message_bytes``; ``next_offset`` then says where the
next page starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, TypeVar

from google.protobuf.message import Message
from grpclib.server import Stream

from .. import __version__
from .._aio import Bridge, call_trio
from .._generated import gojob_pb2 as gpb
from .._generated.gojob_grpc import GojobServiceBase
from ..codec import coerce_call
from ..errors import ArgumentError
from ..instance import Instance
from ..manager import Manager
from ..state import ACTIVE
from . import _requests as rq
from ._codec import DEFAULT_MAX_MESSAGE_BYTES
from ._convert import (
    STATE_TO_PROTO,
    history_to_proto,
    instance_to_gojob,
    job_info,
    log_to_proto,
    node_to_proto,
    schedule_to_proto,
)
from ._status import handler
from ._streams import Send, WatchFilter, follow_logs, watch_events

__all__ = ["API_VERSION", "DEFAULT_LOOKUP_LIMIT", "GojobService"]

DEFAULT_LOOKUP_LIMIT = 1000
"""The most rows one lookup returns (and the default ``limit``)."""

API_VERSION = "1"
"""The version of this API (``gojob.v1``)."""

M = TypeVar("M", bound=Message)

_ORDER_BY = {
    gpb.ORDER_BY_UNSPECIFIED: "created_at",
    gpb.ORDER_BY_CREATED_AT: "created_at",
    gpb.ORDER_BY_SCHEDULED_AT: "scheduled_at",
    gpb.ORDER_BY_UPDATED_AT: "updated_at",
}
_REPLY_MARGIN = 1024
"""Bytes kept free in a reply for its other fields."""


def fit(items: Sequence[M], page: rq.Page, budget: int) -> tuple[list[M], int | None]:
    """The items of one reply: at most ``page.limit`` and ``budget`` bytes (at least one);
    and the next page's offset, when more rows match."""
    kept: list[M] = []
    size = 0
    for item in items[: page.limit]:
        size += item.ByteSize() + 6  # tag and length prefix
        if kept and size > budget:
            break
        kept.append(item)
    more = len(kept) < len(items)
    return kept, (page.offset + len(kept) if more else None)


def _sender(stream: Stream[Any, Any]) -> Send:
    """``stream.send_message`` callable from Trio (one bridge crossing per message)."""
    bridge = Bridge(asyncio.get_running_loop(), None)

    async def send(message: Any) -> None:
        await bridge.run(stream.send_message, message)

    return send


class GojobService(GojobServiceBase):
    """gojob's calls, served from a :class:`~gojob.manager.Manager`."""

    def __init__(
        self,
        manager: Manager,
        *,
        lookup_limit: int = DEFAULT_LOOKUP_LIMIT,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        if lookup_limit < 1:
            raise ValueError("lookup_limit must be positive")
        self.manager = manager
        self.lookup_limit = lookup_limit
        self.max_message_bytes = max_message_bytes
        self.started_at = manager.clock.now()

    @property
    def _budget(self) -> int:
        return self.max_message_bytes - _REPLY_MARGIN

    def _page(self, limit: int, offset: int) -> rq.Page:
        return rq.page(limit, offset, self.lookup_limit)

    # -- Trio side ------------------------------------------------------------------------
    async def _server_info(self) -> gpb.ServerInfo:
        m = self.manager
        now = m.clock.now()
        msg = gpb.ServerInfo(
            version=__version__,
            api_version=API_VERSION,
            node_id=m.node_id,
            store=m.store.name,
            workers=m.workers,
            kinds=[job.kind for job in m.jobs()],
            lookup_limit=self.lookup_limit,
            max_message_bytes=self.max_message_bytes,
        )
        msg.started_at.FromDatetime(self.started_at)
        msg.uptime.FromTimedelta(max(now - self.started_at, timedelta(0)))
        return msg

    async def _statistics(self) -> gpb.Statistics:
        stats = await self.manager.statistics()
        unserved = await self.manager.unserved_kinds(
            {
                (kind, state): n
                for kind, by_state in stats.by_kind.items()
                for state, n in by_state.items()
            }
        )
        msg = gpb.Statistics(
            node_id=stats.node_id,
            workers=stats.target_workers,
            live_workers=stats.workers,
            busy_workers=stats.busy_workers,
            in_flight=stats.in_flight,
            queued=stats.queued,
            unserved_kinds=unserved,
        )
        for kind, counts in sorted(stats.by_kind.items()):
            for state, count in counts.items():
                if count:
                    msg.counts.add(kind=kind, state=STATE_TO_PROTO[state], count=count)
        return msg

    async def _schedule(self, req: gpb.ScheduleRequest) -> gpb.ScheduleResponse:
        m = self.manager
        call = rq.schedule_call(req)
        args = call.args
        if call.strings is not None:
            args, _ = coerce_call(m.job(call.kind).plan, call.strings)
        policy = call.policy
        if call.cron is not None:
            record = await m.schedule(
                call.kind, *args, kwargs=call.kwargs, cron=call.cron, tz=call.tz,
                **policy, **call.recurring,
            )  # fmt: skip
            return gpb.ScheduleResponse(schedule=schedule_to_proto(record))
        if call.every is not None:
            record = await m.schedule(
                call.kind, *args, kwargs=call.kwargs, every=call.every,
                **policy, **call.recurring,
            )  # fmt: skip
            return gpb.ScheduleResponse(schedule=schedule_to_proto(record))
        inst = await m.schedule(
            call.kind, *args, kwargs=call.kwargs, after=call.after, at=call.at,
            dedupe_key=call.dedupe_key, **policy,
        )  # fmt: skip
        return gpb.ScheduleResponse(instance=instance_to_gojob(inst))

    async def _list_instances(self, req: gpb.ListInstancesRequest) -> gpb.ListInstancesResponse:
        page = self._page(req.limit, req.offset)
        order_by = _ORDER_BY.get(req.order_by)
        if order_by is None:
            raise ValueError(f"unknown order_by {int(req.order_by)}")
        rows = await self.manager.instances(
            uuid=rq.opt_str(req, "uuid"),
            kind=rq.opt_str(req, "kind"),
            state=rq.states(req.states),
            schedule_id=rq.opt_str(req, "schedule_id"),
            after=rq.ts(req, "after"),
            before=rq.ts(req, "before"),
            order_by=order_by,
            descending=req.descending,
            limit=page.fetch,
            offset=page.offset,
        )
        kept, next_offset = fit([instance_to_gojob(i) for i in rows], page, self._budget)
        return gpb.ListInstancesResponse(instances=kept, next_offset=next_offset)

    async def _cancel(self, req: gpb.CancelRequest) -> gpb.CancelResponse:
        uuid = rq.opt_str(req, "uuid")
        kind = rq.opt_str(req, "kind")
        states = rq.states(req.states)
        if uuid is None and kind is None and states is None:
            if not req.all:
                raise ArgumentError("give a uuid, a kind or states to cancel, or all=true")
            states = ACTIVE
        matched = await self.manager.cancel(uuid, kind=kind, state=states)
        if uuid is not None and not matched:
            await self.manager.get(uuid)  # NOT_FOUND when it does not exist
        return gpb.CancelResponse(instances=[instance_to_gojob(i) for i in matched])

    async def _retry(self, req: gpb.RetryRequest) -> gpb.RetryResponse:
        if not req.uuid:
            raise ArgumentError("uuid is required")
        after = req.after.ToTimedelta().total_seconds() if req.HasField("after") else None
        if after is not None and after < 0:
            raise ArgumentError("`after` must not be negative")
        inst = await self.manager.retry(req.uuid, after=after)
        return gpb.RetryResponse(instance=instance_to_gojob(inst))

    async def _history(self, req: gpb.GetHistoryRequest) -> gpb.GetHistoryResponse:
        page = self._page(req.limit, req.offset)
        rows = await self.manager.history(
            uuid=rq.opt_str(req, "uuid"),
            kind=rq.opt_str(req, "kind"),
            state=rq.states(req.states),
            after=rq.ts(req, "after"),
            before=rq.ts(req, "before"),
            descending=req.descending,
            limit=page.fetch,
            offset=page.offset,
        )
        kept, next_offset = fit([history_to_proto(r) for r in rows], page, self._budget)
        return gpb.GetHistoryResponse(records=kept, next_offset=next_offset)

    async def _logs(self, req: gpb.GetLogsRequest) -> gpb.GetLogsResponse:
        page = self._page(req.limit, req.offset)
        rows = await self.manager.logs(
            uuid=rq.opt_str(req, "uuid"),
            kind=rq.opt_str(req, "kind"),
            level=rq.level(req.min_level),
            after=rq.ts(req, "after"),
            before=rq.ts(req, "before"),
            descending=req.descending,
            limit=page.fetch,
            offset=page.offset,
        )
        kept, next_offset = fit([log_to_proto(r) for r in rows], page, self._budget)
        return gpb.GetLogsResponse(entries=kept, next_offset=next_offset)

    async def _follow(self, req: gpb.FollowLogsRequest, send: Send) -> None:
        if not req.uuid:
            raise ArgumentError("uuid is required")
        level = rq.level(req.min_level)
        await follow_logs(self.manager, req.uuid, level, self.lookup_limit, send)

    async def _watch(self, req: gpb.WatchEventsRequest, send: Send) -> None:
        flt = WatchFilter(
            uuid=rq.opt_str(req, "uuid"),
            kind=rq.opt_str(req, "kind"),
            states=rq.states(req.states),
            until_final=req.until_final,
            include_instance=req.include_instance,
        )
        await watch_events(self.manager, flt, send)

    async def _schedules(self, kind: str | None) -> gpb.ListSchedulesResponse:
        records = await self.manager.schedules(kind)
        return gpb.ListSchedulesResponse(schedules=[schedule_to_proto(r) for r in records])

    async def _schedule_op(self, op: str, schedule_id: str) -> gpb.RecurringSchedule:
        if not schedule_id:
            raise ArgumentError("id is required")
        m = self.manager
        ops = {"get": m.get_schedule, "pause": m.pause_schedule, "resume": m.resume_schedule}
        return schedule_to_proto(await ops[op](schedule_id))

    async def _delete_schedule(self, schedule_id: str) -> None:
        if not schedule_id:
            raise ArgumentError("id is required")
        await self.manager.delete_schedule(schedule_id)

    async def _resize(self, req: gpb.ResizeWorkersRequest) -> gpb.ResizeWorkersResponse:
        previous = self.manager.workers
        await self.manager.resize(req.workers, cancel_busy=req.cancel_busy)
        return gpb.ResizeWorkersResponse(previous=previous, workers=self.manager.workers)

    async def _nodes(self) -> gpb.ListNodesResponse:
        return gpb.ListNodesResponse(nodes=[node_to_proto(n) for n in await self.manager.nodes()])

    async def _get(self, uuid: str) -> Instance:
        if not uuid:
            raise ArgumentError("uuid is required")
        return await self.manager.get(uuid)

    # -- handlers (asyncio side) ------------------------------------------------------------
    @handler
    async def GetServerInfo(  # noqa: N802 (gRPC method name)
        self, stream: Stream[gpb.GetServerInfoRequest, gpb.ServerInfo]
    ) -> None:
        await stream.recv_message()
        await stream.send_message(await call_trio(self._server_info))

    @handler
    async def GetStatistics(  # noqa: N802
        self, stream: Stream[gpb.GetStatisticsRequest, gpb.Statistics]
    ) -> None:
        await stream.recv_message()
        await stream.send_message(await call_trio(self._statistics))

    @handler
    async def ListJobs(  # noqa: N802
        self, stream: Stream[gpb.ListJobsRequest, gpb.ListJobsResponse]
    ) -> None:
        await stream.recv_message()
        jobs = [job_info(job) for job in self.manager.jobs()]
        await stream.send_message(gpb.ListJobsResponse(jobs=jobs))

    @handler
    async def Schedule(  # noqa: N802
        self, stream: Stream[gpb.ScheduleRequest, gpb.ScheduleResponse]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        await stream.send_message(await call_trio(self._schedule, req))

    @handler
    async def ListInstances(  # noqa: N802
        self, stream: Stream[gpb.ListInstancesRequest, gpb.ListInstancesResponse]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        await stream.send_message(await call_trio(self._list_instances, req))

    @handler
    async def GetInstance(  # noqa: N802
        self, stream: Stream[gpb.GetInstanceRequest, gpb.Instance]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        inst = await call_trio(self._get, req.uuid)
        await stream.send_message(instance_to_gojob(inst))

    @handler
    async def Cancel(self, stream: Stream[gpb.CancelRequest, gpb.CancelResponse]) -> None:  # noqa: N802
        req = await stream.recv_message()
        assert req is not None
        await stream.send_message(await call_trio(self._cancel, req))

    @handler
    async def Retry(self, stream: Stream[gpb.RetryRequest, gpb.RetryResponse]) -> None:  # noqa: N802
        req = await stream.recv_message()
        assert req is not None
        await stream.send_message(await call_trio(self._retry, req))

    @handler
    async def GetHistory(  # noqa: N802
        self, stream: Stream[gpb.GetHistoryRequest, gpb.GetHistoryResponse]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        await stream.send_message(await call_trio(self._history, req))

    @handler
    async def GetLogs(self, stream: Stream[gpb.GetLogsRequest, gpb.GetLogsResponse]) -> None:  # noqa: N802
        req = await stream.recv_message()
        assert req is not None
        await stream.send_message(await call_trio(self._logs, req))

    @handler
    async def FollowLogs(self, stream: Stream[gpb.FollowLogsRequest, gpb.LogEntry]) -> None:  # noqa: N802
        req = await stream.recv_message()
        assert req is not None
        await call_trio(self._follow, req, _sender(stream))

    @handler
    async def WatchEvents(  # noqa: N802
        self, stream: Stream[gpb.WatchEventsRequest, gpb.InstanceEvent]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        await call_trio(self._watch, req, _sender(stream))

    @handler
    async def ListSchedules(  # noqa: N802
        self, stream: Stream[gpb.ListSchedulesRequest, gpb.ListSchedulesResponse]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        await stream.send_message(await call_trio(self._schedules, rq.opt_str(req, "kind")))

    @handler
    async def GetSchedule(  # noqa: N802
        self, stream: Stream[gpb.ScheduleIdRequest, gpb.RecurringSchedule]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        await stream.send_message(await call_trio(self._schedule_op, "get", req.id))

    @handler
    async def PauseSchedule(  # noqa: N802
        self, stream: Stream[gpb.ScheduleIdRequest, gpb.RecurringSchedule]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        await stream.send_message(await call_trio(self._schedule_op, "pause", req.id))

    @handler
    async def ResumeSchedule(  # noqa: N802
        self, stream: Stream[gpb.ScheduleIdRequest, gpb.RecurringSchedule]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        await stream.send_message(await call_trio(self._schedule_op, "resume", req.id))

    @handler
    async def DeleteSchedule(  # noqa: N802
        self, stream: Stream[gpb.ScheduleIdRequest, gpb.DeleteScheduleResponse]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        await call_trio(self._delete_schedule, req.id)
        await stream.send_message(gpb.DeleteScheduleResponse())

    @handler
    async def ResizeWorkers(  # noqa: N802
        self, stream: Stream[gpb.ResizeWorkersRequest, gpb.ResizeWorkersResponse]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        await stream.send_message(await call_trio(self._resize, req))

    @handler
    async def ListNodes(  # noqa: N802
        self, stream: Stream[gpb.ListNodesRequest, gpb.ListNodesResponse]
    ) -> None:
        await stream.recv_message()
        await stream.send_message(await call_trio(self._nodes))
