"""An etcd server process of the tests' own: free loopback ports, its own data directory.

Used for the session's private etcd (when ``GOJOB_ETCD_URL`` is unset) and by the tests
that stop and restart a member.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

__all__ = ["EtcdServer", "etcd_binary", "free_port"]


def etcd_binary() -> str | None:
    return shutil.which("etcd")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EtcdServer:
    """One single-member etcd cluster on ``127.0.0.1``. Start, stop (SIGTERM) and start
    again on the same ports and data directory; :meth:`cleanup` stops it and removes its
    directory."""

    def __init__(self, binary: str | None = None) -> None:
        found = binary or etcd_binary()
        if found is None:
            raise FileNotFoundError("no etcd binary on PATH")
        self.binary = found
        self.dir = tempfile.mkdtemp(prefix="gojob-etcd-")
        self.client_port = free_port()
        self.peer_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"etcd://127.0.0.1:{self.client_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self, ready_within: float = 20.0) -> None:
        """Start the member (a restart reuses ports and data) and wait until it serves."""
        assert self.process is None or self.process.poll() is not None, "already running"
        peer = f"http://127.0.0.1:{self.peer_port}"
        client = self.http_url
        with open(os.path.join(self.dir, "etcd.log"), "ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--name=gojob-test",
                    f"--data-dir={os.path.join(self.dir, 'data')}",
                    f"--listen-client-urls={client}",
                    f"--advertise-client-urls={client}",
                    f"--listen-peer-urls={peer}",
                    f"--initial-advertise-peer-urls={peer}",
                    f"--initial-cluster=gojob-test={peer}",
                    "--quota-backend-bytes=1073741824",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + ready_within
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"etcd exited with {self.process.returncode}: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{client}/health", timeout=1) as answer:
                    if b"true" in answer.read():
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"etcd did not become ready: {self.log_tail()}")
            # Readiness of another process has no event to wait on: poll its health.
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the member (SIGTERM: a clean shutdown) and wait for it."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, size: int = 2000) -> str:
        try:
            with open(os.path.join(self.dir, "etcd.log"), "rb") as log:
                return log.read()[-size:].decode(errors="replace")
        except OSError:
            return ""
