"""Initial schema: instances, history, logs, schedules, nodes.

Revision ID: 0001
Revises:
Create Date: 2025-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gojob.store.sql.migrate import migration_prefix

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of what the schema was at this revision (never import them from
# gojob.store.sql.schema, which moves on).
_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_LIVE = sa.text("state IN ('Created', 'Scheduled', 'Processing')")


def upgrade() -> None:
    p = migration_prefix()
    op.create_table(
        f"{p}instances",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("kwargs", sa.Text(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("scheduled_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("rescues", sa.Integer(), nullable=False),
        sa.Column("dedupe_key", sa.String(512)),
        sa.Column("schedule_id", sa.String(255)),
        sa.Column("fire_us", sa.BigInteger()),
        sa.Column("result", sa.Text()),
        sa.Column("error_message", sa.Text()),
        sa.Column("error_type", sa.String(255)),
        sa.Column("traceback", sa.Text()),
        sa.Column("node_id", sa.String(255)),
        sa.Column("worker", sa.String(255)),
        sa.Column("claim_token", sa.String(128)),
        sa.Column("lease_us", sa.BigInteger()),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("processed_us", sa.BigInteger()),
        sa.Column("completed_us", sa.BigInteger()),
        sa.Column("terminated_us", sa.BigInteger()),
        sa.Column("canceled_us", sa.BigInteger()),
        sa.Column("timed_out_us", sa.BigInteger()),
        sa.Column("finished_us", sa.BigInteger()),
        sa.PrimaryKeyConstraint("seq", name=f"pk_{p}instances"),
    )
    instances = f"{p}instances"
    op.create_index(f"ux_{p}instances_uuid", instances, ["uuid"], unique=True)
    op.create_index(
        f"ix_{p}instances_claim", instances, ["state", "priority", "scheduled_us", "seq"]
    )
    op.create_index(f"ix_{p}instances_kind", instances, ["kind", "state", "scheduled_us"])
    op.create_index(f"ix_{p}instances_created", instances, ["created_us"])
    op.create_index(f"ix_{p}instances_schedule", instances, ["schedule_id", "fire_us"])
    op.create_index(f"ix_{p}instances_finished", instances, ["finished_us"])
    op.create_index(
        f"ux_{p}instances_live_dedupe",
        instances,
        ["dedupe_key"],
        unique=True,
        sqlite_where=_LIVE,
        postgresql_where=_LIVE,
    )

    op.create_table(
        f"{p}history",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(255), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=f"pk_{p}history"),
        sqlite_autoincrement=True,
    )
    op.create_index(f"ix_{p}history_uuid", f"{p}history", ["uuid", "ts_us"])
    op.create_index(f"ix_{p}history_ts", f"{p}history", ["ts_us"])

    op.create_table(
        f"{p}logs",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(255), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("logger", sa.String(255), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=f"pk_{p}logs"),
        sqlite_autoincrement=True,
    )
    op.create_index(f"ix_{p}logs_uuid", f"{p}logs", ["uuid", "ts_us"])
    op.create_index(f"ix_{p}logs_ts", f"{p}logs", ["ts_us"])

    op.create_table(
        f"{p}schedules",
        sa.Column("id", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(255), nullable=False),
        sa.Column("trigger", sa.Text(), nullable=False),
        sa.Column("args", sa.Text(), nullable=False),
        sa.Column("kwargs", sa.Text(), nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("overlap", sa.String(16), nullable=False),
        sa.Column("misfire", sa.String(16), nullable=False),
        sa.Column("misfire_cap", sa.Integer(), nullable=False),
        sa.Column("misfire_grace", sa.Float(), nullable=False),
        sa.Column("jitter", sa.Float(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("next_fire_us", sa.BigInteger()),
        sa.Column("last_fire_us", sa.BigInteger()),
        sa.Column("last_instance", sa.String(36)),
        sa.Column("fired_count", sa.Integer(), nullable=False),
        sa.Column("skipped_count", sa.Integer(), nullable=False),
        sa.Column("recent_skips", sa.Text(), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
        sa.Column("updated_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=f"pk_{p}schedules"),
    )
    op.create_index(f"ix_{p}schedules_kind", f"{p}schedules", ["kind"])

    op.create_table(
        f"{p}nodes",
        sa.Column("node_id", sa.String(255), nullable=False),
        sa.Column("last_seen_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("node_id", name=f"pk_{p}nodes"),
    )


def downgrade() -> None:
    p = migration_prefix()
    for name in ("nodes", "schedules", "logs", "history", "instances"):
        # Indexes go with their table.
        op.drop_table(f"{p}{name}")
