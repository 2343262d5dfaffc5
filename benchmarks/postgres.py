"""The PostgreSQL store, side by side with pgqueuer and procrastinate on the same server:
processing of pre-enqueued no-op jobs by one worker process, batch enqueue,
enqueue-to-start latency on an idle worker, and gojob's recovery after a ``kill -9``;
then the SQLite store's processing of the same jobs.

Every measurement runs on a fresh schema of its own (created, migrated, dropped), in
the database of ``--url`` (default ``GOJOB_POSTGRES_URL``, else the local server).

* **processing**: ``n`` no-op jobs already in the database when the manager starts,
  until the last one ran; with the default pool (10 workers: claims of 10) and with
  bigger batches (``prefetch``: claims of 100);
* **batch enqueue**: ``schedule_many`` of ``n`` jobs (one store write);
* **latency**: from ``schedule()`` returning to the executor's first line, 200 jobs one
  at a time on an idle manager (same process: the dispatcher is woken in-process);
* **recovery**: a node process running ``RECOVERY_JOBS`` jobs is ``kill -9``ed; another
  node (already running, idle) re-runs them once their lease (``RECOVERY_LEASE``) expired:
  from the kill until the last of them started again (``peers_gojob_node.py``).

The peers (``peers_pgqueuer.py``, ``peers_procrastinate.py``) are asyncio libraries: each
measurement runs in a subprocess of its own on the stock asyncio loop, on a database of
its own (``gojob_bench_<peer>_<random>``, created for the run and dropped after it) on
the same server. Every section runs its contenders once per round, rotating the order
round by round (paired rounds); figures are medians over the rounds, and a ratio is the
median of the per-round ratios. pgqueuer's best is, per round, the best of its defaults
(``batch_size=10`` in 1.6) and batch sizes 10, 50 and 100.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import trio

import gojob
from gojob.instance import Instance, new_uuid
from gojob.manager import DEFAULT_WORKERS
from gojob.store.sql import SqliteStore, migrate
from gojob.store.sql.postgres import PostgresStore

from ._runner import Measurement, Result, measure, percentile

__all__ = ["DEFAULT_URL", "run"]

DEFAULT_URL = os.environ.get("GOJOB_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"


def _sql(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement.encode())


def _create_schema(url: str) -> str:
    name = f"gojob_b_{uuid.uuid4().hex[:12]}"
    _sql(url, f"CREATE SCHEMA {name}")
    migrate.upgrade(url, schema=name)
    return name


@asynccontextmanager
async def fresh_store(url: str) -> AsyncIterator[PostgresStore]:
    name = await trio.to_thread.run_sync(_create_schema, url)
    try:
        async with PostgresStore(url, schema=name) as store:
            yield store
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(_sql, url, f"DROP SCHEMA {name} CASCADE")


class _Counter:
    def __init__(self, n: int) -> None:
        self.left = n
        self.done = trio.Event()

    async def noop(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.done.set()


def _instances(now: datetime, n: int) -> list[Instance]:
    return [Instance(new_uuid(), "noop", created_at=now, scheduled_at=now) for _ in range(n)]


async def processing(url: str, n: int, workers: int, prefetch: int | None) -> Measurement:
    """One manager process working through ``n`` pre-enqueued no-op jobs."""
    counter = _Counter(n)
    async with fresh_store(url) as store:
        await store.add(_instances(await store.now(), n))

        async def body() -> None:
            async with gojob.open_manager(
                store, workers=workers, prefetch=prefetch, capture_logging=False
            ) as manager:
                manager.register(gojob.Job("noop", counter.noop))
                await counter.done.wait()

        return await measure(n, body)


async def sqlite_processing(n: int, workers: int) -> Measurement:
    """The SQLite store (a fresh file, migrated) working through ``n`` pre-enqueued
    no-op jobs, as :func:`processing` does on PostgreSQL."""
    counter = _Counter(n)
    with tempfile.TemporaryDirectory() as tmp:
        async with SqliteStore(f"sqlite:///{tmp}/bench.db", auto_migrate=True) as store:
            await store.add(_instances(await store.now(), n))

            async def body() -> None:
                async with gojob.open_manager(
                    store, workers=workers, capture_logging=False
                ) as manager:
                    manager.register(gojob.Job("noop", counter.noop))
                    await counter.done.wait()

            return await measure(n, body)


async def batch_enqueue(url: str, n: int) -> Measurement:
    """``schedule_many`` of ``n`` jobs: one store write."""
    async with (
        fresh_store(url) as store,
        gojob.open_manager(store, capture_logging=False) as manager,
    ):
        # Registered, but never due: only the enqueue is measured.
        manager.register(gojob.Job("noop", _Counter(n).noop))

        async def body() -> None:
            await manager.schedule_many("noop", [()] * n, after=3600)

        return await measure(n, body)


async def latency(url: str, samples: int) -> list[float]:
    """Seconds from `schedule` returning to the executor's first line, idle manager."""
    started: list[float] = []
    arrived = trio.Event()

    async def probe() -> None:
        started.append(time.perf_counter())
        arrived.set()

    gaps: list[float] = []
    async with (
        fresh_store(url) as store,
        gojob.open_manager(store, capture_logging=False) as manager,
    ):
        manager.register(gojob.Job("probe", probe))
        for _ in range(samples + 10):
            arrived = trio.Event()
            await manager.schedule("probe")
            t0 = time.perf_counter()
            await arrived.wait()
            gaps.append(started[-1] - t0)
            await trio.sleep(0.005)  # idle again between samples
    return gaps[10:]  # the first ones warm the connections and statement caches


