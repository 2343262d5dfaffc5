"""Workers: a resizable pool of Trio tasks, and one attempt of one instance.

Each attempt runs in its own cancel scope, with everything the executor starts
inside it. How the scope ends decides the outcome:

* the executor returns → Completed;
* it raises → Terminated (retried while the policy allows);
* ``trio.fail_after(timeout)`` expires → TimedOut (retried likewise);
* a user cancel, local or from another node → Canceled (final);
* the lease is lost (the store reaped it) → nothing is written: the attempt is fenced off;
* shutdown or shrink → released back to the queue (Scheduled).
"""

from __future__ import annotations

import enum
import functools
import inspect
import logging
import math
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import trio

from ._logs import current_instance
from .codec import check_size, decode_call, encode_result
from .errors import NonRetryable, Retry
from .instance import Instance, LogLevel
from .job import Job
from .state import FAILED, State
from .store.base import Outcome

if TYPE_CHECKING:
    from ._runtime import Runtime as Manager

__all__ = [
    "Attempt",
    "StopReason",
    "WorkerPool",
    "WorkerStatistics",
    "after_failure",
    "execute",
    "run_in_scope",
    "run_processor",
    "stopped_outcome",
]

log = logging.getLogger("gojob.worker")

_TRACEBACK_LIMIT = 8_000


class StopReason(enum.Enum):
    """Why an attempt's cancel scope was cancelled from outside."""

    CANCELED = "canceled"  # a user asked: finish Canceled
    LEASE_LOST = "lease-lost"  # the store took the instance back: write nothing
    RELEASED = "released"  # shutdown or shrink: back to the queue


class Attempt:
    """A running attempt, as the manager sees it (to cancel it or extend its lease)."""

    __slots__ = ("instance", "lease_until", "scope", "started", "stop_reason", "token", "worker")

    started: float
    """When the executor was called (``time.perf_counter()``): set only with metrics."""

    def __init__(
        self, instance: Instance, token: str, worker: str, lease_until: float = math.inf
    ) -> None:
        self.instance = instance
        self.token = token
        self.worker = worker
        self.lease_until = lease_until
        """Trio time by which the lease has surely run out unless extended again."""
        self.scope: trio.CancelScope | None = None
        self.stop_reason: StopReason | None = None

    def stop(self, reason: StopReason) -> None:
        # The first reason wins: a lease lost after a cancel request stays a loss only
        # if nothing else was decided, and vice versa.
        if self.stop_reason is None:
            self.stop_reason = reason
        if self.scope is not None:
            self.scope.cancel()


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    workers: int
    target: int
    busy: int


class _Slot:
    __slots__ = ("busy", "id")

    def __init__(self, wid: str) -> None:
        self.id = wid
        self.busy = False


class AttemptQueue:
    """FIFO of claimed attempts for the workers (``None`` asks one worker to retire).

    A deque and a parking lot for idle workers: a memory channel costs about a
    microsecond more per item on each side, on the path of every job.

    Idle workers are woken at the scheduler's next tick, for the items still queued
    then, not at each put: the worker that claimed a batch runs it in its lane, and
    when the jobs are quick it has emptied the queue before anyone else could run, so
    waking a worker per item would only make it park again. When a job awaits, the
    tick comes and idle workers take the rest. ``get()`` is not a checkpoint when an
    item is ready (workers try ``get_nowait()`` first anyway).
    """

    def __init__(self) -> None:
        self._items: deque[Attempt | None] = deque()
        self._idle = trio.lowlevel.ParkingLot()
        self._token = trio.lowlevel.current_trio_token()
        self._wake_pending = False

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, item: Attempt | None) -> None:
        self._items.append(item)
        if self._idle and not self._wake_pending:
            self._wake_pending = True
            self._token.run_sync_soon(self._wake_idle)

    def _wake_idle(self) -> None:
        self._wake_pending = False
        count = min(len(self._items), len(self._idle))
        if count:
            self._idle.unpark(count=count)

    def get_nowait(self) -> Attempt | None:
        """The next item; raises ``trio.WouldBlock`` when there is none."""
        try:
            return self._items.popleft()
        except IndexError:
            raise trio.WouldBlock from None

    async def get(self) -> Attempt | None:
        while not self._items:
            await self._idle.park()
        return self._items.popleft()


