"""Unit tests of gojob.schedule: pure next-fire computation, pinned to exact instants."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gojob.errors import InvalidSchedule
from gojob.schedule import (
    SKIP_RECORD_LIMIT,
    Cron,
    Every,
    FirePlan,
    Misfire,
    Overlap,
    Trigger,
    cron_or_every,
    parse_interval,
    plan_fires,
    schedule_id,
    trigger_from_json,
)

NEW_YORK = "America/New_York"
PARIS = "Europe/Paris"
LORD_HOWE = "Australia/Lord_Howe"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    """An aware UTC datetime: utc(2025, 3, 9, 7, 0)."""
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def fires(trigger: Trigger, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire instants strictly after ``after``."""
    result: list[datetime] = []
    for _ in range(count):
        after = trigger.next_fire(after)
        result.append(after)
    return result


def seconds_range(first: datetime, last: datetime, step: int) -> list[datetime]:
    """Instants from ``first`` to ``last`` inclusive, ``step`` seconds apart."""
    count = int((last - first).total_seconds()) // step + 1
    return [first + timedelta(seconds=step * i) for i in range(count)]


# --------------------------------------------------------------------------- policies


def test_policy_enums_have_stable_values() -> None:
    assert [m.value for m in Overlap] == ["allow", "skip", "wait"]
    assert [m.value for m in Misfire] == ["catch_up_once", "catch_up_all", "skip"]
    assert Misfire("skip") is Misfire.SKIP


# ------------------------------------------------------------------------------ Every


def test_every_fires_on_the_anchor_grid() -> None:
    every = Every(timedelta(seconds=30), utc(2025, 1, 1, 12, 0, 0))
    assert fires(every, utc(2025, 1, 1, 12, 0, 0), 3) == [
        utc(2025, 1, 1, 12, 0, 30),
        utc(2025, 1, 1, 12, 1, 0),
        utc(2025, 1, 1, 12, 1, 30),
    ]
    assert every.next_fire(utc(2025, 1, 1, 12, 0, 29, 999999)) == utc(2025, 1, 1, 12, 0, 30)


def test_every_does_not_drift_after_a_late_run() -> None:
    every = Every(timedelta(minutes=10), utc(2025, 1, 1, 0, 0, 7))
    # A run that finished 9 min 58 s late asks for its next slot: it stays on the grid.
    assert every.next_fire(utc(2025, 1, 1, 0, 20, 5)) == utc(2025, 1, 1, 0, 20, 7)
    assert every.next_fire(utc(2025, 1, 1, 0, 20, 7)) == utc(2025, 1, 1, 0, 30, 7)
    # A million slots on, still exact (integer arithmetic, no float accumulation).
    assert every.next_fire(utc(2044, 1, 9, 2, 40, 0)) == utc(2044, 1, 9, 2, 40, 7)


def test_every_before_anchor_returns_anchor() -> None:
    every = Every(timedelta(hours=1), utc(2025, 6, 1, 9, 0))
    assert every.next_fire(utc(2025, 5, 20, 0, 0)) == utc(2025, 6, 1, 9, 0)
    assert every.next_fire(utc(2025, 6, 1, 8, 59, 59, 999999)) == utc(2025, 6, 1, 9, 0)
    # The anchor itself has fired once ``after`` reaches it.
    assert every.next_fire(utc(2025, 6, 1, 9, 0)) == utc(2025, 6, 1, 10, 0)


def test_every_returns_utc_and_stores_the_anchor_in_utc() -> None:
    paris_anchor = datetime(2025, 7, 1, 14, 0, tzinfo=ZoneInfo(PARIS))
    every = Every(timedelta(hours=6), paris_anchor)
    assert every.anchor == utc(2025, 7, 1, 12, 0)
    assert every.anchor is not None
    assert every.anchor.tzinfo is UTC
    assert every == Every(timedelta(hours=6), utc(2025, 7, 1, 12, 0))
    after = datetime(2025, 7, 1, 15, 0, tzinfo=ZoneInfo(NEW_YORK))  # 19:00 UTC
    result = every.next_fire(after)
    assert result == utc(2025, 7, 2, 0, 0)
    assert result.tzinfo is UTC


def test_every_with_anchor_and_anchor_required() -> None:
    unanchored = Every(timedelta(minutes=5))
    with pytest.raises(InvalidSchedule, match="anchor required"):
        unanchored.next_fire(utc(2025, 1, 1))
    anchored = unanchored.with_anchor(utc(2025, 1, 1, 0, 2))
    assert anchored == Every(timedelta(minutes=5), utc(2025, 1, 1, 0, 2))
    assert anchored.next_fire(utc(2025, 1, 1, 0, 3)) == utc(2025, 1, 1, 0, 7)


@pytest.mark.parametrize(
    "interval",
    [timedelta(0), timedelta(seconds=-1), timedelta(microseconds=-1), 30, "30s"],
)
def test_every_rejects_bad_interval(interval: Any) -> None:
    with pytest.raises(InvalidSchedule, match=r"Every\.interval"):
        Every(interval)


def test_every_rejects_naive_datetimes() -> None:
    with pytest.raises(InvalidSchedule, match=r"Every\.anchor must be a timezone-aware"):
        Every(timedelta(seconds=1), datetime(2025, 1, 1))
    every = Every(timedelta(seconds=1), utc(2025, 1, 1))
    with pytest.raises(InvalidSchedule, match=r"after must be a timezone-aware.*2025-01-02T00:00"):
        every.next_fire(datetime(2025, 1, 2))
    with pytest.raises(InvalidSchedule, match="timezone-aware"):
        every.with_anchor(datetime(2025, 1, 1))


