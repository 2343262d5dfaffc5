"""The state enum and the one transition table every store and node obeys."""

from __future__ import annotations

import itertools

import pytest

from gojob import GojobError, InvalidTransition, State
from gojob.state import ACTIVE, FAILED, FINAL, TRANSITIONS, check_transition

# The table as DESIGN.md states it, written out independently of gojob.state.
C, S, P = State.CREATED, State.SCHEDULED, State.PROCESSING
OK, TERM, CANC, TOUT = State.COMPLETED, State.TERMINATED, State.CANCELED, State.TIMEDOUT

EXPECTED_ALLOWED = frozenset(
    {
        (C, S),  # enqueued
        (C, CANC),  # canceled before it was queued
        (S, P),  # claimed
        (S, CANC),  # canceled while queued
        (P, OK),  # the executor returned
        (P, TERM),  # it raised, or its node died
        (P, CANC),  # canceled while running
        (P, TOUT),  # its timeout expired
        (P, S),  # released (drain, shrink, Retry signal) or rescued
        (TERM, S),  # retried after a failure
        (TOUT, S),  # retried after a timeout
    }
)
ALL_PAIRS = list(itertools.product(State, State))
ALLOWED = [pair for pair in ALL_PAIRS if pair in EXPECTED_ALLOWED]
FORBIDDEN = [pair for pair in ALL_PAIRS if pair not in EXPECTED_ALLOWED]


def _pair_id(pair: tuple[State, State]) -> str:
    return f"{pair[0].value}->{pair[1].value}"


def test_the_pair_lists_cover_the_whole_table() -> None:
    assert len(ALLOWED) == len(EXPECTED_ALLOWED) == 11
    assert len(FORBIDDEN) == len(State) ** 2 - 11 == 38


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(State)


@pytest.mark.parametrize("pair", ALLOWED, ids=_pair_id)
def test_allowed_transition(pair: tuple[State, State]) -> None:
    current, target = pair
    check_transition(current, target)  # does not raise
    assert target in TRANSITIONS[current]


@pytest.mark.parametrize("pair", FORBIDDEN, ids=_pair_id)
def test_forbidden_transition(pair: tuple[State, State]) -> None:
    current, target = pair
    with pytest.raises(InvalidTransition) as caught:
        check_transition(current, target)
    expected = f"{current.value} -> {target.value} is not an allowed transition"
    assert str(caught.value) == expected
    assert target not in TRANSITIONS[current]


def test_invalid_transition_is_a_gojob_error_and_a_value_error() -> None:
    with pytest.raises(GojobError):
        check_transition(State.COMPLETED, State.SCHEDULED)
    with pytest.raises(ValueError, match="Canceled -> Processing"):
        check_transition(State.CANCELED, State.PROCESSING)


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.value)
def test_no_state_transitions_to_itself(state: State) -> None:
    with pytest.raises(InvalidTransition):
        check_transition(state, state)


def test_completed_and_canceled_are_dead_ends() -> None:
    assert TRANSITIONS[State.COMPLETED] == frozenset()
    assert TRANSITIONS[State.CANCELED] == frozenset()


# -- is_final and the state groups -------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "final"),
    [(C, False), (S, False), (P, False), (OK, True), (TERM, True), (CANC, True), (TOUT, True)],
    ids=lambda v: v.value if isinstance(v, State) else str(v),
)
def test_is_final(state: State, final: bool) -> None:
    assert state.is_final is final
    assert (state in FINAL) is final
    assert (state in ACTIVE) is not final


def test_groups() -> None:
    assert {OK, TERM, CANC, TOUT} == FINAL
    assert {TERM, TOUT} == FAILED
    assert {C, S, P} == ACTIVE
    assert set(State) == FINAL | ACTIVE
    assert not FINAL & ACTIVE
    assert FAILED <= FINAL


def test_states_hash_by_identity_and_work_as_keys() -> None:
    table = {state: state.value for state in State}
    assert all(table[state] == state.value for state in State)
    assert hash(State.CANCELED) == hash(State.CANCELED)
    assert len({*State, *State}) == len(State)


# -- parse ---------------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.value)
def test_parse_round_trips_every_value(state: State) -> None:
    assert State.parse(state.value) is state
    assert State.parse(state.value.upper()) is state
    assert State.parse(state.value.lower()) is state
    assert State.parse(state.name) is state


@pytest.mark.parametrize(
    ("text", "state"),
    [
        # go-job's wire enum spellings
        ("CANCELLED", State.CANCELED),
        ("TIMED_OUT", State.TIMEDOUT),
        ("COMPLETED", State.COMPLETED),
        ("TERMINATED", State.TERMINATED),
        ("PROCESSING", State.PROCESSING),
        ("SCHEDULED", State.SCHEDULED),
        ("CREATED", State.CREATED),
        # other spellings people type
        ("cancelled", State.CANCELED),
        ("Cancelled", State.CANCELED),
        ("canceled", State.CANCELED),
        ("timed-out", State.TIMEDOUT),
        ("timed_out", State.TIMEDOUT),
        ("timeout", State.TIMEDOUT),
        ("TimedOut", State.TIMEDOUT),
        ("  completed\n", State.COMPLETED),
    ],
)
def test_parse_accepts_other_spellings(text: str, state: State) -> None:
    assert State.parse(text) is state


@pytest.mark.parametrize("text", ["", "   ", "done", "cancel", "timed", "Complete", "RUNNING"])
def test_parse_rejects_unknown_names(text: str) -> None:
    with pytest.raises(ValueError, match="unknown state") as caught:
        State.parse(text)
    # The message lists what is accepted.
    for state in State:
        assert state.value in str(caught.value)
