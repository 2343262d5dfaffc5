"""Conformance: recurring schedules and the compare-and-set that fires each slot once."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import trio

from gojob.errors import ScheduleNotFound
from gojob.instance import Instance
from gojob.policy import Policy
from gojob.schedule import Cron, Every
from gojob.state import State
from gojob.store.base import InstanceQuery, ScheduleRecord, Store, slot_key

from . import TIMEOUT, claim_one, complete, make_instance

INTERVAL = timedelta(minutes=1)


def every_minute(
    schedule_id: str, cursor: datetime, *, kind: str = "job.tick", args: list[int] | None = None
) -> ScheduleRecord:
    """A schedule firing every minute from ``cursor`` (its anchor and first slot)."""
    return ScheduleRecord(
        id=schedule_id,
        kind=kind,
        trigger=Every(INTERVAL, anchor=cursor),
        args=[1] if args is None else args,
        next_fire_at=cursor,
    )


def slot_instance(now: datetime, record: ScheduleRecord, slot: datetime) -> Instance:
    """The instance a scheduler builds for ``slot`` of ``record``."""
    return make_instance(
        now,
        record.kind,
        args=list(record.args),
        schedule_id=record.id,
        fire_time=slot,
        dedupe_key=slot_key(record.id, slot),
    )


async def scheduled_ids(store: Store, schedule_id: str) -> list[str]:
    found = await store.lookup_instances(InstanceQuery(schedule_id=schedule_id))
    return [i.uuid for i in found]


# -- put, get, list ------------------------------------------------------------------------------


async def test_put_schedule_stores_a_new_schedule(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        record = every_minute("tick", now)
        record.kwargs = {"k": [1]}
        record.policy = Policy(max_retries=2, priority=1)
        record.jitter = 1.5
        stored = await store.put_schedule(record)
        assert stored.id == "tick"
        assert stored.kind == "job.tick"
        assert stored.trigger == Every(INTERVAL, anchor=now)
        assert stored.next_fire_at == now
        assert not stored.paused
        assert (stored.fired_count, stored.skipped_count, stored.recent_skips) == (0, 0, [])
        assert stored.created_at is not None
        fetched = await store.get_schedule("tick")
        assert fetched is not None
        assert fetched.same_definition(record)
        assert (fetched.args, fetched.kwargs, fetched.policy, fetched.jitter) == (
            [1],
            {"k": [1]},
            Policy(max_retries=2, priority=1),
            1.5,
        )
        assert fetched.next_fire_at == now
        # Copies: changing what was given or returned changes nothing stored.
        record.args.append(2)
        record.kwargs["k"].append(2)
        fetched.args.append(3)
        fetched.next_fire_at = None
        again = await store.get_schedule("tick")
        assert again is not None
        assert (again.args, again.kwargs, again.next_fire_at) == ([1], {"k": [1]}, now)


async def test_put_schedule_is_idempotent_for_the_same_definition(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        first = await store.put_schedule(every_minute("tick", now))
        fired = await store.fire_schedule(
            "tick", now, now + INTERVAL, [slot_instance(now, first, now)]
        )
        assert fired is not None
        await store.set_schedule_paused("tick", True)
        # Another node declares the same schedule at start-up, with its own anchor and cursor.
        later = now + timedelta(seconds=7)
        kept = await store.put_schedule(every_minute("tick", later))
        assert kept.next_fire_at == now + INTERVAL
        assert kept.trigger == Every(INTERVAL, anchor=now)
        assert kept.paused
        assert kept.fired_count == 1
        assert kept.created_at == first.created_at
        stored = await store.get_schedule("tick")
        assert stored is not None
        assert (stored.next_fire_at, stored.paused, stored.fired_count) == (
            now + INTERVAL,
            True,
            1,
        )
        assert [s.id for s in await store.list_schedules()] == ["tick"]


async def test_put_schedule_replaces_a_changed_definition(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        await store.put_schedule(every_minute("tick", now, args=[1]))
        await store.fire_schedule("tick", now, now + INTERVAL, [])
        await store.set_schedule_paused("tick", True)
        cursor = now + timedelta(hours=1)
        changed = every_minute("tick", cursor, args=[2])
        replaced = await store.put_schedule(changed)
        assert replaced.args == [2]
        assert replaced.next_fire_at == cursor
        assert replaced.trigger == Every(INTERVAL, anchor=cursor)
        assert replaced.paused  # an operator's pause outlives a redeploy
        stored = await store.get_schedule("tick")
        assert stored is not None
        assert (stored.args, stored.next_fire_at) == ([2], cursor)
        # A new trigger is a changed definition too.
        cron = ScheduleRecord("tick", "job.tick", Cron("*/5 * * * *"), [2], next_fire_at=cursor)
        assert (await store.put_schedule(cron)).trigger == Cron("*/5 * * * *")
        stored = await store.get_schedule("tick")
        assert stored is not None
        assert stored.trigger == Cron("*/5 * * * *")


async def test_get_and_list_schedules(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        assert await store.get_schedule("nothing") is None
        assert await store.list_schedules() == []
        for schedule_id, kind in (("c", "job.x"), ("a", "job.y"), ("b", "job.x")):
            await store.put_schedule(every_minute(schedule_id, now, kind=kind))
        assert [s.id for s in await store.list_schedules()] == ["a", "b", "c"]
        assert [s.id for s in await store.list_schedules("job.x")] == ["b", "c"]
        assert [s.id for s in await store.list_schedules(kind="job.y")] == ["a"]
        assert await store.list_schedules("job.none") == []


# -- pause, resume, delete -------------------------------------------------------------------------


async def test_pause_and_resume_moving_the_cursor(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        await store.put_schedule(every_minute("tick", now))
        paused = await store.set_schedule_paused("tick", True)
        assert paused.paused
        assert paused.next_fire_at == now
        stored = await store.get_schedule("tick")
        assert stored is not None
        assert stored.paused
        # A paused schedule does not fire.
        assert await store.fire_schedule("tick", now, now + INTERVAL, []) is None
        later = now + 10 * INTERVAL
        resumed = await store.set_schedule_paused("tick", False, later)
        assert (resumed.paused, resumed.next_fire_at) == (False, later)
        stored = await store.get_schedule("tick")
        assert stored is not None
        assert (stored.paused, stored.next_fire_at) == (False, later)
        # Resuming without a cursor keeps it.
        await store.set_schedule_paused("tick", True)
        kept = await store.set_schedule_paused("tick", False)
        assert kept.next_fire_at == later


async def test_pause_of_an_unknown_schedule_is_not_found(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        with pytest.raises(ScheduleNotFound):
            await store.set_schedule_paused("nothing", True)


async def test_delete_schedule_keeps_its_instances(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        record = await store.put_schedule(every_minute("tick", now))
        added = await store.fire_schedule(
            "tick", now, now + INTERVAL, [slot_instance(now, record, now)]
        )
        assert added is not None
        assert await store.delete_schedule("tick") is True
        assert await store.get_schedule("tick") is None
        assert await store.list_schedules() == []
        assert await store.delete_schedule("tick") is False
        assert await scheduled_ids(store, "tick") == [added[0].uuid]
        assert await store.fire_schedule("tick", now + INTERVAL, now + 2 * INTERVAL, []) is None


# -- fire_schedule ---------------------------------------------------------------------------------


async def test_fire_schedule_creates_the_slot_instance_and_moves_the_cursor(
    store: Store,
) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        record = await store.put_schedule(every_minute("tick", now))
        instance = slot_instance(now, record, now)
        added = await store.fire_schedule("tick", now, now + INTERVAL, [instance])
        assert added is not None
        (inst,) = added
        assert inst.uuid == instance.uuid
        assert inst.state is State.SCHEDULED
        assert (inst.schedule_id, inst.fire_time) == ("tick", now)
        assert inst.dedupe_key == slot_key("tick", now)
        stored = await store.get_schedule("tick")
        assert stored is not None
        assert stored.next_fire_at == now + INTERVAL
        assert stored.fired_count == 1
        assert stored.last_fire_at == now
        assert stored.last_instance == inst.uuid
        claimed = await claim_one(store, ["job.tick"])
        assert claimed.uuid == inst.uuid


async def test_fire_schedule_gives_slot_keys_to_instances_without_one(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        record = await store.put_schedule(every_minute("tick", now))
        slots = [now, now + INTERVAL]
        given = [slot_instance(now, record, slot) for slot in slots]
        for inst in given:
            inst.dedupe_key = None
        added = await store.fire_schedule("tick", now, now + 2 * INTERVAL, given)
        assert added is not None
        assert [i.dedupe_key for i in added] == [slot_key("tick", slot) for slot in slots]


async def test_fire_schedule_with_a_stale_cursor_does_nothing(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        record = await store.put_schedule(every_minute("tick", now))
        first = await store.fire_schedule(
            "tick", now, now + INTERVAL, [slot_instance(now, record, now)]
        )
        assert first is not None
        # A second node with the same view of the cursor lost the race.
        loser = slot_instance(now, record, now)
        again = await store.fire_schedule("tick", now, now + INTERVAL, [loser])
        assert again is None
        assert await store.get(loser.uuid) is None
        assert await scheduled_ids(store, "tick") == [first[0].uuid]
        stored = await store.get_schedule("tick")
        assert stored is not None
        assert (stored.next_fire_at, stored.fired_count) == (now + INTERVAL, 1)
        # A cursor from the future does not match either.
        future = now + 5 * INTERVAL
        assert await store.fire_schedule("tick", future, future + INTERVAL, []) is None


async def test_fire_schedule_of_an_unknown_schedule_does_nothing(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        record = every_minute("ghost", now)
        inst = slot_instance(now, record, now)
        assert await store.fire_schedule("ghost", now, now + INTERVAL, [inst]) is None
        assert await store.get(inst.uuid) is None


async def test_concurrent_fires_of_one_slot_have_one_winner(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        record = await store.put_schedule(every_minute("tick", now))
        results: list[list[Instance] | None] = []

        async def node() -> None:
            inst = slot_instance(now, record, now)
            results.append(await store.fire_schedule("tick", now, now + INTERVAL, [inst]))

        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(node)

        winners = [r for r in results if r is not None]
        assert len(results) == 5
        assert len(winners) == 1
        assert len(winners[0]) == 1
        assert await scheduled_ids(store, "tick") == [winners[0][0].uuid]
        stored = await store.get_schedule("tick")
        assert stored is not None
        assert (stored.next_fire_at, stored.fired_count) == (now + INTERVAL, 1)


async def test_fire_schedule_counts_skips_and_keeps_the_latest_hundred(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        record = await store.put_schedule(every_minute("tick", now))
        slots = [now + i * INTERVAL for i in range(151)]
        skipped = [(slot, "misfire") for slot in slots[:-1]]
        last = slots[-1]
        added = await store.fire_schedule(
            "tick", now, last + INTERVAL, [slot_instance(now, record, last)], skipped, 150
        )
        assert added is not None
        assert len(added) == 1
        stored = await store.get_schedule("tick")
        assert stored is not None
        assert stored.skipped_count == 150
        assert stored.recent_skips == skipped[-100:]
        assert stored.fired_count == 1
        # More skips: the count adds up, the record keeps the latest 100.
        more = [(last + INTERVAL, "overlap"), (last + 2 * INTERVAL, "overlap")]
        fired = await store.fire_schedule("tick", last + INTERVAL, last + 3 * INTERVAL, [], more, 2)
        assert fired == []
        assert (
            await store.fire_schedule("tick", last + 3 * INTERVAL, last + 4 * INTERVAL, [])
        ) == []
        stored = await store.get_schedule("tick")
        assert stored is not None
        assert stored.skipped_count == 152
        assert stored.recent_skips == (skipped + more)[-100:]
        assert stored.next_fire_at == last + 4 * INTERVAL
        assert stored.fired_count == 1


async def test_a_slot_instance_is_deduplicated_while_it_is_not_final(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        record = await store.put_schedule(every_minute("tick", now))
        first = await store.fire_schedule(
            "tick", now, now + INTERVAL, [slot_instance(now, record, now)]
        )
        assert first is not None
        # The cursor was moved back (resume): the same slot fires again, but its
        # instance still exists, so no second one is created.
        await store.set_schedule_paused("tick", True)
        await store.set_schedule_paused("tick", False, now)
        again = await store.fire_schedule(
            "tick", now, now + INTERVAL, [slot_instance(now, record, now)]
        )
        assert again is not None
        assert [i.uuid for i in again] == [first[0].uuid]
        assert await scheduled_ids(store, "tick") == [first[0].uuid]
        # Once final, the slot's key is free again.
        await complete(store, await claim_one(store, ["job.tick"]))
        await store.set_schedule_paused("tick", False, now)
        third = await store.fire_schedule(
            "tick", now, now + INTERVAL, [slot_instance(now, record, now)]
        )
        assert third is not None
        assert third[0].uuid != first[0].uuid
