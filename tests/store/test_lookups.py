"""Conformance: get, lookup_instances, counts, history and logs queries."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import trio

from gojob.instance import HistoryRecord, Instance, LogLevel, LogRecord
from gojob.state import State
from gojob.store.base import (
    DEFAULT_LIMIT,
    HistoryQuery,
    InstanceQuery,
    LogQuery,
    Outcome,
    Store,
)

from . import TIMEOUT, add_one, claim_one, complete, make_instance, tick

UNKNOWN_UUID = "00000000-0000-0000-0000-000000000000"


def uuids(instances: list[Instance]) -> list[str]:
    return [i.uuid for i in instances]


def states(records: list[HistoryRecord]) -> list[tuple[str, State]]:
    return [(r.uuid, r.state) for r in records]


async def find(store: Store, query: InstanceQuery) -> list[str]:
    return uuids(await store.lookup_instances(query))


async def test_get_returns_none_for_an_unknown_uuid(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        assert await store.get(UNKNOWN_UUID) is None


# -- lookup_instances -------------------------------------------------------------------------


async def test_lookup_filters(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        base = now - timedelta(hours=1)

        def at(seconds: int) -> datetime:
            return base + timedelta(seconds=seconds)

        insts = [
            make_instance(now, "kind.a", created_at=at(0), priority=1),
            make_instance(now, "kind.a", created_at=at(1), priority=2),
            make_instance(now, "kind.b", created_at=at(2)),
            make_instance(now, "kind.b", created_at=at(3), schedule_id="s1"),
            make_instance(now, "kind.c", created_at=at(4), dedupe_key="d"),
        ]
        a0, a1, b2, b3, c4 = insts
        await store.add(insts)
        assert (await claim_one(store, ["kind.a"])).uuid == a0.uuid  # runs
        await complete(store, await claim_one(store, ["kind.a"]))  # a1 completed

        assert await find(store, InstanceQuery()) == uuids(insts)
        assert await find(store, InstanceQuery(uuid=b2.uuid)) == [b2.uuid]
        assert await find(store, InstanceQuery(uuid=UNKNOWN_UUID)) == []
        by_uuids = InstanceQuery(uuids=[c4.uuid, a0.uuid, UNKNOWN_UUID, a0.uuid])
        assert await find(store, by_uuids) == [a0.uuid, c4.uuid]
        assert await find(store, InstanceQuery(uuids=[])) == []
        assert await find(store, InstanceQuery(kind="kind.b")) == [b2.uuid, b3.uuid]
        assert await find(store, InstanceQuery(kind="no.such.kind")) == []
        assert await find(store, InstanceQuery(states=[State.PROCESSING])) == [a0.uuid]
        assert await find(store, InstanceQuery(states=[State.COMPLETED, State.SCHEDULED])) == [
            a1.uuid,
            b2.uuid,
            b3.uuid,
            c4.uuid,
        ]
        assert await find(store, InstanceQuery(states=[])) == []
        assert await find(store, InstanceQuery(schedule_id="s1")) == [b3.uuid]
        assert await find(store, InstanceQuery(dedupe_key="d")) == [c4.uuid]
        # Time bounds apply to created_at: after <= t < before.
        assert await find(store, InstanceQuery(after=at(2))) == [b2.uuid, b3.uuid, c4.uuid]
        assert await find(store, InstanceQuery(before=at(2))) == [a0.uuid, a1.uuid]
        assert await find(store, InstanceQuery(after=at(1), before=at(3))) == [a1.uuid, b2.uuid]
        # Filters combine.
        assert await find(store, InstanceQuery(kind="kind.a", states=[State.COMPLETED])) == [
            a1.uuid
        ]
        assert await find(store, InstanceQuery(kind="kind.a", uuids=[b2.uuid])) == []


async def test_lookup_orders_by_the_chosen_time(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        base = now - timedelta(hours=1)
        # created_at: a < b < c; scheduled_at: b < c < a; updated_at (add order): c < a < b.
        a = make_instance(now, args=["a"], created_at=base, delay=-1)
        b = make_instance(now, args=["b"], created_at=base + timedelta(seconds=1), delay=-3)
        c = make_instance(now, args=["c"], created_at=base + timedelta(seconds=2), delay=-2)
        for inst in (c, a, b):
            await tick(store)
            await store.add([inst])

        async def names(query: InstanceQuery) -> list[str]:
            return [i.args[0] for i in await store.lookup_instances(query)]

        assert await names(InstanceQuery()) == ["a", "b", "c"]
        assert await names(InstanceQuery(descending=True)) == ["c", "b", "a"]
        assert await names(InstanceQuery(order_by="scheduled_at")) == ["b", "c", "a"]
        assert await names(InstanceQuery(order_by="scheduled_at", descending=True)) == [
            "a",
            "c",
            "b",
        ]
        assert await names(InstanceQuery(order_by="updated_at")) == ["c", "a", "b"]
        assert await names(InstanceQuery(order_by="updated_at", descending=True)) == [
            "b",
            "a",
            "c",
        ]


async def test_lookup_breaks_ties_by_uuid(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        insts = [make_instance(now, created_at=now) for _ in range(6)]
        await store.add(insts)
        assert await find(store, InstanceQuery()) == sorted(uuids(insts))
        assert await find(store, InstanceQuery(descending=True)) == sorted(uuids(insts))[::-1]


async def test_lookup_limit_and_offset(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        insts = [make_instance(now, created_at=now + timedelta(seconds=i)) for i in range(5)]
        await store.add(insts)
        ordered = uuids(insts)
        assert await find(store, InstanceQuery(limit=2)) == ordered[:2]
        assert await find(store, InstanceQuery(limit=2, offset=2)) == ordered[2:4]
        assert await find(store, InstanceQuery(limit=2, offset=4)) == ordered[4:]
        assert await find(store, InstanceQuery(offset=3)) == ordered[3:]
        assert await find(store, InstanceQuery(offset=5)) == []
        assert await find(store, InstanceQuery(limit=0)) == []
        assert await find(store, InstanceQuery(limit=2, offset=1, descending=True)) == [
            ordered[3],
            ordered[2],
        ]


async def test_lookup_without_a_limit_returns_at_most_default_limit(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        total = DEFAULT_LIMIT + 5
        await store.add([make_instance(now, args=[]) for _ in range(total)])
        assert len(await store.lookup_instances(InstanceQuery())) == DEFAULT_LIMIT
        assert len(await store.lookup_instances(InstanceQuery(limit=total))) == total
        assert len(await store.lookup_instances(InstanceQuery(offset=DEFAULT_LIMIT))) == 5


async def test_lookup_returns_copies(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store, args=[[1]])
        (found,) = await store.lookup_instances(InstanceQuery(uuid=added.uuid))
        found.args[0].append(2)
        found.state = State.CANCELED
        stored = await store.get(added.uuid)
        assert stored is not None
        assert (stored.args, stored.state) == ([[1]], State.SCHEDULED)


async def test_counts_per_kind_and_state(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        assert await store.counts() == {}
        now = await store.now()
        await store.add([make_instance(now, "kind.a", priority=1) for _ in range(3)])
        await store.add([make_instance(now, "kind.b") for _ in range(2)])
        await complete(store, await claim_one(store, ["kind.a"]))
        await claim_one(store, ["kind.a"])
        assert await store.counts() == {
            ("kind.a", State.COMPLETED): 1,
            ("kind.a", State.PROCESSING): 1,
            ("kind.a", State.SCHEDULED): 1,
            ("kind.b", State.SCHEDULED): 2,
        }


# -- history ------------------------------------------------------------------------------------


async def test_history_queries(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        a = await add_one(store, "kind.a")
        b = await add_one(store, "kind.b")
        cutoff = await tick(store)
        claimed = await claim_one(store, ["kind.a"])
        assert claimed.uuid == a.uuid
        await complete(store, claimed)

        everything = await store.history(HistoryQuery())
        assert states(everything) == [
            (a.uuid, State.CREATED),
            (a.uuid, State.SCHEDULED),
            (b.uuid, State.CREATED),
            (b.uuid, State.SCHEDULED),
            (a.uuid, State.PROCESSING),
            (a.uuid, State.COMPLETED),
        ]
        for earlier, later in itertools.pairwise(everything):
            assert (earlier.timestamp, earlier.seq) < (later.timestamp, later.seq)

        of_a = await store.history(HistoryQuery(uuid=a.uuid))
        assert [r.state for r in of_a] == [
            State.CREATED,
            State.SCHEDULED,
            State.PROCESSING,
            State.COMPLETED,
        ]
        assert all(r.kind == "kind.a" for r in of_a)
        assert states(await store.history(HistoryQuery(kind="kind.b"))) == [
            (b.uuid, State.CREATED),
            (b.uuid, State.SCHEDULED),
        ]
        assert await store.history(HistoryQuery(uuid=UNKNOWN_UUID)) == []
        assert states(await store.history(HistoryQuery(states=[State.SCHEDULED]))) == [
            (a.uuid, State.SCHEDULED),
            (b.uuid, State.SCHEDULED),
        ]
        assert states(await store.history(HistoryQuery(states=[State.CREATED]))) == [
            (a.uuid, State.CREATED),
            (b.uuid, State.CREATED),
        ]
        # Time bounds apply to the record's timestamp: after <= t < before.
        assert states(await store.history(HistoryQuery(after=cutoff))) == [
            (a.uuid, State.PROCESSING),
            (a.uuid, State.COMPLETED),
        ]
        assert len(await store.history(HistoryQuery(before=cutoff))) == 4
        # Order, limit and offset.
        newest_first = await store.history(HistoryQuery(descending=True))
        assert states(newest_first) == states(everything)[::-1]
        page = await store.history(HistoryQuery(limit=2, offset=1))
        assert states(page) == states(everything)[1:3]
        page = await store.history(HistoryQuery(uuid=a.uuid, descending=True, limit=1))
        assert [r.state for r in page] == [State.COMPLETED]
        # Pages that split an add's two records (Created, Scheduled) one from the other.
        for offset in range(6):
            page = await store.history(HistoryQuery(limit=1, offset=offset))
            assert states(page) == states(everything)[offset : offset + 1]
            page = await store.history(HistoryQuery(descending=True, limit=3, offset=offset))
            assert states(page) == states(newest_first)[offset : offset + 3]
        assert len({r.seq for r in everything}) == 6
        assert await store.history(HistoryQuery(offset=6)) == []


async def test_history_records_carry_the_attempt_and_details(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store, node="node-5")
        assert claimed.claim_token is not None
        outcome = Outcome(State.COMPLETED, result={"v": 1}, worker="worker-2")
        await store.finish(claimed.claim_token, outcome)
        records = await store.history(HistoryQuery(uuid=added.uuid))
        assert [r.attempt for r in records] == [0, 0, 1, 1]
        completed = records[-1]
        assert completed.details.get("node") == "node-5"
        assert completed.details.get("worker") == "worker-2"
        # Records returned are copies.
        completed.details["node"] = "changed"
        again = await store.history(HistoryQuery(uuid=added.uuid, states=[State.COMPLETED]))
        assert again[0].details.get("node") == "node-5"


# -- logs -------------------------------------------------------------------------------------


def log(
    inst: Instance, at: datetime, level: LogLevel, message: str, *, attempt: int = 1
) -> LogRecord:
    return LogRecord(inst.uuid, inst.kind, at, level, message, attempt, "app")


async def test_logs_queries(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        a = await add_one(store, "kind.a")
        b = await add_one(store, "kind.b")
        t0 = await store.now()

        def at(seconds: int) -> datetime:
            return t0 + timedelta(seconds=seconds)

        await store.append_logs(
            [
                log(a, at(0), LogLevel.DEBUG, "a0"),
                log(a, at(1), LogLevel.INFO, "a1"),
                log(b, at(2), LogLevel.WARN, "b2"),
                log(a, at(3), LogLevel.ERROR, "a3"),
            ]
        )
        await store.append_logs([log(b, at(4), LogLevel.INFO, "b4", attempt=2)])

        async def messages(query: LogQuery) -> list[str]:
            return [r.message for r in await store.logs(query)]

        assert await messages(LogQuery()) == ["a0", "a1", "b2", "a3", "b4"]
        assert await messages(LogQuery(uuid=a.uuid)) == ["a0", "a1", "a3"]
        assert await messages(LogQuery(uuid=UNKNOWN_UUID)) == []
        assert await messages(LogQuery(kind="kind.b")) == ["b2", "b4"]
        assert await messages(LogQuery(min_level=LogLevel.WARN)) == ["b2", "a3"]
        assert await messages(LogQuery(min_level=LogLevel.DEBUG)) == ["a0", "a1", "b2", "a3", "b4"]
        assert await messages(LogQuery(levels=[LogLevel.INFO, LogLevel.ERROR])) == [
            "a1",
            "a3",
            "b4",
        ]
        assert await messages(LogQuery(levels=[])) == []
        assert await messages(LogQuery(after=at(1), before=at(3))) == ["a1", "b2"]
        assert await messages(LogQuery(uuid=a.uuid, min_level=LogLevel.INFO)) == ["a1", "a3"]
        assert await messages(LogQuery(descending=True)) == ["b4", "a3", "b2", "a1", "a0"]
        assert await messages(LogQuery(limit=2, offset=1)) == ["a1", "b2"]
        assert await messages(LogQuery(descending=True, limit=2)) == ["b4", "a3"]
        assert await messages(LogQuery(offset=5)) == []

        (record,) = await store.logs(LogQuery(kind="kind.b", levels=[LogLevel.INFO]))
        assert (record.uuid, record.kind, record.timestamp) == (b.uuid, "kind.b", at(4))
        assert (record.level, record.attempt, record.logger) == (LogLevel.INFO, 2, "app")


async def test_logs_with_one_timestamp_keep_their_append_order(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        inst = await add_one(store)
        at = await store.now()
        first = [log(inst, at, LogLevel.INFO, f"m{i}") for i in range(5)]
        await store.append_logs(first)
        await store.append_logs([log(inst, at, LogLevel.INFO, f"m{i}") for i in range(5, 8)])
        records = await store.logs(LogQuery(uuid=inst.uuid))
        assert [r.message for r in records] == [f"m{i}" for i in range(8)]
        seqs = [r.seq for r in records]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == 8
        newest_first = await store.logs(LogQuery(uuid=inst.uuid, descending=True))
        assert [r.message for r in newest_first] == [f"m{i}" for i in reversed(range(8))]
        # The records given are not changed by the store, and those returned are copies.
        assert all(r.seq == 0 for r in first)
        records[0].message = "changed"
        assert (await store.logs(LogQuery(uuid=inst.uuid, limit=1)))[0].message == "m0"


async def test_append_no_logs_is_a_no_op(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await store.append_logs([])
        assert await store.logs(LogQuery()) == []
