"""Events as PostgreSQL NOTIFY payloads, and back. Pure functions, no I/O.

A payload is compact JSON: ``[origin, event, event, ...]`` where ``origin`` names the
store object that wrote it (a store skips its own: it delivered them in-process
already) and each event is ``[type, uuid, kind, state, node_id, due_us, schedule_id]``
with trailing nulls left out (``type`` and ``state`` by value: ``"state"``,
``"Processing"``), or a group of state events sharing their state, kind and node,
``["states", state, kind, node_id, [uuid...]]`` (what the claim and completion statements
build in SQL, where a group costs less than an event each). ``[origin, "resync"]``
says events were too many to send: readers catch up by querying. PostgreSQL refuses
payloads of 8,000 bytes or more, so the events of one transaction are packed into as
few payloads under
:data:`~.pg_statements.NOTIFY_CHUNK_LIMIT` bytes as they fit, at most
:data:`~.pg_statements.MAX_NOTIFY_CHUNKS` (else one resync marker); all go out with
one NOTIFY statement, at commit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ...state import State
from ..base import Event, EventType
from .pg_statements import MAX_NOTIFY_CHUNKS, NOTIFY_CHUNK_LIMIT
from .rows import from_us, to_us

__all__ = ["RESYNC", "decode_payload", "encode_events", "resync_payload"]

RESYNC = "resync"
_GROUP = "states"
_TYPES = {t.value: t for t in EventType}
_STATES = {s.value: s for s in State}
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _event_json(event: Event) -> list[Any]:
    due = event.due
    item: list[Any] = [
        event.type.value,
        event.uuid,
        event.kind,
        None if event.state is None else event.state.value,
        event.node_id,
        None if due is None else to_us(due),
        event.schedule_id,
    ]
    while item[-1] is None:
        item.pop()
    return item


def resync_payload(origin: str) -> str:
    return _encode([origin, RESYNC])


def encode_events(origin: str, events: Sequence[Event]) -> list[str]:
    """The payloads carrying ``events`` (empty: none), in order."""
    if not events:
        return []
    head = _encode(origin)
    budget = NOTIFY_CHUNK_LIMIT - len(head.encode()) - 3  # brackets and comma
    if _too_many(events, MAX_NOTIFY_CHUNKS * budget):
        return [resync_payload(origin)]
    payloads: list[str] = []
    items: list[str] = []
    size = 0
    for event in events:
        item = _encode(_event_json(event))
        length = len(item.encode()) + 1
        if items and size + length > budget:
            payloads.append(f"[{head},{','.join(items)}]")
            if len(payloads) >= MAX_NOTIFY_CHUNKS:
                return [resync_payload(origin)]
            items, size = [], 0
        items.append(item)
        size += length
    payloads.append(f"[{head},{','.join(items)}]")
    if len(payloads) > MAX_NOTIFY_CHUNKS:
        return [resync_payload(origin)]
    return payloads


def _too_many(events: Sequence[Event], room: int) -> bool:
    """True when the events cannot fit in ``room`` bytes, judged without encoding them:
    each item takes at least ``["due"],`` and its uuid and kind quoted (escaping only
    adds). A large add's 10,000 events were encoded one by one until the payloads ran
    out, about 15 ms per call, to send a resync marker."""
    least = 0
    for event in events:
        least += 8
        if event.uuid:
            least += len(event.uuid) + 3
        if event.kind:
            least += len(event.kind) + 3
        if least > room:
            return True
    return False


def decode_payload(payload: str, own_origin: str) -> list[Event]:
    """The events of a payload; none when it came from ``own_origin``; a ``RESYNC`` event
    for a resync marker or a payload that cannot be read."""
    if (
        payload.startswith('["')
        and payload.startswith(own_origin, 2)
        and payload.startswith('",', 2 + len(own_origin))
    ):
        # A payload of this store's own (the common case on a busy node): skipped
        # without decoding it. Origins are hex, so spelled the same in JSON.
        return []
    try:
        data = json.loads(payload)
        origin = data[0]
        if origin == own_origin:
            return []
        if data[1:] == [RESYNC]:
            return [Event(EventType.RESYNC)]
        events: list[Event] = []
        for item in data[1:]:
            if item[0] == _GROUP:
                _, state, kind, node_id, uuids = item
                s = _STATES[state]
                events.extend(Event(EventType.STATE, u, kind, s, node_id) for u in uuids)
            else:
                events.append(_event(item))
        return events
    except (ValueError, TypeError, IndexError, KeyError):
        # Not ours to read (another writer on the channel?): catch up instead.
        return [Event(EventType.RESYNC)]


def _event(item: list[Any]) -> Event:
    item = item + [None] * (7 - len(item))
    etype, uuid, kind, state, node_id, due_us, schedule_id = item[:7]
    return Event(
        _TYPES[etype],
        uuid,
        kind,
        None if state is None else _STATES[state],
        node_id,
        None if due_us is None else from_us(due_us),
        schedule_id,
    )
