"""Host the grpclib server inside the Trio program, through the asyncio bridge.

:func:`serve` binds, reports the bound port through ``task_status`` (pass port 0 to get
a free one) and serves until cancelled. On cancel it stops accepting, ends the calls in
flight with ``UNAVAILABLE`` (see :mod:`gojob.server.service`) and closes the listening
socket before returning.
"""

from __future__ import annotations

import socket

import trio
from grpclib.server import Server

from .._aio import acquire_loop
from ..manager import Manager
from .service import DEFAULT_LOOKUP_LIMIT, JobService

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


async def _start(service: JobService, sock: socket.socket) -> Server:
    server = Server([service])
    await server.start(sock=sock)
    return server


async def _stop(server: Server) -> None:
    server.close()
    await server.wait_closed()


async def serve(
    manager: Manager,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    lookup_limit: int = DEFAULT_LOOKUP_LIMIT,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``manager`` over gRPC on ``host:port`` until cancelled; ``task_status``
    receives the bound port (``await nursery.start(serve, manager, "127.0.0.1", 0)``)."""
    service = JobService(manager, lookup_limit=lookup_limit)
    sock = _bind(host, port)
    bridge = await acquire_loop()
    try:
        try:
            server = await bridge.run(_start, service, sock)
        except BaseException:
            sock.close()
            raise
        try:
            task_status.started(sock.getsockname()[1])
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await bridge.run(_stop, server)
    finally:
        await bridge.release()
