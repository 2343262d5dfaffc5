"""The Redis store, side by side with SAQ and arq on the same server: processing of
pre-enqueued no-op jobs by one worker process, batch enqueue, and enqueue-to-start
latency on an idle worker.

Every measurement works under names of its own (a fresh key prefix for gojob, a fresh
queue name and job ids for the peers) on the Redis of ``--url`` (default
``GOJOB_REDIS_URL``, else the local server), and deletes exactly its own keys when it
is done (SCAN by that name; never FLUSHALL or FLUSHDB).

* **processing**: ``n`` no-op jobs already queued when the worker starts, until the last
  one ran; gojob with its defaults (10 workers, the store's prefetch: claims of up to
  110) and with ``prefetch=0`` (claims of at most 10); SAQ and arq with theirs (10
  concurrent jobs each);
* **batch enqueue**: gojob's ``schedule_many`` of ``n`` jobs (one script); the peers have
  no batch call: one enqueue per job, run concurrently;
* **latency**: from the enqueue call returning to the executor's first line, single jobs
  one at a time on an idle worker (gojob: same process; peers: producer and worker in
  one process too).

The peers (``peers_saq.py``, ``peers_arq.py``) are asyncio libraries: each measurement
runs in a subprocess of its own on the stock asyncio loop. Contenders run once per round,
the order rotated round by round (paired rounds); figures are medians over the rounds,
and a ratio is the median of the per-round ratios.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import trio

import gojob
from gojob.instance import Instance, new_uuid
from gojob.manager import DEFAULT_WORKERS
from gojob.store.redis import RedisStore

from ._runner import Measurement, Result, measure, percentile

__all__ = ["DEFAULT_URL", "run"]

DEFAULT_URL = os.environ.get("GOJOB_REDIS_URL") or "redis://127.0.0.1:6379/0"
ARQ_JOBS = 1_000
"""arq polls its queue (``poll_delay=0.5`` s, up to ``max_jobs`` jobs a poll): ~200 jobs/s
here, so 10,000 jobs would take ~50 s a round; its rate is measured on this many."""
ARQ_SAMPLES = 20
"""arq's latency is its poll delay (~0.5 s a sample): fewer samples."""
PEER_TIMEOUT = 180.0


@asynccontextmanager
async def fresh_store(url: str) -> AsyncIterator[RedisStore]:
    """A store under a prefix of its own; its keys are deleted afterwards."""
    prefix = f"gojob-bench-{uuid.uuid4().hex[:10]}"
    try:
        async with RedisStore(url, prefix=prefix) as store:
            yield store
    finally:
        with trio.CancelScope(shield=True):
            await _delete_prefix(url, prefix)


