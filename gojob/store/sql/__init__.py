"""SQL stores: the schema (SQLAlchemy Core, the Alembic target), migrations and the
SQLite store.

``gojob.store.sql.migrate`` (Alembic) is imported only when needed: opening a store
or running a migration.
"""

from __future__ import annotations

from .errors import SchemaNotAtHead as SchemaNotAtHead
from .schema import DEFAULT_PREFIX as DEFAULT_PREFIX
from .schema import make_metadata as make_metadata
from .sqlite import SqliteStore as SqliteStore

__all__ = ["DEFAULT_PREFIX", "SchemaNotAtHead", "SqliteStore", "make_metadata"]
