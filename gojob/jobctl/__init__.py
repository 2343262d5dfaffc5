"""jobctl: the command-line client of a gojob server (gRPC, ``gojob.v1.GojobService``).

Modules, one job each: ``_args`` (the argparse tree and connection settings),
``_values`` (option value parsers), ``_client`` (the grpclib channel, token, deadline and
error translation), ``_output`` and ``_render`` (JSON and text), ``_cmd_*`` (the
commands), ``_completion`` (shell scripts), ``main`` (the entry point and exit codes).
"""

from __future__ import annotations

from .main import main as main

__all__ = ["main"]
