"""go-job's five JobService calls, over a real socket, with grpclib's client.

The manager and the server run in this Trio test on port 0; the client runs on the
same trio-asyncio loop through the bridge (gojob._aio), so every call crosses a real
TCP connection and HTTP/2.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
import trio

pytest.importorskip("grpclib")

from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status

import gojob
from gojob import Job, Manager, State
from gojob._aio import Bridge, acquire_loop
from gojob._generated import service_pb2 as pb
from gojob._generated.service_grpc import JobServiceStub
from gojob.schedule import Cron
from gojob.server import DEFAULT_LOOKUP_LIMIT, serve

T = TypeVar("T")


def add(a: int, b: int) -> int:
    return a + b


def pair(a: int) -> tuple[int, str]:
    return a, str(a)


def fail(reason: str) -> None:
    raise RuntimeError(reason)


def report() -> str:
    return "ok"


async def slow(seconds: float) -> None:
    await trio.sleep(seconds)


@dataclass
class Client:
    bridge: Bridge
    channel: Channel
    stub: JobServiceStub

    async def call(self, method: Callable[[Any], Awaitable[T]], request: Any) -> T:
        return await self.bridge.run(method, request)

    async def status_of(self, method: Callable[[Any], Awaitable[Any]], request: Any) -> GRPCError:
        with pytest.raises(GRPCError) as info:
            await self.call(method, request)
        return info.value


async def _channel(port: int) -> Channel:
    return Channel("127.0.0.1", port)


async def _close(channel: Channel) -> None:
    channel.close()


@pytest.fixture
async def manager() -> AsyncIterator[Manager]:
    async with gojob.open_manager(workers=2, drain_grace=0.5, capture_logging=False) as m:
        m.register(Job("add", add, description="adds two ints"))
        m.register(Job("pair", pair))
        m.register(Job("fail", fail))
        m.register(Job("slow", slow))
        m.register(Job("daily", report, schedule=Cron("0 7 * * *")))
        yield m


@pytest.fixture
async def client(manager: Manager, nursery: trio.Nursery) -> AsyncIterator[Client]:
    port = await nursery.start(serve, manager, "127.0.0.1", 0)
    assert isinstance(port, int)
    assert port > 0
    bridge = await acquire_loop()
    channel = await bridge.run(_channel, port)
    try:
        yield Client(bridge, channel, JobServiceStub(channel))
    finally:
        await bridge.run(_close, channel)
        await bridge.release()
        nursery.cancel_scope.cancel()


def _near(ts: Any, when: datetime | None) -> None:
    assert when is not None
    got = ts.ToDatetime(tzinfo=UTC)
    assert abs(got - when) < timedelta(milliseconds=1)


async def test_get_version(client: Client) -> None:
    reply = await client.call(client.stub.GetVersion, pb.GetVersionRequest())
    assert reply.version == gojob.__version__
    assert reply.api_version == "1"


async def test_list_registered_jobs(client: Client) -> None:
    reply = await client.call(client.stub.ListRegisteredJobs, pb.ListRegisteredJobsRequest())
    jobs = {job.kind: job for job in reply.jobs}
    assert set(jobs) == {"add", "pair", "fail", "slow", "daily"}
    assert jobs["add"].description == "adds two ints"
    assert jobs["add"].HasField("registered_at")
    assert jobs["add"].registered_at.ToDatetime(tzinfo=UTC) <= datetime.now(UTC)
    assert not jobs["add"].HasField("cron_spec")
    assert not jobs["add"].HasField("schedule_at")
    assert jobs["daily"].cron_spec == "0 7 * * *"
    at = jobs["daily"].schedule_at.ToDatetime(tzinfo=UTC)
    assert (at.hour, at.minute) == (7, 0)
    assert at > datetime.now(UTC)


async def test_schedule_job_and_lookup_fields(client: Client, manager: Manager) -> None:
    reply = await client.call(
        client.stub.ScheduleJob, pb.ScheduleJobRequest(kind="add", arguments=["1", "2"], priority=3)
    )
    inst = reply.instance
    assert inst.kind == "add"
    assert inst.state in (pb.JOB_STATE_SCHEDULED, pb.JOB_STATE_PROCESSING, pb.JOB_STATE_COMPLETED)
    assert list(inst.arguments) == ["1", "2"]
    assert inst.HasField("created_at")
    assert inst.HasField("scheduled_at")
    assert inst.HasField("attempts")
    stored = await manager.get(inst.uuid)
    assert stored.args == [1, 2]  # coerced by the annotations
    assert stored.policy.priority == 3

    done = await manager.wait(inst.uuid, timeout=10)
    found = await client.call(
        client.stub.LookupInstances,
        pb.LookupInstancesRequest(query=pb.Query(uuid=inst.uuid)),
    )
    (got,) = found.instances
    assert got.kind == "add"
    assert got.uuid == inst.uuid
    assert got.state == pb.JOB_STATE_COMPLETED
    assert list(got.arguments) == ["1", "2"]
    assert list(got.results) == ["3"]
    assert not got.HasField("error")
    assert got.attempts == 1
    _near(got.created_at, done.created_at)
    _near(got.scheduled_at, done.scheduled_at)
    _near(got.processed_at, done.processed_at)
    _near(got.completed_at, done.completed_at)
    for name in ("terminated_at", "canceled_at", "timed_out_at"):
        assert not got.HasField(name)


async def test_results_one_string_per_value_and_errors(client: Client, manager: Manager) -> None:
    ok = await client.call(
        client.stub.ScheduleJob, pb.ScheduleJobRequest(kind="pair", arguments=["7"])
    )
    bad = await client.call(
        client.stub.ScheduleJob, pb.ScheduleJobRequest(kind="fail", arguments=["boom"])
    )
    await manager.wait(ok.instance.uuid, timeout=10)
    failed = await manager.wait(bad.instance.uuid, timeout=10)
    assert failed.state is State.TERMINATED
    found = await client.call(client.stub.LookupInstances, pb.LookupInstancesRequest())
    by_uuid = {inst.uuid: inst for inst in found.instances}
    assert list(by_uuid[ok.instance.uuid].results) == ["7", "7"]
    term = by_uuid[bad.instance.uuid]
    assert term.state == pb.JOB_STATE_TERMINATED
    assert "boom" in term.error
    assert list(term.results) == []
    _near(term.terminated_at, failed.terminated_at)


async def test_lookup_filters_and_limit(client: Client, manager: Manager) -> None:
    await manager.schedule_many("slow", [(30.0,)] * 3, after=3600)
    await manager.schedule("add", 1, 1)
    by_kind = await client.call(
        client.stub.LookupInstances, pb.LookupInstancesRequest(query=pb.Query(kind="slow"))
    )
    assert [i.kind for i in by_kind.instances] == ["slow"] * 3
    by_state = await client.call(
        client.stub.LookupInstances,
        pb.LookupInstancesRequest(query=pb.Query(state=pb.JOB_STATE_SCHEDULED, kind="slow")),
    )
    assert len(by_state.instances) == 3
    none = await client.call(
        client.stub.LookupInstances,
        pb.LookupInstancesRequest(query=pb.Query(state=pb.JOB_STATE_CANCELLED)),
    )
    assert list(none.instances) == []
    assert DEFAULT_LOOKUP_LIMIT == 1000


async def test_lookup_is_capped(manager: Manager, nursery: trio.Nursery) -> None:
    port = await nursery.start(
        lambda task_status: serve(manager, "127.0.0.1", 0, lookup_limit=2, task_status=task_status)
    )
    await manager.schedule_many("add", [(1, 2)] * 5, after=3600)
    bridge = await acquire_loop()
    channel = await bridge.run(_channel, port)
    try:
        found = await bridge.run(
            JobServiceStub(channel).LookupInstances, pb.LookupInstancesRequest()
        )
        assert len(found.instances) == 2
    finally:
        await bridge.run(_close, channel)
        await bridge.release()
        nursery.cancel_scope.cancel()


async def test_cancel_instances(client: Client, manager: Manager) -> None:
    queued = await manager.schedule_many("slow", [(30.0,)] * 2, after=3600)
    other = await manager.schedule("add", 1, 2, after=3600)
    reply = await client.call(
        client.stub.CancelInstances, pb.CancelInstancesRequest(query=pb.Query(kind="slow"))
    )
    assert sorted(i.uuid for i in reply.instances) == sorted(i.uuid for i in queued)
    for inst in reply.instances:
        assert inst.state == pb.JOB_STATE_CANCELLED
        assert inst.HasField("canceled_at")
    assert (await manager.get(other.uuid)).state is State.SCHEDULED
    # A missing query cancels every non-final instance (go-job's behaviour).
    rest = await client.call(client.stub.CancelInstances, pb.CancelInstancesRequest())
    assert [i.uuid for i in rest.instances] == [other.uuid]
    assert (await manager.get(other.uuid)).state is State.CANCELED


async def test_bad_inputs_keep_the_server_serving(client: Client) -> None:
    stub = client.stub
    err = await client.status_of(stub.ScheduleJob, pb.ScheduleJobRequest(kind="nope"))
    assert err.status is Status.NOT_FOUND
    assert "nope" in (err.message or "")
    err = await client.status_of(stub.ScheduleJob, pb.ScheduleJobRequest(kind=""))
    assert err.status is Status.INVALID_ARGUMENT
    err = await client.status_of(
        stub.ScheduleJob, pb.ScheduleJobRequest(kind="add", arguments=["1", "x"])
    )
    assert err.status is Status.INVALID_ARGUMENT
    assert "b" in (err.message or "")
    err = await client.status_of(
        stub.ScheduleJob, pb.ScheduleJobRequest(kind="add", arguments=["1"])
    )
    assert err.status is Status.INVALID_ARGUMENT
    assert "missing" in (err.message or "")
    err = await client.status_of(
        stub.ScheduleJob, pb.ScheduleJobRequest(kind="add", arguments=["x" * 2_000_000, "1"])
    )
    assert err.status is Status.INVALID_ARGUMENT
    err = await client.status_of(
        stub.LookupInstances,
        pb.LookupInstancesRequest(query=pb.Query(state=3)),  # type: ignore[arg-type]
    )
    assert err.status is Status.INVALID_ARGUMENT
    reply = await client.call(stub.GetVersion, pb.GetVersionRequest())
    assert reply.version == gojob.__version__


async def test_cancel_ends_in_flight_call_and_closes_port(manager: Manager) -> None:
    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve, manager, "127.0.0.1", 0)
        nursery.cancel_scope.cancel()
    with pytest.raises(OSError, match="connect"):
        await trio.open_tcp_stream("127.0.0.1", port)


async def test_sequential_rate(client: Client) -> None:
    """Not a benchmark: a smoke figure for sequential ScheduleJob calls (printed)."""
    n = 200
    start = time.perf_counter()
    for _ in range(n):
        await client.call(
            client.stub.ScheduleJob, pb.ScheduleJobRequest(kind="add", arguments=["1", "2"])
        )
    elapsed = time.perf_counter() - start
    print(f"sequential ScheduleJob: {n / elapsed:.0f} calls/s")
    assert elapsed < 30
