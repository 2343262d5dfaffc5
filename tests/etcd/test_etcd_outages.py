"""Outages and history on etcd.

* An etcd member stopped (SIGTERM) and restarted on the same ports and data directory
  while a manager works through a queue: no job is lost or run twice, the manager
  carries on, and its watch resumes (a job added by another node afterwards starts on
  the watch's wake-up, long before the manager's poll).
* A compacted revision: a watch whose next revision was compacted away emits RESYNC and
  goes on from the current revision; the work it did not hear about is found by querying.
"""

from __future__ import annotations

import os
from collections import Counter

import pytest
import trio

import gojob
from gojob.instance import Instance, new_uuid
from gojob.state import State
from gojob.store.base import EventType, HistoryQuery
from gojob.store.etcd import EtcdStore

from ..sql.test_postgres_processes import instances, wait_until
from ..store import collect_events
from ..store.conftest import REQUIRE_SERVICES_ENV
from ._etcd import delete_prefix, etcd_store, fresh_prefix
from ._server import EtcdServer, etcd_binary

RESTART_JOBS = 1_000
OUTAGE = 1.5
"""Seconds etcd stays down: longer than a few claim and finish round trips, shorter
than the manager's lease (so no attempt may be reaped, and none runs twice)."""


@pytest.fixture
def etcd_server() -> EtcdServer:
    if etcd_binary() is None:
        message = "no etcd binary: cannot start a member of the test's own"
        if os.environ.get(REQUIRE_SERVICES_ENV):
            pytest.fail(message)
        pytest.skip(message)
    return EtcdServer()


async def test_an_etcd_restart_during_processing_loses_and_repeats_nothing(
    etcd_server: EtcdServer,
) -> None:
    executed: Counter[str] = Counter()
    late = trio.Event()

    async def work(inst: gojob.Instance) -> None:
        executed[inst.uuid] += 1
        await trio.sleep(0.02)  # 10 workers: under 500 jobs/s, so the outage lands mid-way

    async def after_restart() -> None:
        late.set()

    server = etcd_server
    prefix = fresh_prefix()
    try:
        await trio.to_thread.run_sync(server.start)
        async with (
            EtcdStore(server.url, prefix=prefix, retry_for=2.0) as store,
            gojob.open_manager(
                store,
                node_id="survivor",
                workers=10,
                lease=15.0,  # longer than the outage plus the client's retries
                reap_interval=1.0,
                # Slower than the test: after the restart only the watch can wake it.
                poll_interval=60.0,
                drain_grace=5.0,
                capture_logging=False,
            ) as manager,
        ):
            manager.register(gojob.Job("work", work))
            manager.register(gojob.Job("late", after_restart))
            given = await store.add(instances(await store.now(), "work", RESTART_JOBS))

            async def some_done() -> bool:
                await trio.lowlevel.checkpoint()
                return len(executed) >= RESTART_JOBS // 10

            await wait_until(some_done, 30, 0.01)
            await trio.to_thread.run_sync(server.stop)
            done_at_stop = len(executed)
            await trio.sleep(OUTAGE)  # the outage itself: the manager runs against no etcd
            await trio.to_thread.run_sync(server.start)

            async def all_completed() -> bool:
                return await store.counts() == {("work", State.COMPLETED): RESTART_JOBS}

            await wait_until(all_completed, 60, 0.2)
            history = await store.history(
                HistoryQuery(states=[State.COMPLETED], limit=RESTART_JOBS + 1)
            )
            # Another node adds work: the manager hears of it through its (resumed)
            # watch, not its 60 s poll.
            async with EtcdStore(server.url, prefix=prefix) as other:
                now = await other.now()
                await other.add([Instance(new_uuid(), "late", created_at=now, scheduled_at=now)])
            with trio.fail_after(10):
                await late.wait()
            await delete_prefix(store, prefix)
    finally:
        await trio.to_thread.run_sync(server.cleanup)

    assert done_at_stop < RESTART_JOBS, "the outage did not happen during processing"
    assert set(executed) == {i.uuid for i in given}, "a job was lost"
    assert set(executed.values()) == {1}, "a job ran twice"
    completed = Counter(r.uuid for r in history)
    assert len(completed) == RESTART_JOBS
    assert set(completed.values()) == {1}
    print(f"\netcd restart: {done_at_stop} of {RESTART_JOBS} jobs done when it stopped")


async def test_a_compacted_revision_resyncs_the_watch_and_no_work_is_missed() -> None:
    with trio.fail_after(10):
        async with etcd_store() as store, store.subscribe() as sub:
            # The subscription starts after the revision current now; its watch opens on
            # the first read. Meanwhile work arrives and history is compacted past it.
            now = await store.now()
            missed = await store.add(instances(now, "job.a", 1))
            missed += await store.add(instances(now, "job.a", 1))
            # Compaction keeps the revision it is given: the first add's is gone.
            await store.compact()
            batch = await sub.__anext__()
            assert [e.type for e in batch] == [EventType.RESYNC]
            # Catching up by querying finds the work the watch could not deliver.
            claimed = await store.claim("node-a", ["job.a"], 10, 30.0)
            assert {i.uuid for i in claimed} == {i.uuid for i in missed}
            # The watch goes on from the current revision: later events arrive.
            (later,) = await store.add(instances(await store.now(), "job.a", 1))
            changes = await collect_events(sub, lambda got: any(e.uuid == later.uuid for e in got))
            assert [(e.uuid, e.state) for e in changes if e.type is EventType.STATE] == [
                *((i.uuid, State.PROCESSING) for i in claimed),
                (later.uuid, State.SCHEDULED),
            ]


async def test_a_manager_resyncs_after_compaction_and_runs_what_it_missed() -> None:
    ran = trio.Event()

    async def work() -> None:
        ran.set()

    with trio.fail_after(15):
        async with (
            etcd_store() as store,
            gojob.open_manager(
                store, workers=2, poll_interval=60.0, capture_logging=False
            ) as manager,
        ):
            manager.register(gojob.Job("work", work))
            # Compacting at the current revision does not disturb a watch that is up to
            # date; then a job arrives and the manager runs it on the watch's wake-up.
            await store.compact()
            now = await store.now()
            await store.add(instances(now, "work", 1))
            await ran.wait()
