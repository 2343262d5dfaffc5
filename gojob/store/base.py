"""The Store contract: persistence and coordination for gojob.

Every backend (memory, SQL, Redis, etcd) implements :class:`Store` with exactly
the semantics written here; ``tests/store/`` checks them against every backend.
Implementations document only their deviations.

Semantics shared by all methods
-------------------------------
* **Atomicity.** Each state change is written together with its history
  record(s) in one store transaction: nobody ever observes one without the other.
* **Clock.** Due times and leases are judged by the store's own clock (database
  ``now()``, Redis ``TIME``...), never by a node's; :meth:`Store.now` reads it.
* **Ordering.** Claims take due instances by ``priority`` (lower first), then
  ``scheduled_at`` (earlier first), then insertion order.
* **Claim tokens and fencing.** Every claim issues a fresh token. A write on
  behalf of an attempt (:meth:`finish`, :meth:`extend_leases`) succeeds only while
  that token still holds the instance's lease, so a node that was reaped or
  restarted can never commit a stale attempt.
* **Snapshots.** Instances and records returned are copies: changing them changes
  nothing stored.
* **Cancellation.** Methods may be cancelled by Trio at any checkpoint; a write is
  then either fully done or not done at all.
* **Errors.** Driver failures are raised as :class:`~gojob.errors.StoreError`
  (:class:`~gojob.errors.StoreUnavailable` when the store cannot be reached).
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, NamedTuple

from ..errors import LeaseLost, StoreError
from ..instance import HistoryRecord, Instance, LogLevel, LogRecord
from ..policy import Policy
from ..schedule import Misfire, Overlap, Trigger
from ..state import State

__all__ = [
    "DEFAULT_LIMIT",
    "Event",
    "EventType",
    "Handover",
    "HistoryQuery",
    "InstanceQuery",
    "LeaseReply",
    "LogQuery",
    "NodeRecord",
    "Outcome",
    "PruneResult",
    "ScheduleRecord",
    "Store",
    "Subscription",
]

DEFAULT_LIMIT = 1000
"""Lookups without an explicit ``limit`` return at most this many rows."""


class Handover(list["Instance"]):
    """New instances handed over to :meth:`Store.add` (or ``add_and_claim``) by a caller
    that will never touch these objects again, as the manager does with what it builds
    in ``schedule`` and ``schedule_many``: the store may update them and return them as
    its snapshots instead of copies. Any other sequence is copied, never changed.

    Why: copying each instance of a large enqueue (two objects more per job for the
    garbage collector to track) was a fifth of the client's time per enqueued job on
    PostgreSQL. Stores that copy anyway ignore it; a plain list behaves as before."""

    __slots__ = ()


# -- queries ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InstanceQuery:
    """Which instances to look up. Unset fields do not filter.

    Time bounds are inclusive below and exclusive above (``after <= t < before``)
    and apply to ``created_at``. ``limit=None`` means :data:`DEFAULT_LIMIT`.
    """

    uuid: str | None = None
    uuids: Collection[str] | None = None
    kind: str | None = None
    states: Collection[State] | None = None
    schedule_id: str | None = None
    dedupe_key: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    order_by: Literal["created_at", "scheduled_at", "updated_at"] = "created_at"
    descending: bool = False
    limit: int | None = None
    offset: int = 0

    def matches(self, inst: Instance) -> bool:
        """The filter as a predicate (stores that filter in Python use it)."""
        if self.uuid is not None and inst.uuid != self.uuid:
            return False
        if self.uuids is not None and inst.uuid not in self.uuids:
            return False
        if self.kind is not None and inst.kind != self.kind:
            return False
        if self.states is not None and inst.state not in self.states:
            return False
        if self.schedule_id is not None and inst.schedule_id != self.schedule_id:
            return False
        if self.dedupe_key is not None and inst.dedupe_key != self.dedupe_key:
            return False
        created = inst.created_at
        if self.after is not None and (created is None or created < self.after):
            return False
        return not (self.before is not None and (created is None or created >= self.before))


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """Which history records to return, oldest first unless ``descending``.

    Time bounds apply to the record's ``timestamp``; ``states`` matches the state
    of the record itself (not states the instance was ever in).
    """

    uuid: str | None = None
    kind: str | None = None
    states: Collection[State] | None = None
    after: datetime | None = None
    before: datetime | None = None
    descending: bool = False
    limit: int | None = None
    offset: int = 0

    def matches(self, rec: HistoryRecord) -> bool:
        if self.uuid is not None and rec.uuid != self.uuid:
            return False
        if self.kind is not None and rec.kind != self.kind:
            return False
        if self.states is not None and rec.state not in self.states:
            return False
        if self.after is not None and rec.timestamp < self.after:
            return False
        return not (self.before is not None and rec.timestamp >= self.before)


@dataclass(frozen=True, slots=True)
class LogQuery:
    """Which log records to return, oldest first unless ``descending``.

    ``min_level`` keeps records at or above a level; ``levels`` keeps exactly those.
    """

    uuid: str | None = None
    kind: str | None = None
    min_level: LogLevel | None = None
    levels: Collection[LogLevel] | None = None
    after: datetime | None = None
    before: datetime | None = None
    descending: bool = False
    limit: int | None = None
    offset: int = 0

    def matches(self, rec: LogRecord) -> bool:
        if self.uuid is not None and rec.uuid != self.uuid:
            return False
        if self.kind is not None and rec.kind != self.kind:
            return False
        if self.min_level is not None and rec.level < self.min_level:
            return False
        if self.levels is not None and rec.level not in self.levels:
            return False
        if self.after is not None and rec.timestamp < self.after:
            return False
        return not (self.before is not None and rec.timestamp >= self.before)


# -- finishing an attempt ---------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """How an attempt ended, as the finishing node decided it.

    ``state`` is the attempt's result: ``COMPLETED``, ``TERMINATED``, ``TIMEDOUT``,
    ``CANCELED``, or ``SCHEDULED`` for an attempt that ends without a verdict (a
    ``Retry`` signal, a release at shutdown or shrink). For a failed attempt with
    retries left, ``retry_at`` is set: the store records the failure in the history,
    then moves the instance to ``SCHEDULED`` due at ``retry_at``.
    """

    state: State
    result: Any = None
    error_message: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    retry_at: datetime | None = None
    reason: str | None = None
    worker: str | None = None
    counts_as_failure: bool = False
    """True for a failed attempt (adds one to ``failures``)."""


@dataclass(frozen=True, slots=True)
class LeaseReply:
    """Answer to :meth:`Store.extend_leases`."""

    extended: frozenset[str] = frozenset()
    """Tokens whose lease was extended."""
    lost: frozenset[str] = frozenset()
    """Tokens that no longer hold a lease: stop the attempt, do not finish it."""
    cancel_requested: frozenset[str] = frozenset()
    """Tokens (among ``extended``) whose instance has a pending cancel request."""


@dataclass(frozen=True, slots=True)
class PruneResult:
    instances: int = 0
    history: int = 0
    logs: int = 0


# -- schedules --------------------------------------------------------------------------


@dataclass(slots=True)
class ScheduleRecord:
    """A stored recurring schedule.

    ``id`` is deterministic (given by the user, or derived from kind, trigger and
    arguments), so every node declaring the same schedule at start-up yields one.
    ``next_fire_at`` is the cursor: the first slot not yet handled.
    """

    id: str
    kind: str
    trigger: Trigger
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    overlap: Overlap = Overlap.ALLOW
    misfire: Misfire = Misfire.CATCH_UP_ONCE
    misfire_cap: int = 100
    misfire_grace: float = 5.0
    jitter: float = 0.0
    """Up to this many seconds are added to each fire time (the slot key stays the slot)."""
    paused: bool = False
    next_fire_at: datetime | None = None
    last_fire_at: datetime | None = None
    last_instance: str | None = None
    fired_count: int = 0
    skipped_count: int = 0
    recent_skips: list[tuple[datetime, str]] = field(default_factory=list)
    """The latest skipped slots (at most 100) with the reason: ``misfire`` or ``overlap``."""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def same_definition(self, other: ScheduleRecord) -> bool:
        """True when ``other`` declares the same schedule (cursor and stats aside)."""
        return (
            self.kind == other.kind
            and trigger_definition(self.trigger) == trigger_definition(other.trigger)
            and self.args == other.args
            and self.kwargs == other.kwargs
            and self.policy == other.policy
            and self.overlap == other.overlap
            and self.misfire == other.misfire
            and self.misfire_cap == other.misfire_cap
            and self.misfire_grace == other.misfire_grace
            and self.jitter == other.jitter
        )

    def copy(self) -> ScheduleRecord:
        clone = ScheduleRecord(self.id, self.kind, self.trigger)
        for name in self.__slots__:
            setattr(clone, name, getattr(self, name))
        clone.args = copy_json(self.args)
        clone.kwargs = copy_json(self.kwargs)
        clone.recent_skips = list(self.recent_skips)
        return clone


# -- nodes ------------------------------------------------------------------------------


@dataclass(slots=True)
class NodeRecord:
    """A live manager process, as it last announced itself (:meth:`Store.heartbeat`).

    A node is *alive* until ``expires_at``; one that stops announcing itself (killed,
    partitioned) drops out of :meth:`Store.nodes` when it expires. ``last_seen`` and
    ``expires_at`` are set by the store, on its own clock.
    """

    node_id: str
    kinds: list[str] = field(default_factory=list)
    """The job kinds registered on the node (what it can run)."""
    workers: int = 0
    host: str = ""
    pid: int = 0
    version: str = ""
    started_at: datetime | None = None
    last_seen: datetime | None = None
    expires_at: datetime | None = None

    def copy(self) -> NodeRecord:
        clone = NodeRecord(self.node_id)
        for name in self.__slots__:
            setattr(clone, name, getattr(self, name))
        clone.kinds = list(self.kinds)
        return clone


# -- notifications ----------------------------------------------------------------------


class EventType(enum.Enum):
    DUE = "due"
    """Work may be due (``due`` says when, if known)."""
    CANCEL = "cancel"
    """A running instance has a cancel request (``node_id`` runs it)."""
    STATE = "state"
    """An instance changed state (``state`` is the new one)."""
    LOG = "log"
    """Log records were appended for ``uuid``."""
    SCHEDULE = "schedule"
    """A schedule was added, changed, paused, resumed or deleted."""
    RESYNC = "resync"
    """Notifications may have been lost (reconnect): consumers must catch up by querying."""


class Event(NamedTuple):
    """One notification (a NamedTuple: built on every transition, so it must be cheap)."""

    type: EventType
    uuid: str | None = None
    kind: str | None = None
    state: State | None = None
    node_id: str | None = None
    due: datetime | None = None
    schedule_id: str | None = None


class Subscription(abc.ABC):
    """An open stream of notification batches: ``async for batch in sub``.

    Batches are non-empty lists of events in the order the store emitted them.
    Notifications are best effort: a consumer that must not miss a change also
    queries the store when it receives a ``RESYNC`` event.
    """

    def __aiter__(self) -> AsyncIterator[list[Event]]:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> list[Event]: ...


# -- the contract -------------------------------------------------------------------------


class Store(abc.ABC):
    """Persistence and coordination for instances, history, logs and schedules.

    A store is opened with ``async with store:``; entering it more than once is
    allowed (nested users share it) and only the last exit closes it. A store
    built from a URL owns its connections; a store given a client closes only what
    it created.
    """

    name: str = "store"
    preferred_prefetch: int = 0
    """How many attempts a manager claims beyond its free workers while the queue has a
    backlog, unless told otherwise: stores whose claim is a network round trip prefer
    batches worth the trip."""

    # lifecycle
    @abc.abstractmethod
    async def __aenter__(self) -> Store: ...

    @abc.abstractmethod
    async def __aexit__(self, *exc_info: object) -> None: ...

    @abc.abstractmethod
    async def now(self) -> datetime:
        """The store's clock (aware UTC): the time leases and due times are judged by."""

    # queue
    @abc.abstractmethod
    async def add(self, instances: Sequence[Instance]) -> list[Instance]:
        """Insert new instances as ``SCHEDULED`` (history: Created, Scheduled), in one transaction.

        Each given instance has state ``CREATED``, a fresh uuid and ``scheduled_at``
        set (an unset ``created_at`` is set to ``now()``). An instance with a
        ``dedupe_key`` for which a non-final instance exists is not inserted: the
        existing one is returned in its place (so the result has one entry per given
        instance, in order). Returns snapshots after the write: copies, unless
        ``instances`` is a :class:`Handover`, whose objects a store may return instead.
        """

    @abc.abstractmethod
    async def claim(
        self,
        node_id: str,
        kinds: Collection[str] | None,
        limit: int,
        lease: float,
    ) -> list[Instance]:
        """Move up to ``limit`` due instances of ``kinds`` (``None``: any) to ``PROCESSING``.

        Due means ``scheduled_at <= now()``. Order: priority, then due time. Each
        claimed instance gets a fresh ``claim_token``, ``node_id``, ``attempts + 1``,
        ``processed_at`` and ``lease_expires_at = now() + lease`` seconds, with its
        Processing history record, atomically; no instance is ever claimed by two
        callers. Instances with a pending cancel request are never claimed.
        """

    async def add_and_claim(
        self,
        instances: Sequence[Instance],
        node_id: str,
        kinds: Collection[str] | None,
        limit: int,
        lease: float,
    ) -> tuple[list[Instance], list[Instance]]:
        """:meth:`add` ``instances``, then :meth:`claim` for ``node_id``, in one call:
        returns ``(added, claimed)``. The claim follows the usual order, so it takes older
        due work before what was just added. For a node that enqueues work it can run
        now: a store may fuse the two (one round trip). The add is done whatever becomes
        of the claim: a claim that fails claims nothing (``claimed`` is empty; the
        instances wait in the queue), it never undoes the add or raises.

        This default runs the two calls in turn."""
        added = await self.add(instances)
        try:
            claimed = await self.claim(node_id, kinds, limit, lease)
        except StoreError:
            claimed = []
        return added, claimed

    @abc.abstractmethod
    async def next_due(self, kinds: Collection[str] | None) -> datetime | None:
        """Earliest ``scheduled_at`` among ``SCHEDULED`` instances of ``kinds``, or None."""

    @abc.abstractmethod
    async def extend_leases(
        self, node_id: str, tokens: Collection[str], lease: float
    ) -> LeaseReply:
        """Extend to ``now() + lease`` every lease still held by these tokens, in one batch.

        A token whose lease has expired (even if not reaped yet) is ``lost``. The
        reply also names the tokens whose instance has a pending cancel request.
        """

    async def finish(self, token: str, outcome: Outcome) -> Instance:
        """Record the end of the attempt holding ``token``: transition plus history, atomically.

        Fencing: if the token does not hold an unexpired lease, raise
        :class:`~gojob.errors.LeaseLost` and change nothing. Idempotence: repeating
        a finish that already succeeded with this token returns the instance
        unchanged (until the instance is claimed again: then the old token gets
        LeaseLost). A failed outcome with ``retry_at`` records the failure, then
        ``SCHEDULED``; ``outcome.state == SCHEDULED`` returns it to the queue
        (history ``Scheduled`` with ``reason``), due at ``retry_at`` or now. If a
        cancel was requested, an outcome that would return the instance to the queue
        cancels it instead, after the outcome's records (history ``Canceled``), as
        :meth:`request_cancel` does to queued instances. An outcome the transition
        table forbids (``PROCESSING``, or ``retry_at`` with ``COMPLETED``) raises
        InvalidTransition and changes nothing. Returns the instance after the write.
        """
        (result,) = await self.finish_many([(token, outcome)])
        if isinstance(result, LeaseLost):
            raise result
        assert result is not None
        return result

    @abc.abstractmethod
    async def finish_many(
        self, items: Sequence[tuple[str, Outcome]], *, returning: bool = True
    ) -> list[Instance | LeaseLost | None]:
        """Finish several attempts in one write (batch acknowledgement).

        Each ``(token, outcome)`` is judged and applied exactly as :meth:`finish`
        would, in order, and its result is in the same place of the returned list: the
        instance after the write, or a :class:`~gojob.errors.LeaseLost` (not raised)
        for a refused token, which changes nothing and does not affect the others. If
        any outcome is one the transition table forbids, InvalidTransition is raised
        before anything is written. With ``returning=False`` a successful item comes
        back as ``None`` (the store need not read or copy the instance back).
        """

    @abc.abstractmethod
    async def request_cancel(self, query: InstanceQuery) -> list[Instance]:
        """Cancel the non-final instances matching ``query``.

        Queued ones (``CREATED``/``SCHEDULED``) become ``CANCELED`` at once (with
        history); running ones are flagged ``cancel_requested`` and a ``CANCEL``
        event names their node, which cancels the attempt and finishes it
        ``CANCELED``. Every match is canceled: the query's ``limit``, ``offset`` and
        order do not apply. Returns the matched instances after the change.
        """

    @abc.abstractmethod
    async def reap_expired(self) -> list[Instance]:
        """Return instances whose lease expired (their node died) to the queue.

        For each: a ``TERMINATED`` history record with ``reason: abandoned``, then
        ``rescues + 1`` and ``SCHEDULED`` due now, or ``TERMINATED`` (final) when
        ``rescues`` would exceed ``policy.max_rescues``, or ``CANCELED`` when a
        cancel was requested. The claim token is cleared, so the old attempt is
        fenced off. Returns the reaped instances after the change.
        """

    @abc.abstractmethod
    async def requeue(self, uuid: str, due: datetime) -> Instance:
        """Run a final instance again: back to ``SCHEDULED`` at ``due`` with its
        failure count reset (history ``Scheduled`` with ``reason: requeued``).
        Raises InstanceNotFound, or InvalidTransition if it is not final or if
        another non-final instance holds its ``dedupe_key``."""

    # lookups
    @abc.abstractmethod
    async def get(self, uuid: str) -> Instance | None:
        """The instance with this uuid, or None."""

    @abc.abstractmethod
    async def lookup_instances(self, query: InstanceQuery) -> list[Instance]:
        """Instances matching ``query``, ordered by ``query.order_by`` then uuid (both
        descending when ``query.descending``)."""

    @abc.abstractmethod
    async def counts(self) -> dict[tuple[str, State], int]:
        """Number of instances per (kind, state)."""

    @abc.abstractmethod
    async def history(self, query: HistoryQuery) -> list[HistoryRecord]:
        """History records matching ``query``, by timestamp then sequence."""

    @abc.abstractmethod
    async def logs(self, query: LogQuery) -> list[LogRecord]:
        """Log records matching ``query``, by timestamp then sequence."""

    @abc.abstractmethod
    async def append_logs(self, records: Sequence[LogRecord]) -> None:
        """Append log records (batch) and emit one ``LOG`` event per instance."""

    # schedules
    @abc.abstractmethod
    async def put_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        """Upsert by id. If a schedule with this id exists with the same definition,
        it is kept as it is (cursor, paused flag, counters) and returned; a changed
        definition replaces it and takes the new record's cursor, but keeps the
        stored paused flag, counters, skips and ``created_at``. Idempotent."""

    @abc.abstractmethod
    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None: ...

    @abc.abstractmethod
    async def list_schedules(self, kind: str | None = None) -> list[ScheduleRecord]:
        """All schedules (of ``kind``), ordered by id."""

    @abc.abstractmethod
    async def set_schedule_paused(
        self, schedule_id: str, paused: bool, next_fire_at: datetime | None = None
    ) -> ScheduleRecord:
        """Pause or resume; resuming may move the cursor (slots passed while paused are not
        fired). Raises ScheduleNotFound."""

    @abc.abstractmethod
    async def delete_schedule(self, schedule_id: str) -> bool:
        """Delete; True if it existed. Instances it created are kept."""

    @abc.abstractmethod
    async def fire_schedule(
        self,
        schedule_id: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        instances: Sequence[Instance],
        skipped: Sequence[tuple[datetime, str]] = (),
        skipped_count: int = 0,
    ) -> list[Instance] | None:
        """Advance a schedule's cursor and create its instances, atomically.

        Only if the schedule exists, is not paused and its cursor still equals
        ``expected_next_fire_at`` (compare-and-set): this makes each slot fire once
        across all nodes. The instances are added as by :meth:`add` (their dedupe
        keys are ``slot_key(schedule_id, fire_time)``, set by the store when an
        instance with a ``fire_time`` comes without one); ``skipped_count`` is added
        to the schedule's and ``skipped`` appended to ``recent_skips`` (the latest 100
        kept). Returns the added instances, or None when another node got there first.
        """

    # nodes
    @abc.abstractmethod
    async def heartbeat(self, node: NodeRecord, ttl: float) -> NodeRecord:
        """Announce ``node`` as alive for ``ttl`` seconds from now (store clock): insert
        or replace its record (every field but the times is taken from ``node``), set
        ``last_seen`` to now and ``expires_at`` to now + ``ttl``. Returns the stored
        record. Idempotent: a repeated heartbeat only moves the two times."""

    @abc.abstractmethod
    async def nodes(self) -> list[NodeRecord]:
        """The nodes alive now (``expires_at`` after the store's now), by ``node_id``.
        A store may delete the expired records it meets."""

    @abc.abstractmethod
    async def remove_node(self, node_id: str) -> bool:
        """Forget a node (a clean shutdown); True if its record existed. Its claims are
        untouched: they end by their own leases."""

    # retention and notifications
    @abc.abstractmethod
    async def prune(self, before: datetime) -> PruneResult:
        """Delete final instances finished before ``before`` with their history and logs,
        and history and log records older than ``before``. An instance finished when
        it reached its final state (the latest of its end times, not an earlier
        failure that was retried)."""

    @abc.abstractmethod
    def subscribe(
        self, *, states: Collection[State] | None = None
    ) -> AbstractAsyncContextManager[Subscription]:
        """Open a notification stream (see :class:`Subscription`): every event emitted
        after it is entered is delivered to it, none emitted before.

        ``states`` is a hint: the subscriber needs ``STATE`` events only for these
        states, so a store may leave the others out (when no subscriber wants them it
        need not even build them). A store may still deliver them."""


