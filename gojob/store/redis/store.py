"""The Redis (and Valkey) store: a durable queue shared by any number of nodes.

coredis does the talking, natively on Trio; every write is one Lua script
(:mod:`.lua`), atomic on the server; :mod:`.keys` is the key layout, :mod:`.rows` the
encoding, :mod:`.listen` the notifications.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from hashlib import sha1
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import coredis
import trio
from coredis.exceptions import ConnectionError as RedisConnectionError
from coredis.exceptions import NoScriptError, RedisError
from coredis.tokens import PureToken

from ...errors import (
    InstanceNotFound,
    InvalidTransition,
    LeaseLost,
    ScheduleNotFound,
    StoreError,
    StoreUnavailable,
)
from ...instance import HistoryRecord, Instance, LogRecord
from ...state import ACTIVE, State, check_transition
from ..base import (
    DEFAULT_LIMIT,
    HistoryQuery,
    InstanceQuery,
    LeaseReply,
    LogQuery,
    NodeRecord,
    Outcome,
    PruneResult,
    ScheduleRecord,
    Store,
    Subscription,
    keyed_by_slot,
)
from . import rows
from ._client import ClientHost, make_client
from .keys import Keys
from .listen import Hub
from .lua import FIELDS, SCRIPTS

__all__ = ["DEFAULT_PREFIX", "RedisStore", "redis_url"]

log = logging.getLogger(__name__)

_UNAVAILABLE = (RedisConnectionError, OSError, TimeoutError)
_ORDER_FIELDS = {"created_at": "cr", "scheduled_at": "due", "updated_at": "up"}
_CHUNK = 500
"""Instances per script call where a call may concern many (cancel, get_many)."""
_PRUNE_BATCH = 500
DEFAULT_PREFIX = "gojob"


def redis_url(url: str) -> str:
    """The coredis URL of a store URL: ``valkey://`` is ``redis://`` (``valkeys://``:
    ``rediss://``), and the store's own ``prefix`` query parameter is left out."""
    return _parse_url(url)[0]


def _parse_url(url: str) -> tuple[str, str | None]:
    """``(coredis URL, prefix given in the URL or None)``."""
    if url.startswith("valkey://"):
        url = "redis://" + url.removeprefix("valkey://")
    elif url.startswith("valkeys://"):
        url = "rediss://" + url.removeprefix("valkeys://")
    elif not url.startswith(("redis://", "rediss://", "unix://")):
        raise StoreUnavailable(f"not a Redis URL: {url!r} (expected redis://host:port/db)")
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for name, value in query if name == "prefix"]
    kept = urlencode([(name, value) for name, value in query if name != "prefix"])
    return urlunsplit(parts._replace(query=kept)), (prefixes[-1] if prefixes else None)


