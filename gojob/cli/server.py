"""``gojob server``: the flags, and the exit codes of the server process.

Every flag defaults to "unset" so that :func:`gojob.server.config.resolve_config` can
apply the environment (``GOJOB_*``) and the TOML file (``--config``) beneath it.
Exit codes: 0 after a SIGTERM/SIGINT drain, 2 for a bad configuration, 1 when the
server cannot start (a job module, the store, a port in use).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

__all__ = ["add_parser", "run"]

_EPILOG = """\
Settings come from flags, then GOJOB_* environment variables (GOJOB_STORE, GOJOB_WORKERS,
GOJOB_JOBS=a.jobs,b.jobs, GOJOB_TOKEN, ...), then the TOML file of --config (or GOJOB_CONFIG),
whose keys are the flags' names (store = "...", workers = 8, jobs = ["myapp.jobs"]).

Example: gojob server --jobs myapp.jobs --store postgresql://gojob@db/jobs --workers 8
"""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Add the ``server`` subcommand to ``sub`` (an argparse subparsers action)."""
    from ..server.config import DEFAULT_STORE

    p: argparse.ArgumentParser = sub.add_parser(
        "server",
        help="run a node: its jobs, the gRPC API and the Prometheus metrics",
        description=(
            "Run a gojob node: the jobs of the --jobs modules on --workers workers,\n"
            "go-job's gRPC API and gojob's (127.0.0.1:59051), and Prometheus metrics\n"
            "(127.0.0.1:9181). SIGTERM or SIGINT drains running jobs and exits 0."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--config", metavar="FILE", help="TOML file of settings (lowest precedence)")
    add(
        "--store",
        metavar="URL",
        help=f"store URL (default {DEFAULT_STORE}: a SQLite file in the working directory, "
        "migrated on first use; postgresql://user@host/db; memory:// keeps nothing)",
    )
    add("--schema", help="PostgreSQL schema of gojob's tables")
    add("--prefix", help="table name prefix of the SQL stores (default gojob_)")
    add(
        "--migrate",
        action="store_const",
        const=True,
        help="migrate a PostgreSQL schema to head at start (default: refuse to start)",
    )
    add(
        "--jobs",
        metavar="MODULE",
        action="append",
        help="importable module declaring jobs (a JobSet or register(manager)); repeatable",
    )
    add("--workers", metavar="N", help="worker count (default 10)")
    add("--node-id", help="this node's id (default host-pid-random)")
    add("--lease", metavar="DURATION", help="claim lease, e.g. 30s (default 30s)")
    add(
        "--drain-grace",
        metavar="DURATION",
        help="on SIGTERM, time running jobs get to finish before release (default 10s)",
    )
    add("--retention", metavar="DURATION", help="prune final instances older than this (off)")
    add("--host", help="gRPC address (default 127.0.0.1)")
    add("--port", help="gRPC port (default 59051; 0 picks a free one, printed at start)")
    add(
        "--metrics",
        action=argparse.BooleanOptionalAction,
        help="serve Prometheus metrics (default on; --no-metrics to disable)",
    )
    add("--metrics-host", help="metrics address (default 127.0.0.1)")
    add("--metrics-port", help="metrics port (default 9181; 0 picks a free one)")
    add("--tls-cert", metavar="FILE", help="PEM certificate chain: serve gRPC over TLS")
    add("--tls-key", metavar="FILE", help="PEM private key of --tls-cert")
    add(
        "--token",
        help="bearer token every call must carry (health excepted); visible to ps: "
        "prefer --token-file or GOJOB_TOKEN",
    )
    add("--token-file", metavar="FILE", help="read the bearer token from this file")
    add(
        "--allow-insecure-remote",
        action="store_const",
        const=True,
        help="allow a non-loopback address without TLS or token (and non-loopback metrics)",
    )
    add("--log-level", help="DEBUG, INFO (default), WARNING, ERROR")
    return p


_SETTINGS = (
    "store",
    "schema",
    "prefix",
    "migrate",
    "jobs",
    "workers",
    "node_id",
    "lease",
    "drain_grace",
    "retention",
    "host",
    "port",
    "metrics",
    "metrics_host",
    "metrics_port",
    "tls_cert",
    "tls_key",
    "token",
    "token_file",
    "allow_insecure_remote",
    "log_level",
)


def run(args: argparse.Namespace) -> int:
    """Resolve the configuration and run the server; returns the exit code."""
    import trio

    from ..server.config import ConfigError, resolve_config
    from ..server.process import run_server

    flags = {name: getattr(args, name) for name in _SETTINGS}
    try:
        config = resolve_config(flags, config_file=args.config)
        config.check_exposure()
    except ConfigError as exc:
        print(f"gojob server: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Alembic narrates every migration step at INFO: only its warnings matter here.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    # Job modules are found from the working directory, as `python -m` would.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        trio.run(run_server, config)
    except BaseException as exc:
        code, message = _failure(_leaf(exc))
        if code is None:
            raise
        print(f"gojob server: {message}", file=sys.stderr)
        return code
    return 0


def _leaf(exc: BaseException) -> BaseException:
    """The one error inside nested exception groups (nurseries wrap what they raise)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _failure(exc: BaseException) -> tuple[int | None, str]:
    """The exit code and message of an error that stopped the server (None: unexpected,
    shown with its traceback)."""
    from ..errors import GojobError, UnsupportedStore
    from ..server.config import ConfigError

    if isinstance(exc, ConfigError | UnsupportedStore):
        return 2, str(exc)
    if isinstance(exc, GojobError):  # a job module, the store unreachable...
        return 1, str(exc)
    if isinstance(exc, OSError):  # binding a port
        return 1, f"cannot listen: {exc}"
    return None, ""