class WorkerPool:
    """``target`` worker tasks taking claimed instances from one queue."""

    def __init__(self, manager: Manager, target: int) -> None:
        if target < 1:
            raise ValueError("a manager needs at least one worker")
        self._manager = manager
        self.target = target
        self._slots: dict[str, _Slot] = {}
        self._counter = 0
        self._retiring = 0
        """Workers asked to retire that have not retired yet."""
        self._nursery: trio.Nursery | None = None
        self._changed = trio.Event()
        # Claimed attempts, or None: "one worker retires" (shrinking needs no cancel
        # scope around every wait, which would cost a scope per job).
        self.queue = AttemptQueue()

    def statistics(self) -> WorkerStatistics:
        busy = sum(1 for s in self._slots.values() if s.busy)
        return WorkerStatistics(len(self._slots), self.target, busy)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for _ in range(self.target):
                self._spawn()
            task_status.started()
            await trio.sleep_forever()

    def _spawn(self) -> None:
        assert self._nursery is not None
        self._counter += 1
        slot = _Slot(f"{self._manager.node_id}/w{self._counter}")
        self._slots[slot.id] = slot
        self._nursery.start_soon(self._work, slot, name=f"gojob worker {slot.id}")

    async def resize(self, target: int, *, cancel_busy: bool = False) -> None:
        """Grow at once; shrink by retiring workers as they become free (or at once,
        releasing busy workers' attempts back to the queue, with ``cancel_busy``).
        Returns when the pool has ``target`` workers, or the size asked by a later call."""
        if target < 1:
            raise ValueError("workers must be at least 1")
        self.target = target
        # Workers left once the pending retirements have happened.
        remaining = len(self._slots) - self._retiring
        if target > remaining:
            # Growing during a shrink first calls off pending retirements: counting only
            # ``len(self._slots)`` let the retirees leave afterwards, below ``target``.
            undo = min(self._retiring, target - remaining)
            self._retiring -= undo
            for _ in range(target - remaining - undo):
                self._spawn()
        elif target < remaining:
            excess = remaining - target
            self._retiring += excess
            # A busy worker retires when its attempt ends, before taking another: a
            # sentinel would queue behind attempts claimed ahead, so they count. The
            # sentinels only wake idle workers (a stale one is ignored).
            for _ in range(excess):
                self.queue.put_nowait(None)
            if cancel_busy:
                idle = sum(1 for slot in self._slots.values() if not slot.busy)
                busy = [slot for slot in self._slots.values() if slot.busy]
                for slot in busy[: max(0, excess - idle)]:
                    self._manager._release_worker_attempt(slot.id)
        self._manager._wake_dispatcher()
        # Compare with the latest target: a later resize supersedes this one.
        while len(self._slots) > self.target:
            await self._changed.wait()

    def _should_retire(self) -> bool:
        if self._retiring > 0:
            self._retiring -= 1
            return True
        return False

    def take_nowait(self) -> Attempt | None:
        """The next queued attempt if one is waiting, else None (sentinels included:
        the worker loop then checks whether it must retire). None while a retirement is
        pending: a worker in a lane goes back to its loop, which retires it, instead of
        running the attempts claimed ahead first (a shrink would wait for all of them)."""
        if self._retiring:
            return None
        try:
            return self.queue.get_nowait()
        except trio.WouldBlock:
            return None

    async def _work(self, slot: _Slot) -> None:
        queue = self.queue
        manager = self._manager
        try:
            while not self._should_retire():
                try:
                    # The fast path takes work without a scheduling point (~7 µs each).
                    attempt = queue.get_nowait()
                except trio.WouldBlock:
                    if await manager._claim_for_worker():
                        continue
                    attempt = await queue.get()
                if attempt is None:
                    continue  # a sentinel: retire if a retirement is still pending
                slot.busy = True
                try:
                    await manager._run_lane(attempt, slot.id)
                finally:
                    slot.busy = False
        finally:
            del self._slots[slot.id]
            self._changed.set()
            self._changed = trio.Event()


# -- one attempt ---------------------------------------------------------------------


async def _call_in_thread(
    job: Job, args: list[Any], kwargs: dict[str, Any], sync_limiter: trio.CapacityLimiter
) -> Any:
    """Call a sync executor in a worker thread of its own limiter."""
    call = functools.partial(job.executor, *args, **kwargs)
    # abandon_on_cancel: a sync executor that ignores cancellation must not hold up its
    # timeout or a cancel; its thread finishes on its own and its result is discarded.
    return await trio.to_thread.run_sync(call, limiter=sync_limiter, abandon_on_cancel=True)


