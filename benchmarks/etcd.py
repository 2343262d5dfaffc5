"""The etcd store: processing of pre-enqueued no-op jobs by one worker process, batch
enqueue, and enqueue-to-start latency on an idle worker, next to the raw rate of etcd's
JSON gateway measured in the same run (the ceiling every etcd client here shares).

Every measurement runs under a fresh key prefix of its own on the etcd of ``--url``
(default ``GOJOB_ETCD_URL``, else ``etcd://127.0.0.1:2379``); its keys are deleted after.

* **raw gateway**: sequential single-key puts through httpx, one per request (what a
  store doing one write per job would get at best);
* **processing**: ``n`` no-op jobs already stored when the manager starts, until the
  last one ran; with the default pool (10 workers) and the store's preferred prefetch
  (claims of up to 40), and with 10 workers and no prefetch (claims of 10);
* **batch enqueue**: ``schedule_many`` of ``n`` jobs (transactions of ~60 instances);
* **latency**: from ``schedule()`` returning to the executor's first line, 100 jobs one
  at a time on an idle manager (the wake-up comes back through etcd's watch).

Paired rounds: each section runs its contenders once per round, rotating the order;
figures are medians over the rounds.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import httpx
import trio

import gojob
from gojob.instance import Instance, new_uuid
from gojob.store.etcd import EtcdStore
from gojob.store.etcd.client import b64, prefix_end

from ._runner import Measurement, Result, measure, paired_rounds, percentile, report

__all__ = ["DEFAULT_URL", "run"]

DEFAULT_URL = os.environ.get("GOJOB_ETCD_URL") or "etcd://127.0.0.1:2379"
LATENCY_SAMPLES = 100
RAW_PUTS = 500


@asynccontextmanager
async def fresh_store(url: str) -> AsyncIterator[EtcdStore]:
    prefix = f"gojob-bench/{uuid.uuid4().hex[:12]}/"
    async with EtcdStore(url, prefix=prefix) as store:
        try:
            yield store
        finally:
            with trio.CancelScope(shield=True):
                await store.client.call(
                    "/v3/kv/deleterange",
                    {"key": b64(prefix), "range_end": b64(prefix_end(prefix))},
                )


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


async def raw_puts(url: str, n: int) -> Measurement:
    """Sequential single-key puts through the gateway (httpx, one request each)."""
    async with fresh_store(url) as store:
        base = store.client.base_url
        key = b64(store.prefix + "raw")
        async with httpx.AsyncClient(base_url=base) as client:

            async def body() -> None:
                for i in range(n):
                    answer = await client.post(
                        "/v3/kv/put", json={"key": key, "value": b64(str(i))}
                    )
                    answer.raise_for_status()

            return await measure(n, body)


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
    async with fresh_store(url) as store, gojob.open_manager(store, capture_logging=False) as m:
        # Registered, but never due: only the enqueue is measured.
        m.register(gojob.Job("noop", _Counter(n).noop))

        async def body() -> None:
            await m.schedule_many("noop", [()] * n, after=3600)

        return await measure(n, body)


async def latency(url: str, samples: int) -> list[float]:
    """Seconds from ``schedule`` returning to the executor's first line, idle manager."""
    started: list[float] = []
    arrived = trio.Event()

    async def probe() -> None:
        started.append(time.perf_counter())
        arrived.set()

    gaps: list[float] = []
    async with fresh_store(url) as store, gojob.open_manager(store, capture_logging=False) as m:
        m.register(gojob.Job("probe", probe))
        for _ in range(samples + 5):
            arrived = trio.Event()
            await m.schedule("probe")
            t0 = time.perf_counter()
            await arrived.wait()
            gaps.append(started[-1] - t0)
            await trio.sleep(0.01)  # idle again between samples
    return gaps[5:]  # the first ones open the connections


async def run(jobs: int, rounds: int, url: str) -> None:
    print(f"# etcd store ({url}): {jobs} jobs, {rounds} paired rounds")
    processed = await paired_rounds(
        rounds,
        {
            "raw gateway put (1 key/request)": lambda: raw_puts(url, RAW_PUTS),
            "gojob, defaults (prefetch 30)": lambda: processing(url, jobs, 10, None),
            "gojob, 10 workers, no prefetch": lambda: processing(url, jobs, 10, 0),
        },
    )
    report(
        f"processing {jobs} pre-enqueued no-op jobs, one worker process",
        processed,
        "raw gateway put (1 key/request)",
    )
    enqueued = await paired_rounds(
        rounds, {"gojob schedule_many": lambda: batch_enqueue(url, jobs)}
    )
    _print_single("batch enqueue (schedule_many)", enqueued)
    print("\n## enqueue-to-start latency, idle manager (ms)")
    p50s, p95s = [], []
    for _ in range(rounds):
        gaps = await latency(url, LATENCY_SAMPLES)
        p50s.append(percentile(gaps, 50) * 1000)
        p95s.append(percentile(gaps, 95) * 1000)
    print(
        f"p50 {statistics.median(p50s):.1f} ms, p95 {statistics.median(p95s):.1f} ms "
        f"(medians of {rounds} rounds of {LATENCY_SAMPLES}; "
        f"p50 per round {', '.join(f'{v:.1f}' for v in p50s)})"
    )


def _print_single(title: str, results: dict[str, Result]) -> None:
    print(f"\n## {title}")
    for name, res in results.items():
        rates = ", ".join(f"{m.rate:,.0f}" for m in res.runs)
        print(
            f"{name:<34} {res.median_rate:>10,.0f} ops/s  CPU {res.median_cpu:,.0f} µs/op"
            f"  runs: {rates}"
        )
