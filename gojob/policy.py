"""Retry, backoff, timeout and priority policy, persisted with every instance."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Literal

__all__ = ["INFINITE", "Backoff", "Policy", "seconds"]

INFINITE = -1
"""``max_retries=INFINITE`` retries for ever."""

DEFAULT_PRIORITY = 5


def seconds(value: float | timedelta | None) -> float | None:
    """Normalise a duration given as seconds or a timedelta."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry number ``n`` (1 for the first retry).

    - ``constant``: ``base``
    - ``linear``: ``base * n``
    - ``exponential``: ``base * factor ** (n - 1)``

    capped at ``max``, then spread by ``jitter`` (a fraction: 0.2 draws from ±20%).
    """

    kind: Literal["constant", "linear", "exponential"] = "constant"
    base: float = 0.0
    factor: float = 2.0
    max: float = 3600.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "linear", "exponential"):
            raise ValueError(f"unknown backoff kind {self.kind!r}")
        if self.base < 0 or self.max < 0 or not 0 <= self.jitter <= 1 or self.factor < 1:
            raise ValueError(f"invalid backoff {self!r}")

    @classmethod
    def constant(cls, delay: float, *, jitter: float = 0.0) -> Backoff:
        return cls("constant", delay, jitter=jitter)

    @classmethod
    def linear(cls, step: float, *, max: float = 3600.0, jitter: float = 0.0) -> Backoff:
        return cls("linear", step, max=max, jitter=jitter)

    @classmethod
    def exponential(
        cls,
        base: float,
        *,
        factor: float = 2.0,
        max: float = 3600.0,
        jitter: float = 0.1,
    ) -> Backoff:
        return cls("exponential", base, factor=factor, max=max, jitter=jitter)

    def delay(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (>= 1)."""
        n = max(1, retry)
        if self.kind == "constant":
            value = self.base
        elif self.kind == "linear":
            value = self.base * n
        else:
            # Cap the exponent so huge retry counts cannot overflow a float.
            try:
                value = self.base * self.factor ** min(n - 1, 64)
            except OverflowError:
                value = self.max
        value = min(value, self.max)
        if self.jitter and value:
            spread = value * self.jitter
            value += (rng or random).uniform(-spread, spread)
        return max(0.0, value)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "base": self.base,
            "factor": self.factor,
            "max": self.max,
            "jitter": self.jitter,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Backoff:
        return cls(
            kind=data.get("kind", "constant"),
            base=float(data.get("base", 0.0)),
            factor=float(data.get("factor", 2.0)),
            max=float(data.get("max", 3600.0)),
            jitter=float(data.get("jitter", 0.0)),
        )


BackoffFn = Callable[[Any], float]
"""A custom backoff: called with the failed Instance, returns seconds. Not persisted:
the node that finishes the attempt computes the next due time."""


@dataclass(frozen=True, slots=True)
class Policy:
    """How an instance is run and retried. Persisted with the instance, so every node
    applies the same policy whatever its local job defaults."""

    max_retries: int = 0
    """Re-tries after the first attempt (``1`` gives two attempts); ``INFINITE`` (-1) for ever."""
    backoff: Backoff = field(default_factory=Backoff)
    custom_backoff: bool = False
    """True when the job's backoff is a callable (the finishing node computes the delay)."""
    timeout: float | None = None
    """Seconds per attempt; ``None`` for no timeout."""
    priority: int = DEFAULT_PRIORITY
    """Lower runs first; ties by due time."""
    max_rescues: int = 3
    """How many times an abandoned attempt (its node died) is put back before it is Terminated."""

    def __post_init__(self) -> None:
        if self.max_retries < INFINITE:
            raise ValueError("max_retries must be >= 0, or INFINITE (-1)")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError("timeout must be positive (or None for no timeout)")
        if self.max_rescues < 0:
            raise ValueError("max_rescues must be >= 0")

    def retries_left(self, failures: int) -> bool:
        """True when another attempt is allowed after ``failures`` failed attempts."""
        return self.max_retries == INFINITE or failures <= self.max_retries

    def with_overrides(self, **changes: Any) -> Policy:
        """A copy with the given fields replaced (``None`` values are ignored)."""
        given = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **given) if given else self

    def to_json(self) -> dict[str, Any]:
        return {
            "max_retries": self.max_retries,
            "backoff": self.backoff.to_json(),
            "custom_backoff": self.custom_backoff,
            "timeout": self.timeout,
            "priority": self.priority,
            "max_rescues": self.max_rescues,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Policy:
        return cls(
            max_retries=int(data.get("max_retries", 0)),
            backoff=Backoff.from_json(data.get("backoff") or {}),
            custom_backoff=bool(data.get("custom_backoff", False)),
            timeout=None if data.get("timeout") is None else float(data["timeout"]),
            priority=int(data.get("priority", DEFAULT_PRIORITY)),
            max_rescues=int(data.get("max_rescues", 3)),
        )
