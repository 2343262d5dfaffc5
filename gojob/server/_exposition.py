"""The ``/metrics`` HTTP endpoint, served by Trio tasks: no thread, no GIL contention.

Why not ``prometheus_client.start_http_server``: its thread collects and formats the
registry while competing for the GIL with a busy Trio loop, and each of the many steps
of its request handling waits for the GIL again. With 100 kinds (a 135 KB exposition),
scrapes of a node running jobs flat out took 31 ms at the median and 311 ms at p99, and
slowed the node itself (``benchmarks/server.py``). A thread that only moved bytes
(the text built on the Trio thread) still had a p99 near 180 ms: the GIL hand-offs.

So the endpoint is a small HTTP/1.1 responder on the loop: it reads one request head
(at most 16 KiB, within 10 s), answers ``GET`` or ``HEAD`` of ``/metrics`` (or ``/``)
with the text and closes the connection; anything else gets 404 or 405. The text is
rendered on the loop (a few milliseconds for 100 kinds: :mod:`gojob.server._families`)
and reused while younger than ``max_age`` (1 s by default: HA pairs of Prometheus
scrape a node at the same moment); scrapes arriving during a render share it.

A loop stuck in a blocking call cannot answer: the scrape fails (``up == 0``), which is
the alarm that situation deserves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial

import trio

__all__ = ["DEFAULT_MAX_AGE", "PATHS", "serve_exposition"]

log = logging.getLogger("gojob.metrics")

DEFAULT_MAX_AGE = 1.0
PATHS = ("/metrics", "/")
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
MAX_HEAD = 16 * 1024
REQUEST_TIMEOUT = 10.0


class _Text:
    """The rendered text, reused while younger than ``max_age``."""

    def __init__(self, render: Callable[[], bytes], max_age: float) -> None:
        self.render = render
        self.max_age = max_age
        self._cached: tuple[float, bytes] | None = None

    def get(self) -> bytes:
        # Synchronous on the loop: scrapes that arrive meanwhile wait for this one.
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < self.max_age:
            return self._cached[1]
        text = self.render()
        self._cached = (now, text)
        return text


async def _read_head(stream: trio.SocketStream) -> bytes | None:
    """The request head (up to the blank line), or None if the client sent no complete
    head within :data:`MAX_HEAD` bytes."""
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        if len(data) > MAX_HEAD:
            return None
        chunk = await stream.receive_some(4096)
        if not chunk:
            return None
        data += chunk
    return data


def _response(status: bytes, body: bytes, *, content_type: bytes, send_body: bool) -> bytes:
    head = (
        b"HTTP/1.1 " + status + b"\r\n"
        b"Content-Type: " + content_type + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n"
        b"Connection: close\r\n\r\n"
    )
    return head + body if send_body else head


async def _handle(text: _Text, stream: trio.SocketStream) -> None:
    async with stream:
        with trio.move_on_after(REQUEST_TIMEOUT):
            try:
                head = await _read_head(stream)
                if head is None:
                    return
                words = head.split(b"\r\n", 1)[0].split()
                method = words[0] if words else b""
                path = words[1].split(b"?", 1)[0].decode("latin-1") if len(words) > 1 else ""
                plain = b"text/plain; charset=utf-8"
                if method not in (b"GET", b"HEAD"):
                    reply = _response(
                        b"405 Method Not Allowed", b"GET only\n", content_type=plain, send_body=True
                    )
                elif path not in PATHS:
                    reply = _response(
                        b"404 Not Found", b"see /metrics\n", content_type=plain, send_body=True
                    )
                else:
                    reply = _response(
                        b"200 OK", text.get(), content_type=CONTENT_TYPE, send_body=method == b"GET"
                    )
                await stream.send_all(reply)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass  # the scraper went away


async def serve_exposition(
    render: Callable[[], bytes],
    host: str,
    port: int,
    *,
    max_age: float = DEFAULT_MAX_AGE,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the text of ``render()`` on ``host:port`` until cancelled;
    ``task_status.started`` receives the bound port."""
    listeners = await trio.open_tcp_listeners(port, host=host.strip("[]"))
    try:
        bound = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(
                trio.serve_listeners, partial(_handle, _Text(render, max_age)), listeners
            )
            task_status.started(bound)
    finally:
        for listener in listeners:
            await listener.aclose()