def test_every_describe_and_json() -> None:
    every = Every(timedelta(hours=1, minutes=30), utc(2025, 1, 1, 6, 0))
    assert every.describe() == "every 1h30m"
    assert Every(timedelta(milliseconds=500)).describe() == "every 500ms"
    assert Every(timedelta(days=2, seconds=1)).describe() == "every 2d1s"
    assert every.to_json() == {
        "type": "every",
        "interval": 5400.0,
        "anchor": "2025-01-01T06:00:00+00:00",
    }
    assert Every(timedelta(seconds=30)).to_json() == {
        "type": "every",
        "interval": 30.0,
        "anchor": None,
    }


# ---------------------------------------------------------------------- parse_interval


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30, timedelta(seconds=30)),
        (0.25, timedelta(milliseconds=250)),
        (timedelta(minutes=3), timedelta(minutes=3)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d", timedelta(days=2)),
        ("500ms", timedelta(milliseconds=500)),
        ("250us", timedelta(microseconds=250)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        (".5s", timedelta(milliseconds=500)),
        ("1d2h3m4s5ms6us", timedelta(days=1, hours=2, minutes=3, seconds=4, microseconds=5006)),
        ("  10m  ", timedelta(minutes=10)),
    ],
)
def test_parse_interval_accepts(value: float | int | timedelta | str, expected: timedelta) -> None:
    assert parse_interval(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "must be positive"),
        (-5, "must be positive"),
        (timedelta(0), "must be positive"),
        (timedelta(seconds=-1), "must be positive"),
        ("0s", "must be positive"),
        ("0.0000001s", "must be positive"),  # rounds to 0 microseconds
        (float("nan"), "finite"),
        (float("inf"), "finite"),
        (True, "number of seconds"),
        (None, "duration string"),
        ("", "empty interval"),
        ("30", "missing unit"),
        ("-5m", "cannot parse"),
        ("5 m", "cannot parse"),
        ("5x", "cannot parse"),
        ("5M", "cannot parse"),
        ("1h 30m", "cannot parse"),
        ("m5", "cannot parse"),
        ("five minutes", "cannot parse"),
        ("99999999999d", "too large"),
        (1e20, "too large"),
    ],
)
def test_parse_interval_rejects(value: Any, message: str) -> None:
    with pytest.raises(InvalidSchedule, match=message):
        parse_interval(value)


def test_describe_reads_back_through_parse_interval() -> None:
    for interval in [
        timedelta(microseconds=1),
        timedelta(seconds=90.5),
        timedelta(days=3, hours=23, minutes=59, seconds=59, microseconds=999999),
    ]:
        text = Every(interval).describe().removeprefix("every ")
        assert parse_interval(text) == interval


# ------------------------------------------------------------------------------- Cron


def test_cron_five_fields() -> None:
    cron = Cron("*/5 * * * *")
    assert fires(cron, utc(2025, 1, 1, 12, 3, 30), 3) == [
        utc(2025, 1, 1, 12, 5),
        utc(2025, 1, 1, 12, 10),
        utc(2025, 1, 1, 12, 15),
    ]
    assert cron.next_fire(utc(2025, 1, 1, 12, 5)) == utc(2025, 1, 1, 12, 10)
    # Weekdays at 09:00 in Paris (CET, UTC+1): Friday 3 Jan then Monday 6 Jan 2025.
    weekdays = Cron("0 9 * * MON-FRI", PARIS)
    assert fires(weekdays, utc(2025, 1, 2, 8, 0), 3) == [
        utc(2025, 1, 3, 8, 0),
        utc(2025, 1, 6, 8, 0),
        utc(2025, 1, 7, 8, 0),
    ]


def test_cron_day_of_month_or_day_of_week() -> None:
    # Both restricted: either matches (Vixie cron). 2025-06-01 is a Sunday.
    cron = Cron("0 0 13 * 5")
    assert fires(cron, utc(2025, 6, 1), 3) == [
        utc(2025, 6, 6),  # Friday
        utc(2025, 6, 13),  # the 13th (also a Friday)
        utc(2025, 6, 20),  # Friday
    ]


def test_cron_six_fields_have_seconds_first() -> None:
    cron = Cron("*/20 * * * * *")
    assert fires(cron, utc(2025, 1, 1, 0, 0, 0), 4) == [
        utc(2025, 1, 1, 0, 0, 20),
        utc(2025, 1, 1, 0, 0, 40),
        utc(2025, 1, 1, 0, 1, 0),
        utc(2025, 1, 1, 0, 1, 20),
    ]
    # Second 30 of minute 15 of every hour.
    assert fires(Cron("30 15 * * * *"), utc(2025, 1, 1, 0, 15, 30), 2) == [
        utc(2025, 1, 1, 1, 15, 30),
        utc(2025, 1, 1, 2, 15, 30),
    ]
    assert Cron("* * * * * *").next_fire(utc(2025, 1, 1, 0, 0, 0, 500000)) == utc(
        2025, 1, 1, 0, 0, 1
    )


@pytest.mark.parametrize(
    ("alias", "expected"),
    [
        ("@yearly", utc(2026, 1, 1)),
        ("@annually", utc(2026, 1, 1)),
        ("@monthly", utc(2025, 6, 1)),
        ("@weekly", utc(2025, 5, 18)),  # 2025-05-18 is a Sunday
        ("@daily", utc(2025, 5, 16)),
        ("@midnight", utc(2025, 5, 16)),
        ("@hourly", utc(2025, 5, 15, 11)),
        ("@DAILY", utc(2025, 5, 16)),
    ],
)
def test_cron_aliases(alias: str, expected: datetime) -> None:
    assert Cron(alias).next_fire(utc(2025, 5, 15, 10, 30)) == expected


