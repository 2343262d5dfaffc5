"""What is particular to the Redis store: its key namespace, URLs, an unreachable
server, and a manager built from a ``redis://`` or ``valkey://`` URL."""

from __future__ import annotations

import uuid

import coredis
import pytest
import trio

import gojob
from gojob.errors import StoreUnavailable
from gojob.instance import LogLevel, LogRecord
from gojob.state import State
from gojob.store.base import HistoryQuery, InstanceQuery, NodeRecord, Outcome
from gojob.store.redis import RedisStore, redis_url
from gojob.store.redis.keys import Keys

from ..store import LONG_LEASE, add_one, claim_one, tick
from ._redis import delete_prefix, fresh_prefix, redis_store, scan_prefix, test_redis_url
from ._valkey import free_port

TIMEOUT = 20.0


async def test_store_operations_touch_no_key_outside_the_prefix() -> None:
    url = test_redis_url()
    tag = uuid.uuid4().hex[:8]
    async with redis_store() as store:
        prefix = store.prefix
        # Keys that look like ours, or like another deployment's, and must survive.
        sentinels = {
            f"gojob-other:{tag}": "other deployment",
            f"{prefix}:{tag}": "no braces",
            f"{{{prefix}}}{tag}": "no colon",
            f"{{{prefix}-other}}:{tag}": "a longer prefix",
            f"{{gojob}}:{tag}": "the default prefix",
        }
        async with coredis.Redis.from_url(redis_url(url), decode_responses=True) as client:
            for key, value in sentinels.items():
                await client.set(key, value)
            try:
                with trio.fail_after(TIMEOUT):
                    async with store.subscribe() as sub:
                        inst = await add_one(store)
                        claimed = await claim_one(store)
                        await store.extend_leases("n", [claimed.claim_token or ""], LONG_LEASE)
                        now = await store.now()
                        await store.append_logs(
                            [LogRecord(inst.uuid, inst.kind, now, LogLevel.INFO, "hello")]
                        )
                        await store.finish(claimed.claim_token or "", Outcome(State.COMPLETED))
                        await add_one(store, delay=3600)
                        await store.request_cancel(InstanceQuery(kind=inst.kind))
                        await store.heartbeat(NodeRecord("n1"), LONG_LEASE)
                        await store.reap_expired()
                        assert await sub.__anext__()
                    ours = await scan_prefix(url, prefix)
                    assert ours
                    assert all(key.startswith(Keys(prefix).base) for key in ours)
                    result = await store.prune(await tick(store))
                    assert result.instances == 2
                for key, value in sentinels.items():
                    assert await client.get(key) == value, key
            finally:
                await client.delete(list(sentinels))
    # The test's cleanup deleted exactly the store's keys.
    assert await scan_prefix(url, prefix) == []


async def test_the_prefix_can_come_from_the_url() -> None:
    prefix = fresh_prefix()
    url = test_redis_url()
    try:
        with trio.fail_after(TIMEOUT):
            async with RedisStore(f"{url}?prefix={prefix}") as store:
                assert store.prefix == prefix
                await add_one(store)
            assert all(k.startswith(f"{{{prefix}}}:") for k in await scan_prefix(url, prefix))
            assert await scan_prefix(url, prefix)
    finally:
        await delete_prefix(url, prefix)


def test_valkey_urls_are_redis_urls() -> None:
    assert redis_url("valkey://h:1/2") == "redis://h:1/2"
    assert redis_url("valkeys://h:1/2?prefix=x") == "rediss://h:1/2"
    assert RedisStore("valkey://h:1/2?prefix=app").prefix == "app"
    assert RedisStore("redis://h:1/2?prefix=app", prefix="mine").prefix == "mine"
    with pytest.raises(StoreUnavailable):
        RedisStore("http://h:1/2")


async def test_an_unreachable_server_fails_fast_with_store_unavailable() -> None:
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0", connect_timeout=1.0)
    with trio.fail_after(5), pytest.raises(StoreUnavailable):
        async with store:
            pass


async def test_a_store_given_a_client_uses_it_and_leaves_it_open() -> None:
    url = test_redis_url()
    prefix = fresh_prefix()
    try:
        with trio.fail_after(TIMEOUT):
            async with coredis.Redis.from_url(redis_url(url), decode_responses=True) as client:
                async with RedisStore(client, prefix=prefix) as store:
                    inst = await add_one(store)
                assert await client.exists([Keys(prefix).instance(inst.uuid)]) == 1
    finally:
        await delete_prefix(url, prefix)


@pytest.mark.parametrize("scheme", ["redis", "valkey"])
async def test_a_manager_on_a_redis_url_end_to_end(scheme: str) -> None:
    url = test_redis_url()
    prefix = fresh_prefix()
    target = f"{scheme}://{url.partition('://')[2]}?prefix={prefix}"

    async def add(inst: gojob.Instance, a: int, b: int) -> int:
        inst.info("adding %d and %d", a, b)
        return a + b

    try:
        with trio.fail_after(TIMEOUT):
            async with gojob.open_manager(target, workers=2, capture_logging=False) as manager:
                assert manager.store.name == "redis"
                manager.register(gojob.Job("add", add))
                inst = await manager.schedule("add", 2, 3)
                later = await manager.schedule("add", 4, 5, after=0.2)
                done = await manager.wait(inst)
                assert (done.state, done.result) == (State.COMPLETED, 5)
                assert (await manager.wait(later)).result == 9
                records = await manager.history(uuid=inst.uuid)
                assert [r.state for r in records] == [
                    State.CREATED,
                    State.SCHEDULED,
                    State.PROCESSING,
                    State.COMPLETED,
                ]
                with trio.fail_after(5):
                    while not (logs := await manager.logs(uuid=inst.uuid)):  # noqa: ASYNC110
                        await trio.sleep(0.02)  # the log buffer writes in the background
                assert [r.message for r in logs] == ["adding 2 and 3"]
                assert await manager.store.history(HistoryQuery(uuid=later.uuid))
                stats = await manager.statistics()
                assert stats is not None
        assert await scan_prefix(url, prefix)
        assert all(k.startswith(f"{{{prefix}}}:") for k in await scan_prefix(url, prefix))
    finally:
        await delete_prefix(url, prefix)


async def test_a_retry_is_due_after_its_backoff_and_runs_again() -> None:
    async with redis_store() as store:
        attempts: list[int] = []

        async def flaky(inst: gojob.Instance) -> str:
            attempts.append(inst.attempts)
            if inst.attempts < 3:
                raise ValueError("not yet")
            return "done"

        with trio.fail_after(TIMEOUT):
            async with gojob.open_manager(store, workers=2, capture_logging=False) as manager:
                manager.register(gojob.Job("flaky", flaky, max_retries=5, backoff=0.05))
                done = await manager.wait(await manager.schedule("flaky"))
        assert (done.state, done.result, done.failures) == (State.COMPLETED, "done", 2)
        assert attempts == [1, 2, 3]
