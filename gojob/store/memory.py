"""The in-memory store: the reference implementation of the Store contract.

Everything lives in this process, so it coordinates the managers of one process
only (several managers sharing one MemoryStore behave like several nodes sharing a
database, which the tests use). It is also the fastest store: claims and finishes
are plain Python under Trio's single thread, so no method needs a lock.
"""

from __future__ import annotations

import heapq
import itertools
import os
from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import trio

from ..clock import Clock, SystemClock
from ..errors import InstanceNotFound, InvalidTransition, LeaseLost, ScheduleNotFound
from ..instance import HistoryRecord, Instance, LogRecord
from ..state import FINAL, State, check_transition
from .base import (
    DEFAULT_LIMIT,
    Event,
    EventType,
    HistoryQuery,
    InstanceQuery,
    LeaseReply,
    LogQuery,
    NodeRecord,
    Outcome,
    PruneResult,
    ScheduleRecord,
    Store,
    Subscription,
    apply_outcome_fields,
    copy_json,
    keyed_by_slot,
    outcome_details,
    record_fire,
)

__all__ = ["MemoryStore"]


# The hot methods (add, claim, finish, get, next_due, extend_leases) never block, so
# they are cancel points but not schedule points: a full checkpoint would cost a trip
# through Trio's scheduler (~4 µs) per job for nothing. Callers that loop on them
# still yield wherever they wait for work.
_cancel_point = trio.lowlevel.checkpoint_if_cancelled


class _MemorySubscription(Subscription):
    def __init__(self, states: frozenset[State] | None) -> None:
        self.states = states
        self.pending: list[Event] = []
        self.wakeup = trio.Event()

    def push(self, events: list[Event]) -> None:
        self.pending.extend(events)
        self.wakeup.set()

    async def __anext__(self) -> list[Event]:
        while not self.pending:
            await self.wakeup.wait()
            self.wakeup = trio.Event()
        batch, self.pending = self.pending, []
        return batch


class _KindQueue:
    """Due-ordered delayed heap and priority-ordered ready heap of one kind."""

    __slots__ = ("delayed", "ready")

    def __init__(self) -> None:
        # (due, seq, uuid): not yet due.
        # Due times are POSIX timestamps: heap comparisons of floats are several times
        # cheaper than of aware datetimes, and a heap pop makes ~log2(n) of them.
        self.delayed: list[tuple[float, int, str]] = []
        # (priority, due, seq, uuid): due, best first.
        self.ready: list[tuple[int, float, int, str]] = []


