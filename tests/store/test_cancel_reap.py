"""Conformance: cancel requests, reaping expired leases, and requeueing final instances."""

from __future__ import annotations

from datetime import timedelta

import pytest
import trio

from gojob.errors import InstanceNotFound, InvalidTransition, LeaseLost
from gojob.instance import Instance
from gojob.policy import Policy
from gojob.state import State
from gojob.store.base import HistoryQuery, InstanceQuery, Outcome, Store

from . import (
    CLAIMED,
    KIND,
    LEASE,
    LONG_LEASE,
    NODE,
    TIMEOUT,
    add_one,
    claim_one,
    complete,
    history_states,
    last_record,
    token_of,
    wait_past,
)


async def expire(store: Store, inst: Instance) -> None:
    """Wait until the lease of a claimed instance has run out on the store's clock."""
    assert inst.lease_expires_at is not None
    await wait_past(store, inst.lease_expires_at)


# -- request_cancel --------------------------------------------------------------------------


async def test_cancel_of_a_queued_instance_is_immediate(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        queued = await add_one(store)
        future = await add_one(store, delay=3600)
        before = await store.now()
        matched = await store.request_cancel(InstanceQuery(uuids=[queued.uuid, future.uuid]))
        assert {m.uuid for m in matched} == {queued.uuid, future.uuid}
        assert all(m.state is State.CANCELED for m in matched)
        for uuid in (queued.uuid, future.uuid):
            stored = await store.get(uuid)
            assert stored is not None
            assert stored.state is State.CANCELED
            assert stored.canceled_at is not None
            assert stored.canceled_at >= before
            assert await history_states(store, uuid) == [
                State.CREATED,
                State.SCHEDULED,
                State.CANCELED,
            ]
        assert await store.claim(NODE, None, 10, LONG_LEASE) == []
        assert await store.next_due(None) is None


async def test_cancel_of_a_running_instance_flags_it(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store, node="node-9")
        (matched,) = await store.request_cancel(InstanceQuery(uuid=added.uuid))
        assert matched.uuid == added.uuid
        assert matched.state is State.PROCESSING
        assert matched.cancel_requested
        stored = await store.get(added.uuid)
        assert stored is not None
        assert stored.state is State.PROCESSING
        assert stored.cancel_requested
        assert stored.claim_token == claimed.claim_token
        assert await history_states(store, added.uuid) == CLAIMED
        # The node learns it through its lease extension and finishes the attempt.
        reply = await store.extend_leases("node-9", [token_of(claimed)], LONG_LEASE)
        assert reply.cancel_requested == {token_of(claimed)}
        done = await store.finish(token_of(claimed), Outcome(State.CANCELED, reason="canceled"))
        assert done.state is State.CANCELED
        assert await history_states(store, added.uuid) == [*CLAIMED, State.CANCELED]


async def test_a_cancel_request_wins_over_a_release(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store)
        await store.request_cancel(InstanceQuery(uuid=added.uuid))
        # The node releases the attempt (shutdown) before it saw the request.
        done = await store.finish(token_of(claimed), Outcome(State.SCHEDULED, reason="released"))
        assert done.state is State.CANCELED
        assert done.is_final
        states = await history_states(store, added.uuid)
        assert states[: len(CLAIMED)] == CLAIMED
        assert states[-1] is State.CANCELED
        assert await store.claim(NODE, None, 10, LONG_LEASE) == []


async def test_a_cancel_request_wins_over_a_retry(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store)
        await store.request_cancel(InstanceQuery(uuid=added.uuid))
        outcome = Outcome(
            State.TERMINATED,
            error_message="boom",
            retry_at=await store.now(),
            counts_as_failure=True,
        )
        done = await store.finish(token_of(claimed), outcome)
        assert done.state is State.CANCELED
        states = await history_states(store, added.uuid)
        assert states[: len(CLAIMED) + 1] == [*CLAIMED, State.TERMINATED]
        assert states[-1] is State.CANCELED
        assert await store.claim(NODE, None, 10, LONG_LEASE) == []


async def test_cancel_leaves_final_instances_alone(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        done = await complete(store, await claim_one(store), result=1)
        assert await store.request_cancel(InstanceQuery(uuid=added.uuid)) == []
        assert await store.request_cancel(InstanceQuery(kind=KIND)) == []
        stored = await store.get(added.uuid)
        assert stored is not None
        assert (stored.state, stored.result, stored.cancel_requested) == (
            State.COMPLETED,
            1,
            False,
        )
        assert stored.completed_at == done.completed_at
        assert await history_states(store, added.uuid) == [*CLAIMED, State.COMPLETED]


async def test_cancel_by_kind_and_by_states(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        running_a = await add_one(store, "kind.a", priority=1)
        await claim_one(store, ["kind.a"])
        queued_a = await add_one(store, "kind.a")
        queued_b = await add_one(store, "kind.b")

        # By state: only the queued ones of kind.a.
        matched = await store.request_cancel(InstanceQuery(kind="kind.a", states=[State.SCHEDULED]))
        assert [m.uuid for m in matched] == [queued_a.uuid]
        running = await store.get(running_a.uuid)
        assert running is not None
        assert not running.cancel_requested
        other = await store.get(queued_b.uuid)
        assert other is not None
        assert other.state is State.SCHEDULED

        # By kind: the running one of kind.a (the queued one is final by now).
        matched = await store.request_cancel(InstanceQuery(kind="kind.a"))
        assert [(m.uuid, m.cancel_requested) for m in matched] == [(running_a.uuid, True)]
        other = await store.get(queued_b.uuid)
        assert other is not None
        assert other.state is State.SCHEDULED


async def test_cancel_matches_every_instance_whatever_the_limit(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        for _ in range(5):
            await add_one(store)
        matched = await store.request_cancel(InstanceQuery(kind=KIND, limit=2, offset=1))
        assert len(matched) == 5
        assert await store.counts() == {(KIND, State.CANCELED): 5}


# -- reap_expired ----------------------------------------------------------------------------


async def test_reap_returns_an_abandoned_instance_to_the_queue(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store, lease=LEASE, node="node-dead")
        await expire(store, claimed)
        before = await store.now()
        (reaped,) = await store.reap_expired()
        after = await store.now()
        assert reaped.uuid == added.uuid
        assert reaped.state is State.SCHEDULED
        assert reaped.rescues == 1
        assert reaped.attempts == 1
        assert reaped.failures == 0
        assert reaped.claim_token is None
        assert reaped.scheduled_at is not None
        assert before <= reaped.scheduled_at <= after
        stored = await store.get(added.uuid)
        assert stored is not None
        assert (stored.state, stored.claim_token, stored.rescues) == (State.SCHEDULED, None, 1)
        states = await history_states(store, added.uuid)
        assert states == [*CLAIMED, State.TERMINATED, State.SCHEDULED]
        # The abandoned attempt is recorded as such.
        (record,) = await store.history(HistoryQuery(uuid=added.uuid, states=[State.TERMINATED]))
        assert record.details.get("reason") == "abandoned"
        assert record.attempt == 1
        # The old attempt is fenced off; the instance runs again.
        with pytest.raises(LeaseLost):
            await complete(store, claimed)
        again = await claim_one(store)
        assert (again.uuid, again.attempts, again.rescues) == (added.uuid, 2, 1)
        # Nothing left to reap.
        assert await store.reap_expired() == []


async def test_reap_terminates_an_instance_at_its_rescue_limit(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store, policy=Policy(max_rescues=1))
        first = await claim_one(store, lease=LEASE)
        await expire(store, first)
        (rescued,) = await store.reap_expired()
        assert (rescued.state, rescued.rescues) == (State.SCHEDULED, 1)
        second = await claim_one(store, lease=LEASE)
        await expire(store, second)
        (reaped,) = await store.reap_expired()
        assert reaped.state is State.TERMINATED
        assert reaped.is_final
        assert reaped.error_message
        assert reaped.terminated_at is not None
        assert reaped.claim_token is None
        assert await history_states(store, added.uuid) == [
            *CLAIMED,
            State.TERMINATED,
            State.SCHEDULED,
            State.PROCESSING,
            State.TERMINATED,
        ]
        record = await last_record(store, added.uuid)
        assert record.details.get("reason") == "abandoned"
        assert await store.claim(NODE, None, 10, LONG_LEASE) == []
        with pytest.raises(LeaseLost):
            await complete(store, second)


async def test_reap_with_no_rescue_allowed_terminates_at_once(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store, policy=Policy(max_rescues=0))
        claimed = await claim_one(store, lease=LEASE)
        await expire(store, claimed)
        (reaped,) = await store.reap_expired()
        assert (reaped.state, reaped.rescues) == (State.TERMINATED, 0)
        assert await history_states(store, added.uuid) == [*CLAIMED, State.TERMINATED]


async def test_reap_cancels_an_abandoned_instance_with_a_cancel_request(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store, lease=LEASE)
        await store.request_cancel(InstanceQuery(uuid=added.uuid))
        await expire(store, claimed)
        (reaped,) = await store.reap_expired()
        assert reaped.state is State.CANCELED
        assert reaped.claim_token is None
        assert (await history_states(store, added.uuid))[-1] is State.CANCELED
        with pytest.raises(LeaseLost):
            await store.finish(token_of(claimed), Outcome(State.CANCELED))


async def test_reap_leaves_unexpired_leases_alone(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        short = await add_one(store, priority=1)
        long = await add_one(store, priority=2)
        expiring = await claim_one(store, lease=LEASE)
        held = await claim_one(store, lease=LONG_LEASE)
        assert (expiring.uuid, held.uuid) == (short.uuid, long.uuid)
        assert await store.reap_expired() == []
        await expire(store, expiring)
        assert [r.uuid for r in await store.reap_expired()] == [short.uuid]
        stored = await store.get(long.uuid)
        assert stored is not None
        assert (stored.state, stored.claim_token) == (State.PROCESSING, held.claim_token)
        assert (await complete(store, held)).state is State.COMPLETED


# -- requeue -----------------------------------------------------------------------------------


async def test_requeue_runs_a_final_instance_again(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store)
        failure = Outcome(State.TERMINATED, error_message="boom", counts_as_failure=True)
        await store.finish(token_of(claimed), failure)
        due = await store.now() + timedelta(seconds=LEASE)
        requeued = await store.requeue(added.uuid, due)
        assert requeued.state is State.SCHEDULED
        assert requeued.scheduled_at == due
        assert requeued.failures == 0
        record = await last_record(store, added.uuid)
        assert record.state is State.SCHEDULED
        assert record.details.get("reason") == "requeued"
        assert await history_states(store, added.uuid) == [
            *CLAIMED,
            State.TERMINATED,
            State.SCHEDULED,
        ]
        assert await store.claim(NODE, None, 10, LONG_LEASE) == []
        await wait_past(store, due)
        again = await claim_one(store)
        assert (again.uuid, again.attempts, again.failures) == (added.uuid, 2, 0)
        # The first attempt's token does not hold the new attempt's lease.
        with pytest.raises(LeaseLost):
            await complete(store, claimed)


async def test_requeue_of_canceled_and_completed_instances(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        canceled = await add_one(store)
        await store.request_cancel(InstanceQuery(uuid=canceled.uuid))
        completed = await add_one(store)
        await complete(store, await claim_one(store))
        now = await store.now()
        for uuid in (canceled.uuid, completed.uuid):
            requeued = await store.requeue(uuid, now)
            assert requeued.state is State.SCHEDULED
        claimed = await store.claim(NODE, None, 10, LONG_LEASE)
        assert {c.uuid for c in claimed} == {canceled.uuid, completed.uuid}


async def test_requeue_of_an_active_instance_is_invalid(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        queued = await add_one(store, priority=9)
        running = await add_one(store, priority=1)
        await claim_one(store)
        now = await store.now()
        for uuid in (queued.uuid, running.uuid):
            before = await store.get(uuid)
            with pytest.raises(InvalidTransition):
                await store.requeue(uuid, now)
            after = await store.get(uuid)
            assert before is not None
            assert after is not None
            assert (after.state, after.scheduled_at) == (before.state, before.scheduled_at)


async def test_requeue_of_an_unknown_instance_is_not_found(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        with pytest.raises(InstanceNotFound):
            await store.requeue("00000000-0000-0000-0000-000000000000", await store.now())


async def test_requeue_refuses_while_another_instance_holds_the_dedupe_key(
    store: Store,
) -> None:
    with trio.fail_after(TIMEOUT):
        first = await add_one(store, dedupe_key="key")
        await complete(store, await claim_one(store))
        second = await add_one(store, dedupe_key="key")
        assert second.uuid != first.uuid
        with pytest.raises(InvalidTransition):
            await store.requeue(first.uuid, await store.now())
        stored = await store.get(first.uuid)
        assert stored is not None
        assert stored.state is State.COMPLETED
        # Once the holder is final, the first one can run again and holds the key.
        await store.request_cancel(InstanceQuery(uuid=second.uuid))
        requeued = await store.requeue(first.uuid, await store.now())
        assert requeued.state is State.SCHEDULED
        assert (await add_one(store, dedupe_key="key")).uuid == first.uuid
