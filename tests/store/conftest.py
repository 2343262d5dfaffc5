"""The backends the store conformance suite runs against.

Every test in ``tests/store`` takes the ``store`` fixture and so runs once per entry
of :data:`STORE_FACTORIES`; its id ends with the backend name (``[memory]``,
``[sqlite]``...), so ``pytest tests/store -k memory`` runs one backend.

Adding a backend
----------------
Add one entry to :data:`STORE_FACTORIES`: the backend name mapped to a factory.
Calling the factory returns an async context manager that yields an *opened* and
*empty* store and removes what it created on exit. Each call must give a store
that shares nothing with the stores of other tests (a fresh database, schema or key
namespace), so tests pass in any order and in parallel.

Backends that need a service
----------------------------
A factory whose service cannot be reached raises
:class:`~gojob.errors.StoreUnavailable` while it is being entered: when the
environment variable giving its URL is unset, or the server refuses or times out.
The test is then *skipped*, unless ``GOJOB_REQUIRE_SERVICES`` is set (to anything
non-empty): then it *fails*, so that a CI job meant to test a backend can never
turn green by skipping it. Entering a factory is bounded by :data:`OPEN_TIMEOUT`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

import pytest
import trio

from gojob.errors import StoreUnavailable
from gojob.store.base import Store
from gojob.store.memory import MemoryStore
from gojob.store.sql import SqliteStore

StoreFactory = Callable[[], AbstractAsyncContextManager[Store]]

REQUIRE_SERVICES_ENV = "GOJOB_REQUIRE_SERVICES"
"""When set, a backend whose service is unreachable fails instead of being skipped."""
OPEN_TIMEOUT = 10.0
"""Seconds a factory may take to open its store."""


@asynccontextmanager
async def memory_store() -> AsyncIterator[Store]:
    async with MemoryStore() as store:
        yield store


@asynccontextmanager
async def sqlite_store() -> AsyncIterator[Store]:
    """A fresh SQLite file in a temporary directory, migrated when opened."""
    with tempfile.TemporaryDirectory(prefix="gojob-sqlite-") as tmp:
        async with SqliteStore(os.path.join(tmp, "store.db"), auto_migrate=True) as store:
            yield store


@asynccontextmanager
async def postgresql_store() -> AsyncIterator[Store]:
    """A fresh schema on the test PostgreSQL server (``GOJOB_POSTGRES_URL``, default the
    local server), migrated to head, dropped on exit (see ``tests/sql/_postgres.py``)."""
    from ..sql._postgres import postgres_store

    async with postgres_store() as store:
        yield store


@asynccontextmanager
async def redis_store() -> AsyncIterator[Store]:
    """A store under a fresh key prefix on the test Redis (``GOJOB_REDIS_URL``, default
    the local server); its keys are deleted on exit (see ``tests/redis/_redis.py``)."""
    from ..redis._redis import redis_store as open_redis_store

    async with open_redis_store() as store:
        yield store


@asynccontextmanager
async def valkey_store() -> AsyncIterator[Store]:
    """The Redis store on a real Valkey (``GOJOB_VALKEY_URL``, else a private
    ``valkey-server`` the test session starts; see ``tests/redis/_valkey.py``)."""
    from ..redis._valkey import valkey_store as open_valkey_store

    async with open_valkey_store() as store:
        yield store


@asynccontextmanager
async def etcd_store() -> AsyncIterator[Store]:
    """A store under a fresh key prefix on the test etcd (``GOJOB_ETCD_URL``, else a
    private etcd the test session starts); its keys are deleted on exit (see
    ``tests/etcd/_etcd.py``)."""
    from ..etcd._etcd import etcd_store as open_etcd_store

    async with open_etcd_store() as store:
        yield store


STORE_FACTORIES: dict[str, StoreFactory] = {
    "memory": memory_store,
    "sqlite": sqlite_store,
    "postgresql": postgresql_store,
    "redis": redis_store,
    "valkey": valkey_store,
    "etcd": etcd_store,
}
"""Backend name -> factory of an opened, empty store (see the module docstring)."""


def services_required() -> bool:
    return bool(os.environ.get(REQUIRE_SERVICES_ENV))


# pytest-trio drops the reason of a skip raised in an async fixture: keep it here
# (by test id) and put it back into the report.
_skip_reasons: dict[str, str] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    reason = _skip_reasons.pop(item.nodeid, None)
    if reason is not None and report.skipped and isinstance(report.longrepr, tuple):
        path, lineno, _ = report.longrepr
        report.longrepr = (path, lineno, f"Skipped: {reason}")
    return report


@pytest.fixture(params=list(STORE_FACTORIES), ids=list(STORE_FACTORIES))
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """An opened, empty store of each backend in turn."""
    name: str = request.param
    async with AsyncExitStack() as stack:
        try:
            with trio.fail_after(OPEN_TIMEOUT):
                opened = await stack.enter_async_context(STORE_FACTORIES[name]())
        except StoreUnavailable as exc:
            message = f"store backend {name!r} is unavailable: {exc}"
            if services_required():
                pytest.fail(f"{message} (and {REQUIRE_SERVICES_ENV} is set)")
            _skip_reasons[request.node.nodeid] = message
            pytest.skip(message)
        yield opened
