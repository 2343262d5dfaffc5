"""Server streams (log follow, instance events), health, reflection and shutdown, with
grpclib's client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from google.protobuf.descriptor_pb2 import FileDescriptorProto
from grpclib import GRPCError
from grpclib.const import Status
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.reflection.v1.reflection_grpc import ServerReflectionStub
from grpclib.reflection.v1.reflection_pb2 import (
    ServerReflectionRequest,
    ServerReflectionResponse,
)

from gojob import Manager, State
from gojob._generated import gojob_pb2 as gpb
from gojob._generated import service_pb2 as pb
from gojob._generated.gojob_grpc import GojobServiceStub
from gojob.server import serve

from .conftest import Api, _consume, close_client, gates, open_client

SERVICES = {"job.v1.JobService", "gojob.v1.GojobService", "grpc.health.v1.Health"}


async def test_follow_logs_receives_lines_as_they_are_logged(api: Api) -> None:
    lines = 3
    opened = gates("follow", lines)
    inst = await api.manager.schedule("chatty", "follow", lines)
    received: list[Any] = []

    async def on_message(entry: Any) -> None:
        received.append(entry)
        # The job writes its next line only once this one arrived: the stream is live.
        opened[len(received) - 1].set()

    with trio.fail_after(10):
        await api.stream(api.gojob.FollowLogs, gpb.FollowLogsRequest(uuid=inst.uuid), on_message)
    # The stream ended by itself: the instance is final.
    assert [e.message for e in received] == ["line 0", "line 1", "line 2"]
    assert {e.uuid for e in received} == {inst.uuid}
    assert (await api.manager.get(inst.uuid)).state is State.COMPLETED


async def test_follow_logs_of_a_final_instance_sends_them_and_ends(api: Api) -> None:
    for gate in gates("done", 2):
        gate.set()
    inst = await api.manager.wait(await api.manager.schedule("chatty", "done", 2), timeout=10)
    received: list[str] = []

    async def on_message(entry: Any) -> None:
        received.append(entry.message)

    with trio.fail_after(10):
        await api.stream(api.gojob.FollowLogs, gpb.FollowLogsRequest(uuid=inst.uuid), on_message)
    assert received == ["line 0", "line 1"]
    with trio.fail_after(10):
        await api.stream(
            api.gojob.FollowLogs,
            gpb.FollowLogsRequest(uuid=inst.uuid, min_level=gpb.LOG_LEVEL_WARN),
            on_message,
        )
    assert received == ["line 0", "line 1"]


async def _nothing(_: Any) -> None:
    raise AssertionError("no message expected")


async def test_follow_logs_errors(api: Api) -> None:
    for request, status in (
        (gpb.FollowLogsRequest(uuid="no-such-uuid"), Status.NOT_FOUND),
        (gpb.FollowLogsRequest(), Status.INVALID_ARGUMENT),
        (gpb.FollowLogsRequest(uuid="x", min_level=99), Status.INVALID_ARGUMENT),  # type: ignore[arg-type]
    ):
        with trio.fail_after(10), pytest.raises(GRPCError) as info:
            await api.stream(api.gojob.FollowLogs, request, _nothing)
        assert info.value.status is status


async def test_watch_events_sees_state_changes(api: Api) -> None:
    seen: list[Any] = []
    started = trio.Event()
    completed = trio.Event()

    async def on_message(event: Any) -> None:
        seen.append(event)
        if event.type == gpb.EVENT_TYPE_STARTED:
            started.set()
        if event.state == pb.JOB_STATE_COMPLETED:
            completed.set()

    async def watch() -> None:
        await api.stream(api.gojob.WatchEvents, gpb.WatchEventsRequest(kind="add"), on_message)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await started.wait()
            await api.manager.schedule("slow", 0.0)  # another kind: not shown
            inst = await api.manager.schedule("add", 1, 2)
            await completed.wait()
            nursery.cancel_scope.cancel()  # the client goes away mid-stream
    assert seen[0].type == gpb.EVENT_TYPE_STARTED
    changes = [(e.uuid, e.state) for e in seen[1:]]
    assert {uuid for uuid, _ in changes} == {inst.uuid}
    states = [state for _, state in changes]
    assert states[-2:] == [pb.JOB_STATE_PROCESSING, pb.JOB_STATE_COMPLETED]
    assert all(e.kind == "add" and e.HasField("observed_at") for e in seen[1:])
    # The server shrugged off the client's reset.
    info = await api.call(api.gojob.GetServerInfo, gpb.GetServerInfoRequest())
    assert info.node_id == api.manager.node_id


async def test_watch_one_instance_until_final(api: Api) -> None:
    opened = gates("watch", 1)
    inst = await api.manager.schedule("chatty", "watch", 1)
    seen: list[Any] = []

    async def on_message(event: Any) -> None:
        seen.append(event)
        if event.type == gpb.EVENT_TYPE_STATE and event.state == pb.JOB_STATE_PROCESSING:
            opened[0].set()

    request = gpb.WatchEventsRequest(uuid=inst.uuid, until_final=True, include_instance=True)
    with trio.fail_after(10):
        await api.stream(api.gojob.WatchEvents, request, on_message)
    assert seen[0].type == gpb.EVENT_TYPE_STARTED
    # Its state when the watch began, then every change to the end.
    assert seen[1].state in (pb.JOB_STATE_SCHEDULED, pb.JOB_STATE_PROCESSING)
    assert seen[-1].state == pb.JOB_STATE_COMPLETED
    assert seen[-1].instance.uuid == inst.uuid
    assert seen[-1].instance.result_json == "1"
    err = None
    try:
        await api.stream(
            api.gojob.WatchEvents, gpb.WatchEventsRequest(uuid="nope", until_final=True), _nothing
        )
    except GRPCError as exc:
        err = exc
    assert err is not None
    assert err.status is Status.NOT_FOUND


async def test_health_is_serving(api: Api) -> None:
    health = HealthStub(api.channel)
    for service in ("", "job.v1.JobService", "gojob.v1.GojobService"):
        reply = await api.call(health.Check, HealthCheckRequest(service=service))
        assert reply.status == HealthCheckResponse.SERVING
    err = await api.error(health.Check, HealthCheckRequest(service="nope.Service"))
    assert err.status is Status.NOT_FOUND


async def _reflect(stub: ServerReflectionStub, request: Any) -> Any:
    async with stub.ServerReflectionInfo.open() as stream:
        await stream.send_message(request, end=True)
        reply = await stream.recv_message()
        await stream.recv_trailing_metadata()
    return reply


async def test_reflection_lists_the_services(api: Api) -> None:
    stub = ServerReflectionStub(api.channel)
    reply: ServerReflectionResponse = await api.bridge.run(
        _reflect, stub, ServerReflectionRequest(list_services="")
    )
    names = {s.name for s in reply.list_services_response.service}
    assert names == SERVICES
    reply = await api.bridge.run(
        _reflect, stub, ServerReflectionRequest(file_containing_symbol="gojob.v1.GojobService")
    )
    files = [
        FileDescriptorProto.FromString(raw)
        for raw in reply.file_descriptor_response.file_descriptor_proto
    ]
    assert files[0].name == "gojob/v1/gojob.proto"
    assert "job/v1/service.proto" in files[0].dependency
    (service,) = files[0].service
    assert "FollowLogs" in {m.name for m in service.method}


async def _health_watch(stub: HealthStub, on_message: Any) -> None:
    from gojob._aio import call_trio

    async with stub.Watch.open() as stream:
        await stream.send_message(HealthCheckRequest(service=""), end=True)
        async for message in stream:
            await call_trio(on_message, message)


async def test_shutdown_ends_open_streams_with_unavailable(api_manager: Manager) -> None:
    """Log follow, events and health watch, open when the server stops: each client gets
    UNAVAILABLE at once instead of hanging."""
    gates("shutdown", 1)
    inst = await api_manager.schedule("chatty", "shutdown", 1)
    server_scope = trio.CancelScope()

    async def run_server(task_status: trio.TaskStatus[int]) -> None:
        with server_scope:
            await serve(api_manager, "127.0.0.1", 0, task_status=task_status)

    results: dict[str, BaseException | None] = {}
    first = {name: trio.Event() for name in ("follow", "events", "health")}

    async def run(name: str, coro: Callable[..., Awaitable[None]], *args: Any) -> None:
        async def on_message(_: Any) -> None:
            first[name].set()

        try:
            await bridge.run(coro, *args, on_message)
            results[name] = None
        except GRPCError as exc:
            results[name] = exc

    async with trio.open_nursery() as nursery:
        port = await nursery.start(run_server)
        bridge, channel = await open_client(api_manager, port)
        stub = GojobServiceStub(channel)
        try:
            with trio.fail_after(10):
                async with trio.open_nursery() as clients:
                    follow = gpb.FollowLogsRequest(uuid=inst.uuid)
                    clients.start_soon(run, "follow", _consume, stub.FollowLogs, follow)
                    events = gpb.WatchEventsRequest()
                    clients.start_soon(run, "events", _consume, stub.WatchEvents, events)
                    clients.start_soon(run, "health", _health_watch, HealthStub(channel))
                    for event in first.values():
                        await event.wait()
                    server_scope.cancel()  # the server stops: the clients' calls end
        finally:
            await close_client(bridge, channel)
    for name in ("follow", "events", "health"):
        err = results[name]
        assert isinstance(err, GRPCError), (name, err)
        assert err.status is Status.UNAVAILABLE
        assert err.message == "the server is shutting down"
