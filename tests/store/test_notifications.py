"""Conformance: notifications (``store.subscribe()``).

Notifications are best effort across reconnects, but a store that stays connected
delivers every event, in the order it emitted them. To check that an event did
*not* come, a test emits a marker (a new schedule's ``SCHEDULE`` event) and reads
up to it: everything emitted before the marker has arrived by then.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import trio

from gojob.instance import LogLevel, LogRecord
from gojob.schedule import Every
from gojob.state import State
from gojob.store.base import (
    Event,
    EventType,
    InstanceQuery,
    Outcome,
    ScheduleRecord,
    Store,
    Subscription,
)

from . import (
    KIND,
    LEASE,
    TIMEOUT,
    add_one,
    claim_one,
    collect_events,
    complete,
    make_instance,
    wait_past,
)

_markers = itertools.count()


async def events_to_marker(store: Store, sub: Subscription) -> list[Event]:
    """Every event emitted so far, up to (without) the marker event this emits."""
    marker_id = f"zz-marker-{next(_markers)}"
    now = await store.now()
    marker = ScheduleRecord(marker_id, "job.marker", Every(timedelta(hours=1), anchor=now))
    marker.next_fire_at = now
    await store.put_schedule(marker)

    def is_marker(event: Event) -> bool:
        return event.type is EventType.SCHEDULE and event.schedule_id == marker_id

    events = await collect_events(sub, lambda events: any(map(is_marker, events)))
    return list(itertools.takewhile(lambda e: not is_marker(e), events))


def of_type(events: list[Event], etype: EventType) -> list[Event]:
    return [e for e in events if e.type is etype]


async def test_add_claim_and_finish_emit_state_events_in_order(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        async with store.subscribe() as sub:
            inst = await add_one(store)
            claimed = await claim_one(store, node="node-3")
            await complete(store, claimed)
            events = await events_to_marker(store, sub)
        changes = of_type(events, EventType.STATE)
        assert [(e.uuid, e.kind, e.state) for e in changes] == [
            (inst.uuid, KIND, State.SCHEDULED),
            (inst.uuid, KIND, State.PROCESSING),
            (inst.uuid, KIND, State.COMPLETED),
        ]
        assert changes[1].node_id == "node-3"


async def test_add_emits_one_state_event_per_instance_and_due(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        given = [make_instance(now, delay=60 + i) for i in range(3)]
        async with store.subscribe() as sub:
            added = await store.add(given)
            events = await events_to_marker(store, sub)
        changes = of_type(events, EventType.STATE)
        assert [(e.uuid, e.state) for e in changes] == [(a.uuid, State.SCHEDULED) for a in added]
        dues = of_type(events, EventType.DUE)
        assert dues
        earliest = given[0].scheduled_at
        assert earliest is not None
        # The due time, when given, is no later than the earliest instance's.
        assert all(d.due is None or d.due <= earliest for d in dues)


async def test_a_retry_emits_the_failure_the_rescheduling_and_due(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        inst = await add_one(store)
        claimed = await claim_one(store)
        assert claimed.claim_token is not None
        retry_at = await store.now() + timedelta(seconds=30)
        outcome = Outcome(
            State.TERMINATED, error_message="boom", retry_at=retry_at, counts_as_failure=True
        )
        async with store.subscribe() as sub:
            await store.finish(claimed.claim_token, outcome)
            events = await events_to_marker(store, sub)
        assert [(e.uuid, e.state) for e in of_type(events, EventType.STATE)] == [
            (inst.uuid, State.TERMINATED),
            (inst.uuid, State.SCHEDULED),
        ]
        (due,) = of_type(events, EventType.DUE)
        assert due.due is None or due.due <= retry_at


async def test_a_rescue_emits_state_events_and_due(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        inst = await add_one(store)
        claimed = await claim_one(store, lease=LEASE)
        assert claimed.lease_expires_at is not None
        await wait_past(store, claimed.lease_expires_at)
        async with store.subscribe() as sub:
            assert len(await store.reap_expired()) == 1
            events = await events_to_marker(store, sub)
        assert [(e.uuid, e.state) for e in of_type(events, EventType.STATE)] == [
            (inst.uuid, State.TERMINATED),
            (inst.uuid, State.SCHEDULED),
        ]
        assert of_type(events, EventType.DUE)


async def test_cancel_of_a_running_instance_emits_cancel_for_its_node(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        running = await add_one(store, priority=1)
        await claim_one(store, node="node-7")
        queued = await add_one(store)
        async with store.subscribe() as sub:
            await store.request_cancel(InstanceQuery(kind=KIND))
            events = await events_to_marker(store, sub)
        cancels = of_type(events, EventType.CANCEL)
        assert [(e.uuid, e.kind, e.node_id) for e in cancels] == [(running.uuid, KIND, "node-7")]
        # The queued one is canceled at once: a state change, not a cancel request.
        assert [(e.uuid, e.state) for e in of_type(events, EventType.STATE)] == [
            (queued.uuid, State.CANCELED)
        ]


async def test_append_logs_emits_one_log_event_per_instance(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        a = await add_one(store, "kind.a")
        b = await add_one(store, "kind.b")
        now = await store.now()
        records = [
            LogRecord(a.uuid, a.kind, now, LogLevel.INFO, "1"),
            LogRecord(b.uuid, b.kind, now, LogLevel.INFO, "2"),
            LogRecord(a.uuid, a.kind, now, LogLevel.WARN, "3"),
        ]
        async with store.subscribe() as sub:
            await store.append_logs(records)
            events = await events_to_marker(store, sub)
        logs = of_type(events, EventType.LOG)
        assert sorted((e.uuid or "", e.kind or "") for e in logs) == sorted(
            [(a.uuid, "kind.a"), (b.uuid, "kind.b")]
        )


async def test_schedule_changes_emit_schedule_events(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        record = ScheduleRecord("tick", "job.tick", Every(timedelta(minutes=1), anchor=now))
        record.next_fire_at = now
        async with store.subscribe() as sub:
            await store.put_schedule(record)
            await store.set_schedule_paused("tick", True)
            await store.set_schedule_paused("tick", False, now + timedelta(minutes=5))
            await store.delete_schedule("tick")
            events = await events_to_marker(store, sub)
        changes = of_type(events, EventType.SCHEDULE)
        assert [e.schedule_id for e in changes] == ["tick"] * 4


async def test_every_subscriber_receives_the_events(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        async with store.subscribe() as first, store.subscribe() as second:
            inst = await add_one(store)
            for sub in (first, second):
                events = await events_to_marker(store, sub)
                states = [(e.uuid, e.state) for e in of_type(events, EventType.STATE)]
                assert states == [(inst.uuid, State.SCHEDULED)]


async def test_a_subscriber_receives_only_later_events(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        before = await add_one(store)
        async with store.subscribe() as sub:
            after = await add_one(store)
            events = await events_to_marker(store, sub)
        uuids = {e.uuid for e in of_type(events, EventType.STATE)}
        assert uuids == {after.uuid}
        assert before.uuid not in uuids


async def test_a_states_hint_still_delivers_the_states_asked_for(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        async with store.subscribe(states={State.COMPLETED}) as narrow, store.subscribe() as wide:
            inst = await add_one(store)
            claimed = await claim_one(store)
            await complete(store, claimed)
            narrow_events = await events_to_marker(store, narrow)
            wide_events = await events_to_marker(store, wide)
        completed = [
            e.uuid for e in of_type(narrow_events, EventType.STATE) if e.state is State.COMPLETED
        ]
        assert completed == [inst.uuid]
        # A subscriber without the hint still sees every state.
        assert [e.state for e in of_type(wide_events, EventType.STATE)] == [
            State.SCHEDULED,
            State.PROCESSING,
            State.COMPLETED,
        ]
