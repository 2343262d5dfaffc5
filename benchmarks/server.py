"""The gRPC server: go-job's ScheduleJob throughput, and the metrics scrape time.

**ScheduleJob.** 64 concurrent unary calls, spread over 4 grpcio client processes
(``_grpc_client.py``, 16 in flight each), against three servers hosted in this Trio
process the same way (grpclib through ``gojob/_aio.py``), measured in paired rounds:

* ``echo``: a bare grpclib ``JobService`` whose ScheduleJob replies a canned instance
  (no Trio crossing, no store): the ceiling of the transport;
* ``gojob sqlite``: :func:`gojob.server.serve` on a SQLite file (WAL);
* ``gojob postgres``: the same on PostgreSQL, in a fresh schema dropped afterwards.

The gojob nodes register the kind with one worker held by a blocking job and no
prefetch: what is measured is the enqueue (durable, group-committed by the server),
not the processing. Figures are medians of the rounds; ratios are medians of per-round
ratios to ``echo``. CPU is this process's (the servers'), per call.

**Scrape.** A node with 100 registered kinds runs no-op jobs of all of them flat out
(memory store, 10 workers, what finished pruned every second), its metrics served by
:func:`serve_metrics`; another
process scrapes ``/metrics`` (200 scrapes, 20 ms apart) and reports p50/p99 of the
scrape time, next to the same scrapes of the idle node; with the text formatted for
every scrape (``max_age=0``), and reused while younger than a second (the default).

``python -m benchmarks.server [--calls N] [--rounds R] [--url URL] [--skip-postgres]
[--only schedule|scrape] [--unbatched]``, or ``python -m benchmarks --store server``
(``run(calls, rounds, url)``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import trio
from prometheus_client import start_http_server

import gojob
from gojob._aio import acquire_loop
from gojob.server import serve
from gojob.server._batch import DEFAULT_WRITERS
from gojob.server.metrics import Metrics, serve_metrics
from gojob.store.sql import SqliteStore

from ._runner import Measurement, Result, paired_rounds, percentile, report
from .postgres import DEFAULT_URL

__all__ = ["DEFAULT_URL", "run", "run_schedule", "run_scrape"]

CLIENTS = 4
WIDTH = 16
"""Calls in flight per client process (64 in all)."""
KIND = "bench"
SCRAPE_KINDS = 100
SCRAPES = 200
SCRAPE_PAUSE = 0.02
"""Between two scrapes of the benchmark (Prometheus waits 15 s or so)."""
STUBS_PACKAGE = "bench_grpcio_stubs"


# -- the bare echo server ---------------------------------------------------------------------


def _echo_service() -> Any:
    from gojob._generated import service_pb2 as pb
    from gojob._generated.service_grpc import JobServiceBase

    reply = pb.ScheduleJobResponse(
        instance=pb.JobInstance(kind=KIND, uuid="0" * 36, state=pb.JOB_STATE_SCHEDULED)
    )

    class Echo(JobServiceBase):
        async def GetVersion(self, stream: Any) -> None:  # noqa: N802
            await stream.recv_message()
            await stream.send_message(pb.GetVersionResponse(version="echo", api_version="1"))

        async def ScheduleJob(self, stream: Any) -> None:  # noqa: N802
            await stream.recv_message()
            await stream.send_message(reply)

        async def ListRegisteredJobs(self, stream: Any) -> None:  # noqa: N802
            await stream.recv_message()
            await stream.send_message(pb.ListRegisteredJobsResponse())

        async def LookupInstances(self, stream: Any) -> None:  # noqa: N802
            await stream.recv_message()
            await stream.send_message(pb.LookupInstancesResponse())

        async def CancelInstances(self, stream: Any) -> None:  # noqa: N802
            await stream.recv_message()
            await stream.send_message(pb.CancelInstancesResponse())

    return Echo()


async def _start_echo(sock: Any) -> Any:
    from grpclib.server import Server

    server = Server([_echo_service()])
    await server.start(sock=sock)
    return server


async def _stop_echo(server: Any) -> None:
    server.close()
    await server.wait_closed()


async def serve_echo(*, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    """The echo server, hosted like :func:`gojob.server.serve` (same socket options)."""
    from gojob.server.serve import _bind

    sock = _bind("127.0.0.1", 0)
    bridge = await acquire_loop()
    try:
        server = await bridge.run(_start_echo, sock)
        try:
            task_status.started(sock.getsockname()[1])
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await bridge.run(_stop_echo, server)
    finally:
        await bridge.release()


# -- gojob nodes -------------------------------------------------------------------------------


async def _hold() -> None:
    await trio.sleep_forever()


@asynccontextmanager
async def _node(store: Any, writers: int = DEFAULT_WRITERS) -> AsyncIterator[int]:
    """A served node on ``store`` whose single worker is held: instances stay queued.
    ``writers``: the server's ScheduleJob group-commit writers (0: a write per call)."""
    async with (
        gojob.open_manager(
            store, workers=1, prefetch=0, drain_grace=0, capture_logging=False
        ) as manager,
        trio.open_nursery() as nursery,
    ):
        manager.register(gojob.Job(KIND, _hold))
        port: int = await nursery.start(
            partial(serve, manager, "127.0.0.1", 0, schedule_writers=writers)
        )
        try:
            yield port
        finally:
            nursery.cancel_scope.cancel()