async def _delete_prefix(url: str, prefix: str) -> None:
    import coredis

    from gojob.store.redis import redis_url
    from gojob.store.redis.keys import Keys

    keys = Keys(prefix)
    async with coredis.Redis.from_url(redis_url(url), decode_responses=True) as client:
        batch: list[str] = []
        async for key in client.scan_iter(match=keys.pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await client.delete(batch)
                batch = []
        if batch:
            await client.delete(batch)


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
    """One manager working through ``n`` pre-enqueued no-op jobs."""
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


async def batch_enqueue(url: str, n: int) -> Measurement:
    """``schedule_many`` of ``n`` jobs: one script."""
    async with (
        fresh_store(url) as store,
        gojob.open_manager(store, capture_logging=False) as manager,
    ):
        manager.register(gojob.Job("noop", _Counter(n).noop))
        await manager.schedule_many("noop", [()], after=3600)  # scripts loaded: not measured

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
    return gaps[10:]  # the first ones warm the connections and script cache


# --- the peers: one subprocess per measurement ------------------------------------------------


async def _peer(module: str, url: str, *args: object) -> dict[str, Any]:
    command = [sys.executable, "-m", f"benchmarks.{module}", url, *map(str, args)]
    with trio.fail_after(PEER_TIMEOUT):
        done = await trio.run_process(
            command, capture_stdout=True, capture_stderr=True, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {args} failed:\n{done.stderr.decode()}")
    lines = done.stdout.decode().strip().splitlines()
    return json.loads(lines[-1]) if lines else {}


def _peer_measure(module: str, url: str, *args: object) -> Callable[[], Awaitable[Measurement]]:
    async def run() -> Measurement:
        out = await _peer(module, url, *args)
        return Measurement(int(out["ops"]), float(out["wall"]), float(out["cpu"]))

    return run


def _peer_gaps(module: str, url: str, samples: int) -> Callable[[], Awaitable[list[float]]]:
    async def run() -> list[float]:
        out = await _peer(module, url, "latency", samples)
        return [float(g) for g in out["gaps"]]

    return run


# --- the run ---------------------------------------------------------------------------------


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


def _rate_table(
    title: str, results: dict[str, Result], mine: list[str], saq: str, arq: str
) -> None:
    print(f"\n## {title}")
    print(
        f"{'contender':<52} {'median jobs/s':>13} {'CPU µs/job':>10} {'÷ SAQ':>7} "
        f"{'÷ arq':>7}  runs"
    )
    for name, res in results.items():
        runs = ", ".join(f"{m.rate:,.0f}" for m in res.runs)
        print(
            f"{name:<52} {res.median_rate:>13,.0f} {res.median_cpu:>10.1f} "
            f"{_median_ratio(res.runs, results[saq].runs):>6.2f}x "
            f"{_median_ratio(res.runs, results[arq].runs):>6.2f}x  [{runs}]"
        )
    for name in mine:
        print(
            f"{name}: {_median_ratio(results[name].runs, results[saq].runs):.2f}x SAQ, "
            f"{_median_ratio(results[name].runs, results[arq].runs):.2f}x arq"
        )


async def run(jobs: int = 10_000, rounds: int = 3, url: str = DEFAULT_URL) -> None:
    wall0 = time.perf_counter()
    workers = DEFAULT_WORKERS
    n_arq = min(jobs, ARQ_JOBS)
    print(
        f"# Redis ({url}), one worker process, {jobs:,} no-op async jobs, {rounds} paired "
        "rounds, medians; peers in their own subprocess on the stock asyncio loop"
    )
    g_default = f"gojob, defaults ({workers} workers, the store's prefetch)"
    g_prefetch = f"gojob, prefetch=0 (claims of at most {workers})"
    saq_name = "SAQ, defaults (concurrency=10)"
    arq_name = f"arq, defaults (max_jobs=10; {n_arq:,} jobs)"
    raw = await _rounds(
        rounds,
        {
            g_default: lambda: processing(url, jobs, workers, None),
            g_prefetch: lambda: processing(url, jobs, workers, 0),
            saq_name: _peer_measure("peers_saq", url, "process", jobs),
            arq_name: _peer_measure("peers_arq", url, "process", n_arq),
        },
    )
    _rate_table(
        "(a) processing pre-enqueued no-op jobs, one worker process",
        {k: Result(k, v) for k, v in raw.items()},
        [g_default, g_prefetch],
        saq_name,
        arq_name,
    )

    e_names = ["gojob, schedule_many", "SAQ, enqueue x n (gather)", "arq, enqueue_job x n (gather)"]
    raw = await _rounds(
        rounds,
        {
            e_names[0]: lambda: batch_enqueue(url, jobs),
            e_names[1]: _peer_measure("peers_saq", url, "enqueue", jobs),
            e_names[2]: _peer_measure("peers_arq", url, "enqueue", jobs),
        },
    )
    _rate_table(
        f"(b) batch enqueue of {jobs:,} jobs",
        {k: Result(k, v) for k, v in raw.items()},
        [e_names[0]],
        e_names[1],
        e_names[2],
    )

    samples = 200
    gaps = await _rounds(
        rounds,
        {
            "gojob": lambda: latency(url, samples),
            "SAQ": _peer_gaps("peers_saq", url, samples),
            f"arq ({ARQ_SAMPLES} samples)": _peer_gaps("peers_arq", url, ARQ_SAMPLES),
        },
    )
    print(
        f"\n## (c) enqueue-to-start latency, idle worker, {samples} single jobs per round "
        "(median over rounds of each round's percentile)"
    )
    print(f"{'contender':<20} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  per-round p50")
    p50s: dict[str, float] = {}
    for name, per_round in gaps.items():
        p50s[name] = statistics.median(statistics.median(g) for g in per_round)
        p95 = statistics.median(percentile(g, 95) for g in per_round)
        worst = max(max(g) for g in per_round)
        runs = ", ".join(f"{statistics.median(g) * 1e3:.2f}" for g in per_round)
        print(
            f"{name:<20} {p50s[name] * 1e3:>8.2f} {p95 * 1e3:>8.2f} {worst * 1e3:>8.2f}  [{runs}]"
        )
    print(f"gojob p50 ÷ SAQ p50: {p50s['gojob'] / p50s['SAQ']:.2f}x (lower is better)")
    print(f"\n(total {time.perf_counter() - wall0:.0f} s)")
