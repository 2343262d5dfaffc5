"""Commands about the server and its node: ``workers``, ``nodes``, ``watch``, ``jobs``,
``stats``, ``version``."""

from __future__ import annotations

import contextlib
from typing import Any

from .._generated import gojob_pb2 as gpb
from .._version import __version__
from . import _render as r
from ._context import Ctx, usage
from ._output import fmt_duration, message_data, table

__all__ = ["jobs", "nodes", "stats", "version", "watch", "workers"]


async def workers(ctx: Ctx) -> int:
    a = ctx.args
    client = ctx.client
    if a.count is None:
        if a.cancel_busy:
            raise usage("--cancel-busy goes with a new worker count")
        st = await client.call(client.stub.GetStatistics, gpb.GetStatisticsRequest())
        data = {
            "node_id": st.node_id,
            "workers": st.workers,
            "live_workers": st.live_workers,
            "busy_workers": st.busy_workers,
            "in_flight": st.in_flight,
        }
        if ctx.out.as_json:
            ctx.out.json(data)
        else:
            ctx.out.text(table(["NODE", "TARGET", "LIVE", "BUSY", "IN FLIGHT"], [
                [st.node_id, str(st.workers), str(st.live_workers), str(st.busy_workers),
                 str(st.in_flight)],
            ]))  # fmt: skip
        return 0
    req = gpb.ResizeWorkersRequest(workers=a.count, cancel_busy=a.cancel_busy)
    reply = await client.call(client.stub.ResizeWorkers, req)
    if ctx.out.as_json:
        ctx.out.json(message_data(reply))
    else:
        ctx.out.text(f"workers: {reply.previous} -> {reply.workers}")
    return 0


async def nodes(ctx: Ctx) -> int:
    reply = await ctx.client.call(ctx.client.stub.ListNodes, gpb.ListNodesRequest())
    if ctx.out.as_json:
        ctx.out.json(message_data(reply))
    else:
        ctx.out.text(r.nodes_table(ctx.out, reply.nodes))
    return 0


async def watch(ctx: Ctx) -> int:
    """State changes until the server ends the stream (``--until-final``) or Ctrl-C."""
    a = ctx.args
    if a.until_final and a.uuid is None:
        raise usage("--until-final needs --uuid")
    req = gpb.WatchEventsRequest(
        states=ctx.states(), until_final=a.until_final, include_instance=a.with_instance
    )
    if a.uuid is not None:
        req.uuid = a.uuid
    if a.kind is not None:
        req.kind = a.kind
    client = ctx.client
    # STARTED comes at once: a dead server is reported within the deadline.
    stream = client.stream(client.stub.WatchEvents, req, first_within=True)
    async with contextlib.aclosing(stream) as events:
        async for event in events:
            if ctx.out.as_json:
                ctx.out.json_line(message_data(event))
            else:
                ctx.out.text(r.event_line(ctx.out, event))
    return 0


async def jobs(ctx: Ctx) -> int:
    """The kinds registered on the served node, then the kinds that have queued
    instances but no live node to run them (they wait until one registers them)."""
    client = ctx.client
    listed = await client.call(client.stub.ListJobs, gpb.ListJobsRequest())
    st = await client.call(client.stub.GetStatistics, gpb.GetStatisticsRequest())
    unserved = dict(st.unserved_kinds)
    if ctx.out.as_json:
        ctx.out.json({**message_data(listed), "unserved_kinds": dict(sorted(unserved.items()))})
        return 0
    if listed.jobs:
        ctx.out.text(r.jobs_table(listed.jobs))
    else:
        ctx.note("no job kinds registered on this node")
    if unserved:
        ctx.out.text(
            "\nUNSERVED: kinds with queued instances that no live node registers\n"
            "(they wait until a node registering them starts):\n" + r.unserved_table(unserved)
        )
    return 0


async def stats(ctx: Ctx) -> int:
    st = await ctx.client.call(ctx.client.stub.GetStatistics, gpb.GetStatisticsRequest())
    if ctx.out.as_json:
        ctx.out.json(message_data(st))
        return 0
    lines = [
        f"node:       {st.node_id}",
        f"workers:    {st.workers} target, {st.live_workers} live, {st.busy_workers} busy",
        f"in flight:  {st.in_flight}",
        f"queued:     {st.queued}",
    ]
    if st.counts:
        rows = [[c.kind, r.state(c.state), str(c.count)] for c in st.counts]
        lines += ["", table(["KIND", "STATE", "COUNT"], rows)]
    if st.unserved_kinds:
        lines += ["", r.unserved_table(dict(st.unserved_kinds))]
    ctx.out.text("\n".join(lines))
    return 0


async def version(ctx: Ctx) -> int:
    client_line = f"client:   jobctl {__version__}"
    if not ctx.out.as_json:
        ctx.out.text(client_line)
    info = await ctx.client.call(ctx.client.stub.GetServerInfo, gpb.GetServerInfoRequest())
    if ctx.out.as_json:
        data: dict[str, Any] = {"client": {"version": __version__}, "server": message_data(info)}
        ctx.out.json(data)
        return 0
    ctx.out.text(
        "\n".join(
            [
                f"server:   gojob {info.version} (gojob.v1 API {info.api_version}) "
                f"at {ctx.client.target.address}",
                f"node:     {info.node_id}",
                f"store:    {info.store}",
                f"workers:  {info.workers}",
                f"uptime:   {fmt_duration(info.uptime)}",
                f"kinds:    {', '.join(info.kinds) or '-'}",
                f"limits:   {info.lookup_limit} rows per lookup, "
                f"{info.max_message_bytes} bytes per message",
            ]
        )
    )
    return 0
