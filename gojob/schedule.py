"""Recurring triggers and their pure next-fire computation.

Nothing here reads a clock or does I/O: "now" is always an argument, so every rule
(DST, misfire, drift) is tested with exact datetimes. Every datetime taken is
timezone-aware (a naive one raises :class:`~gojob.errors.InvalidSchedule`) and every
datetime returned is aware UTC.

Two triggers exist:

* :class:`Every`: a fixed-rate interval. Slots are ``anchor + k * interval`` for
  ``k >= 0``, so a late run never shifts later slots (no drift).
* :class:`Cron`: a 5-field (``min hour dom month dow``) or 6-field
  (``sec min hour dom month dow``) spec, or an ``@daily``-style alias, evaluated on
  the wall clock of a named zone. A wall time that does not exist (spring forward)
  fires at the first instant after the gap, i.e. the transition itself; a wall time
  that occurs twice (fall back) fires once, at its first occurrence.

:func:`plan_fires` applies a :class:`Misfire` policy to the slots that came due while
nobody was looking (downtime) and returns what to create and the schedule's new
cursor. :class:`Overlap` is the policy for a slot that comes due while the previous
instance still runs; it is enforced by the scheduler, not here.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterBadTypeRangeError, CroniterError, croniter

from .errors import InvalidSchedule

__all__ = [
    "SKIP_RECORD_LIMIT",
    "Cron",
    "Every",
    "FirePlan",
    "Misfire",
    "Overlap",
    "Trigger",
    "cron_or_every",
    "parse_interval",
    "plan_fires",
    "schedule_id",
    "trigger_from_json",
]

#: At most this many skipped slots are listed in a :class:`FirePlan` (the most recent).
SKIP_RECORD_LIMIT = 100

_MICROSECOND = timedelta(microseconds=1)
_SECOND = timedelta(seconds=1)


class Overlap(enum.StrEnum):
    """What happens when a slot comes due while the schedule's previous instance runs."""

    ALLOW = "allow"
    """Start another instance alongside the running one."""
    SKIP = "skip"
    """Do not start one; the slot is recorded as skipped."""
    WAIT = "wait"
    """Start it once the running instance has finished."""


class Misfire(enum.StrEnum):
    """What happens to slots missed during downtime (see :func:`plan_fires`)."""

    CATCH_UP_ONCE = "catch_up_once"
    """Fire the most recent missed slot only (none if a slot is on time)."""
    CATCH_UP_ALL = "catch_up_all"
    """Fire every missed slot, the ``misfire_cap`` most recent at most."""
    SKIP = "skip"
    """Fire no missed slot; they are recorded as skipped."""


