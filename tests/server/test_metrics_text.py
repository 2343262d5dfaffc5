"""The metrics' own text writer agrees with prometheus_client; the endpoint's HTTP."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import urllib.error
import urllib.request
from functools import partial

import pytest
import trio

pytest.importorskip("prometheus_client")

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gojob.server._exposition import serve_exposition
from gojob.server.metrics import Metrics
from gojob.state import State

PROMTOOL = "/usr/bin/promtool"
KINDS = ["plain", 'quote"d', "back\\slash", "new\nline", "unicodé"]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def busy_metrics() -> Metrics:
    metrics = Metrics()
    metrics.set_registered(5)
    metrics.set_workers(3)
    for index, kind in enumerate(KINDS):
        for _ in range(index + 1):
            started = metrics.attempt_started(kind)
            metrics.attempt_finished(kind, State.COMPLETED, started)
        metrics.attempt_finished(kind, State.TERMINATED, None)
        metrics.canceled(kind)
        metrics.abandoned(kind)
        metrics.families.queued[kind] = index
    metrics.families.unserved["ghost"] = 4
    return metrics


def test_the_text_matches_prometheus_clients_for_the_same_values() -> None:
    metrics = busy_metrics()
    ours = metrics.render().decode()
    theirs = generate_latest(metrics.registry).decode()
    assert samples(ours) == samples(theirs)
    assert [f.name for f in text_string_to_metric_families(ours)] == [
        f.name for f in text_string_to_metric_families(theirs)
    ]
    values = samples(ours)
    assert values[("go_job_completed_total", (("kind", 'quote"d'),))] == 2
    assert values[("go_job_duration_seconds_count", (("kind", "new\nline"),))] == 4
    assert values[("go_job_duration_seconds_bucket", (("kind", "plain"), ("le", "+Inf")))] == 1
    assert values[("gojob_unserved_instances", (("kind", "ghost"),))] == 4


def test_promtool_accepts_the_text() -> None:
    if not shutil.which(PROMTOOL):
        pytest.skip("promtool is not installed")
    checked = subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=busy_metrics().render(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _get(url: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


async def test_the_endpoint_answers_get_and_head_of_metrics_only(nursery: trio.Nursery) -> None:
    renders = 0

    def render() -> bytes:
        nonlocal renders
        renders += 1
        return b"go_job_workers 3.0\n"

    port = await nursery.start(partial(serve_exposition, render, "127.0.0.1", 0, max_age=60))
    base = f"http://127.0.0.1:{port}"
    assert await trio.to_thread.run_sync(_get, base + "/metrics") == (200, b"go_job_workers 3.0\n")
    assert await trio.to_thread.run_sync(_get, base + "/?x=1") == (200, b"go_job_workers 3.0\n")
    assert await trio.to_thread.run_sync(_get, base + "/metrics", "HEAD") == (200, b"")
    assert (await trio.to_thread.run_sync(_get, base + "/other"))[0] == 404
    assert (await trio.to_thread.run_sync(_get, base + "/metrics", "POST"))[0] == 405
    assert renders == 1  # reused while younger than max_age


async def test_a_client_sending_garbage_or_nothing_does_not_stop_the_endpoint(
    nursery: trio.Nursery,
) -> None:
    port = await nursery.start(serve_exposition, lambda: b"ok\n", "127.0.0.1", 0)
    with trio.fail_after(10):
        async with (
            await trio.open_tcp_stream("127.0.0.1", port) as silent,
            await trio.open_tcp_stream("127.0.0.1", port) as oversized,
        ):
            await oversized.send_all(b"GET /" + b"x" * 40_000)
            # Closed without an answer (or reset: it had unread bytes).
            with contextlib.suppress(trio.BrokenResourceError):
                assert await oversized.receive_some() == b""
            # Meanwhile (a silent client still connected), scrapes are answered.
            url = f"http://127.0.0.1:{port}/metrics"
            assert await trio.to_thread.run_sync(_get, url) == (200, b"ok\n")
            assert silent is not None
