"""Conformance: lease extension and finishing attempts (outcomes, retries, fencing)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import trio

from gojob.errors import InvalidTransition, LeaseLost
from gojob.instance import Instance
from gojob.state import State
from gojob.store.base import HistoryQuery, InstanceQuery, Outcome, Store

from . import (
    CLAIMED,
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


async def failed(store: Store, retry_in: float | None) -> Outcome:
    """A failed attempt's outcome, retried ``retry_in`` seconds from the store's now."""
    retry_at = None if retry_in is None else await store.now() + timedelta(seconds=retry_in)
    return Outcome(
        State.TERMINATED,
        error_message="ValueError: boom",
        error_type="ValueError",
        traceback="Traceback ...",
        retry_at=retry_at,
        worker="worker-1",
        counts_as_failure=True,
    )


# -- extend_leases ------------------------------------------------------------------------


async def test_extend_leases_extends_the_leases_held(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await add_one(store)
        await add_one(store)
        first = await claim_one(store, lease=LEASE)
        second = await claim_one(store, lease=LEASE)
        tokens = {token_of(first), token_of(second)}
        before = await store.now()
        reply = await store.extend_leases(NODE, tokens, LONG_LEASE)
        assert reply.extended == tokens
        assert reply.lost == frozenset()
        assert reply.cancel_requested == frozenset()
        stored = await store.get(first.uuid)
        assert stored is not None
        assert stored.lease_expires_at is not None
        assert stored.lease_expires_at >= before + timedelta(seconds=LONG_LEASE)
        # Past the original lease the attempt still holds: it is neither reaped nor fenced.
        assert first.lease_expires_at is not None
        await wait_past(store, first.lease_expires_at)
        assert await store.reap_expired() == []
        done = await complete(store, first)
        assert done.state is State.COMPLETED


async def test_extend_leases_reports_expired_and_unknown_tokens_lost(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await add_one(store)
        await add_one(store)
        await add_one(store)
        expiring = await claim_one(store, lease=LEASE)
        held = await claim_one(store, lease=LONG_LEASE)
        finished = await claim_one(store, lease=LONG_LEASE)
        await complete(store, finished)
        assert expiring.lease_expires_at is not None
        await wait_past(store, expiring.lease_expires_at)
        tokens = [token_of(expiring), token_of(held), token_of(finished), "no-such-token"]
        reply = await store.extend_leases(NODE, tokens, LONG_LEASE)
        assert reply.extended == {token_of(held)}
        assert reply.lost == {token_of(expiring), token_of(finished), "no-such-token"}
        # A lost lease is not revived: the attempt cannot finish.
        with pytest.raises(LeaseLost):
            await complete(store, expiring)


async def test_extend_leases_names_the_tokens_with_a_cancel_request(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await add_one(store)
        await add_one(store)
        target = await claim_one(store)
        other = await claim_one(store)
        await store.request_cancel(InstanceQuery(uuid=target.uuid))
        reply = await store.extend_leases(NODE, [token_of(target), token_of(other)], LONG_LEASE)
        assert reply.extended == {token_of(target), token_of(other)}
        assert reply.cancel_requested == {token_of(target)}


async def test_extend_leases_with_no_tokens_is_empty(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        reply = await store.extend_leases(NODE, [], LONG_LEASE)
        assert (reply.extended, reply.lost, reply.cancel_requested) == (
            frozenset(),
            frozenset(),
            frozenset(),
        )


# -- finish: outcomes ---------------------------------------------------------------------


async def test_finish_completed_stores_the_result(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store)
        before = await store.now()
        done = await store.finish(
            token_of(claimed), Outcome(State.COMPLETED, result={"n": [1, 2]}, worker="w-3")
        )
        after = await store.now()
        assert done.uuid == added.uuid
        assert done.state is State.COMPLETED
        assert done.is_final
        assert done.result == {"n": [1, 2]}
        assert done.completed_at is not None
        assert before <= done.completed_at <= after
        assert done.error_message is None
        assert (done.attempts, done.failures) == (1, 0)
        stored = await store.get(added.uuid)
        assert stored is not None
        assert stored.state is State.COMPLETED
        assert stored.result == {"n": [1, 2]}
        assert await history_states(store, added.uuid) == [*CLAIMED, State.COMPLETED]
        assert await store.claim(NODE, None, 10, LONG_LEASE) == []


async def test_finish_terminated_stores_the_error(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store)
        done = await store.finish(token_of(claimed), await failed(store, None))
        assert done.state is State.TERMINATED
        assert done.is_final
        assert done.error_message == "ValueError: boom"
        assert done.error_type == "ValueError"
        assert done.traceback == "Traceback ..."
        assert done.terminated_at is not None
        assert done.failures == 1
        stored = await store.get(added.uuid)
        assert stored is not None
        assert (stored.state, stored.error_type, stored.failures) == (
            State.TERMINATED,
            "ValueError",
            1,
        )
        record = await last_record(store, added.uuid)
        assert record.state is State.TERMINATED
        assert record.attempt == 1
        assert record.details.get("error") == "ValueError: boom"
        assert await history_states(store, added.uuid) == [*CLAIMED, State.TERMINATED]


async def test_finish_timed_out_is_final(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store)
        outcome = Outcome(
            State.TIMEDOUT,
            error_message="attempt timed out after 1.0s",
            reason="timeout",
            counts_as_failure=True,
        )
        done = await store.finish(token_of(claimed), outcome)
        assert done.state is State.TIMEDOUT
        assert done.timed_out_at is not None
        assert done.failures == 1
        assert done.error_message == "attempt timed out after 1.0s"
        assert await history_states(store, added.uuid) == [*CLAIMED, State.TIMEDOUT]


async def test_finish_canceled_is_final(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store)
        done = await store.finish(token_of(claimed), Outcome(State.CANCELED, reason="canceled"))
        assert done.state is State.CANCELED
        assert done.canceled_at is not None
        assert done.failures == 0
        assert await history_states(store, added.uuid) == [*CLAIMED, State.CANCELED]
        assert await store.claim(NODE, None, 10, LONG_LEASE) == []


async def test_finish_failed_with_retry_records_the_failure_then_reschedules(
    store: Store,
) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store)
        outcome = await failed(store, LEASE)
        done = await store.finish(token_of(claimed), outcome)
        assert done.state is State.SCHEDULED
        assert not done.is_final
        assert done.scheduled_at == outcome.retry_at
        assert done.failures == 1
        assert done.error_message == "ValueError: boom"
        records = await store.history(HistoryQuery(uuid=added.uuid))
        assert [r.state for r in records] == [*CLAIMED, State.TERMINATED, State.SCHEDULED]
        assert records[-2].details.get("error") == "ValueError: boom"

        # Not claimable before retry_at, claimable after it, as the second attempt.
        assert await store.claim(NODE, None, 10, LONG_LEASE) == []
        assert await store.next_due(None) == outcome.retry_at
        assert outcome.retry_at is not None
        await wait_past(store, outcome.retry_at)
        again = await claim_one(store)
        assert again.uuid == added.uuid
        assert (again.attempts, again.failures) == (2, 1)
        assert again.claim_token != claimed.claim_token


async def test_finish_timed_out_with_retry_reschedules(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store)
        retry_at = await store.now()
        outcome = Outcome(
            State.TIMEDOUT, error_message="timed out", retry_at=retry_at, counts_as_failure=True
        )
        done = await store.finish(token_of(claimed), outcome)
        assert done.state is State.SCHEDULED
        assert done.failures == 1
        assert await history_states(store, added.uuid) == [
            *CLAIMED,
            State.TIMEDOUT,
            State.SCHEDULED,
        ]
        assert (await claim_one(store)).uuid == added.uuid


async def test_finish_scheduled_releases_the_instance_to_the_queue(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store)
        done = await store.finish(token_of(claimed), Outcome(State.SCHEDULED, reason="released"))
        assert done.state is State.SCHEDULED
        assert (done.attempts, done.failures) == (1, 0)
        record = await last_record(store, added.uuid)
        assert record.state is State.SCHEDULED
        assert record.details.get("reason") == "released"
        assert await history_states(store, added.uuid) == [*CLAIMED, State.SCHEDULED]
        again = await claim_one(store)
        assert again.uuid == added.uuid
        assert (again.attempts, again.failures) == (2, 0)


async def test_finish_scheduled_with_retry_at_is_due_then(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store)
        retry_at = await store.now() + timedelta(seconds=LEASE)
        outcome = Outcome(State.SCHEDULED, retry_at=retry_at, reason="retry-requested")
        done = await store.finish(token_of(claimed), outcome)
        assert done.state is State.SCHEDULED
        assert done.scheduled_at == retry_at
        assert done.failures == 0
        assert await store.claim(NODE, None, 10, LONG_LEASE) == []
        await wait_past(store, retry_at)
        assert (await claim_one(store)).uuid == added.uuid


async def test_completion_after_a_retry_clears_the_error(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await add_one(store)
        claimed = await claim_one(store)
        retried = await store.finish(token_of(claimed), await failed(store, 0))
        assert retried.error_message is not None
        again = await claim_one(store)
        done = await complete(store, again, result=7)
        assert done.state is State.COMPLETED
        assert done.result == 7
        assert (done.error_message, done.error_type, done.traceback) == (None, None, None)
        assert done.failures == 1
        stored = await store.get(done.uuid)
        assert stored is not None
        assert (stored.error_message, stored.error_type, stored.traceback) == (None, None, None)


# -- finish: fencing and idempotence ---------------------------------------------------------


async def test_finish_with_an_expired_lease_is_refused_and_changes_nothing(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store, lease=LEASE)
        assert claimed.lease_expires_at is not None
        await wait_past(store, claimed.lease_expires_at)
        with pytest.raises(LeaseLost):
            await complete(store, claimed, result=1)
        stored = await store.get(added.uuid)
        assert stored is not None
        assert stored.state is State.PROCESSING
        assert stored.result is None
        assert stored.claim_token == claimed.claim_token
        assert await history_states(store, added.uuid) == CLAIMED


async def test_finish_after_the_instance_was_reaped_and_claimed_again_is_refused(
    store: Store,
) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        old = await claim_one(store, lease=LEASE, node="node-dead")
        assert old.lease_expires_at is not None
        await wait_past(store, old.lease_expires_at)
        assert [r.uuid for r in await store.reap_expired()] == [added.uuid]
        new = await claim_one(store, node="node-alive")
        assert new.claim_token != old.claim_token
        with pytest.raises(LeaseLost):
            await complete(store, old, result="stale")
        reply = await store.extend_leases("node-dead", [token_of(old)], LONG_LEASE)
        assert reply.lost == {token_of(old)}
        stored = await store.get(added.uuid)
        assert stored is not None
        assert (stored.state, stored.claim_token, stored.node_id) == (
            State.PROCESSING,
            new.claim_token,
            "node-alive",
        )
        done = await complete(store, new, result="fresh")
        assert done.result == "fresh"


async def test_finish_with_an_unknown_token_is_refused(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await add_one(store)
        await claim_one(store)
        with pytest.raises(LeaseLost):
            await store.finish("no-such-token", Outcome(State.COMPLETED))


async def test_repeating_a_finish_is_idempotent(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store)
        outcome = Outcome(State.COMPLETED, result=[1])
        first = await store.finish(token_of(claimed), outcome)
        second = await store.finish(token_of(claimed), outcome)
        assert (second.uuid, second.state, second.result) == (added.uuid, State.COMPLETED, [1])
        assert second.completed_at == first.completed_at
        assert await history_states(store, added.uuid) == [*CLAIMED, State.COMPLETED]


async def test_repeating_a_retrying_finish_is_idempotent(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store)
        outcome = await failed(store, 3600)
        first = await store.finish(token_of(claimed), outcome)
        second = await store.finish(token_of(claimed), outcome)
        assert (second.state, second.failures, second.scheduled_at) == (
            first.state,
            first.failures,
            first.scheduled_at,
        )
        assert second.failures == 1
        assert await history_states(store, added.uuid) == [
            *CLAIMED,
            State.TERMINATED,
            State.SCHEDULED,
        ]


async def test_finish_with_an_outcome_the_table_forbids_changes_nothing(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        added = await add_one(store)
        claimed = await claim_one(store)
        now = await store.now()
        for outcome in (
            Outcome(State.PROCESSING),
            Outcome(State.CREATED),
            Outcome(State.COMPLETED, result=1, retry_at=now),  # Completed -> Scheduled
            Outcome(State.CANCELED, retry_at=now),  # Canceled -> Scheduled
        ):
            with pytest.raises(InvalidTransition):
                await store.finish(token_of(claimed), outcome)
        stored = await store.get(added.uuid)
        assert stored is not None
        assert (stored.state, stored.claim_token, stored.result) == (
            State.PROCESSING,
            claimed.claim_token,
            None,
        )
        assert await history_states(store, added.uuid) == CLAIMED
        # The lease still holds: the attempt can still finish.
        assert (await complete(store, claimed, result=2)).result == 2


async def test_a_cancelled_finish_is_all_or_nothing(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        for delay in (0.0, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01):
            added = await add_one(store)
            claimed = await claim_one(store)
            outcome = await failed(store, 3600)
            with trio.move_on_after(delay):
                await store.finish(token_of(claimed), outcome)
            stored = await store.get(added.uuid)
            assert stored is not None
            states = await history_states(store, added.uuid)
            if stored.state is State.PROCESSING:
                assert states == CLAIMED
                assert stored.failures == 0
            else:
                assert stored.state is State.SCHEDULED
                assert states == [*CLAIMED, State.TERMINATED, State.SCHEDULED]
                assert stored.failures == 1
            # Either way, the attempt can (re)write its finish.
            done = await store.finish(token_of(claimed), outcome)
            assert (done.state, done.failures) == (State.SCHEDULED, 1)
            assert await history_states(store, added.uuid) == [
                *CLAIMED,
                State.TERMINATED,
                State.SCHEDULED,
            ]


async def test_finish_returns_a_copy(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        await add_one(store)
        claimed = await claim_one(store)
        result = {"items": [1]}
        done = await store.finish(token_of(claimed), Outcome(State.COMPLETED, result=result))
        result["items"].append(2)  # the caller's value
        assert done.result is not None
        done.result["items"].append(3)  # the returned snapshot
        stored = await store.get(done.uuid)
        assert stored is not None
        assert stored.result == {"items": [1]}
        (record,) = await store.history(HistoryQuery(uuid=done.uuid, states=[State.COMPLETED]))
        if "result" in record.details:
            assert record.details["result"] == {"items": [1]}


# -- finish_many (batch acknowledgement) --------------------------------------------------


async def add_then_claim(store: Store) -> Instance:
    added = await add_one(store)
    claimed = await claim_one(store)
    assert claimed.uuid == added.uuid
    return claimed


async def test_finish_many_applies_each_item_and_reports_refusals_in_place(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        done = await add_then_claim(store)
        retried = await add_then_claim(store)
        stale = await add_then_claim(store)
        await store.finish(token_of(stale), Outcome(State.COMPLETED, result=1))
        results = await store.finish_many(
            [
                (token_of(done), Outcome(State.COMPLETED, result=[1, 2])),
                ("no-such-token", Outcome(State.COMPLETED)),
                (token_of(retried), await failed(store, retry_in=60)),
            ]
        )
        assert len(results) == 3
        first, lost, third = results
        assert isinstance(first, Instance)
        assert first.state is State.COMPLETED
        assert first.result == [1, 2]
        assert isinstance(lost, LeaseLost)
        assert isinstance(third, Instance)
        assert third.state is State.SCHEDULED
        assert third.failures == 1
        assert await history_states(store, retried.uuid) == [
            *CLAIMED,
            State.TERMINATED,
            State.SCHEDULED,
        ]


async def test_finish_many_with_a_forbidden_outcome_writes_nothing(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        good = await add_then_claim(store)
        bad = await add_then_claim(store)
        with pytest.raises(InvalidTransition):
            await store.finish_many(
                [
                    (token_of(good), Outcome(State.COMPLETED)),
                    (token_of(bad), Outcome(State.PROCESSING)),
                ]
            )
        for inst in (good, bad):
            stored = await store.get(inst.uuid)
            assert stored is not None
            assert stored.state is State.PROCESSING
        # Both tokens still hold their leases and can finish normally.
        finished = await store.finish(token_of(good), Outcome(State.COMPLETED))
        assert finished.state is State.COMPLETED


async def test_finish_many_of_nothing_is_a_no_op(store: Store) -> None:
    with trio.fail_after(TIMEOUT):
        assert await store.finish_many([]) == []
