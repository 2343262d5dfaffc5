"""What every part of the etcd store shares: the client, the key layout, the clock,
sequence numbers, reading instance records, and turning a record's change into the
operations of one transaction (instance key, queue index, running index, dedupe key).
"""

from __future__ import annotations

import itertools
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import trio

from ...clock import Clock
from ...instance import Instance
from ...state import FINAL, State
from ..base import Event, copy_json
from .client import (
    EtcdClient,
    TxnResult,
    cmp_create,
    cmp_mod,
    kvs_of,
    op_delete,
    op_put,
    op_range,
)
from .codec import Rec, encode_events, index_value, to_us
from .keys import Keys

__all__ = ["MAX_BYTES", "MAX_OPS", "Before", "EtcdCore", "chunks", "detached"]

MAX_OPS = 120
"""Operations per transaction: etcd refuses more than ``--max-txn-ops`` (128 by default)
in any one of a transaction's lists; one is kept for the events put."""
MAX_BYTES = 1_000_000
"""Bytes per transaction, under etcd's default ``--max-request-bytes`` (1.5 MiB)."""
_CACHE_SIZE = 20_000
_QUEUED = (State.CREATED, State.SCHEDULED)


def chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass(slots=True, frozen=True)
class Before:
    """What a record's keys looked like when it was read (to write its change)."""

    state: State
    index_keys: tuple[str, ...]
    """Its queue index key(s), when queued."""

    @property
    def final(self) -> bool:
        return self.state in FINAL


