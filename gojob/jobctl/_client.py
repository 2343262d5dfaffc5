"""jobctl's connection to a gojob server: a grpclib channel on asyncio, the token sent on
every call, and every failure turned into a :class:`JobctlError` with its exit code.

jobctl is a plain CLI process: it runs grpclib's asyncio client under ``asyncio.run``
(no Trio here). Unary calls carry the ``--timeout`` deadline; streams have none (they
run until the server ends them or the user interrupts), but their first exchange does,
so an unreachable server is reported as promptly as for any other command.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.config import Configuration
from grpclib.const import Status
from grpclib.exceptions import ProtocolError, StreamTerminatedError

from .._generated.gojob_grpc import GojobServiceStub
from ._exit import EXIT_AUTH, EXIT_SERVER, EXIT_UNAVAILABLE, JobctlError

__all__ = ["CALL_ERRORS", "Client", "Target", "open_client", "translate"]

T = TypeVar("T")

_UNAVAILABLE = {Status.UNAVAILABLE, Status.DEADLINE_EXCEEDED}
_AUTH = {Status.UNAUTHENTICATED, Status.PERMISSION_DENIED}


@dataclass(frozen=True, slots=True)
class Target:
    """Where the server is and how to talk to it (from flags and ``GOJOB_*`` variables)."""

    host: str
    port: int
    tls: bool = False
    tls_ca: str | None = None
    server_name: str | None = None
    token: str | None = None
    timeout: float | None = 30.0

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """TLS with the system's CAs, or only ``tls_ca``'s; h2 negotiated by ALPN."""
        if not (self.tls or self.tls_ca):
            return None
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.tls_ca)
        except (OSError, ssl.SSLError) as exc:
            raise JobctlError(
                f"cannot load CA file {self.tls_ca}: {exc}", EXIT_UNAVAILABLE
            ) from exc
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["h2"])
        return ctx

    @property
    def metadata(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}


CALL_ERRORS = (
    GRPCError,
    OSError,  # refused, unreachable, TLS (ssl.SSLError), deadline (TimeoutError)
    # A plaintext client of a TLS server sees the connection end: "Connection lost".
    StreamTerminatedError,
    ProtocolError,
)
"""What a call can fail with; :func:`translate` says it for the user."""


def translate(exc: BaseException, target: Target) -> JobctlError:
    """The user-facing error for a failure of a call (one of :data:`CALL_ERRORS`)."""
    if isinstance(exc, GRPCError):
        message = exc.message or exc.status.name.lower().replace("_", " ")
        code = EXIT_SERVER
        if exc.status in _UNAVAILABLE:
            code = EXIT_UNAVAILABLE
        elif exc.status in _AUTH:
            code = EXIT_AUTH
            if exc.status is Status.UNAUTHENTICATED and not target.token:
                message += " (give a token: --token or GOJOB_TOKEN)"
        return JobctlError(f"{message} ({exc.status.name})", code)
    if isinstance(exc, TimeoutError):
        return JobctlError(
            f"no reply from {target.address} within {target.timeout:g}s (DEADLINE_EXCEEDED)",
            EXIT_UNAVAILABLE,
        )
    if isinstance(exc, ssl.SSLError):
        hint = " (is it a plaintext server? try --no-tls)" if "WRONG_VERSION" in str(exc) else ""
        return JobctlError(f"TLS with {target.address} failed: {exc}{hint}", EXIT_UNAVAILABLE)
    if isinstance(exc, OSError):
        reason = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
        return JobctlError(f"cannot reach {target.address}: {reason}", EXIT_UNAVAILABLE)
    hint = "" if target.tls else " (is it a TLS server? try --tls)"
    return JobctlError(
        f"connection to {target.address} failed: {exc or type(exc).__name__}{hint}",
        EXIT_UNAVAILABLE,
    )


class Client:
    """gojob.v1 calls with the target's deadline and token, errors as JobctlError."""

    def __init__(self, channel: Channel, target: Target) -> None:
        self.target = target
        self.stub = GojobServiceStub(channel)

    async def call(self, method: Callable[..., Awaitable[T]], request: Any) -> T:
        """One unary call (``method`` is a stub attribute, e.g. ``client.stub.ListJobs``)."""
        try:
            return await method(request, timeout=self.target.timeout, metadata=self.target.metadata)
        except CALL_ERRORS as exc:
            raise translate(exc, self.target) from exc

    async def stream(
        self, method: Any, request: Any, *, first_within: bool
    ) -> AsyncGenerator[Any, None]:
        """The messages of a server stream until the server ends it. With
        ``first_within``, the first message must come within the deadline (for streams
        whose server answers at once)."""
        try:
            async with method.open(metadata=self.target.metadata) as stream:
                await stream.send_message(request, end=True)
                if first_within:
                    async with asyncio.timeout(self.target.timeout):
                        message = await stream.recv_message()
                    if message is None:
                        return
                    yield message
                async for message in stream:
                    yield message
        except CALL_ERRORS as exc:
            raise translate(exc, self.target) from exc


@asynccontextmanager
async def open_client(target: Target) -> AsyncIterator[Client]:
    """A client on a fresh channel, closed on exit."""
    config = Configuration(ssl_target_name_override=target.server_name)
    channel = Channel(target.host, target.port, ssl=target.ssl_context(), config=config)
    try:
        yield Client(channel, target)
    finally:
        channel.close()
