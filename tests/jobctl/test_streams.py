"""``jobctl logs --follow`` and ``jobctl watch``: output line by line while they run."""

from __future__ import annotations

import json
import signal

import trio

from gojob import State

from .conftest import Ctl, gates

TIMEOUT = 60


async def test_follow_prints_lines_as_they_are_logged_and_ends_when_final(served: Ctl) -> None:
    m = served.manager
    opened = gates("follow", 3)
    with trio.fail_after(TIMEOUT):
        inst = await m.schedule("chatty", "follow", 3)
        async with served.start("logs", inst.uuid, "--follow") as running:
            for index in range(3):
                line = await running.stdout.until(f"line {index}")
                assert " INFO " in line
                assert "#1" in line
                # The job writes its next line only once jobctl printed this one.
                assert not opened[index].is_set()
                opened[index].set()
            assert await running.stdout.next() is None  # the stream ended by itself
            code, err = await running.finish()
        assert code == 0, err
        assert f"chatty {inst.uuid} is Completed" in err
        assert (await m.get(inst.uuid)).state is State.COMPLETED


async def test_follow_json_lines_and_level_filter(served: Ctl) -> None:
    m = served.manager
    for event in gates("done", 2):
        event.set()
    with trio.fail_after(TIMEOUT):
        inst = await m.schedule("chatty", "done", 2)
        await m.wait(inst, timeout=10)
        # A final instance: the whole log, then the end.
        result = await served.run("--json", "logs", inst.uuid, "-f")
        assert result.code == 0, result.err
        entries = [json.loads(line) for line in result.lines()]
        assert [e["message"] for e in entries] == ["line 0", "line 1"]
        assert {e["uuid"] for e in entries} == {inst.uuid}
        warned = await served.run("logs", inst.uuid, "--follow", "--level", "warn")
        assert warned.code == 0
        assert warned.out == ""
        refused = await served.run("logs", inst.uuid, "--follow", "--limit", "3")
        assert refused.code == 2
        assert "does not take --limit" in refused.err


async def test_watch_prints_events_until_sigint(served: Ctl) -> None:
    m = served.manager
    with trio.fail_after(TIMEOUT):
        async with served.start("watch", "--kind", "add") as running:
            started = await running.stdout.next()
            assert started is not None
            assert "STARTED" in started
            await m.schedule("slow", 0)  # another kind: not shown
            inst = await m.schedule("add", 1, 2)
            states: list[str] = []
            while not states or states[-1] != "Completed":
                line = await running.stdout.until(inst.uuid)
                assert line.split()[2:5] == ["STATE", inst.uuid, "add"]
                states.append(line.split()[5])
            assert states == ["Scheduled", "Processing", "Completed"]
            running.process.send_signal(signal.SIGINT)
            code, err = await running.finish()
            assert code == 0, err
            assert err == ""
            assert "slow" not in "\n".join(running.stdout.seen)


async def test_watch_json_lines_and_until_final(served: Ctl) -> None:
    m = served.manager
    with trio.fail_after(TIMEOUT):
        async with served.start("--json", "watch", "--state", "Completed") as running:
            first = await running.stdout.next()
            assert first is not None
            assert json.loads(first)["type"] == "STARTED"
            inst = await m.schedule("add", 2, 3)
            event = json.loads(await running.stdout.until(inst.uuid))
            assert event["type"] == "STATE"
            assert event["state"] == "Completed"
            assert event["kind"] == "add"
            assert event["node_id"] == m.node_id
            running.process.send_signal(signal.SIGINT)
            code, _ = await running.finish()
            assert code == 0

        # --until-final: the current state first, the end once final, no Ctrl-C needed.
        # A gated job: Processing (the current state) until the watch has printed it.
        gate = gates("until-final", 1)
        held = await m.schedule("chatty", "until-final", 1)
        async with served.start("watch", "--uuid", held.uuid, "--until-final") as running:
            first = await running.stdout.until(held.uuid)
            assert first.split()[5] == "Processing"
            gate[0].set()
            await running.stdout.until("Completed")
            assert await running.stdout.next() is None  # it ends by itself
            code, err = await running.finish()
        assert code == 0, err
        states = [line.split()[5] for line in running.stdout.seen if held.uuid in line]
        assert states == ["Processing", "Completed"]
        queued = await m.schedule("add", 1, 1)
        await m.wait(queued)
        done = await served.run(
            "--json", "watch", "--uuid", queued.uuid, "--until-final", "--with-instance"
        )
        assert done.code == 0, done.err
        started, final = (json.loads(line) for line in done.lines())
        assert started["type"] == "STARTED"
        assert started["uuid"] == ""
        assert final["state"] == "Completed"
        assert final["instance"]["result"] == 2


async def test_follow_stopped_with_sigint_exits_0(served: Ctl) -> None:
    m = served.manager
    gates("stopped", 2)
    with trio.fail_after(TIMEOUT):
        inst = await m.schedule("chatty", "stopped", 2)
        async with served.start("logs", inst.uuid, "--follow") as running:
            await running.stdout.until("line 0")
            running.process.send_signal(signal.SIGINT)
            code, err = await running.finish()
        assert code == 0, err
        assert err == ""
        assert (await m.get(inst.uuid)).state is State.PROCESSING  # still running
