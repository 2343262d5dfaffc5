"""The committed generated code matches what the pinned generators make of the proto."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from gojob.server import _gen

if importlib.util.find_spec("grpc_tools") is None and not os.environ.get("GOJOB_REQUIRE_SERVICES"):
    pytest.skip("grpcio-tools is not installed (the dev extra)", allow_module_level=True)


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    written = _gen.generate(tmp_path)
    names = sorted(path.name for path in written)
    assert names == sorted([*_gen.FILES, "__init__.py"])
    stale = [
        name
        for name in names
        if (tmp_path / name).read_bytes() != (_gen.GENERATED / name).read_bytes()
    ]
    assert not stale, (
        f"gojob/_generated is stale ({', '.join(stale)}): run `python -m gojob.server._gen`"
    )


def test_pinned_generator_versions() -> None:
    from importlib.metadata import version

    assert version("grpcio-tools") == _gen.GRPCIO_TOOLS_VERSION
    assert version("grpclib") == _gen.GRPCLIB_VERSION
