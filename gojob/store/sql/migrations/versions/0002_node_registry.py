"""The node registry: what each live node runs, until when it counts as alive.

The nodes table of 0001 was never written, so it is replaced rather than altered
(SQLite cannot add NOT NULL columns without defaults in place).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gojob.store.sql.migrate import migration_prefix

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    p = migration_prefix()
    op.drop_table(f"{p}nodes")
    op.create_table(
        f"{p}nodes",
        sa.Column("node_id", sa.String(255), nullable=False),
        sa.Column("kinds", sa.Text(), nullable=False),
        sa.Column("workers", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("started_us", sa.BigInteger()),
        sa.Column("last_seen_us", sa.BigInteger(), nullable=False),
        sa.Column("expires_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=f"pk_{p}nodes"),
    )


def downgrade() -> None:
    p = migration_prefix()
    op.drop_table(f"{p}nodes")
    op.create_table(
        f"{p}nodes",
        sa.Column("node_id", sa.String(255), nullable=False),
        sa.Column("last_seen_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=f"pk_{p}nodes"),
    )
