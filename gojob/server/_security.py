"""Transport security of the server: a bearer token on every call, and TLS.

:class:`TokenGuard` wraps servables (like :class:`~gojob.server._guard.ShutdownGuard`):
each call must carry ``authorization: Bearer <token>`` metadata, or it ends with
``UNAUTHENTICATED`` before its handler runs (the server keeps serving). The health
service (``grpc.health.v1.Health``) stays open, so that load balancers and orchestrators
can probe a server without holding its token: it tells whether the server serves,
nothing else. Reflection needs the token like every other call.

:func:`server_ssl_context` builds the TLS context grpclib takes (HTTP/2 negotiated by
ALPN, as gRPC clients require; TLS 1.2 at least).
"""

from __future__ import annotations

import hmac
import ssl
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any

from grpclib import GRPCError
from grpclib.const import Handler, Status

from ._guard import _Guarded

__all__ = ["OPEN_PREFIXES", "TokenGuard", "server_ssl_context"]

OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
"""Methods served without a token."""

_Func = Callable[[Any], Coroutine[Any, Any, None]]


class TokenGuard:
    """Checks the bearer token of every call but health's."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("the token must not be empty")
        self._expected = f"Bearer {token}".encode()

    def wrap(self, servable: Any) -> _Guarded:
        mapping: Mapping[str, Handler] = servable.__mapping__()
        return _Guarded(
            {
                path: handler
                if path.startswith(OPEN_PREFIXES)
                else handler._replace(func=self._check(handler.func))
                for path, handler in mapping.items()
            }
        )

    def allows(self, value: str | None) -> bool:
        # Constant time: the comparison must not tell how much of a guess was right.
        return value is not None and hmac.compare_digest(value.encode(), self._expected)

    def _check(self, func: _Func) -> _Func:
        async def checked(stream: Any) -> None:
            value = stream.metadata.get("authorization")
            if not self.allows(value if isinstance(value, str) else None):
                message = (
                    "missing bearer token (authorization metadata)"
                    if value is None
                    else "invalid bearer token"
                )
                raise GRPCError(Status.UNAUTHENTICATED, message)
            await func(stream)

        return checked


def server_ssl_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side TLS context from PEM files (the certificate chain and its key)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    context.set_alpn_protocols(["h2"])
    return context