class RedisStore(Store):
    """The Store contract on Redis >= 7 or Valkey, through coredis (native Trio).

    ``url_or_client``: ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS;
    ``valkey://`` and ``valkeys://`` mean the same), or a ``coredis.Redis`` client made
    with ``decode_responses=True`` (the store enters it, and leaves it as many times).
    ``prefix`` names the deployment (default: the URL's ``?prefix=`` parameter, else
    ``gojob``): every key is ``{prefix}:...`` (a Cluster hash tag), and the store
    touches no other key. ``connect_timeout`` bounds opening and each
    connection attempt, so an unreachable server fails fast with StoreUnavailable;
    ``poll_interval`` is how long a subscription's connection may stay quiet before it
    is checked with a PING.

    Deviations and choices:

    * **Clock.** Redis ``TIME``, read inside each script: due times, leases, the reaper,
      timestamps (microseconds).
    * **Atomicity.** Each write is one Lua script (``EVALSHA``, loaded again after
      ``NOSCRIPT``). A caller cancelled after the script was sent may miss a write that
      happened; a write is never half done.
    * **Lookups.** ``lookup_instances``, ``history`` and ``logs`` with filters other than
      time read the candidates of one index and filter them on the server or here;
      they are meant for operators, not for hot paths.
    * **Notifications.** Own events are delivered in-process; other stores' arrive by
      pub/sub (one PUBLISH per script), and a ``RESYNC`` follows every reconnect (Redis
      drops messages sent meanwhile). The ``states`` hint filters in-process only.
    * **Durability** is the server's: with ``appendonly yes`` and ``appendfsync always``
      nothing acknowledged is lost by a restart; the client reconnects by itself.
    """

    name = "redis"
    # A claim is one round trip: with a backlog, claim batches worth it.
    preferred_prefetch = 100

    def __init__(
        self,
        url_or_client: str | coredis.Redis[Any],
        *,
        prefix: str | None = None,
        connect_timeout: float = 5.0,
        poll_interval: float = 5.0,
        max_connections: int = 32,
    ) -> None:
        if connect_timeout <= 0 or poll_interval <= 0 or max_connections < 2:
            raise ValueError("connect_timeout and poll_interval > 0, max_connections >= 2")
        url_prefix = None
        self.url: str | None = None
        self._given: coredis.Redis[Any] | None = None
        if isinstance(url_or_client, str):
            self.url, url_prefix = _parse_url(url_or_client)
        else:
            self._given = url_or_client
        self.prefix: str = prefix or url_prefix or DEFAULT_PREFIX
        self.keys = Keys(self.prefix)
        self.connect_timeout = connect_timeout
        self.max_connections = max_connections
        self.origin = os.urandom(8).hex()
        self._hub = Hub(self.keys.channel, self.origin, connect_timeout, poll_interval)
        self._shas = {name: sha1(source.encode()).hexdigest() for name, source in SCRIPTS.items()}
        self._head = [self.keys.base, self.origin]
        self._route = [self.keys.seq]
        self._client: coredis.Redis[Any] | None = None
        self._host: ClientHost | None = None
        self._opened = 0
        self._open_lock = trio.Lock()

    def __repr__(self) -> str:
        where = _display(self.url) if self.url is not None else repr(self._given)
        return f"RedisStore({where!r}, prefix={self.prefix!r})"

    # -- lifecycle ------------------------------------------------------------------------------
    async def __aenter__(self) -> RedisStore:
        async with self._open_lock:
            if self._opened == 0:
                await self._open()
            self._opened += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        with trio.CancelScope(shield=True):
            async with self._open_lock:
                self._opened -= 1
                if self._opened == 0:
                    await self._close()

    async def _open(self) -> None:
        host: ClientHost | None = None
        if self._given is not None:
            client = self._given  # entered by its owner
        else:
            assert self.url is not None
            client = make_client(self.url, self.connect_timeout, self.max_connections)
            host = ClientHost()
        try:
            if host is not None:
                await host.open(client)
            with trio.fail_after(self.connect_timeout * 2):
                await client.ping()
        except (*_UNAVAILABLE, RedisError, trio.TooSlowError) as exc:
            if host is not None:
                with trio.CancelScope(shield=True):
                    await host.close()
            where = self._where()
            raise StoreUnavailable(f"cannot reach Redis at {where}: {_describe(exc)}") from exc
        except BaseException:
            if host is not None:
                with trio.CancelScope(shield=True):
                    await host.close()
            raise
        self._client = client
        self._host = host

    async def _close(self) -> None:
        host, self._host, self._client = self._host, None, None
        if host is not None:
            await host.close()

    def _where(self) -> str:
        return _display(self.url) if self.url is not None else "the given client"

    def _require(self) -> coredis.Redis[Any]:
        client = self._client
        if client is None:
            raise StoreError(f"{self!r} is not open: use `async with store:`")
        return client

    # -- talking to the server ------------------------------------------------------------------
    async def _eval(self, name: str, args: Sequence[str]) -> Any:
        """Run script ``name`` (loading it on NOSCRIPT); driver errors as gojob's."""
        client = self._require()
        arguments = [*self._head, *args]
        try:
            try:
                return await client.evalsha(self._shas[name], keys=self._route, args=arguments)
            except NoScriptError:
                await client.script_load(SCRIPTS[name])
                return await client.evalsha(self._shas[name], keys=self._route, args=arguments)
        except (*_UNAVAILABLE, RedisError) as exc:
            raise self._translate(exc) from exc

    async def _write(self, name: str, args: Sequence[str]) -> list[Any]:
        """Run a writing script; deliver its events in-process; its reply after them."""
        reply = await self._eval(name, args)
        # Right after the write, with no checkpoint in between: in write order.
        self._hub.emit(reply[1])
        return list(reply)

    async def _command(self, call: Any) -> Any:
        """Await one coredis command; driver errors as gojob's."""
        try:
            return await call
        except (*_UNAVAILABLE, RedisError) as exc:
            raise self._translate(exc) from exc

    def _translate(self, exc: BaseException) -> StoreError:
        if isinstance(exc, _UNAVAILABLE):
            return StoreUnavailable(f"Redis at {self._where()} unavailable: {_describe(exc)}")
        return StoreError(f"Redis error: {_describe(exc)}")

    async def now(self) -> datetime:
        # Not coredis' time(): it reads TIME's microseconds as milliseconds.
        return rows.from_us(await self._eval("now", []))

    # -- queue ----------------------------------------------------------------------------------
    async def _complete_times(self, instances: Sequence[Instance]) -> Sequence[Instance]:
        """Copies of the instances lacking created_at or scheduled_at, with now filled in."""
        if all(i.created_at is not None and i.scheduled_at is not None for i in instances):
            return instances
        now = await self.now()
        filled = []
        for inst in instances:
            if inst.created_at is None or inst.scheduled_at is None:
                inst = inst.snapshot()
                inst.created_at = inst.created_at or now
                inst.scheduled_at = inst.scheduled_at or now
            filled.append(inst)
        return filled

    def _inserted(
        self, given: Sequence[Instance], results: list[Any], now: datetime
    ) -> list[Instance]:
        return [
            rows.added_instance(inst, now) if result == 1 else rows.instance_from_row(result)
            for inst, result in zip(given, results, strict=True)
        ]

    async def add(self, instances: Sequence[Instance]) -> list[Instance]:
        if not instances:
            await trio.lowlevel.checkpoint()
            return []
        given = await self._complete_times(instances)
        now_us, _, results = await self._write("add", rows.insert_args(given))
        return self._inserted(given, results, rows.from_us(now_us))

    async def claim(
        self,
        node_id: str,
        kinds: Collection[str] | None,
        limit: int,
        lease: float,
    ) -> list[Instance]:
        if limit <= 0 or (kinds is not None and not kinds):
            await trio.lowlevel.checkpoint()
            return []
        args = [node_id, str(limit), str(round(lease * 1_000_000))]
        if kinds is not None:
            args.extend(kinds)
        _, _, claimed = await self._write("claim", args)
        decode = rows.instance_from_row
        return [decode(row) for row in claimed]

    async def next_due(self, kinds: Collection[str] | None) -> datetime | None:
        if kinds is not None and not kinds:
            await trio.lowlevel.checkpoint()
            return None
        found = await self._eval("next_due", [] if kinds is None else list(kinds))
        return None if found is None else rows.from_us(found)

    async def extend_leases(
        self, node_id: str, tokens: Collection[str], lease: float
    ) -> LeaseReply:
        if not tokens:
            await trio.lowlevel.checkpoint()
            return LeaseReply()
        extended, lost, cancel = await self._eval(
            "extend", [str(round(lease * 1_000_000)), *tokens]
        )
        return LeaseReply(frozenset(extended), frozenset(lost), frozenset(cancel))

    async def finish_many(
        self, items: Sequence[tuple[str, Outcome]], *, returning: bool = True
    ) -> list[Instance | LeaseLost | None]:
        for _, outcome in items:
            _check_outcome(outcome)  # before anything is written
        if not items:
            await trio.lowlevel.checkpoint()
            return []
        args = ["1" if returning else "0"]
        outcome_args = rows.outcome_args
        for token, outcome in items:
            args += outcome_args(token, outcome)
        _, _, results = await self._write("finish", args)
        out: list[Instance | LeaseLost | None] = []
        for (token, _), result in zip(items, results, strict=True):
            if result == 0:
                out.append(LeaseLost(f"claim token {token} no longer holds a lease"))
            elif result == 1:
                out.append(None)
            else:
                out.append(rows.instance_from_row(result))
        return out

    async def request_cancel(self, query: InstanceQuery) -> list[Instance]:
        states = ACTIVE if query.states is None else ACTIVE & frozenset(query.states)
        uuids = [u for u, _ in await self._select(query, states)]
        if not uuids:
            return []
        flt = _states_filter(None if query.states is None else states)
        matched: list[Instance] = []
        for start in range(0, len(uuids), _CHUNK):
            _, _, found = await self._write("cancel", [flt, *uuids[start : start + _CHUNK]])
            matched.extend(rows.instance_from_row(row) for row in found)
        return matched

    async def reap_expired(self) -> list[Instance]:
        _, _, reaped = await self._write("reap", [])
        return [rows.instance_from_row(row) for row in reaped]

    async def requeue(self, uuid: str, due: datetime) -> Instance:
        reply = await self._eval("requeue", [uuid, str(rows.to_us(due)), due.isoformat()])
        if reply[0] == "missing":
            raise InstanceNotFound(uuid)
        if reply[0] == "active":
            raise InvalidTransition(f"instance {uuid} is {reply[1]}, not final")
        if reply[0] == "held":
            raise InvalidTransition(f"another instance ({reply[1]}) holds dedupe key {reply[2]!r}")
        self._hub.emit(reply[1])
        return rows.instance_from_row(reply[2])

    # -- lookups --------------------------------------------------------------------------------
    async def get(self, uuid: str) -> Instance | None:
        row = await self._command(self._require().hmget(self.keys.instance(uuid), FIELDS))
        return None if row[0] is None else rows.instance_from_row(row)

    async def _get_many(self, uuids: Sequence[str]) -> list[Instance]:
        found: list[Instance] = []
        for start in range(0, len(uuids), _CHUNK):
            got = await self._eval("get_many", list(uuids[start : start + _CHUNK]))
            found.extend(rows.instance_from_row(row) for row in got if row[0] is not None)
        return found

    async def _select(
        self, query: InstanceQuery, states: Collection[State] | None
    ) -> list[tuple[str, int]]:
        """``(uuid, order value)`` of every instance matching ``query`` (limit, offset and
        order aside) whose state is in ``states`` (None: any)."""
        if states is not None and not states:
            await trio.lowlevel.checkpoint()
            return []
        if query.uuids is not None and not query.uuids:
            await trio.lowlevel.checkpoint()
            return []
        after = "" if query.after is None else str(rows.to_us(query.after))
        before = "" if query.before is None else str(rows.to_us(query.before))
        args = [
            _ORDER_FIELDS[query.order_by],
            query.kind or "",
            _states_filter(states),
            query.schedule_id or "",
            query.dedupe_key or "",
            after,
            before,
        ]
        if query.uuid is not None:
            uuids = [query.uuid]
            if query.uuids is not None and query.uuid not in query.uuids:
                uuids = []
            args += ["u", *uuids]
        elif query.uuids is not None:
            args += ["u", *dict.fromkeys(query.uuids)]
        elif query.dedupe_key is not None:
            args += ["s", f"ix:dk:{query.dedupe_key}"]
        elif query.schedule_id is not None:
            args += ["s", f"ix:sid:{query.schedule_id}"]
        elif states is not None and len(states) <= 2:
            args += ["s", *(f"st:{s.value}" for s in states)]
        else:
            index = "ix:c" if query.kind is None else f"ix:k:{query.kind}"
            args += ["z", index, after or "-inf", f"({before}" if before else "+inf"]
        flat = await self._eval("select", args)
        return [(flat[i], int(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def lookup_instances(self, query: InstanceQuery) -> list[Instance]:
        found = await self._select(query, None if query.states is None else frozenset(query.states))
        found.sort(key=lambda item: (item[1], item[0]), reverse=query.descending)
        page = _page(found, query.limit, query.offset)
        by_uuid = {i.uuid: i for i in await self._get_many([u for u, _ in page])}
        return [by_uuid[u] for u, _ in page if u in by_uuid]

    async def counts(self) -> dict[tuple[str, State], int]:
        raw = await self._command(self._require().hgetall(self.keys.counts))
        counts: dict[tuple[str, State], int] = {}
        for field, value in raw.items():
            number = int(value)
            if number > 0:
                kind, _, state = field.rpartition("\t")
                counts[(kind, State(state))] = number
        return counts

    async def _records(
        self,
        own_key: str | None,
        index_key: str,
        filtered: bool,
        after: datetime | None,
        before: datetime | None,
        descending: bool,
        limit: int | None,
        offset: int,
    ) -> tuple[list[str], bool]:
        """Stored records of one instance (``own_key``) or of the index in a time range;
        True when the page (limit, offset, order) is applied already."""
        client = self._require()
        if own_key is not None:
            return list(await self._command(client.lrange(own_key, 0, -1))), False
        low = "-inf" if after is None else str(rows.to_us(after))
        high = "+inf" if before is None else f"({rows.to_us(before)}"
        if filtered:
            got = await self._command(client.zrange(index_key, low, high, PureToken.BYSCORE))
            return list(got), False
        count = DEFAULT_LIMIT if limit is None else limit
        if count <= 0:
            return [], True
        bounds = (high, low) if descending else (low, high)
        got = await self._command(
            client.zrange(
                index_key,
                *bounds,
                PureToken.BYSCORE,
                rev=descending or None,
                offset=offset,
                count=count,
            )
        )
        return list(got), True

    async def history(self, query: HistoryQuery) -> list[HistoryRecord]:
        own = None if query.uuid is None else self.keys.instance_history(query.uuid)
        filtered = query.kind is not None or query.states is not None
        raw, paged = await self._records(
            own,
            self.keys.history,
            filtered,
            query.after,
            query.before,
            query.descending,
            query.limit,
            query.offset,
        )
        records = [rows.history_from_record(r) for r in raw]
        if paged:
            return records
        found = [r for r in records if query.matches(r)]
        found.sort(key=lambda r: (r.timestamp, r.seq), reverse=query.descending)
        return _page(found, query.limit, query.offset)

    async def logs(self, query: LogQuery) -> list[LogRecord]:
        own = None if query.uuid is None else self.keys.instance_logs(query.uuid)
        filtered = query.kind is not None or query.min_level is not None or query.levels is not None
        raw, paged = await self._records(
            own,
            self.keys.logs,
            filtered,
            query.after,
            query.before,
            query.descending,
            query.limit,
            query.offset,
        )
        records = [rows.log_from_record(r) for r in raw]
        if paged:
            return records
        found = [r for r in records if query.matches(r)]
        found.sort(key=lambda r: (r.timestamp, r.seq), reverse=query.descending)
        return _page(found, query.limit, query.offset)

    async def append_logs(self, records: Sequence[LogRecord]) -> None:
        if not records:
            await trio.lowlevel.checkpoint()
            return
        await self._write("append_logs", rows.log_args(records))

    # -- schedules ------------------------------------------------------------------------------
    async def put_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        _, _, row = await self._write("put_schedule", rows.schedule_args(record))
        return rows.schedule_from_row(row)

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        found = await self._eval("get_schedules", [schedule_id])
        return rows.schedule_from_row(found[0]) if found else None

    async def list_schedules(self, kind: str | None = None) -> list[ScheduleRecord]:
        found = [rows.schedule_from_row(row) for row in await self._eval("get_schedules", [])]
        return [s for s in found if kind is None or s.kind == kind]

    async def set_schedule_paused(
        self, schedule_id: str, paused: bool, next_fire_at: datetime | None = None
    ) -> ScheduleRecord:
        cursor = "" if next_fire_at is None else str(rows.to_us(next_fire_at))
        _, _, row = await self._write(
            "pause_schedule", [schedule_id, "1" if paused else "0", cursor]
        )
        if row is None:
            raise ScheduleNotFound(schedule_id)
        return rows.schedule_from_row(row)

    async def delete_schedule(self, schedule_id: str) -> bool:
        _, _, existed = await self._write("delete_schedule", [schedule_id])
        return bool(existed)

    async def fire_schedule(
        self,
        schedule_id: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        instances: Sequence[Instance],
        skipped: Sequence[tuple[datetime, str]] = (),
        skipped_count: int = 0,
    ) -> list[Instance] | None:
        given = await self._complete_times(keyed_by_slot(schedule_id, instances))
        skips = rows.skip_args(skipped)
        args = [
            schedule_id,
            str(rows.to_us(expected_next_fire_at)),
            str(rows.to_us(next_fire_at)),
            str(skipped_count),
            str(len(skips)),
            *skips,
            *rows.insert_args(given),
        ]
        reply = await self._eval("fire_schedule", args)
        if reply is None:
            return None
        now_us, payload, results = reply
        self._hub.emit(payload)
        return self._inserted(given, results, rows.from_us(now_us))

    # -- nodes ----------------------------------------------------------------------------------
    async def heartbeat(self, node: NodeRecord, ttl: float) -> NodeRecord:
        value = await self._eval(
            "heartbeat", [node.node_id, str(round(ttl * 1_000_000)), rows.node_json(node)]
        )
        return rows.node_from_value(node.node_id, value)

    async def nodes(self) -> list[NodeRecord]:
        flat = await self._eval("nodes", [])
        found = [rows.node_from_value(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
        return sorted(found, key=lambda n: n.node_id)

    async def remove_node(self, node_id: str) -> bool:
        return bool(await self._eval("remove_node", [node_id]))

    # -- retention and notifications --------------------------------------------------------------
    async def prune(self, before: datetime) -> PruneResult:
        cutoff = str(rows.to_us(before))
        instances = history = logs = 0
        while True:
            n_inst, n_hist, n_logs, more = await self._eval("prune", [cutoff, str(_PRUNE_BATCH)])
            instances += n_inst
            history += n_hist
            logs += n_logs
            if not more:
                return PruneResult(instances, history, logs)

    def subscribe(
        self, *, states: Collection[State] | None = None
    ) -> AbstractAsyncContextManager[Subscription]:
        return self._hub.subscribe(self._require(), states)


def _check_outcome(outcome: Outcome) -> None:
    check_transition(State.PROCESSING, outcome.state)
    if outcome.retry_at is not None and outcome.state is not State.SCHEDULED:
        check_transition(outcome.state, State.SCHEDULED)


def _states_filter(states: Collection[State] | None) -> str:
    """States as the scripts match them: ``|A|B|``, or ``""`` for any."""
    if states is None:
        return ""
    return "|" + "|".join(s.value for s in states) + "|"


def _page(items: list[Any], limit: int | None, offset: int) -> list[Any]:
    limit = DEFAULT_LIMIT if limit is None else limit
    return items[offset : offset + limit]


def _display(url: str) -> str:
    """The URL without its password."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{host}" if user else f"{scheme}{sep}***@{host}"


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