# -- the client processes ----------------------------------------------------------------------


class Clients:
    """``CLIENTS`` grpcio processes, reused by every measurement."""

    def __init__(self, processes: list[trio.Process]) -> None:
        self.processes = processes
        self._buffers = [b""] * len(processes)

    async def _line(self, index: int) -> str:
        process = self.processes[index]
        assert process.stdout is not None
        while b"\n" not in self._buffers[index]:
            chunk = await process.stdout.receive_some()
            if not chunk:
                raise RuntimeError("a client process exited")
            self._buffers[index] += chunk
        line, self._buffers[index] = self._buffers[index].split(b"\n", 1)
        return line.decode()

    async def _send(self, index: int, text: str) -> None:
        stdin = self.processes[index].stdin
        assert stdin is not None
        await stdin.send_all(text.encode())

    async def measure(self, port: int, calls: int) -> Measurement:
        """``calls`` ScheduleJob calls on ``port``, split between the clients."""
        share = calls // len(self.processes)
        for index in range(len(self.processes)):
            await self._send(index, f"run {port} {KIND} {share}\n")
        for index in range(len(self.processes)):
            line = await self._line(index)
            if line != "ready":
                raise RuntimeError(f"client {index}: {line}")
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for index in range(len(self.processes)):
            await self._send(index, "go\n")
        results = [json.loads(await self._line(i)) for i in range(len(self.processes))]
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        errors = sum(r["errors"] for r in results)
        if errors:
            raise RuntimeError(f"{errors} calls failed on port {port}")
        return Measurement(share * len(self.processes), wall, cpu)


