"""NOTIFY payloads of the PostgreSQL store: encoding, decoding, and the resync marker
(pure functions, no database)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from gojob.state import State
from gojob.store.base import Event, EventType
from gojob.store.sql.pg_events import RESYNC, decode_payload, encode_events
from gojob.store.sql.pg_statements import MAX_NOTIFY_CHUNKS, NOTIFY_CHUNK_LIMIT

ORIGIN = "0123456789abcdef"
WHEN = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)

VARIED = [
    Event(EventType.STATE, "u-1", "kind", State.SCHEDULED),
    Event(EventType.STATE, "u-2", 'quo"ted\\kind é', State.PROCESSING, "node \x01"),
    Event(EventType.DUE),
    Event(EventType.DUE, kind="k", due=WHEN),
    Event(EventType.CANCEL, "u-3", "k", None, "node"),
    Event(EventType.LOG, "u-4", "k"),
    Event(EventType.SCHEDULE, schedule_id="every-minute"),
]


def test_events_round_trip_and_own_payloads_are_skipped() -> None:
    payloads = encode_events(ORIGIN, VARIED)
    assert len(payloads) == 1
    assert all(len(p.encode()) <= NOTIFY_CHUNK_LIMIT for p in payloads)
    assert decode_payload(payloads[0], "another") == VARIED
    assert decode_payload(payloads[0], ORIGIN) == []


def test_many_events_fill_several_payloads_in_order() -> None:
    events = [Event(EventType.STATE, f"uuid-{k:05}", "kind", State.SCHEDULED) for k in range(900)]
    payloads = encode_events(ORIGIN, events)
    assert 1 < len(payloads) <= MAX_NOTIFY_CHUNKS
    assert all(len(p.encode()) <= NOTIFY_CHUNK_LIMIT for p in payloads)
    assert [e for p in payloads for e in decode_payload(p, "another")] == events


def test_too_many_events_become_one_resync_marker() -> None:
    events = [
        Event(EventType.STATE, f"uuid-{k:031}", "kind", State.SCHEDULED) for k in range(10_000)
    ]
    (payload,) = encode_events(ORIGIN, events)
    assert json.loads(payload) == [ORIGIN, RESYNC]
    assert decode_payload(payload, "another") == [Event(EventType.RESYNC)]


def test_the_size_estimate_never_refuses_events_that_fit() -> None:
    # Just under the room of MAX_NOTIFY_CHUNKS payloads of the smallest events: sent.
    smallest = [Event(EventType.DUE)] * 100
    assert decode_payload(encode_events(ORIGIN, smallest)[0], "x") == smallest
    # Kinds of escaped characters (six bytes each when encoded, one when counted):
    # about 80 KB in all, under the room of 16 payloads, so they are sent.
    odd = [Event(EventType.STATE, f"u{k}", "\x01" * 40, State.SCHEDULED) for k in range(300)]
    payloads = encode_events(ORIGIN, odd)
    assert len(payloads) > 1
    assert [e for p in payloads for e in decode_payload(p, "x")] == odd


def test_group_items_built_by_sql_decode_to_one_event_per_uuid() -> None:
    payload = json.dumps([ORIGIN, ["states", "Completed", "kind", "node-1", ["a", "b", "c"]]])
    assert decode_payload(payload, "another") == [
        Event(EventType.STATE, u, "kind", State.COMPLETED, "node-1") for u in "abc"
    ]


def test_an_unreadable_payload_means_resync() -> None:
    assert decode_payload("not json", ORIGIN) == [Event(EventType.RESYNC)]
    assert decode_payload('["x", ["nope"]]', ORIGIN) == [Event(EventType.RESYNC)]