def trigger_definition(trigger: Trigger) -> dict[str, Any]:
    """A trigger's JSON without its anchor: what makes two declarations the same."""
    data = trigger.to_json()
    data.pop("anchor", None)
    return data


def slot_key(schedule_id: str, slot: datetime) -> str:
    """The dedupe key of the instance a schedule creates for ``slot``."""
    return f"{schedule_id}@{slot.isoformat()}"


_JSON_CONTAINERS = (list, dict)


def copy_json(value: Any) -> Any:
    """A deep copy of a plain JSON value (lists and dicts copied, scalars shared).

    For stores that keep Python objects (the memory store): what they store and what
    they return must not share a list or dict with the caller's objects.
    """
    kind = type(value)
    if kind is list:
        return [copy_json(v) if type(v) in _JSON_CONTAINERS else v for v in value]
    if kind is dict:
        return {k: copy_json(v) if type(v) in _JSON_CONTAINERS else v for k, v in value.items()}
    if kind is tuple:
        return tuple(copy_json(v) for v in value)
    return value


SKIP_RECORD_LIMIT = 100
"""How many skipped slots a schedule keeps in ``recent_skips``."""


def keyed_by_slot(schedule_id: str, instances: Sequence[Instance]) -> list[Instance]:
    """The instances a schedule fires, each with its slot's dedupe key (``fire_schedule``):
    an instance without a key is copied, so the caller's is left as it was."""
    keyed = []
    for inst in instances:
        slot = inst.fire_time
        if inst.dedupe_key is None and slot is not None:
            inst = inst.snapshot()
            inst.dedupe_key = slot_key(schedule_id, slot)
        keyed.append(inst)
    return keyed


