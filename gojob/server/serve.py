"""Host the grpclib server inside the Trio program, through the asyncio bridge.

:func:`serve` binds, reports the bound port through ``task_status`` (pass port 0 to get
a free one) and serves until cancelled:

* ``job.v1.JobService``: go-job's five calls (:mod:`gojob.server.service`);
* ``gojob.v1.GojobService``: gojob's own (:mod:`gojob.server.gojob_service`);
* ``grpc.health.v1.Health``: SERVING for ``""`` and both services while serving,
  NOT_SERVING once shutdown starts;
* server reflection (``grpc.reflection.v1`` and ``v1alpha``), listing the three.

Requests and replies over ``max_message_bytes`` are refused with ``RESOURCE_EXHAUSTED``
(:mod:`gojob.server._codec`). With ``ssl`` it speaks TLS only; with ``token`` every call
but health's needs ``authorization: Bearer <token>`` metadata, else ``UNAUTHENTICATED``
(:mod:`gojob.server._security`). Concurrent ``ScheduleJob`` calls are group-committed
(:mod:`gojob.server._batch`) by writer tasks in this function's nursery.

On cancel it stops accepting, turns health to NOT_SERVING, ends every call in flight
(streams included) with ``UNAVAILABLE`` (:mod:`gojob.server._guard`), then closes the
clients' connections and the listening socket before returning.
"""

from __future__ import annotations

import socket
import ssl as _ssl
import weakref
from dataclasses import dataclass
from typing import Any

import trio
from grpclib.health.check import ServiceStatus
from grpclib.health.service import Health
from grpclib.protocol import H2Protocol
from grpclib.reflection.service import ServerReflection
from grpclib.server import Server

from .._aio import acquire_loop, adopt_running_loop
from ..manager import Manager
from ._batch import DEFAULT_WRITERS, ScheduleBatcher
from ._codec import DEFAULT_MAX_MESSAGE_BYTES, CappedCodec
from ._guard import ShutdownGuard
from ._security import TokenGuard
from .gojob_service import DEFAULT_LOOKUP_LIMIT, GojobService
from .service import JobService

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "serve"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 59051
"""go-job's port."""


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=1024)
    # Accepted sockets inherit TCP_NODELAY from the listener. Without it, a server started
    # on a ready socket inside trio-asyncio answers each call ~40 ms late (Nagle against
    # delayed ACKs: 22 calls/s measured instead of ~600).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


class _Server(Server):
    """grpclib's Server, which also closes its clients' connections when it stops.

    ``Server.close()`` stops accepting and cancels the calls in flight, but leaves the
    accepted connections open (on Python 3.11 ``wait_closed`` does not wait for them):
    their sockets would outlive the bridge's loop, and clients would learn nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._protocols: weakref.WeakSet[H2Protocol] = weakref.WeakSet()

    def _protocol_factory(self) -> H2Protocol:
        protocol = super()._protocol_factory()
        self._protocols.add(protocol)
        return protocol

    def close_connections(self) -> None:
        for protocol in list(self._protocols):
            connection = getattr(protocol, "connection", None)  # set once connected
            if connection is not None:
                connection.close()


@dataclass
class _Running:
    server: _Server
    guard: ShutdownGuard
    status: ServiceStatus


async def _start(
    services: list[Any],
    sock: socket.socket,
    max_message_bytes: int,
    ssl: _ssl.SSLContext | None,
    token: str | None,
) -> _Running:
    """Asyncio side: build and start the server (health's status needs the loop)."""
    # The loop's socket-reader tasks inherit this context: over TLS, asyncio calls the
    # protocol's connection_made from one of them (once the handshake completes), and
    # grpclib's asyncio.get_event_loop() there finds trio-asyncio's loop only through
    # this variable (else: AttributeError on every TLS connection).
    adopt_running_loop()
    status = ServiceStatus()
    status.set(True)
    health = Health({service: [status] for service in services})
    guard = ShutdownGuard()
    servables = ServerReflection.extend([*services, health])
    if token is not None:
        token_guard = TokenGuard(token)
        servables = [token_guard.wrap(servable) for servable in servables]
    server = _Server(
        [guard.wrap(servable) for servable in servables], codec=CappedCodec(max_message_bytes)
    )
    await server.start(sock=sock, ssl=ssl)
    return _Running(server, guard, status)


async def _stop(running: _Running) -> None:
    running.guard.closing = True
    running.status.set(False)
    running.server.close()
    await running.server.wait_closed()  # every call ended (UNAVAILABLE if cut short)
    running.server.close_connections()


async def serve(
    manager: Manager,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    lookup_limit: int = DEFAULT_LOOKUP_LIMIT,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ssl: _ssl.SSLContext | None = None,
    token: str | None = None,
    schedule_writers: int = DEFAULT_WRITERS,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``manager`` over gRPC on ``host:port`` until cancelled; ``task_status``
    receives the bound port (``await nursery.start(serve, manager, "127.0.0.1", 0)``).

    ``lookup_limit`` caps the rows of one lookup (and is the default page size);
    ``max_message_bytes`` caps requests and replies; ``ssl`` (a server context, see
    :func:`gojob.server._security.server_ssl_context`) turns on TLS; ``token`` requires a
    bearer token on every call but health's; ``schedule_writers`` tasks group-commit
    concurrent ``ScheduleJob`` calls (0: one store write per call)."""
    if max_message_bytes < 1024:
        raise ValueError("max_message_bytes must be at least 1024")
    if schedule_writers < 0:
        raise ValueError("schedule_writers must not be negative")
    batcher = ScheduleBatcher(manager) if schedule_writers else None
    services: list[Any] = [
        JobService(
            manager,
            lookup_limit=lookup_limit,
            max_message_bytes=max_message_bytes,
            batcher=batcher,
        ),
        GojobService(manager, lookup_limit=lookup_limit, max_message_bytes=max_message_bytes),
    ]
    sock = _bind(host, port)
    bridge = await acquire_loop()
    try:
        try:
            running = await bridge.run(_start, services, sock, max_message_bytes, ssl, token)
        except BaseException:
            sock.close()
            raise
        try:
            async with trio.open_nursery() as nursery:
                if batcher is not None:
                    for _ in range(schedule_writers):
                        await nursery.start(batcher.run_writer, bridge)
                task_status.started(sock.getsockname()[1])
                await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await bridge.run(_stop, running)
    finally:
        await bridge.release()