PROCRASTINATE_JOBS = 2_000
"""procrastinate drains ~200-450 jobs/s here: 10,000 jobs would take 25-50 s a round,
more than the whole run's budget; its rate is measured on this many (its rate does not
depend on the queue's length: one job per fetch)."""

RECOVERY_JOBS = 10
RECOVERY_LEASE = 2.0
"""Short, so that a round takes seconds (the default lease is 30 s); the reaper runs at
its default interval (every lease)."""

PEER_TIMEOUT = 120.0
NODE = "benchmarks.peers_gojob_node"


# --- the peers: one subprocess per measurement -------------------------------------------


def _peer_dsn(url: str, database: str) -> str:
    parts = urlsplit(url.replace("+asyncpg", "").replace("+psycopg", ""))
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


async def _peer_once(module: str, dsn: str, *args: object) -> dict[str, Any]:
    command = [sys.executable, "-m", f"benchmarks.{module}", dsn, *map(str, args)]
    with trio.fail_after(PEER_TIMEOUT):
        done = await trio.run_process(
            command, capture_stdout=True, capture_stderr=True, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {args} failed:\n{done.stderr.decode()}")
    lines = done.stdout.decode().strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


async def _peer(module: str, dsn: str, *args: object) -> dict[str, Any]:
    """Run one peer measurement; repeated once if it failed (e.g. a server restart by
    someone else's test: the shared server is not ours alone)."""
    try:
        return await _peer_once(module, dsn, *args)
    except RuntimeError as exc:
        print(f"(repeating {module} {' '.join(map(str, args))}: {str(exc).splitlines()[-1]})")
        await trio.sleep(2)
        return await _peer_once(module, dsn, *args)


async def _peer_measure(module: str, dsn: str, *args: object) -> Measurement:
    out = await _peer(module, dsn, *args)
    return Measurement(int(out["ops"]), float(out["wall"]), float(out["cpu"]))


async def _peer_gaps(module: str, dsn: str, samples: int) -> list[float]:
    out = await _peer(module, dsn, "latency", samples)
    return [float(g) for g in out["gaps"]]


@asynccontextmanager
async def peer_databases(url: str, *peers: str) -> AsyncIterator[dict[str, str]]:
    """A database per peer on the same server, with the peer's schema installed."""
    suffix = uuid.uuid4().hex[:8]
    names = {peer: f"gojob_bench_{peer}_{suffix}" for peer in peers}
    created: list[str] = []
    try:
        for peer, name in names.items():
            await trio.to_thread.run_sync(_sql, url, f"CREATE DATABASE {name}")
            created.append(name)
            await _peer(f"peers_{peer}", _peer_dsn(url, name), "install")
        yield {peer: _peer_dsn(url, name) for peer, name in names.items()}
    finally:
        with trio.CancelScope(shield=True):
            for name in created:
                await trio.to_thread.run_sync(
                    _sql, url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )


# --- gojob's recovery after kill -9 ------------------------------------------------------


class _Nodes:
    def __init__(self, url: str, schema: str, out: Path) -> None:
        self.url, self.schema, self.out = url, schema, out
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, role: str, workers: int) -> None:
        command = [
            sys.executable,
            "-m",
            NODE,
            self.url,
            self.schema,
            str(self.out),
            name,
            role,
            str(workers),
            str(RECOVERY_LEASE),
        ]
        self.processes[name] = subprocess.Popen(command, stderr=subprocess.PIPE)

    async def ready(self, name: str) -> None:
        with trio.fail_after(60):
            while not (self.out / f"ready-{name}").exists():
                if self.processes[name].poll() is not None:
                    raise RuntimeError(
                        f"node {name} died: {self.processes[name].communicate()[1]!r}"
                    )
                await trio.sleep(0.02)

    def started(self, name: str) -> list[tuple[str, int, float]]:
        path = self.out / f"started-{name}"
        lines = path.read_text().splitlines() if path.exists() else []
        rows = [ln.split() for ln in lines if ln.count(" ") == 2]
        return [(u, int(a), float(t)) for u, a, t in rows]

    async def close(self) -> None:
        (self.out / "stop").touch()
        for process in self.processes.values():
            if process.poll() is None:
                with trio.move_on_after(15):
                    await trio.to_thread.run_sync(process.wait)
            if process.poll() is None:
                process.kill()
                process.wait()
        self.processes.clear()


