"""What every command receives: its parsed arguments, a client and a printer."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from .._generated import service_pb2 as pb
from . import _values as v
from ._client import Client
from ._exit import EXIT_USAGE, JobctlError
from ._output import Printer

__all__ = ["Command", "Ctx", "usage"]


def usage(message: str) -> JobctlError:
    """A command-line mistake found by a command (exit code 2)."""
    return JobctlError(message, EXIT_USAGE)


@dataclass
class Ctx:
    args: argparse.Namespace
    client: Client
    out: Printer

    def note(self, text: str) -> None:
        """A remark for the user, on stderr (stdout stays the data)."""
        print(text, file=sys.stderr, flush=True)

    def states(self) -> list[pb.JobState]:
        try:
            return v.parse_states(getattr(self.args, "state", None))
        except ValueError as exc:
            raise usage(f"argument --state: {exc}") from None

    def window(self, msg: object) -> None:
        """Fill ``after``/``before`` of a lookup request from --since/--until."""
        now = datetime.now(UTC)
        for option, field in (("since", "after"), ("until", "before")):
            text = getattr(self.args, option, None)
            if text is None:
                continue
            try:
                when = v.parse_since(text, now)
            except ValueError as exc:
                raise usage(f"argument --{option}: {exc}") from None
            getattr(msg, field).FromDatetime(when)


Command = Callable[[Ctx], Awaitable[int]]
"""A command: returns its exit code (errors are raised as JobctlError)."""
