"""The ``jobctl`` entry point: parse, connect, run one command, exit with its code.

Errors print one line, ``jobctl: error: <message>``, on stderr; the exit codes are in
:mod:`gojob.jobctl._exit` (and ``jobctl --help``). Ctrl-C ends ``watch`` and ``logs
--follow`` with 0 (stopping them is their normal end), any other command with 130.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Mapping, Sequence

from . import _cmd_instances, _cmd_schedule, _cmd_server
from ._args import build_parser, target_of
from ._client import Target, open_client
from ._completion import script
from ._context import Command, Ctx
from ._exit import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, JobctlError
from ._output import Printer

__all__ = ["COMMANDS", "main"]

COMMANDS: dict[str, Command] = {
    "schedule": _cmd_schedule.schedule,
    "schedules": _cmd_schedule.schedules,
    "instances": _cmd_instances.instances,
    "instance": _cmd_instances.instance,
    "history": _cmd_instances.history,
    "logs": _cmd_instances.logs,
    "cancel": _cmd_instances.cancel,
    "retry": _cmd_instances.retry,
    "workers": _cmd_server.workers,
    "nodes": _cmd_server.nodes,
    "watch": _cmd_server.watch,
    "jobs": _cmd_server.jobs,
    "stats": _cmd_server.stats,
    "version": _cmd_server.version,
}

_NUMBER = re.compile(r"-\d+(\.\d*)?|-\.\d+")


def _error(message: str) -> None:
    print(f"jobctl: error: {message}", file=sys.stderr, flush=True)


async def _run(command: Command, args: argparse.Namespace, target: Target, printer: Printer) -> int:
    async with open_client(target) as client:
        return await command(Ctx(args, client, printer))


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run jobctl with ``argv`` (default ``sys.argv[1:]``) and ``environ`` (default
    ``os.environ``); returns the exit code."""
    parser = build_parser()
    args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if extra:
        # `schedule KIND --after 10s 1 2`: argparse leaves ARGs given after an option.
        if args.command == "schedule" and all(
            not word.startswith("-") or _NUMBER.fullmatch(word) for word in extra
        ):
            args.args.extend(extra)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.command == "completion":
        print(script(parser, args.shell), end="")
        return EXIT_OK
    try:
        target = target_of(args, os.environ if environ is None else environ)
    except ValueError as exc:
        _error(str(exc))
        return EXIT_USAGE
    streaming = args.command == "watch" or (args.command == "logs" and args.follow)
    printer = Printer(as_json=bool(args.json), utc=bool(args.utc))
    try:
        return asyncio.run(_run(COMMANDS[args.command], args, target, printer))
    except JobctlError as exc:
        _error(exc.message)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_OK if streaming else EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`jobctl watch | head`): stop quietly; point stdout at
        # devnull so that the interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