def summarize_traceback(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    if len(text) > _TRACEBACK_LIMIT:
        text = "…" + text[-_TRACEBACK_LIMIT:]
    return text


async def run_processor(
    inst: Instance, name: str, fn: Callable[..., Any], *args: Any
) -> tuple[bool, Any]:
    """Run a processor (sync or async); a processor that raises is logged in the
    instance's log and reported as (False, exc), never propagated."""
    token = current_instance.set(inst)
    try:
        value = fn(inst, *args)
        if inspect.isawaitable(value):
            value = await value
        return True, value
    except Exception as exc:
        failure = exc
    finally:
        current_instance.reset(token)
    if inst._sink is not None:
        inst._sink(
            inst,
            LogLevel.ERROR,
            f"{name} processor failed: {failure!r}\n" + summarize_traceback(failure),
            "gojob.processor",
        )
    # Outside the instance's context, so this line is not captured into its log twice.
    log.warning("%s processor of %s failed: %r", name, inst.kind, failure)
    return False, failure


def error_outcome(
    state: State, exc: BaseException | None, message: str, worker: str, reason: str | None
) -> Outcome:
    return Outcome(
        state=state,
        error_message=message,
        error_type=type(exc).__name__ if exc is not None else reason,
        traceback=summarize_traceback(exc) if exc is not None else None,
        reason=reason,
        worker=worker,
        counts_as_failure=state in FAILED,
    )


async def run_in_scope(
    manager: Manager, job: Job, attempt: Attempt, scope: trio.CancelScope, deadline: float
) -> tuple[Outcome | None, BaseException | None]:
    """Call the executor inside ``scope`` (whose cancellation stops this attempt).

    Returns the outcome and the failure behind it, or ``(None, None)`` when the attempt
    was stopped (cancel, lease loss, release or timeout) but the executor swallowed the
    cancellation and returned. ``trio.Cancelled`` propagates to ``scope``.
    """
    inst = attempt.instance
    worker = attempt.worker
    if manager.metrics is not None:
        attempt.started = manager.metrics.attempt_started(inst.kind)
    ctx_token = current_instance.set(inst)
    attempt.scope = scope
    try:
        if attempt.stop_reason is not None:
            scope.cancel()
        # The executor is called here rather than through a helper coroutine: one frame
        # and one coroutine object fewer on the path of every job.
        plan = job.plan
        args, kwargs = decode_call(plan, inst.args, inst.kwargs, inst)
        if not plan.is_async:
            result = await _call_in_thread(job, args, kwargs, manager._sync_limiter)
        elif kwargs:
            result = await job.executor(*args, **kwargs)
        else:
            result = await job.executor(*args)
        if attempt.stop_reason is not None or (
            deadline != math.inf and trio.current_time() >= deadline
        ):
            return None, None
        if result is None:
            return Outcome(State.COMPLETED, worker=worker), None
        encoded = encode_result(result)
        if encoded is not None and not isinstance(encoded, bool | int | float):
            check_size(encoded, manager.limits.max_result_bytes, "result")
        return Outcome(State.COMPLETED, result=encoded, worker=worker), None
    except Retry as signal:
        if _was_stopped(attempt, deadline):
            return None, None  # raised in answer to a stop: the stop decides
        now = manager.clock.now()
        due = signal.at or now + timedelta(seconds=signal.after or 0.0)
        outcome = Outcome(
            State.SCHEDULED,
            retry_at=due,
            reason="retry-requested",
            worker=worker,
            error_message=signal.reason or None,
        )
        return outcome, None
    except Exception as exc:
        if _was_stopped(attempt, deadline):
            # An executor that turned its cancellation into an error was still stopped:
            # the stop (cancel, release, timeout) decides, not a failure.
            return None, None
        return error_outcome(State.TERMINATED, exc, _describe(exc), worker, None), exc
    finally:
        current_instance.reset(ctx_token)
        attempt.scope = None


def _was_stopped(attempt: Attempt, deadline: float) -> bool:
    return attempt.stop_reason is not None or (
        deadline != math.inf and trio.current_time() >= deadline
    )


def stopped_outcome(attempt: Attempt) -> Outcome | None:
    """The outcome of an attempt whose scope was cancelled (None: lease lost, write nothing)."""
    worker = attempt.worker
    reason = attempt.stop_reason
    if reason is None:
        timeout = attempt.instance.policy.timeout
        return error_outcome(
            State.TIMEDOUT, None, f"attempt timed out after {timeout}s", worker, "timeout"
        )
    if reason is StopReason.LEASE_LOST:
        return None
    if reason is StopReason.RELEASED:
        return Outcome(State.SCHEDULED, reason="released", worker=worker)
    return Outcome(State.CANCELED, reason="canceled", worker=worker)


def group_failure(exc: Exception, worker: str) -> Outcome:
    """A failure that escaped the attempt's scope: an ExceptionGroup from the executor's
    own nurseries, left once the scope took its Cancelled out."""
    return error_outcome(State.TERMINATED, exc, _describe(exc), worker, None)


async def execute(manager: Manager, job: Job, attempt: Attempt) -> Outcome | None:
    """Run one attempt in a cancel scope of its own, to its outcome (None when the lease
    was lost: write nothing). The scope carries both the timeout (its deadline) and
    outside stops (``attempt.stop_reason`` says which)."""
    timeout = attempt.instance.policy.timeout
    deadline = trio.current_time() + timeout if timeout is not None else math.inf
    outcome: Outcome | None = None
    error: BaseException | None = None
    try:
        with trio.CancelScope(deadline=deadline) as scope:
            outcome, error = await run_in_scope(manager, job, attempt, scope, deadline)
    except Exception as exc:
        outcome, error = group_failure(exc, attempt.worker), exc
    if outcome is None or scope.cancelled_caught:
        outcome = stopped_outcome(attempt)
        if outcome is None:
            return None
        error = None
    if outcome.state in FAILED:
        outcome = await after_failure(manager, job, attempt.instance, outcome, error)
    return outcome


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def after_failure(
    manager: Manager, job: Job, inst: Instance, outcome: Outcome, error: BaseException | None
) -> Outcome:
    """Let ``on_terminate`` rewrite the failure, then decide whether to retry."""
    if job.on_terminate is not None:
        failure = error if error is not None else TimeoutError(outcome.error_message)
        ok, value = await run_processor(inst, "on_terminate", job.on_terminate, failure)
        if ok and value is None:
            return Outcome(
                State.COMPLETED,
                result=None,
                worker=outcome.worker,
                reason="recovered by on_terminate",
            )
        if ok and isinstance(value, BaseException) and value is not failure:
            outcome = error_outcome(
                outcome.state, value, _describe(value), outcome.worker or "", outcome.reason
            )
            error = value
    if _is_non_retryable(error):
        return outcome
    failures = inst.failures + 1
    if not inst.policy.retries_left(failures):
        return outcome
    due = _retry_due(manager, job, inst, failures)
    return Outcome(
        outcome.state,
        error_message=outcome.error_message,
        error_type=outcome.error_type,
        traceback=outcome.traceback,
        retry_at=due,
        reason=outcome.reason,
        worker=outcome.worker,
        counts_as_failure=True,
    )


_MAX_RETRY_DELAY = 10 * 365 * 86_400.0
"""Delays are capped (ten years): a wild backoff must not overflow a datetime."""


def _retry_due(manager: Manager, job: Job, inst: Instance, failures: int) -> datetime:
    """When the next attempt is due. A custom backoff that raises or returns nonsense
    falls back to the policy's own backoff: a poison backoff must not stop a worker."""
    try:
        delay = float(job.retry_delay(inst, failures))
        if not math.isfinite(delay) or delay < 0:
            raise ValueError(f"backoff returned {delay!r}")
    except Exception as exc:
        log.warning("backoff of %s failed (%r); using the policy's backoff", inst.kind, exc)
        try:
            delay = inst.policy.backoff.delay(failures)
        except (ArithmeticError, ValueError):
            delay = _MAX_RETRY_DELAY
    return manager.clock.now() + timedelta(seconds=min(delay, _MAX_RETRY_DELAY))


def _is_non_retryable(error: BaseException | None) -> bool:
    seen: set[int] = set()
    # ``raise err from err`` makes a cycle: walk each exception once.
    while error is not None and id(error) not in seen:
        if isinstance(error, NonRetryable):
            return True
        seen.add(id(error))
        error = error.__cause__
    return False
