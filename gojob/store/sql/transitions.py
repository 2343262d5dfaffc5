"""The state changes of the SQL stores, decided in plain Python on loaded instances.

No I/O here: each function changes an :class:`Instance` loaded from its row and
records what to write (the instance's mutable columns, history rows) and what to
announce (events) in a :class:`Changes`; :mod:`.ops` then writes it all in the
same transaction. The rules are those of the contract, as the memory store
applies them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...errors import LeaseLost
from ...instance import Instance
from ...state import State, check_transition
from ..base import (
    Event,
    EventType,
    Outcome,
    apply_outcome_fields,
    copy_json,
    outcome_details,
)
from .rows import history_params, to_us

__all__ = [
    "Changes",
    "cancel_one",
    "check_outcome",
    "detach",
    "finish_one",
    "reap_one",
    "requeue_one",
]


class Changes:
    """What one transaction writes and announces, collected while deciding."""

    __slots__ = ("dirty", "events", "history", "now", "now_us")

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.now_us = to_us(now)
        self.history: list[dict[str, Any]] = []
        self.events: list[Event] = []
        self.dirty: dict[str, Instance] = {}
        """Instances whose mutable columns must be written back, by uuid."""

    def record(
        self,
        inst: Instance,
        state: State,
        info: dict[str, Any] | None = None,
        preceded_by: State | None = None,
    ) -> None:
        """A history record of ``inst`` in ``state`` (no transition check), after one of
        ``preceded_by`` without details when given (both in one row)."""
        self.history.append(history_params(inst, state, self.now_us, info, preceded_by))

    def transition(self, inst: Instance, state: State, info: dict[str, Any] | None = None) -> None:
        """Move ``inst`` to ``state`` (checked against the table), with its history record."""
        check_transition(inst.state, state)
        inst.state = state
        inst.updated_at = self.now
        self.record(inst, state, info)
        self.events.append(Event(EventType.STATE, inst.uuid, inst.kind, state, inst.node_id))
        self.dirty[inst.uuid] = inst

    def due(self, when: datetime | None, kind: str | None) -> None:
        self.events.append(Event(EventType.DUE, kind=kind, due=when))


def check_outcome(outcome: Outcome) -> None:
    """Raise InvalidTransition for an outcome the table forbids after Processing."""
    check_transition(State.PROCESSING, outcome.state)
    if outcome.retry_at is not None and outcome.state is not State.SCHEDULED:
        check_transition(outcome.state, State.SCHEDULED)


def detach(inst: Instance) -> Instance:
    """A snapshot sharing no list or dict with ``inst``."""
    clone = inst.snapshot()
    clone.args = copy_json(inst.args)
    clone.kwargs = copy_json(inst.kwargs)
    clone.result = copy_json(inst.result)
    return clone


def finish_one(
    inst: Instance | None, token: str, outcome: Outcome, ch: Changes, returning: bool = True
) -> Instance | LeaseLost | None:
    """Apply ``outcome`` to the attempt holding ``token`` (``inst`` is its instance, if
    any), or refuse it; see :meth:`Store.finish_many`. ``outcome`` was checked already.
    Returns the instance after the change (None if not ``returning``)."""
    now = ch.now
    if inst is None or inst.claim_token != token:
        return LeaseLost(f"claim token {token} no longer holds a lease")
    if inst.state is not State.PROCESSING:
        return detach(inst)  # a repeated finish: idempotent
    if inst.lease_expires_at is None or inst.lease_expires_at < now:
        return LeaseLost(f"claim token {token} no longer holds a lease (expired)")
    requeue = outcome.state is State.SCHEDULED or outcome.retry_at is not None
    apply_outcome_fields(inst, outcome, now)
    if outcome.result is not None:
        inst.result = copy_json(inst.result)  # apart from the caller's value
    inst.lease_expires_at = None
    ch.transition(inst, outcome.state, outcome_details(outcome, inst.node_id))
    if requeue:
        due = outcome.retry_at or now
        if outcome.state is not State.SCHEDULED:
            ch.transition(inst, State.SCHEDULED, {"reason": "retry", "due": due.isoformat()})
        inst.scheduled_at = due
        if inst.cancel_requested:
            # The attempt did not honour the cancel request: it applies now that the
            # instance is queued, as it would to any queued instance.
            inst.canceled_at = now
            ch.transition(inst, State.CANCELED, {"reason": "canceled"})
        else:
            ch.due(due, inst.kind)
    return detach(inst) if returning else None


def cancel_one(inst: Instance, ch: Changes) -> None:
    """Cancel a queued instance at once, or flag a running one (CANCEL event)."""
    if inst.state in (State.CREATED, State.SCHEDULED):
        inst.canceled_at = ch.now
        ch.transition(inst, State.CANCELED, {"reason": "canceled"})
    elif inst.state is State.PROCESSING:
        inst.cancel_requested = True
        inst.updated_at = ch.now
        ch.events.append(Event(EventType.CANCEL, inst.uuid, inst.kind, None, inst.node_id))
        ch.dirty[inst.uuid] = inst


def reap_one(inst: Instance, ch: Changes) -> None:
    """Return an instance whose lease expired to the queue (or end it); see
    :meth:`Store.reap_expired`."""
    now = ch.now
    node = inst.node_id
    inst.claim_token = None
    inst.lease_expires_at = None
    if inst.cancel_requested:
        inst.canceled_at = now
        ch.transition(inst, State.CANCELED, {"reason": "abandoned", "node": node})
    elif inst.rescues >= inst.policy.max_rescues:
        inst.terminated_at = now
        inst.error_message = f"abandoned by node {node}; rescue limit reached"
        inst.error_type = "Abandoned"
        ch.transition(
            inst,
            State.TERMINATED,
            {"reason": "abandoned", "node": node, "error": inst.error_message},
        )
    else:
        inst.rescues += 1
        ch.transition(inst, State.TERMINATED, {"reason": "abandoned", "node": node})
        inst.scheduled_at = now
        ch.transition(inst, State.SCHEDULED, {"reason": "rescue"})
        ch.due(now, inst.kind)


def requeue_one(inst: Instance, due: datetime, ch: Changes) -> None:
    """Put a final instance back in the queue (the caller checked it may be)."""
    # An operator may requeue whatever the final state: a new Scheduled entry rather
    # than a step of the retry table.
    inst.state = State.SCHEDULED
    inst.failures = 0
    inst.rescues = 0
    inst.cancel_requested = False
    inst.scheduled_at = due
    inst.updated_at = ch.now
    ch.record(inst, State.SCHEDULED, {"reason": "requeued", "due": due.isoformat()})
    ch.events.append(Event(EventType.STATE, inst.uuid, inst.kind, State.SCHEDULED))
    ch.dirty[inst.uuid] = inst
    ch.due(due, inst.kind)
