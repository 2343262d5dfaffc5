"""Alembic environment of gojob's schema (sync; see gojob.store.sql.migrate)."""

from __future__ import annotations

from gojob.store.sql.migrate import run_env

run_env()
