"""Partial and BRIN indexes: fewer index entries per claim and acknowledgement.

A claim (Scheduled -> Processing) and an acknowledgement (-> Completed) each change
``state``, an indexed column, so PostgreSQL cannot make them HOT updates: each adds
an entry to every index whose predicate the new row version meets. Indexes that only
some states (the claim order: Scheduled; the reaper: Processing) or some instances
(those of a schedule, with a dedupe key, finished) need are partial, so that each of
a job's two hot writes touches five indexes instead of eight. The reaper gets an
index of its own on the leases of Processing instances. On PostgreSQL, the time
indexes of history and logs (used by retention only; records arrive in time order)
become BRIN indexes, which cost next to nothing per inserted record.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gojob.store.sql.migrate import migration_prefix

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the predicates at this revision.
_SCHEDULED = sa.text("state = 'Scheduled'")
_PROCESSING = sa.text("state = 'Processing'")
_LIVE = sa.text("state IN ('Created', 'Scheduled', 'Processing')")
_LIVE_KEY = sa.text("dedupe_key IS NOT NULL AND state IN ('Created', 'Scheduled', 'Processing')")


def _index(
    name: str, table: str, columns: list[str], where: sa.TextClause, unique: bool = False
) -> None:
    op.create_index(name, table, columns, unique=unique, sqlite_where=where, postgresql_where=where)


def upgrade() -> None:
    p = migration_prefix()
    t = f"{p}instances"
    for name in ("claim", "schedule", "finished"):
        op.drop_index(f"ix_{p}instances_{name}", table_name=t)
    op.drop_index(f"ux_{p}instances_live_dedupe", table_name=t)
    _index(f"ix_{p}instances_claim", t, ["priority", "scheduled_us", "seq"], _SCHEDULED)
    _index(f"ix_{p}instances_lease", t, ["lease_us"], _PROCESSING)
    _index(
        f"ix_{p}instances_schedule",
        t,
        ["schedule_id", "fire_us"],
        sa.text("schedule_id IS NOT NULL"),
    )
    _index(f"ix_{p}instances_finished", t, ["finished_us"], sa.text("finished_us IS NOT NULL"))
    _index(f"ux_{p}instances_live_dedupe", t, ["dedupe_key"], _LIVE_KEY, unique=True)
    _time_indexes(p, using="brin")


def _time_indexes(p: str, using: str) -> None:
    for table in ("history", "logs"):
        op.drop_index(f"ix_{p}{table}_ts", table_name=f"{p}{table}")
        op.create_index(f"ix_{p}{table}_ts", f"{p}{table}", ["ts_us"], postgresql_using=using)


def downgrade() -> None:
    p = migration_prefix()
    t = f"{p}instances"
    for name in ("claim", "lease", "schedule", "finished"):
        op.drop_index(f"ix_{p}instances_{name}", table_name=t)
    op.drop_index(f"ux_{p}instances_live_dedupe", table_name=t)
    op.create_index(f"ix_{p}instances_claim", t, ["state", "priority", "scheduled_us", "seq"])
    op.create_index(f"ix_{p}instances_schedule", t, ["schedule_id", "fire_us"])
    op.create_index(f"ix_{p}instances_finished", t, ["finished_us"])
    _index(f"ux_{p}instances_live_dedupe", t, ["dedupe_key"], _LIVE, unique=True)
    _time_indexes(p, using="btree")
