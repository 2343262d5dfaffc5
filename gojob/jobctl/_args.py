"""jobctl's command line: the argparse tree (every command, its options, help and
examples) and the connection settings read from flags and ``GOJOB_*`` variables.

Global options go before the command or after it (``jobctl --json jobs`` or ``jobctl jobs
--json``); ``--timeout`` (the deadline of each call) goes before ``schedule``, whose own
``--timeout`` is the job's. Value parsers live in :mod:`gojob.jobctl._values`.
"""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Callable, Mapping
from typing import Any

from .._version import __version__
from . import _values as v
from ._client import Target
from ._exit import EXIT_CODES_HELP

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "DEFAULT_TIMEOUT", "build_parser", "target_of"]

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 59051
"""go-job's (and gojob's server's) port."""
DEFAULT_TIMEOUT = 30.0

_FORMATTER = argparse.RawDescriptionHelpFormatter


def _type(parse: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """An argparse ``type`` whose ValueError message is shown as is."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name
    return convert


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"invalid number {text!r}") from None
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        return value

    result: Callable[[str], int] = _type(parse, "count")
    return result


DURATION = _type(v.parse_duration, "duration")
DATETIME = _type(v.parse_datetime, "datetime")
JSON_ARRAY = _type(v.json_array, "json_array")
JSON_OBJECT = _type(v.json_object, "json_object")
RETRIES = _type(v.parse_retries, "retries")
LEVEL = _type(v.parse_level, "level")
NON_NEGATIVE = _count(0)
POSITIVE = _count(1)
STATES_HELP = f"a state: {', '.join(v.STATE_CHOICES)} (repeat it, or comma-separate)"


# -- global options ------------------------------------------------------------------------


def _connection(parser: argparse.ArgumentParser, *, default: Any, timeout: bool) -> None:
    """The global options; on commands ``default`` is SUPPRESS, so that one given before
    the command is not overwritten by the command's default."""
    g = parser.add_argument_group("connection and output (also before the command)")
    g.add_argument(
        "--host", default=default, help=f"server host (env GOJOB_HOST; default {DEFAULT_HOST})"
    )
    g.add_argument(
        "--port",
        type=POSITIVE,
        default=default,
        help=f"server port (env GOJOB_PORT; default {DEFAULT_PORT})",
    )
    g.add_argument(
        "--tls",
        action=argparse.BooleanOptionalAction,
        default=default,
        help="use TLS, verified with the system's CAs (env GOJOB_TLS=1)",
    )
    g.add_argument(
        "--tls-ca",
        metavar="FILE",
        default=default,
        help="verify the server with this CA bundle (PEM); implies --tls (env GOJOB_TLS_CA)",
    )
    g.add_argument(
        "--tls-server-name",
        metavar="NAME",
        default=default,
        help="the name the server's certificate must carry (default: --host)",
    )
    g.add_argument(
        "--token",
        default=default,
        help="bearer token, sent as 'authorization: Bearer TOKEN' "
        "(env GOJOB_TOKEN, which keeps it out of the process list)",
    )
    if timeout:
        g.add_argument(
            "--timeout",
            dest="call_timeout",
            type=DURATION,
            default=default,
            metavar="DURATION",
            help=f"deadline of each call, 0 for none (env GOJOB_TIMEOUT; default "
            f"{DEFAULT_TIMEOUT:g}s)",
        )
    g.add_argument(
        "--json", action="store_true", default=default, help="print JSON instead of tables"
    )
    g.add_argument(
        "--utc", action="store_true", default=default, help="show times in UTC (default: local)"
    )


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


def _env(environ: Mapping[str, str], name: str, parse: Callable[[str], Any]) -> Any:
    text = environ.get(name)
    if text is None:
        return None
    try:
        return parse(text)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise ValueError(f"environment variable {name}={text!r}: {exc}") from None


def _flag(text: str) -> bool:
    if text.strip().lower() in _TRUE:
        return True
    if text.strip().lower() in _FALSE:
        return False
    raise ValueError("expected 1/0, true/false, yes/no or on/off")


def target_of(args: argparse.Namespace, environ: Mapping[str, str]) -> Target:
    """The connection settings: a flag wins over its variable, which wins over the
    default. Raises ValueError for a malformed variable."""

    def pick(name: str, env: str, parse: Callable[[str], Any], default: Any) -> Any:
        value = getattr(args, name, None)
        if value is not None:
            return value
        found = _env(environ, env, parse)
        return default if found is None else found

    timeout = pick("call_timeout", "GOJOB_TIMEOUT", v.parse_duration, None)
    seconds = DEFAULT_TIMEOUT if timeout is None else timeout.total_seconds()
    tls_ca = pick("tls_ca", "GOJOB_TLS_CA", str, None) or None
    return Target(
        host=pick("host", "GOJOB_HOST", str, DEFAULT_HOST) or DEFAULT_HOST,
        port=pick("port", "GOJOB_PORT", POSITIVE, DEFAULT_PORT),
        tls=bool(pick("tls", "GOJOB_TLS", _flag, False)) or tls_ca is not None,
        tls_ca=tls_ca,
        server_name=getattr(args, "tls_server_name", None),
        token=pick("token", "GOJOB_TOKEN", str, None) or None,
        timeout=seconds or None,
    )


# -- commands ---------------------------------------------------------------------------


class _Tree:
    """Adds commands with their shared options, help and examples."""

    def __init__(self, sub: Any) -> None:
        self.sub = sub

    def add(
        self,
        name: str,
        summary: str,
        examples: str,
        *,
        details: str = "",
        timeout: bool = True,
        connects: bool = True,
    ) -> argparse.ArgumentParser:
        """A command; ``connects``: it takes the connection and output options."""
        description = summary[:1].upper() + summary[1:] + "."
        if details:
            description += "\n\n" + textwrap.fill(details, 80)
        parser: argparse.ArgumentParser = self.sub.add_parser(
            name,
            help=summary,
            description=description,
            epilog="examples:\n" + examples.strip("\n"),
            formatter_class=_FORMATTER,
        )
        if connects:
            _connection(parser, default=argparse.SUPPRESS, timeout=timeout)
        return parser


def _filters(parser: argparse.ArgumentParser, *, states: bool = True) -> None:
    parser.add_argument("--kind", metavar="KIND", help="only this job kind")
    if states:
        parser.add_argument("--state", action="append", metavar="STATE", help=STATES_HELP)


def _window(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--since",
        metavar="TIME",
        help=f"{what} at or after TIME: ISO-8601 with an offset, or a duration ago (10m)",
    )
    parser.add_argument("--until", metavar="TIME", help=f"{what} before TIME (same forms)")
    parser.add_argument("--desc", action="store_true", help="newest first")
    parser.add_argument(
        "--limit",
        type=NON_NEGATIVE,
        default=0,
        metavar="N",
        help="at most N rows (default: the server's cap)",
    )
    parser.add_argument(
        "--offset", type=NON_NEGATIVE, default=0, metavar="N", help="skip the first N rows"
    )


def _schedule(tree: _Tree) -> None:
    p = tree.add(
        "schedule",
        "schedule an instance of a job kind, or declare a recurring schedule",
        """
  jobctl schedule add 1 2                       # now; "1" and "2" coerced by annotations
  jobctl schedule add 1 2 --after 10s --timeout 5s --retries 3 --priority 1
  jobctl schedule add --json-args '[1, 2]'
  jobctl schedule scaled --json-args '[[1, 2]]' --kwargs '{"scale": 3}'
  jobctl schedule report --at 2030-01-01T07:00:00+01:00
  jobctl schedule report --cron "0 7 * * *" --tz Europe/Paris --id daily-report
  jobctl schedule poll --every 30s --overlap skip --misfire skip
  jobctl schedule mail bob@example.org --dedupe-key welcome-bob
  jobctl --timeout 5s schedule add 1 2          # deadline of the call itself
""",
        details="Without --after/--at/--every/--cron the instance is due now. Positional "
        "arguments are go-job's strings, converted by the server according to the job's "
        "annotations; --json-args/--kwargs pass JSON values instead (not both styles).",
        timeout=False,
    )
    p.add_argument("kind", help="a registered job kind (see: jobctl jobs)")
    p.add_argument("args", nargs="*", metavar="ARG", help="positional argument, as a string")
    p.add_argument("--json-args", type=JSON_ARRAY, metavar="JSON", help="arguments: JSON array")
    p.add_argument("--kwargs", type=JSON_OBJECT, metavar="JSON", help="keyword args: JSON object")
    when = p.add_argument_group("when (one of)").add_mutually_exclusive_group()
    when.add_argument(
        "--after", type=DURATION, metavar="DURATION", help="due after this delay (10s, 1h30m...)"
    )
    when.add_argument(
        "--at", type=DATETIME, metavar="TIME", help="due at this ISO-8601 time, with an offset"
    )
    when.add_argument(
        "--every", type=DURATION, metavar="DURATION", help="recurring: at this fixed rate"
    )
    when.add_argument("--cron", metavar="SPEC", help="recurring: cron spec (5 or 6 fields, @daily)")
    policy = p.add_argument_group("policy (default: the job's)")
    policy.add_argument("--priority", type=int, metavar="N", help="lower runs first")
    policy.add_argument(
        "--timeout",
        type=DURATION,
        metavar="DURATION",
        help="timeout of each attempt (the call's own deadline: jobctl --timeout D schedule)",
    )
    policy.add_argument("--retries", type=RETRIES, metavar="N", help="re-tries (N or inf)")
    policy.add_argument(
        "--backoff", type=DURATION, metavar="DURATION", help="constant delay between retries"
    )
    policy.add_argument("--dedupe-key", metavar="KEY", help="one-off: reuse the live instance")
    rec = p.add_argument_group("recurring schedules (--cron, --every)")
    rec.add_argument("--tz", metavar="ZONE", help="the cron spec's IANA zone (default UTC)")
    rec.add_argument(
        "--id", dest="schedule_id", metavar="ID", help="the schedule's id (default: derived)"
    )
    rec.add_argument("--overlap", choices=list(v.OVERLAPS), help="while the last still runs")
    rec.add_argument("--misfire", choices=list(v.MISFIRES), help="slots missed in downtime")
    rec.add_argument(
        "--misfire-cap", type=POSITIVE, metavar="N", help="catch-up-all: at most N slots"
    )
    rec.add_argument(
        "--misfire-grace",
        type=DURATION,
        metavar="DURATION",
        help="a slot missed by more than this is a misfire",
    )
    rec.add_argument(
        "--jitter", type=DURATION, metavar="DURATION", help="random delay added to each slot"
    )
    rec.add_argument(
        "--start", type=DATETIME, metavar="TIME", help="--every: the anchor (default now)"
    )


def _schedules(tree: _Tree) -> None:
    p = tree.add(
        "schedules",
        "list and manage recurring schedules",
        """
  jobctl schedules                      # list them all
  jobctl schedules list --kind report
  jobctl schedules show daily-report
  jobctl schedules pause daily-report
  jobctl schedules resume daily-report  # slots passed while paused are not fired
  jobctl schedules delete daily-report
""",
    )
    p.add_argument("--kind", default=argparse.SUPPRESS, help="list: only this kind's")
    actions = p.add_subparsers(dest="action", metavar="ACTION", title="actions")
    sub = _Tree(actions)
    lst = sub.add("list", "list recurring schedules (the default)", "  jobctl schedules list\n")
    lst.add_argument("--kind", default=argparse.SUPPRESS, help="only this kind's")
    for name, summary in (
        ("show", "show every field of a schedule"),
        ("pause", "pause a schedule (no slot fires until resumed)"),
        ("resume", "resume a schedule (slots passed while paused are not fired)"),
        ("delete", "delete a schedule (its instances are kept)"),
    ):
        one = sub.add(name, summary, f"  jobctl schedules {name} daily-report\n")
        one.add_argument("id", help="the schedule's id (see: jobctl schedules)")


def _instances(tree: _Tree) -> None:
    p = tree.add(
        "instances",
        "list instances, a page at a time",
        """
  jobctl instances
  jobctl instances --kind add --state Completed --limit 20
  jobctl instances --state active --order-by updated --desc
  jobctl instances --since 1h --json | jq '.instances[].uuid'
""",
        details="At most the server's cap (1000) rows per call; when more match, the "
        "next --offset is printed on stderr (and is next_offset in --json).",
    )
    _filters(p)
    p.add_argument("--schedule-id", metavar="ID", help="only those of this schedule")
    p.add_argument("--order-by", choices=list(v.ORDERS), default="created", help="sort key")
    _window(p, "created")

    one = tree.add(
        "instance",
        "show every field of one instance",
        "  jobctl instance 7c0e...\n  jobctl instance 7c0e... --json | jq .result\n",
    )
    one.add_argument("uuid")


def _history_logs(tree: _Tree) -> None:
    p = tree.add(
        "history",
        "show state transitions, of one instance or by filters",
        """
  jobctl history 7c0e...
  jobctl history --kind add --state Terminated --since 1h
  jobctl history --desc --limit 50
""",
    )
    p.add_argument("uuid", nargs="?", help="one instance's history")
    _filters(p)
    _window(p, "recorded")

    p = tree.add(
        "logs",
        "show log lines, of one instance or by filters; --follow streams them",
        """
  jobctl logs 7c0e...
  jobctl logs 7c0e... --follow           # until the instance is final (Ctrl-C stops)
  jobctl logs --kind report --level warn --since 1d
""",
    )
    p.add_argument("uuid", nargs="?", help="one instance's log")
    p.add_argument(
        "-f", "--follow", action="store_true", help="stream new lines until the instance is final"
    )
    p.add_argument(
        "--level", type=LEVEL, metavar="LEVEL", help="at or above: debug, info, warn, error"
    )
    _filters(p, states=False)
    _window(p, "written")


def _control(tree: _Tree) -> None:
    p = tree.add(
        "cancel",
        "cancel instances: queued ones at once, running ones through their cancel scope",
        """
  jobctl cancel 7c0e...
  jobctl cancel --kind add
  jobctl cancel --kind add --state Scheduled
  jobctl cancel --all                   # every instance that is not final
""",
    )
    p.add_argument("uuid", nargs="?", help="one instance")
    _filters(p)
    p.add_argument("--all", action="store_true", help="every instance that is not final")

    p = tree.add(
        "retry",
        "run a final instance again (failures reset)",
        "  jobctl retry 7c0e...\n  jobctl retry 7c0e... --after 5m\n",
    )
    p.add_argument("uuid")
    p.add_argument(
        "--after", type=DURATION, metavar="DURATION", help="due after this delay (default now)"
    )

    p = tree.add(
        "workers",
        "show, or resize, the served node's worker pool",
        """
  jobctl workers                  # target, live, busy
  jobctl workers 16               # grow at once
  jobctl workers 2 --cancel-busy  # shrink now: busy attempts go back to the queue
""",
        details="Shrinking waits for surplus workers to finish their attempt, unless "
        "--cancel-busy.",
    )
    p.add_argument("count", nargs="?", type=POSITIVE, metavar="N", help="new target (>= 1)")
    p.add_argument("--cancel-busy", action="store_true", help="shrink now (release attempts)")


def _observe(tree: _Tree) -> None:
    tree.add("nodes", "list the live nodes sharing the server's store", "  jobctl nodes\n")
    p = tree.add(
        "watch",
        "print state changes as they happen, until Ctrl-C",
        """
  jobctl watch
  jobctl watch --kind add --state Completed --state Terminated
  jobctl watch --uuid 7c0e... --until-final
  jobctl watch --json | jq -c 'select(.state == "Terminated")'
""",
        details="The first line (STARTED) says the watch is live: every change after it "
        "is shown. RESYNC says events may have been lost (query to catch up). "
        "Ctrl-C ends it with exit code 0.",
    )
    _filters(p)
    p.add_argument("--uuid", metavar="UUID", help="only this instance's changes")
    p.add_argument("--until-final", action="store_true", help="with --uuid: end once it is final")
    p.add_argument(
        "--with-instance", action="store_true", help="--json: attach each instance as read"
    )
    tree.add(
        "jobs",
        "list the job kinds: registered ones, and kinds queued that no live node serves",
        "  jobctl jobs\n  jobctl jobs --json | jq '.unserved_kinds'\n",
    )
    tree.add(
        "stats",
        "show the node's pool and the store's counts by kind and state",
        "  jobctl stats\n",
    )
    tree.add("version", "show the client's and the server's versions", "  jobctl version\n")
    p = tree.add(
        "completion",
        "print a shell completion script",
        """
  jobctl completion bash > ~/.local/share/bash-completion/completions/jobctl
  source <(jobctl completion bash)                        # bash, this shell only
  jobctl completion zsh > "${fpath[1]}/_jobctl"           # zsh (then: compinit)
  jobctl completion fish > ~/.config/fish/completions/jobctl.fish
""",
        connects=False,
    )
    p.add_argument("shell", choices=["bash", "zsh", "fish"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobctl",
        description="jobctl: the command-line client of a gojob server (gRPC).",
        formatter_class=_FORMATTER,
        epilog=f"""\
examples:
  jobctl schedule add 1 2 --after 10s --timeout 5s --retries 3 --priority 1
  jobctl schedule report --cron "0 7 * * *" --tz Europe/Paris --id daily-report
  jobctl instances --kind add --state Completed --limit 20
  jobctl logs 7c0e... --follow
  jobctl --host jobs.internal --tls jobs

Every command prints a table, or JSON with --json. 'jobctl COMMAND --help' shows a
command's options and examples.

environment:
  GOJOB_HOST, GOJOB_PORT, GOJOB_TLS (1/0), GOJOB_TLS_CA, GOJOB_TOKEN, GOJOB_TIMEOUT
  stand for the flags of the same name; a flag wins.

{EXIT_CODES_HELP}
""",
    )
    parser.add_argument("--version", action="version", version=f"jobctl {__version__}")
    _connection(parser, default=None, timeout=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    tree = _Tree(sub)
    _schedule(tree)
    _schedules(tree)
    _instances(tree)
    _history_logs(tree)
    _control(tree)
    _observe(tree)
    return parser
