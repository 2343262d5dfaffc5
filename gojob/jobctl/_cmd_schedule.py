"""``jobctl schedule`` and ``jobctl schedules``."""

from __future__ import annotations

from typing import Any

from .._generated import gojob_pb2 as gpb
from . import _render as r
from . import _values as v
from ._context import Ctx, usage
from ._output import message_data

__all__ = ["schedule", "schedules"]


def schedule_request(a: Any) -> gpb.ScheduleRequest:
    """The ScheduleRequest of ``jobctl schedule``'s arguments. Cross-option rules (e.g.
    --tz without --cron) are the server's to judge, so they are stated once."""
    if a.args and (a.json_args is not None or a.kwargs is not None):
        raise usage("give positional ARGs (strings) or --json-args/--kwargs (JSON), not both")
    req = gpb.ScheduleRequest(kind=a.kind, arguments=a.args)
    if a.json_args is not None:
        req.args_json = a.json_args
    if a.kwargs is not None:
        req.kwargs_json = a.kwargs
    if a.after is not None:
        req.after.FromTimedelta(a.after)
    elif a.at is not None:
        req.at.FromDatetime(a.at)
    elif a.every is not None:
        req.every.FromTimedelta(a.every)
    elif a.cron is not None:
        req.cron = a.cron
    if a.tz is not None:
        req.tz = a.tz
    if a.priority is not None:
        req.priority = a.priority
    if a.retries is not None:
        req.max_retries = a.retries
    for name in ("timeout", "backoff", "misfire_grace", "jitter"):
        value = getattr(a, name)
        if value is not None:
            getattr(req, name).FromTimedelta(value)
    if a.dedupe_key is not None:
        req.dedupe_key = a.dedupe_key
    if a.schedule_id is not None:
        req.schedule_id = a.schedule_id
    if a.overlap is not None:
        req.overlap = v.OVERLAPS[a.overlap]
    if a.misfire is not None:
        req.misfire = v.MISFIRES[a.misfire]
    if a.misfire_cap is not None:
        req.misfire_cap = a.misfire_cap
    if a.start is not None:
        req.start.FromDatetime(a.start)
    return req


async def schedule(ctx: Ctx) -> int:
    reply = await ctx.client.call(ctx.client.stub.Schedule, schedule_request(ctx.args))
    if reply.WhichOneof("result") == "schedule":
        if ctx.out.as_json:
            ctx.out.json({"schedule": message_data(reply.schedule)})
        else:
            ctx.out.text(r.schedules_table(ctx.out, [reply.schedule]))
    elif ctx.out.as_json:
        ctx.out.json({"instance": message_data(reply.instance)})
    else:
        ctx.out.text(r.instances_table(ctx.out, [reply.instance]))
    return 0


async def schedules(ctx: Ctx) -> int:
    a = ctx.args
    client = ctx.client
    action = a.action or "list"
    if action == "list":
        req = gpb.ListSchedulesRequest()
        kind = getattr(a, "kind", None)
        if kind is not None:
            req.kind = kind
        reply = await client.call(client.stub.ListSchedules, req)
        if ctx.out.as_json:
            ctx.out.json(message_data(reply))
        elif reply.schedules:
            ctx.out.text(r.schedules_table(ctx.out, reply.schedules))
        else:
            ctx.note("no recurring schedules")
        return 0
    by_id = gpb.ScheduleIdRequest(id=a.id)
    if action == "delete":
        await client.call(client.stub.DeleteSchedule, by_id)
        if ctx.out.as_json:
            ctx.out.json({"deleted": a.id})
        else:
            ctx.out.text(f"deleted schedule {a.id}")
        return 0
    methods = {
        "show": client.stub.GetSchedule,
        "pause": client.stub.PauseSchedule,
        "resume": client.stub.ResumeSchedule,
    }
    found = await client.call(methods[action], by_id)
    if ctx.out.as_json:
        ctx.out.json(message_data(found))
    elif action == "show":
        ctx.out.text(r.schedule_fields(ctx.out, found))
    else:
        ctx.out.text(r.schedules_table(ctx.out, [found]))
    return 0
