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
import socket
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, overload

import trio

from ._heartbeat import Heartbeat
from ._logs import LogBuffer, install_capture, uninstall_capture
from ._runtime import Runtime
from ._version import __version__
from .clock import Clock, SystemClock
from .codec import Limits, check_size, encode_call
from .errors import (
    ArgumentError,
    DuplicateJob,
    InstanceNotFound,
    InvalidSchedule,
    ManagerClosed,
    ScheduleNotFound,
    UnsupportedStore,
)
from .instance import HistoryRecord, Instance, LogLevel, LogRecord
from .job import Job
from .policy import Backoff, Policy, seconds
from .schedule import Every, Misfire, Overlap, Trigger, cron_or_every, parse_interval
from .state import FINAL, State
from .store.base import (
    Handover,
    HistoryQuery,
    InstanceQuery,
    LogQuery,
    NodeRecord,
    ScheduleRecord,
    Store,
)
from .store.memory import MemoryStore
from .worker import (
    StopReason,
    WorkerStatistics,
    run_processor,
)

if TYPE_CHECKING:
    from .server.metrics import Metrics

__all__ = ["Manager", "ManagerStatistics", "open_manager"]

log = logging.getLogger("gojob.manager")

DEFAULT_WORKERS = 10

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
    if isinstance(store, str) and store.startswith(("etcd://", "etcds://")):
        # Due times and leases on ``clock``: etcd has no time API (see EtcdStore).
        try:
            from .store.etcd import EtcdStore
        except ImportError as exc:
            raise UnsupportedStore(
                f"the etcd store needs its extra: pip install 'gojob[etcd]' ({exc})"
            ) from exc

        return EtcdStore(store, clock=clock)
    if isinstance(store, str) and store.startswith(
        ("redis://", "rediss://", "valkey://", "valkeys://")
    ):
        # Redis or Valkey (``?prefix=`` names the deployment): the server's clock (TIME).
        try:
            from .store.redis import RedisStore
        except ImportError as exc:
            raise UnsupportedStore(
                f"the Redis store needs its extra: pip install 'gojob[redis]' ({exc})"
            ) from exc

        return RedisStore(store)
    raise UnsupportedStore(
        f"unsupported store {store!r}: pass a Store object, 'memory://', "
        "'sqlite:///path.db', 'postgresql://user@host/database', 'etcd://host:2379' "
        "or 'redis://host:6379/0' ('valkey://' too)"
    )


