"""Every SQL statement the PostgreSQL store runs, named and described in one place.

Two kinds:

* **Hand-tuned statements** for the hot paths, written here as SQL text for asyncpg
  (``$n`` parameters): the claim (one statement: pick with ``FOR UPDATE SKIP
  LOCKED``, update, Processing history, NOTIFY), batch inserts and write-backs
  through ``unnest`` of one array per column, lease extension, locked loads. Their
  column lists and array types come from the SQLAlchemy schema
  (:func:`~.schema.make_metadata`), so they follow it.
* **SQLAlchemy Core statements** for everything else: the builders of
  :class:`~.statements.Statements` (lookups, history, logs, schedules, retention),
  compiled for asyncpg by :func:`compile_pg` (fixed ones once, cached).

Time is the database's: :data:`NOW_US` is ``now()`` (the transaction's start) in
epoch microseconds, the unit of every ``*_us`` column.

Tables are named without a schema: the store's connections set ``search_path``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Select, String
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.sql import ClauseElement

from ...state import State
from .rows import INSTANCE_COLUMNS, MUTABLE_COLUMNS
from .schema import ACTIVE_STATE_VALUES, Tables
from .statements import Statements

__all__ = [
    "HISTORY_INSERT_COLUMNS",
    "INSTANCE_INSERT_COLUMNS",
    "LOG_INSERT_COLUMNS",
    "NOTIFY_CHUNK_LIMIT",
    "NOW_US",
    "PgStatements",
    "compile_pg",
]

NOW_US = "(SELECT (extract(epoch from now()) * 1000000)::bigint)"
"""The database's clock (the current transaction's start) in epoch microseconds.

