"""Bad requests to gojob's calls: each gets its precise status, and the server serves on."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from google.protobuf.duration_pb2 import Duration
from grpclib.const import Status

import gojob
from gojob._generated import gojob_pb2 as gpb

from .conftest import Api


def dur(value: float) -> Duration:
    d = Duration()
    d.FromTimedelta(timedelta(seconds=value))
    return d


def add(**fields: Any) -> gpb.ScheduleRequest:
    """A request for ``add`` with good arguments, but for ``fields``."""
    return gpb.ScheduleRequest(**{"kind": "add", "args_json": "[1, 2]", **fields})


INVALID = Status.INVALID_ARGUMENT
SCHEDULE_CASES: list[tuple[gpb.ScheduleRequest, Status, str]] = [
    (gpb.ScheduleRequest(kind="nope"), Status.NOT_FOUND, "nope"),
    (gpb.ScheduleRequest(), INVALID, "kind"),
    (add(args_json="[1, "), INVALID, "JSON"),
    (add(args_json='{"a": 1}'), INVALID, "array"),
    (add(kwargs_json="[1]"), INVALID, "object"),
    (add(args_json='[1, "x"]'), INVALID, "'b'"),
    (add(args_json="[1, NaN]"), INVALID, "JSON"),
    (add(args_json="[1]"), INVALID, "missing"),
    (add(kwargs_json='{"c": 3}'), INVALID, "c"),
    (add(args_json="", arguments=["1", "two"]), INVALID, "'b'"),
    (add(arguments=["1"]), INVALID, "not both"),
    (add(cron="61 * * * *"), INVALID, "61"),
    (add(cron="* * *"), INVALID, "cron"),
    (add(cron="@daily", tz="Mars/Olympus"), INVALID, "Mars"),
    (add(tz="UTC"), INVALID, "tz"),
    (add(after=dur(-5)), INVALID, "after"),
    (add(every=dur(0)), INVALID, "positive"),
    (add(timeout=dur(-1)), INVALID, "timeout"),
    (add(max_retries=-5), INVALID, "max_retries"),
    (add(cron="@daily", dedupe_key="k"), INVALID, "dedupe_key"),
    (add(misfire_cap=3), INVALID, "misfire_cap"),
    (add(cron="@daily", overlap=99), INVALID, "overlap"),
    (add(args_json="[" * 100_000 + "]" * 100_000), INVALID, ""),
    (add(kind="fail", args_json=f'["{"x" * 2_000_000}"]'), INVALID, "cap"),  # the args cap
    (add(kind="fail", args_json="", arguments=["x" * 5_000_000]), Status.RESOURCE_EXHAUSTED, "cap"),
]


async def test_bad_schedule_requests(api: Api) -> None:
    for request, status, needle in SCHEDULE_CASES:
        err = await api.error(api.gojob.Schedule, request)
        assert err.status is status, (request.kind, request.args_json[:40], err)
        assert needle in (err.message or ""), (needle, err.message)
    assert await api.manager.instances() == []
    info = await api.call(api.gojob.GetServerInfo, gpb.GetServerInfoRequest())
    assert info.version == gojob.__version__


async def test_bad_lookups_and_operations(api: Api) -> None:
    g = api.gojob
    cases = [
        (g.ListInstances, gpb.ListInstancesRequest(limit=-1), Status.INVALID_ARGUMENT),
        (g.ListInstances, gpb.ListInstancesRequest(offset=-1), Status.INVALID_ARGUMENT),
        (g.ListInstances, gpb.ListInstancesRequest(states=[3]), Status.INVALID_ARGUMENT),  # type: ignore[list-item]
        (g.ListInstances, gpb.ListInstancesRequest(order_by=9), Status.INVALID_ARGUMENT),  # type: ignore[arg-type]
        (g.GetHistory, gpb.GetHistoryRequest(limit=-5), Status.INVALID_ARGUMENT),
        (g.GetLogs, gpb.GetLogsRequest(min_level=7), Status.INVALID_ARGUMENT),  # type: ignore[arg-type]
        (g.GetInstance, gpb.GetInstanceRequest(), Status.INVALID_ARGUMENT),
        (g.GetInstance, gpb.GetInstanceRequest(uuid="nope"), Status.NOT_FOUND),
        (g.Retry, gpb.RetryRequest(), Status.INVALID_ARGUMENT),
        (g.Retry, gpb.RetryRequest(uuid="nope", after=dur(-1)), Status.INVALID_ARGUMENT),
        (g.Cancel, gpb.CancelRequest(states=[5]), Status.INVALID_ARGUMENT),  # type: ignore[list-item]
        (g.GetSchedule, gpb.ScheduleIdRequest(), Status.INVALID_ARGUMENT),
        (g.ResumeSchedule, gpb.ScheduleIdRequest(id="nope"), Status.NOT_FOUND),
        (g.ResizeWorkers, gpb.ResizeWorkersRequest(workers=-3), Status.INVALID_ARGUMENT),
        (g.WatchEvents, gpb.WatchEventsRequest(until_final=True), Status.INVALID_ARGUMENT),
    ]
    for method, request, status in cases:
        assert callable(method)
        err = await api.error(method, request)
        assert err.status is status, (method, request, err)
        assert err.message
    assert api.manager.workers == 2
    info = await api.call(g.GetServerInfo, gpb.GetServerInfoRequest())
    assert info.workers == 2


async def test_large_lookup_limit_is_capped(api: Api) -> None:
    await api.manager.schedule_many("slow", [(1.0,)] * 3, after=3600)
    reply = await api.call(api.gojob.ListInstances, gpb.ListInstancesRequest(limit=1_000_000))
    assert len(reply.instances) == 3
