"""Job modules for ``gojob server --jobs``: :class:`~gojob.JobSet` and the loader live in
:mod:`gojob.job_modules` (no server dependency); re-exported here."""

from __future__ import annotations

from ..job_modules import JobModuleError, JobSet, load_job_modules, load_module

__all__ = ["JobModuleError", "JobSet", "load_job_modules", "load_module"]