def test_cron_alias_in_a_zone() -> None:
    assert Cron("@daily", PARIS).next_fire(utc(2025, 7, 1, 12)) == utc(2025, 7, 1, 22, 0)


def test_cron_normalizes_whitespace_and_compares_by_value() -> None:
    cron = Cron("  0   9 * *\t1 ", PARIS)
    assert cron.spec == "0 9 * * 1"
    assert cron == Cron("0 9 * * 1", PARIS)
    assert hash(cron) == hash(Cron("0 9 * * 1", PARIS))
    assert cron != Cron("0 9 * * 1", NEW_YORK)


def test_cron_describe_and_json() -> None:
    cron = Cron("*/5 * * * *", PARIS)
    assert cron.describe() == "cron '*/5 * * * *' in Europe/Paris"
    assert cron.to_json() == {"type": "cron", "spec": "*/5 * * * *", "tz": "Europe/Paris"}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("61 * * * *", r"invalid cron spec '61 \* \* \* \*': .*out of range"),
        ("* * *", r"cron spec '\* \* \*' has 3 fields; expected 5"),
        ("", "empty cron spec"),
        ("   ", "empty cron spec"),
        ("* * * * * * *", "has 7 fields"),
        ("0 0 * * * * 2025", "has 7 fields"),
        ("60 * * * * *", r"invalid cron spec '60 \* \* \* \* \*'"),
        ("* 24 * * *", "invalid cron spec"),
        ("* * 32 * *", "invalid cron spec"),
        ("* * * 13 *", "invalid cron spec"),
        ("*/0 * * * *", "invalid cron spec"),
        ("a b c d e", "invalid cron spec"),
        ("0 0 30 2 *", r"invalid cron spec '0 0 30 2 \*'"),
        ("H * * * *", "hashed/random item 'H'"),
        ("0 R * * *", "hashed/random item 'R'"),
        ("@reboot", "unknown cron alias '@reboot'"),
        ("@every 5m", "is an interval, not a cron spec"),
    ],
)
def test_cron_rejects_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(InvalidSchedule, match=message):
        Cron(spec)


@pytest.mark.parametrize("zone", ["Nope/Zone", "America", "", "../etc/passwd", "utc"])
def test_cron_rejects_unknown_zone(zone: str) -> None:
    with pytest.raises(InvalidSchedule, match=re.escape(f"unknown time zone {zone!r}")):
        Cron("* * * * *", zone)


def test_cron_rejects_naive_datetime() -> None:
    with pytest.raises(InvalidSchedule, match=r"after must be a timezone-aware.*naive 2025-01-01"):
        Cron("* * * * *").next_fire(datetime(2025, 1, 1))


def test_cron_or_every() -> None:
    assert cron_or_every("@every 5m") == Every(timedelta(minutes=5))
    assert cron_or_every("@every 1h30m", PARIS) == Every(timedelta(hours=1, minutes=30))
    assert cron_or_every("*/5 * * * *", PARIS) == Cron("*/5 * * * *", PARIS)
    assert cron_or_every("@daily") == Cron("@daily")
    with pytest.raises(InvalidSchedule, match="lacks an interval"):
        cron_or_every("@every")
    with pytest.raises(InvalidSchedule, match="must be positive"):
        cron_or_every("@every 0s")
    with pytest.raises(InvalidSchedule, match="cannot parse"):
        cron_or_every("@every often")


def test_cron_next_fire_is_fast_enough() -> None:
    cron = Cron("*/5 * * * *", PARIS)
    after = utc(2025, 6, 1, 12, 3)
    cron.next_fire(after)
    started = time.perf_counter()
    for _ in range(200):
        cron.next_fire(after)
    # Typically ~50 us; the bound only catches a lost cache (parsing costs more).
    assert (time.perf_counter() - started) / 200 < 0.001


# -------------------------------------------------------------------- DST: New York
# 2025-03-09: 02:00 EST (UTC-5) -> 03:00 EDT (UTC-4), at 07:00 UTC.
# 2025-11-02: 02:00 EDT (UTC-4) -> 01:00 EST (UTC-5), at 06:00 UTC.


def test_new_york_daily_at_nonexistent_time_fires_at_transition() -> None:
    cron = Cron("30 2 * * *", NEW_YORK)
    assert fires(cron, utc(2025, 3, 7), 4) == [
        utc(2025, 3, 7, 7, 30),  # 02:30 EST
        utc(2025, 3, 8, 7, 30),  # 02:30 EST
        utc(2025, 3, 9, 7, 0),  # 02:30 does not exist: 03:00 EDT
        utc(2025, 3, 10, 6, 30),  # 02:30 EDT
    ]


def test_new_york_daily_at_repeated_time_fires_once_at_first_occurrence() -> None:
    cron = Cron("30 1 * * *", NEW_YORK)
    assert fires(cron, utc(2025, 11, 1), 3) == [
        utc(2025, 11, 1, 5, 30),  # 01:30 EDT
        utc(2025, 11, 2, 5, 30),  # 01:30 EDT, first occurrence; not 06:30 UTC (EST)
        utc(2025, 11, 3, 6, 30),  # 01:30 EST
    ]
    # From inside the repeated hour (second occurrence), still strictly later.
    assert cron.next_fire(utc(2025, 11, 2, 6, 15)) == utc(2025, 11, 3, 6, 30)


