"""Instance states and the one transition table every store and node obeys."""

from __future__ import annotations

import enum

from .errors import InvalidTransition

__all__ = ["ACTIVE", "FAILED", "FINAL", "TRANSITIONS", "State", "check_transition"]


class State(enum.Enum):
    """Where an instance is in its life. Values are the names used on disk and in APIs."""

    CREATED = "Created"
    """Built, not yet queued."""
    SCHEDULED = "Scheduled"
    """Queued, due at ``scheduled_at``."""
    PROCESSING = "Processing"
    """Claimed by a worker under a lease."""
    COMPLETED = "Completed"
    """The executor returned (or a terminate processor turned a failure into success)."""
    TERMINATED = "Terminated"
    """The executor raised, or its node died (history records ``abandoned``)."""
    CANCELED = "Canceled"
    """Canceled by a user, queued or running. Always final."""
    TIMEDOUT = "TimedOut"
    """The attempt's timeout expired."""

    # Enum's __hash__ is a Python function; states are hashed on every transition
    # (table lookups, set membership), so use identity hashing implemented in C.
    __hash__ = object.__hash__

    @property
    def is_final(self) -> bool:
        """True for the states an instance can end in (failed ones only when no retry is left)."""
        return self in FINAL

    @classmethod
    def parse(cls, text: str) -> State:
        """Parse a state name, case-insensitively; accepts go-job's spellings too."""
        key = text.strip().replace("_", "").replace("-", "").lower()
        alias = {"cancelled": "canceled", "timeout": "timedout"}.get(key, key)
        for state in cls:
            if state.value.lower() == alias:
                return state
        raise ValueError(f"unknown state {text!r}; expected one of {[s.value for s in cls]}")


FINAL = frozenset({State.COMPLETED, State.TERMINATED, State.CANCELED, State.TIMEDOUT})
FAILED = frozenset({State.TERMINATED, State.TIMEDOUT})
ACTIVE = frozenset({State.CREATED, State.SCHEDULED, State.PROCESSING})

# from -> allowed targets. Processing -> Scheduled is a release (drain, shrink, Retry signal)
# or the abandoned path; Terminated/TimedOut -> Scheduled is the retry path.
TRANSITIONS: dict[State, frozenset[State]] = {
    State.CREATED: frozenset({State.SCHEDULED, State.CANCELED}),
    State.SCHEDULED: frozenset({State.PROCESSING, State.CANCELED}),
    State.PROCESSING: frozenset(
        {State.COMPLETED, State.TERMINATED, State.CANCELED, State.TIMEDOUT, State.SCHEDULED}
    ),
    State.TERMINATED: frozenset({State.SCHEDULED}),
    State.TIMEDOUT: frozenset({State.SCHEDULED}),
    State.COMPLETED: frozenset(),
    State.CANCELED: frozenset(),
}


def check_transition(current: State, target: State) -> None:
    """Raise :class:`InvalidTransition` unless ``current -> target`` is in the table."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(f"{current.value} -> {target.value} is not an allowed transition")
