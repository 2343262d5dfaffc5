"""Shared by the peer benchmark scripts (``peers_pgqueuer``, ``peers_procrastinate``).

Each peer is an asyncio library: its script runs in a subprocess of its own, on the stock
asyncio event loop (``asyncio.run``; no uvloop), against a database of its own on the same
PostgreSQL server as gojob. A measurement prints one JSON line on stdout, read by
``benchmarks.postgres``: ``{"ops", "wall", "cpu"}`` or ``{"gaps": [seconds, ...]}``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

__all__ = ["Stopwatch", "emit", "truncate_all"]


def truncate_all(dsn: str) -> None:
    """Empty every table of the peer's database (a fresh queue for each measurement)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
        if rows:
            tables = ", ".join(r[0] for r in rows)
            conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE".encode())
        conn.execute(b"VACUUM ANALYZE")


class Stopwatch:
    """Wall and CPU seconds of this process between ``start`` and ``stop``."""

    def __init__(self) -> None:
        self.wall0 = self.cpu0 = self.wall = self.cpu = 0.0

    def start(self) -> None:
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


async def timed(ops: int, body: Callable[[], Awaitable[None]]) -> dict[str, Any]:
    watch = Stopwatch()
    watch.start()
    await body()
    watch.stop()
    return {"ops": ops, "wall": watch.wall, "cpu": watch.cpu}


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