def test_new_york_quarter_hours_through_spring_forward() -> None:
    cron = Cron("*/15 * * * *", NEW_YORK)
    assert fires(cron, utc(2025, 3, 9, 6, 30), 4) == [
        utc(2025, 3, 9, 6, 45),  # 01:45 EST
        utc(2025, 3, 9, 7, 0),  # 02:00, 02:15, 02:30, 02:45 (missing) and 03:00 EDT: one fire
        utc(2025, 3, 9, 7, 15),  # 03:15 EDT
        utc(2025, 3, 9, 7, 30),
    ]


def test_new_york_half_hours_through_fall_back() -> None:
    cron = Cron("*/30 * * * *", NEW_YORK)
    assert fires(cron, utc(2025, 11, 2, 4, 0), 6) == [
        utc(2025, 11, 2, 4, 30),  # 00:30 EDT
        utc(2025, 11, 2, 5, 0),  # 01:00 EDT
        utc(2025, 11, 2, 5, 30),  # 01:30 EDT
        # 01:00 and 01:30 EST (06:00, 06:30 UTC) are repeats: they do not fire.
        utc(2025, 11, 2, 7, 0),  # 02:00 EST
        utc(2025, 11, 2, 7, 30),
        utc(2025, 11, 2, 8, 0),
    ]
    # ``after`` in the repeated hour (01:10 EST, fold=1): the result is still later.
    assert cron.next_fire(utc(2025, 11, 2, 6, 10)) == utc(2025, 11, 2, 7, 0)
    assert cron.next_fire(utc(2025, 11, 2, 5, 59, 59)) == utc(2025, 11, 2, 7, 0)


def test_new_york_every_second_through_both_transitions() -> None:
    cron = Cron("* * * * * *", NEW_YORK)
    assert fires(cron, utc(2025, 3, 9, 6, 59, 58), 3) == [
        utc(2025, 3, 9, 6, 59, 59),  # 01:59:59 EST
        utc(2025, 3, 9, 7, 0, 0),  # the whole missing hour collapses into 03:00:00 EDT
        utc(2025, 3, 9, 7, 0, 1),
    ]
    assert fires(cron, utc(2025, 11, 2, 5, 59, 58), 3) == [
        utc(2025, 11, 2, 5, 59, 59),  # 01:59:59 EDT
        utc(2025, 11, 2, 7, 0, 0),  # 02:00:00 EST; the repeated hour does not fire
        utc(2025, 11, 2, 7, 0, 1),
    ]
    # From the middle of the repeated hour it jumps, not crawls, to its end.
    assert cron.next_fire(utc(2025, 11, 2, 6, 30)) == utc(2025, 11, 2, 7, 0, 0)


# ----------------------------------------------------------------------- DST: Paris
# 2025-03-30: 02:00 CET (UTC+1) -> 03:00 CEST (UTC+2), at 01:00 UTC.
# 2025-10-26: 03:00 CEST (UTC+2) -> 02:00 CET (UTC+1), at 01:00 UTC.


def test_paris_daily_at_nonexistent_time_fires_at_transition() -> None:
    cron = Cron("30 2 * * *", PARIS)
    assert fires(cron, utc(2025, 3, 29), 3) == [
        utc(2025, 3, 29, 1, 30),  # 02:30 CET
        utc(2025, 3, 30, 1, 0),  # 02:30 does not exist: 03:00 CEST
        utc(2025, 3, 31, 0, 30),  # 02:30 CEST
    ]


def test_paris_daily_at_repeated_time_fires_once_at_first_occurrence() -> None:
    cron = Cron("30 2 * * *", PARIS)
    assert fires(cron, utc(2025, 10, 25), 3) == [
        utc(2025, 10, 25, 0, 30),  # 02:30 CEST
        utc(2025, 10, 26, 0, 30),  # 02:30 CEST, first occurrence; not 01:30 UTC (CET)
        utc(2025, 10, 27, 1, 30),  # 02:30 CET
    ]


def test_paris_half_hours_through_spring_forward() -> None:
    cron = Cron("*/30 * * * *", PARIS)
    assert fires(cron, utc(2025, 3, 30, 0, 0), 4) == [
        utc(2025, 3, 30, 0, 30),  # 01:30 CET
        utc(2025, 3, 30, 1, 0),  # 02:00, 02:30 (missing) and 03:00 CEST: one fire
        utc(2025, 3, 30, 1, 30),  # 03:30 CEST
        utc(2025, 3, 30, 2, 0),
    ]


def test_paris_quarter_hours_through_fall_back() -> None:
    cron = Cron("*/15 * * * *", PARIS)
    assert fires(cron, utc(2025, 10, 25, 23, 45), 7) == [
        utc(2025, 10, 26, 0, 0),  # 02:00 CEST
        utc(2025, 10, 26, 0, 15),
        utc(2025, 10, 26, 0, 30),
        utc(2025, 10, 26, 0, 45),  # 02:45 CEST
        # 02:00 to 02:45 CET (01:00 to 01:45 UTC) are repeats: they do not fire.
        utc(2025, 10, 26, 2, 0),  # 03:00 CET
        utc(2025, 10, 26, 2, 15),
        utc(2025, 10, 26, 2, 30),
    ]
    assert cron.next_fire(utc(2025, 10, 26, 1, 20)) == utc(2025, 10, 26, 2, 0)


# ---------------------------------------------------------- DST: Lord Howe (30 minutes)
# 2025-04-06: 02:00 +11:00 -> 01:30 +10:30, at 15:00 UTC on 5 April.
# 2025-10-05: 02:00 +10:30 -> 02:30 +11:00, at 15:30 UTC on 4 October.


