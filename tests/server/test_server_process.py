"""``gojob server`` run as a subprocess: jobs from ``--jobs`` modules, scheduled over gRPC,
SIGTERM drains, metrics scraped over HTTP, bad job modules and exposures refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

pytest.importorskip("grpclib")
pytest.importorskip("prometheus_client")

from grpclib import GRPCError
from grpclib.const import Status
from prometheus_client.parser import text_string_to_metric_families

from gojob._generated import gojob_pb2 as gpb
from gojob._generated import service_pb2 as pb
from gojob.errors import StoreUnavailable
from gojob.instance import Instance, new_uuid
from gojob.server._guard import SHUTDOWN_MESSAGE
from gojob.state import State
from gojob.store.sql import SqliteStore

from ._process import Client, ServerProcess, grpc_client, run_server_to_exit, running_server

PROMTOOL = "/usr/bin/promtool"


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


async def wait_for_state(client: Client, uuid: str, state: int) -> None:
    """Until the instance reaches ``state`` (or a final state, which fails the test)."""
    seen: list[int] = []

    async def on_event(event: gpb.InstanceEvent) -> bool:
        if event.type == gpb.EVENT_TYPE_STARTED:
            return False
        seen.append(event.state)
        return event.state == state

    with trio.fail_after(30):
        await client.stream(
            client.gojob.WatchEvents,
            gpb.WatchEventsRequest(uuid=uuid, until_final=True),
            on_event,
        )
    assert seen, "no state seen"
    assert seen[-1] == state, seen


async def schedule(client: Client, kind: str, *arguments: str) -> str:
    reply = await client.call(
        client.jobs.ScheduleJob, pb.ScheduleJobRequest(kind=kind, arguments=list(arguments))
    )
    assert isinstance(reply, pb.ScheduleJobResponse)
    return reply.instance.uuid


async def scrape(server: ServerProcess) -> str:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"

    def get() -> str:
        with urllib.request.urlopen(url, timeout=10) as response:
            body: bytes = response.read()
        return body.decode()

    return await trio.to_thread.run_sync(get)


async def stored(url: str, uuid: str) -> Instance:
    async with SqliteStore(url) as store:
        found = await store.get(uuid)
    assert found is not None
    return found


async def test_jobs_from_the_module_run_when_scheduled_over_grpc(tmp_path: Path) -> None:
    async with (
        running_server(tmp_path, "--store", sqlite_url(tmp_path), "--workers", "2") as server,
        grpc_client(server.grpc_port) as client,
    ):
        listed = await client.call(client.jobs.ListRegisteredJobs, pb.ListRegisteredJobsRequest())
        # "add" and "sleep" from the module's JobSet, "echo" from its register().
        assert {job.kind for job in listed.jobs} == {"add", "sleep", "echo"}
        assert {job.kind: job.description for job in listed.jobs}["add"] == "Add two integers."
        uuid = await schedule(client, "add", "2", "3")
        await wait_for_state(client, uuid, pb.JOB_STATE_COMPLETED)
        done = await client.call(client.gojob.GetInstance, gpb.GetInstanceRequest(uuid=uuid))
        assert json.loads(done.result_json) == 5
        echoed = await client.call(
            client.gojob.Schedule, gpb.ScheduleRequest(kind="echo", args_json='["hi"]')
        )
        await wait_for_state(client, echoed.instance.uuid, pb.JOB_STATE_COMPLETED)
        info = await client.call(client.gojob.GetServerInfo, gpb.GetServerInfoRequest())
        assert info.workers == 2
        assert await server.stop() == 0
    assert (await stored(sqlite_url(tmp_path), uuid)).state is State.COMPLETED


async def test_the_default_store_is_a_sqlite_file_in_the_working_directory(
    tmp_path: Path,
) -> None:
    async with running_server(tmp_path) as server, grpc_client(server.grpc_port) as client:
        uuid = await schedule(client, "add", "1", "1")
        await wait_for_state(client, uuid, pb.JOB_STATE_COMPLETED)
    assert (await stored(f"sqlite:///{tmp_path / 'gojob.db'}", uuid)).result == 2


async def test_sigterm_ends_streams_and_gives_running_jobs_their_grace(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    stream_errors: list[GRPCError] = []
    async with (
        running_server(tmp_path, "--store", url, "--drain-grace", "30") as server,
        grpc_client(server.grpc_port) as client,
    ):
        uuid = await schedule(client, "sleep", "1.5")
        await wait_for_state(client, uuid, pb.JOB_STATE_PROCESSING)
        watching = trio.Event()

        async def on_event(event: gpb.InstanceEvent) -> bool:
            watching.set()
            return False

        async def watch() -> None:
            try:
                await client.stream(
                    client.gojob.WatchEvents, gpb.WatchEventsRequest(kind="nothing"), on_event
                )
            except GRPCError as exc:
                stream_errors.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            with trio.fail_after(10):
                await watching.wait()
            code = await server.stop(signal.SIGTERM)
    assert code == 0, server.stderr()
    assert [e.status for e in stream_errors] == [Status.UNAVAILABLE]
    assert stream_errors[0].message == SHUTDOWN_MESSAGE
    # The attempt ran to its end within the grace.
    done = await stored(url, uuid)
    assert done.state is State.COMPLETED
    assert done.result == "slept"
    assert "SIGTERM received" in server.stderr()


async def test_a_job_outliving_the_grace_is_released_and_the_server_exits_0(
    tmp_path: Path,
) -> None:
    url = sqlite_url(tmp_path)
    async with (
        running_server(tmp_path, "--store", url, "--drain-grace", "0.3") as server,
        grpc_client(server.grpc_port) as client,
    ):
        uuid = await schedule(client, "sleep", "600")
        await wait_for_state(client, uuid, pb.JOB_STATE_PROCESSING)
        with trio.fail_after(20):
            code = await server.stop(signal.SIGINT)
    assert code == 0, server.stderr()
    released = await stored(url, uuid)
    assert released.state is State.SCHEDULED  # back in the queue for another node


async def test_metrics_over_http_pass_promtool_and_count_the_work(tmp_path: Path) -> None:
    if not shutil.which(PROMTOOL):
        pytest.skip("promtool is not installed")
    async with (
        running_server(tmp_path, "--store", sqlite_url(tmp_path), "--workers", "3") as server,
        grpc_client(server.grpc_port) as client,
    ):
        uuid = await schedule(client, "add", "4", "5")
        await wait_for_state(client, uuid, pb.JOB_STATE_COMPLETED)
        text = await scrape(server)
    checked = await trio.run_process(
        [PROMTOOL, "check", "metrics"],
        stdin=text.encode(),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("go_job_registered", ())] == 3
    assert samples[("go_job_workers", ())] == 3
    assert samples[("go_job_completed_total", (("kind", "add"),))] == 1
    assert samples[("go_job_executed_total", (("kind", "add"),))] == 1


async def test_queued_kinds_that_no_node_runs_are_reported(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    async with SqliteStore(url, auto_migrate=True) as store:
        now = await store.now()
        await store.add(
            [Instance(new_uuid(), "ghost", created_at=now, scheduled_at=now) for _ in range(2)]
        )
    async with running_server(tmp_path, "--store", url) as server:
        text = await scrape(server)
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
        assert samples[("gojob_unserved_instances", (("kind", "ghost"),))] == 2
        assert not any(
            name == "gojob_unserved_instances" and labels != (("kind", "ghost"),)
            for name, labels in samples
        )
    assert "'ghost'" in server.stderr()
    assert "no live node registers" in server.stderr()


async def test_no_metrics_endpoint_with_no_metrics(tmp_path: Path) -> None:
    async with running_server(tmp_path, "--store", "memory://", "--no-metrics") as server:
        assert server.metrics_port is None
        assert await server.stop() == 0


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("tests.server.jobs_empty", "registers no job"),
        ("tests.server.jobs_broken", "this module is broken on purpose"),
        ("tests.server.no_such_module", "not found"),
    ],
)
async def test_a_bad_job_module_stops_the_server_with_its_reason(
    tmp_path: Path, module: str, message: str
) -> None:
    done = await run_server_to_exit(
        tmp_path, "--store", "memory://", "--port", "0", "--no-metrics", "--jobs", module
    )
    assert done.returncode == 1
    assert message in done.stderr.decode()
    assert module in done.stderr.decode()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--host", "0.0.0.0"], "non-loopback address '0.0.0.0' without TLS or a token"),
        (["--metrics-host", "0.0.0.0"], "refusing to serve metrics on non-loopback"),
        (["--workers", "zero"], "--workers: expected an integer, got 'zero'"),
    ],
)
async def test_unsafe_or_bad_settings_are_refused_before_starting(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    done = await run_server_to_exit(tmp_path, "--store", "memory://", "--port", "0", *flags)
    assert done.returncode == 2
    assert message in done.stderr.decode()
    assert not done.stdout  # never listened


async def test_settings_from_the_environment_and_a_config_file(tmp_path: Path) -> None:
    (tmp_path / "gojob.toml").write_text('workers = 3\nstore = "memory://"\nlease = "20s"\n')
    env = {"GOJOB_CONFIG": str(tmp_path / "gojob.toml"), "GOJOB_WORKERS": "4"}
    async with (
        running_server(tmp_path, "--node-id", "from-flags", env=env) as server,
        grpc_client(server.grpc_port) as client,
    ):
        info = await client.call(client.gojob.GetServerInfo, gpb.GetServerInfoRequest())
    assert (info.workers, info.node_id, info.store) == (4, "from-flags", "memory")
    assert not (tmp_path / "gojob.db").exists()


async def test_a_port_in_use_is_reported(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = await run_server_to_exit(
            tmp_path, "--store", "memory://", "--port", str(port), "--no-metrics"
        )
    assert done.returncode == 1
    assert "cannot listen" in done.stderr.decode()


@pytest.fixture
async def pg_schema() -> AsyncIterator[tuple[str, str]]:
    """``(url, schema)``: a fresh, empty PostgreSQL schema (dropped afterwards)."""
    from tests.sql._postgres import create_schema, drop_schema, postgres_url

    try:
        url = postgres_url()
        schema = await trio.to_thread.run_sync(lambda: create_schema(url, migrate_to_head=False))
    except StoreUnavailable as exc:
        if os.environ.get("GOJOB_REQUIRE_SERVICES"):
            raise
        pytest.skip(str(exc))
    try:
        yield url, schema
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(drop_schema, url, schema)


async def test_on_postgresql_with_a_schema_it_migrates(
    tmp_path: Path, pg_schema: tuple[str, str]
) -> None:
    url, schema = pg_schema
    flags = ["--store", url, "--schema", schema, "--migrate", "--no-metrics"]
    async with running_server(tmp_path, *flags) as server, grpc_client(server.grpc_port) as c:
        uuid = await schedule(c, "add", "20", "22")
        await wait_for_state(c, uuid, pb.JOB_STATE_COMPLETED)
        done = await c.call(c.gojob.GetInstance, gpb.GetInstanceRequest(uuid=uuid))
        assert json.loads(done.result_json) == 42
        assert await server.stop() == 0
