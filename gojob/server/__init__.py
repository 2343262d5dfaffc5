"""The gojob server: go-job's ``job.v1.JobService`` and gojob's ``gojob.v1.GojobService``
over gRPC (grpclib), with health and reflection, hosted in Trio.

Needs the ``server`` extra (``pip install 'gojob[server]'``).
"""

from __future__ import annotations

from ._codec import DEFAULT_MAX_MESSAGE_BYTES
from .gojob_service import DEFAULT_LOOKUP_LIMIT, GojobService
from .serve import DEFAULT_HOST, DEFAULT_PORT, serve
from .service import JobService

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_LOOKUP_LIMIT",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_PORT",
    "GojobService",
    "JobService",
    "serve",
]