def test_lord_howe_half_hour_shifts() -> None:
    assert fires(Cron("15 2 * * *", LORD_HOWE), utc(2025, 10, 3), 3) == [
        utc(2025, 10, 3, 15, 45),  # 02:15 +10:30
        utc(2025, 10, 4, 15, 30),  # 02:15 does not exist: 02:30 +11:00
        utc(2025, 10, 5, 15, 15),  # 02:15 +11:00
    ]
    assert fires(Cron("*/15 * * * *", LORD_HOWE), utc(2025, 10, 4, 15, 0), 3) == [
        utc(2025, 10, 4, 15, 15),  # 01:45 +10:30
        utc(2025, 10, 4, 15, 30),  # 02:00, 02:15 (missing) and 02:30 +11:00: one fire
        utc(2025, 10, 4, 15, 45),  # 02:45 +11:00
    ]
    assert fires(Cron("45 1 * * *", LORD_HOWE), utc(2025, 4, 4), 3) == [
        utc(2025, 4, 4, 14, 45),  # 01:45 +11:00
        utc(2025, 4, 5, 14, 45),  # 01:45 +11:00, first occurrence; not 15:15 UTC
        utc(2025, 4, 6, 15, 15),  # 01:45 +10:30
    ]


# ------------------------------------------------------------------------- plan_fires


def test_plan_fires_nothing_due_keeps_the_cursor() -> None:
    cron = Cron("*/5 * * * *")
    plan = plan_fires(
        cron, utc(2025, 1, 1, 12, 5), utc(2025, 1, 1, 12, 4, 59), misfire=Misfire.SKIP
    )
    assert plan == FirePlan((), (), 0, utc(2025, 1, 1, 12, 5))


def test_plan_fires_on_time_slot_fires_under_every_policy() -> None:
    cron = Cron("*/5 * * * *")
    for misfire in Misfire:
        plan = plan_fires(cron, utc(2025, 1, 1, 12, 5), utc(2025, 1, 1, 12, 5, 4), misfire=misfire)
        assert plan == FirePlan((utc(2025, 1, 1, 12, 5),), (), 0, utc(2025, 1, 1, 12, 10))


def test_plan_fires_grace_is_inclusive() -> None:
    cron = Cron("*/5 * * * *")
    slot = utc(2025, 1, 1, 12, 5)
    on_time = plan_fires(cron, slot, slot + timedelta(seconds=5), misfire=Misfire.SKIP)
    assert on_time.fire_times == (slot,)
    late = plan_fires(cron, slot, slot + timedelta(seconds=5, microseconds=1), misfire=Misfire.SKIP)
    assert late.fire_times == ()
    assert late.skipped == (slot,)
    assert late.skipped_count == 1


# A */5 cron last fired at 12:00; the node was down for an hour.
FIVE_MINUTES = Cron("*/5 * * * *")
CURSOR = utc(2025, 1, 1, 12, 5)
MISSED_WITHOUT_13 = seconds_range(utc(2025, 1, 1, 12, 5), utc(2025, 1, 1, 12, 55), 300)


def test_plan_fires_cron_catch_up_once_after_downtime() -> None:
    # Back at 13:00:03: the 13:00 slot is on time, so it is the one that runs.
    plan = plan_fires(
        FIVE_MINUTES, CURSOR, utc(2025, 1, 1, 13, 0, 3), misfire=Misfire.CATCH_UP_ONCE
    )
    assert plan == FirePlan(
        (utc(2025, 1, 1, 13, 0),), tuple(MISSED_WITHOUT_13), 11, utc(2025, 1, 1, 13, 5)
    )
    # Back at 13:02: nothing is on time; the most recent missed slot runs.
    plan = plan_fires(FIVE_MINUTES, CURSOR, utc(2025, 1, 1, 13, 2), misfire=Misfire.CATCH_UP_ONCE)
    assert plan == FirePlan(
        (utc(2025, 1, 1, 13, 0),), tuple(MISSED_WITHOUT_13), 11, utc(2025, 1, 1, 13, 5)
    )


def test_plan_fires_cron_catch_up_all_after_downtime() -> None:
    now = utc(2025, 1, 1, 13, 2)
    plan = plan_fires(FIVE_MINUTES, CURSOR, now, misfire=Misfire.CATCH_UP_ALL)
    assert plan == FirePlan(
        (*MISSED_WITHOUT_13, utc(2025, 1, 1, 13, 0)), (), 0, utc(2025, 1, 1, 13, 5)
    )
    capped = plan_fires(FIVE_MINUTES, CURSOR, now, misfire=Misfire.CATCH_UP_ALL, misfire_cap=3)
    assert capped == FirePlan(
        (utc(2025, 1, 1, 12, 50), utc(2025, 1, 1, 12, 55), utc(2025, 1, 1, 13, 0)),
        tuple(MISSED_WITHOUT_13[:9]),
        9,
        utc(2025, 1, 1, 13, 5),
    )
    # With an on-time slot the cap applies to the missed ones only.
    capped = plan_fires(
        FIVE_MINUTES, CURSOR, utc(2025, 1, 1, 13, 0, 3), misfire=Misfire.CATCH_UP_ALL, misfire_cap=3
    )
    assert capped.fire_times == (
        utc(2025, 1, 1, 12, 45),
        utc(2025, 1, 1, 12, 50),
        utc(2025, 1, 1, 12, 55),
        utc(2025, 1, 1, 13, 0),
    )
    assert capped.skipped == tuple(MISSED_WITHOUT_13[:8])
    assert capped.skipped_count == 8


