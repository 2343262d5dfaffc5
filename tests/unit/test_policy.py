"""Backoff delays and the retry/timeout/priority policy persisted with every instance."""

from __future__ import annotations

import json
import math
import random
from datetime import timedelta
from typing import Any

import pytest

from gojob import INFINITE, Backoff, Policy
from gojob.policy import DEFAULT_PRIORITY, seconds

# -- seconds ---------------------------------------------------------------------------


def test_seconds_normalises_durations() -> None:
    assert seconds(None) is None
    assert seconds(3) == 3.0
    assert isinstance(seconds(3), float)
    assert seconds(1.5) == 1.5
    assert seconds(timedelta(minutes=2, milliseconds=500)) == 120.5


# -- Backoff delays ------------------------------------------------------------------------


def test_default_backoff_is_no_delay() -> None:
    backoff = Backoff()
    assert backoff.kind == "constant"
    assert [backoff.delay(n) for n in range(1, 5)] == [0.0, 0.0, 0.0, 0.0]


def test_constant_delay_is_the_same_for_every_retry() -> None:
    backoff = Backoff.constant(7.5)
    assert [backoff.delay(n) for n in range(1, 6)] == [7.5] * 5


def test_linear_delay_grows_by_its_step() -> None:
    backoff = Backoff.linear(3)
    assert [backoff.delay(n) for n in range(1, 6)] == [3.0, 6.0, 9.0, 12.0, 15.0]


def test_exponential_delay_multiplies_by_its_factor() -> None:
    assert [Backoff.exponential(1, jitter=0).delay(n) for n in range(1, 6)] == [
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
    ]
    tripling = Backoff.exponential(0.5, factor=3, jitter=0)
    assert [tripling.delay(n) for n in range(1, 5)] == [0.5, 1.5, 4.5, 13.5]


def test_retry_numbers_below_one_count_as_the_first_retry() -> None:
    assert Backoff.linear(2).delay(0) == 2.0
    assert Backoff.linear(2).delay(-5) == 2.0
    assert Backoff.exponential(4, jitter=0).delay(0) == 4.0


def test_linear_and_exponential_are_capped_at_max() -> None:
    linear = Backoff.linear(10, max=25)
    assert [linear.delay(n) for n in range(1, 5)] == [10.0, 20.0, 25.0, 25.0]
    exponential = Backoff.exponential(1, max=5, jitter=0)
    assert [exponential.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_constant_is_capped_at_max_too() -> None:
    assert Backoff("constant", base=100, max=30).delay(1) == 30.0


def test_default_cap_is_an_hour() -> None:
    assert Backoff.linear(1000).delay(50) == 3600.0
    assert Backoff.exponential(1, jitter=0).delay(40) == 3600.0


def test_huge_retry_counts_do_not_overflow() -> None:
    backoff = Backoff.exponential(1, factor=2, jitter=0)
    assert backoff.delay(10**9) == 3600.0
    assert math.isfinite(Backoff.exponential(1, factor=1000, max=1e9, jitter=0).delay(10**6))


def test_exponential_has_ten_percent_jitter_by_default() -> None:
    assert Backoff.exponential(1).jitter == 0.1
    assert Backoff.constant(1).jitter == 0.0
    assert Backoff.linear(1).jitter == 0.0


@pytest.mark.parametrize("seed", [0, 1, 42, 2024])
def test_jitter_stays_within_its_fraction(seed: int) -> None:
    rng = random.Random(seed)
    backoff = Backoff.constant(10, jitter=0.2)
    delays = [backoff.delay(1, rng) for _ in range(500)]
    assert all(8.0 <= d <= 12.0 for d in delays)
    # It spreads: both sides of the base are drawn, not one fixed value.
    assert min(delays) < 9.0
    assert max(delays) > 11.0


def test_jitter_applies_after_the_cap() -> None:
    rng = random.Random(7)
    backoff = Backoff.exponential(1, max=8, jitter=0.5)
    delays = [backoff.delay(20, rng) for _ in range(300)]
    assert all(4.0 <= d <= 12.0 for d in delays)
    assert max(delays) > 8.0  # the spread is around the cap, not below it


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    backoff = Backoff.linear(5, jitter=0.3)
    first = [backoff.delay(n, random.Random(99)) for n in range(1, 8)]
    second = [backoff.delay(n, random.Random(99)) for n in range(1, 8)]
    assert first == second


def test_full_jitter_never_goes_negative() -> None:
    rng = random.Random(3)
    backoff = Backoff.constant(1, jitter=1.0)
    delays = [backoff.delay(1, rng) for _ in range(500)]
    assert all(0.0 <= d <= 2.0 for d in delays)


def test_zero_delay_draws_no_jitter() -> None:
    class NoDraws(random.Random):
        def uniform(self, a: float, b: float) -> float:
            raise AssertionError("a zero delay must not draw")

    assert Backoff.constant(0, jitter=0.5).delay(1, NoDraws()) == 0.0


def test_without_jitter_the_rng_is_not_used() -> None:
    class NoDraws(random.Random):
        def uniform(self, a: float, b: float) -> float:
            raise AssertionError("no jitter, no draw")

    assert Backoff.linear(2).delay(3, NoDraws()) == 6.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "fibonacci"},
        {"base": -1},
        {"max": -0.5},
        {"jitter": -0.1},
        {"jitter": 1.01},
        {"factor": 0.99},
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_invalid_backoffs_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="backoff"):
        Backoff(**kwargs)


def test_boundary_backoffs_are_accepted() -> None:
    assert Backoff(jitter=1.0).jitter == 1.0
    assert Backoff(kind="exponential", factor=1.0, base=2).delay(9) == 2.0
    assert Backoff(base=0, max=0).delay(1) == 0.0


