"""jobctl's exit codes and its one error type."""

from __future__ import annotations

__all__ = [
    "EXIT_AUTH",
    "EXIT_CODES_HELP",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_SERVER",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "JobctlError",
]

EXIT_OK = 0
EXIT_SERVER = 1
"""The server refused or failed the request (NOT_FOUND, INVALID_ARGUMENT, ...)."""
EXIT_USAGE = 2
"""Bad command line: unknown option, malformed duration, datetime, JSON, state..."""
EXIT_UNAVAILABLE = 3
"""The server cannot be reached, did not answer in time, or is unavailable."""
EXIT_AUTH = 4
"""The server refused the credentials (UNAUTHENTICATED, PERMISSION_DENIED)."""
EXIT_INTERRUPTED = 130
"""Ctrl-C during a command that is not a stream (``watch`` and ``logs --follow`` exit 0)."""

EXIT_CODES_HELP = f"""\
exit codes:
  {EXIT_OK}    success
  {EXIT_SERVER}    the server refused or failed the request (unknown kind or uuid,
       bad arguments, bad cron spec...)
  {EXIT_USAGE}    usage error (unknown option, malformed duration, datetime, JSON...)
  {EXIT_UNAVAILABLE}    server unreachable, unavailable or too slow (--timeout)
  {EXIT_AUTH}    authentication refused (UNAUTHENTICATED, PERMISSION_DENIED)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C), except watch and logs --follow, which exit 0"""


class JobctlError(Exception):
    """A failure to report as ``jobctl: error: <message>`` and exit with ``code``."""

    def __init__(self, message: str, code: int = EXIT_SERVER) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