def _require_aware(value: datetime, what: str) -> datetime:
    """Return ``value`` in UTC, or raise InvalidSchedule if it is naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidSchedule(
            f"{what} must be a timezone-aware datetime, got naive {value.isoformat()}"
        )
    return value.astimezone(UTC)


# --------------------------------------------------------------------------- intervals

# Go's duration syntax (so "@every 1h30m" means what it means in go-job), plus "d".
# "ms" and "us" come before "m" and "s" so that the alternation does not stop short.
_UNIT_MICROSECONDS: dict[str, int] = {
    "d": 86_400_000_000,
    "h": 3_600_000_000,
    "ms": 1_000,
    "us": 1,
    "µs": 1,
    "m": 60_000_000,
    "s": 1_000_000,
}
_INTERVAL_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(d|h|ms|us|µs|m|s)")


def parse_interval(value: float | int | timedelta | str) -> timedelta:
    """Turn seconds, a timedelta, or a duration string into a positive timedelta.

    Strings are a sequence of ``<number><unit>`` parts with no spaces between them,
    units ``d h m s ms us``: ``"30s"``, ``"5m"``, ``"1h30m"``, ``"2d"``, ``"500ms"``,
    ``"1.5h"``. A bare number string has no unit and is refused rather than guessed.
    The result is rounded to whole microseconds (timedelta's resolution).

    Raises InvalidSchedule if the value is not one of these forms, not finite, or not
    strictly positive once rounded.
    """
    result: timedelta
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        # bool is an int subclass; True seconds is certainly a mistake.
        raise InvalidSchedule(f"interval must be a number of seconds, got {value!r}")
    elif isinstance(value, int | float):
        if not math.isfinite(value):
            raise InvalidSchedule(f"interval must be finite, got {value!r}")
        try:
            result = timedelta(seconds=value)
        except OverflowError as exc:
            raise InvalidSchedule(f"interval {value!r} seconds is too large") from exc
    elif isinstance(value, str):
        result = _parse_duration(value)
    else:
        raise InvalidSchedule(
            f"interval must be seconds, a timedelta or a duration string, got {value!r}"
        )
    if result <= timedelta(0):
        raise InvalidSchedule(f"interval must be positive, got {value!r}")
    return result


def _parse_duration(text: str) -> timedelta:
    stripped = text.strip()
    units = "d, h, m, s, ms, us"
    if not stripped:
        raise InvalidSchedule(f"empty interval string; expected e.g. '30s', '1h30m' ({units})")
    position = 0
    total = Decimal(0)
    for match in _INTERVAL_PART.finditer(stripped):
        if match.start() != position:
            break
        try:
            number = Decimal(match.group(1))
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
            raise InvalidSchedule(f"bad number in interval {text!r}") from exc
        total += number * _UNIT_MICROSECONDS[match.group(2)]
        position = match.end()
    if position != len(stripped):
        hint = " (missing unit)" if _looks_numeric(stripped) else ""
        raise InvalidSchedule(
            f"cannot parse interval {text!r}{hint}; expected e.g. '30s', '1h30m' ({units})"
        )
    microseconds = int(total.to_integral_value(rounding=ROUND_HALF_EVEN))
    try:
        return timedelta(microseconds=microseconds)
    except OverflowError as exc:
        raise InvalidSchedule(f"interval {text!r} is too large") from exc


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _format_interval(interval: timedelta) -> str:
    """The shortest-unit-first spelling that :func:`parse_interval` reads back exactly."""
    remaining = interval // _MICROSECOND
    parts: list[str] = []
    for unit in ("d", "h", "m", "s", "ms", "us"):
        size = _UNIT_MICROSECONDS[unit]
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


# ------------------------------------------------------------------------------- Every


@dataclass(frozen=True, slots=True)
class Every:
    """Fire every ``interval``, on the grid ``anchor + k * interval`` (``k >= 0``).

    The grid is fixed rate: slots never drift, however late a previous run was. The
    anchor is normally the schedule's creation time and is filled in by the scheduler
    through :meth:`with_anchor`; it is stored in UTC. An Every without an anchor can
    be described and serialized but not evaluated.
    """

    interval: timedelta
    anchor: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.interval, timedelta):
            raise InvalidSchedule(
                f"Every.interval must be a timedelta (see parse_interval), got {self.interval!r}"
            )
        if self.interval <= timedelta(0):
            raise InvalidSchedule(f"Every.interval must be positive, got {self.interval}")
        if self.anchor is not None:
            # Normalized so that equal instants give equal triggers and equal JSON.
            object.__setattr__(self, "anchor", _require_aware(self.anchor, "Every.anchor"))

    def next_fire(self, after: datetime) -> datetime:
        """The first slot strictly after ``after`` (the anchor itself if ``after`` precedes it).

        Raises InvalidSchedule if the anchor is unset or ``after`` is naive.
        """
        if self.anchor is None:
            raise InvalidSchedule(
                f"anchor required: Every({_format_interval(self.interval)}) has no anchor; "
                "use with_anchor() first"
            )
        after = _require_aware(after, "after")
        if after < self.anchor:
            return self.anchor
        # timedelta // timedelta is exact integer arithmetic on microseconds.
        steps = (after - self.anchor) // self.interval + 1
        return self.anchor + steps * self.interval

    def with_anchor(self, anchor: datetime) -> Every:
        """The same interval on the grid starting at ``anchor`` (aware)."""
        return dataclasses.replace(self, anchor=anchor)

    def describe(self) -> str:
        """Human-readable form, e.g. ``"every 30s"``."""
        return f"every {_format_interval(self.interval)}"

    def to_json(self) -> dict[str, Any]:
        """``{"type": "every", "interval": <seconds>, "anchor": <ISO string or None>}``."""
        return {
            "type": "every",
            "interval": self.interval.total_seconds(),
            "anchor": None if self.anchor is None else self.anchor.isoformat(),
        }


# -------------------------------------------------------------------------------- Cron

_CRON_ALIASES: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# croniter's hashed ("H") and random ("R") items: hashed ones need an id we do not
# give, random ones would give each node a different schedule for the same spec.
_HASHED_ITEM = re.compile(r"^[hr](\(\d+-\d+\))?(/\d+)?$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Cron:
    """Fire on a cron spec, evaluated on the wall clock of the zone ``tz``.

    ``spec`` has 5 fields (``min hour dom month dow``) or 6 with seconds first
    (``sec min hour dom month dow``, as robfig/cron ``WithSeconds`` and Quartz), or
    is one of ``@yearly @annually @monthly @weekly @daily @midnight @hourly``.
    Day-of-month and day-of-week combine as in Vixie cron (either matches when both
    are restricted). Whitespace in ``spec`` is normalized to single spaces.

    DST: a wall time that does not exist fires at the transition instant (several
    such times collapse into that one fire); a wall time that occurs twice fires at
    its first occurrence only.

    Raises InvalidSchedule for an unknown zone, a bad spec (7 fields, empty, out of
    range values, hashed/random items) or a date that can never occur (Feb 30).
    """

    spec: str
    tz: str = "UTC"

    def __post_init__(self) -> None:
        if not isinstance(self.spec, str):
            raise InvalidSchedule(f"cron spec must be a string, got {self.spec!r}")
        object.__setattr__(self, "spec", " ".join(self.spec.split()))
        _engine(self.spec, self.tz)  # validates both, and warms the cache

    def next_fire(self, after: datetime) -> datetime:
        """The first fire instant strictly after ``after``, aware UTC."""
        return _engine(self.spec, self.tz).next_fire(_require_aware(after, "after"))

    def describe(self) -> str:
        """Human-readable form, e.g. ``"cron '*/5 * * * *' in Europe/Paris"``."""
        return f"cron {self.spec!r} in {self.tz}"

    def to_json(self) -> dict[str, Any]:
        """``{"type": "cron", "spec": ..., "tz": ...}``."""
        return {"type": "cron", "spec": self.spec, "tz": self.tz}

    def _prev_fire(self, before: datetime) -> datetime | None:
        """The last fire instant strictly before ``before`` (None if none in 50 years)."""
        return _engine(self.spec, self.tz).prev_fire(_require_aware(before, "before"))


Trigger: TypeAlias = Every | Cron


def _load_zone(tz: str) -> ZoneInfo:
    if not isinstance(tz, str):
        raise InvalidSchedule(f"time zone must be a string, got {tz!r}")
    try:
        return ZoneInfo(tz)
    # Unknown keys raise ZoneInfoNotFoundError, malformed ones ValueError, and a
    # directory of the zone database ("America") an OSError.
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise InvalidSchedule(f"unknown time zone {tz!r}") from exc


def _cron_fields(spec: str) -> str:
    """Validate the shape of a normalized spec and return the fields croniter gets."""
    if not spec:
        raise InvalidSchedule("empty cron spec")
    if spec.startswith("@"):
        alias = spec.lower()
        if alias.split()[0] == "@every":
            raise InvalidSchedule(
                f"{spec!r} is an interval, not a cron spec: use cron_or_every() or Every"
            )
        if alias not in _CRON_ALIASES:
            raise InvalidSchedule(
                f"unknown cron alias {spec!r}; known: {', '.join(sorted(_CRON_ALIASES))}"
            )
        return _CRON_ALIASES[alias]
    fields = spec.split(" ")
    if len(fields) not in (5, 6):
        raise InvalidSchedule(
            f"cron spec {spec!r} has {len(fields)} fields; expected 5 (min hour dom month dow)"
            " or 6 (sec min hour dom month dow)"
        )
    for field in fields:
        for item in field.split(","):
            if _HASHED_ITEM.match(item):
                raise InvalidSchedule(
                    f"cron spec {spec!r}: hashed/random item {item!r} is not supported"
                )
    return spec


class _CronEngine:
    """A parsed spec bound to its zone: maps wall-clock candidates to instants.

    croniter yields naive wall-clock candidates ``c``; ``instant(c)`` maps them to
    UTC (first occurrence when repeated, transition instant when skipped). That map
    is non-decreasing in ``c``, which is what lets both directions start the
    croniter search at one well-chosen wall time instead of scanning.
    """

    __slots__ = ("_iter", "_lock", "zone")

    def __init__(self, spec: str, tz: str) -> None:
        self.zone = _load_zone(tz)
        fields = _cron_fields(spec)
        dow = fields.split(" ")[-1]
        try:
            # strict rejects days that no listed month has (Feb 30); it would also
            # reject them when the day of week could still match ("0 0 30 2 mon"
            # fires on Mondays in February), so it is only asked when dow is open.
            croniter.expand(fields, second_at_beginning=True, strict=dow in ("*", "?"))
            self._iter = croniter(
                fields,
                datetime(2000, 1, 1),
                ret_type=datetime,
                second_at_beginning=True,
            )
        except (CroniterError, CroniterBadTypeRangeError) as exc:
            raise InvalidSchedule(f"invalid cron spec {spec!r}: {exc}") from exc
        # croniter keeps a cursor in the object; the lock makes the cached engine
        # safe to share with worker threads (uncontended under Trio, so ~free).
        self._lock = threading.Lock()

    def _wall(self, instant: datetime) -> tuple[datetime, int]:
        local = instant.astimezone(self.zone)
        return local.replace(tzinfo=None, fold=0), local.fold

    def _is_repeated(self, wall: datetime) -> bool:
        # In a fall-back overlap the earlier interpretation (fold=0) has the larger
        # offset; in a gap it is the other way round.
        first = wall.replace(tzinfo=self.zone, fold=0).utcoffset()
        second = wall.replace(tzinfo=self.zone, fold=1).utcoffset()
        assert first is not None  # ZoneInfo always answers
        assert second is not None
        return first > second

    def _repeat_end(self, wall: datetime) -> datetime:
        """The first wall time after the repeated period that ``wall`` lies in."""
        first = wall.replace(tzinfo=self.zone, fold=0).utcoffset()
        second = wall.replace(tzinfo=self.zone, fold=1).utcoffset()
        assert first is not None
        assert second is not None
        start = wall.replace(microsecond=0)
        # Transitions and offsets are whole seconds, so the end is within
        # (start, start + overlap]; bisect for the first non-repeated second.
        low, high = 0, (first - second) // _SECOND
        while high - low > 1:
            middle = (low + high) // 2
            if self._is_repeated(start + middle * _SECOND):
                low = middle
            else:
                high = middle
        return start + high * _SECOND

    def instant(self, wall: datetime) -> datetime:
        """Map a wall-clock candidate to the instant it fires at (aware UTC)."""
        at = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        if self._wall(at)[0] == wall:
            return at  # exists; fold=0 picked the first occurrence if it is repeated
        # Skipped by a spring-forward gap: fire at the transition, the first instant
        # whose wall time is past ``wall``. It lies between the two interpretations
        # of ``wall``; bisect on whole seconds (this handles 30-minute shifts too).
        other = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        low = int(min(at, other).timestamp())
        high = int(max(at, other).timestamp())
        while high - low > 1:
            middle = (low + high) // 2
            if self._wall(datetime.fromtimestamp(middle, UTC))[0] > wall:
                high = middle
            else:
                low = middle
        return datetime.fromtimestamp(high, UTC)

    def next_fire(self, after: datetime) -> datetime:
        wall, fold = self._wall(after)
        if fold == 1 and self._is_repeated(wall):
            # ``after`` is a second occurrence: every candidate up to the end of the
            # repeat fires at its first occurrence, already past. Resume there.
            start = self._repeat_end(wall) - _MICROSECOND
        else:
            start = wall
        while True:
            # Terminates: candidates strictly increase and their instants with them;
            # by the choice of ``start`` the first candidate normally qualifies.
            candidate = self._step(start, forward=True)
            if candidate is None:
                raise InvalidSchedule(
                    f"cron spec has no fire time within 50 years after {after.isoformat()}"
                )
            at = self.instant(candidate)
            if at > after:
                return at
            start = candidate

    def prev_fire(self, before: datetime) -> datetime | None:
        wall, fold = self._wall(before)
        if fold == 1 and self._is_repeated(wall):
            # Every candidate before the end of the repeat fires at a first
            # occurrence, earlier than ``before``; none after it does.
            start = self._repeat_end(wall)
        else:
            # Equal to ``wall`` except right after a gap, where it is the gap's start
            # (candidates in the gap fire at ``before`` itself, not before it).
            start = self._wall(before - _MICROSECOND)[0] + _MICROSECOND
        while True:
            candidate = self._step(start, forward=False)
            if candidate is None:
                return None
            at = self.instant(candidate)
            if at < before:
                return at
            start = candidate

    def _step(self, start: datetime, *, forward: bool) -> datetime | None:
        """The croniter candidate strictly after (before) the wall time ``start``."""
        with self._lock:
            try:
                if forward:
                    return self._iter.get_next(datetime, start_time=start)
                return self._iter.get_prev(datetime, start_time=start)
            except CroniterBadDateError:
                return None


@functools.lru_cache(maxsize=1024)
def _engine(spec: str, tz: str) -> _CronEngine:
    # Parsing costs more than evaluating; Cron instances stay plain data and share
    # engines through this cache (exceptions are not cached).
    return _CronEngine(spec, tz)


# ------------------------------------------------------------------ JSON and identities


def trigger_from_json(data: Mapping[str, Any]) -> Trigger:
    """Rebuild a trigger from :meth:`Every.to_json` / :meth:`Cron.to_json` output.

    Raises InvalidSchedule for anything else: unknown type, missing or unknown keys,
    wrong value types, or values the constructors refuse.
    """
    if not isinstance(data, Mapping):
        raise InvalidSchedule(f"trigger JSON must be an object, got {data!r}")
    kind = data.get("type")
    if kind == "every":
        _check_keys(data, required={"type", "interval"}, optional={"anchor"})
        interval = data["interval"]
        if isinstance(interval, bool) or not isinstance(interval, int | float):
            raise InvalidSchedule(f"every.interval must be a number of seconds, got {interval!r}")
        anchor_text = data.get("anchor")
        anchor: datetime | None = None
        if anchor_text is not None:
            if not isinstance(anchor_text, str):
                raise InvalidSchedule(f"every.anchor must be an ISO string, got {anchor_text!r}")
            try:
                anchor = datetime.fromisoformat(anchor_text)
            except ValueError as exc:
                raise InvalidSchedule(f"every.anchor is not ISO 8601: {anchor_text!r}") from exc
        return Every(parse_interval(interval), anchor)
    if kind == "cron":
        _check_keys(data, required={"type", "spec"}, optional={"tz"})
        spec, tz = data["spec"], data.get("tz", "UTC")
        if not isinstance(spec, str) or not isinstance(tz, str):
            raise InvalidSchedule(f"cron.spec and cron.tz must be strings, got {spec!r}, {tz!r}")
        return Cron(spec, tz)
    raise InvalidSchedule(f"unknown trigger type {kind!r} (expected 'every' or 'cron')")


def _check_keys(data: Mapping[str, Any], *, required: set[str], optional: set[str]) -> None:
    keys = set(data)
    missing = required - keys
    unknown = keys - required - optional
    if missing or unknown:
        # Unknown keys are refused rather than dropped: a field a newer version
        # added may change the meaning of the trigger.
        raise InvalidSchedule(
            f"bad {data.get('type')} trigger JSON: missing {sorted(missing)}, "
            f"unknown {sorted(unknown)}"
        )


def cron_or_every(spec: str, tz: str = "UTC") -> Trigger:
    """``"@every <interval>"`` gives an unanchored :class:`Every` (go-job compatibility);
    anything else gives ``Cron(spec, tz)``. Raises InvalidSchedule if it is neither."""
    words = spec.split(maxsplit=1) if isinstance(spec, str) else []
    if words and words[0].lower() == "@every":
        if len(words) == 1:
            raise InvalidSchedule(f"{spec!r} lacks an interval, e.g. '@every 5m'")
        return Every(parse_interval(words[1]))
    return Cron(spec, tz)


def schedule_id(kind: str, trigger: Trigger, args_json: str) -> str:
    """A deterministic schedule id: ``"<kind>:<16 hex digits>"``.

    The digest covers the job kind, the trigger's JSON without its anchor (the anchor
    is the creation time, which differs between nodes declaring the same schedule)
    and the encoded arguments, so every node derives the same id for the same
    declaration.
    """
    trigger_json = trigger.to_json()
    trigger_json.pop("anchor", None)
    # A JSON array separates the parts unambiguously; sorted keys and fixed
    # separators make the encoding canonical.
    payload = json.dumps(
        [kind, trigger_json, args_json], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return f"{kind}:{hashlib.sha256(payload.encode('utf-8')).hexdigest()[:16]}"


# ------------------------------------------------------------------------- fire plans


@dataclass(frozen=True, slots=True)
class FirePlan:
    """What :func:`plan_fires` decided for the slots due up to "now".

    ``truncated`` is True when ``max_scan`` stopped the count of a Cron trigger's
    slots: the oldest slots were not examined, so ``skipped_count`` is then a lower
    bound (``fire_times``, ``skipped`` and ``next_fire_at`` are still exact).
    """

    fire_times: tuple[datetime, ...]
    """Slots to create instances for, ascending."""
    skipped: tuple[datetime, ...]
    """The most recent skipped slots (at most SKIP_RECORD_LIMIT), ascending."""
    skipped_count: int
    """How many slots were skipped in total (may exceed ``len(skipped)``)."""
    next_fire_at: datetime
    """The schedule's new cursor: the first slot after the last one considered."""
    truncated: bool = False


