"""One grpcio client process of ``benchmarks/server.py``: concurrent unary ScheduleJob calls.

``python -m benchmarks._grpc_client STUBS_DIR CONCURRENCY`` imports grpcio stubs from
``STUBS_DIR`` (a package ``bench_grpcio_stubs`` made by ``generate_grpcio``), then
serves commands read from stdin, one per line, until stdin closes:

* ``run PORT KIND CALLS``: connect to ``127.0.0.1:PORT``, warm up (a few calls), print
  ``ready``, wait for a ``go`` line, then make ``CALLS`` ScheduleJob calls of ``KIND``
  (no arguments) with ``CONCURRENCY`` in flight (grpc.aio, one channel), and print one
  JSON line ``{"calls": n, "errors": n, "seconds": s}``.

Google's implementation (grpcio), not grpclib: the client is not what is measured, and
grpcio's C core costs the client process little CPU.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import time
from typing import Any

WARMUP_CALLS = 20
PACKAGE = "bench_grpcio_stubs"


async def _run(
    grpc: Any, stubs: Any, pb: Any, port: int, kind: str, calls: int, width: int
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = stubs.JobServiceStub(channel)
        request = pb.ScheduleJobRequest(kind=kind, arguments=[])
        for _ in range(WARMUP_CALLS):
            await stub.ScheduleJob(request, timeout=30)
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        if line.strip() != "go":
            raise SystemExit(f"expected 'go', got {line!r}")
        left = calls
        errors = 0

        async def caller() -> None:
            nonlocal left, errors
            while left > 0:
                left -= 1
                try:
                    await stub.ScheduleJob(request, timeout=30)
                except grpc.aio.AioRpcError:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(width)))
        seconds = time.perf_counter() - started
    print(json.dumps({"calls": calls, "errors": errors, "seconds": seconds}), flush=True)


def main() -> None:
    stubs_dir, width = sys.argv[1], int(sys.argv[2])
    sys.path.insert(0, stubs_dir)
    grpc = importlib.import_module("grpc")  # untyped (no stubs installed)
    importlib.import_module("grpc.aio")
    pb = importlib.import_module(f"{PACKAGE}.service_pb2")
    stubs = importlib.import_module(f"{PACKAGE}.service_pb2_grpc")
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] != "run" or len(words) != 4:
            raise SystemExit(f"unknown command {line!r}")
        port, kind, calls = int(words[1]), words[2], int(words[3])
        asyncio.run(_run(grpc, stubs, pb, port, kind, calls, width))


if __name__ == "__main__":
    main()
