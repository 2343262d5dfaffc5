"""jobctl's failures: one-line messages and distinct exit codes (1 server, 2 usage,
3 unreachable, 4 unauthenticated); the GOJOB_* variables stand for the flags."""

from __future__ import annotations

import functools
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import trio

from gojob.server import serve

from .conftest import Ctl, Result

TIMEOUT = 60


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def one_line_error(result: Result, code: int, *parts: str) -> str:
    assert result.code == code, (result.code, result.out, result.err)
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("jobctl: error: "), lines
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def usage_error(result: Result, *parts: str) -> None:
    """argparse's usage line, then the error, exit 2."""
    assert result.code == 2, (result.code, result.out, result.err)
    assert result.err.startswith("usage: jobctl"), result.err
    last = result.err.strip().splitlines()[-1]
    assert ": error: " in last
    for part in parts:
        assert part in last, (part, last)


async def test_server_side_errors_exit_1(served: Ctl) -> None:
    with trio.fail_after(TIMEOUT):
        unknown = await served.run("schedule", "nope", "1")
        one_line_error(unknown, 1, "'nope'", "(NOT_FOUND)")
        uncoercible = await served.run("schedule", "add", "1", "x")
        one_line_error(uncoercible, 1, "'x'", "(INVALID_ARGUMENT)")
        arity = await served.run("schedule", "add", "--json-args", "[1, 2, 3]")
        one_line_error(arity, 1, "(INVALID_ARGUMENT)")
        cron = await served.run("schedule", "daily", "--cron", "61 * * * *")
        one_line_error(cron, 1, "(INVALID_ARGUMENT)")
        zone = await served.run("schedule", "daily", "--cron", "0 7 * * *", "--tz", "Mars/Base")
        one_line_error(zone, 1, "Mars/Base", "(INVALID_ARGUMENT)")
        misplaced = await served.run("schedule", "add", "1", "2", "--tz", "UTC")
        one_line_error(misplaced, 1, "(INVALID_ARGUMENT)")
        for args in (
            ("instance", "no-such-uuid"),
            ("history", "no-such-uuid"),
            ("logs", "no-such-uuid"),
            ("logs", "no-such-uuid", "--follow"),
            ("cancel", "no-such-uuid"),
            ("retry", "no-such-uuid"),
            ("schedules", "pause", "no-such-schedule"),
        ):
            one_line_error(await served.run(*args), 1, "no-such-", "(NOT_FOUND)")
        # --json changes nothing to errors: stderr, one line.
        one_line_error(await served.run("--json", "instance", "x"), 1, "(NOT_FOUND)")


async def test_usage_errors_exit_2(served: Ctl) -> None:
    with trio.fail_after(TIMEOUT):
        usage_error(await served.run("schedule", "add", "--json-args", "[1,"), "invalid JSON")
        usage_error(
            await served.run("schedule", "add", "--json-args", '{"a": 1}'),
            "--json-args",
            "must be a JSON array, not an object",
        )
        usage_error(await served.run("schedule", "add", "--kwargs", "[1]"), "must be a JSON object")
        usage_error(await served.run("schedule", "add", "--after", "10x"), "invalid duration '10x'")
        usage_error(await served.run("schedule", "add", "--after=-5s"), "invalid duration")
        usage_error(
            await served.run("schedule", "add", "--at", "2030-01-01T07:00:00"), "no time zone"
        )
        usage_error(await served.run("schedule", "add", "--retries", "-3"), "invalid retry")
        usage_error(await served.run("schedule", "add", "--after", "1s", "--every", "1s"))
        usage_error(await served.run("workers", "-1"), "must be at least 1, got -1")
        usage_error(await served.run("workers", "0"), "must be at least 1, got 0")
        usage_error(await served.run("instances", "--limit", "-1"), "must be at least 0")
        usage_error(await served.run("instances", "--bogus"), "unrecognized arguments: --bogus")
        usage_error(await served.run("logs", "x", "--level", "loud"), "unknown log level")
        usage_error(await served.run("completion", "tcsh"), "invalid choice")
        for args, text in (
            (("schedule", "add", "1", "--json-args", "[2]"), "not both"),
            (("instances", "--state", "Bogus"), "unknown state 'Bogus'"),
            (("instances", "--since", "yesterday"), "--since"),
            (("cancel",), "a UUID, --kind, --state, or --all"),
            (("cancel", "--all", "--kind", "add"), "--all takes no other filter"),
            (("logs", "--follow"), "needs an instance's UUID"),
            (("watch", "--until-final"), "--until-final needs --uuid"),
            (("workers", "--cancel-busy"), "goes with a new worker count"),
        ):
            one_line_error(await served.run(*args), 2, text)
        nothing = await served.run()
        assert nothing.code == 2
        assert "usage: jobctl" in nothing.err


async def test_unreachable_server_exits_3(served: Ctl) -> None:
    port = str(closed_port())
    with trio.fail_after(TIMEOUT):
        for args in (
            ("jobs",),
            ("schedule", "add", "1", "2"),
            ("watch",),
            ("logs", "some-uuid", "--follow"),
        ):
            result = await served.run("--port", port, *args, port=False)
            one_line_error(result, 3, f"cannot reach 127.0.0.1:{port}", "refused")
        # version shows the client's version before it fails.
        version = await served.run("--port", port, "version", port=False)
        one_line_error(version, 3, "cannot reach")
        assert version.out.startswith("client:   jobctl ")
        # TLS spoken to a plaintext server.
        tls = await served.run("--tls", "jobs")
        one_line_error(tls, 3, "TLS with 127.0.0.1", "try --no-tls")


