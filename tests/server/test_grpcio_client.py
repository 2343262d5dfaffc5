"""Every call of both services with an independent client: Google's grpcio, its stubs
generated from the same protos by grpcio-tools at test time, run in threads.

Proves the wire format (HTTP/2, trailers, statuses, streams) against the reference
gRPC implementation, not only against grpclib talking to itself.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, timedelta
from functools import partial
from typing import Any, TypeVar

import pytest
import trio
from google.protobuf.descriptor_pb2 import FileDescriptorProto
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse
from grpclib.reflection.v1alpha.reflection_pb2 import (
    ServerReflectionRequest,
    ServerReflectionResponse,
)

import gojob
from gojob import Manager, State
from gojob.server import serve
from gojob.store.base import NodeRecord

from .conftest import Api, GrpcioStubs, gates

grpc = pytest.importorskip("grpc")  # Google's implementation (comes with grpcio-tools)

T = TypeVar("T")


class Client:
    """grpcio stubs on one channel; ``run`` calls them in a worker thread."""

    def __init__(self, stubs: GrpcioStubs, port: int) -> None:
        self.s = stubs
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.jobs = stubs.service_pb2_grpc.JobServiceStub(self.channel)
        self.gojob = stubs.gojob_pb2_grpc.GojobServiceStub(self.channel)
        self.pb = stubs.service_pb2
        self.gpb = stubs.gojob_pb2

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await trio.to_thread.run_sync(partial(fn, *args, timeout=10))

    async def code(self, fn: Callable[..., Any], request: Any) -> tuple[Any, str]:
        """The status code and details of a call that must fail."""

        def call() -> tuple[Any, str]:
            try:
                result = fn(request, timeout=10)
                if isinstance(result, Iterator):
                    list(result)
            except grpc.RpcError as exc:
                return exc.code(), exc.details()
            raise AssertionError(f"{request!r} did not fail")

        return await trio.to_thread.run_sync(call)

    async def stream(self, fn: Callable[..., Any], request: Any) -> list[Any]:
        return await trio.to_thread.run_sync(lambda: list(fn(request, timeout=10)))


@pytest.fixture
async def client(api: Api, grpcio_stubs: GrpcioStubs) -> AsyncIterator[Client]:
    c = Client(grpcio_stubs, api.port)
    try:
        yield c
    finally:
        c.channel.close()


def dur(client: Client, value: float) -> Any:
    d = client.s.gojob_pb2.google_dot_protobuf_dot_duration__pb2.Duration()
    d.FromTimedelta(timedelta(seconds=value))
    return d


async def test_go_job_calls_field_by_field(client: Client, api: Api) -> None:
    pb = client.pb
    version = await client.run(client.jobs.GetVersion, pb.GetVersionRequest())
    assert (version.version, version.api_version) == (gojob.__version__, "1")
    jobs = await client.run(client.jobs.ListRegisteredJobs, pb.ListRegisteredJobsRequest())
    by_kind = {j.kind: j for j in jobs.jobs}
    assert by_kind["add"].description == "adds two ints"
    assert by_kind["daily"].cron_spec == "0 7 * * *"
    assert not by_kind["add"].HasField("cron_spec")

    reply = await client.run(
        client.jobs.ScheduleJob, pb.ScheduleJobRequest(kind="add", arguments=["4", "5"], priority=1)
    )
    uuid = reply.instance.uuid
    assert reply.instance.kind == "add"
    assert list(reply.instance.arguments) == ["4", "5"]
    done = await api.manager.wait(uuid, timeout=10)
    found = await client.run(
        client.jobs.LookupInstances, pb.LookupInstancesRequest(query=pb.Query(uuid=uuid))
    )
    (inst,) = found.instances
    assert (inst.kind, inst.uuid, inst.state) == ("add", uuid, pb.JOB_STATE_COMPLETED)
    assert list(inst.arguments) == ["4", "5"]
    assert list(inst.results) == ["9"]
    assert not inst.HasField("error")
    assert inst.attempts == 1
    assert done.completed_at is not None
    got = inst.completed_at.ToDatetime(tzinfo=UTC)
    assert abs(got - done.completed_at) < timedelta(milliseconds=1)
    for name in ("created_at", "scheduled_at", "processed_at"):
        assert inst.HasField(name)
    for name in ("terminated_at", "canceled_at", "timed_out_at"):
        assert not inst.HasField(name)

    queued = await api.manager.schedule("slow", 1.0, after=3600)
    canceled = await client.run(
        client.jobs.CancelInstances, pb.CancelInstancesRequest(query=pb.Query(kind="slow"))
    )
    assert [(i.uuid, i.state) for i in canceled.instances] == [
        (queued.uuid, pb.JOB_STATE_CANCELLED)
    ]
    code, _ = await client.code(client.jobs.ScheduleJob, pb.ScheduleJobRequest(kind="nope"))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_gojob_calls(client: Client, api: Api) -> None:
    g, gpb, pb = client.gojob, client.gpb, client.pb
    m: Manager = api.manager
    info = await client.run(g.GetServerInfo, gpb.GetServerInfoRequest())
    assert (info.node_id, info.store, info.workers) == (m.node_id, "memory", 2)
    jobs = await client.run(g.ListJobs, gpb.ListJobsRequest())
    assert {j.kind: j.signature for j in jobs.jobs}["scaled"] == "items: list[int], scale: int = 1"

    scheduled = await client.run(
        g.Schedule,
        gpb.ScheduleRequest(kind="scaled", args_json="[[2]]", kwargs_json='{"scale": 3}'),
    )
    uuid = scheduled.instance.uuid
    await m.wait(uuid, timeout=10)
    got = await client.run(g.GetInstance, gpb.GetInstanceRequest(uuid=uuid))
    assert (got.state, json.loads(got.result_json)) == (pb.JOB_STATE_COMPLETED, [6])
    listed = await client.run(g.ListInstances, gpb.ListInstancesRequest(kind="scaled"))
    assert [i.uuid for i in listed.instances] == [uuid]
    history = await client.run(g.GetHistory, gpb.GetHistoryRequest(uuid=uuid))
    assert history.records[-1].state == pb.JOB_STATE_COMPLETED
    stats = await client.run(g.GetStatistics, gpb.GetStatisticsRequest())
    counts = {(c.kind, c.state): c.count for c in stats.counts}
    assert counts[("scaled", pb.JOB_STATE_COMPLETED)] == 1

    failed = await m.wait(await m.schedule("fail", "x"), timeout=10)
    retried = await client.run(g.Retry, gpb.RetryRequest(uuid=failed.uuid, after=dur(client, 3600)))
    assert retried.instance.state == pb.JOB_STATE_SCHEDULED
    canceled = await client.run(g.Cancel, gpb.CancelRequest(uuid=failed.uuid))
    assert [i.state for i in canceled.instances] == [pb.JOB_STATE_CANCELLED]

    cron = await client.run(
        g.Schedule,
        gpb.ScheduleRequest(kind="add", args_json="[1, 2]", cron="*/5 * * * *", schedule_id="c5"),
    )
    assert cron.schedule.id == "c5"
    listed = await client.run(g.ListSchedules, gpb.ListSchedulesRequest(kind="add"))
    assert [s.id for s in listed.schedules] == ["c5"]
    assert (await client.run(g.PauseSchedule, gpb.ScheduleIdRequest(id="c5"))).paused
    assert not (await client.run(g.ResumeSchedule, gpb.ScheduleIdRequest(id="c5"))).paused
    assert (await client.run(g.GetSchedule, gpb.ScheduleIdRequest(id="c5"))).kind == "add"
    await client.run(g.DeleteSchedule, gpb.ScheduleIdRequest(id="c5"))
    code, details = await client.code(g.GetSchedule, gpb.ScheduleIdRequest(id="c5"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert "c5" in details

    resized = await client.run(g.ResizeWorkers, gpb.ResizeWorkersRequest(workers=3))
    assert (resized.previous, resized.workers) == (2, 3)
    await m.store.heartbeat(NodeRecord("grpcio-node", workers=1), 30.0)
    try:
        nodes = await client.run(g.ListNodes, gpb.ListNodesRequest())
        assert "grpcio-node" in {n.node_id for n in nodes.nodes}
    finally:
        await m.store.remove_node("grpcio-node")


async def test_streams(client: Client, api: Api) -> None:
    g, gpb, pb = client.gojob, client.gpb, client.pb
    for gate in gates("grpcio", 2):
        gate.set()
    inst = await api.manager.schedule("chatty", "grpcio", 2)
    with trio.fail_after(10):
        entries = await client.stream(g.FollowLogs, gpb.FollowLogsRequest(uuid=inst.uuid))
    assert [e.message for e in entries] == ["line 0", "line 1"]
    assert (await api.manager.get(inst.uuid)).state is State.COMPLETED
    logs = await client.run(g.GetLogs, gpb.GetLogsRequest(uuid=inst.uuid))
    assert [e.message for e in logs.entries] == ["line 0", "line 1"]

    with trio.fail_after(10):
        events = await client.stream(
            g.WatchEvents, gpb.WatchEventsRequest(uuid=inst.uuid, until_final=True)
        )
    assert [e.type for e in events] == [gpb.EVENT_TYPE_STARTED, gpb.EVENT_TYPE_STATE]
    assert events[1].state == pb.JOB_STATE_COMPLETED
    code, _ = await client.code(g.FollowLogs, gpb.FollowLogsRequest(uuid="nope"))
    assert code == grpc.StatusCode.NOT_FOUND


async def test_bad_inputs(client: Client, api: Api) -> None:
    g, gpb = client.gojob, client.gpb
    cases = [
        (gpb.ScheduleRequest(kind="nope"), grpc.StatusCode.NOT_FOUND),
        (gpb.ScheduleRequest(kind="add", args_json="[1,"), grpc.StatusCode.INVALID_ARGUMENT),
        (gpb.ScheduleRequest(kind="add", arguments=["1", "x"]), grpc.StatusCode.INVALID_ARGUMENT),
        (gpb.ScheduleRequest(kind="add", cron="bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (
            gpb.ScheduleRequest(kind="fail", arguments=["x" * (5 << 20)]),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ),
    ]
    for request, expected in cases:
        code, details = await client.code(g.Schedule, request)
        assert code == expected, (request.kind, details)
        assert details
    code, _ = await client.code(g.ResizeWorkers, gpb.ResizeWorkersRequest(workers=-1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    # Bytes that are no protobuf at all.
    raw = client.channel.unary_unary("/gojob.v1.GojobService/GetInstance")
    code, _ = await client.code(raw, b"\xff\xff\xff")
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    missing = client.channel.unary_unary("/gojob.v1.GojobService/NoSuchCall")
    code, _ = await client.code(missing, b"")
    assert code == grpc.StatusCode.UNIMPLEMENTED
    info = await client.run(g.GetServerInfo, gpb.GetServerInfoRequest())
    assert info.version == gojob.__version__


async def test_health_and_reflection(client: Client) -> None:
    check = client.channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=HealthCheckRequest.SerializeToString,
        response_deserializer=HealthCheckResponse.FromString,
    )
    for service in ("", "job.v1.JobService", "gojob.v1.GojobService"):
        reply = await client.run(check, HealthCheckRequest(service=service))
        assert reply.status == HealthCheckResponse.SERVING
    reflect = client.channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=ServerReflectionRequest.SerializeToString,
        response_deserializer=ServerReflectionResponse.FromString,
    )
    requests = [
        ServerReflectionRequest(list_services=""),
        ServerReflectionRequest(file_by_filename="job/v1/service.proto"),
    ]
    replies = await trio.to_thread.run_sync(lambda: list(reflect(iter(requests), timeout=10)))
    names = {s.name for s in replies[0].list_services_response.service}
    assert {"job.v1.JobService", "gojob.v1.GojobService", "grpc.health.v1.Health"} <= names
    (raw,) = replies[1].file_descriptor_response.file_descriptor_proto
    go_job = FileDescriptorProto.FromString(raw)
    assert go_job.package == "job.v1"
    assert [m.name for m in go_job.service[0].method] == [
        "GetVersion",
        "ScheduleJob",
        "ListRegisteredJobs",
        "LookupInstances",
        "CancelInstances",
    ]


async def test_shutdown_ends_a_grpcio_stream_with_unavailable(
    api_manager: Manager, grpcio_stubs: GrpcioStubs
) -> None:
    scope = trio.CancelScope()

    async def run_server(task_status: trio.TaskStatus[int]) -> None:
        with scope:
            await serve(api_manager, "127.0.0.1", 0, task_status=task_status)

    async with trio.open_nursery() as nursery:
        port = await nursery.start(run_server)
        client = Client(grpcio_stubs, port)
        started = trio.Event()

        def watch() -> tuple[Any, str, int]:
            received = 0
            try:
                for _ in client.gojob.WatchEvents(client.gpb.WatchEventsRequest(), timeout=10):
                    received += 1
                    trio.from_thread.run_sync(started.set)
            except grpc.RpcError as exc:
                return exc.code(), exc.details(), received
            return None, "", received

        async def stop_when_started() -> None:
            await started.wait()
            scope.cancel()

        try:
            with trio.fail_after(10):
                nursery.start_soon(stop_when_started)
                code, details, received = await trio.to_thread.run_sync(watch)
        finally:
            client.channel.close()
    assert received == 1  # STARTED
    assert code == grpc.StatusCode.UNAVAILABLE
    assert details == "the server is shutting down"
