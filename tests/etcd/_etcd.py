"""The etcd the tests use, and stores on it under fresh key prefixes.

Which etcd: ``GOJOB_ETCD_URL`` when set (CI starts one and exports it); otherwise, when
an ``etcd`` binary is installed, a private one this test session starts on free
loopback ports with a temporary data directory (stopped and removed at exit); otherwise
none, and opening a store raises StoreUnavailable (the conformance suite then skips,
or fails under ``GOJOB_REQUIRE_SERVICES``).
"""

from __future__ import annotations

import atexit
import os
import threading
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from gojob.errors import StoreUnavailable
from gojob.store.etcd import EtcdStore
from gojob.store.etcd.client import b64, prefix_end

from ._server import EtcdServer, etcd_binary

__all__ = ["ETCD_URL_ENV", "etcd_store", "etcd_url", "fresh_prefix"]

ETCD_URL_ENV = "GOJOB_ETCD_URL"

_lock = threading.Lock()
_private: EtcdServer | None = None
_private_error: str | None = None


def _private_url() -> str:
    """Start the session's private etcd once (in a thread: it waits for readiness)."""
    global _private, _private_error
    with _lock:
        if _private is not None:
            return _private.url
        if _private_error is not None:
            raise StoreUnavailable(_private_error)
        try:
            server = EtcdServer()
            try:
                server.start()
            except BaseException:
                server.cleanup()
                raise
        except (OSError, RuntimeError) as exc:
            _private_error = f"could not start a private etcd: {exc}"
            raise StoreUnavailable(_private_error) from exc
        _private = server
        atexit.register(server.cleanup)
        return server.url


async def etcd_url() -> str:
    """The URL of the tests' etcd (see the module docstring)."""
    url = os.environ.get(ETCD_URL_ENV)
    if url:
        return url
    if etcd_binary() is None:
        raise StoreUnavailable(f"{ETCD_URL_ENV} is unset and no etcd binary is installed")
    return await trio.to_thread.run_sync(_private_url)


def fresh_prefix() -> str:
    """A fresh key prefix (under ``gojob/``, as a deployment's default prefix is)."""
    return f"gojob/test-{uuid.uuid4().hex[:12]}/"


async def delete_prefix(store: EtcdStore, prefix: str) -> None:
    await store.client.call(
        "/v3/kv/deleterange", {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}
    )


@asynccontextmanager
async def etcd_store(**options: Any) -> AsyncIterator[EtcdStore]:
    """An opened, empty store under a fresh prefix; its keys (and only those) are deleted
    on exit."""
    url = await etcd_url()
    prefix = options.pop("prefix", None) or fresh_prefix()
    store = EtcdStore(url, prefix=prefix, **options)
    async with store:
        try:
            yield store
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await delete_prefix(store, prefix)
