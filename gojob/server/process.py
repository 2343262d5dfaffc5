"""The ``gojob server`` process: a manager, its jobs, the gRPC API and the metrics.

:func:`run_server` opens the store and a manager with this node's workers, loads the
job modules (:mod:`gojob.server.jobs`), serves gRPC (:func:`gojob.server.serve`) and the
metrics (:func:`gojob.server.metrics.serve_metrics`), then prints one line per
listener on stdout (``gRPC listening on HOST:PORT``, ``metrics listening on
HOST:PORT``) for whoever started it (a port of 0 is replaced by the bound one).

Stopping: on the first SIGTERM or SIGINT it stops accepting calls, ends the calls in
flight (streams included) with ``UNAVAILABLE``, stops the metrics endpoint, then leaves
the manager, which gives running attempts ``drain_grace`` seconds to finish and
releases those still running back to the queue (Scheduled) for another node or the
next start; :func:`run_server` then returns (the command exits 0). Later signals during
the drain are logged and ignored: the drain is bounded by the grace already.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import TextIO

import trio

from ..manager import open_manager
from ..store.base import Store
from .config import ConfigError, ServerConfig
from .jobs import load_job_modules
from .metrics import Metrics, serve_metrics
from .serve import serve

__all__ = ["Listening", "build_store", "run_server"]

log = logging.getLogger("gojob.server")

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass(frozen=True)
class Listening:
    """The bound ports (``metrics_port`` is None when metrics are off)."""

    grpc_port: int
    metrics_port: int | None


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build_store(config: ServerConfig) -> Store | str:
    """The store of ``config.store``: SQL stores built with the prefix and schema (a
    SQLite file is migrated on first use); other URLs go to ``open_manager`` as is."""
    url = config.store
    if url.startswith("sqlite"):
        if config.schema is not None:
            raise ConfigError("schema applies to PostgreSQL stores only")
        from ..store.sql import DEFAULT_PREFIX, SqliteStore

        # The embedded store migrates itself, as `gojob demo` does.
        return SqliteStore(url, auto_migrate=True, prefix=config.prefix or DEFAULT_PREFIX)
    if url.startswith(("postgresql", "postgres://")):
        try:
            from ..store.sql.postgres import PostgresStore
        except ImportError as exc:
            raise ConfigError(
                f"the PostgreSQL store needs its extra: pip install 'gojob[postgres]' ({exc})"
            ) from exc
        from ..store.sql import DEFAULT_PREFIX

        return PostgresStore(url, schema=config.schema, prefix=config.prefix or DEFAULT_PREFIX)
    if config.schema is not None or config.prefix is not None:
        raise ConfigError("schema and prefix apply to the SQL stores only")
    return url


async def _migrate(config: ServerConfig) -> None:
    if not config.migrate or not config.store.startswith(("postgresql", "postgres://")):
        return
    from ..store.sql import DEFAULT_PREFIX, migrate

    log.info("migrating the schema to head")
    await trio.to_thread.run_sync(
        partial(
            migrate.upgrade,
            config.store,
            prefix=config.prefix or DEFAULT_PREFIX,
            schema=config.schema,
        )
    )


async def _watch_signals(signals: AsyncIterator[int], stop: trio.Event, grace: float) -> None:
    async for signum in signals:
        name = signal.Signals(signum).name
        if not stop.is_set():
            log.info(
                "%s received: stopping (running jobs get %gs to finish, then are released)",
                name,
                grace,
            )
            stop.set()
        else:
            log.info("%s received: already stopping", name)


async def run_server(
    config: ServerConfig,
    *,
    out: TextIO | None = None,
    task_status: trio.TaskStatus[Listening] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the server of ``config`` until SIGTERM or SIGINT (see the module docstring);
    ``out`` (default stdout) receives the listening lines. Must run in the main thread
    (signal handling)."""
    out = sys.stdout if out is None else out
    config.check_exposure()
    ssl_context = None
    if config.tls_cert is not None and config.tls_key is not None:
        from ._security import server_ssl_context

        try:
            ssl_context = server_ssl_context(config.tls_cert, config.tls_key)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load the TLS certificate and key: {exc}") from exc
    store = build_store(config)
    await _migrate(config)
    metrics = Metrics() if config.metrics else None
    with trio.open_signal_receiver(*_SIGNALS) as signals:
        stop = trio.Event()
        async with trio.open_nursery() as watcher:
            watcher.start_soon(_watch_signals, signals, stop, config.drain_grace)
            async with open_manager(
                store,
                workers=config.workers,
                node_id=config.node_id,
                lease=config.lease,
                drain_grace=config.drain_grace,
                retention=config.retention,
                metrics=metrics,
            ) as manager:
                loaded = await load_job_modules(manager, config.jobs)
                for module, kinds in loaded.items():
                    log.info("%s: %s", module, ", ".join(kinds))
                if not config.jobs:
                    log.warning("no job module given (--jobs): this node runs no jobs")
                async with trio.open_nursery() as nursery:
                    grpc_port: int = await nursery.start(
                        partial(
                            serve,
                            manager,
                            config.host,
                            config.port,
                            ssl=ssl_context,
                            token=config.token,
                        )
                    )
                    metrics_port: int | None = None
                    if metrics is not None:
                        metrics_port = await nursery.start(
                            serve_metrics, metrics, config.metrics_host, config.metrics_port
                        )
                    _announce(out, config, grpc_port, metrics_port, manager.node_id)
                    task_status.started(Listening(grpc_port, metrics_port))
                    await stop.wait()
                    nursery.cancel_scope.cancel()
                log.info("gRPC and metrics stopped; draining running jobs")
            log.info("stopped")
            watcher.cancel_scope.cancel()


def _announce(
    out: TextIO, config: ServerConfig, grpc_port: int, metrics_port: int | None, node_id: str
) -> None:
    security = [name for name, on in (("TLS", config.tls), ("token", config.token)) if on]
    details = f" ({', '.join(security)})" if security else ""
    print(f"gRPC listening on {_address(config.host, grpc_port)}{details}", file=out)
    if metrics_port is not None:
        print(f"metrics listening on {_address(config.metrics_host, metrics_port)}", file=out)
    print(f"node {node_id} ready, store {_display(config.store)}", file=out, flush=True)


def _display(url: str) -> str:
    """The store URL without its password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:  # not an SQLAlchemy URL (memory://...): nothing to hide
        return url
