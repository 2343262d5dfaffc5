"""The SQL schema as SQLAlchemy Core ``MetaData``: the target of the Alembic migrations.

Dialect-neutral (SQLite now, PostgreSQL next). Every table name starts with a
prefix (default ``gojob_``) so several deployments can share one database; the
Alembic version table is prefixed too (:func:`version_table`).

Conventions
-----------
* Times are ``BIGINT`` microseconds since the Unix epoch (UTC), columns ending in
  ``_us``: comparisons in the claim and reaper queries are integer comparisons, and
  a round trip is exact.
* JSON values (arguments, results, policies, history details, triggers) are ``TEXT``
  holding plain JSON, so any client can read them.
* ``seq`` columns are insertion order: the claim's last tie-breaker and the order of
  history and log records within one timestamp.

Changing anything here requires a new Alembic revision; a test compares the result
of ``upgrade head`` with this metadata.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    false,
)

from ...state import ACTIVE, State

__all__ = [
    "ACTIVE_STATE_VALUES",
    "DEFAULT_PREFIX",
    "Tables",
    "make_metadata",
    "tables_of",
    "version_table",
]

DEFAULT_PREFIX = "gojob_"
"""Table-name prefix used when none is given."""

ACTIVE_STATE_VALUES = tuple(s.value for s in State if s in ACTIVE)
"""Stored names of the non-final states (the live dedupe index covers these)."""

# SQLite makes only an ``INTEGER PRIMARY KEY`` an alias of the rowid (cheap, and
# autoincrementing); other databases get a 64-bit key.
_SEQ = BigInteger().with_variant(Integer(), "sqlite")

_NAMING = {"pk": "pk_%(table_name)s"}


class Tables(NamedTuple):
    """The tables of one prefix."""

    instances: Table
    history: Table
    logs: Table
    schedules: Table
    nodes: Table


def version_table(prefix: str = DEFAULT_PREFIX) -> str:
    """Name of the Alembic version table of a prefix."""
    return f"{prefix}alembic_version"


def make_metadata(prefix: str = DEFAULT_PREFIX) -> MetaData:
    """Build the schema of one deployment, every table named ``<prefix><name>``."""
    _check_prefix(prefix)
    metadata = MetaData(naming_convention=_NAMING)
    p = prefix

    instances = Table(
        f"{p}instances",
        metadata,
        Column("seq", _SEQ, primary_key=True, autoincrement=True),
        Column("uuid", String(36), nullable=False),
        Column("kind", String(255), nullable=False),
        Column("state", String(16), nullable=False),
        # The policy's priority, copied out of ``policy`` for the claim's ORDER BY.
        Column("priority", Integer, nullable=False),
        Column("policy", Text, nullable=False),
        Column("args", Text, nullable=False),
        Column("kwargs", Text, nullable=False),
        Column("created_us", BigInteger, nullable=False),
        Column("scheduled_us", BigInteger, nullable=False),
        Column("updated_us", BigInteger, nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("failures", Integer, nullable=False),
        Column("rescues", Integer, nullable=False),
        Column("dedupe_key", String(512)),
        Column("schedule_id", String(255)),
        Column("fire_us", BigInteger),
        Column("result", Text),
        Column("error_message", Text),
        Column("error_type", String(255)),
        Column("traceback", Text),
        Column("node_id", String(255)),
        Column("worker", String(255)),
        Column("claim_token", String(128)),
        Column("lease_us", BigInteger),
        Column("cancel_requested", Boolean, nullable=False, server_default=false()),
        Column("processed_us", BigInteger),
        Column("completed_us", BigInteger),
        Column("terminated_us", BigInteger),
        Column("canceled_us", BigInteger),
        Column("timed_out_us", BigInteger),
        # When the instance reached its current final state (NULL while not final):
        # what retention judges.
        Column("finished_us", BigInteger),
    )
    c = instances.c
    # Named (not a UNIQUE constraint, whose SQLite index name is generated): the SQLite
    # store's statements name the indexes they must use.
    Index(f"ux_{p}instances_uuid", c.uuid, unique=True)
    # Every claim and acknowledgement changes ``state``, an indexed column, so each
    # write adds an entry to every index whose predicate the new row meets: indexes
    # that only some states or some instances need are partial, so that a job's two
    # hot writes touch five indexes each instead of eight (see migration 0003).
    #
    # The claim: WHERE state = 'Scheduled' ORDER BY priority, scheduled_us, seq.
    scheduled = c.state == State.SCHEDULED.value
    Index(
        f"ix_{p}instances_claim",
        c.priority,
        c.scheduled_us,
        c.seq,
        sqlite_where=scheduled,
        postgresql_where=scheduled,
    )
    # The reaper: WHERE state = 'Processing' AND lease_us < now.
    processing = c.state == State.PROCESSING.value
    Index(
        f"ix_{p}instances_lease",
        c.lease_us,
        sqlite_where=processing,
        postgresql_where=processing,
    )
    # Lookups and counts by kind and state, and next_due per kind.
    Index(f"ix_{p}instances_kind", c.kind, c.state, c.scheduled_us)
    Index(f"ix_{p}instances_created", c.created_us)
    scheduled_by = c.schedule_id.is_not(None)
    Index(
        f"ix_{p}instances_schedule",
        c.schedule_id,
        c.fire_us,
        sqlite_where=scheduled_by,
        postgresql_where=scheduled_by,
    )
    finished = c.finished_us.is_not(None)
    Index(
        f"ix_{p}instances_finished",
        c.finished_us,
        sqlite_where=finished,
        postgresql_where=finished,
    )
    # At most one live (non-final) instance per dedupe key: a schedule's slot key
    # makes creating the slot's instance the claim on the slot.
    live_key = and_(c.dedupe_key.is_not(None), c.state.in_(ACTIVE_STATE_VALUES))
    Index(
        f"ux_{p}instances_live_dedupe",
        c.dedupe_key,
        unique=True,
        sqlite_where=live_key,
        postgresql_where=live_key,
    )

    history = Table(
        f"{p}history",
        metadata,
        Column("seq", _SEQ, primary_key=True, autoincrement=True),
        Column("uuid", String(36), nullable=False),
        Column("kind", String(255), nullable=False),
        Column("state", String(16), nullable=False),
        Column("ts_us", BigInteger, nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("details", Text, nullable=False),
        # Set when the row holds two records: first one of this state, with no details,
        # then the row's own (same time, attempt and seq). An add writes Created and
        # Scheduled this way: one row per instance instead of two, about half of what
        # the server does per enqueued job (see migration 0004). Readers expand it
        # (:meth:`.statements.Statements.history`).
        Column("preceded_by", String(16)),
        # AUTOINCREMENT: a seq is never reused after retention deleted the newest rows.
        sqlite_autoincrement=True,
    )
    Index(f"ix_{p}history_uuid", history.c.uuid, history.c.ts_us)
    # Retention deletes by age. Records are appended in time order, so on PostgreSQL a
    # BRIN index (a summary per block range, nearly free to maintain) serves that; SQLite
    # has only B-trees.
    Index(f"ix_{p}history_ts", history.c.ts_us, postgresql_using="brin")

    logs = Table(
        f"{p}logs",
        metadata,
        Column("seq", _SEQ, primary_key=True, autoincrement=True),
        Column("uuid", String(36), nullable=False),
        Column("kind", String(255), nullable=False),
        Column("ts_us", BigInteger, nullable=False),
        Column("level", Integer, nullable=False),
        Column("message", Text, nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("logger", String(255), nullable=False),
        sqlite_autoincrement=True,
    )
    Index(f"ix_{p}logs_uuid", logs.c.uuid, logs.c.ts_us)
    Index(f"ix_{p}logs_ts", logs.c.ts_us, postgresql_using="brin")

    schedules = Table(
        f"{p}schedules",
        metadata,
        Column("id", String(255), primary_key=True),
        Column("kind", String(255), nullable=False),
        Column("trigger", Text, nullable=False),
        Column("args", Text, nullable=False),
        Column("kwargs", Text, nullable=False),
        Column("policy", Text, nullable=False),
        Column("overlap", String(16), nullable=False),
        Column("misfire", String(16), nullable=False),
        Column("misfire_cap", Integer, nullable=False),
        Column("misfire_grace", Float, nullable=False),
        Column("jitter", Float, nullable=False),
        Column("paused", Boolean, nullable=False),
        Column("next_fire_us", BigInteger),
        Column("last_fire_us", BigInteger),
        Column("last_instance", String(36)),
        Column("fired_count", Integer, nullable=False),
        Column("skipped_count", Integer, nullable=False),
        Column("recent_skips", Text, nullable=False),
        Column("created_us", BigInteger, nullable=False),
        Column("updated_us", BigInteger, nullable=False),
    )
    Index(f"ix_{p}schedules_kind", schedules.c.kind)

    Table(
        f"{p}nodes",
        metadata,
        Column("node_id", String(255), primary_key=True),
        Column("kinds", Text, nullable=False),
        Column("workers", Integer, nullable=False),
        Column("host", String(255), nullable=False),
        Column("pid", Integer, nullable=False),
        Column("version", String(64), nullable=False),
        Column("started_us", BigInteger),
        Column("last_seen_us", BigInteger, nullable=False),
        Column("expires_us", BigInteger, nullable=False),
    )
    return metadata


def tables_of(metadata: MetaData, prefix: str = DEFAULT_PREFIX) -> Tables:
    """The :class:`Tables` of a metadata built by :func:`make_metadata` with ``prefix``."""
    t = metadata.tables
    return Tables(
        t[f"{prefix}instances"],
        t[f"{prefix}history"],
        t[f"{prefix}logs"],
        t[f"{prefix}schedules"],
        t[f"{prefix}nodes"],
    )


def _check_prefix(prefix: str) -> None:
    # Table names are also spliced into index names and DDL: keep them plain.
    if prefix and (
        not prefix.replace("_", "a").isalnum() or not prefix.isascii() or prefix[0].isdigit()
    ):
        raise ValueError(
            f"table prefix must be ASCII letters, digits and underscores, not starting "
            f"with a digit: {prefix!r}"
        )
