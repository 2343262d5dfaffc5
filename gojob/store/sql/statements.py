"""Every SQL statement the SQL stores run, named and described in one place.

Statements are SQLAlchemy Core constructs built once per table prefix
(:class:`Statements`); SQLAlchemy caches their compiled form, so executing one
costs no compilation. The query builders at the end turn a store query object
into a SELECT.

Constants in predicates that a partial index must match (the live dedupe index)
are rendered as SQL literals, not bound parameters: SQLite uses a partial index
only when the query's WHERE visibly implies the index's.

The fixed statements can also be run without SQLAlchemy's execution machinery:
:meth:`Statements.compiled` gives their SQL text for the driver, compiled once. On a
single-row transaction SQLAlchemy's per-statement overhead is about as large as
SQLite's own work, so the SQLite store runs them that way.

Lists bound to ``IN`` are spelled out as one parameter per value (``IN (:p_0, :p_1,
...)``), in variants whose length is a power of two up to :data:`MAX_LIST` (a
shorter list is padded by repeating its last value), so that a few compiled texts
serve every length. (A list in a subquery, ``json_each``, would be one parameter,
but SQLite's planner then misjudges it.)

The hot statements name the index SQLite must use (``INDEXED BY``, rendered only for
SQLite: see :class:`~.engine.HintingSQLiteDialect`): without statistics its planner
would sometimes rather scan every live instance than probe a unique index.
``tests/sql`` checks the plans.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Delete,
    Dialect,
    Insert,
    Integer,
    Select,
    Update,
    and_,
    bindparam,
    case,
    delete,
    false,
    func,
    insert,
    literal_column,
    or_,
    select,
    true,
    union_all,
    update,
)

from ...state import FINAL, State
from ..base import DEFAULT_LIMIT, HistoryQuery, InstanceQuery, LogQuery
from .rows import INSTANCE_COLUMNS, MUTABLE_COLUMNS, NODE_COLUMNS, SCHEDULE_COLUMNS, to_us
from .schema import ACTIVE_STATE_VALUES, Tables

__all__ = ["MAX_LIST", "Statements", "list_size"]

MAX_LIST = 256
"""Most values bound in one ``IN`` list (twice that many parameters in one statement
stays under SQLite's oldest limit of 999)."""

S = TypeVar("S")


def list_size(count: int) -> int:
    """The variant length serving a list of ``count`` values (1 <= count <= MAX_LIST)."""
    size = 1
    while size < count:
        size *= 2
    return size


def _lit(state: State) -> ColumnElement[Any]:
    return literal_column(f"'{state.value}'")


_SCHEDULED = _lit(State.SCHEDULED)
_PROCESSING = _lit(State.PROCESSING)
_ACTIVE: list[ColumnElement[Any]] = [literal_column(f"'{value}'") for value in ACTIVE_STATE_VALUES]
_FINAL = [_lit(s) for s in State if s in FINAL]


class Statements:
    """The statements of one table prefix. Parameters are named ``p_*`` (or after the
    column they set); each statement's docstring says what it does.

    Statements that take lists are methods of the list length (a :func:`list_size`);
    :meth:`list_params` binds a list to such a statement. With a ``dialect``,
    :meth:`compiled` gives the SQL text of any statement built here for that dialect's
    driver (named parameters).
    """

    def __init__(self, tables: Tables, *, dialect: Dialect | None = None) -> None:
        self.tables = tables
        self.dialect = dialect
        self._compiled: dict[int, tuple[str, dict[str, Any]]] = {}
        self._variants: dict[tuple[str, int], Any] = {}
        i = self._i = tables.instances
        h = tables.history
        logs = tables.logs
        s = tables.schedules
        self._columns = [i.c[name] for name in INSTANCE_COLUMNS]
        self._parts = union_all(
            select(literal_column("0").label("part")), select(literal_column("1"))
        ).subquery("parts")
        """The two parts of a history row that may hold two records (:meth:`history`)."""
        self._live = live = i.c.state.in_(_ACTIVE)
        prefix = i.name.removesuffix("instances")
        # SQLite only (other dialects ignore them): see engine.HintingSQLiteDialect.
        self._by_uuid_hint = f"INDEXED BY ux_{prefix}instances_uuid"
        self._live_key_hint = f"INDEXED BY ux_{prefix}instances_live_dedupe"
        self._claim_hint = f"INDEXED BY ix_{prefix}instances_claim"

        # -- instances: reads -----------------------------------------------------------
        self.other_live_holder: Select[Any] = (
            select(i.c.uuid)
            .where(i.c.dedupe_key == bindparam("p_key"), live, i.c.uuid != bindparam("p_uuid"))
            .with_hint(i, self._live_key_hint, "sqlite")
        )
        """A non-final instance other than ``p_uuid`` holding dedupe key ``p_key``."""

        self.expired: Select[Any] = (
            select(*self._columns)
            .where(i.c.state == _PROCESSING, i.c.lease_us < bindparam("p_now"))
            .order_by(i.c.seq)
        )
        """Processing instances whose lease ran out before ``p_now`` (the reaper's prey)."""

        self.counts: Select[Any] = select(i.c.kind, i.c.state, func.count()).group_by(
            i.c.kind, i.c.state
        )
        """Number of instances per (kind, state)."""

        self.next_due_any: Select[Any] = select(func.min(i.c.scheduled_us)).where(
            i.c.state == _SCHEDULED
        )
        """The earliest due time of the Scheduled instances."""

        # -- instances: writes ----------------------------------------------------------
        self.insert_instance: Insert = _insert_all(i)
        """Insert one new instance (executemany for a batch)."""

        self.write_back: Update = (
            update(i)
            .where(i.c.uuid == bindparam("b_uuid"))
            .values({name: bindparam(name) for name in MUTABLE_COLUMNS})
        )
        """Store the mutable columns of the instance ``b_uuid`` after a transition
        (executemany for a batch)."""

        self.claim_any = self._claim(None)
        """The claim, of any kind (see :meth:`_claim`)."""

        # -- history and logs -------------------------------------------------------------
        self.insert_history: Insert = _insert_all(h)
        """Append one history record (executemany for a batch)."""
        self.insert_log: Insert = _insert_all(logs)
        """Append one log record (executemany for a batch)."""

        # -- retention --------------------------------------------------------------------
        finished_before = i.c.finished_us < bindparam("p_before")
        pruned_uuids = select(i.c.uuid).where(finished_before)
        old_history = or_(h.c.ts_us < bindparam("p_before"), h.c.uuid.in_(pruned_uuids))
        self.prune_history: Delete = delete(h).where(old_history)
        """Delete history older than ``p_before`` and all of instances final before it.
        (``finished_us`` is set only while an instance is final.)"""
        self.prune_history_count: Select[Any] = select(
            func.count() + func.count(h.c.preceded_by)
        ).where(old_history)
        """The number of records :attr:`prune_history` deletes (a row may hold two)."""
        self.prune_logs: Delete = delete(logs).where(
            or_(logs.c.ts_us < bindparam("p_before"), logs.c.uuid.in_(pruned_uuids))
        )
        """Delete logs older than ``p_before`` and all of instances final before it."""
        self.prune_instances: Delete = delete(i).where(finished_before)
        """Delete the instances that reached their final state before ``p_before``."""

        # -- schedules ----------------------------------------------------------------------
        schedule_columns = [s.c[name] for name in SCHEDULE_COLUMNS]
        self.schedule_by_id: Select[Any] = select(*schedule_columns).where(
            s.c.id == bindparam("p_id")
        )
        """The schedule ``p_id``."""
        self.all_schedules: Select[Any] = select(*schedule_columns).order_by(s.c.id)
        """Every schedule, by id."""
        self.schedules_of_kind: Select[Any] = (
            select(*schedule_columns).where(s.c.kind == bindparam("p_kind")).order_by(s.c.id)
        )
        """The schedules of kind ``p_kind``, by id."""
        self.insert_schedule: Insert = _insert_all(s)
        """Insert a new schedule."""
        self.update_schedule: Update = (
            update(s)
            .where(s.c.id == bindparam("b_id"))
            .values({name: bindparam(name) for name in SCHEDULE_COLUMNS if name != "id"})
        )
        """Replace every column of the schedule ``b_id``."""
        self.delete_schedule: Delete = delete(s).where(s.c.id == bindparam("p_id"))
        """Delete the schedule ``p_id``."""

        n = tables.nodes
        self.insert_node: Insert = _insert_all(n)
        """Insert a node."""
        self.delete_node: Delete = delete(n).where(n.c.node_id == bindparam("p_id"))
        """Delete the node ``p_id``."""
        self.delete_expired_nodes: Delete = delete(n).where(n.c.expires_us <= bindparam("p_now"))
        """Delete the nodes expired at ``p_now``."""
        self.live_nodes: Select[Any] = (
            select(*(n.c[name] for name in NODE_COLUMNS))
            .where(n.c.expires_us > bindparam("p_now"))
            .order_by(n.c.node_id)
        )
        """The nodes alive at ``p_now``, by id."""

    def compiled(self, statement: Any) -> tuple[str, dict[str, Any]]:
        """The SQL text of a statement built here, for :attr:`dialect`'s driver, and the
        values of the constants SQLAlchemy bound in it (to merge into the parameters).
        Compiled once per statement (statements built here live as long as this)."""
        key = id(statement)
        found = self._compiled.get(key)
        if found is None:
            compiled = statement.compile(dialect=self.dialect)
            constants = {
                name: bind.value
                for name, bind in compiled.binds.items()
                if not bind.required and bind.value is not None
            }
            found = self._compiled[key] = (compiled.string, constants)
        return found

    # -- lists -----------------------------------------------------------------------------

    def list_params(self, name: str, values: Sequence[Any]) -> tuple[int, dict[str, Any]]:
        """The variant length for ``values`` and its parameters ``<name>_<k>``."""
        size = list_size(len(values))
        last = values[-1]
        params = {f"{name}_{k}": values[k] if k < len(values) else last for k in range(size)}
        return size, params

    def _variant(self, key: str, size: int, build: Callable[[], S]) -> S:
        found = self._variants.get((key, size))
        if found is None:
            found = self._variants[(key, size)] = build()
        return found

    @staticmethod
    def _in(column: ColumnElement[Any], name: str, size: int) -> ColumnElement[bool]:
        return column.in_([bindparam(f"{name}_{k}") for k in range(size)])

    def instances_by_uuid(self, size: int) -> Select[Any]:
        """The instances whose uuid is one of ``p_uuids``, in no particular order."""
        i = self._i
        return self._variant(
            "by_uuid",
            size,
            lambda: (
                select(*self._columns)
                .where(self._in(i.c.uuid, "p_uuids", size))
                .with_hint(i, self._by_uuid_hint, "sqlite")
            ),
        )

    def live_by_dedupe_key(self, size: int) -> Select[Any]:
        """The non-final instances holding one of the dedupe keys ``p_keys`` (at most one
        per key: the live dedupe index)."""
        i = self._i
        return self._variant(
            "live_by_key",
            size,
            lambda: (
                select(*self._columns)
                .where(self._in(i.c.dedupe_key, "p_keys", size), self._live)
                .with_hint(i, self._live_key_hint, "sqlite")
            ),
        )

    def next_due_kinds(self, size: int) -> Select[Any]:
        """The earliest due time of the Scheduled instances of the kinds ``p_kinds``."""
        i = self._i
        return self._variant(
            "next_due",
            size,
            lambda: self.next_due_any.where(self._in(i.c.kind, "p_kinds", size)),
        )

    def claim_kinds(self, size: int) -> Update:
        """The claim, of the kinds ``p_kinds`` (see :meth:`_claim`)."""
        return self._variant("claim", size, lambda: self._claim(size))

    def extend_leases(self, size: int) -> Update:
        """Move to ``p_until`` every lease still held (unexpired at ``p_now``) by one of
        ``p_tokens``, whose instances are ``p_uuids``; returns the tokens extended and
        whether their instance has a cancel request."""
        i = self._i

        def build() -> Update:
            return (
                update(i)
                .where(
                    self._in(i.c.uuid, "p_uuids", size),
                    self._in(i.c.claim_token, "p_tokens", size),
                    i.c.state == _PROCESSING,
                    i.c.lease_us >= bindparam("p_now"),
                )
                .values(lease_us=bindparam("p_until"))
                .returning(i.c.claim_token, i.c.cancel_requested)
                .with_hint(self._by_uuid_hint, dialect_name="sqlite")
            )

        return self._variant("extend", size, build)

    def _claim(self, kinds: int | None) -> Update:
        """Claim: one atomic ``UPDATE ... WHERE seq IN (SELECT ... LIMIT n) RETURNING``.

        Takes up to ``p_limit`` Scheduled instances due at ``p_now`` (of the kinds
        ``p_kinds``) without a cancel request, by priority, due time and insertion
        order, and moves them to Processing for node ``p_node`` under a lease until
        ``p_until``, with a fresh claim token ``<uuid>/<p_nonce>`` (``p_nonce`` is new
        for every claim). Returns the claimed rows (:data:`INSTANCE_COLUMNS`), in no
        particular order. The outer ``state = 'Scheduled'`` makes the statement safe
        even where the subquery and the update could interleave.
        """
        i = self._i
        due = select(i.c.seq).where(
            i.c.state == _SCHEDULED,
            i.c.scheduled_us <= bindparam("p_now"),
            i.c.cancel_requested == false(),
        )
        if kinds is not None:
            due = due.where(self._in(i.c.kind, "p_kinds", kinds))
        # By the claim index even when a kind filter looks more selective to a planner
        # without statistics: it gives the rows in claim order, so LIMIT stops the scan.
        due = (
            due.order_by(i.c.priority, i.c.scheduled_us, i.c.seq)
            .limit(bindparam("p_limit", type_=Integer))
            .with_hint(i, self._claim_hint, "sqlite")
        )
        return (
            update(i)
            .where(i.c.seq.in_(due), i.c.state == _SCHEDULED)
            # The rows by their rowid (seq), not every Scheduled row by the state index.
            .with_hint("NOT INDEXED", dialect_name="sqlite")
            .values(
                state=State.PROCESSING.value,
                node_id=bindparam("p_node"),
                claim_token=i.c.uuid + "/" + bindparam("p_nonce"),
                lease_us=bindparam("p_until"),
                attempts=i.c.attempts + 1,
                processed_us=bindparam("p_now"),
                updated_us=bindparam("p_now"),
            )
            .returning(*self._columns)
        )

    # -- query builders ------------------------------------------------------------------------

    def instance_filter(
        self, query: InstanceQuery, *, active_only: bool = False
    ) -> ColumnElement[bool]:
        """The WHERE clause of an :class:`InstanceQuery` (paging and order aside)."""
        i = self._i
        terms: list[ColumnElement[bool]] = []
        if query.uuid is not None:
            terms.append(i.c.uuid == query.uuid)
        if query.uuids is not None:
            terms.append(i.c.uuid.in_(list(query.uuids)))
        if query.kind is not None:
            terms.append(i.c.kind == query.kind)
        if query.states is not None:
            terms.append(i.c.state.in_([s.value for s in query.states]))
        if active_only:
            terms.append(i.c.state.in_(_ACTIVE))
        if query.schedule_id is not None:
            terms.append(i.c.schedule_id == query.schedule_id)
        if query.dedupe_key is not None:
            terms.append(i.c.dedupe_key == query.dedupe_key)
        if query.after is not None:
            terms.append(i.c.created_us >= to_us(query.after))
        if query.before is not None:
            terms.append(i.c.created_us < to_us(query.before))
        return and_(true(), *terms)

    def lookup(self, query: InstanceQuery) -> Select[Any]:
        """Instances matching ``query``, ordered by its time column then uuid, paged."""
        i = self._i
        column = {
            "created_at": i.c.created_us,
            "scheduled_at": i.c.scheduled_us,
            "updated_at": i.c.updated_us,
        }[query.order_by]
        order = (
            (column.desc().nulls_last(), i.c.uuid.desc())
            if query.descending
            else (column.asc().nulls_first(), i.c.uuid.asc())
        )
        stmt = select(*self._columns).where(self.instance_filter(query)).order_by(*order)
        return _page(stmt, query.limit, query.offset)

    def to_cancel(self, query: InstanceQuery) -> Select[Any]:
        """The non-final instances matching ``query`` (all of them: no paging), by seq."""
        return (
            select(*self._columns)
            .where(self.instance_filter(query, active_only=True))
            .order_by(self._i.c.seq)
        )

    def history(self, query: HistoryQuery) -> Select[Any]:
        """History records matching ``query``, by timestamp then seq, paged.

        A row holding two records (``preceded_by`` set) is read as both: joined with
        the two parts ``0`` (the first record: state ``preceded_by``, no details) and
        ``1`` (the row's own), every other row with part ``1`` only; filters, order and
        paging apply to records. A record's seq is twice its row's plus its part: unique,
        in insertion order."""
        h = self.tables.history
        part = self._parts.c.part
        first = part == 0
        state = case((first, h.c.preceded_by), else_=h.c.state)
        details = case((first, literal_column("'{}'")), else_=h.c.details)
        seq = h.c.seq * 2 + part
        stmt = select(seq, h.c.uuid, h.c.kind, state, h.c.ts_us, h.c.attempt, details).join(
            self._parts, or_(part == 1, h.c.preceded_by.is_not(None))
        )
        if query.uuid is not None:
            stmt = stmt.where(h.c.uuid == query.uuid)
        if query.kind is not None:
            stmt = stmt.where(h.c.kind == query.kind)
        if query.states is not None:
            stmt = stmt.where(state.in_([s.value for s in query.states]))
        if query.after is not None:
            stmt = stmt.where(h.c.ts_us >= to_us(query.after))
        if query.before is not None:
            stmt = stmt.where(h.c.ts_us < to_us(query.before))
        if query.descending:
            stmt = stmt.order_by(h.c.ts_us.desc(), seq.desc())
        else:
            stmt = stmt.order_by(h.c.ts_us, seq)
        return _page(stmt, query.limit, query.offset)

    def logs(self, query: LogQuery) -> Select[Any]:
        """Log records matching ``query``, by timestamp then seq, paged."""
        lg = self.tables.logs
        stmt = select(
            lg.c.seq, lg.c.uuid, lg.c.kind, lg.c.ts_us, lg.c.level, lg.c.message, lg.c.attempt,
            lg.c.logger,
        )  # fmt: skip
        if query.uuid is not None:
            stmt = stmt.where(lg.c.uuid == query.uuid)
        if query.kind is not None:
            stmt = stmt.where(lg.c.kind == query.kind)
        if query.min_level is not None:
            stmt = stmt.where(lg.c.level >= int(query.min_level))
        if query.levels is not None:
            stmt = stmt.where(lg.c.level.in_([int(level) for level in query.levels]))
        if query.after is not None:
            stmt = stmt.where(lg.c.ts_us >= to_us(query.after))
        if query.before is not None:
            stmt = stmt.where(lg.c.ts_us < to_us(query.before))
        if query.descending:
            stmt = stmt.order_by(lg.c.ts_us.desc(), lg.c.seq.desc())
        else:
            stmt = stmt.order_by(lg.c.ts_us, lg.c.seq)
        return _page(stmt, query.limit, query.offset)


def _insert_all(table: Any) -> Insert:
    """INSERT of every column but an autoincremented ``seq``, each bound by its name."""
    names = [c.name for c in table.c if c.name != "seq"]
    return insert(table).values({name: bindparam(name) for name in names})


def _page(stmt: Select[Any], limit: int | None, offset: int) -> Select[Any]:
    stmt = stmt.limit(DEFAULT_LIMIT if limit is None else limit)
    return stmt.offset(offset) if offset else stmt