def plan_fires(
    trigger: Trigger,
    next_fire_at: datetime,
    now: datetime,
    *,
    misfire: Misfire,
    misfire_cap: int = 100,
    grace: timedelta = timedelta(seconds=5),
    max_scan: int = 100_000,
) -> FirePlan:
    """Decide which due slots to fire, given the schedule's cursor and the time.

    The due slots are ``next_fire_at`` (the cursor, normally a slot) and the
    trigger's following slots up to and including ``now``. A slot is on time if
    ``now - slot <= grace`` and missed otherwise. On-time slots always fire; missed
    ones follow ``misfire``:

    * ``CATCH_UP_ONCE``: the most recent missed slot fires, unless a slot is on
      time (then that one stands for the catch-up and every missed slot is skipped);
    * ``CATCH_UP_ALL``: the ``misfire_cap`` most recent missed slots fire, older
      ones are skipped;
    * ``SKIP``: every missed slot is skipped.

    Whatever the policy, at most ``max_scan`` slots fire (the most recent). Every
    counts its slots arithmetically; a Cron trigger walks back from ``now`` through
    at most ``max_scan`` slots and, past that, stops counting (``truncated``). The
    new cursor is the first slot after ``now``. If ``next_fire_at > now`` nothing is
    due and the plan is empty with the cursor unchanged.

    Raises InvalidSchedule for naive datetimes, ``misfire_cap < 1``, a negative
    ``grace`` or ``max_scan < 1``.
    """
    cursor = _require_aware(next_fire_at, "next_fire_at")
    now = _require_aware(now, "now")
    try:
        policy = Misfire(misfire)
    except ValueError as exc:
        raise InvalidSchedule(f"unknown misfire policy {misfire!r}") from exc
    if misfire_cap < 1:
        raise InvalidSchedule(f"misfire_cap must be at least 1, got {misfire_cap}")
    if grace < timedelta(0):
        raise InvalidSchedule(f"grace must not be negative, got {grace}")
    if max_scan < 1:
        raise InvalidSchedule(f"max_scan must be at least 1, got {max_scan}")
    if cursor > now:
        return FirePlan((), (), 0, cursor)

    boundary = now - grace  # slots before it are missed, from it on they are on time
    # Missed slots needed at most: the ones that may fire plus a full skip record.
    keep = (misfire_cap if policy is Misfire.CATCH_UP_ALL else 1) + SKIP_RECORD_LIMIT
    if isinstance(trigger, Every):
        due = _every_due(trigger, cursor, now, boundary)
    else:
        due = _cron_due(trigger, cursor, now, boundary, keep, max_scan)

    # Skipped slots always form a prefix of the due slots and fired ones the rest:
    # find the split index ``first_fired``.
    if policy is Misfire.SKIP:
        first_fired = due.missed
    elif policy is Misfire.CATCH_UP_ALL:
        first_fired = max(0, due.missed - misfire_cap)
    elif due.total > due.missed:  # CATCH_UP_ONCE with an on-time slot
        first_fired = due.missed
    else:
        first_fired = max(0, due.missed - 1)
    first_fired = max(first_fired, due.total - max_scan)
    first_recorded = max(0, first_fired - SKIP_RECORD_LIMIT)
    return FirePlan(
        fire_times=tuple(due.slot(i) for i in range(first_fired, due.total)),
        skipped=tuple(due.slot(i) for i in range(first_recorded, first_fired)),
        skipped_count=first_fired,
        next_fire_at=trigger.next_fire(now),
        truncated=due.truncated,
    )


