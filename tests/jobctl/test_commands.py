"""Every jobctl command against a live server: table output, ``--json`` output, exit 0."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import trio

import gojob
from gojob import Job, State

from .conftest import Ctl, add, gates

TIMEOUT = 60


def _row(lines: list[str], text: str) -> str:
    found = [line for line in lines if text in line]
    assert len(found) == 1, lines
    return found[0]


async def test_schedule_now_then_look_it_up(served: Ctl) -> None:
    with trio.fail_after(TIMEOUT):
        shown = await served.run("schedule", "add", "1", "2")
        assert shown.code == 0, shown.err
        header, row = shown.lines()
        assert header.split() == ["UUID", "KIND", "STATE", "TRIES", "SCHEDULED", "ARGS", "OUTCOME"]
        uuid = row.split()[0]
        assert row.split()[1] == "add"
        done = await served.manager.wait(uuid, timeout=10)
        assert done.state is State.COMPLETED
        assert done.result == 3
        data = (await served.json("schedule", "add", "40", "2"))["instance"]
        assert data["kind"] == "add"
        assert data["args"] == [40, 2]
        assert data["state"] in ("Scheduled", "Processing", "Completed")
        await served.manager.wait(data["uuid"], timeout=10)

        table = await served.run(
            "instances", "--kind", "add", "--state", "Completed", "--limit", "20"
        )
        assert table.code == 0, table.err
        assert "-> 3" in _row(table.lines(), uuid)
        assert "Completed" in _row(table.lines(), uuid)
        assert "-> 42" in _row(table.lines(), data["uuid"])
        listed = await served.json("instances", "--kind", "add", "--state", "completed")
        assert {i["uuid"]: i["result"] for i in listed["instances"]} == {
            uuid: 3,
            data["uuid"]: 42,
        }
        assert listed["next_offset"] is None
        utc = await served.run("--utc", "instances", "--kind", "add")
        assert _row(utc.lines(), uuid).split()[5].endswith("Z")
        page = await served.run("instances", "--kind", "add", "--limit", "1")
        assert len(page.lines()) == 2
        assert "--offset 1" in page.err  # where the next page starts
        newest = await served.json("instances", "--desc", "--limit", "1", "--since", "1h")
        assert [i["uuid"] for i in newest["instances"]] == [data["uuid"]]
        assert newest["next_offset"] == 1

        one = await served.run("instance", uuid)
        assert one.code == 0, one.err
        fields = dict(line.split(":", 1) for line in one.lines() if ":" in line)
        assert fields["state"].strip() == "Completed"
        assert fields["result"].strip() == "3"
        assert fields["args"].strip() == "[1, 2]"
        assert fields["max retries"].strip() == "1"
        assert fields["timeout"].strip() == "30s"
        full = await served.json("instance", uuid)
        assert full["uuid"] == uuid
        assert full["result"] == 3
        assert full["attempts"] == 1
        assert full["timeout"] == 30.0
        assert full["error"] is None
        assert full["completed_at"].endswith("Z")

        history = await served.run("history", uuid)
        assert history.code == 0, history.err
        states = [line.split()[2] for line in history.lines()[1:]]
        assert states == ["Created", "Scheduled", "Processing", "Completed"]
        records = (await served.json("history", uuid))["records"]
        assert [r["state"] for r in records] == states
        assert records[-1]["details"]["result"] == 3
        by_state = await served.json("history", "--kind", "add", "--state", "Completed")
        assert {r["uuid"] for r in by_state["records"]} == {uuid, data["uuid"]}


async def test_a_failed_instance(served: Ctl) -> None:
    with trio.fail_after(TIMEOUT):
        data = (await served.json("schedule", "fail", "boom"))["instance"]
        await served.manager.wait(data["uuid"], timeout=10)
        table = await served.run("instances", "--kind", "fail", "--state", "final")
        row = _row(table.lines(), data["uuid"])
        assert "Terminated" in row
        assert row.endswith("  RuntimeError: boom")
        shown = await served.run("instance", data["uuid"])
        head, traceback = shown.out.split("traceback:\n", 1)
        fields = dict(line.split(":", 1) for line in head.splitlines())
        assert fields["error"].strip() == "RuntimeError: boom"
        assert fields["error type"].strip() == "RuntimeError"
        assert traceback.startswith("  Traceback (most recent call last):")
        assert "RuntimeError: boom" in traceback
        full = await served.json("instance", data["uuid"])
        assert full["error_type"] == "RuntimeError"
        assert full["result"] is None
        assert "raise RuntimeError(reason)" in full["traceback"]


async def test_schedule_options(served: Ctl) -> None:
    with trio.fail_after(TIMEOUT):
        before = datetime.now(UTC)
        later = (
            await served.json(
                "schedule",
                "add",
                "1",
                "2",
                "--after",
                "10s",
                "--timeout",
                "5s",
                "--retries",
                "3",
                "--priority",
                "1",
            )
        )["instance"]
        assert later["state"] == "Scheduled"
        assert later["priority"] == 1
        assert later["max_retries"] == 3
        assert later["timeout"] == 5.0
        due = datetime.fromisoformat(later["scheduled_at"])
        assert timedelta(seconds=9) < due - before < timedelta(seconds=20)

        at = datetime(2030, 1, 1, 7, tzinfo=UTC)
        fixed = await served.json("schedule", "add", "1", "1", "--at", "2030-01-01T08:00+01:00")
        assert datetime.fromisoformat(fixed["instance"]["scheduled_at"]) == at

        forever = await served.json(
            "schedule", "add", "1", "1", "--after", "1h", "--retries", "inf"
        )
        assert forever["instance"]["max_retries"] == -1

        # JSON arguments; negative numbers; ARGs after options.
        by_json = (await served.json("schedule", "add", "--json-args", "[1, 2]"))["instance"]
        scaled = await served.json(
            "schedule", "scaled", "--json-args", "[[1, 2]]", "--kwargs", '{"scale": 3}'
        )
        negative = (await served.json("schedule", "add", "-1", "-2"))["instance"]
        mixed = (await served.json("schedule", "add", "--priority", "2", "5", "6"))["instance"]
        assert mixed["args"] == [5, 6]
        assert mixed["priority"] == 2
        results = [
            (await served.manager.wait(i["uuid"], timeout=10)).result
            for i in (by_json, scaled["instance"], negative, mixed)
        ]
        assert results == [3, [3, 6], -3, 11]

        first = await served.json("schedule", "slow", "1", "--after", "1h", "--dedupe-key", "k1")
        again = await served.json("schedule", "slow", "1", "--after", "1h", "--dedupe-key", "k1")
        assert first["instance"]["uuid"] == again["instance"]["uuid"]
        assert first["instance"]["dedupe_key"] == "k1"


async def test_recurring_schedules(served: Ctl) -> None:
    with trio.fail_after(TIMEOUT):
        made = await served.run(
            "schedule", "daily", "--cron", "0 7 * * *", "--tz", "Europe/Paris", "--id",
            "daily-report",
        )  # fmt: skip
        assert made.code == 0, made.err
        assert made.lines()[0].split()[:4] == ["ID", "KIND", "STATUS", "TRIGGER"]
        assert "cron '0 7 * * *' in Europe/Paris" in _row(made.lines(), "daily-report")
        every = (
            await served.json(
                "schedule",
                "daily",
                "--every",
                "1h30m",
                "--overlap",
                "skip",
                "--misfire",
                "catch-up-all",
                "--misfire-cap",
                "2",
                "--jitter",
                "250ms",
                "--id",
                "every-daily",
            )
        )["schedule"]
        assert every["every"] == 5400.0
        assert every["overlap"] == "skip"
        assert every["misfire"] == "catch-up-all"
        assert every["misfire_cap"] == 2
        assert every["jitter"] == 0.25
        assert every["cron"] is None

        listed = await served.run("schedules")
        assert listed.code == 0, listed.err
        assert "active" in _row(listed.lines(), "daily-report")
        assert "every-daily" in listed.out
        by_kind = await served.json("schedules", "list", "--kind", "daily")
        ids = {s["id"] for s in by_kind["schedules"]}
        assert {"daily-report", "every-daily"} <= ids
        assert (await served.json("schedules", "--kind", "add"))["schedules"] == []

        paused = await served.run("schedules", "pause", "daily-report")
        assert "paused" in _row(paused.lines(), "daily-report")
        shown = await served.run("schedules", "show", "daily-report")
        fields = dict(line.split(":", 1) for line in shown.lines())
        assert fields["status"].strip() == "paused"
        assert fields["tz"].strip() == "Europe/Paris"
        assert fields["cron"].strip() == "0 7 * * *"
        resumed = await served.json("schedules", "resume", "daily-report")
        assert resumed["paused"] is False
        assert resumed["tz"] == "Europe/Paris"

        deleted = await served.run("schedules", "delete", "daily-report")
        assert deleted.code == 0
        assert "deleted schedule daily-report" in deleted.out
        assert (await served.json("schedules", "delete", "every-daily")) == {
            "deleted": "every-daily"
        }
        gone = await served.run("schedules", "show", "daily-report")
        assert gone.code == 1
        assert "(NOT_FOUND)" in gone.err


async def test_cancel_and_retry(served: Ctl) -> None:
    m = served.manager
    with trio.fail_after(TIMEOUT):
        one = await m.schedule("slow", 60, after=3600)
        two = await m.schedule("slow", 60, after=3600)
        three = await m.schedule("add", 1, 2, after=3600)
        four = await m.schedule("add", 1, 2, after=3600)

        by_uuid = await served.run("cancel", one.uuid)
        assert by_uuid.code == 0, by_uuid.err
        assert "Canceled" in _row(by_uuid.lines(), one.uuid)
        assert "1 instance(s) canceled" in by_uuid.err
        by_kind = await served.json("cancel", "--kind", "slow")
        assert [(i["uuid"], i["state"]) for i in by_kind["instances"]] == [(two.uuid, "Canceled")]
        by_state = await served.json("cancel", "--kind", "add", "--state", "Scheduled")
        assert {i["uuid"] for i in by_state["instances"]} == {three.uuid, four.uuid}
        five = await m.schedule("add", 1, 2, after=3600)
        everything = await served.json("cancel", "--all")
        assert [i["uuid"] for i in everything["instances"]] == [five.uuid]

        again = await served.run("retry", one.uuid)
        assert again.code == 0, again.err
        assert "Scheduled" in _row(again.lines(), one.uuid)
        await m.cancel(one.uuid)
        await m.wait(one.uuid, timeout=10)
        later = await served.json("retry", one.uuid, "--after", "1h")
        due = datetime.fromisoformat(later["instance"]["scheduled_at"])
        assert due - datetime.now(UTC) > timedelta(minutes=50)
        refused = await served.run("retry", one.uuid)  # not final
        assert refused.code == 1
        assert "(FAILED_PRECONDITION)" in refused.err


async def test_logs_of_an_instance(served: Ctl) -> None:
    m = served.manager
    with trio.fail_after(TIMEOUT):
        for event in gates("logs", 2):
            event.set()
        inst = await m.schedule("chatty", "logs", 2)
        await m.wait(inst, timeout=10)
        shown = await served.run("logs", inst.uuid)
        assert shown.code == 0, shown.err
        assert [line.split("  ")[-1] for line in shown.lines()] == ["line 0", "line 1"]
        assert all(" INFO " in line and "#1" in line for line in shown.lines())
        data = await served.json("logs", inst.uuid)
        assert [e["message"] for e in data["entries"]] == ["line 0", "line 1"]
        assert {e["level"] for e in data["entries"]} == {"INFO"}
        quiet = await served.run("logs", inst.uuid, "--level", "warn")
        assert quiet.code == 0
        assert quiet.out == ""
        assert "no log lines match" in quiet.err
        by_kind = await served.run("logs", "--kind", "chatty", "--desc", "--limit", "1")
        assert by_kind.lines() == [by_kind.lines()[0]]
        assert inst.uuid in by_kind.out
        assert by_kind.out.rstrip().endswith("line 1")


async def test_workers_nodes_jobs_stats_version(served: Ctl) -> None:
    m = served.manager
    with trio.fail_after(TIMEOUT):
        shown = await served.run("workers")
        assert shown.code == 0, shown.err
        assert shown.lines()[1].split()[:3] == [m.node_id, "2", "2"]
        resized = await served.run("workers", "3")
        assert resized.code == 0
        assert resized.out.strip() == "workers: 2 -> 3"
        assert m.workers == 3
        assert await served.json("workers", "2", "--cancel-busy") == {"previous": 3, "workers": 2}
        assert (await served.json("workers"))["workers"] == 2

        nodes = await served.run("nodes")
        assert nodes.code == 0, nodes.err
        assert "add,chatty,daily,fail,scaled,slow" in _row(nodes.lines(), m.node_id)
        assert [n["node_id"] for n in (await served.json("nodes"))["nodes"]] == [m.node_id]

        # A kind with queued instances that no live node registers.
        m.register(Job("ghost", add))
        await m.schedule("ghost", 1, 2, after=3600)
        await m.schedule("ghost", 1, 2, after=3600)
        m.unregister("ghost")
        jobs = await served.run("jobs")
        assert jobs.code == 0, jobs.err
        row = _row(jobs.lines(), "adds two ints")
        assert row.split()[:2] == ["add", "(a:"]
        assert "30s" in row
        assert "cron '0 7 * * *' in UTC" in _row(jobs.lines(), "daily")
        assert "UNSERVED" in jobs.out
        assert _row(jobs.lines(), "ghost").split() == ["ghost", "2"]
        data = await served.json("jobs")
        assert data["unserved_kinds"] == {"ghost": 2}
        assert {j["kind"] for j in data["jobs"]} == {
            "add", "fail", "slow", "scaled", "daily", "chatty"
        }  # fmt: skip
        add_info = next(j for j in data["jobs"] if j["kind"] == "add")
        assert add_info["signature"] == "a: int, b: int"
        assert add_info["max_retries"] == 1

        stats = await served.run("stats")
        assert stats.code == 0, stats.err
        assert stats.lines()[0].split() == ["node:", m.node_id]
        assert _row(stats.lines(), "Scheduled").split() == ["ghost", "Scheduled", "2"]
        counts = (await served.json("stats"))["counts"]
        assert {"kind": "ghost", "state": "Scheduled", "count": 2} in counts

        version = await served.run("version")
        assert version.code == 0, version.err
        assert version.lines()[0] == f"client:   jobctl {gojob.__version__}"
        assert version.lines()[1].startswith(f"server:   gojob {gojob.__version__}")
        info = await served.json("version")
        assert info["client"]["version"] == gojob.__version__
        assert info["server"]["node_id"] == m.node_id
        assert info["server"]["store"] == "memory"
