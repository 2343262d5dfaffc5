"""The Redis / Valkey store (needs the ``redis`` extra: coredis)."""

from __future__ import annotations

from .store import RedisStore, redis_url

__all__ = ["RedisStore", "redis_url"]
