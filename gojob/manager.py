"""The job manager: one nursery owning the scheduler, dispatcher, workers, lease keeper,
reaper, notification listener and log flusher of this node.

Open it with :func:`open_manager`::

    async with gojob.open_manager(workers=4) as manager:
        manager.register(gojob.Job("add", add))
        inst = await manager.schedule("add", 1, 2)
        done = await manager.wait(inst)
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, overload

import trio

from . import _scheduler
from ._logs import LogBuffer, install_capture, uninstall_capture
from .clock import Clock, SystemClock
from .codec import Limits, check_size, encode_call
from .errors import (
    ArgumentError,
    DuplicateJob,
    GojobError,
    InstanceNotFound,
    InvalidSchedule,
    LeaseLost,
    ManagerClosed,
    ScheduleNotFound,
    StoreError,
    UnsupportedStore,
)
from .instance import HistoryRecord, Instance, LogLevel, LogRecord
from .job import Job, Registry
from .policy import Backoff, seconds
from .schedule import Every, Misfire, Overlap, Trigger, cron_or_every, parse_interval
from .state import FAILED, FINAL, State
from .store.base import (
    EventType,
    HistoryQuery,
    InstanceQuery,
    LogQuery,
    Outcome,
    ScheduleRecord,
    Store,
)
from .store.memory import MemoryStore
from .worker import (
    Attempt,
    StopReason,
    WorkerPool,
    WorkerStatistics,
    after_failure,
    execute,
    group_failure,
    run_in_scope,
    run_processor,
    stopped_outcome,
)

__all__ = ["Manager", "ManagerStatistics", "open_manager"]

log = logging.getLogger("gojob.manager")

DEFAULT_WORKERS = 10

_ACK_BACKLOG = 1000
"""Claimed attempts a node may hold beyond its capacity while their outcomes wait to be
acknowledged (``Manager._claim``)."""

PRUNE_KIND = "gojob.prune"
"""Kind of the built-in retention job (``open_manager(retention=...)``)."""


@dataclass(frozen=True, slots=True)
class ManagerStatistics:
    """A snapshot of one manager: its pool, and the store's counts."""

    node_id: str
    workers: int
    target_workers: int
    busy_workers: int
    in_flight: int
    """Claimed by this node and not finished yet."""
    queued: int
    """Instances in state Scheduled, in the whole store."""
    by_state: Mapping[State, int]
    by_kind: Mapping[str, Mapping[State, int]]


def _open_store(store: Store | str | None, clock: Clock) -> Store:
    if store is None or store == "memory" or store == "memory://":
        return MemoryStore(clock=clock)
    if isinstance(store, Store):
        return store
    if isinstance(store, str) and store.startswith("sqlite"):
        from .store.sql import SqliteStore

        return SqliteStore(store, clock=clock)
    if isinstance(store, str) and store.startswith(("postgresql", "postgres://")):
        # postgresql://, postgresql+asyncpg://...: the database's clock, not ``clock``.
        try:
            from .store.sql.postgres import PostgresStore
        except ImportError as exc:
            raise UnsupportedStore(
                f"the PostgreSQL store needs its extra: pip install 'gojob[postgres]' ({exc})"
            ) from exc

        return PostgresStore(store)
    raise UnsupportedStore(
        f"unsupported store {store!r}: pass a Store object, 'memory://', "
        "'sqlite:///path.db' or 'postgresql://user@host/database'"
    )


