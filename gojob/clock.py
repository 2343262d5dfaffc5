"""The one clock every timed decision reads.

``monotonic()`` drives timeouts and sleeps and is always Trio's clock, so tests on
``autojump_clock`` control it. ``now()`` is the wall time persisted in stores
(timezone-aware UTC). :class:`TrioWallClock` derives wall time from Trio's clock so
that schedules, backoff and leases can be tested on virtual time too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

import trio

__all__ = ["Clock", "SystemClock", "TrioWallClock"]


class Clock(Protocol):
    """Source of time for a manager and the memory store."""

    def now(self) -> datetime:
        """Current wall time, aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Trio's current time (seconds, monotonic)."""
        ...


class SystemClock:
    """Real wall time; Trio's clock for monotonic time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return trio.current_time()


class TrioWallClock:
    """Wall time that advances with Trio's clock from ``start`` (for virtual-time tests).

    The first reading anchors the origin, so it must be created inside ``trio.run``
    or read first there.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("TrioWallClock needs an aware start datetime")
        self._start = start.astimezone(UTC)
        self._origin: float | None = None

    def monotonic(self) -> float:
        return trio.current_time()

    def now(self) -> datetime:
        current = trio.current_time()
        if self._origin is None:
            self._origin = current
        return self._start + timedelta(seconds=current - self._origin)
