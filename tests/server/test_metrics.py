"""go-job's nine Prometheus metrics, scraped over HTTP after known work.

The manager runs in real time (the scrapes block in threads, which an autojump clock
would skip past), with a metrics server on port 0.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import pytest
import trio

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families

import gojob
from gojob import Job, Manager, State
from gojob.server.metrics import Metrics, serve_metrics

PROMTOOL = "/usr/bin/promtool"

NINE = {
    "go_job_registered",
    "go_job_workers",
    "go_job_queued",
    "go_job_executed",
    "go_job_completed",
    "go_job_terminated",
    "go_job_canceled",
    "go_job_timedout",
    "go_job_duration_seconds",
}


def ok() -> str:
    return "ok"


def fail() -> None:
    raise RuntimeError("boom")


_flaky_calls = 0


def flaky() -> str:
    global _flaky_calls
    _flaky_calls += 1
    if _flaky_calls == 1:
        raise RuntimeError("first attempt fails")
    return "second attempt works"


async def slow() -> None:
    await trio.sleep(30)


_block_started = trio.Event()


async def block() -> None:
    _block_started.set()
    await trio.sleep_forever()


def later() -> None:
    pass


@dataclass
class Served:
    manager: Manager
    metrics: Metrics
    url: str


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    global _flaky_calls, _block_started
    _flaky_calls = 0
    _block_started = trio.Event()
    metrics = Metrics(queued_interval=0.05)
    async with gojob.open_manager(
        workers=4, metrics=metrics, lease=10.0, poll_interval=0.5, drain_grace=0.0
    ) as manager:
        for job in (
            Job("ok", ok),
            Job("fail", fail, max_retries=1),
            Job("flaky", flaky, max_retries=1),
            Job("slow", slow, timeout=0.2),
            Job("block", block),
            Job("later", later),
        ):
            manager.register(job)
        async with trio.open_nursery() as nursery:
            # max_age=0: every scrape formats anew (the tests scrape right after changes).
            port = await nursery.start(partial(serve_metrics, metrics, "127.0.0.1", 0, max_age=0))
            assert port != 0
            yield Served(manager, metrics, f"http://127.0.0.1:{port}/metrics")
            nursery.cancel_scope.cancel()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


async def scrape(url: str) -> str:
    return await trio.to_thread.run_sync(_get, url)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}."""
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def by_kind(
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str
) -> dict[str, float]:
    return {
        dict(labels)["kind"]: value
        for (sample, labels), value in values.items()
        if sample == name and not any(key == "le" for key, _ in labels)
    }