class Manager(Runtime):
    """Registers jobs, schedules instances and runs them on this node's workers.

    Create it with :func:`open_manager`; every method is safe to call from any task
    while the manager is open.
    """

    _heartbeat: Heartbeat | None = None

    def _announce(self) -> None:
        """What this node announces (kinds, workers) changed: tell the registry now."""
        if self._heartbeat is not None:
            self._heartbeat.changed()

    # -- jobs -------------------------------------------------------------------------
    def register(self, job: Job, *, replace: bool = False) -> Job:
        """Register ``job``; a kind registered twice raises DuplicateJob unless ``replace``.
        A job with a default recurring ``schedule`` has it declared by the scheduler."""
        self.registry.register(job, replace=replace)
        if self.metrics is not None:
            self.metrics.set_registered(len(self.registry.kinds()))
        if job.schedule is not None:
            self.scheduler.declare_default(job)
        self._wake_dispatcher()
        self._announce()
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
        if self.metrics is not None:
            self.metrics.set_registered(len(self.registry.kinds()))
        self._wake_dispatcher()
        self._announce()
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
        enc_args, enc_kwargs = self._encode(job, args, kwargs or {})
        policy = self._policy(job, priority, timeout, max_retries, backoff, max_rescues)
        return Instance.new(job.kind, enc_args, enc_kwargs, policy, now, due, dedupe_key)

    def _encode(
        self, job: Job, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[list[Any], dict[str, Any]]:
        """A call's arguments, validated and encoded (see :func:`encode_call`)."""
        enc_args, enc_kwargs = encode_call(job.plan, args, kwargs)
        if enc_args or enc_kwargs:
            check_size([enc_args, enc_kwargs], self.limits.max_args_bytes, "arguments")
        return enc_args, enc_kwargs

    def _policy(
        self,
        job: Job,
        priority: int | None,
        timeout: float | timedelta | None,
        max_retries: int | None,
        backoff: Backoff | float | None,
        max_rescues: int | None,
    ) -> Policy:
        """The job's policy with the call's overrides."""
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
        return policy

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
        (added,) = await self._add(Handover([inst]))
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
        encode = self._encode
        no_keywords: dict[str, Any] = {}
        policy: Policy | None = None
        # Calls without arguments share one empty list and dict: these instances are only
        # handed to the store, which stores values and returns copies of its own.
        no_args: tuple[list[Any], dict[str, Any]] | None = None
        encoded = []
        for call in calls:
            if not call and no_args is not None:
                # Encoding is a pure function of the call: an empty call encodes (and
                # validates) as the first empty one did, and gave no arguments.
                encoded.append(no_args)
                continue
            enc = encode(job_def, call, no_keywords)
            if policy is None:  # checked after the first call's arguments, as before
                policy = self._policy(job_def, priority, timeout, max_retries, None, None)
            if not enc[0] and not enc[1]:
                if no_args is None:
                    no_args = enc
                enc = no_args
            encoded.append(enc)
        insts = [] if policy is None else Instance.new_many(job_def.kind, encoded, policy, now, due)
        added = await self._add(Handover(insts)) if insts else []
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
            elif self.metrics is not None and inst.state is State.CANCELED:
                self.metrics.canceled(inst.kind)  # queued, canceled by this call
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
        try:
            await self._pool.resize(workers, cancel_busy=cancel_busy)
        finally:
            if self.metrics is not None:
                self.metrics.set_workers(self._pool.target)
            self._announce()

    # -- nodes ------------------------------------------------------------------------------
    async def nodes(self) -> list[NodeRecord]:
        """The live nodes sharing this manager's store (this one included), by id: their
        kinds, workers, host, pid, version and last heartbeat."""
        return await self.store.nodes()

    async def unserved_kinds(
        self, counts: Mapping[tuple[str, State], int] | None = None
    ) -> dict[str, int]:
        """Kinds with queued instances (Created or Scheduled) that no live node has
        registered, with how many are queued: they wait for a node that runs them.
        ``counts``: the store's counts if the caller has just read them."""
        if counts is None:
            counts = await self.store.counts()
        served = set(self.registry.kinds())
        # This node's own record may lag its registry by one heartbeat: trust the registry.
        for node in await self.store.nodes():
            if node.node_id != self.node_id:
                served.update(node.kinds)
        waiting: dict[str, int] = {}
        for (kind, state), count in counts.items():
            if count and state in _QUEUED and kind not in served:
                waiting[kind] = waiting.get(kind, 0) + count
        return dict(sorted(waiting.items()))

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


_QUEUED = frozenset({State.CREATED, State.SCHEDULED})


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
    metrics: Metrics | None = None,
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

    ``metrics`` (a ``gojob.server.metrics.Metrics``, needing the ``server`` extra) is
    updated by this node; serve it with ``gojob.server.metrics.serve_metrics``.
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
            metrics=metrics,
        )
        if metrics is not None:
            metrics.attach(manager)
        if capture_logging:
            install_capture()
        body_error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                manager._log_buffer = LogBuffer(backend, clock, manager.limits.max_log_bytes)
                await nursery.start(manager._log_buffer.run)
                await nursery.start(manager._listen)
                await nursery.start(manager._pool.run)
                heartbeat = manager._heartbeat = Heartbeat(
                    backend,
                    manager.node_id,
                    lambda: (manager.registry.kinds(), manager.workers),
                    interval=lease / 3,
                    ttl=lease,
                    started_at=clock.now(),
                    version=__version__,
                )
                await nursery.start(heartbeat.run)
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
                        # A Cancelled out of the body comes from a scope around the
                        # manager, which cancels its tasks too.
                        await manager._drain(
                            grace, tasks_alive=not isinstance(body_error, trio.Cancelled)
                        )
                        await heartbeat.remove()
                    manager._closed = True
                    manager._wake_all_waiters()  # their wait() raises ManagerClosed
                    nursery.cancel_scope.cancel()
            if body_error is not None:
                raise body_error
        finally:
            if capture_logging:
                uninstall_capture()