async def recovery(url: str) -> float:
    """Seconds from the ``kill -9`` of a node until its in-flight jobs all started again."""
    async with fresh_store(url) as store:
        with tempfile.TemporaryDirectory(prefix="gojob-bench-") as tmp:
            nodes = _Nodes(url, str(store.schema), Path(tmp))
            try:
                nodes.start("victim", "victim", RECOVERY_JOBS)
                await nodes.ready("victim")
                now = await store.now()
                await store.add(
                    [
                        Instance(new_uuid(), "work", created_at=now, scheduled_at=now)
                        for _ in range(RECOVERY_JOBS)
                    ]
                )
                with trio.fail_after(30):
                    while len(nodes.started("victim")) < RECOVERY_JOBS:  # noqa: ASYNC110 - a file
                        await trio.sleep(0.01)
                in_flight = {u for u, _, _ in nodes.started("victim")}
                nodes.start("rescuer", "rescuer", DEFAULT_WORKERS)
                await nodes.ready("rescuer")
                victim = nodes.processes.pop("victim")
                killed = time.time()
                os.kill(victim.pid, signal.SIGKILL)
                victim.wait()
                with trio.fail_after(RECOVERY_LEASE * 5 + 30):
                    while True:
                        rerun = {u: t for u, a, t in nodes.started("rescuer") if a >= 2}
                        if in_flight <= rerun.keys():
                            break
                        await trio.sleep(0.01)
                return max(rerun[u] for u in in_flight) - killed
            finally:
                await nodes.close()


# --- the run -------------------------------------------------------------------------------


