"""Job definitions (validation, the policy built from their fields) and the registry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gojob import Backoff, DuplicateJob, GojobError, Instance, Job, Policy, UnknownJob
from gojob.job import Registry
from gojob.policy import DEFAULT_PRIORITY


def add(a: int, b: int) -> int:
    return a + b


async def add_async(a: int, b: int) -> int:
    return a + b


# -- Job validation ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["", " ", "\t\n"])
def test_a_job_needs_a_non_empty_kind(kind: str) -> None:
    with pytest.raises(ValueError, match="non-empty kind"):
        Job(kind, add)


def test_a_job_kind_must_be_text() -> None:
    with pytest.raises(ValueError, match="non-empty kind"):
        Job(None, add)  # type: ignore[arg-type]


@pytest.mark.parametrize("executor", [None, 42, "add", [add]])
def test_a_job_needs_a_callable_executor(executor: Any) -> None:
    with pytest.raises(TypeError, match="executor of job 'adder' is not callable"):
        Job("adder", executor)


def test_a_job_with_an_invalid_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        Job("k", add, max_retries=-2)
    with pytest.raises(ValueError, match="timeout"):
        Job("k", add, timeout=0)
    with pytest.raises(ValueError, match="max_rescues"):
        Job("k", add, max_rescues=-1)


def test_sync_and_async_executors() -> None:
    assert Job("sync", add).is_async is False
    assert Job("async", add_async).is_async is True


# -- the policy built from the job's fields ------------------------------------------------


def test_default_policy() -> None:
    policy = Job("k", add).policy
    assert policy == Policy()
    assert policy.priority == DEFAULT_PRIORITY


def test_policy_takes_the_job_fields() -> None:
    backoff = Backoff.linear(2, max=10)
    job = Job(
        "k",
        add,
        max_retries=4,
        backoff=backoff,
        timeout=timedelta(seconds=90),
        priority=1,
        max_rescues=0,
    )
    assert job.policy == Policy(
        max_retries=4,
        backoff=backoff,
        custom_backoff=False,
        timeout=90.0,
        priority=1,
        max_rescues=0,
    )


def test_timeout_in_seconds() -> None:
    assert Job("k", add, timeout=2).policy.timeout == 2.0
    assert Job("k", add, timeout=None).policy.timeout is None


@pytest.mark.parametrize("number", [3, 2.5, 0])
def test_a_number_as_backoff_is_a_constant_delay(number: float) -> None:
    job = Job("k", add, backoff=number)
    assert job.policy.backoff == Backoff.constant(float(number))
    assert job.policy.custom_backoff is False
    inst = Instance(uuid="u", kind="k", policy=job.policy)
    assert job.retry_delay(inst, 1) == float(number)
    assert job.retry_delay(inst, 5) == float(number)


def test_a_negative_number_as_backoff_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid backoff"):
        Job("k", add, backoff=-1)


def test_a_callable_backoff_is_a_custom_backoff() -> None:
    seen: list[int] = []

    def backoff(inst: Instance) -> float:
        seen.append(inst.failures)
        return 7.0 + inst.failures

    job = Job("k", add, backoff=backoff)
    assert job.policy.custom_backoff is True
    # The persisted policy carries a plain default backoff: a callable is not persisted.
    assert job.policy.backoff == Backoff()
    inst = Instance(uuid="u", kind="k", policy=job.policy, failures=2)
    assert job.retry_delay(inst, 3) == 9.0
    assert seen == [2]


def test_a_custom_backoff_result_becomes_a_float() -> None:
    job = Job("k", add, backoff=lambda inst: 4)
    inst = Instance(uuid="u", kind="k", policy=job.policy)
    delay = job.retry_delay(inst, 1)
    assert delay == 4.0
    assert isinstance(delay, float)


def test_an_instance_that_overrides_the_backoff_does_not_use_the_callable() -> None:
    def backoff(inst: Instance) -> float:
        raise AssertionError("the instance's own backoff applies")

    job = Job("k", add, backoff=backoff)
    overridden = job.policy.with_overrides(backoff=Backoff.linear(3), custom_backoff=False)
    inst = Instance(uuid="u", kind="k", policy=overridden)
    assert job.retry_delay(inst, 2) == 6.0


def test_a_backoff_object_is_used_by_retry_delay() -> None:
    job = Job("k", add, backoff=Backoff.exponential(1, jitter=0))
    inst = Instance(uuid="u", kind="k", policy=job.policy)
    assert [job.retry_delay(inst, n) for n in (1, 2, 3)] == [1.0, 2.0, 4.0]


def test_a_backoff_object_is_not_taken_for_a_callable() -> None:
    job = Job("k", add, backoff=Backoff.constant(1))
    assert job.policy.custom_backoff is False


# -- Registry --------------------------------------------------------------------------------


def test_an_empty_registry() -> None:
    registry = Registry()
    assert len(registry) == 0
    assert registry.kinds() == []
    assert registry.jobs() == []
    assert registry.version == 0
    assert "add" not in registry


def test_register_and_look_up() -> None:
    registry = Registry()
    job = Job("add", add)
    assert registry.register(job) is job
    assert registry.get("add") is job
    assert registry.find("add") is job
    assert "add" in registry
    assert len(registry) == 1
    assert registry.kinds() == ["add"]
    assert registry.jobs() == [job]


def test_kinds_keep_registration_order() -> None:
    registry = Registry()
    for kind in ("c", "a", "b"):
        registry.register(Job(kind, add))
    assert registry.kinds() == ["c", "a", "b"]


def test_registering_a_kind_twice_is_refused() -> None:
    registry = Registry()
    first = Job("add", add)
    registry.register(first)
    version = registry.version
    with pytest.raises(DuplicateJob, match="replace=True") as caught:
        registry.register(Job("add", add_async))
    assert "'add'" in str(caught.value)
    assert isinstance(caught.value, GojobError)
    assert isinstance(caught.value, ValueError)
    assert registry.get("add") is first
    assert registry.version == version


def test_registering_the_same_job_object_twice_is_refused_too() -> None:
    registry = Registry()
    job = Job("add", add)
    registry.register(job)
    with pytest.raises(DuplicateJob):
        registry.register(job)


def test_replace() -> None:
    registry = Registry()
    registry.register(Job("add", add))
    second = Job("add", add_async)
    assert registry.register(second, replace=True) is second
    assert registry.get("add") is second
    assert len(registry) == 1


def test_replace_of_a_new_kind_registers_it() -> None:
    registry = Registry()
    job = Job("add", add)
    registry.register(job, replace=True)
    assert registry.get("add") is job


def test_unregister() -> None:
    registry = Registry()
    job = Job("add", add)
    registry.register(job)
    assert registry.unregister("add") is job
    assert "add" not in registry
    assert registry.find("add") is None
    with pytest.raises(UnknownJob):
        registry.get("add")
    # Registering again after unregistering is not a duplicate.
    registry.register(Job("add", add))
    assert "add" in registry


def test_unregister_unknown_raises_unknown_job() -> None:
    registry = Registry()
    with pytest.raises(UnknownJob, match="no job of kind 'nope' is registered"):
        registry.unregister("nope")
    assert registry.version == 0


def test_get_unknown_raises_unknown_job() -> None:
    registry = Registry()
    registry.register(Job("add", add))
    with pytest.raises(UnknownJob, match="'missing'") as caught:
        registry.get("missing")
    assert isinstance(caught.value, GojobError)
    assert isinstance(caught.value, LookupError)
    assert registry.find("missing") is None


def test_version_is_bumped_on_every_change() -> None:
    registry = Registry()
    versions = [registry.version]
    registry.register(Job("a", add))
    versions.append(registry.version)
    registry.register(Job("b", add))
    versions.append(registry.version)
    registry.register(Job("a", add_async), replace=True)
    versions.append(registry.version)
    registry.unregister("b")
    versions.append(registry.version)
    assert versions == sorted(set(versions))  # strictly increasing
    assert len(versions) == 5


def test_version_is_not_bumped_by_reads() -> None:
    registry = Registry()
    registry.register(Job("a", add))
    version = registry.version
    registry.get("a")
    registry.find("b")
    registry.kinds()
    registry.jobs()
    _ = "a" in registry
    _ = len(registry)
    assert registry.version == version


def test_jobs_and_kinds_are_copies() -> None:
    registry = Registry()
    registry.register(Job("a", add))
    registry.kinds().append("b")
    registry.jobs().clear()
    assert registry.kinds() == ["a"]
    assert len(registry.jobs()) == 1
