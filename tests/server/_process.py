"""``gojob server`` as a subprocess, and a grpclib client of it, for the process tests.

The server runs as an operator runs it (``python -m gojob.cli.main server ...``) on
ports 0; its listening lines on stdout give the bound ports. Its stderr (the log) goes
to a file, shown when a test fails. The client lives in the test's Trio run and
crosses into asyncio through gojob's bridge, one crossing per call.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio
from grpclib.client import Channel
from grpclib.exceptions import ProtocolError
from h2.exceptions import StreamClosedError

from gojob._aio import Bridge, acquire_loop, call_trio
from gojob._generated.gojob_grpc import GojobServiceStub
from gojob._generated.service_grpc import JobServiceStub

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
JOBS_MODULE = "tests.server.jobs_for_tests"

_LISTENING = re.compile(r"^(gRPC|metrics) listening on (\S+):(\d+)")


def server_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a server subprocess: no inherited ``GOJOB_*`` setting (the
    test names its own), the repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOJOB_")}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gojob.cli.main", "server", *args]


@dataclass
class ServerProcess:
    process: trio.Process
    grpc_port: int
    metrics_port: int | None
    log: Path

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the server and wait for it to exit; its exit code."""
        if self.process.returncode is None:
            self.process.send_signal(sig)
        with trio.fail_after(STOP_TIMEOUT):
            return await self.process.wait()


async def _read_ports(stream: trio.abc.ReceiveStream) -> tuple[int, int | None, list[str]]:
    buffer = b""
    lines: list[str] = []
    ports: dict[str, int] = {}
    while True:
        chunk = await stream.receive_some()
        if not chunk:
            raise RuntimeError("the server exited before it was ready: " + " | ".join(lines))
        buffer += chunk
        while b"\n" in buffer:
            raw, buffer = buffer.split(b"\n", 1)
            line = raw.decode()
            lines.append(line)
            found = _LISTENING.match(line)
            if found:
                ports[found.group(1)] = int(found.group(3))
            if line.startswith("node ") and " ready" in line:
                return ports["gRPC"], ports.get("metrics"), lines


@asynccontextmanager
async def running_server(
    tmp_path: Path, *args: str, env: Mapping[str, str] | None = None, jobs: bool = True
) -> AsyncIterator[ServerProcess]:
    """Start ``gojob server --port 0 --metrics-port 0 [--jobs tests...] *args`` in
    ``tmp_path``; stopped (SIGTERM, then SIGKILL) when the block leaves."""
    log = tmp_path / f"server-{uuid.uuid4().hex[:8]}.log"
    argv = ["--port", "0", "--metrics-port", "0", *(["--jobs", JOBS_MODULE] if jobs else [])]
    with log.open("wb") as err:
        process = await trio.lowlevel.open_process(
            command(*argv, *args),
            stdout=subprocess.PIPE,
            stderr=err,
            cwd=tmp_path,
            env=server_env(env),
        )
    try:
        assert process.stdout is not None
        try:
            with trio.fail_after(START_TIMEOUT):
                grpc_port, metrics_port, _ = await _read_ports(process.stdout)
        except (RuntimeError, trio.TooSlowError) as exc:
            raise AssertionError(f"{exc}\n{log.read_text(errors='replace')}") from exc
        yield ServerProcess(process, grpc_port, metrics_port, log)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(STOP_TIMEOUT):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()


async def run_server_to_exit(
    tmp_path: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run a server that is expected to refuse to start; its exit code and output."""
    with trio.fail_after(START_TIMEOUT):
        return await trio.run_process(
            command(*args),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=tmp_path,
            env=server_env(env),
        )


# -- a grpclib client --------------------------------------------------------------------------


async def _open_channel(port: int, context: ssl.SSLContext | None) -> Channel:
    return Channel("127.0.0.1", port, ssl=context)


async def _close_channel(channel: Channel) -> None:
    channel.close()


async def _consume(
    method: Any, request: Any, metadata: Any, on_message: Callable[[Any], Awaitable[bool]]
) -> None:
    """Asyncio side: open a server stream, hand each message to a Trio callback (which
    returns True to stop reading)."""
    async with method.open(metadata=metadata) as stream:
        await stream.send_message(request, end=True)
        async for message in stream:
            if await call_trio(on_message, message):
                # Else leaving waits for the stream's end; the server may have ended it.
                with contextlib.suppress(ProtocolError, StreamClosedError):
                    await stream.cancel()
                return


@dataclass
class Client:
    bridge: Bridge
    channel: Channel
    jobs: JobServiceStub
    gojob: GojobServiceStub
    token: str | None = None

    def _metadata(self, token: str | None) -> dict[str, str] | None:
        token = token or self.token
        return None if token is None else {"authorization": f"Bearer {token}"}

    async def call(self, method: Any, request: Any, *, token: str | None = None) -> Any:
        return await self.bridge.run(partial(method, request, metadata=self._metadata(token)))

    async def stream(
        self, method: Any, request: Any, on_message: Callable[[Any], Awaitable[bool]]
    ) -> None:
        await self.bridge.run(_consume, method, request, self._metadata(None), on_message)


@asynccontextmanager
async def grpc_client(
    port: int, *, context: ssl.SSLContext | None = None, token: str | None = None
) -> AsyncIterator[Client]:
    bridge = await acquire_loop()
    try:
        channel = await bridge.run(_open_channel, port, context)
        try:
            yield Client(bridge, channel, JobServiceStub(channel), GojobServiceStub(channel), token)
        finally:
            await bridge.run(_close_channel, channel)
    finally:
        await bridge.release()