def test_plan_fires_cron_skip_after_downtime() -> None:
    plan = plan_fires(FIVE_MINUTES, CURSOR, utc(2025, 1, 1, 13, 2), misfire=Misfire.SKIP)
    assert plan == FirePlan(
        (), (*MISSED_WITHOUT_13, utc(2025, 1, 1, 13, 0)), 12, utc(2025, 1, 1, 13, 5)
    )
    plan = plan_fires(FIVE_MINUTES, CURSOR, utc(2025, 1, 1, 13, 0, 3), misfire=Misfire.SKIP)
    assert plan == FirePlan(
        (utc(2025, 1, 1, 13, 0),), tuple(MISSED_WITHOUT_13), 11, utc(2025, 1, 1, 13, 5)
    )


# An Every(10s) anchored at 12:00:00 last fired at 12:00:00; down for an hour.
TEN_SECONDS = Every(timedelta(seconds=10), utc(2025, 1, 1, 12, 0, 0))
TEN_CURSOR = utc(2025, 1, 1, 12, 0, 10)
TEN_NOW = utc(2025, 1, 1, 13, 0, 2)  # 13:00:00 is on time, 12:59:50 is missed


def test_plan_fires_every_catch_up_once_after_downtime() -> None:
    plan = plan_fires(TEN_SECONDS, TEN_CURSOR, TEN_NOW, misfire=Misfire.CATCH_UP_ONCE)
    assert plan.fire_times == (utc(2025, 1, 1, 13, 0, 0),)
    assert plan.skipped_count == 359
    assert plan.skipped == tuple(
        seconds_range(utc(2025, 1, 1, 12, 43, 20), utc(2025, 1, 1, 12, 59, 50), 10)
    )
    assert plan.next_fire_at == utc(2025, 1, 1, 13, 0, 10)
    # Seven seconds later 13:00:00 is missed too, and it is the one caught up.
    later = plan_fires(
        TEN_SECONDS, TEN_CURSOR, utc(2025, 1, 1, 13, 0, 7), misfire=Misfire.CATCH_UP_ONCE
    )
    assert later.fire_times == (utc(2025, 1, 1, 13, 0, 0),)
    assert later.skipped_count == 359
    assert later.skipped == plan.skipped


def test_plan_fires_every_catch_up_all_after_downtime() -> None:
    plan = plan_fires(TEN_SECONDS, TEN_CURSOR, TEN_NOW, misfire=Misfire.CATCH_UP_ALL)
    assert plan.fire_times == tuple(
        seconds_range(utc(2025, 1, 1, 12, 43, 20), utc(2025, 1, 1, 13, 0, 0), 10)
    )
    assert len(plan.fire_times) == 101  # 100 missed (the cap) and the on-time one
    assert plan.skipped_count == 259
    assert plan.skipped == tuple(
        seconds_range(utc(2025, 1, 1, 12, 26, 40), utc(2025, 1, 1, 12, 43, 10), 10)
    )
    assert plan.next_fire_at == utc(2025, 1, 1, 13, 0, 10)
    capped = plan_fires(
        TEN_SECONDS, TEN_CURSOR, TEN_NOW, misfire=Misfire.CATCH_UP_ALL, misfire_cap=2
    )
    assert capped.fire_times == (
        utc(2025, 1, 1, 12, 59, 40),
        utc(2025, 1, 1, 12, 59, 50),
        utc(2025, 1, 1, 13, 0, 0),
    )
    assert capped.skipped_count == 357


def test_plan_fires_every_skip_after_downtime() -> None:
    plan = plan_fires(TEN_SECONDS, TEN_CURSOR, TEN_NOW, misfire=Misfire.SKIP)
    assert plan.fire_times == (utc(2025, 1, 1, 13, 0, 0),)
    assert plan.skipped_count == 359
    assert len(plan.skipped) == SKIP_RECORD_LIMIT
    assert plan.skipped[0] == utc(2025, 1, 1, 12, 43, 20)
    assert plan.skipped[-1] == utc(2025, 1, 1, 12, 59, 50)
    assert plan.next_fire_at == utc(2025, 1, 1, 13, 0, 10)


def test_plan_fires_every_counts_ten_days_of_seconds_arithmetically() -> None:
    every = Every(timedelta(seconds=1), utc(2025, 1, 1))
    now = utc(2025, 1, 11)
    started = time.perf_counter()
    plan = plan_fires(every, utc(2025, 1, 1), now, misfire=Misfire.CATCH_UP_ALL)
    once = plan_fires(every, utc(2025, 1, 1), now, misfire=Misfire.CATCH_UP_ONCE)
    bounded = plan_fires(every, utc(2025, 1, 1), now, misfire=Misfire.CATCH_UP_ALL, max_scan=50)
    assert time.perf_counter() - started < 0.5  # no iteration over 864,001 slots
    # 864,001 due slots: 6 on time (23:59:55 to 00:00:00), the 100 most recent missed fire.
    assert plan.fire_times == tuple(seconds_range(utc(2025, 1, 10, 23, 58, 15), now, 1))
    assert plan.skipped_count == 864_001 - 106
    assert plan.skipped == tuple(
        seconds_range(utc(2025, 1, 10, 23, 56, 35), utc(2025, 1, 10, 23, 58, 14), 1)
    )
    assert plan.next_fire_at == utc(2025, 1, 11, 0, 0, 1)
    assert not plan.truncated
    assert once.fire_times == tuple(seconds_range(utc(2025, 1, 10, 23, 59, 55), now, 1))
    assert once.skipped_count == 864_001 - 6
    # max_scan bounds what fires, the most recent slots first.
    assert bounded.fire_times == tuple(seconds_range(utc(2025, 1, 10, 23, 59, 11), now, 1))
    assert bounded.skipped_count == 864_001 - 50