def check_with_promtool(text: str) -> None:
    if not os.path.exists(PROMTOOL) and not shutil.which("promtool"):
        if os.environ.get("GOJOB_REQUIRE_SERVICES"):
            pytest.fail("promtool is missing (GOJOB_REQUIRE_SERVICES is set)")
        pytest.skip("promtool is not installed")
    tool = PROMTOOL if os.path.exists(PROMTOOL) else shutil.which("promtool")
    assert tool is not None
    done = subprocess.run(
        [tool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


async def test_counters_after_known_work(served: Served) -> None:
    manager = served.manager
    oks = [await manager.schedule("ok") for _ in range(3)]
    failed = await manager.schedule("fail")
    flaky_one = await manager.schedule("flaky")
    timed_out = await manager.schedule("slow")
    blocked = await manager.schedule("block")
    queued_then_canceled = await manager.schedule("ok", after=3600)
    for inst in [*oks, failed, flaky_one, timed_out]:
        await manager.wait(inst, timeout=10)
    # The blocking attempt is running before it is canceled.
    with trio.fail_after(10):
        await _block_started.wait()
    canceled = await manager.cancel(kind="block")
    assert [c.uuid for c in canceled] == [blocked.uuid]
    await manager.cancel(queued_then_canceled)
    assert (await manager.wait(blocked, timeout=10)).state is State.CANCELED
    assert (await manager.wait(queued_then_canceled, timeout=10)).state is State.CANCELED
    assert (await manager.get(failed.uuid)).state is State.TERMINATED
    assert (await manager.get(flaky_one.uuid)).state is State.COMPLETED
    assert (await manager.get(timed_out.uuid)).state is State.TIMEDOUT

    text = await scrape(served.url)
    values = samples(text)
    families = {family.name for family in text_string_to_metric_families(text)}
    assert families == NINE | {"gojob_abandoned", "gojob_unserved_instances"}
    assert not [name for name, _ in values if name.endswith("_created")]
    assert "_created" not in text

    assert by_kind(values, "go_job_executed_total") == {
        "ok": 3,
        "fail": 2,
        "flaky": 2,
        "slow": 1,
        "block": 1,
    }
    assert by_kind(values, "go_job_completed_total") == {
        "ok": 3,
        "fail": 0,
        "flaky": 1,
        "slow": 0,
        "block": 0,
    }
    # Failed attempts count even when retried: the history records each of them.
    assert by_kind(values, "go_job_terminated_total")["fail"] == 2
    assert by_kind(values, "go_job_terminated_total")["flaky"] == 1
    assert sum(by_kind(values, "go_job_terminated_total").values()) == 3
    assert by_kind(values, "go_job_timedout_total") == {
        "ok": 0,
        "fail": 0,
        "flaky": 0,
        "slow": 1,
        "block": 0,
    }
    # One canceled while running, one canceled while queued (never executed).
    assert by_kind(values, "go_job_canceled_total") == {
        "ok": 1,
        "fail": 0,
        "flaky": 0,
        "slow": 0,
        "block": 1,
    }
    durations = by_kind(values, "go_job_duration_seconds_count")
    assert durations == by_kind(values, "go_job_executed_total")
    # Each histogram's +Inf bucket holds every attempt; the timed-out one took >= 0.2 s.
    assert values[("go_job_duration_seconds_bucket", (("kind", "slow"), ("le", "+Inf")))] == 1
    assert values[("go_job_duration_seconds_bucket", (("kind", "slow"), ("le", "0.1")))] == 0
    assert by_kind(values, "go_job_duration_seconds_sum")["slow"] >= 0.2
    assert not any(by_kind(values, "gojob_abandoned_total").values())
    check_with_promtool(text)


async def test_gauges_follow_resize_and_registry(served: Served) -> None:
    manager = served.manager
    values = samples(await scrape(served.url))
    assert values[("go_job_registered", ())] == 6
    assert values[("go_job_workers", ())] == 4

    await manager.resize(2)
    manager.unregister("later")
    manager.register(Job("extra", ok))
    manager.unregister("block")
    values = samples(await scrape(served.url))
    assert values[("go_job_registered", ())] == 5
    assert values[("go_job_workers", ())] == 2

    await manager.resize(7)
    assert samples(await scrape(served.url))[("go_job_workers", ())] == 7


async def test_queued_gauge_is_the_stores_scheduled_count(served: Served) -> None:
    manager = served.manager
    for _ in range(3):
        await manager.schedule("later", after=3600)
    await manager.schedule("ok", after=3600)
    done = await manager.schedule("ok")
    await manager.wait(done, timeout=10)

    scheduled = {
        kind: count
        for (kind, state), count in (await manager.store.counts()).items()
        if state is State.SCHEDULED and count
    }
    assert scheduled == {"later": 3, "ok": 1}
    await trio.sleep(0.3)  # a few refresher periods
    text = await scrape(served.url)
    queued = by_kind(samples(text), "go_job_queued")
    assert {kind: count for kind, count in queued.items() if count} == scheduled

    # Canceled: the gauge follows the store down to zero, never below.
    await manager.cancel(kind="later")
    await trio.sleep(0.3)
    queued = by_kind(samples(await scrape(served.url)), "go_job_queued")
    assert queued == {"later": 0, "ok": 1}
    check_with_promtool(await scrape(served.url))


async def test_only_gojob_metrics_are_exposed(served: Served) -> None:
    text = await scrape(served.url)
    names = {family.name for family in text_string_to_metric_families(text)}
    # No process or platform collectors: only gojob's own registry.
    assert names <= NINE | {"gojob_abandoned", "gojob_unserved_instances"}
    assert {f.name for f in text_string_to_metric_families(await scrape(served.url))} == names


async def test_manager_without_metrics_has_none() -> None:
    async with gojob.open_manager(workers=1) as manager:
        assert manager.metrics is None
        inst = await manager.schedule(Job("ok", ok))
        assert (await manager.wait(inst, timeout=10)).state is State.COMPLETED


def test_metrics_rejects_a_bad_interval() -> None:
    with pytest.raises(ValueError, match="queued_interval"):
        Metrics(queued_interval=0)
