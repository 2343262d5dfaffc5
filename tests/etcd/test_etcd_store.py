"""The etcd store beyond the conformance suite: its key namespace, its URL, and a
manager on it end to end."""

from __future__ import annotations

from datetime import timedelta

import pytest
import trio

import gojob
from gojob.errors import StoreUnavailable
from gojob.instance import LogLevel, LogRecord
from gojob.schedule import Every
from gojob.state import State
from gojob.store.base import InstanceQuery, NodeRecord, Outcome, ScheduleRecord
from gojob.store.etcd import EtcdStore
from gojob.store.etcd.client import KV, op_put

from ..sql.test_postgres_processes import instances
from ._etcd import delete_prefix, etcd_url, fresh_prefix
from ._server import free_port


async def _read(store: EtcdStore, keys: list[str]) -> dict[str, KV | None]:
    return {key: await store.client.get(key) for key in keys}


async def test_keys_outside_the_prefix_are_left_alone() -> None:
    url = await etcd_url()
    base = fresh_prefix()  # gojob/test-<random>/: the sentinels live there
    prefix = base + "test123"  # no trailing slash given: the store adds it
    sentinels = [
        base + "x",
        base + "test123",  # the prefix itself, as a key
        base + "test1234/i/00000000-0000-0000-0000-000000000000",  # a longer prefix
        base + "test123x",
        base + "test123.ev",
    ]
    with trio.fail_after(20):
        async with EtcdStore(url, prefix=base + "other/") as writer:
            await writer.client.txn(success=[op_put(key, f"sentinel {key}") for key in sentinels])
            before = await _read(writer, sentinels)
            try:
                async with EtcdStore(url, prefix=prefix) as store:
                    assert store.prefix == prefix + "/"
                    now = await store.now()
                    await store.add(instances(now, "job.a", 3))
                    claimed = await store.claim("node-a", None, 2, 30.0)
                    await store.finish_many(
                        [(i.claim_token or "", Outcome(State.COMPLETED)) for i in claimed]
                    )
                    await store.append_logs(
                        [LogRecord(claimed[0].uuid, "job.a", now, LogLevel.INFO, "hello")]
                    )
                    record = ScheduleRecord("s", "job.a", Every(timedelta(hours=1), anchor=now))
                    record.next_fire_at = now
                    await store.put_schedule(record)
                    await store.fire_schedule(
                        "s", now, now + timedelta(hours=1), instances(now, "job.a", 1)
                    )
                    await store.request_cancel(InstanceQuery(kind="job.a"))
                    await store.heartbeat(NodeRecord("node-a"), 30.0)
                    await store.remove_node("node-a")
                    await store.delete_schedule("s")
                    pruned = await store.prune(now + timedelta(hours=2))
                    assert pruned.instances == 4
                    assert await store.lookup_instances(InstanceQuery()) == []
                    await store.compact()
                    await delete_prefix(store, store.prefix)
                assert await _read(writer, sentinels) == before
            finally:
                await delete_prefix(writer, base)


def test_the_url_gives_the_endpoint_and_the_prefix() -> None:
    store = EtcdStore("etcd://10.0.0.1:2380?prefix=team/jobs")
    assert (store.client.base_url, store.prefix) == ("http://10.0.0.1:2380", "team/jobs/")
    secure = EtcdStore("etcds://etcd.example?prefix=a/", prefix="b")
    assert (secure.client.base_url, secure.prefix) == ("https://etcd.example:2379", "b/")
    assert EtcdStore("etcd://127.0.0.1:2379").prefix == "gojob/"
    with pytest.raises(ValueError, match="not an etcd URL"):
        EtcdStore("redis://127.0.0.1")


async def test_an_unreachable_etcd_is_unavailable() -> None:
    store = EtcdStore(f"etcd://127.0.0.1:{free_port()}", retry_for=0.5)
    with trio.fail_after(10), pytest.raises(StoreUnavailable):
        async with store:
            pass


async def add(inst: gojob.Instance, a: int, b: int) -> int:
    inst.info("adding %d and %d", a, b)
    return a + b


async def test_open_manager_on_an_etcd_url_end_to_end() -> None:
    url = await etcd_url()
    prefix = fresh_prefix()
    with trio.fail_after(30):
        try:
            async with gojob.open_manager(
                f"{url}?prefix={prefix}", workers=2, lease=5, capture_logging=False
            ) as manager:
                assert isinstance(manager.store, EtcdStore)
                assert manager.store.prefix == prefix
                manager.register(gojob.Job("add", add))
                inst = await manager.schedule("add", 1, 2)
                later = await manager.schedule("add", 3, 4, after=3600)
                done = await manager.wait(inst, timeout=10)
                assert (done.state, done.result) == (State.COMPLETED, 3)
            # A new manager on the same URL (a restart) sees both, with history and logs.
            async with gojob.open_manager(f"{url}?prefix={prefix}", workers=1) as manager:
                history = await manager.history(uuid=inst.uuid)
                assert [r.state for r in history] == [
                    State.CREATED,
                    State.SCHEDULED,
                    State.PROCESSING,
                    State.COMPLETED,
                ]
                logs = await manager.logs(uuid=inst.uuid)
                assert [r.message for r in logs] == ["adding 1 and 2"]
                queued = await manager.get(later.uuid)
                assert (queued.state, queued.args) == (State.SCHEDULED, [3, 4])
        finally:
            with trio.CancelScope(shield=True):
                async with EtcdStore(url, prefix=prefix) as store:
                    await delete_prefix(store, prefix)