def test_invalid_helper_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid backoff"):
        Backoff.constant(-1)
    with pytest.raises(ValueError, match="invalid backoff"):
        Backoff.linear(1, jitter=2)
    with pytest.raises(ValueError, match="invalid backoff"):
        Backoff.exponential(1, factor=0.5)


def test_backoff_is_immutable() -> None:
    backoff = Backoff.constant(1)
    with pytest.raises(AttributeError):
        backoff.base = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    "backoff",
    [
        Backoff(),
        Backoff.constant(2.5, jitter=0.1),
        Backoff.linear(4, max=30),
        Backoff.exponential(0.25, factor=3, max=120, jitter=0.2),
    ],
    ids=lambda b: b.kind,
)
def test_backoff_json_round_trip(backoff: Backoff) -> None:
    data = json.loads(json.dumps(backoff.to_json()))
    assert Backoff.from_json(data) == backoff


def test_backoff_from_empty_json_is_the_default() -> None:
    assert Backoff.from_json({}) == Backoff()


def test_backoff_from_json_validates() -> None:
    with pytest.raises(ValueError, match="invalid backoff"):
        Backoff.from_json({"kind": "exponential", "factor": 0.1})


# -- Policy --------------------------------------------------------------------------------


def test_default_policy() -> None:
    policy = Policy()
    assert policy.max_retries == 0
    assert policy.backoff == Backoff()
    assert policy.custom_backoff is False
    assert policy.timeout is None
    assert policy.priority == DEFAULT_PRIORITY
    assert policy.max_rescues == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": -2}, "max_retries"),
        ({"max_retries": -100}, "max_retries"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1.5}, "timeout"),
        ({"max_rescues": -1}, "max_rescues"),
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Policy(**kwargs)


def test_boundary_policies_are_accepted() -> None:
    assert Policy(max_retries=INFINITE).max_retries == -1
    assert Policy(max_rescues=0).max_rescues == 0
    assert Policy(timeout=0.001).timeout == 0.001


def test_no_retries_gives_one_attempt() -> None:
    policy = Policy(max_retries=0)
    assert policy.retries_left(0) is True  # the first attempt
    assert policy.retries_left(1) is False


def test_one_retry_gives_two_attempts() -> None:
    policy = Policy(max_retries=1)
    assert policy.retries_left(1) is True
    assert policy.retries_left(2) is False
    assert policy.retries_left(3) is False


def test_three_retries_allow_retry_after_the_third_failure_only() -> None:
    policy = Policy(max_retries=3)
    assert [policy.retries_left(n) for n in range(1, 6)] == [True, True, True, False, False]


def test_infinite_retries_never_run_out() -> None:
    policy = Policy(max_retries=INFINITE)
    assert all(policy.retries_left(n) for n in (1, 2, 100, 10**9))


def test_with_overrides_replaces_given_fields_only() -> None:
    base = Policy(max_retries=2, timeout=30, priority=3)
    changed = base.with_overrides(priority=1, timeout=None, max_retries=None)
    assert changed.priority == 1
    assert changed.timeout == 30  # None means "keep"
    assert changed.max_retries == 2
    assert base.priority == 3  # the original is untouched


def test_with_overrides_of_nothing_returns_the_same_policy() -> None:
    base = Policy(max_retries=1)
    assert base.with_overrides() is base
    assert base.with_overrides(priority=None, timeout=None) is base


def test_with_overrides_can_set_falsy_values() -> None:
    base = Policy(max_retries=5, priority=5, custom_backoff=True)
    changed = base.with_overrides(max_retries=0, priority=0, custom_backoff=False)
    assert changed.max_retries == 0
    assert changed.priority == 0
    assert changed.custom_backoff is False


def test_with_overrides_replaces_the_backoff() -> None:
    changed = Policy().with_overrides(backoff=Backoff.linear(2))
    assert changed.backoff == Backoff.linear(2)


def test_with_overrides_validates() -> None:
    with pytest.raises(ValueError, match="timeout"):
        Policy().with_overrides(timeout=-1)
    with pytest.raises(ValueError, match="max_retries"):
        Policy().with_overrides(max_retries=-5)


def test_with_overrides_rejects_unknown_fields() -> None:
    with pytest.raises(TypeError):
        Policy().with_overrides(retries=3)


@pytest.mark.parametrize(
    "policy",
    [
        Policy(),
        Policy(timeout=None, max_retries=INFINITE),
        Policy(
            max_retries=4,
            backoff=Backoff.exponential(1.5, factor=2.5, max=600, jitter=0.25),
            custom_backoff=True,
            timeout=12.5,
            priority=1,
            max_rescues=0,
        ),
    ],
    ids=["default", "infinite-no-timeout", "everything-set"],
)
def test_policy_json_round_trip(policy: Policy) -> None:
    data = json.loads(json.dumps(policy.to_json()))
    back = Policy.from_json(data)
    assert back == policy
    assert back.timeout == policy.timeout


def test_policy_json_keeps_a_missing_timeout_as_none() -> None:
    data = Policy(timeout=None).to_json()
    assert "timeout" in data
    assert data["timeout"] is None
    assert Policy.from_json(data).timeout is None


def test_policy_json_timeout_becomes_float() -> None:
    restored = Policy.from_json({"timeout": 5})
    assert restored.timeout == 5.0
    assert isinstance(restored.timeout, float)


def test_policy_from_empty_json_is_the_default() -> None:
    assert Policy.from_json({}) == Policy()
    assert Policy.from_json({"backoff": None}) == Policy()


def test_policy_from_json_validates() -> None:
    with pytest.raises(ValueError, match="timeout must be positive"):
        Policy.from_json({"timeout": 0})
