"""Per-instance logs: the buffer executors write to, and capture of :mod:`logging`.

Executors log synchronously (``inst.info(...)``, or ``logging`` calls), from the Trio
thread or from worker threads. Records go into one buffer that a Trio task flushes to
the store in batches, so logging never awaits and costs a list append.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from datetime import datetime

import trio

from .clock import Clock
from .errors import StoreError
from .instance import Instance, LogLevel, LogRecord
from .store.base import Store

__all__ = ["LogBuffer", "current_instance", "install_capture", "uninstall_capture"]

log = logging.getLogger("gojob.logs")

current_instance: contextvars.ContextVar[Instance | None] = contextvars.ContextVar(
    "gojob_current_instance", default=None
)
"""The instance whose attempt (or processor) is running in this context."""

_TRUNCATED = " …[truncated]"


class LogBuffer:
    """Collects log records from any thread and flushes them to the store from Trio."""

    def __init__(self, store: Store, clock: Clock, max_bytes: int) -> None:
        self._store = store
        self._clock = clock
        self._max_bytes = max_bytes
        self._pending: list[LogRecord] = []
        self._unstamped: list[LogRecord] = []
        self._lock = threading.Lock()
        # One flush at a time: a reader's flush (``Manager.logs``) must not return while
        # the background flush still has earlier records on their way to the store.
        self._flushing = trio.Lock()
        self._wakeup = trio.Event()
        self._signalled = False
        self._token = trio.lowlevel.current_trio_token()
        self._trio_thread = threading.get_ident()

    def write(self, inst: Instance, level: LogLevel, message: str, logger: str) -> None:
        """Queue one record for ``inst`` (thread-safe, never blocks on I/O)."""
        encoded = message.encode("utf-8", "replace")
        if len(encoded) > self._max_bytes:
            message = encoded[: self._max_bytes].decode("utf-8", "ignore") + _TRUNCATED
        in_trio = threading.get_ident() == self._trio_thread
        # Trio's clock cannot be read from a worker thread; those records are
        # stamped by the next record written from Trio, or when flushed.
        stamp = self._clock.now() if in_trio else _UNSTAMPED
        record = LogRecord(inst.uuid, inst.kind, stamp, level, message, inst.attempts, logger)
        with self._lock:
            if in_trio:
                # Records queued from threads before this one happened before it: give
                # them this stamp, or a later flush would stamp them after it and reading
                # by timestamp would put (say) a processor's line before the executor's.
                for earlier in self._unstamped:
                    earlier.timestamp = stamp
                self._unstamped.clear()
            else:
                self._unstamped.append(record)
            self._pending.append(record)
            if self._signalled:
                return
            self._signalled = True
        if in_trio:
            self._wakeup.set()
        else:
            self._token.run_sync_soon(self._wakeup.set)

    async def flush(self) -> None:
        """Write everything queued so far (and wait for a flush already under way)."""
        async with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, []
                self._signalled = False
                now = self._clock.now()
                for record in self._unstamped:
                    record.timestamp = now
                self._unstamped.clear()
            if batch:
                try:
                    await self._store.append_logs(batch)
                except BaseException:
                    # Not written: put the batch back in front, in order.
                    with self._lock:
                        self._pending[:0] = batch
                    raise

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush whenever records arrive, until cancelled (then flush what is left)."""
        task_status.started()
        backoff = 0.05
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup = trio.Event()
                try:
                    await self.flush()
                    backoff = 0.05
                except StoreError as exc:
                    log.warning("writing logs failed (retrying in %.2fs): %s", backoff, exc)
                    self._wakeup.set()
                    await trio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await self.flush()


_UNSTAMPED = datetime.min


class _CaptureHandler(logging.Handler):
    """Routes :mod:`logging` records emitted during an attempt to its instance's log."""

    def emit(self, record: logging.LogRecord) -> None:
        inst = current_instance.get()
        if inst is None:
            return
        sink = inst._sink
        if sink is None:
            return
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[0] is not None:
                message += "\n" + logging.Formatter().formatException(record.exc_info)
            sink(inst, LogLevel.from_logging(record.levelno), message, record.name)
        except Exception:
            self.handleError(record)


_handler = _CaptureHandler(level=logging.NOTSET)
_users = 0
_users_lock = threading.Lock()


def install_capture() -> None:
    """Attach the capture handler to the root logger (reference counted)."""
    global _users
    with _users_lock:
        _users += 1
        if _users == 1:
            logging.getLogger().addHandler(_handler)


def uninstall_capture() -> None:
    global _users
    with _users_lock:
        _users -= 1
        if _users == 0:
            logging.getLogger().removeHandler(_handler)
