"""Conformance: adding instances, claiming them, next_due and the store clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import trio

from gojob.policy import Policy
from gojob.state import State
from gojob.store.base import Handover, HistoryQuery, InstanceQuery, Outcome, Store

from . import (
    KIND,
    LEASE,
    LONG_LEASE,
    NODE,
    TIMEOUT,
    add_one,
    claim_one,
    complete,
    history_states,
    make_instance,
    wait_past,
)

# -- add ------------------------------------------------------------------------------


async def test_add_one_returns_a_scheduled_snapshot(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        created = now - timedelta(seconds=1)
        given = make_instance(
            now, args=[1, {"a": [2]}], kwargs={"k": "v"}, priority=3, created_at=created
        )
        (added,) = await store.add([given])
        assert added.uuid == given.uuid
        assert added.kind == KIND
        assert added.state is State.SCHEDULED
        assert added.args == [1, {"a": [2]}]
        assert added.kwargs == {"k": "v"}
        assert added.policy == Policy(priority=3)
        assert added.created_at == created
        assert added.scheduled_at == given.scheduled_at
        assert (added.attempts, added.failures, added.rescues) == (0, 0, 0)
        assert added.claim_token is None
        assert not added.cancel_requested

        stored = await store.get(given.uuid)
        assert stored is not None
        assert stored.state is State.SCHEDULED
        assert stored.args == [1, {"a": [2]}]
        assert stored.kwargs == {"k": "v"}
        assert stored.policy == Policy(priority=3)
        assert stored.created_at == created
        assert stored.scheduled_at == given.scheduled_at


async def test_add_fills_created_at_from_the_store_clock(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        before = await store.now()
        inst = make_instance(before)
        inst.created_at = None
        (added,) = await store.add([inst])
        after = await store.now()
        assert added.created_at is not None
        assert before <= added.created_at <= after


async def test_add_batch_returns_one_snapshot_per_instance_in_order(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        given = [make_instance(now, f"kind.{i % 3}", args=[i]) for i in range(10)]
        added = await store.add(given)
        assert [a.uuid for a in added] == [g.uuid for g in given]
        assert [a.args for a in added] == [[i] for i in range(10)]
        assert all(a.state is State.SCHEDULED for a in added)
        found = await store.lookup_instances(InstanceQuery(uuids=[g.uuid for g in given]))
        assert {f.uuid for f in found} == {g.uuid for g in given}


async def test_add_empty_batch_adds_nothing(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        assert await store.add([]) == []
        assert await store.counts() == {}


async def test_a_handover_is_stored_and_returned_as_a_copy_would_be(store: Store) -> None:
    # The manager hands its new instances over: a store may return those very objects.
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        shared_args: list[object] = []
        shared_kwargs: dict[str, object] = {}
        given = [make_instance(now, args=shared_args, kwargs=shared_kwargs) for _ in range(3)]
        added = await store.add(Handover(given))
        assert [a.uuid for a in added] == [g.uuid for g in given]
        for a in added:
            got = await store.get(a.uuid)
            assert got is not None
            assert a.state is got.state is State.SCHEDULED
            fields = ("args", "kwargs", "created_at", "scheduled_at", "updated_at", "policy")
            assert [getattr(a, f) for f in fields] == [getattr(got, f) for f in fields]
        # Each snapshot owns its arguments, even where the given ones shared theirs.
        added[0].args.append(1)
        added[0].kwargs["x"] = 1
        assert (added[1].args, added[1].kwargs) == ([], {})
        assert (shared_args, shared_kwargs) == ([], {})
        again = await store.get(added[0].uuid)
        assert again is not None
        assert (again.args, again.kwargs) == ([], {})


async def test_add_records_created_then_scheduled_history(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        inst = await add_one(store)
        records = await store.history(HistoryQuery(uuid=inst.uuid))
        assert [r.state for r in records] == [State.CREATED, State.SCHEDULED]
        assert all(r.uuid == inst.uuid and r.kind == KIND for r in records)
        assert records[0].seq < records[1].seq


async def test_add_with_a_live_dedupe_key_returns_the_existing_instance(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        first = await add_one(store, dedupe_key="daily-report", args=[1])
        now = await store.now()
        again = make_instance(now, dedupe_key="daily-report", args=[2])
        other = make_instance(now, dedupe_key="other")
        result = await store.add([again, other])
        assert [r.uuid for r in result] == [first.uuid, other.uuid]
        assert result[0].args == [1]
        assert await store.get(again.uuid) is None
        # Still deduplicated while the first one runs.
        await claim_one(store)
        (running_dup,) = await store.add([make_instance(now, dedupe_key="daily-report")])
        assert running_dup.uuid == first.uuid
        found = await store.lookup_instances(InstanceQuery(dedupe_key="daily-report"))
        assert [f.uuid for f in found] == [first.uuid]


async def test_add_dedupes_within_one_batch(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        a = make_instance(now, dedupe_key="same")
        b = make_instance(now, dedupe_key="same")
        result = await store.add([a, b])
        assert [r.uuid for r in result] == [a.uuid, a.uuid]
        assert await store.get(b.uuid) is None


async def test_add_with_the_dedupe_key_of_a_final_instance_adds_a_new_one(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        first = await add_one(store, dedupe_key="key")
        await complete(store, await claim_one(store))
        second = await add_one(store, dedupe_key="key")
        assert second.uuid != first.uuid
        assert second.state is State.SCHEDULED
        # And the new one holds the key in turn.
        third = await add_one(store, dedupe_key="key")
        assert third.uuid == second.uuid


async def test_an_instance_waiting_for_a_retry_keeps_its_dedupe_key(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        first = await add_one(store, dedupe_key="key")
        claimed = await claim_one(store)
        assert claimed.claim_token is not None
        now = await store.now()
        failed = Outcome(
            State.TERMINATED,
            error_message="boom",
            retry_at=now + timedelta(seconds=60),
            counts_as_failure=True,
        )
        await store.finish(claimed.claim_token, failed)
        again = await add_one(store, dedupe_key="key")
        assert again.uuid == first.uuid


async def test_add_stores_copies_and_returns_copies(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        given = make_instance(now, args=[1, [2]], kwargs={"k": [3]})
        (added,) = await store.add([given])
        # Changing the instance given to add, or the snapshot it returned, changes nothing.
        given.args[1].append("given")
        given.kwargs["k"].append("given")
        given.kind = "changed"
        added.args.append("added")
        added.kwargs["new"] = 1
        added.state = State.COMPLETED
        added.policy = Policy(priority=0)
        stored = await store.get(given.uuid)
        assert stored is not None
        assert stored.kind == KIND
        assert stored.args == [1, [2]]
        assert stored.kwargs == {"k": [3]}
        assert stored.state is State.SCHEDULED
        assert stored.policy == Policy()
        # get() returns a copy too.
        stored.args.clear()
        stored.scheduled_at = None
        again = await store.get(given.uuid)
        assert again is not None
        assert again.args == [1, [2]]
        assert again.scheduled_at == given.scheduled_at


async def test_a_cancelled_add_is_all_or_nothing(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        for delay in (0.0, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01):
            now = await store.now()
            given = [make_instance(now, args=[i]) for i in range(20)]
            with trio.move_on_after(delay):
                await store.add(given)
            found = await store.lookup_instances(InstanceQuery(uuids=[g.uuid for g in given]))
            assert len(found) in (0, len(given))
            for inst in found:
                assert await history_states(store, inst.uuid) == [State.CREATED, State.SCHEDULED]


# -- claim ------------------------------------------------------------------------------


async def test_claim_takes_only_due_instances(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        due = await add_one(store)
        await add_one(store, delay=3600)
        claimed = await store.claim(NODE, None, 10, LONG_LEASE)
        assert [c.uuid for c in claimed] == [due.uuid]
        assert await store.claim(NODE, None, 10, LONG_LEASE) == []


async def test_claim_orders_by_priority_then_due_time_then_insertion(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        t = [now - timedelta(seconds=10 - i) for i in range(4)]  # t[0] < t[1] < ... < now
        spec = [  # (name, priority, due)
            ("p5-late", 5, t[3]),
            ("p1-late", 1, t[2]),
            ("p5-early", 5, t[0]),
            ("p1-early-a", 1, t[1]),
            ("p1-early-b", 1, t[1]),
            ("p9", 9, t[0]),
        ]
        given = []
        for name, priority, due in spec:
            inst = make_instance(now, args=[name], priority=priority)
            inst.scheduled_at = due
            given.append(inst)
        await store.add(given[:4])
        await store.add(given[4:])  # a later add: after p1-early-a at the same due time
        names = []
        for _ in range(len(spec)):
            names.append((await claim_one(store)).args[0])
        assert names == ["p1-early-a", "p1-early-b", "p1-late", "p5-early", "p5-late", "p9"]


async def test_claim_orders_across_kinds(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        given = [
            make_instance(now, "kind.x", args=["x5"], priority=5),
            make_instance(now, "kind.y", args=["y1"], priority=1),
            make_instance(now, "kind.z", args=["z3"], priority=3),
        ]
        await store.add(given)
        claimed = await store.claim(NODE, ["kind.x", "kind.y", "kind.z"], 3, LONG_LEASE)
        assert [c.args[0] for c in claimed] == ["y1", "z3", "x5"]


async def test_claim_takes_at_most_limit(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        await store.add([make_instance(now) for _ in range(5)])
        assert len(await store.claim(NODE, None, 3, LONG_LEASE)) == 3
        assert len(await store.claim(NODE, None, 3, LONG_LEASE)) == 2
        assert await store.claim(NODE, None, 3, LONG_LEASE) == []


async def test_claim_filters_by_kinds(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        a = [make_instance(now, "kind.a") for _ in range(2)]
        b = [make_instance(now, "kind.b") for _ in range(2)]
        c = [make_instance(now, "kind.c") for _ in range(2)]
        await store.add(a + b + c)
        assert await store.claim(NODE, ["no.such.kind"], 10, LONG_LEASE) == []
        assert await store.claim(NODE, [], 10, LONG_LEASE) == []
        got_a = await store.claim(NODE, ["kind.a"], 10, LONG_LEASE)
        assert {i.uuid for i in got_a} == {i.uuid for i in a}
        got_bc = await store.claim(NODE, ["kind.b", "kind.c", "no.such.kind"], 10, LONG_LEASE)
        assert {i.uuid for i in got_bc} == {i.uuid for i in b + c}
        d = make_instance(now, "kind.d")
        await store.add([d])
        got_any = await store.claim(NODE, None, 10, LONG_LEASE)
        assert [i.uuid for i in got_any] == [d.uuid]


async def test_claim_sets_the_attempt_fields_and_records_processing(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        before = await store.now()
        claimed = await claim_one(store, node="node-7", lease=LONG_LEASE)
        after = await store.now()
        assert claimed.uuid == added.uuid
        assert claimed.state is State.PROCESSING
        assert claimed.node_id == "node-7"
        assert claimed.attempts == 1
        assert claimed.claim_token
        assert claimed.processed_at is not None
        assert before <= claimed.processed_at <= after
        lease = timedelta(seconds=LONG_LEASE)
        assert claimed.lease_expires_at is not None
        assert before + lease <= claimed.lease_expires_at <= after + lease

        stored = await store.get(added.uuid)
        assert stored is not None
        assert stored.state is State.PROCESSING
        assert stored.claim_token == claimed.claim_token
        assert stored.node_id == "node-7"
        assert stored.attempts == 1
        assert stored.lease_expires_at == claimed.lease_expires_at

        records = await store.history(HistoryQuery(uuid=added.uuid))
        assert [r.state for r in records] == [State.CREATED, State.SCHEDULED, State.PROCESSING]
        assert records[-1].attempt == 1


async def test_every_claim_gets_a_fresh_token(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        await store.add([make_instance(now) for _ in range(5)])
        claimed = await store.claim(NODE, None, 5, LONG_LEASE)
        tokens = [c.claim_token for c in claimed]
        assert None not in tokens
        assert len(set(tokens)) == 5
        # Released and claimed again: the second attempt has a token of its own.
        first = claimed[0]
        assert first.claim_token is not None
        await store.finish(first.claim_token, Outcome(State.SCHEDULED, reason="released"))
        again = await claim_one(store)
        assert again.uuid == first.uuid
        assert again.attempts == 2
        assert again.claim_token not in tokens


async def test_concurrent_claimers_never_claim_an_instance_twice(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        given = [make_instance(now, f"kind.{i % 2}", args=[i]) for i in range(200)]
        await store.add(given)
        claims: dict[str, list[str]] = {}

        async def claimer(node: str) -> None:
            mine = claims.setdefault(node, [])
            while True:
                batch = await store.claim(node, ["kind.0", "kind.1"], 7, LONG_LEASE)
                if not batch:
                    return
                assert all(i.node_id == node for i in batch)
                mine.extend(i.uuid for i in batch)
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            for n in range(8):
                nursery.start_soon(claimer, f"node-{n}")

        everything = [uuid for uuids in claims.values() for uuid in uuids]
        assert len(everything) == len(set(everything)), "an instance was claimed twice"
        assert set(everything) == {g.uuid for g in given}
        counts = await store.counts()
        assert counts == {("kind.0", State.PROCESSING): 100, ("kind.1", State.PROCESSING): 100}


# -- next_due and due times ----------------------------------------------------------------


async def test_next_due_is_none_without_scheduled_instances(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        assert await store.next_due(None) is None
        await add_one(store)
        await claim_one(store)
        assert await store.next_due(None) is None  # the only instance runs


async def test_next_due_is_the_earliest_due_time_of_the_kinds(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        a_late = make_instance(now, "kind.a", delay=300)
        a_high = make_instance(now, "kind.a", delay=-20, priority=1)
        a_low = make_instance(now, "kind.a", delay=-30, priority=9)
        b_early = make_instance(now, "kind.b", delay=100)
        b_later = make_instance(now, "kind.b", delay=200)
        c_running = make_instance(now, "kind.c", delay=-60)
        await store.add([a_late, a_high, a_low, b_early, b_later, c_running])
        await claim_one(store, ["kind.c"])
        assert await store.next_due(["kind.a"]) == a_low.scheduled_at
        assert await store.next_due(["kind.b"]) == b_early.scheduled_at
        assert await store.next_due(["kind.c"]) is None
        assert await store.next_due(["kind.b", "kind.c"]) == b_early.scheduled_at
        assert await store.next_due(None) == a_low.scheduled_at
        assert await store.next_due(["no.such.kind"]) is None
        # After a claim of kind.a the others of that kind still count.
        await claim_one(store, ["kind.a"])  # a_high (priority 1)
        assert await store.next_due(["kind.a"]) == a_low.scheduled_at
        await claim_one(store, ["kind.a"])  # a_low
        assert await store.next_due(["kind.a"]) == a_late.scheduled_at


async def test_a_future_instance_is_claimable_once_due(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        inst = await add_one(store, delay=LEASE)
        assert inst.scheduled_at is not None
        assert await store.claim(NODE, None, 1, LONG_LEASE) == []
        assert await store.next_due([KIND]) == inst.scheduled_at
        await wait_past(store, inst.scheduled_at)
        claimed = await claim_one(store)
        assert claimed.uuid == inst.uuid


async def test_claim_skips_instances_not_due_in_favour_of_due_ones(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        # A future instance of better priority does not block a due one.
        future = await add_one(store, delay=3600, priority=0)
        due = await add_one(store, priority=9)
        claimed = await store.claim(NODE, None, 5, LONG_LEASE)
        assert [c.uuid for c in claimed] == [due.uuid]
        stored = await store.get(future.uuid)
        assert stored is not None
        assert stored.state is State.SCHEDULED


async def test_claim_keeps_the_policy_and_arguments(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        policy = Policy(max_retries=2, timeout=1.5, priority=2, max_rescues=1)
        now = await store.now()
        inst = make_instance(now, args=[{"x": 1}], kwargs={"y": [2]}, policy=policy)
        await store.add([inst])
        claimed = await claim_one(store)
        assert claimed.policy == policy
        assert claimed.args == [{"x": 1}]
        assert claimed.kwargs == {"y": [2]}
        assert await history_states(store, inst.uuid) == [
            State.CREATED,
            State.SCHEDULED,
            State.PROCESSING,
        ]


# -- lifecycle and clock -------------------------------------------------------------------


async def test_a_store_entered_again_stays_open_until_the_last_exit(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        async with store as again:
            assert again is store
            first = await add_one(store)
        # The fixture's entry is still open: the store still works and kept its data.
        assert await store.get(first.uuid) is not None
        await add_one(store)
        assert len(await store.claim(NODE, None, 10, LONG_LEASE)) == 2


async def test_now_is_aware_utc_and_does_not_go_back(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        readings = [await store.now() for _ in range(20)]
        for reading in readings:
            assert reading.tzinfo is not None
            assert reading.utcoffset() == timedelta(0)
        assert readings == sorted(readings)
        # Close to this machine's clock (a server's clock may differ a little).
        assert abs(readings[-1] - datetime.now(UTC)) < timedelta(seconds=5)


# -- add_and_claim ----------------------------------------------------------------------


async def test_add_and_claim_adds_then_claims_in_the_usual_order(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        older = await add_one(store, priority=5)
        now = await store.now()
        urgent = make_instance(now, priority=1)
        plain = make_instance(now, priority=5)
        later = make_instance(now, priority=0, delay=3600)
        other = make_instance(now, kind="job.other", priority=0)
        added, claimed = await store.add_and_claim(
            [urgent, plain, later, other], NODE, [KIND], 2, LONG_LEASE
        )
        assert [i.uuid for i in added] == [urgent.uuid, plain.uuid, later.uuid, other.uuid]
        assert all(i.state is State.SCHEDULED for i in added)
        # By priority, then due time and insertion: the older job before the new plain one;
        # neither the delayed one nor another kind.
        assert [i.uuid for i in claimed] == [urgent.uuid, older.uuid]
        assert all(i.state is State.PROCESSING and i.node_id == NODE for i in claimed)
        assert all(i.claim_token for i in claimed)
        for inst in claimed:
            assert await history_states(store, inst.uuid) == [
                State.CREATED,
                State.SCHEDULED,
                State.PROCESSING,
            ]
        # What was not claimed waits in the queue as by add().
        rest = await store.claim(NODE, [KIND], 10, LONG_LEASE)
        assert [i.uuid for i in rest] == [plain.uuid]
        assert (await store.get(later.uuid)).state is State.SCHEDULED  # type: ignore[union-attr]


async def test_add_and_claim_with_nothing_claimable_only_adds(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        now = await store.now()
        delayed = make_instance(now, delay=3600)
        added, claimed = await store.add_and_claim([delayed], NODE, [KIND], 5, LONG_LEASE)
        assert [i.uuid for i in added] == [delayed.uuid]
        assert claimed == []
        assert (await store.get(delayed.uuid)).state is State.SCHEDULED  # type: ignore[union-attr]
