"""A restart of the Redis server while a manager enqueues and runs jobs: nothing it
acknowledged is lost, nothing runs twice, and the manager keeps working.

The test runs a ``redis-server`` of its own on a free loopback port, with an
append-only file fsynced at every write (``--appendonly yes --appendfsync always``) in
a temporary directory, and restarts it (``SIGTERM``, then the same command again) in
the middle of the run. The machine's shared server is not touched.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trio

import gojob
from gojob.errors import StoreError
from gojob.instance import Instance, new_uuid
from gojob.state import State
from gojob.store.base import HistoryQuery
from gojob.store.redis import RedisStore

from ._valkey import answers_ping, free_port

JOBS = 2_000
"""Queued before the restart; another ``BATCHES`` x ``BATCH`` arrive during the run."""
BATCHES = 40
BATCH = 25
TIMEOUT = 60.0


class PrivateRedis:
    """A redis-server of the test's own: loopback, a free port, AOF in ``data``."""

    def __init__(self, data: Path) -> None:
        server = shutil.which("redis-server")
        if server is None:
            message = "no redis-server on this machine: cannot restart one"
            if os.environ.get("GOJOB_REQUIRE_SERVICES"):
                pytest.fail(f"{message} (and GOJOB_REQUIRE_SERVICES is set)")
            pytest.skip(message)
        self.port = free_port()
        self.data = data
        self.command = [
            server,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(data),
            "--logfile",
            str(data / "redis.log"),
        ]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command, stdout=subprocess.DEVNULL)

    async def start(self) -> None:
        self.process = self._spawn()
        with trio.fail_after(20):
            while not await trio.to_thread.run_sync(answers_ping, self.port):
                assert self.process.poll() is None, (self.data / "redis.log").read_text()
                await trio.sleep(0.02)

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            with trio.move_on_after(20):
                await trio.to_thread.run_sync(process.wait)
            if process.poll() is None:
                process.kill()
                process.wait()


def _instances(n: int) -> list[Instance]:
    now = datetime.now(UTC)
    return [Instance(new_uuid(), "work", created_at=now, scheduled_at=now) for _ in range(n)]


@pytest.mark.slow
async def test_a_redis_restart_loses_and_repeats_nothing_acknowledged(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path)
    executed: Counter[str] = Counter()
    acknowledged: list[str] = []

    async def work(inst: gojob.Instance) -> None:
        executed[inst.uuid] += 1
        await trio.sleep(0.01)  # 10 workers: under 1,000 jobs/s, so the restart lands mid-way

    async def produce(store: RedisStore) -> None:
        """Enqueue batches all along; a batch whose add failed is sent again (same uuids:
        an add that did land is not repeated)."""
        for _ in range(BATCHES):
            batch = _instances(BATCH)
            while True:
                try:
                    added = await store.add(batch)
                    break
                except StoreError:
                    await trio.sleep(0.05)
            acknowledged.extend(i.uuid for i in added)
            await trio.sleep(0.02)

    await server.start()
    try:
        with trio.fail_after(TIMEOUT):
            async with (
                RedisStore(server.url, prefix="gojob-t-restart", connect_timeout=2.0) as store,
                gojob.open_manager(
                    store,
                    node_id="survivor",
                    workers=10,
                    # Longer than the outage: no attempt loses its lease, none runs twice.
                    lease=5.0,
                    reap_interval=1.0,
                    poll_interval=0.5,
                    drain_grace=5.0,
                    capture_logging=False,
                ) as manager,
            ):
                manager.register(gojob.Job("work", work))
                acknowledged.extend(i.uuid for i in await store.add(_instances(JOBS)))
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(produce, store)
                    while len(executed) < JOBS // 10:  # noqa: ASYNC110 - the workers count
                        await trio.sleep(0.01)
                    await server.stop(signal.SIGTERM)
                    await server.start()
                    done_at_restart = len(executed)
                total = JOBS + BATCHES * BATCH

                async def all_completed() -> bool:
                    try:
                        return await store.counts() == {("work", State.COMPLETED): total}
                    except StoreError:
                        return False

                while not await all_completed():  # noqa: ASYNC110 - the workers' progress
                    await trio.sleep(0.1)
                history = await store.history(
                    HistoryQuery(states=[State.COMPLETED], limit=total + 1)
                )
                # The manager keeps working after the restart.
                after = await manager.wait(await manager.schedule("work"), timeout=10)
    finally:
        with trio.CancelScope(shield=True):
            await server.stop(signal.SIGKILL)

    assert done_at_restart < total, "the restart did not happen during processing"
    assert len(acknowledged) == total
    assert set(executed) == {*acknowledged, after.uuid}, "a job was lost"
    assert set(executed.values()) == {1}, "a job ran twice"
    completed = Counter(r.uuid for r in history)
    assert set(completed) == set(acknowledged)
    assert set(completed.values()) == {1}
    assert after.state is State.COMPLETED
    print(f"\nRedis restart: {done_at_restart} of {total} jobs done when it went down")
