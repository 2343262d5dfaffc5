"""Instances: serialisation, snapshots, end times, log levels and logging from executors."""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from gojob import Backoff, GojobError, Instance, LogLevel, Policy, State
from gojob.instance import new_uuid

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PLUS2 = timezone(timedelta(hours=2))


def _full_instance() -> Instance:
    """An instance whose every persisted field differs from its default."""
    return Instance(
        uuid="0b7e2b8e-5f7c-4d55-9d7a-6a1f1e0c9a01",
        kind="report",
        args=[1, "two", [3, 4], {"five": 5.5}, None, True],
        kwargs={"region": "eu", "limits": {"max": 10}, "tags": ["a", "b"]},
        state=State.TERMINATED,
        policy=Policy(
            max_retries=3,
            backoff=Backoff.exponential(2, factor=3, max=90, jitter=0.2),
            custom_backoff=True,
            timeout=42.5,
            priority=1,
            max_rescues=7,
        ),
        created_at=T0,
        scheduled_at=T0 + timedelta(seconds=1),
        attempts=4,
        failures=2,
        rescues=1,
        dedupe_key="sched@2025-03-01T12:00:00+00:00",
        schedule_id="sched",
        fire_time=T0 - timedelta(minutes=1),
        result={"rows": [1, 2, 3], "ok": False},
        error_message="ValueError: bad row",
        error_type="ValueError",
        traceback="Traceback (most recent call last):\n  ...\nValueError: bad row\n",
        node_id="node-a",
        worker="node-a/w3",
        claim_token="tok-123",
        lease_expires_at=T0 + timedelta(seconds=30),
        cancel_requested=True,
        processed_at=T0 + timedelta(seconds=2),
        completed_at=T0 + timedelta(seconds=3),
        terminated_at=(T0 + timedelta(seconds=4)).astimezone(PLUS2),
        canceled_at=T0 + timedelta(seconds=5),
        timed_out_at=T0 + timedelta(seconds=6, microseconds=123456),
        updated_at=T0 + timedelta(seconds=7),
    )


PERSISTED = [f.name for f in dataclasses.fields(Instance) if f.name != "_sink"]


def test_the_full_instance_sets_every_persisted_field() -> None:
    # Guards the round trip below: a field added to Instance without a value here (and
    # so perhaps without serialisation) fails this test.
    full = _full_instance()
    default = Instance(uuid="x", kind="y")
    for name in PERSISTED:
        assert getattr(full, name) != getattr(default, name), name


def test_json_round_trip_keeps_every_field() -> None:
    original = _full_instance()
    data = original.to_json()
    assert set(data) == set(PERSISTED)
    restored = Instance.from_json(json.loads(json.dumps(data)))
    for name in PERSISTED:
        assert getattr(restored, name) == getattr(original, name), name
    assert restored.state is State.TERMINATED
    assert restored.terminated_at is not None
    assert restored.terminated_at.utcoffset() == timedelta(hours=2)


def test_json_is_plain() -> None:
    data = _full_instance().to_json()
    assert data["state"] == "Terminated"
    assert data["created_at"] == "2025-03-01T12:00:00+00:00"
    assert data["policy"]["timeout"] == 42.5
    json.dumps(data)  # nothing that json cannot carry


def test_json_round_trip_of_a_fresh_instance() -> None:
    original = Instance(uuid=new_uuid(), kind="k")
    data = original.to_json()
    assert data["created_at"] is None
    assert data["policy"]["timeout"] is None
    restored = Instance.from_json(json.loads(json.dumps(data)))
    for name in PERSISTED:
        assert getattr(restored, name) == getattr(original, name), name


def test_from_json_fills_defaults_for_missing_keys() -> None:
    restored = Instance.from_json({"uuid": "u", "kind": "k", "state": "Scheduled"})
    assert restored.state is State.SCHEDULED
    assert restored.args == []
    assert restored.kwargs == {}
    assert restored.policy == Policy()
    assert restored.attempts == restored.failures == restored.rescues == 0
    assert restored.cancel_requested is False
    assert restored.created_at is None


def test_from_json_does_not_share_args_with_its_input() -> None:
    data: dict[str, Any] = {"uuid": "u", "kind": "k", "state": "Created", "args": [1]}
    restored = Instance.from_json(data)
    restored.args.append(2)
    assert data["args"] == [1]