async def test_environment_variables_stand_for_flags(served: Ctl) -> None:
    port = str(served.port)
    closed = str(closed_port())
    with trio.fail_after(TIMEOUT):
        by_flag = await served.run("--json", "nodes")
        by_env = await served.run(
            "--json", "nodes", env={"GOJOB_PORT": port, "GOJOB_HOST": "127.0.0.1"}, port=False
        )
        assert by_env.code == 0, by_env.err
        assert by_env.json() == by_flag.json()
        # Options also go after the command.
        after = await served.run("nodes", "--json", "--port", port, port=False)
        assert after.json() == by_flag.json()
        # A flag wins over its variable.
        wins = await served.run("--json", "nodes", env={"GOJOB_PORT": closed})
        assert wins.json() == by_flag.json()
        refused = await served.run("nodes", env={"GOJOB_PORT": closed}, port=False)
        one_line_error(refused, 3, f"127.0.0.1:{closed}")
        host = await served.run("nodes", env={"GOJOB_HOST": "127.0.0.2"})
        one_line_error(host, 3, "127.0.0.2")
        tls = await served.run("nodes", env={"GOJOB_TLS": "1"})
        assert tls.code == 3, tls.err
        no_tls = await served.run("--no-tls", "nodes", env={"GOJOB_TLS": "yes"})
        assert no_tls.code == 0, no_tls.err
        for name, value in (
            ("GOJOB_PORT", "http"),
            ("GOJOB_TLS", "maybe"),
            ("GOJOB_TIMEOUT", "soon"),
        ):
            bad = await served.run("nodes", env={"GOJOB_PORT": port, name: value}, port=False)
            one_line_error(bad, 2, f"{name}={value!r}")
        # A variable that a flag overrides is not read.
        overridden = await served.run("nodes", env={"GOJOB_PORT": "http"})
        assert overridden.code == 0, overridden.err
        fast = await served.run("nodes", env={"GOJOB_TIMEOUT": "250ms"})
        assert fast.code == 0, fast.err


async def test_deadline_of_a_silent_server_exits_3(served: Ctl, nursery: trio.Nursery) -> None:
    """A server that accepts but never answers: --timeout ends the call."""
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, host="127.0.0.1"), _swallow, 0
    )
    port = listeners[0].socket.getsockname()[1]
    with trio.fail_after(TIMEOUT):
        for args in (("nodes",), ("watch",)):
            result = await served.run("--port", str(port), "--timeout", "300ms", *args, port=False)
            one_line_error(result, 3, "no reply", "within 0.3s", "DEADLINE_EXCEEDED")


async def _swallow(stream: trio.SocketStream) -> None:
    async with stream:
        while await stream.receive_some():
            pass


# -- token and TLS (the server side: gojob.server.serve's `token` and `ssl`) ----------------

OPENSSL = shutil.which("openssl")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key."""
    if OPENSSL is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


async def test_token_and_tls(
    served: Ctl, certificate: tuple[Path, Path], nursery: trio.Nursery
) -> None:
    from gojob.server._security import server_ssl_context

    cert, key = certificate
    context = server_ssl_context(cert, key)
    port = await nursery.start(
        lambda task_status: serve(
            served.manager, "127.0.0.1", 0, ssl=context, token="s3cret", task_status=task_status
        )
    )
    secure = Ctl(served.manager, port)
    ca = str(cert)
    with trio.fail_after(TIMEOUT):
        ok = await secure.run("--tls-ca", ca, "--token", "s3cret", "nodes")
        assert ok.code == 0, ok.err
        assert served.manager.node_id in ok.out
        by_env = await secure.run("nodes", env={"GOJOB_TLS_CA": ca, "GOJOB_TOKEN": "s3cret"})
        assert by_env.code == 0, by_env.err
        stream = await secure.run(
            "--tls-ca", ca, "--token", "s3cret", "watch", "--uuid", "x", "--until-final"
        )
        one_line_error(stream, 1, "(NOT_FOUND)")  # the token passed, the uuid did not
        named = await secure.run(
            "--tls-ca", ca, "--tls-server-name", "localhost", "--token", "s3cret", "nodes"
        )
        assert named.code == 0, named.err
        misnamed = await secure.run(
            "--tls-ca", ca, "--tls-server-name", "elsewhere", "--token", "s3cret", "nodes"
        )
        one_line_error(misnamed, 3, "TLS with 127.0.0.1", "elsewhere")
        missing = await secure.run("--tls-ca", ca, "nodes")
        one_line_error(missing, 4, "(UNAUTHENTICATED)", "--token or GOJOB_TOKEN")
        wrong = await secure.run("--tls-ca", ca, "nodes", env={"GOJOB_TOKEN": "guess"})
        one_line_error(wrong, 4, "invalid bearer token (UNAUTHENTICATED)")
        follow = await secure.run("--tls-ca", ca, "--token", "nope", "logs", "x", "-f")
        one_line_error(follow, 4, "(UNAUTHENTICATED)")
        # TLS: the server's certificate is not in the system's CAs; plaintext is refused.
        untrusted = await secure.run("--tls", "--token", "s3cret", "nodes")
        one_line_error(untrusted, 3, "TLS with 127.0.0.1")
        plain = await secure.run("--token", "s3cret", "nodes")
        one_line_error(plain, 3, "try --tls")
        missing_ca = await secure.run("--tls-ca", "/no/such/ca.pem", "nodes")
        one_line_error(missing_ca, 3, "cannot load CA file /no/such/ca.pem")