def record_fire(
    record: ScheduleRecord,
    added: Sequence[Instance],
    now: datetime,
    next_fire_at: datetime,
    skipped: Sequence[tuple[datetime, str]],
    skipped_count: int,
) -> None:
    """Apply a fire to a stored schedule: the cursor, the last fire, the counters and the
    latest skipped slots (every store's ``fire_schedule`` does exactly this)."""
    record.next_fire_at = next_fire_at
    record.updated_at = now
    if added:
        record.last_fire_at = added[-1].fire_time
        record.last_instance = added[-1].uuid
        record.fired_count += len(added)
    record.skipped_count += skipped_count
    if skipped:
        record.recent_skips = (record.recent_skips + list(skipped))[-SKIP_RECORD_LIMIT:]


def details(**values: Any) -> dict[str, Any]:
    """History details without the ``None`` values."""
    return {k: v for k, v in values.items() if v is not None}


def apply_outcome_fields(inst: Instance, outcome: Outcome, now: datetime) -> None:
    """Set the result, error and per-state timestamp fields of an outcome on ``inst``."""
    state = outcome.state
    if state is State.COMPLETED:
        inst.result = outcome.result
        inst.completed_at = now
        inst.error_message = inst.error_type = inst.traceback = None
    elif state is State.TERMINATED:
        inst.terminated_at = now
    elif state is State.TIMEDOUT:
        inst.timed_out_at = now
    elif state is State.CANCELED:
        inst.canceled_at = now
    if outcome.error_message is not None:
        inst.error_message = outcome.error_message
        inst.error_type = outcome.error_type
        inst.traceback = outcome.traceback
    if outcome.counts_as_failure:
        inst.failures += 1


def outcome_details(outcome: Outcome, node_id: str | None) -> dict[str, Any]:
    """The history details of a finished attempt (on the hot path: no kwargs detour)."""
    info: dict[str, Any] = {"node": node_id, "worker": outcome.worker}
    if outcome.state is State.COMPLETED:
        if outcome.result is not None:
            info["result"] = outcome.result
    elif outcome.error_message is not None:
        info["error"] = outcome.error_message
        info["error_type"] = outcome.error_type
        if outcome.traceback is not None:
            info["traceback"] = outcome.traceback
    if outcome.reason is not None:
        info["reason"] = outcome.reason
    return info