class MemoryStore(Store):
    """All state in Python dicts and heaps. ``clock`` judges due times and leases."""

    name = "memory"
    # No round trip to amortise, but each claim call still costs the manager a few
    # microseconds of bookkeeping: under a backlog, batches of twice the workers halve
    # that (a better instance arriving then waits behind at most 10 claimed ones).
    preferred_prefetch = 10

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or SystemClock()
        self._instances: dict[str, Instance] = {}
        # uuid -> (kind, state, timestamp, attempt, details, seq) tuples: tuples of
        # immutable values leave the garbage collector's tracking, records would not,
        # and a store of 100k instances holds 400k of them (GC passes cost 15-30%).
        self._history: dict[str, list[_Row]] = defaultdict(list)
        self._logs: dict[str, list[LogRecord]] = defaultdict(list)
        self._dedupe: dict[str, str] = {}
        self._queues: dict[str, _KindQueue] = defaultdict(_KindQueue)
        # uuid -> seq of its valid queue entry; entries with another seq are stale.
        self._queued: dict[str, int] = {}
        self._running: dict[str, str] = {}  # claim token -> uuid
        self._schedules: dict[str, ScheduleRecord] = {}
        self._nodes: dict[str, NodeRecord] = {}
        self._subscribers: list[_MemorySubscription] = []
        self._wanted_states: frozenset[State] | None = frozenset()
        """States some subscriber wants STATE events for (None: all)."""
        self._seq = itertools.count()
        self._token_prefix = os.urandom(4).hex()
        self._tokens = itertools.count()
        self._opened = 0

    # -- lifecycle ----------------------------------------------------------------
    async def __aenter__(self) -> MemoryStore:
        self._opened += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._opened -= 1

    async def now(self) -> datetime:
        return self.clock.now()

    # -- internals ----------------------------------------------------------------
    def _wants(self, state: State) -> bool:
        """Does any subscriber want STATE events for ``state``? (None: all states.)"""
        wanted = self._wanted_states
        return wanted is None or state in wanted

    def _subscribers_changed(self) -> None:
        wanted: set[State] = set()
        for sub in self._subscribers:
            if sub.states is None:
                self._wanted_states = None
                return
            wanted |= sub.states
        self._wanted_states = frozenset(wanted)

    def _emit(self, events: list[Event]) -> None:
        if events:
            for sub in self._subscribers:
                sub.push(events)

    def _record(
        self,
        inst: Instance,
        state: State,
        now: datetime,
        info: dict[str, Any] | None = None,
    ) -> None:
        self._history[inst.uuid].append(
            (inst.kind, state, now, inst.attempts, info or _NO_DETAILS, next(self._seq))
        )

    def _transition(
        self,
        inst: Instance,
        state: State,
        now: datetime,
        events: list[Event],
        info: dict[str, Any] | None = None,
    ) -> None:
        check_transition(inst.state, state)
        inst.state = state
        inst.updated_at = now
        self._record(inst, state, now, info)
        if self._wants(state):
            events.append(Event(EventType.STATE, inst.uuid, inst.kind, state, inst.node_id))
        key = inst.dedupe_key
        if key is not None:
            if state in FINAL:
                if self._dedupe.get(key) == inst.uuid:
                    del self._dedupe[key]
            elif state is State.SCHEDULED:
                # A failed or abandoned attempt going back to the queue passes through a
                # final state; the instance is not final, so it holds its key again.
                self._dedupe.setdefault(key, inst.uuid)

    def _enqueue(self, inst: Instance, now: datetime) -> None:
        seq = next(self._seq)
        self._queued[inst.uuid] = seq
        due = inst.scheduled_at or now
        queue = self._queues[inst.kind]
        if due <= now:
            heapq.heappush(queue.ready, (inst.policy.priority, due.timestamp(), seq, inst.uuid))
        else:
            heapq.heappush(queue.delayed, (due.timestamp(), seq, inst.uuid))

    def _insert(self, inst: Instance, now: datetime, events: list[Event]) -> Instance:
        key = inst.dedupe_key
        if key is not None:
            existing = self._dedupe.get(key)
            if existing is not None:
                return self._instances[existing]
            self._dedupe[key] = inst.uuid
        stored = _detach(inst)
        if not stored.args:
            # One shared empty list: stored lists are never changed in place (readers
            # get copies), and a list per instance is one more object for the GC.
            stored.args = _EMPTY_ARGS
        stored.state = State.CREATED
        stored.created_at = stored.created_at or now
        stored.scheduled_at = stored.scheduled_at or now
        stored.updated_at = now
        self._instances[stored.uuid] = stored
        self._record(stored, State.CREATED, now)
        stored.state = State.SCHEDULED
        self._record(stored, State.SCHEDULED, now, {"due": stored.scheduled_at.isoformat()})
        if self._wants(State.SCHEDULED):
            events.append(Event(EventType.STATE, stored.uuid, stored.kind, State.SCHEDULED))
        self._enqueue(stored, now)
        return stored

    def _due_event(self, due: datetime | None, kind: str | None) -> Event:
        return Event(EventType.DUE, kind=kind, due=due)

    # -- queue --------------------------------------------------------------------
    async def add(self, instances: Sequence[Instance]) -> list[Instance]:
        now = self.clock.now()
        events: list[Event] = []
        added = [_detach(self._insert(inst, now, events)) for inst in instances]
        if added:
            earliest = min(i.scheduled_at or now for i in added)
            events.append(self._due_event(earliest, added[0].kind if len(added) == 1 else None))
        self._emit(events)
        await _cancel_point()
        return added

    def _promote(self, queue: _KindQueue, now: datetime) -> None:
        delayed = queue.delayed
        now_ts = now.timestamp()
        while delayed and delayed[0][0] <= now_ts:
            due, seq, uuid = heapq.heappop(delayed)
            if self._queued.get(uuid) == seq:
                inst = self._instances[uuid]
                heapq.heappush(queue.ready, (inst.policy.priority, due, seq, uuid))

    def _pop_ready(self, queue: _KindQueue) -> Instance | None:
        ready = queue.ready
        while ready:
            _, _, seq, uuid = heapq.heappop(ready)
            if self._queued.get(uuid) == seq:
                del self._queued[uuid]
                return self._instances[uuid]
        return None

    async def claim(
        self,
        node_id: str,
        kinds: Collection[str] | None,
        limit: int,
        lease: float,
    ) -> list[Instance]:
        await _cancel_point()
        now = self.clock.now()
        names = list(self._queues) if kinds is None else [k for k in kinds if k in self._queues]
        queues = [self._queues[k] for k in names]
        for queue in queues:
            self._promote(queue, now)
        lease_until = now + timedelta(seconds=lease)
        wants_processing = self._wants(State.PROCESSING)
        claimed: list[Instance] = []
        events: list[Event] = []
        single = queues[0] if len(queues) == 1 else None
        # One details dict for the batch: stored rows are never changed (readers get copies).
        info = {"node": node_id}
        history = self._history
        seq = self._seq
        while len(claimed) < limit:
            if single is not None:
                inst = self._pop_ready(single)
            else:
                best: _KindQueue | None = None
                for queue in queues:
                    # Drop stale heads so the comparison sees live entries only.
                    while queue.ready and self._queued.get(queue.ready[0][3]) != queue.ready[0][2]:
                        heapq.heappop(queue.ready)
                    if queue.ready and (best is None or queue.ready[0] < best.ready[0]):
                        best = queue
                inst = None if best is None else self._pop_ready(best)
            if inst is None:
                break
            # The uuid travels in the token so a repeated finish finds its instance.
            token = f"{inst.uuid}/{self._token_prefix}{next(self._tokens)}"
            inst.state = State.PROCESSING
            inst.node_id = node_id
            inst.claim_token = token
            inst.lease_expires_at = lease_until
            inst.attempts += 1
            inst.processed_at = now
            inst.updated_at = now
            self._running[token] = inst.uuid
            history[inst.uuid].append(
                (inst.kind, State.PROCESSING, now, inst.attempts, info, next(seq))
            )
            if wants_processing:
                events.append(
                    Event(EventType.STATE, inst.uuid, inst.kind, State.PROCESSING, node_id)
                )
            claimed.append(_detach(inst))
        self._emit(events)
        return claimed

    async def next_due(self, kinds: Collection[str] | None) -> datetime | None:
        await _cancel_point()
        best: tuple[float, str] | None = None
        names = list(self._queues) if kinds is None else [k for k in kinds if k in self._queues]
        for name in names:
            queue = self._queues[name]
            # The ready heap is ordered by priority first: scan it for the earliest due.
            for _, due, seq, uuid in queue.ready:
                if (best is None or due < best[0]) and self._queued.get(uuid) == seq:
                    best = (due, uuid)
            while queue.delayed and self._queued.get(queue.delayed[0][2]) != queue.delayed[0][1]:
                heapq.heappop(queue.delayed)
            if queue.delayed and (best is None or queue.delayed[0][0] < best[0]):
                best = (queue.delayed[0][0], queue.delayed[0][2])
        return None if best is None else self._instances[best[1]].scheduled_at

    async def extend_leases(
        self, node_id: str, tokens: Collection[str], lease: float
    ) -> LeaseReply:
        await _cancel_point()
        now = self.clock.now()
        until = now + timedelta(seconds=lease)
        extended: set[str] = set()
        lost: set[str] = set()
        cancel: set[str] = set()
        for token in tokens:
            inst = self._held(token, now)
            if inst is None:
                lost.add(token)
                continue
            inst.lease_expires_at = until
            extended.add(token)
            if inst.cancel_requested:
                cancel.add(token)
        return LeaseReply(frozenset(extended), frozenset(lost), frozenset(cancel))

    def _held(self, token: str, now: datetime) -> Instance | None:
        uuid = self._running.get(token)
        if uuid is None:
            return None
        inst = self._instances.get(uuid)
        if (
            inst is None
            or inst.state is not State.PROCESSING
            or inst.claim_token != token
            or inst.lease_expires_at is None
            or inst.lease_expires_at < now
        ):
            return None
        return inst

    async def finish_many(
        self, items: Sequence[tuple[str, Outcome]], *, returning: bool = True
    ) -> list[Instance | LeaseLost | None]:
        await _cancel_point()
        # Validate every outcome before writing anything: a bad one changes nothing.
        for _, outcome in items:
            _check_outcome(outcome)
        now = self.clock.now()
        events: list[Event] = []
        results = [
            self._finish_one(token, outcome, now, events, returning) for token, outcome in items
        ]
        self._emit(events)
        return results

    def _finish_one(
        self, token: str, outcome: Outcome, now: datetime, events: list[Event], returning: bool
    ) -> Instance | LeaseLost | None:
        inst = self._held(token, now)
        if inst is None:
            done = self._instances.get(token.partition("/")[0])
            if (
                done is not None
                and done.claim_token == token
                and done.state is not State.PROCESSING
            ):
                return _detach(done)  # a repeated finish: idempotent
            return LeaseLost(f"claim token {token} no longer holds a lease")
        requeue = outcome.state is State.SCHEDULED or outcome.retry_at is not None
        del self._running[token]
        apply_outcome_fields(inst, outcome, now)
        info = outcome_details(outcome, inst.node_id)
        if outcome.result is not None:
            # Stored apart from the caller's value, which it may go on changing.
            inst.result = copy_json(inst.result)
            if "result" in info:
                info["result"] = inst.result
        inst.lease_expires_at = None
        self._transition(inst, outcome.state, now, events, info)
        if requeue:
            due = outcome.retry_at or now
            if outcome.state is not State.SCHEDULED:
                self._transition(
                    inst, State.SCHEDULED, now, events, {"reason": "retry", "due": due.isoformat()}
                )
            inst.scheduled_at = due
            if inst.cancel_requested:
                # The cancel request was not honoured by the attempt: it applies now that
                # the instance is queued, as it would to any queued instance.
                inst.canceled_at = now
                self._transition(inst, State.CANCELED, now, events, {"reason": "canceled"})
            else:
                self._enqueue(inst, now)
                events.append(self._due_event(due, inst.kind))
        return _detach(inst) if returning else None

    async def request_cancel(self, query: InstanceQuery) -> list[Instance]:
        await trio.lowlevel.checkpoint()
        now = self.clock.now()
        events: list[Event] = []
        matched: list[Instance] = []
        for inst in self._select(query, active_only=True):
            if inst.state in (State.CREATED, State.SCHEDULED):
                self._queued.pop(inst.uuid, None)
                inst.canceled_at = now
                self._transition(inst, State.CANCELED, now, events, {"reason": "canceled"})
            elif inst.state is State.PROCESSING:
                inst.cancel_requested = True
                inst.updated_at = now
                events.append(Event(EventType.CANCEL, inst.uuid, inst.kind, None, inst.node_id))
            matched.append(_detach(inst))
        self._emit(events)
        return matched

    async def reap_expired(self) -> list[Instance]:
        await trio.lowlevel.checkpoint()
        now = self.clock.now()
        events: list[Event] = []
        reaped: list[Instance] = []
        for token, uuid in list(self._running.items()):
            inst = self._instances.get(uuid)
            if inst is None or inst.claim_token != token:
                del self._running[token]
                continue
            if inst.state is not State.PROCESSING:
                continue
            if inst.lease_expires_at is None or inst.lease_expires_at >= now:
                continue
            del self._running[token]
            node = inst.node_id
            inst.claim_token = None
            inst.lease_expires_at = None
            if inst.cancel_requested:
                inst.canceled_at = now
                self._transition(
                    inst, State.CANCELED, now, events, {"reason": "abandoned", "node": node}
                )
            elif inst.rescues >= inst.policy.max_rescues:
                inst.terminated_at = now
                inst.error_message = f"abandoned by node {node}; rescue limit reached"
                inst.error_type = "Abandoned"
                self._transition(
                    inst,
                    State.TERMINATED,
                    now,
                    events,
                    {"reason": "abandoned", "node": node, "error": inst.error_message},
                )
            else:
                inst.rescues += 1
                self._transition(
                    inst, State.TERMINATED, now, events, {"reason": "abandoned", "node": node}
                )
                inst.scheduled_at = now
                self._transition(inst, State.SCHEDULED, now, events, {"reason": "rescue"})
                self._enqueue(inst, now)
                events.append(self._due_event(now, inst.kind))
            reaped.append(_detach(inst))
        self._emit(events)
        return reaped

    async def requeue(self, uuid: str, due: datetime) -> Instance:
        await trio.lowlevel.checkpoint()
        inst = self._instances.get(uuid)
        if inst is None:
            raise InstanceNotFound(uuid)
        if inst.state not in FINAL:
            raise InvalidTransition(f"instance {uuid} is {inst.state.value}, not final")
        if inst.dedupe_key is not None:
            holder = self._dedupe.get(inst.dedupe_key)
            if holder is not None and holder != uuid:
                raise InvalidTransition(
                    f"another instance ({holder}) holds dedupe key {inst.dedupe_key!r}"
                )
            self._dedupe[inst.dedupe_key] = uuid
        now = self.clock.now()
        events: list[Event] = []
        # A final instance may be requeued by an operator whatever its final state:
        # record it as a new Scheduled entry rather than through the retry table.
        inst.state = State.SCHEDULED
        inst.failures = 0
        inst.rescues = 0
        inst.cancel_requested = False
        inst.scheduled_at = due
        inst.updated_at = now
        self._record(inst, State.SCHEDULED, now, {"reason": "requeued", "due": due.isoformat()})
        if self._wants(State.SCHEDULED):
            events.append(Event(EventType.STATE, inst.uuid, inst.kind, State.SCHEDULED))
        self._enqueue(inst, now)
        events.append(self._due_event(due, inst.kind))
        self._emit(events)
        return _detach(inst)

    # -- lookups ------------------------------------------------------------------
    def _select(self, query: InstanceQuery, *, active_only: bool = False) -> list[Instance]:
        if query.uuid is not None:
            one = self._instances.get(query.uuid)
            candidates = [one] if one is not None else []
        elif query.uuids is not None:
            wanted = dict.fromkeys(query.uuids)  # each instance once, however often named
            candidates = [self._instances[u] for u in wanted if u in self._instances]
        else:
            candidates = list(self._instances.values())
        return [
            i for i in candidates if query.matches(i) and not (active_only and i.state in FINAL)
        ]

    async def get(self, uuid: str) -> Instance | None:
        await _cancel_point()
        inst = self._instances.get(uuid)
        return None if inst is None else _detach(inst)

    async def lookup_instances(self, query: InstanceQuery) -> list[Instance]:
        await trio.lowlevel.checkpoint()
        found = self._select(query)
        attr = query.order_by
        epoch = datetime.min.replace(tzinfo=self.clock.now().tzinfo)
        found.sort(key=lambda i: (getattr(i, attr) or epoch, i.uuid), reverse=query.descending)
        return [_detach(i) for i in _page(found, query.limit, query.offset)]

    async def counts(self) -> dict[tuple[str, State], int]:
        await trio.lowlevel.checkpoint()
        result: dict[tuple[str, State], int] = defaultdict(int)
        for inst in self._instances.values():
            result[(inst.kind, inst.state)] += 1
        return dict(result)

    async def history(self, query: HistoryQuery) -> list[HistoryRecord]:
        await trio.lowlevel.checkpoint()
        if query.uuid is not None:
            rows = self._history.get(query.uuid, ())
            pool = [HistoryRecord(query.uuid, *row) for row in rows]
        else:
            pool = [HistoryRecord(u, *row) for u, rows in self._history.items() for row in rows]
        found = [r for r in pool if query.matches(r)]
        found.sort(key=lambda r: (r.timestamp, r.seq), reverse=query.descending)
        return [_copy_history(r) for r in _page(found, query.limit, query.offset)]

    async def logs(self, query: LogQuery) -> list[LogRecord]:
        await trio.lowlevel.checkpoint()
        if query.uuid is not None:
            pool: list[LogRecord] = list(self._logs.get(query.uuid, ()))
        else:
            pool = [r for records in self._logs.values() for r in records]
        found = [r for r in pool if query.matches(r)]
        found.sort(key=lambda r: (r.timestamp, r.seq), reverse=query.descending)
        return [_copy_log(r) for r in _page(found, query.limit, query.offset)]

    async def append_logs(self, records: Sequence[LogRecord]) -> None:
        await trio.lowlevel.checkpoint()
        events: dict[str, Event] = {}
        for rec in records:
            stored = _copy_log(rec)
            stored.seq = next(self._seq)
            self._logs[rec.uuid].append(stored)
            events.setdefault(rec.uuid, Event(EventType.LOG, rec.uuid, rec.kind))
        self._emit(list(events.values()))

    # -- schedules ----------------------------------------------------------------
    async def put_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        await trio.lowlevel.checkpoint()
        now = self.clock.now()
        existing = self._schedules.get(record.id)
        if existing is not None and existing.same_definition(record):
            return existing.copy()
        stored = record.copy()
        stored.created_at = existing.created_at if existing is not None else now
        stored.updated_at = now
        if existing is not None:
            stored.paused = existing.paused
            stored.fired_count = existing.fired_count
            stored.skipped_count = existing.skipped_count
            stored.recent_skips = list(existing.recent_skips)
            stored.last_fire_at = existing.last_fire_at
            stored.last_instance = existing.last_instance
        self._schedules[record.id] = stored
        self._emit([Event(EventType.SCHEDULE, schedule_id=record.id, due=stored.next_fire_at)])
        return stored.copy()

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        await trio.lowlevel.checkpoint()
        found = self._schedules.get(schedule_id)
        return None if found is None else found.copy()

    async def list_schedules(self, kind: str | None = None) -> list[ScheduleRecord]:
        await trio.lowlevel.checkpoint()
        return [
            s.copy() for _, s in sorted(self._schedules.items()) if kind is None or s.kind == kind
        ]

    async def set_schedule_paused(
        self, schedule_id: str, paused: bool, next_fire_at: datetime | None = None
    ) -> ScheduleRecord:
        await trio.lowlevel.checkpoint()
        found = self._schedules.get(schedule_id)
        if found is None:
            raise ScheduleNotFound(schedule_id)
        found.paused = paused
        if next_fire_at is not None:
            found.next_fire_at = next_fire_at
        found.updated_at = self.clock.now()
        self._emit([Event(EventType.SCHEDULE, schedule_id=schedule_id, due=found.next_fire_at)])
        return found.copy()

    async def delete_schedule(self, schedule_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        existed = self._schedules.pop(schedule_id, None) is not None
        if existed:
            self._emit([Event(EventType.SCHEDULE, schedule_id=schedule_id)])
        return existed

    # -- nodes --------------------------------------------------------------------
    async def heartbeat(self, node: NodeRecord, ttl: float) -> NodeRecord:
        await trio.lowlevel.checkpoint()
        now = self.clock.now()
        stored = node.copy()
        stored.last_seen = now
        stored.expires_at = now + timedelta(seconds=ttl)
        self._nodes[node.node_id] = stored
        return stored.copy()

    async def nodes(self) -> list[NodeRecord]:
        await trio.lowlevel.checkpoint()
        now = self.clock.now()
        for node_id in [n.node_id for n in self._nodes.values() if n.expires_at <= now]:  # type: ignore[operator]
            del self._nodes[node_id]
        return [n.copy() for _, n in sorted(self._nodes.items())]

    async def remove_node(self, node_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        return self._nodes.pop(node_id, None) is not None

    async def fire_schedule(
        self,
        schedule_id: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        instances: Sequence[Instance],
        skipped: Sequence[tuple[datetime, str]] = (),
        skipped_count: int = 0,
    ) -> list[Instance] | None:
        await trio.lowlevel.checkpoint()
        found = self._schedules.get(schedule_id)
        if found is None or found.paused or found.next_fire_at != expected_next_fire_at:
            return None
        now = self.clock.now()
        events: list[Event] = []
        added = [
            _detach(self._insert(inst, now, events))
            for inst in keyed_by_slot(schedule_id, instances)
        ]
        record_fire(found, added, now, next_fire_at, skipped, skipped_count)
        if added:
            events.append(self._due_event(min(i.scheduled_at or now for i in added), found.kind))
        self._emit(events)
        return added

    # -- retention and notifications -----------------------------------------------
    async def prune(self, before: datetime) -> PruneResult:
        await trio.lowlevel.checkpoint()
        removed = [
            uuid
            for uuid, inst in self._instances.items()
            if inst.state in FINAL and _final_since(inst, before) < before
        ]
        history = logs = 0
        for uuid in removed:
            del self._instances[uuid]
            history += len(self._history.pop(uuid, ()))
            logs += len(self._logs.pop(uuid, ()))
        for uuid, records in list(self._history.items()):
            kept = [r for r in records if r[2] >= before]
            history += len(records) - len(kept)
            self._history[uuid] = kept
        for uuid, log_records in list(self._logs.items()):
            kept_logs = [r for r in log_records if r.timestamp >= before]
            logs += len(log_records) - len(kept_logs)
            self._logs[uuid] = kept_logs
        return PruneResult(len(removed), history, logs)

    def subscribe(self, *, states: Collection[State] | None = None) -> _SubscriptionContext:
        return _SubscriptionContext(self, None if states is None else frozenset(states))


class _SubscriptionContext:
    def __init__(self, store: MemoryStore, states: frozenset[State] | None) -> None:
        self._store = store
        self._sub = _MemorySubscription(states)

    async def __aenter__(self) -> Subscription:
        self._store._subscribers.append(self._sub)
        self._store._subscribers_changed()
        return self._sub

    async def __aexit__(self, *exc_info: object) -> None:
        self._store._subscribers.remove(self._sub)
        self._store._subscribers_changed()


def _page(items: list[Any], limit: int | None, offset: int) -> list[Any]:
    limit = DEFAULT_LIMIT if limit is None else limit
    return items[offset : offset + limit]


_CONTAINERS = (list, dict)


def _check_outcome(outcome: Outcome) -> None:
    check_transition(State.PROCESSING, outcome.state)
    if outcome.retry_at is not None and outcome.state is not State.SCHEDULED:
        check_transition(outcome.state, State.SCHEDULED)


def _detach(inst: Instance) -> Instance:
    """A snapshot sharing no list or dict with ``inst`` (args, kwargs, result).

    ``Instance.snapshot`` shares them; a caller changing them in place (an executor
    appending to its argument list) would change what is stored. Inlined: it runs
    several times per job.
    """
    clone = object.__new__(Instance)
    data = clone.__dict__
    data.update(inst.__dict__)
    data["_sink"] = None
    args = data["args"]
    data["args"] = [copy_json(v) if type(v) in _CONTAINERS else v for v in args] if args else []
    kwargs = data["kwargs"]
    data["kwargs"] = (
        {k: copy_json(v) if type(v) in _CONTAINERS else v for k, v in kwargs.items()}
        if kwargs
        else {}
    )
    if type(data["result"]) in _CONTAINERS:
        data["result"] = copy_json(data["result"])
    return clone


def _final_since(inst: Instance, default: datetime) -> datetime:
    """When a final instance reached its final state: the latest of its end times.

    (Not ``Instance.finished_at``, the first one set: an instance that failed, was
    retried and then canceled keeps the time of its earlier failure too.)
    """
    ends = [
        t
        for t in (inst.completed_at, inst.terminated_at, inst.canceled_at, inst.timed_out_at)
        if t is not None
    ]
    return max(ends) if ends else inst.updated_at or default


_Row = tuple[str, State, datetime, int, dict[str, Any], int]
"""A stored history record: (kind, state, timestamp, attempt, details, seq)."""

_EMPTY_ARGS: list[Any] = []

_NO_DETAILS: dict[str, Any] = {}
"""Shared by records without details: stored rows are never changed, and readers get
copies (``_copy_history``)."""


def _copy_history(rec: HistoryRecord) -> HistoryRecord:
    return HistoryRecord(
        rec.uuid, rec.kind, rec.state, rec.timestamp, rec.attempt, copy_json(rec.details), rec.seq
    )


def _copy_log(rec: LogRecord) -> LogRecord:
    return LogRecord(
        rec.uuid, rec.kind, rec.timestamp, rec.level, rec.message, rec.attempt, rec.logger, rec.seq
    )
