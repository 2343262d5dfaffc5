"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from gojob.store.sql.migrate import migration_prefix

${imports if imports else ""}
revision: str = ${repr(up_revision)}
down_revision: str | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


# Autogenerate writes table and index names of the prefix it ran with: write them as
# f"{p}..." so that this revision serves every prefix.


def upgrade() -> None:
    p = migration_prefix()
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    p = migration_prefix()
    ${downgrades if downgrades else "pass"}
