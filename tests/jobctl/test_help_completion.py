"""``--help`` of every command, and the shell completion scripts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from gojob.jobctl._args import build_parser
from gojob.jobctl._completion import tree

from .conftest import JOBCTL, clean_env

TIMEOUT = 60
COMMANDS = [node.path for node in tree(build_parser()).walk()]


async def jobctl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await trio.run_process(
        [*JOBCTL, *args], capture_stdout=True, capture_stderr=True, check=False, env=clean_env()
    )


def test_the_tree_has_every_command() -> None:
    assert set(COMMANDS) == {
        "", "schedule", "schedules", "schedules list", "schedules show", "schedules pause",
        "schedules resume", "schedules delete", "instances", "instance", "history", "logs",
        "cancel", "retry", "workers", "nodes", "watch", "jobs", "stats", "version",
        "completion",
    }  # fmt: skip


async def test_help_of_every_command() -> None:
    with trio.fail_after(TIMEOUT):
        for path in COMMANDS:
            proc = await jobctl(*path.split(), "--help")
            out = proc.stdout.decode()
            assert proc.returncode == 0, (path, proc.stderr)
            assert out.startswith(f"usage: jobctl {path}".rstrip()), out
            assert "examples:\n  jobctl" in out, (path, out)
            assert f"jobctl {path}".rstrip() in out.split("examples:")[1], path
            if path != "completion":  # the only command that does not connect
                assert "--json" in out, path
                assert "--host" in out, path
        top = (await jobctl("--help")).stdout.decode()
        for text in ("exit codes:", "GOJOB_TOKEN", "GOJOB_TLS_CA", "unreachable", "130"):
            assert text in top
        version = await jobctl("--version")
        assert version.returncode == 0
        assert version.stdout.decode().startswith("jobctl ")


async def test_also_runs_as_the_installed_script() -> None:
    script = Path(JOBCTL[0]).with_name("jobctl")
    if not script.exists():
        pytest.skip("the jobctl script is not installed next to this interpreter")
    with trio.fail_after(TIMEOUT):
        proc = await trio.run_process(
            [str(script), "schedule", "--help"], capture_stdout=True, check=False
        )
    assert proc.returncode == 0
    assert b"--cron" in proc.stdout


async def _bash(script: str, line: str) -> list[str]:
    """What bash completes for ``line`` (the cursor at its end) with ``script`` sourced."""
    words = line.split(" ")
    program = (
        f"source {script}\n"
        f"COMP_WORDS=({' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words) - 1}\n"
        '_jobctl\nprintf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    proc = await trio.run_process(["bash", "-c", program], capture_stdout=True, capture_stderr=True)
    assert proc.stderr == b"", proc.stderr
    return proc.stdout.decode().split()


async def test_bash_completion(tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    with trio.fail_after(TIMEOUT):
        proc = await jobctl("completion", "bash")
        assert proc.returncode == 0
        script = tmp_path / "jobctl.bash"
        script.write_bytes(proc.stdout)
        checked = await trio.run_process(["bash", "-n", str(script)], capture_stderr=True)
        assert checked.stderr == b""
        path = str(script)
        assert "schedules" in await _bash(path, "jobctl sch")
        assert await _bash(path, "jobctl schedules pa") == ["pause"]
        assert sorted(await _bash(path, "jobctl --port 5 --json ins")) == ["instance", "instances"]
        states = await _bash(path, "jobctl instances --state ")
        assert states[:2] == ["Created", "Scheduled"]
        assert "active" in states
        assert await _bash(path, "jobctl instances --state Com") == ["Completed"]
        assert await _bash(path, "jobctl logs --fo") == ["--follow"]
        assert await _bash(path, "jobctl schedule add --overlap s") == ["skip"]
        assert await _bash(path, "jobctl completion ") == ["bash", "zsh", "fish"]
        assert "--cancel-busy" in await _bash(path, "jobctl workers --")
        # A value is not taken for a command: "schedules" after --kind is the kind.
        assert await _bash(path, "jobctl instances --kind schedules --li") == ["--limit"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
async def test_zsh_and_fish_completion(shell: str, tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT):
        proc = await jobctl("completion", shell)
    assert proc.returncode == 0
    text = proc.stdout.decode()
    for path in COMMANDS:
        for word in path.split():
            assert word in text
    if shell == "zsh":
        assert text.startswith("#compdef jobctl\n")
        assert "compdef _jobctl jobctl" in text
    else:
        assert "complete -c jobctl -n '__jobctl_at \\'schedules\\'' -a pause" in text
        assert "-l state -x -a 'Created Scheduled" in text
    binary = shutil.which(shell)
    if binary is None:
        return  # the syntax is checked where the shell is installed
    script = tmp_path / f"jobctl.{shell}"
    script.write_text(text)
    check = [binary, "-n", str(script)] if shell == "zsh" else [binary, "--no-execute", str(script)]
    with trio.fail_after(TIMEOUT):
        checked = await trio.run_process(check, capture_stderr=True, check=False)
    assert checked.returncode == 0, checked.stderr
