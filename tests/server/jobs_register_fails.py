"""A job module whose ``register`` raises: ``gojob server`` must say so."""

from __future__ import annotations

import gojob


def register(manager: gojob.Manager) -> None:
    raise LookupError("no configuration for the reports")
