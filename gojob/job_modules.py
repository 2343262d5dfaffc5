"""Job modules: how ``gojob server --jobs MODULE`` (or any program) finds the jobs to run.

A job module is any importable module that declares its jobs in one (or both) of two
ways:

* a :class:`JobSet` at module level, filled with its decorator::

      # myapp/jobs.py
      from gojob import JobSet

      jobs = JobSet()

      @jobs.job(kind="email.send", max_retries=3, timeout=30)
      async def send_email(to: str, subject: str) -> None: ...

      @jobs.job()  # kind: the function's qualified name, "myapp.jobs.cleanup"
      def cleanup() -> int: ...

* a module-level ``register(manager)`` function (sync or async), free to do anything a
  manager allows (register jobs built at run time, declare recurring schedules)::

      def register(manager: gojob.Manager) -> None:
          manager.register(gojob.Job("report", make_report, schedule=gojob.Cron("0 7 * * *")))

:func:`load_job_modules` imports each module, registers the jobs of every module-level
``JobSet`` and then calls ``register`` if there is one. A module that cannot be imported,
whose ``register`` raises, or that registers nothing, raises :class:`JobModuleError`
(``gojob server`` then exits non-zero with its message).
"""

from __future__ import annotations

import importlib
import inspect
import traceback
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from .errors import GojobError
from .job import Job
from .manager import Manager

__all__ = ["JobModuleError", "JobSet", "load_job_modules"]

F = TypeVar("F", bound=Callable[..., Any])


class JobModuleError(GojobError):
    """A job module could not be loaded, or declared no job."""


class JobSet:
    """Jobs declared by a module, registered by ``gojob server`` (or by hand with
    :meth:`register_all`)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def job(self, *, kind: str | None = None, **options: Any) -> Callable[[F], F]:
        """Decorator: declare the function as a job. ``kind`` defaults to the function's
        ``module.qualname``; ``options`` are :class:`~gojob.Job`'s (``description``
        defaults to the docstring's first line, ``max_retries``, ``timeout``,
        ``priority``, ``backoff``, ``schedule``...). The function is returned unchanged."""

        def decorate(fn: F) -> F:
            name = kind or f"{fn.__module__}.{fn.__qualname__}"
            if "description" not in options and fn.__doc__:
                options["description"] = fn.__doc__.strip().splitlines()[0]
            self.add(Job(name, fn, **options))
            return fn

        return decorate

    def add(self, job: Job) -> Job:
        """Declare a ready-made :class:`~gojob.Job`; a kind declared twice is an error."""
        if job.kind in self._jobs:
            raise JobModuleError(f"job kind {job.kind!r} is declared twice in this JobSet")
        self._jobs[job.kind] = job
        return job

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs.values())

    def __len__(self) -> int:
        return len(self._jobs)

    def register_all(self, manager: Manager) -> list[Job]:
        """Register every declared job on ``manager``."""
        return [manager.register(job) for job in self]


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise JobModuleError(f"job module {name!r} not found (is it on PYTHONPATH?)") from exc
        raise JobModuleError(f"job module {name!r} failed to import: {exc}\n{_tail(exc)}") from exc
    except Exception as exc:
        raise JobModuleError(
            f"job module {name!r} failed to import: {type(exc).__name__}: {exc}\n{_tail(exc)}"
        ) from exc


def _tail(exc: BaseException) -> str:
    """The last frames of the traceback: where in the module it failed."""
    frames = traceback.format_exception(exc, limit=-3)
    return "".join(frames).rstrip()


async def load_module(manager: Manager, name: str) -> list[str]:
    """Import one job module and register its jobs; returns the kinds it registered."""
    module = _import(name)
    before = set(manager.registry.kinds())
    try:
        for value in list(vars(module).values()):
            if isinstance(value, JobSet):
                value.register_all(manager)
        register = getattr(module, "register", None)
        if callable(register):
            result = register(manager)
            if inspect.isawaitable(result):
                await result
    except JobModuleError:
        raise
    except Exception as exc:
        raise JobModuleError(
            f"job module {name!r} failed to register its jobs: {type(exc).__name__}: {exc}"
        ) from exc
    added = sorted(set(manager.registry.kinds()) - before)
    if not added:
        raise JobModuleError(
            f"job module {name!r} registers no job: declare them with a module-level "
            "`jobs = JobSet()` and `@jobs.job(...)`, or a `register(manager)` function"
        )
    return added


async def load_job_modules(manager: Manager, names: Iterable[str]) -> dict[str, list[str]]:
    """Load every module of ``names`` in order (see the module docstring); returns the
    kinds each one registered."""
    return {name: await load_module(manager, name) for name in names}
