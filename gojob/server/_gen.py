"""Regenerate ``gojob/_generated`` from the protos in ``proto/``.

Run ``python -m gojob.server._gen`` from the repository root after editing a proto,
and commit the result; ``tests/server/test_proto_fresh.py`` fails when the committed
files are stale.

Pinned generators (the output depends on them; bump them here and in pyproject.toml's
``dev`` extra together, then regenerate):

* grpcio-tools 1.85.1 (bundles protoc; writes ``*_pb2.py`` for protobuf gencode
  7.35.1, so the runtime needs ``protobuf>=7.35.1``, ``*_pb2.pyi``, and with
  :func:`generate_grpcio` grpcio's ``*_pb2_grpc.py`` stubs);
* grpclib 0.4.9 (its ``protoc-gen-grpclib_python`` plugin writes ``*_grpc.py``).

protoc names the modules after the protos' paths (``job/v1/service_pb2.py``, imported
as ``job.v1.service_pb2``; ``gojob/v1/gojob_pb2.py``, which would even shadow the
``gojob`` package). They are moved flat into one package and those imports are
rewritten to relative ones, so the descriptors keep their file names
(``job/v1/service.proto`` is go-job's) while the code lives inside the package.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

__all__ = [
    "FILES",
    "GENERATED",
    "GRPCIO_FILES",
    "GRPCIO_TOOLS_VERSION",
    "GRPCLIB_VERSION",
    "PROTOS",
    "generate",
    "generate_grpcio",
    "main",
]

GRPCIO_TOOLS_VERSION = "1.85.1"
GRPCLIB_VERSION = "0.4.9"

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "proto"
PROTOS = ("job/v1/service.proto", "gojob/v1/gojob.proto")
GENERATED = ROOT / "gojob" / "_generated"
FILES = (
    "service_pb2.py",
    "service_pb2.pyi",
    "service_grpc.py",
    "gojob_pb2.py",
    "gojob_pb2.pyi",
    "gojob_grpc.py",
)
"""What :func:`generate` writes (besides ``__init__.py``): the committed modules."""
GRPCIO_FILES = ("service_pb2.py", "service_pb2_grpc.py", "gojob_pb2.py", "gojob_pb2_grpc.py")
"""What :func:`generate_grpcio` writes (besides ``__init__.py``)."""

_INIT = '"""Code generated from proto/ by gojob.server._gen: do not edit."""\n'

# `import job.v1.service_pb2` / `from job.v1 import service_pb2 as alias` and their uses.
_MODULES = {"job.v1.service_pb2": "service_pb2", "gojob.v1.gojob_pb2": "gojob_pb2"}


def _relative_imports(text: str) -> str:
    for dotted, name in _MODULES.items():
        package = dotted.rsplit(".", 1)[0]
        text = re.sub(
            rf"^import {re.escape(dotted)}$", f"from . import {name}", text, flags=re.MULTILINE
        )
        text = re.sub(
            rf"^from {re.escape(package)} import {name}\b",
            f"from . import {name}",
            text,
            flags=re.MULTILINE,
        )
        text = text.replace(f"{dotted}.", f"{name}.")
    return text


def _protoc(out: Path, flags: list[str]) -> None:
    bin_dir = Path(sys.executable).parent
    plugin = bin_dir / "protoc-gen-grpclib_python"
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}"]
    if plugin.exists() and any(flag.startswith("--grpclib") for flag in flags):
        cmd.append(f"--plugin=protoc-gen-grpclib_python={plugin}")
    cmd += [flag.format(out=out) for flag in flags]
    cmd += list(PROTOS)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)


def _collect(tmp: Path, out_dir: Path, names: tuple[str, ...]) -> list[Path]:
    written = []
    for name in names:
        stem = name.split("_", 1)[0]  # service_*, gojob_*
        proto = next(p for p in PROTOS if Path(p).stem == stem)
        text = (tmp / Path(proto).parent / name).read_text(encoding="utf-8")
        target = out_dir / name
        target.write_text(_relative_imports(text), encoding="utf-8")
        written.append(target)
    init = out_dir / "__init__.py"
    init.write_text(_INIT, encoding="utf-8")
    written.append(init)
    return written


def generate(out_dir: Path) -> list[Path]:
    """Generate the committed modules (protobuf + grpclib) into ``out_dir`` (created if
    needed); returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        _protoc(Path(tmp), ["--python_out={out}", "--pyi_out={out}", "--grpclib_python_out={out}"])
        return _collect(Path(tmp), out_dir, FILES)


def generate_grpcio(out_dir: Path) -> list[Path]:
    """Generate protobuf modules and grpcio's stubs (Google's gRPC client and server
    classes) into the package directory ``out_dir``: what an independent grpcio client
    uses. Not committed: the tests generate them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        _protoc(Path(tmp), ["--python_out={out}", "--grpc_python_out={out}"])
        return _collect(Path(tmp), out_dir, GRPCIO_FILES)


def main() -> None:
    for path in generate(GENERATED):
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