@dataclass(frozen=True, slots=True)
class _Due:
    """Due slots numbered 0..total-1 in time order; the first ``missed`` are missed.

    ``slot(i)`` is only asked for the indices a plan lists: the fired ones and the
    SKIP_RECORD_LIMIT skipped ones before them.
    """

    total: int
    missed: int
    slot: Callable[[int], datetime]
    truncated: bool = False


def _every_due(trigger: Every, cursor: datetime, now: datetime, boundary: datetime) -> _Due:
    # Slot 0 is the cursor; the rest are the grid slots after it, so the count and
    # any slot follow from arithmetic however long the downtime was.
    first_grid = trigger.next_fire(cursor)
    interval = trigger.interval

    def count_through(limit: datetime) -> int:
        """How many due slots are <= limit."""
        if limit < cursor:
            return 0
        if first_grid > limit:
            return 1
        return 2 + (limit - first_grid) // interval

    def slot(index: int) -> datetime:
        return cursor if index == 0 else first_grid + (index - 1) * interval

    # Microsecond resolution: "before boundary" is "at or before boundary - 1us".
    return _Due(count_through(now), count_through(boundary - _MICROSECOND), slot)


def _cron_due(
    trigger: Cron, cursor: datetime, now: datetime, boundary: datetime, keep: int, max_scan: int
) -> _Due:
    # Walk back from ``now``: the slots a plan lists are the most recent ones, so they
    # are found first and a truncated walk loses only the count of the oldest.
    on_time: list[datetime] = []  # newest first
    missed: list[datetime] = []  # newest first, the ``keep`` most recent
    missed_count = 0
    truncated = False
    position = now + _MICROSECOND
    while True:
        found = trigger._prev_fire(position)
        if found is None or found <= cursor:
            # The cursor is a due slot even if it is off the trigger's grid.
            slot, reached_cursor = cursor, True
        else:
            slot, reached_cursor = found, False
        if len(on_time) + missed_count == max_scan:
            # A slot is left (this one, at least) but the budget is spent: the older
            # slots stay uncounted.
            truncated = True
            break
        if slot >= boundary:
            on_time.append(slot)
        else:
            missed_count += 1
            if len(missed) < keep:
                missed.append(slot)
        if reached_cursor:
            break
        position = slot

    # Index i of the due sequence; the known missed slots are its most recent ones.
    known = missed[::-1] + on_time[::-1]
    offset = missed_count - len(missed)

    def slot_at(index: int) -> datetime:
        # ``keep`` covers every index a plan asks for; a negative one would wrap.
        assert index >= offset, (index, offset)
        return known[index - offset]

    return _Due(missed_count + len(on_time), missed_count, slot_at, truncated)