def test_from_json_rejects_an_unknown_state() -> None:
    with pytest.raises(ValueError, match="Running"):
        Instance.from_json({"uuid": "u", "kind": "k", "state": "Running"})


def test_new_uuid_is_fresh_canonical_uuid_text() -> None:
    ids = [new_uuid() for _ in range(1000)]
    assert len(set(ids)) == len(ids)
    for text in ids[:20]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # canonical lower-case 8-4-4-4-12 form
        assert parsed.variant == uuid.RFC_4122


# -- identity and snapshots --------------------------------------------------------------


def test_equality_and_hash_are_by_uuid() -> None:
    a = Instance(uuid="same", kind="one", attempts=1)
    b = Instance(uuid="same", kind="two", attempts=9)
    c = Instance(uuid="other", kind="one")
    assert a == b
    assert hash(a) == hash(b)
    assert a != c
    assert a != "same"
    assert len({a, b, c}) == 2


def test_snapshot_is_independent_of_the_original() -> None:
    original = _full_instance()
    copy = original.snapshot()
    assert copy is not original
    for name in PERSISTED:
        assert getattr(copy, name) == getattr(original, name), name

    copy.state = State.SCHEDULED
    copy.attempts = 99
    copy.error_message = None
    copy.policy = Policy()
    assert original.state is State.TERMINATED
    assert original.attempts == 4
    assert original.error_message == "ValueError: bad row"
    assert original.policy.max_retries == 3

    original.failures = 50
    original.node_id = "node-b"
    assert copy.failures == 2
    assert copy.node_id == "node-a"


def test_snapshot_drops_the_log_sink() -> None:
    lines: list[str] = []
    original = Instance(uuid="u", kind="k")
    original._sink = lambda inst, level, message, logger: lines.append(message)
    copy = original.snapshot()
    assert copy._sink is None
    assert original._sink is not None
    original.info("still bound")
    assert lines == ["still bound"]
    with pytest.raises(GojobError):
        copy.info("not bound")


# -- finished_at -------------------------------------------------------------------------


@pytest.mark.parametrize("state", [State.CREATED, State.SCHEDULED, State.PROCESSING])
def test_finished_at_is_none_while_not_final(state: State) -> None:
    # A retried instance keeps the end time of its earlier failure: still not finished.
    inst = Instance(
        uuid="u",
        kind="k",
        state=state,
        terminated_at=T0,
        timed_out_at=T0 + timedelta(seconds=1),
        updated_at=T0 + timedelta(seconds=2),
    )
    assert inst.finished_at is None
    assert inst.is_final is False


@pytest.mark.parametrize(
    ("state", "field"),
    [
        (State.COMPLETED, "completed_at"),
        (State.TERMINATED, "terminated_at"),
        (State.CANCELED, "canceled_at"),
        (State.TIMEDOUT, "timed_out_at"),
    ],
)
def test_finished_at_is_the_end_time_of_a_final_instance(state: State, field: str) -> None:
    inst = Instance(uuid="u", kind="k", state=state, updated_at=T0 + timedelta(hours=1))
    setattr(inst, field, T0)
    assert inst.is_final is True
    assert inst.finished_at == T0


def test_finished_at_is_the_latest_end_time() -> None:
    # Failed, retried, timed out, retried, then canceled: the cancel is the end.
    inst = Instance(
        uuid="u",
        kind="k",
        state=State.CANCELED,
        terminated_at=T0,
        timed_out_at=T0 + timedelta(seconds=10),
        canceled_at=T0 + timedelta(seconds=20),
    )
    assert inst.finished_at == T0 + timedelta(seconds=20)
    # Failed twice, the second failure being the final one, an earlier one later in the
    # tuple order must not win because of its position.
    inst = Instance(
        uuid="u",
        kind="k",
        state=State.TERMINATED,
        completed_at=None,
        terminated_at=T0 + timedelta(seconds=30),
        timed_out_at=T0 + timedelta(seconds=5),
    )
    assert inst.finished_at == T0 + timedelta(seconds=30)


