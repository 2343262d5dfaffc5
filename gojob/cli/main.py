"""The ``gojob`` command: ``gojob demo`` runs the main job on the embedded default store,
``gojob server`` runs a node with its gRPC API and metrics (:mod:`gojob.cli.server`),
``gojob db`` migrates the SQL schema."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__

__all__ = ["DEMO_STORE", "main"]

DEMO_STORE = "sqlite:///gojob-demo.db"
"""The embedded default of ``gojob demo``: jobs survive a restart."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gojob",
        description="gojob: a job framework for Trio.",
        epilog="Examples: gojob demo; gojob server --jobs myapp.jobs",
    )
    parser.add_argument("--version", action="version", version=f"gojob {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="register a few jobs, run them with live progress and print their histories",
        description=(
            "Run gojob's demonstration on the embedded store: one-off, delayed, retried, "
            "timed-out, cancelled and recurring jobs, with live progress, then their "
            "histories and logs."
        ),
    )
    demo.add_argument("--workers", type=int, default=4, help="worker count (default 4)")
    demo.add_argument(
        "--store",
        default=DEMO_STORE,
        help=f"store URL (default {DEMO_STORE}: a SQLite file in the working directory, "
        "created and migrated on first use; 'memory://' keeps nothing)",
    )
    sub.add_parser(
        "db",
        help="create or migrate the SQL schema (upgrade, downgrade, current, check)",
        add_help=False,
    )
    demo.add_argument("--quiet", action="store_true", help="no live progress lines")
    from .server import add_parser as add_server_parser

    add_server_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["db"]:
        # Alembic is imported only for this command.
        from ..store.sql import migrate

        return migrate.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        if args.workers < 1:
            parser.error("--workers must be at least 1")
        return run_demo(workers=args.workers, quiet=args.quiet, store=args.store)
    if args.command == "server":
        from .server import run as run_server

        return run_server(args)
    parser.print_help()
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
