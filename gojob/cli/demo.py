"""``gojob demo``: the main job of gojob, shown end to end on the embedded store."""

from __future__ import annotations

import logging
import sys
from datetime import timedelta

import trio

from .. import Backoff, Instance, Job, Manager, State, Store, open_manager
from ..store.base import EventType
from ..store.sql import SqliteStore

__all__ = ["run_demo"]

log = logging.getLogger("gojob.demo")


async def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


_flaky_calls: dict[str, int] = {}


async def flaky(inst: Instance, fail_times: int) -> str:
    """Fail ``fail_times`` times, then succeed (shows retries with backoff)."""
    seen = _flaky_calls.get(inst.uuid, 0) + 1
    _flaky_calls[inst.uuid] = seen
    inst.info("attempt %d", seen)
    if seen <= fail_times:
        raise RuntimeError(f"transient failure #{seen}")
    return "recovered"


def checksum(inst: Instance, text: str) -> int:
    """A sync job (runs in a worker thread) that logs through the logging module."""
    log.warning("checksumming %d bytes", len(text))
    inst.info("done")
    return sum(text.encode()) % 65_536


async def slow(seconds: float) -> None:
    """Sleeps; used to show a timeout and a cancellation."""
    await trio.sleep(seconds)


async def tick(inst: Instance) -> None:
    """A recurring job."""
    inst.info("tick")


async def _progress(manager: Manager, quiet: bool, *, task_status: trio.TaskStatus[None]) -> None:
    async with manager.store.subscribe() as sub:
        task_status.started()
        async for batch in sub:
            for event in batch:
                if event.type is EventType.STATE and event.state is not None and not quiet:
                    print(f"  {event.kind:<9} {event.uuid}  -> {event.state.value}")


def _store(url: str) -> Store | str:
    if url.startswith("sqlite"):
        # The embedded default migrates itself (a server store would refuse and name
        # `gojob db upgrade`).
        return SqliteStore(url, auto_migrate=True)
    return url


async def _demo(workers: int, quiet: bool, store_url: str) -> int:
    store = _store(store_url)
    async with open_manager(store, workers=workers, lease=5.0, poll_interval=0.5) as manager:
        earlier = (await manager.statistics()).by_state
        total = sum(earlier.values())
        print(f"store: {store_url} ({total} instance(s) from earlier runs)")
        manager.register(Job("add", add, description="add two integers"))
        manager.register(Job("flaky", flaky, max_retries=3, backoff=Backoff.constant(0.1)))
        manager.register(Job("checksum", checksum, description="sync job in a thread"))
        manager.register(Job("slow", slow, timeout=0.3))
        manager.register(Job("tick", tick))
        async with trio.open_nursery() as nursery:
            await nursery.start(_progress, manager, quiet)
            print("scheduling jobs...")
            started = manager.clock.now()
            first = await manager.schedule("add", 1, 2)
            later = await manager.schedule("add", 3, 4, after=0.5)
            retried = await manager.schedule("flaky", 2)
            threaded = await manager.schedule("checksum", "hello gojob")
            timed_out = await manager.schedule("slow", 5.0)
            canceled = await manager.schedule("slow", 60.0, timeout=120)
            ticker = await manager.schedule("tick", every=timedelta(seconds=0.4), id="demo-tick")
            if ticker.paused:  # paused at the end of an earlier run
                ticker = await manager.resume_schedule(ticker.id)
            print(f"recurring schedule {ticker.id}: {ticker.trigger.describe()}")
            await trio.sleep(0.2)
            await manager.cancel(canceled)
            results = [
                await manager.wait(i, timeout=10)
                for i in (first, later, retried, threaded, timed_out, canceled)
            ]
            await trio.sleep(1.0)  # let the recurring schedule fire a few times
            await manager.pause_schedule(ticker.id)
            nursery.cancel_scope.cancel()
        print("\nresults:")
        for inst in results:
            print(
                f"  {inst.kind:<9} {inst.state.value:<10} attempts={inst.attempts} "
                f"result={inst.result!r} error={inst.error_message!r}"
            )
        ticks = await manager.instances(kind="tick", state=State.COMPLETED, after=started)
        print(f"  tick      completed {len(ticks)} time(s) on its schedule")
        print("\nhistories:")
        for inst in results:
            print(f"  {inst.kind} {inst.uuid}")
            for rec in await manager.history(uuid=inst.uuid):
                extra = rec.details.get("error") or rec.details.get("reason") or ""
                print(
                    f"    {rec.timestamp:%H:%M:%S.%f}  #{rec.attempt} {rec.state.value:<10} {extra}"
                )
            for line in await manager.logs(uuid=inst.uuid):
                print(f"    log {line.level.name:<5} {line.message}")
        ok = (
            results[0].state is State.COMPLETED
            and results[0].result == 3
            and results[1].result == 7
            and results[2].state is State.COMPLETED
            and results[2].attempts == 3
            and results[3].state is State.COMPLETED
            and results[4].state is State.TIMEDOUT
            and results[5].state is State.CANCELED
            and len(ticks) >= 1
        )
        print("\ndemo", "succeeded" if ok else "FAILED")
        return 0 if ok else 1


def run_demo(*, workers: int = 4, quiet: bool = False, store: str = "memory://") -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(message)s")
    return trio.run(_demo, workers, quiet, store)