class Manager:
    """Registers jobs, schedules instances and runs them on this node's workers.

    Create it with :func:`open_manager`; every method is safe to call from any task
    while the manager is open.
    """

    def __init__(
        self,
        store: Store,
        *,
        workers: int,
        node_id: str,
        clock: Clock,
        lease: float,
        poll_interval: float,
        limits: Limits,
        sync_threads: int,
        prefetch: int = 0,
    ) -> None:
        self.store = store
        self.node_id = node_id
        self.clock = clock
        self.lease = lease
        self.poll_interval = poll_interval
        self.limits = limits
        self.registry = Registry()
        self._sync_limiter = trio.CapacityLimiter(sync_threads)
        self._pool = WorkerPool(self, workers)
        self._running: dict[str, Attempt] = {}  # claim token -> attempt
        self._by_uuid: dict[str, Attempt] = {}
        self._in_flight = 0
        """Claimed and not yet written (running, queued for a worker, or awaiting its ack)."""
        self._busy = 0
        """Claimed and not yet decided (running or queued for a worker): the claim budget."""
        self._claiming = False
        self._backlog = False
        self._closing = False
        self._dispatch_wake = trio.Event()
        self._idle = trio.Event()
        self._idle.set()
        self._leases_wanted = trio.Event()
        self._waiters: dict[str, list[trio.Event]] = {}
        """uuid -> one Event per waiting wait() call, set on a relevant state change."""
        self._closed = False
        self._claim_done = trio.Event()
        self._claim_done.set()
        self._finish_queue: list[tuple[Attempt, Outcome]] = []
        self._finish_wake = trio.Event()
        self.prefetch = prefetch
        self._log_buffer: LogBuffer | None = None
        self.scheduler = _scheduler.Scheduler(self)
        self._rng = random.Random()

    # -- jobs -------------------------------------------------------------------------
    def register(self, job: Job, *, replace: bool = False) -> Job:
        """Register ``job``; a kind registered twice raises DuplicateJob unless ``replace``.
        A job with a default recurring ``schedule`` has it declared by the scheduler."""
        self.registry.register(job, replace=replace)
        if job.schedule is not None:
            self.scheduler.declare_default(job)
        self._wake_dispatcher()
        return job

    def _adopt(self, job: Job) -> Job:
        """A Job passed to schedule(): registered if new; another Job of a registered kind
        is refused rather than silently replacing the registered one."""
        found = self.registry.find(job.kind)
        if found is None:
            return self.register(job)
        if found is not job:
            raise DuplicateJob(
                f"another job of kind {job.kind!r} is registered; schedule it by kind, "
                "or register this one with replace=True"
            )
        return job

    def unregister(self, kind: str) -> Job:
        """Stop running ``kind`` on this node (queued instances stay queued)."""
        job = self.registry.unregister(kind)
        self._wake_dispatcher()
        return job

    def jobs(self) -> list[Job]:
        return self.registry.jobs()

    def job(self, kind: str) -> Job:
        return self.registry.get(kind)

    # -- scheduling ---------------------------------------------------------------------
    def _build(
        self,
        job: Job,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        *,
        due: datetime,
        now: datetime,
        priority: int | None,
        timeout: float | timedelta | None,
        max_retries: int | None,
        backoff: Backoff | float | None,
        max_rescues: int | None,
        dedupe_key: str | None,
    ) -> Instance:
        enc_args, enc_kwargs = encode_call(job.plan, args, kwargs or {})
        if enc_args or enc_kwargs:
            check_size([enc_args, enc_kwargs], self.limits.max_args_bytes, "arguments")
        policy = job.policy
        if (
            priority is not None
            or timeout is not None
            or max_retries is not None
            or backoff is not None
            or max_rescues is not None
        ):
            if isinstance(backoff, int | float):
                backoff = Backoff.constant(float(backoff))
            try:
                policy = policy.with_overrides(
                    priority=priority,
                    timeout=seconds(timeout),
                    max_retries=max_retries,
                    backoff=backoff,
                    custom_backoff=False if backoff is not None else None,
                    max_rescues=max_rescues,
                )
            except ValueError as exc:
                raise ArgumentError(str(exc)) from exc
        return Instance.new(job.kind, enc_args, enc_kwargs, policy, now, due, dedupe_key)

    def _due(self, now: datetime, after: float | timedelta | None, at: datetime | None) -> datetime:
        if after is not None and at is not None:
            raise InvalidSchedule("give either `after` or `at`, not both")
        if at is not None:
            if not isinstance(at, datetime):
                raise InvalidSchedule(f"`at` must be a datetime, not {type(at).__name__}")
            if at.tzinfo is None or at.utcoffset() is None:
                raise InvalidSchedule(
                    f"`at` must be timezone-aware, got naive {at.isoformat()}; "
                    "use e.g. datetime(..., tzinfo=ZoneInfo('Europe/Paris'))"
                )
            return at
        if after is not None:
            delay = seconds(after)
            if delay is None or not math.isfinite(delay) or delay < 0:
                raise InvalidSchedule(f"`after` must be a non-negative duration, got {after!r}")
            return now + timedelta(seconds=delay)
        return now

    @overload
    async def schedule(
        self,
        job: str | Job,
        *args: Any,
        cron: str,
        tz: str = ...,
        every: None = ...,
        kwargs: Mapping[str, Any] | None = ...,
        id: str | None = ...,
        priority: int | None = ...,
        timeout: float | timedelta | None = ...,
        max_retries: int | None = ...,
        backoff: Backoff | float | None = ...,
        max_rescues: int | None = ...,
        overlap: Overlap | str = ...,
        misfire: Misfire | str = ...,
        misfire_cap: int = ...,
        misfire_grace: float | timedelta = ...,
        jitter: float | timedelta | None = ...,
        start: datetime | None = ...,
    ) -> ScheduleRecord: ...

    @overload
    async def schedule(
        self,
        job: str | Job,
        *args: Any,
        every: float | timedelta | str,
        cron: None = ...,
        tz: str = ...,
        kwargs: Mapping[str, Any] | None = ...,
        id: str | None = ...,
        priority: int | None = ...,
        timeout: float | timedelta | None = ...,
        max_retries: int | None = ...,
        backoff: Backoff | float | None = ...,
        max_rescues: int | None = ...,
        overlap: Overlap | str = ...,
        misfire: Misfire | str = ...,
        misfire_cap: int = ...,
        misfire_grace: float | timedelta = ...,
        jitter: float | timedelta | None = ...,
        start: datetime | None = ...,
    ) -> ScheduleRecord: ...

    @overload
    async def schedule(
        self,
        job: str | Job,
        *args: Any,
        kwargs: Mapping[str, Any] | None = ...,
        after: float | timedelta | None = ...,
        at: datetime | None = ...,
        priority: int | None = ...,
        timeout: float | timedelta | None = ...,
        max_retries: int | None = ...,
        backoff: Backoff | float | None = ...,
        max_rescues: int | None = ...,
        dedupe_key: str | None = ...,
    ) -> Instance: ...

    async def schedule(
        self,
        job: str | Job,
        *args: Any,
        kwargs: Mapping[str, Any] | None = None,
        after: float | timedelta | None = None,
        at: datetime | None = None,
        cron: str | None = None,
        tz: str = "UTC",
        every: float | timedelta | str | None = None,
        id: str | None = None,
        priority: int | None = None,
        timeout: float | timedelta | None = None,
        max_retries: int | None = None,
        backoff: Backoff | float | None = None,
        max_rescues: int | None = None,
        dedupe_key: str | None = None,
        overlap: Overlap | str = Overlap.ALLOW,
        misfire: Misfire | str = Misfire.CATCH_UP_ONCE,
        misfire_cap: int = 100,
        misfire_grace: float | timedelta = 5.0,
        jitter: float | timedelta | None = None,
        start: datetime | None = None,
    ) -> Instance | ScheduleRecord:
        """Schedule ``job`` (a registered kind, or a Job, registered if new) with ``args``.

        The executor's arguments are only ``*args`` and ``kwargs=``: every keyword of
        this method is a scheduling option, so they never collide with the executor's
        own parameter names.

        * one-off: now, ``after`` a delay (seconds or timedelta) or ``at`` an aware datetime;
          returns the Instance;
        * recurring: ``cron`` (5 fields, or 6 with seconds first; ``@daily``-style aliases;
          evaluated in ``tz``) or ``every`` (fixed rate from ``start``, default now);
          returns the stored ScheduleRecord. Its ``id`` defaults to one derived from the
          kind, trigger and arguments, so declaring it again (on any node) is idempotent.

        Arguments are validated against the executor's signature and annotations now,
        never in the worker: bad ones raise :class:`~gojob.errors.ArgumentError`.
        """
        self._check_open()
        if isinstance(job, Job):
            job_def = self._adopt(job)
        else:
            job_def = self.registry.get(job)
        if cron is not None or every is not None:
            if after is not None or at is not None or dedupe_key is not None:
                raise InvalidSchedule(
                    "`after`, `at` and `dedupe_key` do not apply to a recurring schedule "
                    "(use `start` to anchor an interval)"
                )
            trigger = self._trigger(cron, tz, every, start)
            return await self.scheduler.declare(
                job_def,
                trigger,
                args,
                kwargs,
                schedule_id=id,
                overrides={
                    "priority": priority,
                    "timeout": timeout,
                    "max_retries": max_retries,
                    "backoff": backoff,
                    "max_rescues": max_rescues,
                },
                overlap=Overlap(overlap),
                misfire=Misfire(misfire),
                misfire_cap=misfire_cap,
                misfire_grace=seconds(misfire_grace) or 0.0,
                jitter=seconds(jitter) or 0.0,
            )
        if id is not None or start is not None:
            raise InvalidSchedule("`id` and `start` apply only to recurring schedules")
        now = self.clock.now()
        inst = self._build(
            job_def,
            args,
            kwargs,
            due=self._due(now, after, at),
            now=now,
            priority=priority,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            max_rescues=max_rescues,
            dedupe_key=dedupe_key,
        )
        (added,) = await self.store.add([inst])
        # A schedule point too: a producer looping on schedule() must let work run.
        await trio.lowlevel.cancel_shielded_checkpoint()
        return added

    def _trigger(
        self,
        cron: str | None,
        tz: str,
        every: float | timedelta | str | None,
        start: datetime | None,
    ) -> Trigger:
        if cron is not None and every is not None:
            raise InvalidSchedule("give either `cron` or `every`, not both")
        if start is not None and (start.tzinfo is None or start.utcoffset() is None):
            raise InvalidSchedule(f"`start` must be timezone-aware, got {start.isoformat()}")
        if cron is not None:
            trigger = cron_or_every(cron, tz)
        else:
            assert every is not None
            trigger = Every(parse_interval(every))
        if isinstance(trigger, Every):
            trigger = trigger.with_anchor(start or self.clock.now())
        elif start is not None:
            raise InvalidSchedule("`start` applies only to `every` schedules")
        return trigger

    async def schedule_many(
        self,
        job: str | Job,
        calls: Iterable[Sequence[Any]],
        *,
        after: float | timedelta | None = None,
        at: datetime | None = None,
        priority: int | None = None,
        timeout: float | timedelta | None = None,
        max_retries: int | None = None,
    ) -> list[Instance]:
        """Enqueue one instance per argument tuple in ``calls``, in one store write."""
        self._check_open()
        job_def = self._adopt(job) if isinstance(job, Job) else self.registry.get(job)
        now = self.clock.now()
        due = self._due(now, after, at)
        insts = [
            self._build(
                job_def,
                call,
                None,
                due=due,
                now=now,
                priority=priority,
                timeout=timeout,
                max_retries=max_retries,
                backoff=None,
                max_rescues=None,
                dedupe_key=None,
            )
            for call in calls
        ]
        added = await self.store.add(insts) if insts else []
        await trio.lowlevel.cancel_shielded_checkpoint()
        return added

    # -- waiting and querying -----------------------------------------------------------------
    async def wait(self, instance: Instance | str, *, timeout: float | None = None) -> Instance:
        """Wait until the instance is final (Completed, Canceled, or failed with no retry
        left) and return it. Raises InstanceNotFound, ManagerClosed if the manager closes
        first, or ``trio.TooSlowError`` after ``timeout`` seconds."""
        uuid = instance if isinstance(instance, str) else instance.uuid
        with trio.fail_after(math.inf if timeout is None else timeout):
            while True:
                if self._closed:
                    raise ManagerClosed("the manager is closed: nothing can finish any more")
                # Registered before reading, so a change between the read and the wait
                # still wakes this call.
                event = trio.Event()
                waiters = self._waiters.setdefault(uuid, [])
                waiters.append(event)
                try:
                    current = await self.store.get(uuid)
                    if current is None:
                        raise InstanceNotFound(f"no instance with uuid {uuid}")
                    if current.state in FINAL:
                        return current
                    await event.wait()
                finally:
                    waiters.remove(event)
                    if not waiters and self._waiters.get(uuid) is waiters:
                        del self._waiters[uuid]

    async def get(self, uuid: str) -> Instance:
        found = await self.store.get(uuid)
        if found is None:
            raise InstanceNotFound(f"no instance with uuid {uuid}")
        return found

    async def instances(
        self,
        *,
        uuid: str | None = None,
        kind: str | None = None,
        state: State | str | Collection[State | str] | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        schedule_id: str | None = None,
        order_by: str = "created_at",
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Instance]:
        """Look instances up; ``limit`` defaults to 1000 (see ``store.base.DEFAULT_LIMIT``)."""
        if order_by not in ("created_at", "scheduled_at", "updated_at"):
            raise ValueError(f"cannot order by {order_by!r}")
        return await self.store.lookup_instances(
            InstanceQuery(
                uuid=uuid,
                kind=kind,
                states=_states(state),
                after=after,
                before=before,
                schedule_id=schedule_id,
                order_by=order_by,  # type: ignore[arg-type]
                descending=descending,
                limit=_limit(limit),
                offset=_offset(offset),
            )
        )

    async def history(
        self,
        *,
        uuid: str | None = None,
        kind: str | None = None,
        state: State | str | Collection[State | str] | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[HistoryRecord]:
        """State history records, oldest first."""
        return await self.store.history(
            HistoryQuery(
                uuid=uuid,
                kind=kind,
                states=_states(state),
                after=after,
                before=before,
                descending=descending,
                limit=_limit(limit),
                offset=_offset(offset),
            )
        )

    async def logs(
        self,
        *,
        uuid: str | None = None,
        kind: str | None = None,
        level: LogLevel | str | None = None,
        after: datetime | None = None,
        before: datetime | None = None,
        descending: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[LogRecord]:
        """Per-instance log records at or above ``level``, oldest first."""
        if self._log_buffer is not None:
            await self._log_buffer.flush()
        return await self.store.logs(
            LogQuery(
                uuid=uuid,
                kind=kind,
                min_level=None if level is None else LogLevel.parse(level),
                after=after,
                before=before,
                descending=descending,
                limit=_limit(limit),
                offset=_offset(offset),
            )
        )

    async def statistics(self) -> ManagerStatistics:
        counts = await self.store.counts()
        by_state: dict[State, int] = dict.fromkeys(State, 0)
        by_kind: dict[str, dict[State, int]] = {}
        for (kind, state), n in counts.items():
            by_state[state] += n
            by_kind.setdefault(kind, dict.fromkeys(State, 0))[state] += n
        pool: WorkerStatistics = self._pool.statistics()
        return ManagerStatistics(
            node_id=self.node_id,
            workers=pool.workers,
            target_workers=pool.target,
            busy_workers=pool.busy,
            in_flight=self._in_flight,
            queued=by_state[State.SCHEDULED],
            by_state=by_state,
            by_kind=by_kind,
        )

    # -- cancellation and retry ---------------------------------------------------------------
    async def cancel(
        self,
        instance: Instance | str | None = None,
        *,
        kind: str | None = None,
        state: State | str | Collection[State | str] | None = None,
    ) -> list[Instance]:
        """Cancel matching non-final instances: queued ones at once, running ones (here or
        on any node) through their attempt's cancel scope. Returns the matched instances.
        At least one filter is required."""
        uuid = instance.uuid if isinstance(instance, Instance) else instance
        if uuid is None and kind is None and state is None:
            raise ValueError("cancel() needs an instance, a kind or a state to match")
        matched = await self.store.request_cancel(
            InstanceQuery(uuid=uuid, kind=kind, states=_states(state), limit=None)
        )
        for inst in matched:
            attempt = self._by_uuid.get(inst.uuid)
            if attempt is not None:
                attempt.stop(StopReason.CANCELED)
        for inst in matched:
            # A queued instance was canceled by this very call: this node performed the
            # transition, so it runs the state processor (a running one runs it where its
            # attempt finishes).
            job = self.registry.find(inst.kind)
            if inst.state is State.CANCELED and job is not None and job.on_state_change is not None:
                inst._sink = self._log_buffer.write if self._log_buffer is not None else None
                try:
                    await run_processor(inst, "on_state_change", job.on_state_change, inst.state)
                finally:
                    inst._sink = None
        return matched

    async def retry(self, instance: Instance | str, *, after: float | None = None) -> Instance:
        """Run a final instance again (failure count reset)."""
        uuid = instance if isinstance(instance, str) else instance.uuid
        due = self.clock.now() + timedelta(seconds=after or 0.0)
        return await self.store.requeue(uuid, due)

    # -- schedules ----------------------------------------------------------------------------
    async def schedules(self, kind: str | None = None) -> list[ScheduleRecord]:
        return await self.store.list_schedules(kind)

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        found = await self.store.get_schedule(schedule_id)
        if found is None:
            raise ScheduleNotFound(f"no schedule with id {schedule_id!r}")
        return found

    async def pause_schedule(self, schedule_id: str) -> ScheduleRecord:
        return await self.store.set_schedule_paused(schedule_id, True)

    async def resume_schedule(self, schedule_id: str) -> ScheduleRecord:
        """Resume; slots that passed while paused are not fired."""
        found = await self.get_schedule(schedule_id)
        cursor = found.trigger.next_fire(self.clock.now())
        return await self.store.set_schedule_paused(schedule_id, False, cursor)

    async def delete_schedule(self, schedule_id: str) -> None:
        if not await self.store.delete_schedule(schedule_id):
            raise ScheduleNotFound(f"no schedule with id {schedule_id!r}")

    # -- workers ------------------------------------------------------------------------------
    @property
    def workers(self) -> int:
        return self._pool.target

    async def resize(self, workers: int, *, cancel_busy: bool = False) -> None:
        """Resize the pool: growing is immediate; shrinking waits for busy workers to finish
        their attempt, or (``cancel_busy``) releases those attempts back to the queue."""
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        await self._pool.resize(workers, cancel_busy=cancel_busy)

    # -- internals: dispatch ------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closing:
            raise ManagerClosed("the manager is shutting down")

    def _wake_dispatcher(self) -> None:
        self._dispatch_wake.set()

    async def _claim(self) -> int:
        """Claim as many due attempts as there are free slots and queue them for the
        workers; returns how many. One claim at a time per node (the dispatcher, or a
        worker that ran out of work while the store had a backlog)."""
        kinds = self.registry.kinds()
        capacity = self._capacity()
        # Outcomes awaiting their acknowledgement count too, past a bound: claims must
        # not outrun a store that is slow to write them.
        free = min(capacity - self._busy, max(2 * capacity, _ACK_BACKLOG) - self._in_flight)
        if self._claiming or self._closing or not kinds or free <= 0:
            return 0
        self._claiming = True
        self._claim_done = trio.Event()
        try:
            lease_until = trio.current_time() + self.lease
            batch = await self.store.claim(self.node_id, kinds, free, self.lease)
        finally:
            self._claiming = False
            self._claim_done.set()
        # A full batch suggests more is due: idle workers claim again themselves, without
        # waiting for the dispatcher (a task switch per batch saved).
        self._backlog = len(batch) == free
        if batch:
            self._in_flight += len(batch)
            self._busy += len(batch)
            if self._idle.is_set():
                self._idle = trio.Event()
            running = self._running
            by_uuid = self._by_uuid
            put = self._pool.queue.put_nowait
            for inst in batch:
                token = inst.claim_token
                assert token is not None
                attempt = Attempt(inst, token, "", lease_until)
                running[token] = attempt
                by_uuid[inst.uuid] = attempt
                put(attempt)
            self._leases_wanted.set()
        return len(batch)

    def _capacity(self) -> int:
        """How many attempts this node may hold claimed and undecided.

        The free workers, plus ``prefetch`` while the store has a backlog (the last
        claim came back full): then workers take their next attempt without waiting for
        a claim round trip, and a claim carries a batch worth its round trip. While the
        queue is shallow nothing is claimed ahead, so a better instance that arrives is
        claimed as soon as a worker is free; with a backlog it may wait behind at most
        ``prefetch`` attempts claimed before it arrived.
        """
        return self._pool.target + (self.prefetch if self._backlog else 0)

    async def _dispatch(self) -> None:
        """Claim due work in batches while workers are free; sleep until woken or due."""
        backoff = 0.05
        while not self._closing:
            self._dispatch_wake = trio.Event()
            timeout = math.inf
            if self._claiming:
                # A worker is claiming: its result decides what comes next (and a claim
                # of ours now would read as "nothing due").
                await self._claim_done.wait()
                continue
            try:
                claimed = await self._claim()
                backoff = 0.05
            except StoreError as exc:
                log.warning("claim failed (retrying in %.2fs): %s", backoff, exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self.poll_interval)
                continue
            if claimed:
                if self._capacity() - self._busy > 0:
                    continue
                # Full: workers wake it as they free up; the poll bounds a missed wake-up.
                timeout = self.poll_interval
            elif self._capacity() - self._busy > 0 and self.registry.kinds():
                timeout = self.poll_interval
                try:
                    due = await self.store.next_due(self.registry.kinds())
                except StoreError as exc:
                    log.warning("next_due failed: %s", exc)
                    due = None
                if due is not None:
                    wait = (due - self.clock.now()).total_seconds()
                    # Due but not claimable (clock skew between node and store): no spin.
                    timeout = min(max(wait, 0.01), timeout)
            else:
                timeout = self.poll_interval
            with trio.move_on_after(timeout):
                await self._dispatch_wake.wait()

    async def _claim_for_worker(self) -> bool:
        """Called by a worker that found no work queued: claim directly while the store
        has a backlog. Returns True if work was queued."""
        if not self._backlog or self._claiming or self._closing:
            return False
        # One schedule point per batch: lets the finisher and the listener run.
        await trio.lowlevel.checkpoint()
        try:
            if await self._claim() > 0:
                return True
            # Nothing more: the dispatcher goes back to sleeping until the next due time.
            self._dispatch_wake.set()
            return False
        except StoreError as exc:
            log.warning("claim failed: %s", exc)
            self._backlog = False
            self._dispatch_wake.set()
            return False

    def _lane_ready(self, attempt: Attempt, job: Job | None) -> bool:
        """Can this attempt run in a worker's shared lane (see ``_run_lane``)?"""
        return (
            job is not None
            and job.on_complete is None
            and job.on_state_change is None
            and attempt.stop_reason is None
            and not self._closing
        )

    def _hand_over(self, attempt: Attempt, outcome: Outcome | None) -> None:
        """The attempt's outcome is decided: queue it for the finisher (or forget the
        attempt when its lease was lost) and free its place in the claim budget."""
        attempt.instance._sink = None
        self._busy -= 1
        if not self._backlog:
            self._dispatch_wake.set()
        if outcome is None:
            self._forget(attempt)
            return
        queue = self._finish_queue
        queue.append((attempt, outcome))
        if len(queue) == 1:
            self._finish_wake.set()

    async def _run_lane(self, first: Attempt, worker: str) -> None:
        """Run ``first``, then every attempt already queued behind it, on ``worker``.

        A cancel scope costs several microseconds to open and close, more than the rest
        of a no-op job's overhead. So consecutive attempts share one scope (a *lane*)
        while they need nothing awaited outside their executor: each attempt owns the
        lane only while its executor runs (``attempt.scope``), a timeout is the lane's
        deadline for that attempt, and a lane whose scope was cancelled is closed and a
        fresh one opened. Attempts with processors after the write, or stopped before
        they started, take the one-scope-per-attempt path (``_run_claimed``).
        """
        pool = self._pool
        assert self._log_buffer is not None
        sink = self._log_buffer.write
        attempt: Attempt | None = first
        while attempt is not None:
            job = self.registry.find(attempt.instance.kind)
            if not self._lane_ready(attempt, job):
                await self._run_claimed(attempt, worker)
                attempt = pool.take_nowait()
                continue
            assert job is not None
            current: Attempt | None = attempt
            attempt = None
            try:
                with trio.CancelScope() as lane:
                    while current is not None:
                        inst = current.instance
                        current.worker = worker
                        inst.worker = worker
                        inst._sink = sink
                        timeout = inst.policy.timeout
                        deadline = math.inf
                        if timeout is not None:
                            deadline = lane.deadline = trio.current_time() + timeout
                        outcome, error = await run_in_scope(self, job, current, lane, deadline)
                        if timeout is not None:
                            lane.deadline = math.inf
                        if outcome is None:
                            break  # stopped, cancellation swallowed: decided below
                        if outcome.state in FAILED:
                            outcome = await after_failure(self, job, inst, outcome, error)
                        self._hand_over(current, outcome)
                        current = None
                        if lane.cancel_called:
                            break  # a stale cancel must not reach the next attempt
                        following = pool.take_nowait()
                        if following is None:
                            break
                        next_job = self.registry.find(following.instance.kind)
                        if next_job is not job or not self._lane_ready(following, next_job):
                            attempt = following
                            break
                        current = following
            except Exception as exc:
                if current is not None:
                    outcome = group_failure(exc, worker)
                    if job is not None:
                        outcome = await after_failure(self, job, current.instance, outcome, exc)
                    self._hand_over(current, outcome)
                    current = None
            if current is not None:
                # Its executor was stopped: cancelled, lease lost, released or timed out.
                stopped = stopped_outcome(current)
                if stopped is not None and stopped.state in FAILED:
                    stopped = await after_failure(self, job, current.instance, stopped, None)
                self._hand_over(current, stopped)
            if attempt is None:
                attempt = pool.take_nowait()

    async def _run_claimed(self, attempt: Attempt, worker: str) -> None:
        """Run one claimed attempt on ``worker`` and finish it (called by the pool).

        Attempts whose job has no processor to run after the write hand their outcome
        to the finisher, which acknowledges many in one ``finish_many``; the worker
        goes on to its next attempt at once.
        """
        inst = attempt.instance
        attempt.worker = worker
        assert self._log_buffer is not None
        inst._sink = self._log_buffer.write
        inst.worker = worker
        handed_over = False
        try:
            job = self.registry.find(inst.kind)
            outcome: Outcome | None
            if attempt.stop_reason is not None or self._closing:
                # Stopped before it started (cancel, lease loss, shutdown): do not run it.
                outcome = _unstarted_outcome(attempt, self._closing, worker)
            elif job is None:
                outcome = Outcome(
                    State.SCHEDULED, reason="released: kind not registered here", worker=worker
                )
            else:
                if job.on_state_change is not None:
                    await run_processor(
                        inst, "on_state_change", job.on_state_change, State.PROCESSING
                    )
                outcome = await execute(self, job, attempt)
            if outcome is None:
                return  # lease lost: the attempt is fenced off, nothing to write
            if job is None or (job.on_complete is None and job.on_state_change is None):
                queue = self._finish_queue
                queue.append((attempt, outcome))
                if len(queue) == 1:
                    self._finish_wake.set()
                handed_over = True
                return
            finished = await self._finish(attempt, outcome)
            if finished is not None:
                await self._after_finish(job, inst, finished, outcome)
        finally:
            inst._sink = None
            self._busy -= 1
            if not self._backlog:
                self._dispatch_wake.set()
            if not handed_over:
                self._forget(attempt)

    def _forget(self, attempt: Attempt) -> None:
        """The attempt is written (or abandoned): free its slot in the claim budget."""
        del self._running[attempt.token]
        uuid = attempt.instance.uuid
        if self._by_uuid.get(uuid) is attempt:
            # A retry may already be claimed again under the same uuid: keep its entry.
            del self._by_uuid[uuid]
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    async def _finisher(self) -> None:
        """Acknowledge handed-over outcomes in batches: one store write per batch.

        A batch the store fails to write is kept (its leases are still extended) and
        written again with a growing pause; it is dropped only when its leases are
        lost, i.e. when another node has taken the instances back.
        """
        backoff = 0.05
        while True:
            if not self._finish_queue:
                self._finish_wake = trio.Event()
                await self._finish_wake.wait()
            batch, self._finish_queue = self._finish_queue, []
            if await self._finish_batch(batch):
                backoff = 0.05
            else:
                self._finish_queue[:0] = batch
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self.poll_interval)

    async def _finish_batch(self, batch: list[tuple[Attempt, Outcome]]) -> bool:
        """Write one batch; False (nothing forgotten) when the store failed."""
        items = [(attempt.token, outcome) for attempt, outcome in batch]
        results: list[Instance | LeaseLost | None] = []
        try:
            try:
                results = await self.store.finish_many(items, returning=False)
            except trio.Cancelled:
                # The write must land even while this task is being cancelled: repeat it
                # shielded and bounded (finishes already written are idempotent).
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + max(self.lease, 5.0)
                    await self.store.finish_many(items, returning=False)
                for attempt, _ in batch:
                    self._forget(attempt)
                raise
        except StoreError as exc:
            log.error("could not finish %d attempts (retrying): %s", len(items), exc)
            return False
        except GojobError as exc:
            # Outcomes are built here, so this is a bug; it must not stop the node.
            log.error("finishing %d attempts was refused: %r", len(items), exc)
        for attempt, _ in batch:
            self._forget(attempt)
        self._dispatch_wake.set()  # claims held back by unacknowledged work may go on
        for (attempt, _), result in zip(batch, results, strict=False):
            if isinstance(result, LeaseLost):
                log.warning(
                    "lease of %s lost before finishing; attempt discarded", attempt.instance.uuid
                )
        return True

    async def _finish(self, attempt: Attempt, outcome: Outcome) -> Instance | None:
        try:
            try:
                return await self.store.finish(attempt.token, outcome)
            except trio.Cancelled:
                # The write must land even while this task is being cancelled: repeat it
                # shielded and bounded (a finish already written is idempotent).
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + max(self.lease, 5.0)
                    await self.store.finish(attempt.token, outcome)
                raise
        except LeaseLost:
            log.warning(
                "lease of %s lost before finishing; attempt discarded", attempt.instance.uuid
            )
        except StoreError as exc:
            log.error(
                "could not finish %s: %s (the reaper will rescue it)", attempt.instance.uuid, exc
            )
        except GojobError as exc:
            log.error("finishing %s was refused: %r", attempt.instance.uuid, exc)
        return None

    async def _after_finish(
        self, job: Job, inst: Instance, finished: Instance, outcome: Outcome
    ) -> None:
        finished._sink = inst._sink
        try:
            if outcome.state is State.COMPLETED and job.on_complete is not None:
                await run_processor(finished, "on_complete", job.on_complete, outcome.result)
            if job.on_state_change is not None:
                await run_processor(finished, "on_state_change", job.on_state_change, outcome.state)
                if outcome.state is not State.SCHEDULED and finished.state is State.SCHEDULED:
                    await run_processor(
                        finished, "on_state_change", job.on_state_change, State.SCHEDULED
                    )
                elif outcome.state is not State.CANCELED and finished.state is State.CANCELED:
                    # A pending cancel turned the requeue into Canceled in the store.
                    await run_processor(
                        finished, "on_state_change", job.on_state_change, State.CANCELED
                    )
        finally:
            finished._sink = None

    async def _enable_retention(
        self, retention: float | timedelta, every: float | timedelta
    ) -> None:
        keep = seconds(retention)
        if keep is None or not math.isfinite(keep) or keep <= 0:
            raise ValueError(f"retention must be a positive duration, got {retention!r}")

        async def prune() -> dict[str, int]:
            """Delete final instances, history and logs older than the retention."""
            cutoff = self.clock.now() - timedelta(seconds=keep)
            result = await self.store.prune(cutoff)
            return {"instances": result.instances, "history": result.history, "logs": result.logs}

        self.register(
            Job(PRUNE_KIND, prune, description=f"prune what finished over {keep:g}s ago"),
            replace=True,
        )
        await self.schedule(PRUNE_KIND, every=every, id=PRUNE_KIND, overlap=Overlap.SKIP)

    def _release_worker_attempt(self, worker: str) -> None:
        for attempt in self._running.values():
            if attempt.worker == worker:
                attempt.stop(StopReason.RELEASED)

    # -- internals: leases, reaping, notifications -------------------------------------------
    async def _keep_leases(self) -> None:
        interval = self.lease / 3
        while True:
            if not self._running:
                self._leases_wanted = trio.Event()
                await self._leases_wanted.wait()
            await trio.sleep(interval)
            tokens = list(self._running)
            if not tokens:
                continue
            sent = trio.current_time()
            try:
                reply = await self.store.extend_leases(self.node_id, tokens, self.lease)
            except StoreError as exc:
                log.warning("lease extension failed: %s", exc)
                # Unextended, a lease runs out at the store too and another node may
                # rescue the instance: stop running it here once it surely has (a node
                # cut off from its store would otherwise run it alongside the rescuer).
                now = trio.current_time()
                for unextended in list(self._running.values()):
                    if unextended.lease_until <= now:
                        log.warning(
                            "lease of %s ran out unextended; cancelling its attempt",
                            unextended.instance.uuid,
                        )
                        unextended.stop(StopReason.LEASE_LOST)
                continue
            lease_until = sent + self.lease
            for token in reply.extended:
                extended = self._running.get(token)
                if extended is not None:
                    extended.lease_until = lease_until
            for token in reply.lost:
                attempt = self._running.get(token)
                if attempt is not None:
                    log.warning("lease of %s lost; cancelling its attempt", attempt.instance.uuid)
                    attempt.stop(StopReason.LEASE_LOST)
            for token in reply.cancel_requested:
                attempt = self._running.get(token)
                if attempt is not None:
                    attempt.stop(StopReason.CANCELED)

    async def _reap(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            try:
                reaped = await self.store.reap_expired()
            except StoreError as exc:
                log.warning("reaping failed: %s", exc)
                continue
            for inst in reaped:
                log.warning(
                    "instance %s (%s) abandoned by node %s: now %s",
                    inst.uuid,
                    inst.kind,
                    inst.node_id,
                    inst.state.value,
                )
                job = self.registry.find(inst.kind)
                if job is not None and job.on_state_change is not None:
                    inst._sink = self._log_buffer.write if self._log_buffer is not None else None
                    try:
                        await run_processor(
                            inst, "on_state_change", job.on_state_change, inst.state
                        )
                    finally:
                        inst._sink = None

    def _wake_all_waiters(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()

    async def _listen(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Follow the store's notifications; resubscribe (and catch up) if they fail."""
        backoff = 0.05
        while True:
            try:
                await self._listen_once(task_status)
                log.warning("the store's notification stream ended; resubscribing")
            except StoreError as exc:
                log.warning("notifications failed (resubscribing in %.2fs): %s", backoff, exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self.poll_interval)
            task_status = trio.TASK_STATUS_IGNORED
            # Anything may have changed meanwhile: every consumer catches up.
            self._wake_all_waiters()
            self._dispatch_wake.set()
            self.scheduler.wake()

    async def _listen_once(self, task_status: trio.TaskStatus[None]) -> None:
        # Processing transitions interest nobody here: the store may skip them.
        async with self.store.subscribe(states=FINAL | {State.SCHEDULED}) as subscription:
            task_status.started()
            async for batch in subscription:
                for event in batch:
                    etype = event.type
                    if etype is EventType.STATE:
                        if event.state in FINAL or event.state is State.SCHEDULED:
                            for waiter in self._waiters.get(event.uuid or "", ()):
                                waiter.set()
                            self.scheduler.instance_changed(event.uuid)
                    elif etype is EventType.DUE:
                        self._dispatch_wake.set()
                    elif etype is EventType.CANCEL:
                        attempt = self._by_uuid.get(event.uuid or "")
                        if attempt is not None:
                            attempt.stop(StopReason.CANCELED)
                    elif etype is EventType.SCHEDULE:
                        self.scheduler.wake()
                    elif etype is EventType.RESYNC:
                        self._wake_all_waiters()
                        self._dispatch_wake.set()
                        self.scheduler.wake()

    async def _drain(self, grace: float) -> None:
        """Stop claiming; let running attempts finish for ``grace`` seconds, then release
        them (back to Scheduled) and wait for their release to be written."""
        self._closing = True
        self._dispatch_wake.set()
        with trio.move_on_after(grace):
            # A claim on its way back would land after the drain: wait for it first.
            await self._claim_done.wait()
            await self._idle.wait()
        for attempt in list(self._running.values()):
            attempt.stop(StopReason.RELEASED)
        with trio.move_on_after(max(self.lease, 10.0)):
            await self._claim_done.wait()
            for attempt in list(self._running.values()):
                attempt.stop(StopReason.RELEASED)
            await self._idle.wait()


def _unstarted_outcome(attempt: Attempt, closing: bool, worker: str) -> Outcome | None:
    reason = attempt.stop_reason
    if reason is StopReason.LEASE_LOST:
        return None
    if reason is StopReason.CANCELED:
        return Outcome(State.CANCELED, reason="canceled", worker=worker)
    return Outcome(State.SCHEDULED, reason="released", worker=worker)


def _states(value: State | str | Collection[State | str] | None) -> frozenset[State] | None:
    if value is None:
        return None
    if isinstance(value, State | str):
        value = [value]
    return frozenset(v if isinstance(v, State) else State.parse(v) for v in value)


def _limit(limit: int | None) -> int | None:
    if limit is not None and limit < 0:
        raise ValueError("limit must not be negative")
    return limit


def _offset(offset: int) -> int:
    if offset < 0:
        raise ValueError("offset must not be negative")
    return offset


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(2).hex()}"


@asynccontextmanager
async def open_manager(
    store: Store | str | None = None,
    *,
    workers: int = DEFAULT_WORKERS,
    node_id: str | None = None,
    clock: Clock | None = None,
    lease: float = 30.0,
    reap_interval: float | None = None,
    poll_interval: float = 5.0,
    drain_grace: float = 10.0,
    sync_threads: int | None = None,
    limits: Limits | None = None,
    capture_logging: bool = True,
    prefetch: int | None = None,
    retention: float | timedelta | None = None,
    retention_every: float | timedelta = 3600.0,
) -> AsyncIterator[Manager]:
    """Open a manager on ``store`` (default: a new in-memory store) with ``workers`` workers.

    Everything the manager runs lives in a nursery owned by this context. Leaving it
    drains: no new claims, running attempts get ``drain_grace`` seconds to finish, then
    are cancelled and released back to the queue (Scheduled) for another node or the
    next start. If the block exits with an exception or is cancelled, the grace is 0.

    ``lease`` is how long a claim stays valid without extension (extended every
    ``lease/3``); ``reap_interval`` (default ``lease``) is how often expired leases of
    dead nodes are reaped; ``poll_interval`` is the slowest wake-up when no notification
    arrives. ``sync_threads`` caps the threads running sync executors (default: workers).
    ``prefetch`` attempts are claimed beyond the free workers while the store has a
    backlog (see ``Manager._capacity``); the default is the store's
    ``preferred_prefetch`` (0 in memory, a batch's worth where a claim is a round trip).

    ``retention`` (seconds or a timedelta) turns on pruning: a recurring job of kind
    ``gojob.prune`` deletes final instances, history and logs older than that, every
    ``retention_every`` (one schedule shared by every node: it fires once per slot).
    """
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if prefetch is not None and (not isinstance(prefetch, int) or prefetch < 0):
        raise ValueError(f"prefetch must be a non-negative integer, got {prefetch!r}")
    if retention is not None:
        keep = seconds(retention)
        if keep is None or not math.isfinite(keep) or keep <= 0:
            raise ValueError(f"retention must be a positive duration, got {retention!r}")
    if reap_interval is not None and reap_interval <= 0:
        raise ValueError("reap_interval must be positive")
    if lease <= 0 or poll_interval <= 0 or drain_grace < 0:
        raise ValueError("lease and poll_interval must be positive, drain_grace >= 0")
    clock = clock or SystemClock()
    backend = _open_store(store, clock)
    async with backend:
        manager = Manager(
            backend,
            workers=workers,
            node_id=node_id or default_node_id(),
            clock=clock,
            lease=lease,
            poll_interval=poll_interval,
            limits=limits or Limits(),
            sync_threads=sync_threads or workers,
            prefetch=backend.preferred_prefetch if prefetch is None else prefetch,
        )
        if capture_logging:
            install_capture()
        body_error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                manager._log_buffer = LogBuffer(backend, clock, manager.limits.max_log_bytes)
                await nursery.start(manager._log_buffer.run)
                await nursery.start(manager._listen)
                await nursery.start(manager._pool.run)
                nursery.start_soon(manager._keep_leases)
                nursery.start_soon(manager._reap, reap_interval or lease)
                nursery.start_soon(manager.scheduler.run)
                nursery.start_soon(manager._finisher)
                nursery.start_soon(manager._dispatch)
                if retention is not None:
                    await manager._enable_retention(retention, retention_every)
                grace = drain_grace
                try:
                    yield manager
                except BaseException as exc:
                    # Raised by the caller's block: re-raised below, outside the nursery,
                    # so the caller gets it as raised, not wrapped in an ExceptionGroup.
                    body_error = exc
                    grace = 0.0
                finally:
                    with trio.CancelScope(shield=True):
                        await manager._drain(grace)
                    manager._closed = True
                    manager._wake_all_waiters()  # their wait() raises ManagerClosed
                    nursery.cancel_scope.cancel()
            if body_error is not None:
                raise body_error
        finally:
            if capture_logging:
                uninstall_capture()
