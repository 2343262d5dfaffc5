"""A job module for ``gojob server --jobs tests.server.jobs_for_tests`` (subprocess tests).

Declares its jobs both ways a job module may: a module-level :class:`JobSet` and a
``register(manager)`` function.
"""

from __future__ import annotations

import trio

import gojob
from gojob.server.jobs import JobSet

jobs = JobSet()


@jobs.job(kind="add", max_retries=1)
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@jobs.job(kind="sleep")
async def sleep(seconds: float) -> str:
    """Sleep (the drain tests watch it run, finish or be released)."""
    await trio.sleep(seconds)
    return "slept"


def _echo(text: str) -> str:
    return text


def register(manager: gojob.Manager) -> None:
    manager.register(gojob.Job("echo", _echo, description="returns its argument"))