A scalar subquery, so PostgreSQL computes it once per statement (an InitPlan): the
expression alone is evaluated per row, in numeric arithmetic, several times per row
of a claim or completion."""

NOTIFY_CHUNK_LIMIT = 7900
"""Most bytes in one NOTIFY payload (PostgreSQL's limit is 8000)."""

GROUP_SIZE = 100
"""Most uuids in one group item of a payload built by SQL (:func:`_notify_ctes`): 100
uuids of 36 characters take about 4,000 bytes, leaving room for a kind and a node id."""

MAX_NOTIFY_CHUNKS = 16
"""A transaction whose events need more payloads than this sends one ``resync`` marker."""

INSTANCE_INSERT_COLUMNS = (
    "uuid",
    "kind",
    "priority",
    "policy",
    "args",
    "kwargs",
    "created_us",
    "dedupe_key",
    "schedule_id",
    "fire_us",
    *MUTABLE_COLUMNS,
)
"""The columns of a new instance row (all but ``seq``), in the order of
:meth:`PgStatements.insert_instances`' arrays."""

_RECORD_COLUMNS = ("uuid", "kind", "state", "ts_us", "attempt", "details")
"""The columns of a history row holding one record."""
HISTORY_INSERT_COLUMNS = (*_RECORD_COLUMNS, "preceded_by")
"""The columns of a new history row (all but ``seq``), in array order."""
LOG_INSERT_COLUMNS = ("uuid", "kind", "ts_us", "level", "message", "attempt", "logger")

_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
_DDL_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def compile_pg(statement: ClauseElement) -> tuple[str, list[str], dict[str, Any]]:
    """A SQLAlchemy statement as asyncpg SQL: the text, the names of its ``$n``
    parameters in order, and the values bound in the statement itself."""
    compiled = statement.compile(dialect=_DIALECT, compile_kwargs={"render_postcompile": True})
    names = list(getattr(compiled, "positiontup", None) or [])
    return compiled.string, names, dict(compiled.params)


def _array_type(column: Column[Any]) -> str:
    """The PostgreSQL array type of a column's values (``bigint[]``...): ``text[]`` for
    the ``varchar`` columns (see :data:`TEXT_ARRAY`)."""
    if isinstance(column.type, String):
        return TEXT_ARRAY
    return f"{column.type.compile(dialect=_DDL_DIALECT).lower()}[]"


TEXT_ARRAY = "text[]"
"""The type of every array of strings the statements take: asyncpg has a built-in codec
for ``text[]`` but must look ``varchar[]`` up in the catalog, once per connection (a
recursive query of tens of milliseconds, on the first claim or completion of each).
``varchar`` is binary-compatible with ``text``, so ``uuid = ANY($1::text[])`` still
uses the uuid index."""


def _state(state: State) -> str:
    return f"'{state.value}'"


_LIVE = "state IN ({})".format(", ".join(f"'{v}'" for v in ACTIVE_STATE_VALUES))


class PgStatements:
    """The statements of one table prefix; attribute docstrings describe each."""

    def __init__(self, tables: Tables, *, synchronous_claims: bool = False) -> None:
        self.tables = tables
        self.synchronous_claims = synchronous_claims
        """Whether a claim's commit waits for its WAL flush (see :meth:`_claim`)."""
        self.core = Statements(tables)
        """The SQLAlchemy Core statements and query builders (compiled by :meth:`sql`)."""
        self._cache: dict[int, tuple[str, list[str], dict[str, Any]]] = {}
        i = tables.instances
        lg = tables.logs
        ti = i.name
        cols = ", ".join(INSTANCE_COLUMNS)

        self.now = f"SELECT {NOW_US}"
        """The database's clock, in epoch microseconds."""

        # -- instances: reads -------------------------------------------------------------
        self.by_uuid = f"SELECT {cols} FROM {ti} WHERE uuid = $1"
        """The instance ``$1``."""

        self.lock_by_uuids = (
            f"SELECT {cols}, {NOW_US} FROM {ti} WHERE uuid = ANY($1::text[]) "
            "ORDER BY uuid FOR UPDATE"
        )
        """The instances whose uuid is in ``$1``, locked (in uuid order, so that two
        transactions locking overlapping sets cannot deadlock), each row followed by the
        database's now."""

        self.live_by_keys = (
            f"SELECT {cols} FROM {ti} WHERE dedupe_key = ANY($1::text[]) AND {_LIVE}"
        )
        """The non-final instances holding one of the dedupe keys ``$1`` (at most one per
        key: the live dedupe index)."""

        self.other_live_holder = (
            f"SELECT uuid FROM {ti} WHERE dedupe_key = $1 AND {_LIVE} AND uuid <> $2"
        )
        """A non-final instance other than ``$2`` holding dedupe key ``$1``."""

        self.lock_expired = (
            f"SELECT {cols} FROM {ti} WHERE state = {_state(State.PROCESSING)} "
            f"AND lease_us < $1 ORDER BY seq FOR UPDATE SKIP LOCKED"
        )
        """Processing instances whose lease ran out before ``$1``, locked; rows another
        transaction holds (a finish in flight) are left for the next round."""

        self.counts = f"SELECT kind, state, count(*) FROM {ti} GROUP BY kind, state"
        """Number of instances per (kind, state)."""

        self.next_due_any = (
            f"SELECT min(scheduled_us) FROM {ti} WHERE state = {_state(State.SCHEDULED)}"
        )
        """The earliest due time of the Scheduled instances."""
        self.next_due_kinds = self.next_due_any + " AND kind = ANY($1::text[])"
        """The earliest due time of the Scheduled instances of the kinds ``$1``."""

        # -- instances: writes --------------------------------------------------------------
        self.write, self.write_arity = _write_statement(tables)
        """Every write of a transition, NOTIFY included, in one statement: insert new
        instances (one array per :data:`INSTANCE_INSERT_COLUMNS`, in array order, so their
        ``seq`` is insertion order), write back changed ones (their uuids, then one array
        per :data:`MUTABLE_COLUMNS`), append history records (one array per
        :data:`HISTORY_INSERT_COLUMNS`), then NOTIFY each payload of an array on a channel
        (the last two parameters). Empty arrays write nothing."""

        self.add = _add_statement(tables)
        """Insert new Scheduled instances with their history (Created, then Scheduled, in
        one row) and NOTIFY: ``$1`` the uuids (array order is ``seq`` order), then for each other
        column of :data:`INSTANCE_INSERT_COLUMNS` a value shared by every row and an
        array of one value per row (exactly one of them given: the other NULL), then the
        details of the Scheduled records likewise, the history time (µs), the payloads
        and the channel."""

        self.extend_leases = (
            f"WITH mine AS (SELECT seq FROM {ti} WHERE uuid = ANY($1::text[]) "
            f"AND claim_token = ANY($2::text[]) AND state = {_state(State.PROCESSING)} "
            f"AND lease_us >= {NOW_US} ORDER BY uuid FOR UPDATE) "
            f"UPDATE {ti} AS i SET lease_us = {NOW_US} + $3 FROM mine WHERE i.seq = mine.seq "
            "RETURNING i.claim_token, i.cancel_requested"
        )
        """Extend to now + ``$3`` µs every unexpired lease held by one of the tokens
        ``$2`` (whose instances are ``$1``); returns the tokens extended and whether their
        instance has a cancel request."""

        self.claim_any = self._claim(kinds=False)
        """The claim, of any kind (see :meth:`_claim`)."""
        self.claim_kinds = self._claim(kinds=True)
        """The claim, of the kinds ``$7`` (see :meth:`_claim`)."""
        self.complete = self._complete(returning=True)
        """Complete attempts, returning their instances (see :meth:`_complete`)."""
        self.complete_quiet = self._complete(returning=False)
        """Complete attempts, returning their uuids only (see :meth:`_complete`)."""

        # -- history, logs, notifications -----------------------------------------------------
        self.insert_logs = (
            "WITH l AS ("
            + _insert_unnest(lg, LOG_INSERT_COLUMNS)
            + f") SELECT count(pg_notify(${len(LOG_INSERT_COLUMNS) + 2}, p)) "
            f"FROM unnest(${len(LOG_INSERT_COLUMNS) + 1}::text[]) AS p"
        )
        """Append log records (one array per :data:`LOG_INSERT_COLUMNS`) and NOTIFY the
        payloads ``$8`` on channel ``$9``, in one statement."""

        self.locked_schedule: Select[Any] = self.core.schedule_by_id.with_for_update()
        """The schedule ``p_id``, locked (SQLAlchemy Core)."""

        self.notify = "SELECT count(pg_notify($2, p)) FROM unnest($1::text[]) AS p"
        """NOTIFY each payload of ``$1`` on channel ``$2`` (delivered at commit)."""

    def _claim(self, *, kinds: bool) -> str:
        """Claim in one statement (an implicit transaction of its own).

        Picks up to ``$1`` Scheduled instances due now without a cancel request (of the
        kinds ``$7``), by priority, due time and insertion order, skipping rows other
        claims hold (``FOR UPDATE SKIP LOCKED``); moves them to Processing for node
        ``$2`` under a lease of ``$4`` µs with a fresh claim token ``<uuid>/$3``;
        appends their Processing history records (details ``$5``); and NOTIFYs their
        state events on channel ``$6`` (origin ``$8`` as JSON text; see
        :func:`_notify_ctes`). Returns the
        claimed rows (:data:`INSTANCE_COLUMNS`, in claim order) and, in a last column,
        the number of payloads sent.

        Unless :attr:`synchronous_claims`, the claim's transaction commits without
        waiting for its WAL to reach the disk (``synchronous_commit`` off for it alone):
        the claim is the critical path of a busy node (its workers wait for it), and
        the flush was a seventh of its time. What that risks: after a crash of the
        database server (not a restart, which flushes), claims of its last fraction of a
        second may be forgotten; their instances are Scheduled again, their attempts'
        finishes are refused as lease losses, and they run again, as after a lost
        lease. Any later synchronous commit (a finish, an add) flushes earlier claims.
        """
        t = self.tables
        ti, th = t.instances.name, t.history.name
        kind_filter = " AND kind = ANY($7::text[])" if kinds else ""
        icols = ", ".join(f"i.{name}" for name in INSTANCE_COLUMNS)
        cols = ", ".join(INSTANCE_COLUMNS)
        origin = "$8" if kinds else "$7"
        return (
            f"WITH due AS (SELECT seq FROM {ti} WHERE state = {_state(State.SCHEDULED)} "
            f"AND scheduled_us <= {NOW_US} AND NOT cancel_requested{kind_filter} "
            "ORDER BY priority, scheduled_us, seq LIMIT $1 FOR UPDATE SKIP LOCKED), "
            f"claimed AS (UPDATE {ti} AS i SET state = {_state(State.PROCESSING)}, "
            "node_id = $2, claim_token = i.uuid || '/' || $3, "
            f"lease_us = {NOW_US} + $4, attempts = i.attempts + 1, "
            f"processed_us = {NOW_US}, updated_us = {NOW_US} "
            # By primary key from the array of picked seqs: a join with ``due`` may be
            # planned as a scan of the whole table (a cost in its size, per claim).
            f"WHERE i.seq = ANY(ARRAY(SELECT seq FROM due)) RETURNING {icols}, i.priority), "
            f"h AS (INSERT INTO {th} ({', '.join(_RECORD_COLUMNS)}) "
            f"SELECT uuid, kind, {_state(State.PROCESSING)}, {NOW_US}, attempts, $5 "
            "FROM claimed ORDER BY seq), "
            + _notify_ctes("claimed", "seq", State.PROCESSING, origin, "$6")
            + f" SELECT {cols}, (SELECT n FROM sent{'' if self.synchronous_claims else _ASYNC})"
            " FROM claimed ORDER BY claimed.priority, claimed.scheduled_us, claimed.seq"
        )

    def _complete(self, *, returning: bool) -> str:
        """Complete attempts in one statement (an implicit transaction of its own): the
        batch acknowledgement of the common case, a successful attempt.

        For each ``($1 uuid, $2 claim token, $3 result JSON, $4 history details)``,
        in array order: if the token still holds an unexpired lease, the instance
        becomes Completed (result set, errors cleared, lease dropped), with its history
        record (details ``$4`` with the node put first); the state events go out by
        NOTIFY on ``$5`` (origin ``$6``). Items whose token does not hold the lease are
        left alone (the caller judges them the general way). Returns, per completed
        item, the instance row (:data:`INSTANCE_COLUMNS`, or with ``returning`` false
        ``uuid, kind, node_id``), then its position in the arrays (1-based, the order of
        the rows) and the number of payloads sent.
        """
        t = self.tables
        ti, th = t.instances.name, t.history.name
        completed = _state(State.COMPLETED)
        back = INSTANCE_COLUMNS if returning else ("uuid", "kind", "node_id")
        returned = ", ".join(f"i.{c}" for c in dict.fromkeys((*back, "attempts")))
        return (
            "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], "
            "$4::text[]) WITH ORDINALITY AS v(uuid, token, result, rest, n)), "
            # Row locks in uuid order, as every other batch takes them: no deadlock with
            # a lease extension of the same attempts.
            f"lk AS (SELECT seq FROM {ti} WHERE uuid = ANY($1::text[]) "
            "ORDER BY uuid FOR UPDATE), "
            f"done AS (UPDATE {ti} AS i SET state = {completed}, result = v.result, "
            f"completed_us = {NOW_US}, error_message = NULL, error_type = NULL, "
            f"traceback = NULL, lease_us = NULL, updated_us = {NOW_US}, "
            f"finished_us = GREATEST({NOW_US}, i.terminated_us, i.canceled_us, i.timed_out_us) "
            "FROM v, lk WHERE i.seq = lk.seq AND i.uuid = v.uuid AND i.claim_token = v.token "
            f"AND i.state = {_state(State.PROCESSING)} AND i.lease_us >= {NOW_US} "
            f"RETURNING {returned}, "
            "v.n AS n, v.rest AS rest), "
            f"h AS (INSERT INTO {th} ({', '.join(_RECORD_COLUMNS)}) "
            f"SELECT uuid, kind, {completed}, {NOW_US}, attempts, "
            """'{"node":' || coalesce(to_json(node_id)::text, 'null') || ',' """
            "|| substr(rest, 2) FROM done ORDER BY n), "
            + _notify_ctes("done", "n", State.COMPLETED, "$6", "$5")
            + f" SELECT {', '.join(back)}, n, (SELECT n FROM sent) FROM done ORDER BY done.n"
        )

    def sql(self, statement: ClauseElement) -> tuple[str, list[str], dict[str, Any]]:
        """:func:`compile_pg` of a fixed statement of :attr:`core`, compiled once."""
        key = id(statement)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = compile_pg(statement)
        return found


_ASYNC = " WHERE set_config('synchronous_commit', 'off', true) IS NOT NULL"
"""Appended to a scalar subquery that runs once: the statement's transaction commits
without waiting for the WAL flush (``set_config(..., true)``: this transaction only)."""


def _notify_ctes(source: str, order: str, state: State, origin: str, channel: str) -> str:
    """CTEs that NOTIFY the ``state`` events of the rows of ``source`` (``uuid``, ``kind``,
    ``node_id``, ordered by ``order``) on ``channel``, as group items (one per kind and
    node and :data:`GROUP_SIZE` uuids: ``["states", state, kind, node_id, [uuid...]]``)
    in payloads ``[origin, item]`` (``origin`` is a parameter holding JSON text); one
    ``resync`` marker instead when they would be more than :data:`MAX_NOTIFY_CHUNKS`
    payloads or one would pass :data:`NOTIFY_CHUNK_LIMIT` bytes (only uuids, kinds and
    node ids of hundreds of escaped characters could). The statement must select
    ``(SELECT n FROM sent)`` (the number of payloads sent), or the CTEs do not run.

    Why groups: a batch's events share their state, and mostly their kind and node, so
    the per-row work is one uuid appended to an array; building and escaping a JSON
    array per event took a sixth of the server's time of a claim."""
    return (
        f"items AS (SELECT kind, node_id, uuid, {order} AS o, (row_number() OVER "
        f"(PARTITION BY kind, node_id ORDER BY {order}) - 1) / {GROUP_SIZE} AS chunk "
        f"FROM {source}), "
        f"""payloads AS (SELECT '[' || {origin} || ',["states","{state.value}",' """
        "|| to_json(kind)::text || ',' || coalesce(to_json(node_id)::text, 'null') || ',' "
        "|| json_agg(uuid ORDER BY o)::text || ']]' AS payload "
        "FROM items GROUP BY kind, node_id, chunk), "
        f"checked AS (SELECT CASE WHEN count(*) > {MAX_NOTIFY_CHUNKS} OR "
        f"max(octet_length(payload)) > {NOTIFY_CHUNK_LIMIT} "
        f"""THEN ARRAY['[' || {origin} || ',"resync"]'] ELSE array_agg(payload) END AS ps """
        "FROM payloads), "
        f"sent AS (SELECT count(pg_notify({channel}, p)) AS n FROM checked, unnest(ps) AS p)"
    )


def _write_statement(tables: Tables) -> tuple[str, int]:
    i, h = tables.instances, tables.history
    n = 0

    def arrays(table: Any, columns: Sequence[str]) -> str:
        nonlocal n
        first = n + 1
        n += len(columns)
        return ", ".join(
            f"${k}::{_array_type(table.c[name])}" for k, name in enumerate(columns, start=first)
        )

    def names(columns: Sequence[str]) -> str:
        return ", ".join(columns)

    new_arrays = arrays(i, INSTANCE_INSERT_COLUMNS)
    changed_arrays = arrays(i, ("uuid", *MUTABLE_COLUMNS))
    history_arrays = arrays(h, HISTORY_INSERT_COLUMNS)
    payloads, channel = n + 1, n + 2
    assignments = ", ".join(f"{name} = v.{name}" for name in MUTABLE_COLUMNS)
    sql = (
        f"WITH ins AS (INSERT INTO {i.name} ({names(INSTANCE_INSERT_COLUMNS)}) "
        f"SELECT {names(INSTANCE_INSERT_COLUMNS)} FROM unnest({new_arrays}) "
        f"WITH ORDINALITY AS r({names(INSTANCE_INSERT_COLUMNS)}, n) ORDER BY n), "
        f"upd AS (UPDATE {i.name} AS i SET {assignments} FROM unnest({changed_arrays}) "
        f"AS v(uuid, {names(MUTABLE_COLUMNS)}) WHERE i.uuid = v.uuid), "
        f"hist AS (INSERT INTO {h.name} ({names(HISTORY_INSERT_COLUMNS)}) "
        f"SELECT {names(HISTORY_INSERT_COLUMNS)} FROM unnest({history_arrays}) "
        f"WITH ORDINALITY AS r({names(HISTORY_INSERT_COLUMNS)}, n) ORDER BY n) "
        f"SELECT count(pg_notify(${channel}, p)) FROM unnest(${payloads}::text[]) AS p"
    )
    return sql, channel


def _add_statement(tables: Tables) -> str:
    i, h = tables.instances, tables.history
    shared = INSTANCE_INSERT_COLUMNS[1:]
    arrays = [f"$1::{_array_type(i.c.uuid)}"]
    values = ["r.uuid"]
    k = 2
    for name in shared:
        scalar = _array_type(i.c[name])[:-2]
        arrays.append(f"${k + 1}::{scalar}[]")
        values.append(f"coalesce(r.{name}, ${k}::{scalar}) AS {name}")
        k += 2
    arrays.append(f"${k + 1}::text[]")
    values.append(f"coalesce(r.details, ${k}::text) AS details")
    now, payloads, channel = k + 2, k + 3, k + 4
    cols = ", ".join(INSTANCE_INSERT_COLUMNS)
    return (
        f"WITH v AS MATERIALIZED (SELECT {', '.join(values)}, r.n FROM unnest({', '.join(arrays)}) "
        f"WITH ORDINALITY AS r({cols}, details, n)), "
        f"ins AS (INSERT INTO {i.name} ({cols}) SELECT {cols} FROM v ORDER BY n), "
        f"hist AS (INSERT INTO {h.name} ({', '.join(HISTORY_INSERT_COLUMNS)}) "
        f"SELECT v.uuid, v.kind, {_state(State.SCHEDULED)}, ${now}::bigint, v.attempts, "
        f"v.details, {_state(State.CREATED)} FROM v ORDER BY v.n) "
        f"SELECT count(pg_notify(${channel}, p)) FROM unnest(${payloads}::text[]) AS p"
    )


def _insert_unnest(table: Any, columns: Sequence[str]) -> str:
    """``INSERT INTO table (columns) SELECT ... FROM unnest($1, $2, ...)`` in array order."""
    arrays = ", ".join(
        f"${k}::{_array_type(table.c[name])}" for k, name in enumerate(columns, start=1)
    )
    names = ", ".join(columns)
    return (
        f"INSERT INTO {table.name} ({names}) SELECT {names} FROM unnest({arrays}) "
        f"WITH ORDINALITY AS r({names}, n) ORDER BY n"
    )
