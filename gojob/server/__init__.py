"""The gojob server: go-job's ``job.v1.JobService`` and gojob's ``gojob.v1.GojobService``
over gRPC (grpclib), with health and reflection, hosted in Trio.

* :func:`serve`: serve a manager you own (in-process);
* ``gojob server`` (:mod:`gojob.server.process`, configured by
  :mod:`gojob.server.config`): a whole node, its jobs taken from job modules
  (:mod:`gojob.server.jobs`: :class:`JobSet`, ``register(manager)``);
* :mod:`gojob.server.metrics`: the Prometheus endpoint.

Needs the ``server`` extra (``pip install 'gojob[server]'``).
"""

from __future__ import annotations

from ._codec import DEFAULT_MAX_MESSAGE_BYTES
from .gojob_service import DEFAULT_LOOKUP_LIMIT, GojobService
from .jobs import JobModuleError, JobSet, load_job_modules
from .serve import DEFAULT_HOST, DEFAULT_PORT, serve
from .service import JobService

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_LOOKUP_LIMIT",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_PORT",
    "GojobService",
    "JobModuleError",
    "JobService",
    "JobSet",
    "load_job_modules",
    "serve",
]
