"""Shared pieces of the gRPC tests: a served manager, grpclib and grpcio clients.

The manager and the server run in the test's Trio run, on port 0. The grpclib client
runs on the same trio-asyncio loop through the bridge; the grpcio client (Google's
implementation, stubs generated from the same protos at test time) runs in threads.
Every call crosses a real TCP connection.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
import trio

pytest.importorskip("grpclib")

from grpclib import GRPCError
from grpclib.client import Channel

import gojob
from gojob import Instance, Job, Manager
from gojob._aio import Bridge, acquire_loop, call_trio
from gojob._generated.gojob_grpc import GojobServiceStub
from gojob._generated.service_grpc import JobServiceStub
from gojob.schedule import Cron
from gojob.server import serve

T = TypeVar("T")

GATES: dict[str, list[trio.Event]] = {}
"""Gates the ``chatty`` job waits on between two lines, per test (key: its argument)."""


def add(a: int, b: int) -> int:
    return a + b


def fail(reason: str) -> None:
    raise RuntimeError(reason)


async def slow(seconds: float) -> None:
    await trio.sleep(seconds)


def scaled(items: list[int], scale: int = 1) -> list[int]:
    return [item * scale for item in items]


def report() -> str:
    return "ok"


async def chatty(inst: Instance, key: str, lines: int) -> int:
    """Logs ``lines`` lines; after each, waits for the test to open the next gate."""
    gates = GATES.setdefault(key, [trio.Event() for _ in range(lines)])
    for index in range(lines):
        inst.info("line %d", index)
        await gates[index].wait()
    return lines


def gates(key: str, lines: int) -> list[trio.Event]:
    return GATES.setdefault(key, [trio.Event() for _ in range(lines)])


@pytest.fixture
async def api_manager() -> AsyncIterator[Manager]:
    async with gojob.open_manager(workers=2, drain_grace=0.2, capture_logging=False) as m:
        m.register(Job("add", add, description="adds two ints", max_retries=1, timeout=30))
        m.register(Job("fail", fail))
        m.register(Job("slow", slow))
        m.register(Job("scaled", scaled))
        m.register(Job("daily", report, schedule=Cron("0 7 * * *")))
        m.register(Job("chatty", chatty))
        try:
            yield m
        finally:
            for events in GATES.values():
                for event in events:
                    event.set()
            GATES.clear()


async def _channel(port: int) -> Channel:
    return Channel("127.0.0.1", port)


async def _close(channel: Channel) -> None:
    channel.close()


async def _consume(method: Any, request: Any, on_message: Callable[[Any], Awaitable[None]]) -> None:
    """Asyncio side: open a server stream, hand each message to a Trio callback."""
    async with method.open() as stream:
        await stream.send_message(request, end=True)
        async for message in stream:
            await call_trio(on_message, message)


@dataclass
class Api:
    """A served manager and a grpclib client of both services."""

    manager: Manager
    port: int
    bridge: Bridge
    channel: Channel
    jobs: JobServiceStub
    gojob: GojobServiceStub

    async def call(self, method: Callable[[Any], Awaitable[T]], request: Any) -> T:
        return await self.bridge.run(method, request)

    async def error(self, method: Callable[[Any], Awaitable[Any]], request: Any) -> GRPCError:
        with pytest.raises(GRPCError) as info:
            await self.call(method, request)
        return info.value

    async def stream(
        self, method: Any, request: Any, on_message: Callable[[Any], Awaitable[None]]
    ) -> None:
        """Run a server stream to its end, ``on_message`` (Trio) for each message."""
        await self.bridge.run(_consume, method, request, on_message)


async def open_client(manager: Manager, port: int) -> tuple[Bridge, Channel]:
    bridge = await acquire_loop()
    return bridge, await bridge.run(_channel, port)


async def close_client(bridge: Bridge, channel: Channel) -> None:
    await bridge.run(_close, channel)
    await bridge.release()


@pytest.fixture
async def api(api_manager: Manager, nursery: trio.Nursery) -> AsyncIterator[Api]:
    port = await nursery.start(serve, api_manager, "127.0.0.1", 0)
    bridge, channel = await open_client(api_manager, port)
    try:
        yield Api(
            api_manager, port, bridge, channel, JobServiceStub(channel), GojobServiceStub(channel)
        )
    finally:
        await close_client(bridge, channel)
        nursery.cancel_scope.cancel()


# -- grpcio ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GrpcioStubs:
    """grpcio's generated modules: ``service_pb2(_grpc)`` and ``gojob_pb2(_grpc)``."""

    service_pb2: ModuleType
    service_pb2_grpc: ModuleType
    gojob_pb2: ModuleType
    gojob_pb2_grpc: ModuleType


@pytest.fixture(scope="session")
def grpcio_stubs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GrpcioStubs]:
    """Stubs generated by grpcio-tools' ``--grpc_python_out`` from ``proto/``."""
    pytest.importorskip("grpc")
    pytest.importorskip("grpc_tools")
    from gojob.server._gen import generate_grpcio

    root: Path = tmp_path_factory.mktemp("grpcio")
    package = "gojob_test_grpcio_stubs"
    generate_grpcio(root / package)
    sys.path.insert(0, str(root))
    try:
        yield GrpcioStubs(
            *(
                importlib.import_module(f"{package}.{name}")
                for name in ("service_pb2", "service_pb2_grpc", "gojob_pb2", "gojob_pb2_grpc")
            )
        )
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n.startswith(package)]:
            del sys.modules[name]