def test_finished_at_compares_times_not_their_offsets() -> None:
    later_in_utc = (T0 + timedelta(minutes=5)).astimezone(timezone(timedelta(hours=-5)))
    inst = Instance(
        uuid="u", kind="k", state=State.COMPLETED, terminated_at=T0, completed_at=later_in_utc
    )
    assert inst.finished_at == later_in_utc


def test_finished_at_falls_back_to_updated_at() -> None:
    inst = Instance(uuid="u", kind="k", state=State.CANCELED, updated_at=T0)
    assert inst.finished_at == T0
    assert Instance(uuid="u", kind="k", state=State.CANCELED).finished_at is None


# -- log levels --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("debug", LogLevel.DEBUG),
        ("INFO", LogLevel.INFO),
        (" Info ", LogLevel.INFO),
        ("warn", LogLevel.WARN),
        ("WARNING", LogLevel.WARN),
        ("error", LogLevel.ERROR),
        ("critical", LogLevel.ERROR),
        ("FATAL", LogLevel.ERROR),
        (10, LogLevel.DEBUG),
        (20, LogLevel.INFO),
        (30, LogLevel.WARN),
        (40, LogLevel.ERROR),
    ],
)
def test_log_level_parse(text: str | int, level: LogLevel) -> None:
    assert LogLevel.parse(text) is level


@pytest.mark.parametrize("text", ["", "trace", "notice", "warnings"])
def test_log_level_parse_rejects_unknown_names(text: str) -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        LogLevel.parse(text)


@pytest.mark.parametrize("number", [0, 15, 50])
def test_log_level_parse_rejects_unknown_numbers(number: int) -> None:
    with pytest.raises(ValueError, match=str(number)):
        LogLevel.parse(number)


@pytest.mark.parametrize(
    ("levelno", "level"),
    [
        (logging.NOTSET, LogLevel.DEBUG),
        (5, LogLevel.DEBUG),
        (logging.DEBUG, LogLevel.DEBUG),
        (19, LogLevel.DEBUG),
        (logging.INFO, LogLevel.INFO),
        (25, LogLevel.INFO),
        (logging.WARNING, LogLevel.WARN),
        (35, LogLevel.WARN),
        (logging.ERROR, LogLevel.ERROR),
        (logging.CRITICAL, LogLevel.ERROR),
        (100, LogLevel.ERROR),
    ],
)
def test_log_level_from_logging(levelno: int, level: LogLevel) -> None:
    assert LogLevel.from_logging(levelno) is level


def test_log_levels_are_ordered() -> None:
    assert LogLevel.DEBUG < LogLevel.INFO < LogLevel.WARN < LogLevel.ERROR


# -- logging from inside an executor -------------------------------------------------------


def test_logging_from_an_unbound_instance_raises_a_clear_error() -> None:
    inst = Instance(uuid="1234-abcd", kind="k")
    for method in (inst.debug, inst.info, inst.warn, inst.warning, inst.error):
        with pytest.raises(GojobError) as caught:
            method("hello %s", "world")
        message = str(caught.value)
        assert "1234-abcd" in message
        assert "not running here" in message
        assert "during an attempt or a processor" in message


def test_logging_goes_to_the_sink_with_its_level() -> None:
    seen: list[tuple[str, LogLevel, str, str]] = []
    inst = Instance(uuid="u", kind="k")
    inst._sink = lambda i, level, message, logger: seen.append((i.uuid, level, message, logger))
    inst.debug("d")
    inst.info("i %d + %d", 1, 2)
    inst.warn("w")
    inst.warning("w2 %s", "x")
    inst.error("e %r", "quoted")
    assert seen == [
        ("u", LogLevel.DEBUG, "d", ""),
        ("u", LogLevel.INFO, "i 1 + 2", ""),
        ("u", LogLevel.WARN, "w", ""),
        ("u", LogLevel.WARN, "w2 x", ""),
        ("u", LogLevel.ERROR, "e 'quoted'", ""),
    ]


def test_a_message_without_arguments_is_not_formatted() -> None:
    seen: list[str] = []
    inst = Instance(uuid="u", kind="k")
    inst._sink = lambda i, level, message, logger: seen.append(message)
    inst.info("100% done %s")
    assert seen == ["100% done %s"]