class EtcdCore:
    """State and helpers shared by the store's parts (see the module docstring)."""

    client: EtcdClient
    keys: Keys
    clock: Clock

    def _init_core(self, client: EtcdClient, keys: Keys, clock: Clock) -> None:
        self.client = client
        self.keys = keys
        self.clock = clock
        # Sequence numbers (queue order, history and log order) start at the wall clock
        # in µs, so a restarted node keeps counting upwards, and nodes roughly agree.
        self._seq = itertools.count(time.time_ns() // 1000)
        self._cache: OrderedDict[str, tuple[str, int, int]] = OrderedDict()
        """uuid -> (record text, mod_revision, version) as this node last wrote or read
        it: finishes and lease extensions compare against it instead of reading first."""
        self._compact_every = 60.0
        self._next_compact = 0.0
        self._compact_mark = 0

    def _next_seq(self) -> int:
        return next(self._seq)

    # -- records ---------------------------------------------------------------------------------
    def _remember(self, uuid: str, text: str, mod: int, version: int) -> None:
        cached = self._cache.get(uuid)
        if cached is not None and cached[1] > mod:
            return  # a newer write of ours is already known
        self._cache[uuid] = (text, mod, version)
        self._cache.move_to_end(uuid)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)

    def _forget(self, uuid: str) -> None:
        self._cache.pop(uuid, None)

    def _cached(self, uuid: str) -> Rec | None:
        cached = self._cache.get(uuid)
        return None if cached is None else Rec.decode(*cached)

    def _settle(self, recs: Sequence[Rec], revision: int) -> None:
        """After a successful write: remember the new revisions (or forget final records)."""
        for rec in recs:
            rec.mod = revision
            rec.version += 1
            if rec.inst.state in FINAL:
                self._forget(rec.inst.uuid)
            else:
                self._remember(rec.inst.uuid, rec.encode(), revision, rec.version)

    async def _read_recs(self, uuids: Iterable[str]) -> dict[str, Rec]:
        """The stored records of these uuids (missing ones left out), fresh from etcd."""
        wanted = list(dict.fromkeys(uuids))
        found: dict[str, Rec] = {}
        for part in chunks(wanted, MAX_OPS):
            results, _ = await self.client.read([op_range(self.keys.instance(u)) for u in part])
            for kvs in results:
                for kv in kvs:
                    rec = Rec.decode(kv.value, kv.mod, kv.version)
                    found[rec.inst.uuid] = rec
                    self._remember(rec.inst.uuid, kv.value, kv.mod, kv.version)
        return found

    def _recs_of(self, responses: list[dict[str, Any]]) -> dict[str, Rec]:
        """Records in the range responses of a transaction (its failure branch)."""
        found: dict[str, Rec] = {}
        for response in responses:
            for kv in kvs_of(response):
                if kv.key.startswith(self.keys.instances):
                    rec = Rec.decode(kv.value, kv.mod, kv.version)
                    found[rec.inst.uuid] = rec
                    self._remember(rec.inst.uuid, kv.value, kv.mod, kv.version)
        return found

    def _before(self, rec: Rec) -> Before:
        inst = rec.inst
        if inst.state in _QUEUED and rec.qseq is not None and inst.scheduled_at is not None:
            due = to_us(inst.scheduled_at)
            keys: tuple[str, ...] = (
                self.keys.ready_key(inst.kind, inst.policy.priority, due, rec.qseq),
                self.keys.waiting_key(inst.kind, due, rec.qseq),
            )
        else:
            keys = ()
        return Before(inst.state, keys)

    def _write_ops(
        self, rec: Rec, before: Before, now_us: int, *, index_key: str | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
        """(compares, operations, record text) writing ``rec``'s change since ``before``.

        The compare is the record's mod_revision as read (its creation for a new one).
        ``index_key`` names the one index key a claim read, when known.
        """
        keys = self.keys
        inst = rec.inst
        uuid = inst.uuid
        queued = inst.state in _QUEUED
        if not queued:
            rec.qseq = None
        elif rec.qseq is None or before.index_keys:
            rec.qseq = self._next_seq()  # a new place in the queue
        text = rec.encode()
        ikey = keys.instance(uuid)
        compares = [cmp_mod(ikey, rec.mod) if rec.version else cmp_create(ikey, 0)]
        ops = [op_put(ikey, text)]
        if before.index_keys:
            for key in (index_key,) if index_key is not None else before.index_keys:
                ops.append(op_delete(key))
        if queued:
            assert inst.scheduled_at is not None
            assert rec.qseq is not None
            due = to_us(inst.scheduled_at)
            value = index_value(text, due, rec.version + 1)
            if due <= now_us:
                key = keys.ready_key(inst.kind, inst.policy.priority, due, rec.qseq)
            else:
                key = keys.waiting_key(inst.kind, due, rec.qseq)
            ops.append(op_put(key, value))
        if inst.state is State.PROCESSING:
            assert inst.lease_expires_at is not None
            ops.append(op_put(keys.run(uuid), str(to_us(inst.lease_expires_at))))
        elif before.state is State.PROCESSING:
            ops.append(op_delete(keys.run(uuid)))
        dedupe = inst.dedupe_key
        if dedupe is not None and rec.version:
            final = inst.state in FINAL
            if final and not before.final:
                ops.append(op_delete(keys.dedupe(dedupe)))
            elif before.final and not final:
                ops.append(op_put(keys.dedupe(dedupe), uuid))
        return compares, ops, text

    # -- writing ---------------------------------------------------------------------------------
    async def _txn(
        self,
        compares: Sequence[dict[str, Any]],
        ops: list[dict[str, Any]],
        events: list[Event],
        failure: Sequence[dict[str, Any]] = (),
    ) -> TxnResult:
        """One write transaction; its events go with it (one put of the watched key)."""
        if events:
            ops = [*ops, op_put(self.keys.events, encode_events(events))]
        result = await self.client.txn(compares, ops, failure)
        if result.succeeded and trio.current_time() >= self._next_compact:
            await self._compact_old()
        return result

    async def _compact_old(self) -> None:
        """Compact the revisions older than one compaction period (etcd keeps every
        revision until compacted, and refuses writes when its space quota is full).

        Each period compacts up to the revision seen at the start of the previous one,
        so a watch that lags by less than a period never sees its history vanish."""
        self._next_compact = trio.current_time() + self._compact_every
        mark, self._compact_mark = self._compact_mark, self.client.revision
        if mark:
            await self.client.compact(mark)


def detached(inst: Instance) -> Instance:
    """A copy sharing no list or dict with ``inst``."""
    clone = inst.snapshot()
    clone.args = copy_json(inst.args)
    clone.kwargs = copy_json(inst.kwargs)
    clone.result = copy_json(inst.result)
    return clone
