"""Regenerate ``gojob/_generated`` from ``proto/job/v1/service.proto``.

Run ``python -m gojob.server._gen`` from the repository root after editing the proto,
and commit the result; ``tests/server/test_proto_fresh.py`` fails when the committed
files are stale.

Pinned generators (the output depends on them; bump them here and in pyproject.toml's
``dev`` extra together, then regenerate):

* grpcio-tools 1.85.1 (bundles protoc; writes ``service_pb2.py`` for protobuf gencode
  7.35.1, so the runtime needs ``protobuf>=7.35.1``, and ``service_pb2.pyi``);
* grpclib 0.4.9 (its ``protoc-gen-grpclib_python`` plugin writes ``service_grpc.py``).

protoc names the modules after the proto's path (``job/v1/service_pb2.py``, imported
as ``job.v1.service_pb2``); they are moved flat into ``gojob/_generated`` and that one
import is rewritten to a relative one, so the descriptor keeps go-job's file name
``job/v1/service.proto`` while the code lives inside the gojob package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = ["GENERATED", "GRPCIO_TOOLS_VERSION", "GRPCLIB_VERSION", "PROTO", "generate", "main"]

GRPCIO_TOOLS_VERSION = "1.85.1"
GRPCLIB_VERSION = "0.4.9"

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "proto"
PROTO = "job/v1/service.proto"
GENERATED = ROOT / "gojob" / "_generated"
FILES = ("service_pb2.py", "service_pb2.pyi", "service_grpc.py")

_INIT = '"""Code generated from proto/job/v1/service.proto by gojob.server._gen: do not edit."""\n'


def generate(out_dir: Path) -> list[Path]:
    """Generate the modules into ``out_dir`` (created if needed); returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    plugin = bin_dir / "protoc-gen-grpclib_python"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpclib_python_out={tmp}",
            PROTO,
        ]
        if plugin.exists():
            cmd.insert(3, f"--plugin=protoc-gen-grpclib_python={plugin}")
        env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        subprocess.run(cmd, check=True, cwd=ROOT, env=env)
        written = []
        src_dir = Path(tmp) / Path(PROTO).parent
        for name in FILES:
            text = (src_dir / name).read_text(encoding="utf-8")
            if name == "service_grpc.py":
                text = text.replace("import job.v1.service_pb2\n", "from . import service_pb2\n")
                text = text.replace("job.v1.service_pb2.", "service_pb2.")
            target = out_dir / name
            target.write_text(text, encoding="utf-8")
            written.append(target)
    init = out_dir / "__init__.py"
    init.write_text(_INIT, encoding="utf-8")
    written.append(init)
    return written


def main() -> None:
    for path in generate(GENERATED):
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
