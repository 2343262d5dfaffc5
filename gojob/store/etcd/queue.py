"""The etcd store's queue: add, claim, next_due, lease extension, finish, cancel, reap,
requeue. Every write is one transaction whose compares name the revisions it read
(optimistic concurrency): when another node changed something first, the transaction
fails, its failure branch returns what is stored now, and the write is decided again.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from ...errors import InstanceNotFound, InvalidTransition, LeaseLost, StoreError
from ...instance import Instance
from ...state import FINAL, State, check_transition
from ..base import (
    Event,
    EventType,
    InstanceQuery,
    LeaseReply,
    Outcome,
    apply_outcome_fields,
    outcome_details,
)
from .client import (
    KV,
    cmp_mod,
    cmp_version,
    kvs_of,
    op_delete,
    op_put,
    op_range,
    prefix_end,
)
from .codec import Rec, from_us, parse_index_value, to_us
from .common import MAX_OPS, Before, chunks, detached
from .enqueue import EnqueueOps

__all__ = ["QueueOps"]

CLAIM_BATCH = 36
"""Instances claimed per transaction (up to 3 operations each, under ``MAX_OPS``)."""
_WRITE_BATCH = 24
"""Records changed per transaction by finish, extend, cancel and reap (up to 5 ops each)."""
_MAX_ROUNDS = 100
"""Failed compares tolerated before a write gives up (only a hot contention loop gets there)."""


class QueueOps(EnqueueOps):
    """The queue half of :class:`~gojob.store.etcd.EtcdStore` (see the module docstring)."""

    reap_margin: float = 0.0

    # -- helpers -------------------------------------------------------------------------------
    def _transition(
        self,
        rec: Rec,
        state: State,
        now: datetime,
        events: list[Event],
        info: dict[str, Any] | None = None,
    ) -> None:
        inst = rec.inst
        check_transition(inst.state, state)
        inst.state = state
        inst.updated_at = now
        rec.record(state, now, self._next_seq(), info)
        events.append(Event(EventType.STATE, inst.uuid, inst.kind, state, inst.node_id))

    def _token(self, uuid: str) -> str:
        # The uuid travels in the token, so a finish finds its instance without a lookup.
        return f"{uuid}/{self._token_prefix}{self._next_seq():x}"

    _token_prefix = ""

    async def _current(self, uuids: Collection[str], fresh: dict[str, Rec]) -> dict[str, Rec]:
        """Working copies of these records: re-read ones, else this node's last known ones
        (the write's compare catches a stale one), else read now."""
        found: dict[str, Rec] = {}
        missing = []
        for uuid in uuids:
            rec = fresh.pop(uuid, None) or self._cached(uuid)
            if rec is None:
                missing.append(uuid)
            else:
                found[uuid] = rec
        if missing:
            found.update(await self._read_recs(missing))
        return found

    async def _write_recs(
        self,
        changed: list[tuple[Rec, Before]],
        events: list[Event],
        now_us: int,
    ) -> tuple[bool, dict[str, Rec]]:
        """Write changed records in one transaction. Returns (succeeded, the records as
        stored now when it failed)."""
        compares: list[dict[str, Any]] = []
        ops: list[dict[str, Any]] = []
        failure = []
        for rec, before in changed:
            cmp, rec_ops, _ = self._write_ops(rec, before, now_us)
            compares += cmp
            ops += rec_ops
            failure.append(op_range(self.keys.instance(rec.inst.uuid)))
        if not ops:
            return True, {}
        result = await self._txn(compares, ops, events, failure)
        if result.succeeded:
            self._settle([rec for rec, _ in changed], result.revision)
            return True, {}
        return False, self._recs_of(result.responses)

    # -- claim ---------------------------------------------------------------------------------
    async def _kinds(self, kinds: Collection[str] | None) -> list[str]:
        if kinds is not None:
            return list(dict.fromkeys(kinds))
        found = await self.client.scan(self.keys.kinds, keys_only=True)
        return [self.keys.kind_of(kv.key) for kv in found]

    def _claim_reads(self, kinds: list[str], limit: int, now_us: int) -> list[dict[str, Any]]:
        reads = []
        for kind in kinds:
            reads.append(
                op_range(
                    self.keys.ready_kind(kind), prefix_end(self.keys.ready_kind(kind)), limit=limit
                )
            )
            reads.append(
                op_range(
                    self.keys.waiting_kind(kind), self.keys.waiting_until(kind, now_us), limit=limit
                )
            )
        return reads

    async def _claim_read(self, kinds: list[str], limit: int, now_us: int) -> list[list[KV]]:
        responses: list[list[KV]] = []
        for part in chunks(self._claim_reads(kinds, limit, now_us), MAX_OPS):
            got, _ = await self.client.read(part)
            responses += got
        return responses

    async def claim(
        self,
        node_id: str,
        kinds: Collection[str] | None,
        limit: int,
        lease: float,
    ) -> list[Instance]:
        if limit <= 0:
            return []
        names = await self._kinds(kinds)
        if not names:
            return []
        claimed: list[Instance] = []
        while len(claimed) < limit:
            want = min(limit - len(claimed), CLAIM_BATCH)
            batch = await self._claim_batch(node_id, names, want, lease)
            claimed += batch
            if len(batch) < want:
                break
        return claimed

    async def _claim_batch(
        self, node_id: str, kinds: list[str], limit: int, lease: float
    ) -> list[Instance]:
        keys = self.keys
        responses = await self._claim_read(kinds, limit, to_us(self.clock.now()))
        for _ in range(_MAX_ROUNDS):
            now = self.clock.now()
            now_us = to_us(now)
            # Candidates: (priority, due, seq, index kv, waiting?, record text, version)
            candidates: list[tuple[int, int, int, KV, bool, str, int]] = []
            for n in range(0, len(responses), 2):
                for kv in responses[n]:
                    due, version, text = parse_index_value(kv.value)
                    _, prio_hex, _, seq_hex = kv.key.rsplit("/", 3)
                    prio = int(prio_hex, 16) - (1 << 63)
                    candidates.append((prio, due, int(seq_hex, 16), kv, False, text, version))
                for kv in responses[n + 1]:
                    due, version, text = parse_index_value(kv.value)
                    if due > now_us:
                        continue
                    prio = Rec.decode(text, 0, version).inst.policy.priority
                    seq = int(kv.key.rsplit("/", 1)[1], 16)
                    candidates.append((prio, due, seq, kv, True, text, version))
            if not candidates:
                return []
            candidates.sort(key=lambda c: c[:3])
            chosen = candidates[:limit]
            promote = [c for c in candidates[limit:] if c[4]]
            compares: list[dict[str, Any]] = []
            ops: list[dict[str, Any]] = []
            events: list[Event] = []
            recs: list[Rec] = []
            until = now + timedelta(seconds=lease)
            info = {"node": node_id}
            for _prio, _due, _seq, kv, _waiting, text, version in chosen:
                rec = Rec.decode(text, 0, version)
                inst = rec.inst
                uuid = inst.uuid
                before = self._before(rec)
                inst.state = State.PROCESSING
                inst.node_id = node_id
                inst.claim_token = self._token(uuid)
                inst.lease_expires_at = until
                inst.attempts += 1
                inst.processed_at = now
                inst.updated_at = now
                rec.record(State.PROCESSING, now, self._next_seq(), info)
                _, rec_ops, _ = self._write_ops(rec, before, now_us, index_key=kv.key)
                # The record is unchanged since its index entry was written: same version.
                compares.append(cmp_version(keys.instance(uuid), version))
                ops += rec_ops
                recs.append(rec)
                events.append(Event(EventType.STATE, uuid, inst.kind, State.PROCESSING, node_id))
            # Due waiting entries not claimed now move to the ready index, where they take
            # their place by priority.
            for c in promote:
                if len(ops) + 2 > MAX_OPS:
                    break
                kv = c[3]
                inst = Rec.decode(c[5], 0, c[6]).inst
                compares.append(cmp_mod(kv.key, kv.mod))
                ops.append(op_delete(kv.key))
                ops.append(op_put(keys.ready_key(inst.kind, c[0], c[1], c[2]), kv.value))
            # A failed claim reads again in its failure branch (when the reads fit in it).
            reads = self._claim_reads(kinds, limit, now_us)
            result = await self._txn(compares, ops, events, reads if len(reads) <= MAX_OPS else ())
            if result.succeeded:
                self._settle(recs, result.revision)
                return [detached(rec.inst) for rec in recs]
            if len(reads) <= MAX_OPS:
                responses = [kvs_of(r) for r in result.responses]
            else:
                responses = await self._claim_read(kinds, limit, to_us(self.clock.now()))
        raise StoreError("etcd claim: too much contention")

    # -- next_due ------------------------------------------------------------------------------
    async def next_due(self, kinds: Collection[str] | None) -> datetime | None:
        keys = self.keys
        if kinds is None:
            reads = [
                op_range(keys.ready, prefix_end(keys.ready), limit=1, sort_by_value=True),
                op_range(keys.waiting, prefix_end(keys.waiting), limit=1, sort_by_value=True),
            ]
        else:
            reads = []
            for kind in dict.fromkeys(kinds):
                reads.append(
                    op_range(
                        keys.ready_kind(kind),
                        prefix_end(keys.ready_kind(kind)),
                        limit=1,
                        sort_by_value=True,
                    )
                )
                reads.append(
                    op_range(keys.waiting_kind(kind), prefix_end(keys.waiting_kind(kind)), limit=1)
                )
        best: int | None = None
        for part in chunks(reads, MAX_OPS):
            responses, _ = await self.client.read(part)
            for kvs in responses:
                for kv in kvs:
                    due = int(kv.value[:16])
                    if best is None or due < best:
                        best = due
        if best is None:
            return None
        return from_us(best)

    # -- leases --------------------------------------------------------------------------------
    async def extend_leases(
        self, node_id: str, tokens: Collection[str], lease: float
    ) -> LeaseReply:
        extended: set[str] = set()
        lost: set[str] = set()
        cancel: set[str] = set()
        fresh: dict[str, Rec] = {}
        for part in chunks(list(dict.fromkeys(tokens)), _WRITE_BATCH):
            for _ in range(_MAX_ROUNDS):
                recs = await self._current({_uuid_of(t) for t in part}, fresh)
                now = self.clock.now()
                until = now + timedelta(seconds=lease)
                changed: list[tuple[Rec, Before]] = []
                outcome: dict[str, str] = {}
                for token in part:
                    rec = recs.get(_uuid_of(token))
                    if rec is None or not _holds(rec.inst, token, now):
                        outcome[token] = "lost"
                        continue
                    before = self._before(rec)
                    rec.inst.lease_expires_at = until
                    changed.append((rec, before))
                    outcome[token] = "cancel" if rec.inst.cancel_requested else "extended"
                ok, fresh = await self._write_recs(changed, [], to_us(now))
                if ok:
                    for token, verdict in outcome.items():
                        if verdict == "lost":
                            lost.add(token)
                        else:
                            extended.add(token)
                            if verdict == "cancel":
                                cancel.add(token)
                    break
            else:
                raise StoreError("etcd extend_leases: too much contention")
        return LeaseReply(frozenset(extended), frozenset(lost), frozenset(cancel))

    # -- finish --------------------------------------------------------------------------------
    async def finish_many(
        self, items: Sequence[tuple[str, Outcome]], *, returning: bool = True
    ) -> list[Instance | LeaseLost | None]:
        for _, outcome in items:
            _check_outcome(outcome)
        results: list[Instance | LeaseLost | None] = [None] * len(items)
        fresh: dict[str, Rec] = {}
        for part in chunks(list(range(len(items))), _WRITE_BATCH):
            for _ in range(_MAX_ROUNDS):
                recs = await self._current({_uuid_of(items[i][0]) for i in part}, fresh)
                now = self.clock.now()
                events: list[Event] = []
                changed: dict[str, tuple[Rec, Before]] = {}
                verdicts: dict[int, Instance | LeaseLost | None] = {}
                for i in part:
                    token, outcome = items[i]
                    uuid = _uuid_of(token)
                    rec = recs.get(uuid)
                    if rec is None or not _holds(rec.inst, token, now):
                        if (
                            rec is not None
                            and rec.inst.claim_token == token
                            and rec.inst.state is not State.PROCESSING
                        ):
                            verdicts[i] = detached(rec.inst)  # a repeated finish
                        else:
                            verdicts[i] = LeaseLost(f"claim token {token} no longer holds a lease")
                        continue
                    if uuid not in changed:
                        changed[uuid] = (rec, self._before(rec))
                    self._apply_outcome(rec, outcome, now, events)
                    verdicts[i] = rec.inst
                ok, fresh = await self._write_recs(list(changed.values()), events, to_us(now))
                if ok:
                    for i, verdict in verdicts.items():
                        if isinstance(verdict, Instance):
                            results[i] = detached(verdict) if returning else None
                        else:
                            results[i] = verdict
                    break
            else:
                raise StoreError("etcd finish: too much contention")
        return results

    def _apply_outcome(
        self, rec: Rec, outcome: Outcome, now: datetime, events: list[Event]
    ) -> None:
        inst = rec.inst
        requeue = outcome.state is State.SCHEDULED or outcome.retry_at is not None
        apply_outcome_fields(inst, outcome, now)
        info = outcome_details(outcome, inst.node_id)
        inst.lease_expires_at = None
        self._transition(rec, outcome.state, now, events, info)
        if requeue:
            due = outcome.retry_at or now
            if outcome.state is not State.SCHEDULED:
                self._transition(
                    rec, State.SCHEDULED, now, events, {"reason": "retry", "due": due.isoformat()}
                )
            inst.scheduled_at = due
            if inst.cancel_requested:
                # The request was not honoured by the attempt: it applies now that the
                # instance is queued, as it would to any queued instance.
                inst.canceled_at = now
                self._transition(rec, State.CANCELED, now, events, {"reason": "canceled"})
            else:
                events.append(Event(EventType.DUE, kind=inst.kind, due=due))

    # -- cancel --------------------------------------------------------------------------------
    async def _select(self, query: InstanceQuery) -> list[Rec]:
        """Stored records matching ``query`` (every match: no order, limit or offset)."""
        if query.uuid is not None or query.uuids is not None:
            wanted = [query.uuid] if query.uuid is not None else list(query.uuids or ())
            found = await self._read_recs(wanted)
            recs = [found[u] for u in dict.fromkeys(wanted) if u in found]
        else:
            recs = []
            for kv in await self.client.scan(self.keys.instances):
                rec = Rec.decode(kv.value, kv.mod, kv.version)
                recs.append(rec)
        return [rec for rec in recs if query.matches(rec.inst)]

    async def request_cancel(self, query: InstanceQuery) -> list[Instance]:
        recs = [r for r in await self._select(query) if r.inst.state not in FINAL]
        matched: dict[str, Instance] = {}
        order = [r.inst.uuid for r in recs]
        fresh = {r.inst.uuid: r for r in recs}
        for part in chunks(order, _WRITE_BATCH):
            for _ in range(_MAX_ROUNDS):
                current = await self._current(part, fresh)
                now = self.clock.now()
                events: list[Event] = []
                changed: list[tuple[Rec, Before]] = []
                done: list[Rec] = []
                for uuid in part:
                    rec = current.get(uuid)
                    if rec is None or rec.inst.state in FINAL or not query.matches(rec.inst):
                        continue
                    inst = rec.inst
                    before = self._before(rec)
                    if inst.state in (State.CREATED, State.SCHEDULED):
                        inst.canceled_at = now
                        self._transition(rec, State.CANCELED, now, events, {"reason": "canceled"})
                    elif inst.state is State.PROCESSING:
                        inst.cancel_requested = True
                        inst.updated_at = now
                        events.append(
                            Event(EventType.CANCEL, inst.uuid, inst.kind, None, inst.node_id)
                        )
                    changed.append((rec, before))
                    done.append(rec)
                ok, fresh = await self._write_recs(changed, events, to_us(now))
                if ok:
                    for rec in done:
                        matched[rec.inst.uuid] = detached(rec.inst)
                    break
            else:
                raise StoreError("etcd request_cancel: too much contention")
        return [matched[u] for u in order if u in matched]

    # -- reap ----------------------------------------------------------------------------------
    async def reap_expired(self) -> list[Instance]:
        now_us = to_us(self.clock.now()) - int(self.reap_margin * 1_000_000)
        running = await self.client.scan(self.keys.running)
        expired = [self.keys.uuid_of(kv.key) for kv in running if int(kv.value) < now_us]
        reaped: list[Instance] = []
        fresh = await self._read_recs(expired) if expired else {}
        for part in chunks(expired, _WRITE_BATCH):
            for _ in range(_MAX_ROUNDS):
                current = await self._current(part, fresh)
                now = self.clock.now()
                limit = now - timedelta(seconds=self.reap_margin)
                events: list[Event] = []
                changed: list[tuple[Rec, Before]] = []
                for uuid in part:
                    rec = current.get(uuid)
                    if rec is None:
                        continue
                    inst = rec.inst
                    if inst.state is not State.PROCESSING:
                        continue
                    if inst.lease_expires_at is None or inst.lease_expires_at >= limit:
                        continue
                    changed.append((rec, self._before(rec)))
                    self._abandon(rec, now, events)
                ok, fresh = await self._write_recs(changed, events, to_us(now))
                if ok:
                    reaped += [detached(rec.inst) for rec, _ in changed]
                    break
            else:
                raise StoreError("etcd reap: too much contention")
        return reaped

    def _abandon(self, rec: Rec, now: datetime, events: list[Event]) -> None:
        inst = rec.inst
        node = inst.node_id
        inst.claim_token = None
        inst.lease_expires_at = None
        if inst.cancel_requested:
            inst.canceled_at = now
            self._transition(
                rec, State.CANCELED, now, events, {"reason": "abandoned", "node": node}
            )
        elif inst.rescues >= inst.policy.max_rescues:
            inst.terminated_at = now
            inst.error_message = f"abandoned by node {node}; rescue limit reached"
            inst.error_type = "Abandoned"
            self._transition(
                rec,
                State.TERMINATED,
                now,
                events,
                {"reason": "abandoned", "node": node, "error": inst.error_message},
            )
        else:
            inst.rescues += 1
            self._transition(
                rec, State.TERMINATED, now, events, {"reason": "abandoned", "node": node}
            )
            inst.scheduled_at = now
            self._transition(rec, State.SCHEDULED, now, events, {"reason": "rescue"})
            events.append(Event(EventType.DUE, kind=inst.kind, due=now))

    # -- requeue -------------------------------------------------------------------------------
    async def requeue(self, uuid: str, due: datetime) -> Instance:
        keys = self.keys
        for _ in range(_MAX_ROUNDS):
            found = await self._read_recs([uuid])
            rec = found.get(uuid)
            if rec is None:
                raise InstanceNotFound(uuid)
            inst = rec.inst
            if inst.state not in FINAL:
                raise InvalidTransition(f"instance {uuid} is {inst.state.value}, not final")
            compares: list[dict[str, Any]] = []
            if inst.dedupe_key is not None:
                dkey = keys.dedupe(inst.dedupe_key)
                holder = await self.client.get(dkey)
                if holder is not None and holder.value != uuid:
                    raise InvalidTransition(
                        f"another instance ({holder.value}) holds dedupe key {inst.dedupe_key!r}"
                    )
                compares.append(cmp_mod(dkey, 0 if holder is None else holder.mod))
            now = self.clock.now()
            events: list[Event] = []
            before = self._before(rec)
            # An operator may requeue a final instance whatever its final state: a new
            # Scheduled entry rather than a transition of the retry table.
            inst.state = State.SCHEDULED
            inst.failures = 0
            inst.rescues = 0
            inst.cancel_requested = False
            inst.scheduled_at = due
            inst.updated_at = now
            rec.record(
                State.SCHEDULED,
                now,
                self._next_seq(),
                {"reason": "requeued", "due": due.isoformat()},
            )
            events.append(Event(EventType.STATE, uuid, inst.kind, State.SCHEDULED))
            events.append(Event(EventType.DUE, kind=inst.kind, due=due))
            cmp, ops, _ = self._write_ops(rec, before, to_us(now))
            result = await self._txn([*cmp, *compares], ops, events)
            if result.succeeded:
                self._settle([rec], result.revision)
                return detached(inst)
        raise StoreError("etcd requeue: too much contention")


def _uuid_of(token: str) -> str:
    return token.partition("/")[0]


def _holds(inst: Instance, token: str, now: datetime) -> bool:
    return (
        inst.state is State.PROCESSING
        and inst.claim_token == token
        and inst.lease_expires_at is not None
        and inst.lease_expires_at >= now
    )


def _check_outcome(outcome: Outcome) -> None:
    check_transition(State.PROCESSING, outcome.state)
    if outcome.retry_at is not None and outcome.state is not State.SCHEDULED:
        check_transition(outcome.state, State.SCHEDULED)
