"""gojob's own calls (gojob.v1.GojobService), unary ones, with grpclib's client."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import trio
from google.protobuf.duration_pb2 import Duration
from grpclib.const import Status

import gojob
from gojob import State
from gojob._generated import gojob_pb2 as gpb
from gojob._generated import service_pb2 as pb
from gojob.store.base import NodeRecord

from .conftest import Api, gates


def seconds(value: float) -> Duration:
    d = Duration()
    d.FromTimedelta(timedelta(seconds=value))
    return d


async def test_server_info(api: Api) -> None:
    info = await api.call(api.gojob.GetServerInfo, gpb.GetServerInfoRequest())
    assert info.version == gojob.__version__
    assert info.api_version == "1"
    assert info.node_id == api.manager.node_id
    assert info.store == "memory"
    assert info.workers == 2
    assert set(info.kinds) == {"add", "fail", "slow", "scaled", "daily", "chatty"}
    assert info.lookup_limit == 1000
    assert info.max_message_bytes == 4 * 1024 * 1024
    assert info.uptime.ToTimedelta() >= timedelta(0)
    assert info.started_at.ToDatetime(tzinfo=UTC) <= datetime.now(UTC)


async def test_statistics(api: Api) -> None:
    await api.manager.schedule_many("slow", [(1.0,)] * 3, after=3600)
    stats = await api.call(api.gojob.GetStatistics, gpb.GetStatisticsRequest())
    assert stats.node_id == api.manager.node_id
    assert stats.workers == 2
    assert stats.queued == 3
    counts = {(c.kind, c.state): c.count for c in stats.counts}
    assert counts[("slow", pb.JOB_STATE_SCHEDULED)] == 3
    assert dict(stats.unserved_kinds) == {}


async def test_list_jobs(api: Api) -> None:
    reply = await api.call(api.gojob.ListJobs, gpb.ListJobsRequest())
    jobs = {job.kind: job for job in reply.jobs}
    assert jobs["add"].description == "adds two ints"
    assert jobs["add"].signature == "a: int, b: int"
    assert jobs["add"].max_retries == 1
    assert jobs["add"].timeout.ToTimedelta() == timedelta(seconds=30)
    assert not jobs["add"].is_async
    assert jobs["chatty"].signature == "key: str, lines: int"  # the Instance is injected
    assert jobs["chatty"].is_async
    assert jobs["daily"].schedule == "cron '0 7 * * *' in UTC"
    assert not jobs["add"].HasField("schedule")


async def test_schedule_one_off_with_options(api: Api) -> None:
    m = api.manager
    # gojob's JSON arguments, keyword arguments too.
    reply = await api.call(
        api.gojob.Schedule,
        gpb.ScheduleRequest(
            kind="scaled",
            args_json="[[1, 2, 3]]",
            kwargs_json='{"scale": 10}',
            priority=2,
            timeout=seconds(5),
            max_retries=3,
            backoff=seconds(0.5),
        ),
    )
    assert reply.WhichOneof("result") == "instance"
    inst = reply.instance
    assert inst.kind == "scaled"
    assert json.loads(inst.args_json) == [[1, 2, 3]]
    assert json.loads(inst.kwargs_json) == {"scale": 10}
    assert (inst.priority, inst.max_retries) == (2, 3)
    assert inst.timeout.ToTimedelta() == timedelta(seconds=5)
    done = await m.wait(inst.uuid, timeout=10)
    assert done.result == [10, 20, 30]
    got = await api.call(api.gojob.GetInstance, gpb.GetInstanceRequest(uuid=inst.uuid))
    assert got.state == pb.JOB_STATE_COMPLETED
    assert json.loads(got.result_json) == [10, 20, 30]
    assert got.attempts == 1
    assert got.node_id == m.node_id
    assert got.HasField("completed_at")
    assert not got.HasField("error")

    # go-job's string arguments, coerced; after a delay.
    later = await api.call(
        api.gojob.Schedule,
        gpb.ScheduleRequest(kind="add", arguments=["1", "2"], after=seconds(3600)),
    )
    stored = await m.get(later.instance.uuid)
    assert stored.args == [1, 2]
    assert stored.scheduled_at is not None
    assert stored.scheduled_at - stored.created_at >= timedelta(seconds=3599)  # type: ignore[operator]

    # At an instant; a dedupe key returns the same instance while it is not final.
    at = datetime.now(UTC) + timedelta(hours=2)
    request = gpb.ScheduleRequest(kind="add", args_json="[2, 3]", dedupe_key="once")
    request.at.FromDatetime(at)
    first = await api.call(api.gojob.Schedule, request)
    again = await api.call(api.gojob.Schedule, request)
    assert again.instance.uuid == first.instance.uuid
    assert first.instance.dedupe_key == "once"
    assert abs(first.instance.scheduled_at.ToDatetime(tzinfo=UTC) - at) < timedelta(milliseconds=1)


async def test_recurring_schedules(api: Api) -> None:
    cron = await api.call(
        api.gojob.Schedule,
        gpb.ScheduleRequest(
            kind="add",
            args_json="[1, 1]",
            cron="30 6 * * *",
            tz="Europe/Paris",
            overlap=gpb.OVERLAP_SKIP,
            misfire=gpb.MISFIRE_SKIP,
            misfire_cap=5,
            jitter=seconds(2),
        ),
    )
    assert cron.WhichOneof("result") == "schedule"
    sched = cron.schedule
    assert sched.kind == "add"
    assert (sched.cron, sched.tz) == ("30 6 * * *", "Europe/Paris")
    assert sched.description == "cron '30 6 * * *' in Europe/Paris"
    assert sched.overlap == gpb.OVERLAP_SKIP
    assert sched.misfire == gpb.MISFIRE_SKIP
    assert sched.misfire_cap == 5
    assert sched.jitter.ToTimedelta() == timedelta(seconds=2)
    assert json.loads(sched.args_json) == [1, 1]
    assert sched.next_fire_at.ToDatetime(tzinfo=UTC) > datetime.now(UTC)
    assert not sched.paused

    every = await api.call(
        api.gojob.Schedule,
        gpb.ScheduleRequest(
            kind="slow", args_json="[0]", every=seconds(3600), schedule_id="hourly-slow"
        ),
    )
    assert every.schedule.id == "hourly-slow"
    assert every.schedule.every.ToTimedelta() == timedelta(hours=1)
    assert every.schedule.HasField("anchor")

    listed = await api.call(api.gojob.ListSchedules, gpb.ListSchedulesRequest())
    ids = {s.id for s in listed.schedules}
    assert {sched.id, "hourly-slow"} <= ids
    only_slow = await api.call(api.gojob.ListSchedules, gpb.ListSchedulesRequest(kind="slow"))
    assert [s.id for s in only_slow.schedules] == ["hourly-slow"]

    paused = await api.call(api.gojob.PauseSchedule, gpb.ScheduleIdRequest(id="hourly-slow"))
    assert paused.paused
    got = await api.call(api.gojob.GetSchedule, gpb.ScheduleIdRequest(id="hourly-slow"))
    assert got.paused
    resumed = await api.call(api.gojob.ResumeSchedule, gpb.ScheduleIdRequest(id="hourly-slow"))
    assert not resumed.paused
    await api.call(api.gojob.DeleteSchedule, gpb.ScheduleIdRequest(id="hourly-slow"))
    for method in (api.gojob.GetSchedule, api.gojob.PauseSchedule, api.gojob.DeleteSchedule):
        err = await api.error(method, gpb.ScheduleIdRequest(id="hourly-slow"))
        assert err.status is Status.NOT_FOUND
        assert "hourly-slow" in (err.message or "")


async def test_list_instances_filters_and_pages(api: Api) -> None:
    m = api.manager
    # One batch: the same created_at and scheduled_at, so ties are ordered by uuid.
    batch = await m.schedule_many("slow", [(float(i),) for i in range(5)], after=3600)
    queued = sorted(batch, key=lambda inst: inst.uuid)
    done = await m.schedule("add", 1, 2)
    await m.wait(done, timeout=10)

    by_kind = await api.call(api.gojob.ListInstances, gpb.ListInstancesRequest(kind="slow"))
    assert [i.uuid for i in by_kind.instances] == [i.uuid for i in queued]
    assert not by_kind.HasField("next_offset")
    completed = await api.call(
        api.gojob.ListInstances, gpb.ListInstancesRequest(states=[pb.JOB_STATE_COMPLETED])
    )
    assert [i.uuid for i in completed.instances] == [done.uuid]
    one = await api.call(api.gojob.ListInstances, gpb.ListInstancesRequest(uuid=done.uuid))
    assert [i.uuid for i in one.instances] == [done.uuid]

    pages = []
    offset = 0
    while True:
        page = await api.call(
            api.gojob.ListInstances, gpb.ListInstancesRequest(kind="slow", limit=2, offset=offset)
        )
        pages.append([i.uuid for i in page.instances])
        if not page.HasField("next_offset"):
            break
        offset = page.next_offset
    uuids = [i.uuid for i in queued]
    assert pages == [uuids[0:2], uuids[2:4], uuids[4:]]

    newest = await api.call(
        api.gojob.ListInstances,
        gpb.ListInstancesRequest(
            kind="slow", descending=True, order_by=gpb.ORDER_BY_SCHEDULED_AT, limit=1
        ),
    )
    assert [i.uuid for i in newest.instances] == [queued[-1].uuid]
    assert newest.next_offset == 1


async def test_lookup_reply_fits_in_one_message(api: Api) -> None:
    """Rows beyond what one reply can carry are left to the next page."""
    await api.manager.schedule_many("fail", [("x" * 200_000,)] * 30, after=3600)
    page = await api.call(api.gojob.ListInstances, gpb.ListInstancesRequest(kind="fail"))
    assert 0 < len(page.instances) < 30
    assert page.next_offset == len(page.instances)
    assert page.ByteSize() <= 4 * 1024 * 1024


async def test_cancel(api: Api) -> None:
    m = api.manager
    slow = await m.schedule_many("slow", [(1.0,)] * 2, after=3600)
    other = await m.schedule("add", 1, 2, after=3600)
    by_uuid = await api.call(api.gojob.Cancel, gpb.CancelRequest(uuid=slow[0].uuid))
    assert [i.uuid for i in by_uuid.instances] == [slow[0].uuid]
    assert by_uuid.instances[0].state == pb.JOB_STATE_CANCELLED
    assert by_uuid.instances[0].HasField("canceled_at")
    by_kind = await api.call(
        api.gojob.Cancel, gpb.CancelRequest(kind="slow", states=[pb.JOB_STATE_SCHEDULED])
    )
    assert [i.uuid for i in by_kind.instances] == [slow[1].uuid]
    # A final instance matches nothing (and is no error).
    again = await api.call(api.gojob.Cancel, gpb.CancelRequest(uuid=slow[0].uuid))
    assert list(again.instances) == []
    err = await api.error(api.gojob.Cancel, gpb.CancelRequest())
    assert err.status is Status.INVALID_ARGUMENT
    err = await api.error(api.gojob.Cancel, gpb.CancelRequest(uuid="no-such-uuid"))
    assert err.status is Status.NOT_FOUND
    everything = await api.call(api.gojob.Cancel, gpb.CancelRequest(all=True))
    assert [i.uuid for i in everything.instances] == [other.uuid]
    assert (await m.get(other.uuid)).state is State.CANCELED


async def test_retry(api: Api) -> None:
    m = api.manager
    failed = await m.wait(await m.schedule("fail", "boom"), timeout=10)
    assert failed.state is State.TERMINATED
    reply = await api.call(api.gojob.Retry, gpb.RetryRequest(uuid=failed.uuid))
    assert reply.instance.state == pb.JOB_STATE_SCHEDULED
    again = await m.wait(failed.uuid, timeout=10)
    assert again.state is State.TERMINATED
    assert again.attempts == 2
    got = await api.call(api.gojob.GetInstance, gpb.GetInstanceRequest(uuid=failed.uuid))
    assert got.error == "RuntimeError: boom"
    assert got.error_type == "RuntimeError"
    assert "RuntimeError: boom" in got.traceback

    queued = await m.schedule("add", 1, 2, after=3600)
    err = await api.error(api.gojob.Retry, gpb.RetryRequest(uuid=queued.uuid))
    assert err.status is Status.FAILED_PRECONDITION
    err = await api.error(api.gojob.Retry, gpb.RetryRequest(uuid="no-such-uuid"))
    assert err.status is Status.NOT_FOUND
    err = await api.error(api.gojob.GetInstance, gpb.GetInstanceRequest(uuid="no-such-uuid"))
    assert err.status is Status.NOT_FOUND


async def test_history_and_logs(api: Api) -> None:
    m = api.manager
    for gate in gates("hl", 2):
        gate.set()
    inst = await m.wait(await m.schedule("chatty", "hl", 2), timeout=10)
    assert inst.state is State.COMPLETED

    history = await api.call(api.gojob.GetHistory, gpb.GetHistoryRequest(uuid=inst.uuid))
    states = [r.state for r in history.records]
    assert states[-2:] == [pb.JOB_STATE_PROCESSING, pb.JOB_STATE_COMPLETED]
    assert pb.JOB_STATE_SCHEDULED in states
    last = history.records[-1]
    assert last.kind == "chatty"
    assert last.attempt == 1
    assert json.loads(last.details_json)["result"] == 2
    only = await api.call(
        api.gojob.GetHistory,
        gpb.GetHistoryRequest(uuid=inst.uuid, states=[pb.JOB_STATE_COMPLETED]),
    )
    assert [r.state for r in only.records] == [pb.JOB_STATE_COMPLETED]
    first = await api.call(
        api.gojob.GetHistory, gpb.GetHistoryRequest(uuid=inst.uuid, limit=1, descending=True)
    )
    assert [r.state for r in first.records] == [pb.JOB_STATE_COMPLETED]
    assert first.next_offset == 1

    logs = await api.call(api.gojob.GetLogs, gpb.GetLogsRequest(uuid=inst.uuid))
    assert [e.message for e in logs.entries] == ["line 0", "line 1"]
    assert {e.level for e in logs.entries} == {gpb.LOG_LEVEL_INFO}
    assert logs.entries[0].attempt == 1
    assert logs.entries[0].HasField("timestamp")
    errors = await api.call(
        api.gojob.GetLogs, gpb.GetLogsRequest(uuid=inst.uuid, min_level=gpb.LOG_LEVEL_ERROR)
    )
    assert list(errors.entries) == []
    second = await api.call(api.gojob.GetLogs, gpb.GetLogsRequest(kind="chatty", limit=1, offset=1))
    assert [e.message for e in second.entries] == ["line 1"]
    assert not second.HasField("next_offset")


async def test_resize_workers(api: Api) -> None:
    reply = await api.call(api.gojob.ResizeWorkers, gpb.ResizeWorkersRequest(workers=5))
    assert (reply.previous, reply.workers) == (2, 5)
    assert api.manager.workers == 5
    reply = await api.call(api.gojob.ResizeWorkers, gpb.ResizeWorkersRequest(workers=1))
    assert (reply.previous, reply.workers) == (5, 1)
    for bad in (0, -1):
        err = await api.error(api.gojob.ResizeWorkers, gpb.ResizeWorkersRequest(workers=bad))
        assert err.status is Status.INVALID_ARGUMENT
        assert "workers" in (err.message or "")
    assert api.manager.workers == 1


async def test_list_nodes(api: Api) -> None:
    other = NodeRecord("other-node", kinds=["x"], workers=3, host="h", pid=42, version="9")
    await api.manager.store.heartbeat(other, 30.0)
    try:
        reply = await api.call(api.gojob.ListNodes, gpb.ListNodesRequest())
        nodes = {n.node_id: n for n in reply.nodes}
        node = nodes["other-node"]
        assert list(node.kinds) == ["x"]
        assert (node.workers, node.host, node.pid, node.version) == (3, "h", 42, "9")
        assert node.expires_at.ToDatetime(tzinfo=UTC) > node.last_seen.ToDatetime(tzinfo=UTC)
        assert set(nodes) <= {"other-node", api.manager.node_id}
    finally:
        await api.manager.store.remove_node("other-node")
    with trio.fail_after(5):
        reply = await api.call(api.gojob.ListNodes, gpb.ListNodesRequest())
    assert "other-node" not in {n.node_id for n in reply.nodes}
