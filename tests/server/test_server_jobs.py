"""Job modules (``gojob.server.jobs``): a JobSet's decorator, ``register(manager)``, and
the errors of a module that cannot give its jobs."""

from __future__ import annotations

import pytest

import gojob
from gojob.server.jobs import JobModuleError, JobSet, load_job_modules


def test_the_decorator_declares_a_job_and_returns_the_function() -> None:
    jobs = JobSet()

    @jobs.job(kind="mail.send", max_retries=3, timeout=30)
    def send(to: str) -> str:
        """Send one mail.

        More text."""
        return to

    @jobs.job()
    async def cleanup() -> None:
        pass

    assert send("x") == "x"  # unchanged
    declared = {job.kind: job for job in jobs}
    assert set(declared) == {"mail.send", f"{__name__}.{cleanup.__qualname__}"}
    assert declared["mail.send"].description == "Send one mail."
    assert declared["mail.send"].policy.max_retries == 3
    assert declared["mail.send"].policy.timeout == 30
    assert len(jobs) == 2


def test_a_kind_declared_twice_is_refused() -> None:
    jobs = JobSet()
    jobs.job(kind="k")(lambda: None)
    with pytest.raises(JobModuleError, match="declared twice"):
        jobs.job(kind="k")(lambda: None)


async def test_modules_register_their_job_sets_and_call_register() -> None:
    async with gojob.open_manager(capture_logging=False) as manager:
        loaded = await load_job_modules(manager, ["tests.server.jobs_for_tests"])
        assert loaded == {"tests.server.jobs_for_tests": ["add", "echo", "sleep"]}
        done = await manager.wait(await manager.schedule("add", 2, 2), timeout=10)
        assert done.result == 4


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("tests.server.jobs_empty", "job module 'tests.server.jobs_empty' registers no job"),
        ("tests.server.jobs_broken", "failed to import: RuntimeError: this module is broken"),
        ("tests.server.jobs_missing", "job module 'tests.server.jobs_missing' not found"),
        ("tests.server.jobs_register_fails", "failed to register its jobs: LookupError: no conf"),
    ],
)
async def test_a_module_that_gives_no_job_is_an_error(module: str, message: str) -> None:
    async with gojob.open_manager(capture_logging=False) as manager:
        with pytest.raises(JobModuleError) as info:
            await load_job_modules(manager, [module])
    assert message in str(info.value)


async def test_two_modules_registering_one_kind_is_an_error() -> None:
    async with gojob.open_manager(capture_logging=False) as manager:
        manager.register(gojob.Job("add", lambda: None))
        with pytest.raises(JobModuleError, match="DuplicateJob"):
            await load_job_modules(manager, ["tests.server.jobs_for_tests"])
