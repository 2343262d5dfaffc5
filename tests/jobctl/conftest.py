"""jobctl run as users run it, a subprocess, against a live server in the test's Trio run.

The manager and its gRPC server run in the test process on port 0 (a real socket);
``jobctl`` runs as ``python -m gojob.jobctl`` through :func:`trio.run_process`, so the
server keeps serving while the test awaits the command. Streams (``logs --follow``,
``watch``) are read line by line while the process runs (:class:`Running`).
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import trio

pytest.importorskip("grpclib")

import gojob
from gojob import Instance, Job, Manager
from gojob.schedule import Cron
from gojob.server import serve

JOBCTL = [sys.executable, "-m", "gojob.jobctl"]

GATES: dict[str, list[trio.Event]] = {}
"""Gates the ``chatty`` job waits on after each line, per test (key: its argument)."""


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


def gates(key: str, lines: int) -> list[trio.Event]:
    return GATES.setdefault(key, [trio.Event() for _ in range(lines)])


async def chatty(inst: Instance, key: str, lines: int) -> int:
    """Logs ``lines`` lines; after each, waits for the test to open the next gate."""
    opened = gates(key, lines)
    for index in range(lines):
        inst.info("line %d", index)
        await opened[index].wait()
    return lines


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment without GOJOB_* (the user's settings must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOJOB_")}
    env.update(extra or {})
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)

    def lines(self) -> list[str]:
        return self.out.splitlines()


class Lines:
    """Lines of a process's output as they come."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.seen: list[str] = []

    async def next(self) -> str | None:
        """The next line, None at the end of the output."""
        while b"\n" not in self.buffer:
            chunk = await self.stream.receive_some()
            if not chunk:
                if self.buffer:
                    line, self.buffer = self.buffer.decode(), b""
                    self.seen.append(line)
                    return line
                return None
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\n", 1)
        line = raw.decode()
        self.seen.append(line)
        return line

    async def until(self, text: str) -> str:
        """The first next line containing ``text``."""
        while True:
            line = await self.next()
            assert line is not None, f"output ended without {text!r}: {self.seen}"
            if text in line:
                return line


@dataclass
class Running:
    process: trio.Process
    stdout: Lines
    stderr: Lines

    async def finish(self) -> tuple[int, str]:
        """Wait for the end; the exit code and the rest of stderr."""
        rest = []
        while (line := await self.stderr.next()) is not None:
            rest.append(line)
        code = await self.process.wait()
        return code, "\n".join(rest)


@dataclass
class Ctl:
    """A served manager, and ways to run jobctl against it."""

    manager: Manager
    port: int

    def argv(self, args: tuple[str, ...], port: bool) -> list[str]:
        return [*JOBCTL, *(["--port", str(self.port)] if port else []), *args]

    async def run(
        self, *args: str, env: Mapping[str, str] | None = None, port: bool = True
    ) -> Result:
        """``jobctl [--port PORT] ARGS...`` to its end (``port=False``: no --port)."""
        proc = await trio.run_process(
            self.argv(args, port),
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            env=clean_env(env),
        )
        return Result(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    async def json(self, *args: str) -> Any:
        return (await self.run("--json", *args)).json()

    @asynccontextmanager
    async def start(self, *args: str) -> AsyncIterator[Running]:
        """``jobctl ARGS...`` running, its stdout read as lines (stderr captured); it is
        killed if still running when the block ends."""
        async with trio.open_nursery() as nursery:
            run = functools.partial(
                trio.run_process,
                self.argv(args, True),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                check=False,
                env=clean_env(),
            )
            process: trio.Process = await nursery.start(run)
            assert process.stdout is not None
            assert process.stderr is not None
            try:
                yield Running(process, Lines(process.stdout), Lines(process.stderr))
            finally:
                if process.returncode is None:
                    process.kill()


@pytest.fixture
async def served() -> AsyncIterator[Ctl]:
    """A manager with the test jobs, served on a free port until the test ends."""
    async with gojob.open_manager(workers=2, drain_grace=0.2, capture_logging=False) as m:
        m.register(Job("add", add, description="adds two ints", max_retries=1, timeout=30))
        m.register(Job("fail", fail))
        m.register(Job("slow", slow))
        m.register(Job("scaled", scaled))
        m.register(Job("daily", report, schedule=Cron("0 7 * * *")))
        m.register(Job("chatty", chatty))
        # A nursery of its own: stopping the server must not cancel the manager's exit.
        async with trio.open_nursery() as servers:
            port = await servers.start(serve, m, "127.0.0.1", 0)
            try:
                yield Ctl(m, port)
            finally:
                for events in GATES.values():
                    for event in events:
                        event.set()
                GATES.clear()
                servers.cancel_scope.cancel()
