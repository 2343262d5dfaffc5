"""Errors of the SQL stores (part of gojob's family: they derive from StoreError)."""

from __future__ import annotations

from ...errors import StoreError

__all__ = ["SchemaNotAtHead"]


class SchemaNotAtHead(StoreError):
    """The database schema is not at the revision this gojob expects; the message names
    the command that fixes it."""