def test_plan_fires_cron_truncates_after_max_scan() -> None:
    every_second = Cron("* * * * * *")
    now = utc(2025, 1, 11)
    plan = plan_fires(
        every_second,
        utc(2025, 1, 1),
        now,
        misfire=Misfire.CATCH_UP_ALL,
        misfire_cap=10,
        max_scan=1000,
    )
    # The walk back from now counted 1000 slots: 6 on time and 994 missed.
    assert plan.truncated
    assert plan.fire_times == tuple(seconds_range(utc(2025, 1, 10, 23, 59, 45), now, 1))
    assert plan.skipped_count == 984
    assert plan.skipped == tuple(
        seconds_range(utc(2025, 1, 10, 23, 58, 5), utc(2025, 1, 10, 23, 59, 44), 1)
    )
    assert plan.next_fire_at == utc(2025, 1, 11, 0, 0, 1)
    once = plan_fires(
        every_second, utc(2025, 1, 1), now, misfire=Misfire.CATCH_UP_ONCE, max_scan=1000
    )
    assert once.truncated
    assert once.fire_times == tuple(seconds_range(utc(2025, 1, 10, 23, 59, 55), now, 1))
    assert once.skipped_count == 994
    assert once.next_fire_at == utc(2025, 1, 11, 0, 0, 1)


def test_plan_fires_cron_exactly_max_scan_slots_is_not_truncated() -> None:
    plan = plan_fires(
        FIVE_MINUTES, CURSOR, utc(2025, 1, 1, 13, 2), misfire=Misfire.SKIP, max_scan=12
    )
    assert not plan.truncated
    assert plan.skipped_count == 12
    short = plan_fires(
        FIVE_MINUTES, CURSOR, utc(2025, 1, 1, 13, 2), misfire=Misfire.SKIP, max_scan=11
    )
    assert short.truncated
    assert short.skipped_count == 11
    assert short.skipped == (*MISSED_WITHOUT_13[1:], utc(2025, 1, 1, 13, 0))


def test_plan_fires_cursor_off_the_grid_is_a_slot() -> None:
    plan = plan_fires(
        FIVE_MINUTES, utc(2025, 1, 1, 12, 3), utc(2025, 1, 1, 12, 10, 1), misfire=Misfire.SKIP
    )
    assert plan.fire_times == (utc(2025, 1, 1, 12, 10),)
    assert plan.skipped == (utc(2025, 1, 1, 12, 3), utc(2025, 1, 1, 12, 5))
    every_plan = plan_fires(
        TEN_SECONDS, utc(2025, 1, 1, 12, 0, 3), utc(2025, 1, 1, 12, 0, 20), misfire=Misfire.SKIP
    )
    assert every_plan.fire_times == (utc(2025, 1, 1, 12, 0, 20),)
    assert every_plan.skipped == (utc(2025, 1, 1, 12, 0, 3), utc(2025, 1, 1, 12, 0, 10))


@pytest.mark.parametrize(
    ("zone", "start", "end"),
    [
        (NEW_YORK, utc(2025, 3, 9, 4), utc(2025, 3, 9, 10)),
        (NEW_YORK, utc(2025, 11, 2, 3), utc(2025, 11, 2, 9)),
        (PARIS, utc(2025, 3, 29, 22), utc(2025, 3, 30, 4)),
        (PARIS, utc(2025, 10, 25, 22), utc(2025, 10, 26, 4)),
        (LORD_HOWE, utc(2025, 4, 5, 12), utc(2025, 4, 5, 18)),
        (LORD_HOWE, utc(2025, 10, 4, 12), utc(2025, 10, 4, 18)),
    ],
)
@pytest.mark.parametrize("spec", ["*/15 * * * *", "*/20 * * * * *", "30 1,2 * * *"])
def test_plan_fires_walk_back_matches_next_fire_across_dst(
    zone: str, start: datetime, end: datetime, spec: str
) -> None:
    cron = Cron(spec, zone)
    expected = [cron.next_fire(start)]
    while (following := cron.next_fire(expected[-1])) <= end:
        expected.append(following)
    plan = plan_fires(
        cron,
        expected[0],
        end,
        misfire=Misfire.CATCH_UP_ALL,
        misfire_cap=10_000,
        grace=timedelta(0),
    )
    assert plan.fire_times == tuple(expected)
    assert plan.next_fire_at == cron.next_fire(end)


def test_plan_fires_now_inside_the_repeated_hour() -> None:
    # New York, 2025-11-02: now is 01:40 EST (06:40 UTC, second occurrence).
    cron = Cron("*/15 * * * *", NEW_YORK)
    plan = plan_fires(cron, utc(2025, 11, 2, 5, 0), utc(2025, 11, 2, 6, 40), misfire=Misfire.SKIP)
    assert plan == FirePlan(
        (),
        (
            utc(2025, 11, 2, 5, 0),
            utc(2025, 11, 2, 5, 15),
            utc(2025, 11, 2, 5, 30),
            utc(2025, 11, 2, 5, 45),
        ),
        4,
        utc(2025, 11, 2, 7, 0),
    )


def test_plan_fires_now_at_spring_forward_transition() -> None:
    cron = Cron("*/15 * * * *", NEW_YORK)
    plan = plan_fires(cron, utc(2025, 3, 9, 6, 0), utc(2025, 3, 9, 7, 0), misfire=Misfire.SKIP)
    assert plan.fire_times == (utc(2025, 3, 9, 7, 0),)
    assert plan.skipped == (
        utc(2025, 3, 9, 6, 0),
        utc(2025, 3, 9, 6, 15),
        utc(2025, 3, 9, 6, 30),
        utc(2025, 3, 9, 6, 45),
    )
    assert plan.next_fire_at == utc(2025, 3, 9, 7, 15)


