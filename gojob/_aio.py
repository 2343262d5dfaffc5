"""The one bridge between Trio and asyncio (trio-asyncio).

gojob runs on Trio; a few libraries it uses speak only asyncio (asyncpg for the
PostgreSQL store). This module is the only place where the two meet:

* :func:`acquire_loop` gives a :class:`Bridge` to a trio-asyncio loop: the loop of
  the calling task when the application already opened one
  (``async with trio_asyncio.open_loop():`` or :func:`open_loop`), else one loop
  shared by every user in this Trio run, started on first use and closed when the
  last user releases it (:meth:`Bridge.release`). The shared loop runs in a Trio
  *system task*, so a store may open it in ``__aenter__`` and close it in
  ``__aexit__`` without tying a nursery to the task (and cancel scopes) of whoever
  entered the store.
* :meth:`Bridge.run` (or :func:`run_aio`) runs one asyncio coroutine function and
  returns its result to Trio: one crossing per unit of work (a transaction), never
  one per statement (each crossing costs about 0.1-0.3 ms).

Cancellation: cancelling the Trio caller cancels the asyncio task once (one
``asyncio.CancelledError``), and Trio *waits* for the asyncio side to finish its
cleanup before the caller sees ``trio.Cancelled``. Asyncio code that must finish a
step despite the cancel (a commit) does so with :func:`uncancellable`; the call then
returns normally and the caller meets the cancellation at its next checkpoint.

Import order matters: trio-asyncio must be imported before any library that binds
asyncio's loop lookups at import time, so this module imports it first, and every
module using an asyncio-only library imports this one before that library.
"""

from __future__ import annotations

import trio_asyncio  # isort: skip  # first: see the module docstring

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ParamSpec, TypeVar

import trio

__all__ = ["Bridge", "acquire_loop", "call_trio", "open_loop", "run_aio", "uncancellable"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class Bridge:
    """A handle on a trio-asyncio loop: run asyncio coroutine functions from Trio.

    Get one from :func:`acquire_loop`; give it back with :meth:`release` (which
    closes the shared loop when its last user leaves, and does nothing to a loop the
    application opened).
    """

    __slots__ = ("_released", "_shared", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, shared: _SharedLoop | None) -> None:
        self.loop = loop
        self._shared = shared
        self._released = False

    async def run(
        self, async_fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``await async_fn(*args, **kwargs)`` as an asyncio task on the loop; one crossing.

        Cancelling the caller cancels the task (once) and waits for it to end.
        """
        if self._released:
            raise RuntimeError("this asyncio bridge was released")
        runner: Any = self.loop  # trio_asyncio.TrioEventLoop (untyped)
        # Called inside the asyncio task, not here: some asyncio libraries look up the
        # running loop as soon as they are called (asyncpg's pool does).
        result: T = await runner.run_aio_coroutine(_call(async_fn, args, kwargs))
        return result

    async def release(self) -> None:
        """Give the loop back (idempotent); the last user of the shared loop closes it.

        Runs shielded: a cancelled caller still releases."""
        if self._released:
            return
        self._released = True
        if self._shared is not None:
            with trio.CancelScope(shield=True):
                await self._shared.release()


async def _call(
    async_fn: Callable[..., Awaitable[T]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> T:
    return await async_fn(*args, **kwargs)


class _SharedLoop:
    """The loop gojob opens itself, shared by every user in one Trio run."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.users = 0
        self.ready = trio.Event()
        self.stop = trio.Event()
        self.done = trio.Event()
        self.error: BaseException | None = None

    async def serve(self) -> None:
        """The system task: open the loop, hold it until told to stop."""
        try:
            async with trio_asyncio.open_loop() as loop:
                self.loop = loop
                self.ready.set()
                await self.stop.wait()
        except trio.Cancelled:
            raise  # the Trio run is ending: nothing to report
        except Exception as exc:  # a system task must not raise: report it to the users
            log.exception("the asyncio bridge loop failed")
            self.error = exc
        finally:
            self.loop = None
            if _SHARED.get(None) is self:
                _SHARED.set(None)
            self.ready.set()
            self.done.set()

    async def release(self) -> None:
        self.users -= 1
        if self.users == 0:
            if _SHARED.get(None) is self:
                _SHARED.set(None)  # a later user starts a fresh loop
            self.stop.set()
            await self.done.wait()


_SHARED: trio.lowlevel.RunVar[_SharedLoop | None] = trio.lowlevel.RunVar("gojob_aio_loop")


def _application_loop() -> asyncio.AbstractEventLoop | None:
    loop: asyncio.AbstractEventLoop | None = trio_asyncio.current_loop.get()
    if loop is None or loop.is_closed():
        return None
    return loop


async def acquire_loop() -> Bridge:
    """A bridge to the caller's trio-asyncio loop, or to the shared one (started if needed)."""
    loop = _application_loop()
    if loop is not None:
        await trio.lowlevel.checkpoint()
        return Bridge(loop, None)
    shared = _SHARED.get(None)
    if shared is None:
        shared = _SharedLoop()
        _SHARED.set(shared)
        trio.lowlevel.spawn_system_task(shared.serve, name="gojob-asyncio-loop")
    shared.users += 1
    try:
        await shared.ready.wait()
    except BaseException:
        with trio.CancelScope(shield=True):
            await shared.release()
        raise
    if shared.loop is None:
        with trio.CancelScope(shield=True):
            await shared.release()
        raise RuntimeError("the asyncio bridge loop could not start") from shared.error
    return Bridge(shared.loop, shared)


async def run_aio(async_fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
    """One crossing on the caller's trio-asyncio loop or the shared one (which must be
    open: some user holds a :class:`Bridge`)."""
    loop = _application_loop()
    if loop is None:
        shared = _SHARED.get(None)
        loop = None if shared is None else shared.loop
    if loop is None:
        raise RuntimeError("no asyncio loop is open: use acquire_loop() or open_loop() first")
    return await Bridge(loop, None).run(async_fn, *args, **kwargs)


@asynccontextmanager
async def open_loop() -> AsyncIterator[Bridge]:
    """``async with open_loop() as bridge:``: hold a loop for the block (see
    :func:`acquire_loop`)."""
    bridge = await acquire_loop()
    try:
        yield bridge
    finally:
        await bridge.release()


async def uncancellable(awaitable: Awaitable[T]) -> T:
    """Asyncio side: finish ``awaitable`` even if the current task is cancelled meanwhile.

    For commits and rollbacks: the step runs to its end, its result is returned, and a
    cancellation that arrived meanwhile is not lost (the Trio caller, still in its
    cancelled scope, meets it at its next checkpoint).
    """
    task = asyncio.ensure_future(awaitable)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                return task.result()  # raises the task's own error or CancelledError
            # Cancelled while waiting: keep waiting for the step itself.
            continue


async def call_trio(async_fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
    """Asyncio side (a task on a trio-asyncio loop): run one Trio async function and return
    its result; the reverse crossing of :meth:`Bridge.run`, for asyncio servers (grpclib)
    whose handlers call into Trio code. Cancelling the asyncio task cancels the Trio call.
    """
    loop: Any = asyncio.get_running_loop()  # a trio_asyncio loop (untyped)
    result: T = await loop.trio_as_future(functools.partial(async_fn, *args, **kwargs))
    return result


def adopt_running_loop() -> None:
    """Asyncio side: make the running trio-asyncio loop findable (``get_event_loop``)
    from the reader tasks spawned from this context (a TLS handshake completes there)."""
    trio_asyncio.current_loop.set(asyncio.get_running_loop())
