"""Shutdown without hanging clients: calls cut by the server's close end with UNAVAILABLE.

grpclib's ``Server.close()`` cancels the handlers still running and sends nothing: a
client in the middle of a call (above all a stream: log follow, events, health watch)
would wait for trailers that never come. :class:`ShutdownGuard` wraps every servable's
handlers; once :attr:`ShutdownGuard.closing` is set (just before ``close()``), a handler
cancelled by it sends ``UNAVAILABLE`` trailers before it unwinds. Cancellations for
other reasons (the client went away, its deadline passed) are left to grpclib, which
answers them as usual (``DEADLINE_EXCEEDED``...).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from grpclib.const import Handler, Status

__all__ = ["SHUTDOWN_MESSAGE", "ShutdownGuard"]

SHUTDOWN_MESSAGE = "the server is shutting down"

_Func = Callable[[Any], Coroutine[Any, Any, None]]


class _Guarded:
    """A servable whose handlers are guarded (what grpclib's Server takes)."""

    def __init__(self, mapping: Mapping[str, Handler]) -> None:
        self._mapping = dict(mapping)

    def __mapping__(self) -> dict[str, Handler]:
        return self._mapping


class ShutdownGuard:
    """Wraps servables; set :attr:`closing` before closing the server."""

    def __init__(self) -> None:
        self.closing = False

    def wrap(self, servable: Any) -> _Guarded:
        """The servable (anything with grpclib's ``__mapping__``) with guarded handlers."""
        mapping: Mapping[str, Handler] = servable.__mapping__()
        return _Guarded({path: h._replace(func=self._guard(h.func)) for path, h in mapping.items()})

    def _guard(self, func: _Func) -> _Func:
        async def guarded(stream: Any) -> None:
            try:
                await func(stream)
            except asyncio.CancelledError:
                if self.closing:
                    # The stream may be gone already (client reset): nothing to tell then.
                    with contextlib.suppress(Exception):
                        await stream.send_trailing_metadata(
                            status=Status.UNAVAILABLE, status_message=SHUTDOWN_MESSAGE
                        )
                raise

        return guarded
