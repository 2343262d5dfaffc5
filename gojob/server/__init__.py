"""The gojob server: go-job's ``job.v1.JobService`` over gRPC (grpclib), hosted in Trio.

Needs the ``server`` extra (``pip install 'gojob[server]'``).
"""

from __future__ import annotations

from .serve import DEFAULT_HOST, DEFAULT_PORT, serve
from .service import DEFAULT_LOOKUP_LIMIT, JobService

__all__ = ["DEFAULT_HOST", "DEFAULT_LOOKUP_LIMIT", "DEFAULT_PORT", "JobService", "serve"]