async def _rounds(rounds: int, contenders: dict[str, Any]) -> dict[str, list[Any]]:
    """Every contender once per round, the order rotated round by round."""
    results: dict[str, list[Any]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            results[name].append(await contenders[name]())
    return results


def _median_ratio(mine: list[Measurement], theirs: list[Measurement]) -> float:
    return statistics.median(a.rate / b.rate for a, b in zip(mine, theirs, strict=True))


def _best_per_round(results: dict[str, Result], names: list[str]) -> list[Measurement]:
    rounds = len(results[names[0]].runs)
    return [max((results[n].runs[r] for n in names), key=lambda m: m.rate) for r in range(rounds)]


def _rate_table(
    title: str, results: dict[str, Result], mine: list[str], pgq: list[str], proc: str
) -> None:
    best = _best_per_round(results, pgq)
    print(f"\n## {title}")
    print(
        f"{'contender':<48} {'median jobs/s':>13} {'CPU µs/job':>10} {'÷ pgq best':>10} "
        f"{'÷ procr.':>9}  runs"
    )
    for name, res in results.items():
        runs = ", ".join(f"{m.rate:,.0f}" for m in res.runs)
        vs_pgq = _median_ratio(res.runs, best)
        vs_proc = _median_ratio(res.runs, results[proc].runs)
        print(
            f"{name:<48} {res.median_rate:>13,.0f} {res.median_cpu:>10.1f} {vs_pgq:>9.2f}x "
            f"{vs_proc:>8.2f}x  [{runs}]"
        )
    runs_of = [results[n].runs for n in pgq]
    winners = [pgq[[runs[r] for runs in runs_of].index(m)] for r, m in enumerate(best)]
    won = ", ".join(winners)
    print(f"pgqueuer's best, per round: {', '.join(f'{m.rate:,.0f}' for m in best)} ({won})")
    for name in mine:
        print(
            f"{name}: {_median_ratio(results[name].runs, best):.2f}x pgqueuer's best, "
            f"{_median_ratio(results[name].runs, results[proc].runs):.2f}x procrastinate"
        )


def _server_started(url: str) -> str:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT pg_postmaster_start_time()::text").fetchone()
    return str(row[0]) if row else ""


async def run(n: int = 10_000, rounds: int = 3, url: str = DEFAULT_URL) -> None:
    wall0 = time.perf_counter()
    server0 = await trio.to_thread.run_sync(_server_started, url)
    workers = DEFAULT_WORKERS
    n_proc = min(n, PROCRASTINATE_JOBS)
    print(
        f"# PostgreSQL, one worker process, {n:,} no-op async jobs, {rounds} paired rounds, "
        "medians; peers in their own subprocess on the stock asyncio loop"
    )
    async with peer_databases(url, "pgqueuer", "procrastinate") as dsn:
        pgq, proc = dsn["pgqueuer"], dsn["procrastinate"]

        def pg(*args: object) -> Any:
            return lambda: _peer_measure("peers_pgqueuer", pgq, *args)

        def pr(*args: object) -> Any:
            return lambda: _peer_measure("peers_procrastinate", proc, *args)

        g_default = f"gojob, defaults ({workers} workers, the store's prefetch)"
        g_prefetch = f"gojob, prefetch=0 (claims of at most {workers})"
        pgq_names = [
            "pgqueuer, defaults",
            "pgqueuer, batch_size=10",
            "pgqueuer, batch_size=50",
            "pgqueuer, batch_size=100",
        ]
        p_name = f"procrastinate, defaults ({n_proc:,} jobs)"
        raw = await _rounds(
            rounds,
            {
                g_default: lambda: processing(url, n, workers, None),
                g_prefetch: lambda: processing(url, n, workers, 0),
                pgq_names[0]: pg("process", n, 0),
                pgq_names[1]: pg("process", n, 10),
                pgq_names[2]: pg("process", n, 50),
                pgq_names[3]: pg("process", n, 100),
                p_name: pr("process", n_proc),
            },
        )
        _rate_table(
            "(a) processing pre-enqueued no-op jobs, one worker process",
            {k: Result(k, v) for k, v in raw.items()},
            [g_default, g_prefetch],
            pgq_names,
            p_name,
        )

        e_names = [
            "gojob, schedule_many",
            "pgqueuer, Queries.enqueue(lists)",
            "procrastinate, batch_defer_async",
        ]
        raw = await _rounds(
            rounds,
            {
                e_names[0]: lambda: batch_enqueue(url, n),
                e_names[1]: pg("enqueue", n),
                e_names[2]: pr("enqueue", n),
            },
        )
        _rate_table(
            f"(b) batch enqueue of {n:,} jobs (one call)",
            {k: Result(k, v) for k, v in raw.items()},
            [e_names[0]],
            [e_names[1]],
            e_names[2],
        )

        samples = 200
        gaps = await _rounds(
            rounds,
            {
                "gojob": lambda: latency(url, samples),
                "pgqueuer": lambda: _peer_gaps("peers_pgqueuer", pgq, samples),
                "procrastinate": lambda: _peer_gaps("peers_procrastinate", proc, samples),
            },
        )
    print(
        f"\n## (c) enqueue-to-start latency, idle worker, {samples} single jobs per round "
        "(median over rounds of each round's percentile)"
    )
    print(f"{'contender':<16} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  per-round p50")
    p50s: dict[str, float] = {}
    for name, per_round in gaps.items():
        p50s[name] = statistics.median(statistics.median(g) for g in per_round)
        p95 = statistics.median(percentile(g, 95) for g in per_round)
        worst = max(max(g) for g in per_round)
        runs = ", ".join(f"{statistics.median(g) * 1e3:.2f}" for g in per_round)
        print(
            f"{name:<16} {p50s[name] * 1e3:>8.2f} {p95 * 1e3:>8.2f} {worst * 1e3:>8.2f}  [{runs}]"
        )
    print(
        f"gojob p50 ÷ pgqueuer p50: {p50s['gojob'] / p50s['pgqueuer']:.2f}x, "
        f"÷ procrastinate p50: {p50s['gojob'] / p50s['procrastinate']:.2f}x (lower is better)"
    )

    times = [await recovery(url) for _ in range(rounds)]
    print(
        f"\n## (d) gojob recovery after kill -9 of a node running {RECOVERY_JOBS} jobs "
        f"(lease {RECOVERY_LEASE:g} s, reaper every lease; another node idle)"
    )
    print(
        f"median {statistics.median(times):.2f} s  [{', '.join(f'{t:.2f}' for t in times)}]"
        f"   goal ≤ lease + 1 s = {RECOVERY_LEASE + 1:g} s"
    )
    lite = [await sqlite_processing(n, workers) for _ in range(rounds)]
    rates = ", ".join(f"{m.rate:,.0f}" for m in lite)
    print(
        f"\n## (e) SQLite store, the same processing ({n:,} pre-enqueued no-op jobs, "
        f"{workers} workers, a fresh file)"
    )
    print(
        f"median {statistics.median(m.rate for m in lite):,.0f} jobs/s, "
        f"CPU {statistics.median(m.cpu_us_per_op for m in lite):.1f} µs/job  [{rates}]"
        "   goal ≥ 2,000 jobs/s"
    )
    print(f"\n(total {time.perf_counter() - wall0:.0f} s)")
    if await trio.to_thread.run_sync(_server_started, url) != server0:
        print("WARNING: the PostgreSQL server restarted during this run: figures unreliable")
