"""jobctl's pure pieces: value parsers, text formats, JSON of messages, settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from gojob._generated import gojob_pb2 as gpb
from gojob._generated import service_pb2 as pb
from gojob.jobctl import _values as v
from gojob.jobctl._args import DEFAULT_PORT, build_parser, target_of
from gojob.jobctl._output import fmt_seconds, message_data, table


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10),
        ("5m", 300),
        ("1h30m", 5400),
        ("250ms", 0.25),
        ("1.5h", 5400),
        ("2d", 172800),
        ("10", 10),
        ("2.5", 2.5),
        ("0", 0),
        (" 1H ", 3600),
        ("1m30s500ms", 90.5),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert v.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10x", "-5s", "s", "1h 30m", "5m10", "1..2s", "inf"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        v.parse_duration(text)


def test_datetimes() -> None:
    assert v.parse_datetime("2030-01-01T07:00:00Z") == datetime(2030, 1, 1, 7, tzinfo=UTC)
    paris = v.parse_datetime("2030-01-01T08:00+01:00")
    assert paris == datetime(2030, 1, 1, 7, tzinfo=UTC)
    with pytest.raises(ValueError, match="no time zone"):
        v.parse_datetime("2030-01-01T07:00:00")
    with pytest.raises(ValueError, match="invalid datetime"):
        v.parse_datetime("tomorrow")
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert v.parse_since("1h", now) == now - timedelta(hours=1)
    assert v.parse_since("2029-12-31T00:00:00+00:00", now) == datetime(2029, 12, 31, tzinfo=UTC)
    with pytest.raises(ValueError, match="duration ago"):
        v.parse_since("yesterday", now)


def test_states_levels_retries_json() -> None:
    assert v.parse_states(["completed", "Terminated,timedout"]) == [
        pb.JOB_STATE_COMPLETED,
        pb.JOB_STATE_TERMINATED,
        pb.JOB_STATE_TIMED_OUT,
    ]
    assert v.parse_states(["cancelled", "Canceled"]) == [pb.JOB_STATE_CANCELLED]
    assert v.parse_states(["active"]) == [
        pb.JOB_STATE_CREATED,
        pb.JOB_STATE_SCHEDULED,
        pb.JOB_STATE_PROCESSING,
    ]
    assert v.parse_states(None) == []
    with pytest.raises(ValueError, match="unknown state 'done'"):
        v.parse_states(["done"])
    assert v.parse_level("WARNING") == gpb.LOG_LEVEL_WARN
    with pytest.raises(ValueError, match="unknown log level"):
        v.parse_level("loud")
    assert v.parse_retries("3") == 3
    assert v.parse_retries("inf") == v.parse_retries("-1") == -1
    with pytest.raises(ValueError, match="invalid retry count"):
        v.parse_retries("-2")
    assert v.json_array("[1, 2]") == "[1, 2]"
    with pytest.raises(ValueError, match="not a number"):
        v.json_array("3")
    with pytest.raises(ValueError, match="not a boolean"):
        v.json_object("true")


def test_text_formats() -> None:
    assert [fmt_seconds(s) for s in (0, 0.25, 5, 1.5, 90, 3600, 93784)] == [
        "0s", "250ms", "5s", "1.5s", "1m30s", "1h", "1d2h3m4s",
    ]  # fmt: skip
    assert table(["A", "LONGER"], [["xyz", "1"], ["", "22"]]).splitlines() == [
        "A    LONGER",
        "xyz  1",
        "     22",
    ]


def test_message_data() -> None:
    inst = gpb.Instance(
        kind="add", uuid="u", state=pb.JOB_STATE_COMPLETED, args_json="[1,2]", kwargs_json="{}"
    )
    inst.result_json = "3"
    inst.timeout.FromTimedelta(timedelta(milliseconds=1500))
    inst.created_at.FromDatetime(datetime(2030, 1, 1, 8, tzinfo=timezone(timedelta(hours=1))))
    data = message_data(inst)
    assert data["state"] == "Completed"
    assert data["args"] == [1, 2]
    assert data["kwargs"] == {}
    assert data["result"] == 3
    assert data["timeout"] == 1.5
    assert data["created_at"] == "2030-01-01T07:00:00Z"
    assert data["error"] is None
    assert data["completed_at"] is None
    assert "args_json" not in data
    assert message_data(gpb.Instance())["result"] is None  # unset: null, same key
    stats = gpb.Statistics(unserved_kinds={"b": 2, "a": 1})
    assert message_data(stats)["unserved_kinds"] == {"a": 1, "b": 2}
    sched = gpb.RecurringSchedule(overlap=gpb.OVERLAP_SKIP)
    assert message_data(sched)["overlap"] == "skip"
    assert message_data(sched)["misfire"] == "catch-up-once"  # the default


def test_settings_from_flags_and_environment() -> None:
    default = target_of(build_parser().parse_args(["jobs"]), {})
    assert (default.host, default.port, default.tls, default.token) == (
        "127.0.0.1",
        DEFAULT_PORT,
        False,
        None,
    )
    assert default.metadata == {}
    env = {"GOJOB_HOST": "h", "GOJOB_PORT": "7", "GOJOB_TOKEN": "t", "GOJOB_TIMEOUT": "2s"}
    from_env = target_of(build_parser().parse_args(["jobs"]), env)
    assert (from_env.host, from_env.port, from_env.timeout) == ("h", 7, 2.0)
    assert from_env.metadata == {"authorization": "Bearer t"}
    flags = build_parser().parse_args(["--host", "f", "jobs", "--port", "8", "--token", "x"])
    from_flags = target_of(flags, env)
    assert (from_flags.host, from_flags.port, from_flags.token) == ("f", 8, "x")
    ca = target_of(build_parser().parse_args(["jobs"]), {"GOJOB_TLS_CA": "/ca.pem"})
    assert ca.tls
    assert ca.tls_ca == "/ca.pem"
    none = target_of(build_parser().parse_args(["--timeout", "0", "jobs"]), {})
    assert none.timeout is None
    with pytest.raises(ValueError, match="GOJOB_TLS='maybe'"):
        target_of(build_parser().parse_args(["jobs"]), {"GOJOB_TLS": "maybe"})
