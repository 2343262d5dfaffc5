"""gojob's errors as gRPC statuses: one table, and the decorator every handler wears.

==========================================================  ======================
error                                                       status
==========================================================  ======================
UnknownJob, InstanceNotFound, ScheduleNotFound              ``NOT_FOUND``
InvalidTransition (e.g. retrying an instance not final)     ``FAILED_PRECONDITION``
ArgumentError (arity, coercion, JSON, payload over its      ``INVALID_ARGUMENT``
cap), InvalidSchedule (cron, zone, durations), ValueError
ManagerClosed, StoreUnavailable                             ``UNAVAILABLE``
anything else (StoreError included)                         ``INTERNAL``
==========================================================  ======================

Every status carries the error's message. A handler never lets an exception escape
unmapped, so no request can take the server down (grpclib would answer ``UNKNOWN``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from grpclib import GRPCError
from grpclib.const import Status
from grpclib.server import Stream

from ..errors import (
    ArgumentError,
    InstanceNotFound,
    InvalidSchedule,
    InvalidTransition,
    ManagerClosed,
    ScheduleNotFound,
    StoreUnavailable,
    UnknownJob,
)

__all__ = ["handler", "status_of"]

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Stream[Req, Resp]], Coroutine[Any, Any, None]]


def status_of(exc: BaseException) -> tuple[Status, str]:
    """The status and message a gojob error maps to (``INTERNAL`` when unknown)."""
    if isinstance(exc, UnknownJob | InstanceNotFound | ScheduleNotFound):
        return Status.NOT_FOUND, str(exc).strip("'\"")
    if isinstance(exc, InvalidTransition):  # a ValueError: before the next line
        return Status.FAILED_PRECONDITION, str(exc)
    if isinstance(exc, ArgumentError | InvalidSchedule | ValueError):
        return Status.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, RecursionError):  # JSON nested beyond Python's recursion limit
        return Status.INVALID_ARGUMENT, "a value is nested too deeply"
    if isinstance(exc, ManagerClosed | StoreUnavailable):
        return Status.UNAVAILABLE, str(exc)
    return Status.INTERNAL, f"{type(exc).__name__}: {exc}"


def handler(fn: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Decorate a grpclib handler method: every exception becomes a precise status."""

    @functools.wraps(fn)
    async def wrapper(self: Any, stream: Stream[Req, Resp]) -> None:
        try:
            await fn(self, stream)
        except GRPCError:
            raise
        except Exception as exc:
            status, message = status_of(exc)
            raise GRPCError(status, message) from exc

    return wrapper
