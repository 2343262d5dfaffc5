"""Shared fixtures: a manager and a memory store on Trio's virtual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import trio.testing

import gojob

START = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def clock(autojump_clock: trio.testing.MockClock) -> gojob.TrioWallClock:
    """Wall time on the virtual clock, starting at 2025-01-01T00:00Z."""
    return gojob.TrioWallClock(START)


@pytest.fixture
def store(clock: gojob.TrioWallClock) -> gojob.MemoryStore:
    """A memory store on the virtual clock, to share between managers."""
    return gojob.MemoryStore(clock=clock)


@pytest.fixture
async def manager(
    store: gojob.MemoryStore, clock: gojob.TrioWallClock
) -> AsyncIterator[gojob.Manager]:
    """A 4-worker manager on ``store``, with short lease, poll and drain times.

    pytest-trio runs a test on the virtual clock only when the test itself takes
    ``autojump_clock``; without it the test would crawl in real time, so refuse.
    """
    assert isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock), (
        "a test using the manager fixture must take the autojump_clock fixture"
    )
    async with gojob.open_manager(
        store,
        workers=4,
        clock=clock,
        node_id="node-a",
        lease=10.0,
        poll_interval=1.0,
        drain_grace=1.0,
    ) as m:
        yield m
