"""The README's main command, run as a user runs it: a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_gojob(
    *args: str, timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gojob.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
    )


def test_demo_runs_every_path_and_prints_histories(tmp_path: Path) -> None:
    proc = run_gojob("demo", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "demo succeeded" in out
    # live progress, then results and histories
    assert "-> Processing" in out
    for state in ("Completed", "TimedOut", "Canceled"):
        assert state in out
    assert "Terminated RuntimeError: transient failure #1" in out
    assert "log INFO  attempt 3" in out
    assert "tick      completed" in out


def test_demo_keeps_its_jobs_in_a_sqlite_file_across_runs(tmp_path: Path) -> None:
    first = run_gojob("demo", "--quiet", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "(0 instance(s) from earlier runs)" in first.stdout
    assert (tmp_path / "gojob-demo.db").exists()
    second = run_gojob("demo", "--quiet", cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "(0 instance(s) from earlier runs)" not in second.stdout
    assert "demo succeeded" in second.stdout


def test_demo_on_the_memory_store(tmp_path: Path) -> None:
    proc = run_gojob("demo", "--quiet", "--store", "memory://", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "demo succeeded" in proc.stdout
    assert not (tmp_path / "gojob-demo.db").exists()


def test_demo_quiet_has_no_progress_lines(tmp_path: Path) -> None:
    proc = run_gojob("demo", "--quiet", "--workers", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "-> Processing" not in proc.stdout
    assert "demo succeeded" in proc.stdout


def test_bad_arguments_exit_non_zero_with_a_message(tmp_path: Path) -> None:
    proc = run_gojob("demo", "--workers", "0", cwd=tmp_path)
    assert proc.returncode != 0
    assert "--workers must be at least 1" in proc.stderr
    unknown = run_gojob("frobnicate")
    assert unknown.returncode != 0
    assert "invalid choice" in unknown.stderr


def test_version() -> None:
    proc = run_gojob("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith("gojob ")


def test_db_upgrade_then_check_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    before = run_gojob("db", "check", "--url", url)
    assert before.returncode != 0
    upgraded = run_gojob("db", "upgrade", "--url", url)
    assert upgraded.returncode == 0, upgraded.stderr
    after = run_gojob("db", "check", "--url", url)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "at head" in after.stdout
    current = run_gojob("db", "current", "--url", url)
    assert current.returncode == 0
    assert current.stdout.strip() not in ("", "(empty)")


def test_db_with_a_bad_url_fails_with_a_message() -> None:
    proc = run_gojob("db", "upgrade", "--url", "nosuchdb://x")
    assert proc.returncode != 0
    assert proc.stderr.strip()
    assert "Traceback" not in proc.stderr
