"""Redis for the tests: the server's URL, and a fresh key prefix per test.

The URL comes from ``GOJOB_REDIS_URL``; unset, it is the local server of the
development and CI machines (``redis://127.0.0.1:6379/0``); set to the empty string,
Redis is unavailable (its tests skip, or fail under ``GOJOB_REQUIRE_SERVICES``).

Every test gets a prefix of its own, ``gojob-t-<random>``; on exit exactly the keys
under it are deleted (found with SCAN), and nothing else on the server is touched.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import coredis
import trio
from coredis.exceptions import RedisError

from gojob.errors import StoreUnavailable
from gojob.store.redis import RedisStore, redis_url
from gojob.store.redis.keys import Keys

__all__ = ["REDIS_URL_ENV", "delete_prefix", "fresh_prefix", "redis_store", "test_redis_url"]

REDIS_URL_ENV = "GOJOB_REDIS_URL"
DEFAULT_URL = "redis://127.0.0.1:6379/0"
CONNECT_TIMEOUT = 3.0


def test_redis_url() -> str:
    """The test server's URL; StoreUnavailable when Redis is switched off."""
    url = os.environ.get(REDIS_URL_ENV, DEFAULT_URL)
    if not url:
        raise StoreUnavailable(f"{REDIS_URL_ENV} is empty: Redis tests are off")
    return url


test_redis_url.__test__ = False  # type: ignore[attr-defined]


def fresh_prefix() -> str:
    return f"gojob-t-{uuid.uuid4().hex[:12]}"


async def scan_prefix(url: str, prefix: str) -> list[str]:
    """Every key under ``prefix`` (as the store names them)."""
    async with coredis.Redis.from_url(redis_url(url), decode_responses=True) as client:
        return [key async for key in client.scan_iter(match=Keys(prefix).pattern, count=1000)]


async def delete_prefix(url: str, prefix: str) -> int:
    """Delete exactly the keys of ``prefix``; how many there were."""
    assert prefix.startswith("gojob-t-"), prefix  # never delete what the tests did not create
    keys = Keys(prefix)
    deleted = 0
    try:
        async with coredis.Redis.from_url(redis_url(url), decode_responses=True) as client:
            batch: list[str] = []
            async for key in client.scan_iter(match=keys.pattern, count=1000):
                assert key.startswith(keys.base), key
                batch.append(key)
                if len(batch) >= 500:
                    deleted += await client.delete(batch)
                    batch = []
            if batch:
                deleted += await client.delete(batch)
    except (RedisError, OSError) as exc:
        raise StoreUnavailable(f"cannot clean up {prefix} on {url}: {exc}") from exc
    return deleted


@asynccontextmanager
async def redis_store(**options: Any) -> AsyncIterator[RedisStore]:
    """An opened RedisStore under a fresh prefix, its keys deleted on exit."""
    url = test_redis_url()
    prefix = fresh_prefix()
    options.setdefault("connect_timeout", CONNECT_TIMEOUT)
    try:
        async with RedisStore(url, prefix=prefix, **options) as store:
            yield store
    finally:
        # Unreachable: nothing was written either.
        with trio.CancelScope(shield=True), contextlib.suppress(StoreUnavailable):
            await delete_prefix(url, prefix)
