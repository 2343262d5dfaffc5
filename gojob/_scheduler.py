"""The scheduler: turns due slots of recurring schedules into instances.

Every node runs one. Firing a slot is a compare-and-set on the schedule's cursor in
the store (``Store.fire_schedule``), so each slot becomes exactly one instance however
many nodes race for it. The slot arithmetic itself is pure (``gojob.schedule``).
"""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import trio

from .codec import check_size, encode_call
from .errors import ArgumentError, GojobError, StoreError
from .instance import Instance, new_uuid
from .job import Job
from .policy import Backoff, seconds
from .schedule import Every, Misfire, Overlap, Trigger, plan_fires
from .schedule import schedule_id as derive_schedule_id
from .store.base import ScheduleRecord, slot_key

if TYPE_CHECKING:
    from ._runtime import Runtime as Manager

__all__ = ["Scheduler"]

log = logging.getLogger("gojob.scheduler")


class Scheduler:
    def __init__(self, manager: Manager) -> None:
        self._manager = manager
        self._wakeup = trio.Event()
        self._pending_defaults: list[Job] = []
        self._waiting_on: set[str] = set()
        self._rng = random.Random()

    def wake(self) -> None:
        self._wakeup.set()

    def instance_changed(self, uuid: str | None) -> None:
        if uuid is not None and uuid in self._waiting_on:
            self._waiting_on.discard(uuid)
            self._wakeup.set()

    def declare_default(self, job: Job) -> None:
        self._pending_defaults.append(job)
        self._wakeup.set()

    async def declare(
        self,
        job: Job,
        trigger: Trigger,
        args: Sequence[Any],
        kwargs: Mapping[str, Any] | None,
        *,
        schedule_id: str | None = None,
        overrides: Mapping[str, Any] | None = None,
        overlap: Overlap = Overlap.ALLOW,
        misfire: Misfire = Misfire.CATCH_UP_ONCE,
        misfire_cap: int = 100,
        misfire_grace: float = 5.0,
        jitter: float = 0.0,
    ) -> ScheduleRecord:
        """Store (idempotently) a recurring schedule of ``job``."""
        manager = self._manager
        enc_args, enc_kwargs = encode_call(job.plan, args, kwargs or {})
        check_size([enc_args, enc_kwargs], manager.limits.max_args_bytes, "arguments")
        policy = job.policy
        given = {k: v for k, v in (overrides or {}).items() if v is not None}
        if "backoff" in given and isinstance(given["backoff"], int | float):
            given["backoff"] = Backoff.constant(float(given["backoff"]))
        if "timeout" in given:
            given["timeout"] = seconds(given["timeout"])
        if "backoff" in given:
            given["custom_backoff"] = False
        try:
            policy = policy.with_overrides(**given)
        except ValueError as exc:
            raise ArgumentError(str(exc)) from exc
        if misfire_cap < 1:
            raise ArgumentError("misfire_cap must be at least 1")
        if misfire_grace < 0 or jitter < 0:
            raise ArgumentError("misfire_grace and jitter must not be negative")
        now = manager.clock.now()
        if isinstance(trigger, Every):
            if trigger.anchor is None:
                # A job's default interval has no start of its own: it starts now.
                trigger = trigger.with_anchor(now)
            anchor = trigger.anchor or now
            first = anchor if anchor > now - timedelta(seconds=misfire_grace) else None
            cursor = first or trigger.next_fire(now)
        else:
            cursor = trigger.next_fire(now)
        args_json = json.dumps([enc_args, enc_kwargs], sort_keys=True, separators=(",", ":"))
        record = ScheduleRecord(
            id=schedule_id or derive_schedule_id(job.kind, trigger, args_json),
            kind=job.kind,
            trigger=trigger,
            args=enc_args,
            kwargs=enc_kwargs,
            policy=policy,
            overlap=overlap,
            misfire=misfire,
            misfire_cap=misfire_cap,
            misfire_grace=misfire_grace,
            jitter=jitter,
            next_fire_at=cursor,
        )
        stored = await manager.store.put_schedule(record)
        self._wakeup.set()
        return stored

    async def run(self) -> None:
        manager = self._manager
        while True:
            self._wakeup = trio.Event()
            timeout = manager.poll_interval
            try:
                while self._pending_defaults:
                    job = self._pending_defaults[0]
                    try:
                        if job.schedule is not None:
                            await self.declare(job, job.schedule, (), None)
                    except StoreError:
                        raise  # keep it pending: declared on the next pass
                    except GojobError as exc:
                        log.error("default schedule of %r could not be declared: %s", job.kind, exc)
                    self._pending_defaults.pop(0)
                soonest = await self._fire_due()
                if soonest is not None:
                    wait = (soonest - manager.clock.now()).total_seconds()
                    timeout = min(timeout, max(wait, 0.0))
            except StoreError as exc:
                log.warning("scheduler pass failed: %s", exc)
            with trio.move_on_after(timeout if math.isfinite(timeout) else manager.poll_interval):
                await self._wakeup.wait()

    async def _fire_due(self) -> datetime | None:
        """Fire every due schedule once; return the next cursor to wake for."""
        manager = self._manager
        soonest: datetime | None = None
        for record in await manager.store.list_schedules():
            if record.paused or record.next_fire_at is None:
                continue
            now = manager.clock.now()
            if record.next_fire_at > now:
                soonest = (
                    record.next_fire_at if soonest is None else min(soonest, record.next_fire_at)
                )
                continue
            try:
                cursor = await self._fire(record, now)
            except StoreError:
                raise
            except GojobError as exc:
                # One bad record must not stop every other schedule.
                log.error("schedule %s could not fire: %s", record.id, exc)
                continue
            if cursor is not None:
                soonest = cursor if soonest is None else min(soonest, cursor)
        return soonest

    async def _fire(self, record: ScheduleRecord, now: datetime) -> datetime | None:
        assert record.next_fire_at is not None
        plan = plan_fires(
            record.trigger,
            record.next_fire_at,
            now,
            misfire=record.misfire,
            misfire_cap=record.misfire_cap,
            grace=timedelta(seconds=record.misfire_grace),
        )
        fires = list(plan.fire_times)
        skipped = [(slot, "misfire") for slot in plan.skipped]
        skipped_count = plan.skipped_count
        if record.overlap is not Overlap.ALLOW and fires:
            # Slots of one plan would overlap each other: keep only the latest.
            skipped += [(slot, "overlap") for slot in fires[:-1]]
            skipped_count += len(fires) - 1
            fires = fires[-1:]
            if record.last_instance is not None:
                previous = await self._manager.store.get(record.last_instance)
                if previous is not None and not previous.is_final:
                    if record.overlap is Overlap.WAIT:
                        # Leave the cursor: the slot fires when the previous one finishes.
                        self._waiting_on.add(previous.uuid)
                        return None
                    skipped += [(slot, "overlap") for slot in fires]
                    skipped_count += len(fires)
                    fires = []
        instances = [self._instance(record, slot, now) for slot in fires]
        added = await self._manager.store.fire_schedule(
            record.id, record.next_fire_at, plan.next_fire_at, instances, skipped, skipped_count
        )
        if added is None:
            log.debug("schedule %s slot already handled by another node", record.id)
        elif skipped_count:
            log.info("schedule %s skipped %d slot(s)", record.id, skipped_count)
        return plan.next_fire_at

    def _instance(self, record: ScheduleRecord, slot: datetime, now: datetime) -> Instance:
        due = slot
        if record.jitter:
            due = slot + timedelta(seconds=self._rng.uniform(0, record.jitter))
        return Instance(
            uuid=new_uuid(),
            kind=record.kind,
            args=list(record.args),
            kwargs=dict(record.kwargs),
            policy=record.policy,
            created_at=now,
            scheduled_at=due,
            schedule_id=record.id,
            fire_time=slot,
            dedupe_key=slot_key(record.id, slot),
        )