@asynccontextmanager
async def open_clients(stubs: Path) -> AsyncIterator[Clients]:
    processes: list[trio.Process] = []
    try:
        for _ in range(CLIENTS):
            processes.append(
                await trio.lowlevel.open_process(
                    [sys.executable, "-m", "benchmarks._grpc_client", str(stubs), str(WIDTH)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                )
            )
        yield Clients(processes)
    finally:
        with trio.CancelScope(shield=True):
            for process in processes:
                if process.stdin is not None:
                    await process.stdin.aclose()
            for process in processes:
                with trio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                if process.stdout is not None:
                    await process.stdout.aclose()


# -- ScheduleJob ----------------------------------------------------------------------------


async def run_schedule(
    calls: int, rounds: int, url: str | None, *, unbatched: bool = False
) -> dict[str, Result]:
    """ScheduleJob throughput: echo, gojob on SQLite, gojob on PostgreSQL (``url``);
    with ``unbatched``, also gojob without group commit (one store write per call)."""
    from gojob.server._gen import generate_grpcio

    with tempfile.TemporaryDirectory(prefix="gojob-bench-") as tmp:
        await trio.to_thread.run_sync(generate_grpcio, Path(tmp) / STUBS_PACKAGE)
        async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
            ports = {"echo": await nursery.start(serve_echo)}
            sqlite = SqliteStore(f"sqlite:///{tmp}/bench.db", auto_migrate=True)
            ports["gojob sqlite"] = await stack.enter_async_context(_node(sqlite))
            if unbatched:
                ports["gojob sqlite, unbatched"] = await stack.enter_async_context(
                    _node(sqlite, writers=0)
                )
            if url is not None:
                from .postgres import fresh_store

                store = await stack.enter_async_context(fresh_store(url))
                ports["gojob postgres"] = await stack.enter_async_context(_node(store))
                if unbatched:
                    ports["gojob postgres, unbatched"] = await stack.enter_async_context(
                        _node(store, writers=0)
                    )
            clients = await stack.enter_async_context(open_clients(Path(tmp)))

            def contender(port: int) -> Callable[[], Awaitable[Measurement]]:
                return lambda: clients.measure(port, calls)

            for port in ports.values():  # warm every path once (connections, caches)
                await clients.measure(port, min(calls, 400))
            results = await paired_rounds(
                rounds, {name: contender(port) for name, port in ports.items()}
            )
            await stack.aclose()
            nursery.cancel_scope.cancel()
    report(
        f"ScheduleJob, {CLIENTS} grpcio processes x {WIDTH} in flight, {calls} calls a run",
        results,
        "echo",
    )
    return results


# -- metrics scrape -------------------------------------------------------------------------


def _scrape_main(url: str, count: int, pause: float) -> None:
    """(Subprocess) ``count`` scrapes, ``pause`` seconds apart; prints their seconds."""
    times: list[float] = []
    for _ in range(count):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
        times.append(time.perf_counter() - started)
        time.sleep(pause)
    print(json.dumps(times))


async def _scrapes(port: int, count: int, pause: float) -> list[float]:
    url = f"http://127.0.0.1:{port}/metrics"
    done = await trio.run_process(
        [sys.executable, "-m", "benchmarks.server", "scrape", url, str(count), str(pause)],
        capture_stdout=True,
    )
    times: list[float] = json.loads(done.stdout)
    return times


async def _scrape_node(
    label: str, store: Any, kinds: int, count: int, pause: float
) -> tuple[dict[str, list[float]], dict[str, float]]:
    metrics = Metrics()
    executed = 0

    async def noop() -> None:
        nonlocal executed
        executed += 1

    out: dict[str, list[float]] = {}
    rates: dict[str, float] = {}
    async with (
        gojob.open_manager(store, workers=10, capture_logging=False, metrics=metrics) as manager,
        trio.open_nursery() as nursery,
    ):
        names = [f"kind-{i:03d}" for i in range(kinds)]
        for name in names:
            manager.register(gojob.Job(name, noop))
        for name in names:  # every kind's series exist before the first scrape
            await manager.wait(await manager.schedule(name), timeout=30)
        fresh: int = await nursery.start(partial(serve_metrics, metrics, "127.0.0.1", 0, max_age=0))
        reused: int = await nursery.start(serve_metrics, metrics, "127.0.0.1", 0)
        # The reference: prometheus_client's own endpoint (a thread formatting the registry).
        http, thread = start_http_server(0, addr="127.0.0.1", registry=metrics.registry)
        out[f"{label}, idle, max_age=0"] = await _scrapes(fresh, count, pause)

        async def produce() -> None:
            scheduled = executed
            pruned = time.monotonic()
            while True:  # keep about 2,000 queued (counted here: the store's count scans)
                if scheduled - executed < 2_000:
                    for name in names:
                        await manager.schedule_many(name, [()] * 20)
                    scheduled += 20 * len(names)
                if time.monotonic() - pruned > 1.0:
                    # A retention of a second: the memory store's counts (the queued
                    # gauges' refresh) scan every instance it holds, on the loop.
                    await manager.store.prune(manager.clock.now() - timedelta(seconds=1))
                    pruned = time.monotonic()
                await trio.sleep(0.01)

        nursery.start_soon(produce)
        contenders = (
            ("running, max_age=0", fresh),
            ("running, max_age=1s", reused),
            ("running, prometheus_client", http.server_port),
        )
        try:
            for name, port in contenders:
                before, started = executed, time.perf_counter()
                out[f"{label}, {name}"] = await _scrapes(port, count, pause)
                rates[f"{label}, {name}"] = (executed - before) / (time.perf_counter() - started)
        finally:
            http.shutdown()
            http.server_close()
            thread.join()
        nursery.cancel_scope.cancel()
    return out, rates


async def run_scrape(
    kinds: int = SCRAPE_KINDS, count: int = SCRAPES, pause: float = SCRAPE_PAUSE
) -> dict[str, list[float]]:
    """Scrape times of an idle node and of the same node running jobs of ``kinds``
    kinds flat out, on SQLite (the server's default) and in memory: rendered for every
    scrape (``max_age=0``), and with the default reuse of a text younger than a second."""
    out: dict[str, list[float]] = {}
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="gojob-bench-") as tmp:
        sqlite = SqliteStore(f"sqlite:///{tmp}/scrape.db", auto_migrate=True)
        for label, store in (("sqlite", sqlite), ("memory", None)):
            found, speeds = await _scrape_node(label, store, kinds, count, pause)
            out |= found
            rates |= speeds
    print(f"\n## /metrics scrape, {kinds} kinds, {count} scrapes {pause * 1000:g} ms apart")
    print(f"{'node':<36} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}  jobs/s meanwhile")
    for name, times in out.items():
        ms = [t * 1000 for t in times]
        rate = f"{rates[name]:,.0f}" if name in rates else "-"
        print(
            f"{name:<36} {statistics.median(ms):>8.1f} {percentile(ms, 99):>8.1f} "
            f"{max(ms):>8.1f}  {rate}"
        )
    return out


async def run(calls: int = 4_000, rounds: int = 5, url: str | None = None) -> None:
    """Both benchmarks (PostgreSQL skipped when ``url`` is None)."""
    await run_schedule(calls, rounds, url)
    await run_scrape()


def main() -> None:
    if sys.argv[1:2] == ["scrape"]:
        _scrape_main(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(prog="python -m benchmarks.server")
    parser.add_argument("--calls", type=int, default=4_000, help="calls per run (4,000)")
    parser.add_argument("--rounds", type=int, default=5, help="paired rounds (5)")
    parser.add_argument("--url", default=DEFAULT_URL, help="PostgreSQL server")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--only", choices=["schedule", "scrape"])
    parser.add_argument("--unbatched", action="store_true", help="also gojob without group commit")
    args = parser.parse_args()
    url = None if args.skip_postgres else args.url
    if args.only == "scrape":
        trio.run(run_scrape)
    elif args.only == "schedule":
        trio.run(partial(run_schedule, args.calls, args.rounds, url, unbatched=args.unbatched))
    else:
        trio.run(run, args.calls, args.rounds, url)


if __name__ == "__main__":
    main()
