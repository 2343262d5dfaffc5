"""The store conformance suite: one set of tests that every Store must pass.

The tests only use the contract of :mod:`gojob.store.base`; ``conftest.py`` holds
the registry of backends they run against. This module holds the helpers the
test modules share. They are written for real time and real I/O:

* every test is bounded with ``trio.fail_after(TIMEOUT)``;
* leases are short (:data:`LEASE`), and a test that needs one to expire waits
  until the *store's* clock has passed it (:func:`wait_past`), never a guess;
* times that must be told apart (cutoffs for time filters and pruning) come from
  :func:`tick`, which returns a store time strictly after everything done before.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any

import trio

from gojob.instance import HistoryRecord, Instance, new_uuid
from gojob.policy import Policy
from gojob.state import State
from gojob.store.base import Event, EventType, HistoryQuery, Outcome, Store, Subscription

__all__ = [
    "CLAIMED",
    "KIND",
    "LEASE",
    "LONG_LEASE",
    "NODE",
    "TIMEOUT",
    "add_one",
    "claim_one",
    "collect_events",
    "complete",
    "history_states",
    "last_record",
    "make_instance",
    "tick",
    "token_of",
    "wait_past",
]

TIMEOUT = 5.0
"""Upper bound of every test, in seconds."""
LEASE = 0.3
"""A short lease, in seconds, for the tests that let one expire."""
LONG_LEASE = 30.0
"""A lease that does not expire during a test."""
KIND = "job.a"
NODE = "node-a"
CLAIMED = [State.CREATED, State.SCHEDULED, State.PROCESSING]
"""The history of an instance added and claimed once."""


def make_instance(
    now: datetime,
    kind: str = KIND,
    *,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
    priority: int = 5,
    delay: float = 0.0,
    created_at: datetime | None = None,
    dedupe_key: str | None = None,
    schedule_id: str | None = None,
    fire_time: datetime | None = None,
    policy: Policy | None = None,
) -> Instance:
    """A new ``CREATED`` instance due ``delay`` seconds after ``now``."""
    return Instance(
        uuid=new_uuid(),
        kind=kind,
        args=[1, "two"] if args is None else args,
        kwargs={} if kwargs is None else kwargs,
        state=State.CREATED,
        policy=policy if policy is not None else Policy(priority=priority),
        created_at=now if created_at is None else created_at,
        scheduled_at=now + timedelta(seconds=delay),
        dedupe_key=dedupe_key,
        schedule_id=schedule_id,
        fire_time=fire_time,
    )


def token_of(inst: Instance) -> str:
    """The claim token of a claimed instance."""
    assert inst.claim_token is not None
    return inst.claim_token


async def add_one(store: Store, kind: str = KIND, **options: Any) -> Instance:
    """Add one instance due now (or ``delay`` seconds later) and return the stored snapshot."""
    now = await store.now()
    (added,) = await store.add([make_instance(now, kind, **options)])
    return added


async def claim_one(
    store: Store,
    kinds: Collection[str] | None = None,
    *,
    lease: float = LONG_LEASE,
    node: str = NODE,
) -> Instance:
    """Claim exactly one instance (failing the test if the claim gets another count)."""
    claimed = await store.claim(node, kinds, 1, lease)
    assert len(claimed) == 1, claimed
    assert claimed[0].claim_token is not None
    return claimed[0]


async def complete(store: Store, inst: Instance, result: Any = None) -> Instance:
    """Finish a claimed instance as ``COMPLETED``."""
    assert inst.claim_token is not None
    return await store.finish(inst.claim_token, Outcome(State.COMPLETED, result=result))


async def history_states(store: Store, uuid: str) -> list[State]:
    """The states of an instance's history records, oldest first."""
    return [r.state for r in await store.history(HistoryQuery(uuid=uuid))]


async def last_record(store: Store, uuid: str) -> HistoryRecord:
    """The newest history record of an instance."""
    records = await store.history(HistoryQuery(uuid=uuid, descending=True, limit=1))
    assert records
    return records[0]


async def wait_past(store: Store, moment: datetime) -> datetime:
    """Wait until the store's clock is strictly past ``moment``; return its time then."""
    while True:
        now = await store.now()
        if now > moment:
            return now
        await trio.sleep(min(0.05, max(0.001, (moment - now).total_seconds())))


async def tick(store: Store) -> datetime:
    """A store time strictly after every time the store returned so far."""
    return await wait_past(store, await store.now())


async def collect_events(sub: Subscription, done: Callable[[list[Event]], bool]) -> list[Event]:
    """Read batches until ``done(events so far)``; return the events (``RESYNC`` left out).

    Also checks the batch contract: every batch is a non-empty list.
    """
    events: list[Event] = []
    while not done(events):
        batch = await sub.__anext__()
        assert isinstance(batch, list)
        assert batch, "a notification batch must not be empty"
        events.extend(e for e in batch if e.type is not EventType.RESYNC)
    return events
