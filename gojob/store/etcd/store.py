"""The etcd v3 store, over etcd's JSON gateway with httpx (natively on Trio).

Deviations from the contract (``gojob/store/base.py``)
-------------------------------------------------------
* **Clock.** etcd has no time API, so due times and attempt leases are judged by the
  wall clock of the node that calls (``clock=``, the manager's clock), not by a server
  clock. Node clocks must agree (NTP): a node whose clock runs ahead may reap another
  node's lease early (the attempt then runs twice, but can never be committed twice:
  every write compares the revision it read, so the stale node's finish is refused
  with LeaseLost). Leases are renewed every ``lease/3``, so skew below that is
  harmless; ``reap_margin=`` adds seconds a lease must be past its end before the
  reaper takes it. Node liveness (:meth:`heartbeat`) is kept by etcd leases, whose
  expiry etcd judges itself: a node record lives on an etcd lease of the heartbeat's
  TTL and disappears when the node stops renewing it. Instance keys are never attached
  to an etcd lease (an expiry would delete them): a dead node's claims come back
  through :meth:`reap_expired`.
* **Batches.** etcd caps a transaction at 128 operations (``--max-txn-ops``) and 1.5 MiB:
  ``add``, ``finish_many`` and the others write at most ``MAX_OPS`` operations per
  transaction, so a large batch is several transactions, each atomic (an instance and
  its history are always one key, hence one write).
* **Ordering.** Claims take due work by priority, due time, insertion, among the work
  due when it was enqueued or promoted: work that waited for a later due time moves to
  the ready index as claims meet it (``MAX_OPS`` per claim), so a very large set of
  delayed instances falling due at once is ordered by due time until promoted.

Keyspace and history: finished instances live until :meth:`prune` (the manager's
``retention=``); the store compacts etcd's revision history itself, every
``compact_every`` seconds, up to the revision seen one period earlier (etcd 3.4 as
packaged does not auto-compact, and stops every write once its space quota is full).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ...clock import Clock, SystemClock
from ...errors import ScheduleNotFound, StoreError, StoreUnavailable
from ...instance import HistoryRecord, Instance, LogRecord
from ...state import FINAL, State
from ..base import (
    DEFAULT_LIMIT,
    Event,
    EventType,
    HistoryQuery,
    InstanceQuery,
    LogQuery,
    NodeRecord,
    PruneResult,
    ScheduleRecord,
    Store,
    keyed_by_slot,
    record_fire,
)
from .client import (
    EtcdClient,
    cmp_exists,
    cmp_mod,
    op_delete,
    op_delete_prefix,
    op_put,
    op_range,
)
from .codec import (
    Rec,
    decode_logs,
    decode_node,
    decode_schedule,
    encode_logs,
    encode_node,
    encode_schedule,
    to_us,
)
from .common import MAX_OPS, chunks
from .keys import Keys
from .queue import QueueOps
from .watch import current_revision, open_subscription

__all__ = ["EtcdStore"]

DEFAULT_URL = "etcd://127.0.0.1:2379"
DEFAULT_PREFIX = "gojob/"


class EtcdStore(QueueOps, Store):
    """A store on etcd v3 (``etcd://host:port``, ``etcds://`` for TLS), under a key prefix.

    ``prefix`` (keyword, else ``?prefix=`` in the URL, else ``gojob/``) namespaces every
    key, so several deployments share one etcd. ``clock`` judges due times and leases
    (see the module docstring). Requests failing for transport reasons are retried for
    ``retry_for`` seconds before StoreUnavailable.
    """

    name = "etcd"
    preferred_prefetch = 30
    """A claim costs two round trips (read, transaction) whatever its size, and etcd's
    gateway does a few hundred of them per second: batches of ~40 keep it busy."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        *,
        prefix: str | None = None,
        clock: Clock | None = None,
        retry_for: float = 10.0,
        timeout: float = 10.0,
        reap_margin: float = 0.0,
        compact_every: float = 60.0,
    ) -> None:
        base_url, url_prefix = _parse_url(url)
        chosen = prefix if prefix is not None else (url_prefix or DEFAULT_PREFIX)
        if not chosen.endswith("/"):
            chosen += "/"
        self.url = url
        self.prefix = chosen
        self.reap_margin = reap_margin
        self._base_url = base_url
        self._retry_for = retry_for
        self._timeout = timeout
        self._opened = 0
        self._known_kinds = set()
        self._node_leases: dict[str, tuple[int, int]] = {}
        self._init_core(
            EtcdClient(base_url, retry_for=retry_for, timeout=timeout),
            Keys(chosen),
            clock or SystemClock(),
        )
        self._compact_every = compact_every

    # -- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> EtcdStore:
        if self._opened == 0:
            if self.client is None:
                self.client = EtcdClient(
                    self._base_url, retry_for=self._retry_for, timeout=self._timeout
                )
            try:
                await self.client.status(retry_for=min(self._retry_for, 2.0))
            except StoreError as exc:
                await self.client.aclose()
                raise StoreUnavailable(f"etcd at {self._base_url} is unreachable: {exc}") from exc
            self._token_prefix = os.urandom(4).hex()
        self._opened += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._opened -= 1
        if self._opened == 0:
            await self.client.aclose()
            # A later ``async with`` opens a new client.
            self.client = None  # type: ignore[assignment]

    async def now(self) -> datetime:
        return self.clock.now()

    async def compact(self) -> int:
        """Compact etcd's history up to the current revision now (operators, tests);
        returns that revision. Watches behind it resync."""
        revision = await current_revision(self.client, self.keys.events)
        await self.client.compact(revision)
        return revision

    # -- lookups ------------------------------------------------------------------------------
    async def get(self, uuid: str) -> Instance | None:
        found = await self._read_recs([uuid])
        rec = found.get(uuid)
        return None if rec is None else rec.inst

    async def lookup_instances(self, query: InstanceQuery) -> list[Instance]:
        found = [rec.inst for rec in await self._select(query)]
        attr = query.order_by
        epoch = datetime.min.replace(tzinfo=self.clock.now().tzinfo)
        found.sort(key=lambda i: (getattr(i, attr) or epoch, i.uuid), reverse=query.descending)
        return _page(found, query.limit, query.offset)

    async def _all_recs(self) -> list[Rec]:
        return [
            Rec.decode(kv.value, kv.mod, kv.version)
            for kv in await self.client.scan(self.keys.instances)
        ]

    async def counts(self) -> dict[tuple[str, State], int]:
        result: dict[tuple[str, State], int] = defaultdict(int)
        for rec in await self._all_recs():
            result[(rec.inst.kind, rec.inst.state)] += 1
        return dict(result)

    async def history(self, query: HistoryQuery) -> list[HistoryRecord]:
        if query.uuid is not None:
            recs = list((await self._read_recs([query.uuid])).values())
        else:
            recs = await self._all_recs()
        found = [r for rec in recs for r in rec.history() if query.matches(r)]
        found.sort(key=lambda r: (r.timestamp, r.seq), reverse=query.descending)
        return _page(found, query.limit, query.offset)

    async def logs(self, query: LogQuery) -> list[LogRecord]:
        prefix = self.keys.logs if query.uuid is None else self.keys.instance_logs(query.uuid)
        found = [
            r
            for kv in await self.client.scan(prefix)
            for r in decode_logs(self._log_uuid(kv.key), kv.value)
            if query.matches(r)
        ]
        found.sort(key=lambda r: (r.timestamp, r.seq), reverse=query.descending)
        return _page(found, query.limit, query.offset)

    def _log_uuid(self, key: str) -> str:
        return key[len(self.keys.logs) :].split("/", 1)[0]

    async def append_logs(self, records: Sequence[LogRecord]) -> None:
        by_uuid: dict[str, list[LogRecord]] = {}
        for rec in records:
            stored = LogRecord(
                rec.uuid,
                rec.kind,
                rec.timestamp,
                rec.level,
                rec.message,
                rec.attempt,
                rec.logger,
                self._next_seq(),
            )
            by_uuid.setdefault(rec.uuid, []).append(stored)
        groups = list(by_uuid.items())
        for part in chunks(groups, MAX_OPS):
            ops = [
                op_put(self.keys.log(uuid, recs[0].seq), encode_logs(recs)) for uuid, recs in part
            ]
            events = [Event(EventType.LOG, uuid, recs[0].kind) for uuid, recs in part]
            await self._txn((), ops, events)

    # -- schedules ----------------------------------------------------------------------------
    async def put_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        key = self.keys.schedule(record.id)
        while True:
            kv = await self.client.get(key)
            existing = None if kv is None else decode_schedule(kv.value)
            if existing is not None and existing.same_definition(record):
                return existing
            now = self.clock.now()
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
            event = Event(EventType.SCHEDULE, schedule_id=record.id, due=stored.next_fire_at)
            result = await self._txn(
                [cmp_mod(key, 0 if kv is None else kv.mod)],
                [op_put(key, encode_schedule(stored))],
                [event],
            )
            if result.succeeded:
                return stored

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        kv = await self.client.get(self.keys.schedule(schedule_id))
        return None if kv is None else decode_schedule(kv.value)

    async def list_schedules(self, kind: str | None = None) -> list[ScheduleRecord]:
        found = [decode_schedule(kv.value) for kv in await self.client.scan(self.keys.schedules)]
        return sorted((s for s in found if kind is None or s.kind == kind), key=lambda s: s.id)

    async def set_schedule_paused(
        self, schedule_id: str, paused: bool, next_fire_at: datetime | None = None
    ) -> ScheduleRecord:
        key = self.keys.schedule(schedule_id)
        while True:
            kv = await self.client.get(key)
            if kv is None:
                raise ScheduleNotFound(schedule_id)
            found = decode_schedule(kv.value)
            found.paused = paused
            if next_fire_at is not None:
                found.next_fire_at = next_fire_at
            found.updated_at = self.clock.now()
            event = Event(EventType.SCHEDULE, schedule_id=schedule_id, due=found.next_fire_at)
            result = await self._txn(
                [cmp_mod(key, kv.mod)], [op_put(key, encode_schedule(found))], [event]
            )
            if result.succeeded:
                return found

    async def delete_schedule(self, schedule_id: str) -> bool:
        key = self.keys.schedule(schedule_id)
        event = Event(EventType.SCHEDULE, schedule_id=schedule_id)
        result = await self._txn([cmp_exists(key)], [op_delete(key)], [event])
        return result.succeeded

    async def fire_schedule(
        self,
        schedule_id: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        instances: Sequence[Instance],
        skipped: Sequence[tuple[datetime, str]] = (),
        skipped_count: int = 0,
    ) -> list[Instance] | None:
        key = self.keys.schedule(schedule_id)
        keyed = keyed_by_slot(schedule_id, instances)
        while True:
            kv = await self.client.get(key)
            if kv is None:
                return None
            found = decode_schedule(kv.value)
            if found.paused or found.next_fire_at != expected_next_fire_at:
                return None
            now = self.clock.now()
            # Slots whose instance exists already (non-final) keep it: read their holders
            # first, so the schedule's bookkeeping names the instances it ends up with.
            existing = await self._slot_holders(keyed)
            fresh = [inst for inst in keyed if inst.dedupe_key not in existing]
            planned = [existing.get(inst.dedupe_key or "", inst) for inst in keyed]
            record_fire(found, planned, now, next_fire_at, skipped, skipped_count)
            guard = ([cmp_mod(key, kv.mod)], [op_put(key, encode_schedule(found))])
            if not fresh:
                result = await self._txn(guard[0], guard[1], [])
                if result.succeeded:
                    return planned
                continue
            added = await self._insert(fresh, now, guard)
            if added is None:
                continue  # the cursor moved, or a slot was taken meanwhile: look again
            by_uuid = {inst.uuid: inst for inst in added}
            return [existing.get(inst.dedupe_key or "") or by_uuid[inst.uuid] for inst in keyed]

    async def _slot_holders(self, instances: Sequence[Instance]) -> dict[str, Instance]:
        """dedupe key -> the non-final instance holding it, for these instances' keys."""
        dedupe = [inst.dedupe_key for inst in instances if inst.dedupe_key is not None]
        if not dedupe:
            return {}
        holders: dict[str, str] = {}
        for part in chunks(dedupe, MAX_OPS):
            results, _ = await self.client.read([op_range(self.keys.dedupe(k)) for k in part])
            for k, kvs in zip(part, results, strict=True):
                if kvs:
                    holders[k] = kvs[0].value
        recs = await self._read_recs(holders.values())
        return {
            k: recs[u].inst
            for k, u in holders.items()
            if u in recs and recs[u].inst.state not in FINAL
        }

    # -- nodes ------------------------------------------------------------------------------------
    async def heartbeat(self, node: NodeRecord, ttl: float) -> NodeRecord:
        now = self.clock.now()
        stored = node.copy()
        stored.last_seen = now
        stored.expires_at = now + timedelta(seconds=ttl)
        # The etcd lease outlives the record's own expiry a little: the record is judged
        # by ``expires_at``; the lease only removes the records of nodes that vanished.
        seconds = max(math.ceil(ttl) + 1, 2)
        held = self._node_leases.get(node.node_id)
        lease = 0
        if held is not None and held[1] == seconds and await self.client.keepalive(held[0]) > 0:
            lease = held[0]
        if not lease:
            if held is not None:
                await self.client.revoke(held[0])
            lease, _ = await self.client.grant(seconds)
            self._node_leases[node.node_id] = (lease, seconds)
        await self._txn((), [op_put(self.keys.node(node.node_id), encode_node(stored), lease)], [])
        return stored

    async def nodes(self) -> list[NodeRecord]:
        now = self.clock.now()
        found = [decode_node(kv.value) for kv in await self.client.scan(self.keys.nodes)]
        return sorted(
            (n for n in found if n.expires_at is not None and n.expires_at > now),
            key=lambda n: n.node_id,
        )

    async def remove_node(self, node_id: str) -> bool:
        key = self.keys.node(node_id)
        result = await self._txn([cmp_exists(key)], [op_delete(key)], [])
        held = self._node_leases.pop(node_id, None)
        if held is not None:
            await self.client.revoke(held[0])
        return result.succeeded

    # -- retention ----------------------------------------------------------------------------
    async def prune(self, before: datetime) -> PruneResult:
        removed = history = logs = 0
        before_us = to_us(before)
        log_kvs = await self.client.scan(self.keys.logs)
        logs_of: dict[str, list[Any]] = defaultdict(list)
        for kv in log_kvs:
            logs_of[self._log_uuid(kv.key)].append(kv)
        gone: set[str] = set()
        recs = await self._all_recs()
        for part in chunks(recs, MAX_OPS // 4):
            compares: list[dict[str, Any]] = []
            ops: list[dict[str, Any]] = []
            part_removed = part_history = part_logs = 0
            part_gone = []
            for rec in part:
                inst = rec.inst
                if inst.state in FINAL and _final_since(inst, before) < before:
                    compares.append(cmp_mod(self.keys.instance(inst.uuid), rec.mod))
                    ops.append(op_delete(self.keys.instance(inst.uuid)))
                    ops.append(op_delete_prefix(self.keys.instance_logs(inst.uuid)))
                    part_removed += 1
                    part_history += len(rec.hist)
                    part_logs += sum(
                        len(decode_logs(inst.uuid, kv.value)) for kv in logs_of.get(inst.uuid, ())
                    )
                    part_gone.append(inst.uuid)
                    continue
                kept = [
                    row for row in rec.hist if to_us(datetime.fromisoformat(row[1])) >= before_us
                ]
                if len(kept) != len(rec.hist):
                    part_history += len(rec.hist) - len(kept)
                    rec.hist = kept
                    compares.append(cmp_mod(self.keys.instance(inst.uuid), rec.mod))
                    before_state = self._before(rec)
                    _, rec_ops, _ = self._write_ops(rec, before_state, to_us(self.clock.now()))
                    ops += rec_ops
            if not ops:
                continue
            result = await self._txn(compares, ops, [])
            if result.succeeded:
                removed += part_removed
                history += part_history
                logs += part_logs
                gone.update(part_gone)
                for uuid in part_gone:
                    self._forget(uuid)
            # A record that changed meanwhile is left for the next prune.
        # Old log records of the instances kept.
        ops = []
        for uuid, kvs in logs_of.items():
            if uuid in gone:
                continue
            for kv in kvs:
                records = decode_logs(uuid, kv.value)
                kept_logs = [r for r in records if r.timestamp >= before]
                if len(kept_logs) == len(records):
                    continue
                logs += len(records) - len(kept_logs)
                if kept_logs:
                    ops.append(op_put(kv.key, encode_logs(kept_logs)))
                else:
                    ops.append(op_delete(kv.key))
        for part_ops in chunks(ops, MAX_OPS):
            await self._txn((), list(part_ops), [])
        await self._compact_old()
        return PruneResult(removed, history, logs)

    # -- notifications ------------------------------------------------------------------------
    def subscribe(self, *, states: Collection[State] | None = None) -> open_subscription:
        chosen = None if states is None else frozenset(states)
        return open_subscription(self.client, self.keys.events, chosen)


def _parse_url(url: str) -> tuple[str, str | None]:
    """(base URL of the gateway, ``prefix`` query parameter) of an ``etcd://`` URL."""
    parts = urlsplit(url)
    schemes = {"etcd": "http", "etcds": "https", "http": "http", "https": "https"}
    scheme = schemes.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise ValueError(f"not an etcd URL: {url!r} (etcd://host:port or etcds://host:port)")
    port = parts.port or 2379
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    prefix = parse_qs(parts.query).get("prefix", [None])[-1]
    return f"{scheme}://{host}:{port}", prefix


def _page(items: list[Any], limit: int | None, offset: int) -> list[Any]:
    limit = DEFAULT_LIMIT if limit is None else limit
    return items[offset : offset + limit]


def _final_since(inst: Instance, default: datetime) -> datetime:
    """When a final instance reached its final state: the latest of its end times."""
    ends = [
        t
        for t in (inst.completed_at, inst.terminated_at, inst.canceled_at, inst.timed_out_at)
        if t is not None
    ]
    return max(ends) if ends else inst.updated_at or default