def test_plan_fires_returns_utc() -> None:
    paris = ZoneInfo(PARIS)
    plan = plan_fires(
        FIVE_MINUTES,
        datetime(2025, 1, 1, 13, 5, tzinfo=paris),
        datetime(2025, 1, 1, 13, 5, 1, tzinfo=paris),
        misfire=Misfire.SKIP,
    )
    assert plan.fire_times == (utc(2025, 1, 1, 12, 5),)
    assert plan.fire_times[0].tzinfo is UTC
    assert plan.next_fire_at.tzinfo is UTC


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"next_fire_at": datetime(2025, 1, 1)}, "next_fire_at must be a timezone-aware"),
        ({"now": datetime(2025, 1, 1)}, "now must be a timezone-aware"),
        ({"misfire": "sometimes"}, "unknown misfire policy 'sometimes'"),
        ({"misfire_cap": 0}, "misfire_cap must be at least 1"),
        ({"grace": timedelta(seconds=-1)}, "grace must not be negative"),
        ({"max_scan": 0}, "max_scan must be at least 1"),
    ],
)
def test_plan_fires_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "next_fire_at": utc(2025, 1, 1),
        "now": utc(2025, 1, 2),
        "misfire": Misfire.SKIP,
    }
    arguments.update(kwargs)
    with pytest.raises(InvalidSchedule, match=message):
        plan_fires(FIVE_MINUTES, **arguments)


# ------------------------------------------------------------- identities and JSON


def test_schedule_id_is_deterministic_and_ignores_the_anchor() -> None:
    first = schedule_id("report", Every(timedelta(minutes=5), utc(2025, 1, 1)), "[[1],{}]")
    second = schedule_id("report", Every(timedelta(minutes=5), utc(2025, 6, 1)), "[[1],{}]")
    unanchored = schedule_id("report", Every(timedelta(minutes=5)), "[[1],{}]")
    assert first == second == unanchored
    assert re.fullmatch(r"report:[0-9a-f]{16}", first)
    # Pinned: the id is persisted, so its derivation must not change between versions.
    assert schedule_id("report", Cron("0 9 * * *", PARIS), "[[],{}]") == "report:fb6886bf0f31b8ea"


def test_schedule_id_differs_for_different_declarations() -> None:
    base = schedule_id("report", Cron("0 9 * * *", PARIS), "[[1],{}]")
    others = {
        schedule_id("report", Cron("0 9 * * *", PARIS), "[[2],{}]"),
        schedule_id("report", Cron("0 10 * * *", PARIS), "[[1],{}]"),
        schedule_id("report", Cron("0 9 * * *", NEW_YORK), "[[1],{}]"),
        schedule_id("digest", Cron("0 9 * * *", PARIS), "[[1],{}]"),
        schedule_id("report", Every(timedelta(hours=24)), "[[1],{}]"),
        schedule_id("report", Every(timedelta(hours=12)), "[[1],{}]"),
    }
    assert base not in others
    assert len(others) == 6


@pytest.mark.parametrize(
    "trigger",
    [
        Every(timedelta(seconds=30)),
        Every(timedelta(hours=1, microseconds=1), utc(2025, 3, 9, 7, 0)),
        Every(timedelta(milliseconds=500), utc(2025, 1, 1)),
        Cron("*/5 * * * *"),
        Cron("0 30 1 * * *", NEW_YORK),
        Cron("@weekly", LORD_HOWE),
    ],
)
def test_trigger_json_round_trip(trigger: Trigger) -> None:
    data = json.loads(json.dumps(trigger.to_json()))
    assert trigger_from_json(data) == trigger
    assert trigger_from_json(trigger.to_json()) == trigger


def test_trigger_from_json_defaults_and_offsets() -> None:
    assert trigger_from_json({"type": "cron", "spec": "@daily"}) == Cron("@daily", "UTC")
    assert trigger_from_json({"type": "every", "interval": 60}) == Every(timedelta(minutes=1))
    shifted = trigger_from_json(
        {"type": "every", "interval": 60, "anchor": "2025-01-01T01:00:00+01:00"}
    )
    assert shifted == Every(timedelta(minutes=1), utc(2025, 1, 1))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "unknown trigger type None"),
        ({"type": "sometimes"}, "unknown trigger type 'sometimes'"),
        ({"type": "every"}, r"missing \['interval'\]"),
        ({"type": "every", "interval": 5, "jitter": 1}, r"unknown \['jitter'\]"),
        ({"type": "every", "interval": "5"}, "number of seconds"),
        ({"type": "every", "interval": True}, "number of seconds"),
        ({"type": "every", "interval": 0}, "must be positive"),
        ({"type": "every", "interval": 5, "anchor": 5}, "ISO string"),
        ({"type": "every", "interval": 5, "anchor": "yesterday"}, "not ISO 8601"),
        ({"type": "every", "interval": 5, "anchor": "2025-01-01T00:00:00"}, "timezone-aware"),
        ({"type": "cron"}, r"missing \['spec'\]"),
        ({"type": "cron", "spec": 5}, "must be strings"),
        ({"type": "cron", "spec": "* * *"}, "has 3 fields"),
        ({"type": "cron", "spec": "* * * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
    ],
)
def test_trigger_from_json_rejects_bad_data(data: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidSchedule, match=message):
        trigger_from_json(data)


def test_trigger_from_json_rejects_non_mapping() -> None:
    with pytest.raises(InvalidSchedule, match="must be an object"):
        trigger_from_json(["every", 5])  # type: ignore[arg-type]
