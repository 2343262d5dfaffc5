"""Concurrent ``ScheduleJob`` calls share store writes, and each keeps its own outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

pytest.importorskip("grpclib")

from grpclib import GRPCError
from grpclib.const import Status

import gojob
from gojob import Job, Manager
from gojob._generated import service_pb2 as pb
from gojob.codec import Limits
from gojob.server import serve
from gojob.state import State
from gojob.store.memory import MemoryStore

from .conftest import Api, close_client, open_client


class CountingStore(MemoryStore):
    """The memory store, counting its ``add`` calls (store writes)."""

    writes = 0

    async def add(self, instances: list[gojob.Instance]) -> list[gojob.Instance]:  # type: ignore[override]
        self.writes += 1
        return await super().add(instances)


def echo(text: str) -> str:
    return text


def square(n: int) -> int:
    return n * n


def _request(kind: str, *arguments: str) -> pb.ScheduleJobRequest:
    return pb.ScheduleJobRequest(kind=kind, arguments=list(arguments))


@pytest.fixture
async def small_api(nursery: trio.Nursery) -> AsyncIterator[Api]:
    store = CountingStore()
    async with gojob.open_manager(
        store, workers=1, limits=Limits(max_args_bytes=64), capture_logging=False
    ) as manager:
        manager.register(Job("echo", echo))
        manager.register(Job("square", square))
        port = await nursery.start(serve, manager, "127.0.0.1", 0)
        bridge, channel = await open_client(manager, port)
        from gojob._generated.gojob_grpc import GojobServiceStub
        from gojob._generated.service_grpc import JobServiceStub

        try:
            yield Api(
                manager, port, bridge, channel, JobServiceStub(channel), GojobServiceStub(channel)
            )
        finally:
            await close_client(bridge, channel)
            nursery.cancel_scope.cancel()


async def test_concurrent_calls_are_written_together_and_fail_alone(small_api: Api) -> None:
    api = small_api
    requests = {
        f"ok-{i}": pb.ScheduleJobRequest(kind="echo", arguments=[f"t{i}"]) for i in range(40)
    }
    requests |= {
        f"sq-{i}": pb.ScheduleJobRequest(kind="square", arguments=[str(i)]) for i in range(10)
    }
    requests["too-big"] = pb.ScheduleJobRequest(kind="echo", arguments=["x" * 200])
    requests["not-an-int"] = pb.ScheduleJobRequest(kind="square", arguments=["seven"])
    requests["unknown"] = pb.ScheduleJobRequest(kind="nope", arguments=[])
    replies: dict[str, pb.ScheduleJobResponse] = {}
    errors: dict[str, GRPCError] = {}

    async def call(name: str, request: pb.ScheduleJobRequest) -> None:
        try:
            replies[name] = await api.call(api.jobs.ScheduleJob, request)
        except GRPCError as exc:
            errors[name] = exc

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for name, request in requests.items():
                nursery.start_soon(call, name, request)
    assert {name: e.status for name, e in errors.items()} == {
        "too-big": Status.INVALID_ARGUMENT,
        "not-an-int": Status.INVALID_ARGUMENT,
        "unknown": Status.NOT_FOUND,
    }
    assert "arguments" in (errors["too-big"].message or "")
    assert len(replies) == 50
    uuids = {reply.instance.uuid for reply in replies.values()}
    assert len(uuids) == 50
    manager: Manager = api.manager
    for i in range(10):
        inst = await manager.wait(replies[f"sq-{i}"].instance.uuid, timeout=20)
        assert (inst.state, inst.result) == (State.COMPLETED, i * i)
    stored = await manager.instances(kind="echo", limit=None)
    assert sorted(inst.args[0] for inst in stored) == sorted(f"t{i}" for i in range(40))
    # Grouped: fewer store writes than calls (the oversized call, refused with its
    # group, was retried alone).
    store = manager.store
    assert isinstance(store, CountingStore)
    assert store.writes < 50
