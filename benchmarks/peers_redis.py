"""Shared by the Redis peer benchmark scripts (``peers_saq``, ``peers_arq``).

Each measurement uses names of its own (a random tag in the queue name and the job
ids), and deletes exactly the keys that contain that tag when it is done: the shared
server keeps everything else (no FLUSHALL, no FLUSHDB).
"""

from __future__ import annotations

import uuid

from redis.asyncio import Redis

__all__ = ["delete_tagged", "new_tag"]


def new_tag(peer: str) -> str:
    return f"gojob-bench-{peer}-{uuid.uuid4().hex[:10]}"


async def delete_tagged(url: str, tag: str) -> int:
    """Delete every key whose name contains ``tag``; how many there were."""
    assert tag.startswith("gojob-bench-"), tag
    deleted = 0
    redis = Redis.from_url(url)
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=f"*{tag}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += await redis.delete(*batch)
                batch = []
        if batch:
            deleted += await redis.delete(*batch)
    finally:
        await redis.aclose()
    return deleted
