"""History rows that hold two records: Created and Scheduled of an add in one row.

``preceded_by`` names the state of a record that came just before the row's own, at
the same time and attempt, with no details. Readers expand such a row into its two
records; rows written before this revision have none and read as before. The
downgrade writes every pair back as two rows (the first record keeps the row's seq,
the second gets a new, later one, so their order holds).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gojob.store.sql.migrate import migration_prefix

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    p = migration_prefix()
    op.add_column(f"{p}history", sa.Column("preceded_by", sa.String(16)))


def downgrade() -> None:
    p = migration_prefix()
    t = f"{p}history"
    # Second records first (new rows, later seqs), then the paired rows become the first.
    op.execute(
        f"INSERT INTO {t} (uuid, kind, state, ts_us, attempt, details) "
        f"SELECT uuid, kind, state, ts_us, attempt, details FROM {t} "
        "WHERE preceded_by IS NOT NULL ORDER BY seq"
    )
    op.execute(
        f"UPDATE {t} SET state = preceded_by, details = '{{}}' WHERE preceded_by IS NOT NULL"
    )
    # Plain DROP COLUMN (SQLite has it since 3.35): a batch copy of the table would lose
    # its AUTOINCREMENT.
    op.drop_column(t, "preceded_by")
