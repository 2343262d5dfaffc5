"""Commands about instances: ``instances``, ``instance``, ``history``, ``logs``,
``cancel``, ``retry``."""

from __future__ import annotations

import contextlib
from typing import Any

from .._generated import gojob_pb2 as gpb
from . import _render as r
from . import _values as v
from ._context import Ctx, usage
from ._output import message_data

__all__ = ["cancel", "history", "instance", "instances", "logs", "retry"]


def _more(ctx: Ctx, reply: Any, what: str) -> None:
    if reply.HasField("next_offset"):
        ctx.note(f"more {what} match: add --offset {reply.next_offset} for the next page")


async def _exists(ctx: Ctx, uuid: str) -> None:
    """NOT_FOUND (exit 1) when no instance has this uuid."""
    await ctx.client.call(ctx.client.stub.GetInstance, gpb.GetInstanceRequest(uuid=uuid))


async def instances(ctx: Ctx) -> int:
    a = ctx.args
    req = gpb.ListInstancesRequest(
        states=ctx.states(),
        order_by=v.ORDERS[a.order_by],
        descending=a.desc,
        limit=a.limit,
        offset=a.offset,
    )
    if a.kind is not None:
        req.kind = a.kind
    if a.schedule_id is not None:
        req.schedule_id = a.schedule_id
    ctx.window(req)
    reply = await ctx.client.call(ctx.client.stub.ListInstances, req)
    if ctx.out.as_json:
        ctx.out.json(message_data(reply))
        return 0
    if reply.instances:
        ctx.out.text(r.instances_table(ctx.out, reply.instances))
    else:
        ctx.note("no instances match")
    _more(ctx, reply, "instances")
    return 0


async def instance(ctx: Ctx) -> int:
    req = gpb.GetInstanceRequest(uuid=ctx.args.uuid)
    found = await ctx.client.call(ctx.client.stub.GetInstance, req)
    if ctx.out.as_json:
        ctx.out.json(message_data(found))
    else:
        ctx.out.text(r.instance_fields(ctx.out, found))
    return 0


async def history(ctx: Ctx) -> int:
    a = ctx.args
    req = gpb.GetHistoryRequest(
        states=ctx.states(), descending=a.desc, limit=a.limit, offset=a.offset
    )
    if a.uuid is not None:
        req.uuid = a.uuid
    if a.kind is not None:
        req.kind = a.kind
    ctx.window(req)
    reply = await ctx.client.call(ctx.client.stub.GetHistory, req)
    if not reply.records and a.uuid is not None:
        await _exists(ctx, a.uuid)
    if ctx.out.as_json:
        ctx.out.json(message_data(reply))
        return 0
    if reply.records:
        ctx.out.text(r.history_table(ctx.out, reply.records, one=a.uuid is not None))
    else:
        ctx.note("no history records match")
    _more(ctx, reply, "records")
    return 0


async def logs(ctx: Ctx) -> int:
    a = ctx.args
    if a.follow:
        return await _follow(ctx)
    req = gpb.GetLogsRequest(descending=a.desc, limit=a.limit, offset=a.offset)
    if a.uuid is not None:
        req.uuid = a.uuid
    if a.kind is not None:
        req.kind = a.kind
    if a.level is not None:
        req.min_level = a.level
    ctx.window(req)
    reply = await ctx.client.call(ctx.client.stub.GetLogs, req)
    if not reply.entries and a.uuid is not None:
        await _exists(ctx, a.uuid)
    if ctx.out.as_json:
        ctx.out.json(message_data(reply))
        return 0
    one = a.uuid is not None
    for entry in reply.entries:
        ctx.out.text(r.log_line(ctx.out, entry, one=one))
    if not reply.entries:
        ctx.note("no log lines match")
    _more(ctx, reply, "lines")
    return 0


async def _follow(ctx: Ctx) -> int:
    """The log so far, then each line as it is written; returns once the instance is
    final (its state is noted on stderr)."""
    a = ctx.args
    if a.uuid is None:
        raise usage("logs --follow needs an instance's UUID")
    others = [f"--{n}" for n in ("kind", "since", "until") if getattr(a, n) is not None]
    others += [f"--{n}" for n in ("desc", "limit", "offset") if getattr(a, n)]
    if others:
        raise usage(f"logs --follow does not take {', '.join(others)}")
    client = ctx.client
    # A unary call first: an unknown uuid or an unreachable server is reported within
    # the deadline (a follow may rightly wait for its first line for ever).
    await _exists(ctx, a.uuid)
    req = gpb.FollowLogsRequest(uuid=a.uuid, min_level=a.level or gpb.LOG_LEVEL_UNSPECIFIED)
    stream = client.stream(client.stub.FollowLogs, req, first_within=False)
    async with contextlib.aclosing(stream) as entries:
        async for entry in entries:
            if ctx.out.as_json:
                ctx.out.json_line(message_data(entry))
            else:
                ctx.out.text(r.log_line(ctx.out, entry, one=True))
    final = await client.call(client.stub.GetInstance, gpb.GetInstanceRequest(uuid=a.uuid))
    ctx.note(f"{final.kind} {final.uuid} is {r.state(final.state)}")
    return 0


async def cancel(ctx: Ctx) -> int:
    a = ctx.args
    states = ctx.states()
    if a.uuid is None and a.kind is None and not states and not a.all:
        raise usage("say what to cancel: a UUID, --kind, --state, or --all")
    if a.all and (a.uuid is not None or a.kind is not None or states):
        raise usage("--all takes no other filter")
    req = gpb.CancelRequest(states=states, all=a.all)
    if a.uuid is not None:
        req.uuid = a.uuid
    if a.kind is not None:
        req.kind = a.kind
    reply = await ctx.client.call(ctx.client.stub.Cancel, req)
    if ctx.out.as_json:
        ctx.out.json(message_data(reply))
        return 0
    if reply.instances:
        ctx.out.text(r.instances_table(ctx.out, reply.instances))
    ctx.note(f"{len(reply.instances)} instance(s) canceled (running ones end shortly)")
    return 0


async def retry(ctx: Ctx) -> int:
    a = ctx.args
    req = gpb.RetryRequest(uuid=a.uuid)
    if a.after is not None:
        req.after.FromTimedelta(a.after)
    reply = await ctx.client.call(ctx.client.stub.Retry, req)
    if ctx.out.as_json:
        ctx.out.json(message_data(reply))
    else:
        ctx.out.text(r.instances_table(ctx.out, [reply.instance]))
    return 0
