"""Job definitions and the registry that maps kinds to them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .codec import CallPlan, plan_call
from .errors import DuplicateJob, UnknownJob
from .instance import Instance
from .policy import DEFAULT_PRIORITY, Backoff, Policy, seconds
from .schedule import Trigger
from .state import State

__all__ = ["Job", "Registry"]

CompleteProcessor = Callable[[Instance, Any], Any | Awaitable[Any]]
"""``on_complete(instance, result)``: after a successful attempt."""
TerminateProcessor = Callable[[Instance, BaseException], Any]
"""``on_terminate(instance, error)``: after a failed attempt, before the retry decision.
Return (or await to) ``None`` to turn the failure into success, or an exception to record
instead; re-raise or return ``error`` to keep it."""
StateProcessor = Callable[[Instance, State], Any]
"""``on_state_change(instance, state)``: after every transition this node performs."""


@dataclass(eq=False)
class Job:
    """A job definition: a kind, an executor (sync or async) and its defaults.

    Every default can be overridden per instance when scheduling. ``schedule`` is an
    optional recurring default (``gojob.Cron`` or ``gojob.Every``) that the manager
    declares when the job is registered.
    """

    kind: str
    executor: Callable[..., Any]
    description: str = ""
    max_retries: int = 0
    backoff: Backoff | float | Callable[[Instance], float] = field(default_factory=Backoff)
    timeout: float | timedelta | None = None
    priority: int = DEFAULT_PRIORITY
    max_rescues: int = 3
    schedule: Trigger | None = None
    on_complete: CompleteProcessor | None = None
    on_terminate: TerminateProcessor | None = None
    on_state_change: StateProcessor | None = None
    plan: CallPlan = field(init=False, repr=False)
    policy: Policy = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind.strip():
            raise ValueError("a job needs a non-empty kind")
        if not callable(self.executor):
            raise TypeError(f"executor of job {self.kind!r} is not callable")
        self.plan = plan_call(self.executor, inject=Instance)
        backoff = self.backoff
        custom = callable(backoff) and not isinstance(backoff, Backoff)
        if isinstance(backoff, int | float):
            backoff = Backoff.constant(float(backoff))
        self.policy = Policy(
            max_retries=self.max_retries,
            backoff=backoff if isinstance(backoff, Backoff) else Backoff(),
            custom_backoff=custom,
            timeout=seconds(self.timeout),
            priority=self.priority,
            max_rescues=self.max_rescues,
        )

    @property
    def is_async(self) -> bool:
        return self.plan.is_async

    def retry_delay(self, inst: Instance, failures: int) -> float:
        """Seconds before the next attempt after ``failures`` failed ones."""
        backoff = self.backoff
        if self.policy.custom_backoff and inst.policy.custom_backoff and callable(backoff):
            return float(backoff(inst))
        return inst.policy.backoff.delay(failures)


class Registry:
    """Kind -> Job. Registration is per process: executors cannot be serialised."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self.version = 0
        """Bumped on every change, so the dispatcher knows when to refresh its kinds."""

    def register(self, job: Job, *, replace: bool = False) -> Job:
        if job.kind in self._jobs and not replace:
            raise DuplicateJob(
                f"a job of kind {job.kind!r} is already registered; pass replace=True to replace it"
            )
        self._jobs[job.kind] = job
        self.version += 1
        return job

    def unregister(self, kind: str) -> Job:
        try:
            job = self._jobs.pop(kind)
        except KeyError:
            raise UnknownJob(f"no job of kind {kind!r} is registered") from None
        self.version += 1
        return job

    def get(self, kind: str) -> Job:
        try:
            return self._jobs[kind]
        except KeyError:
            raise UnknownJob(f"no job of kind {kind!r} is registered") from None

    def find(self, kind: str) -> Job | None:
        return self._jobs.get(kind)

    def kinds(self) -> list[str]:
        return list(self._jobs)

    def jobs(self) -> list[Job]:
        return list(self._jobs.values())

    def __contains__(self, kind: object) -> bool:
        return kind in self._jobs

    def __len__(self) -> int:
        return len(self._jobs)
