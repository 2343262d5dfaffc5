"""Adding instances to the etcd store (``add``, and the instances a schedule fires).

An instance is two keys written together: its record (``i/<uuid>``, created only if
absent, so a repeated add whose answer was lost changes nothing) and its queue index
entry; a dedupe key is a third, created only if absent: when another non-final
instance holds it, that one is returned in place of the new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ...errors import StoreError
from ...instance import Instance
from ...state import FINAL, State
from ..base import Event, EventType, copy_json
from .client import cmp_create, kvs_of, op_put, op_range
from .codec import Rec, to_us
from .common import MAX_BYTES, MAX_OPS, Before, EtcdCore, detached

__all__ = ["EnqueueOps"]

_MAX_ROUNDS = 100
"""Failed compares in a row tolerated before an add gives up."""


class EnqueueOps(EtcdCore):
    """The enqueueing part of :class:`~gojob.store.etcd.EtcdStore`."""

    _known_kinds: set[str]
    """Kinds this store wrote a ``K/`` key for (``claim(kinds=None)`` lists them)."""

    # -- add -----------------------------------------------------------------------------------
    async def add(self, instances: Sequence[Instance]) -> list[Instance]:
        added = await self._insert(instances, self.clock.now())
        assert added is not None
        return added

    def _new_rec(self, given: Instance, now: datetime) -> Rec:
        inst = given.snapshot()
        inst.args = copy_json(inst.args) if inst.args else []
        inst.kwargs = copy_json(inst.kwargs) if inst.kwargs else {}
        inst.created_at = inst.created_at or now
        inst.scheduled_at = inst.scheduled_at or now
        inst.updated_at = now
        inst.state = State.CREATED
        rec = Rec(inst, [], None)
        rec.record(State.CREATED, now, self._next_seq(), None)
        inst.state = State.SCHEDULED
        rec.record(State.SCHEDULED, now, self._next_seq(), {"due": inst.scheduled_at.isoformat()})
        return rec

    async def _insert(
        self,
        instances: Sequence[Instance],
        now: datetime,
        guard: tuple[list[dict[str, Any]], list[dict[str, Any]]] | None = None,
    ) -> list[Instance] | None:
        """Add instances as :meth:`add` does, in transactions of at most ``MAX_OPS``.

        ``guard`` (compares, operations) goes with the first transaction (a schedule's
        compare-and-set): when its compares fail, nothing is added and None is returned.
        """
        keys = self.keys
        now_us = to_us(now)
        results: list[Instance | None] = [None] * len(instances)
        aliases: dict[int, int] = {}
        first_of_key: dict[str, int] = {}
        pending: list[int] = []
        recs: dict[int, Rec] = {}
        for i, given in enumerate(instances):
            key = given.dedupe_key
            if key is not None:
                if key in first_of_key:
                    aliases[i] = first_of_key[key]
                    continue
                first_of_key[key] = i
            pending.append(i)
            recs[i] = self._new_rec(given, now)
        rounds = 0
        while pending:
            rounds += 1
            if rounds > _MAX_ROUNDS:
                raise StoreError("etcd add: too much contention on dedupe keys")
            compares: list[dict[str, Any]] = []
            ops: list[dict[str, Any]] = []
            failure: list[dict[str, Any]] = []
            events: list[Event] = []
            size = 0
            taken: list[int] = []
            new_kinds: set[str] = set()
            if guard is not None:
                compares += guard[0]
                ops += guard[1]
            for i in pending:
                rec = recs[i]
                inst = rec.inst
                cmp, rec_ops, text = self._write_ops(rec, Before(State.CREATED, ()), now_us)
                extra = 1 if inst.dedupe_key is not None else 0
                kind_op = inst.kind not in self._known_kinds and inst.kind not in new_kinds
                needed = len(rec_ops) + extra + kind_op
                if taken and (len(ops) + needed > MAX_OPS or size + 2 * len(text) > MAX_BYTES):
                    break
                taken.append(i)
                size += 2 * len(text)
                compares += cmp
                ops += rec_ops
                if kind_op:
                    new_kinds.add(inst.kind)
                    ops.append(op_put(keys.kind(inst.kind), ""))
                if inst.dedupe_key is not None:
                    dkey = keys.dedupe(inst.dedupe_key)
                    compares.append(cmp_create(dkey, 0))
                    ops.append(op_put(dkey, inst.uuid))
                    failure.append(op_range(dkey))
                events.append(Event(EventType.STATE, inst.uuid, inst.kind, State.SCHEDULED))
            first = recs[taken[0]].inst
            failure.append(op_range(keys.instance(first.uuid)))
            earliest = min(recs[i].inst.scheduled_at or now for i in taken)
            events.append(
                Event(EventType.DUE, kind=first.kind if len(taken) == 1 else None, due=earliest)
            )
            result = await self._txn(compares, ops, events, failure)
            stored_first = kvs_of(result.responses[-1]) if not result.succeeded else []
            if result.succeeded or stored_first:
                # Written (or written by an earlier try whose answer was lost).
                guard = None
                self._known_kinds |= new_kinds
                for i in taken:
                    results[i] = detached(recs[i].inst)
                if result.succeeded:
                    self._settle([recs[i] for i in taken], result.revision)
                pending = pending[len(taken) :]
                rounds = 0
                continue
            if guard is not None:
                return None  # the guard's compares (or a slot's dedupe key) failed
            # A dedupe key is held.
            holders = {kv.key: kv.value for resp in result.responses[:-1] for kv in kvs_of(resp)}
            found = await self._read_recs(holders.values())
            for i in taken:
                dedupe = recs[i].inst.dedupe_key
                if dedupe is None:
                    continue
                holder = holders.get(keys.dedupe(dedupe))
                if holder is None:
                    continue
                existing = found.get(holder)
                if existing is not None and existing.inst.state not in FINAL:
                    results[i] = detached(existing.inst)
                    pending.remove(i)
                # else: the holder just ended (its key is going): try again.
        for i, first_index in aliases.items():
            results[i] = results[first_index]
        out = [r for r in results if r is not None]
        assert len(out) == len(instances)
        return out
