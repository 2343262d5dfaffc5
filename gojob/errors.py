"""The gojob exception family.

Every error gojob raises on purpose derives from :class:`GojobError`, so callers
can catch the library as a whole or one precise condition. Driver errors are
translated at the store boundary and keep their cause (``raise ... from exc``).

Two exceptions are *signals* an executor raises to steer its own instance rather
than errors of gojob: :class:`Retry` and :class:`NonRetryable`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

__all__ = [
    "ArgumentError",
    "DecodeError",
    "DuplicateJob",
    "EncodeError",
    "GojobError",
    "InstanceNotFound",
    "InvalidSchedule",
    "InvalidTransition",
    "LeaseLost",
    "ManagerClosed",
    "NonRetryable",
    "PayloadTooLarge",
    "Retry",
    "ScheduleNotFound",
    "StoreError",
    "StoreUnavailable",
    "UnknownJob",
    "UnsupportedStore",
]


class GojobError(Exception):
    """Root of every error gojob raises."""


class UnknownJob(GojobError, LookupError):
    """No job is registered under this kind."""


class DuplicateJob(GojobError, ValueError):
    """A job of this kind is already registered (pass ``replace=True`` to replace it)."""


class InvalidSchedule(GojobError, ValueError):
    """A schedule cannot be built: bad cron spec, naive datetime, bad interval or zone."""


class ArgumentError(GojobError, ValueError):
    """Arguments or results cannot be carried: wrong arity, unencodable or ill-typed value."""


class EncodeError(ArgumentError):
    """A value cannot be encoded as plain JSON."""


class DecodeError(ArgumentError):
    """A JSON value does not fit the annotation it is decoded into."""


class PayloadTooLarge(ArgumentError):
    """Arguments, a result or a log message exceed their configured size cap."""


class UnsupportedStore(GojobError, ValueError):
    """A store URL names no store gojob has, or one whose extra is not installed."""


class InvalidTransition(GojobError, ValueError):
    """A state change that the transition table does not allow."""


class InstanceNotFound(GojobError, LookupError):
    """No instance has this uuid."""


class ScheduleNotFound(GojobError, LookupError):
    """No recurring schedule has this id."""


class LeaseLost(GojobError):
    """The claim token no longer holds the instance's lease (fencing refused the write)."""


class ManagerClosed(GojobError, RuntimeError):
    """The manager is shutting down or closed and takes no new work."""


class StoreError(GojobError):
    """The store failed; the driver's exception is the ``__cause__``."""


class StoreUnavailable(StoreError):
    """The store cannot be reached (connection refused, timed out, or closed)."""


class Retry(Exception):
    """Raised by an executor to run its instance again later.

    ``after`` is a delay in seconds or a :class:`~datetime.timedelta`, or ``at`` an
    aware datetime. The attempt is counted, but it is not a failure: it neither
    consumes the policy's ``max_retries`` nor uses its backoff.
    """

    def __init__(
        self,
        after: float | timedelta | None = None,
        *,
        at: datetime | None = None,
        reason: str = "",
    ) -> None:
        if after is not None and at is not None:
            raise ValueError("Retry takes `after` or `at`, not both")
        if at is not None and at.tzinfo is None:
            raise ValueError("Retry(at=...) needs an aware datetime")
        if isinstance(after, timedelta):
            after = after.total_seconds()
        if after is not None and after < 0:
            raise ValueError("Retry(after=...) must not be negative")
        self.after: float | None = after
        self.at: datetime | None = at
        self.reason = reason
        super().__init__(reason or f"retry requested (after={after}, at={at})")


class NonRetryable(Exception):
    """Raised (or raised from) by an executor to fail its instance at once, retries left or not."""
