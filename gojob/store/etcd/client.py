"""A small etcd v3 client over the JSON gateway (``/v3/*``), on httpx, native on Trio.

Only what the store needs: range reads, transactions (the unit of every write), lease
grant/keep-alive/revoke, compaction, status and watch streams. Keys and values are
text here (UTF-8); the gateway wants them base64, and int64 fields as JSON strings.

Errors are translated at this boundary: a transport failure or an etcd "unavailable"
answer is retried with backoff for up to ``retry_for`` seconds, then raised as
:class:`~gojob.errors.StoreUnavailable`; any other etcd error is a
:class:`~gojob.errors.StoreError`. Retrying a write is safe for the store: every write
it sends is either a transaction guarded by compares (a repeat of one that was applied
fails its compares, and the store reads what happened) or an idempotent put.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import httpx
import trio

from ...errors import StoreError, StoreUnavailable

__all__ = [
    "KV",
    "CompactedError",
    "EtcdClient",
    "TxnResult",
    "b64",
    "cmp_create",
    "cmp_exists",
    "cmp_mod",
    "cmp_version",
    "op_delete",
    "op_delete_prefix",
    "op_put",
    "op_range",
    "prefix_end",
]

log = logging.getLogger("gojob.store.etcd")

_UNAVAILABLE_CODES = frozenset({4, 14})
"""gRPC codes worth a retry: DEADLINE_EXCEEDED (``request timed out``), UNAVAILABLE
(leader changes, ``too many requests``)."""
_RETRY_STATUS = frozenset({502, 503, 504})
"""HTTP statuses of a gateway that cannot reach its etcd server (or a proxy in between)."""
_COMPACTED_CODE = 11
"""OUT_OF_RANGE: ``required revision has been compacted``."""


class CompactedError(StoreError):
    """A read or compaction named a revision etcd has already compacted away."""


class KV(NamedTuple):
    key: str
    value: str
    mod: int
    """``mod_revision``: the revision of the key's last change."""
    version: int
    """Puts since the key was created (1 after the first)."""
    create: int


class TxnResult(NamedTuple):
    succeeded: bool
    revision: int
    """The store's revision after the transaction (its own, if it wrote)."""
    responses: list[dict[str, Any]]


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode("ascii")


def _unb64(data: str) -> str:
    return base64.b64decode(data).decode()


def prefix_end(prefix: str) -> bytes:
    """The first key after every key starting with ``prefix`` (etcd's ``range_end``)."""
    raw = bytearray(prefix.encode())
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"


# -- request builders (plain dicts, already in the gateway's encoding) ---------------------


def op_put(key: str, value: str, lease: int = 0) -> dict[str, Any]:
    put: dict[str, Any] = {"key": b64(key), "value": b64(value)}
    if lease:
        put["lease"] = str(lease)
    return {"request_put": put}


def op_delete(key: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": b64(key)}}


def op_delete_prefix(prefix: str) -> dict[str, Any]:
    return {"request_delete_range": {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}}


def op_range(
    key: str,
    end: str | bytes | None = None,
    *,
    limit: int = 0,
    keys_only: bool = False,
    sort_by_value: bool = False,
    count_only: bool = False,
) -> dict[str, Any]:
    req: dict[str, Any] = {"key": b64(key)}
    if end is not None:
        req["range_end"] = b64(end)
    if limit:
        req["limit"] = str(limit)
    if keys_only:
        req["keys_only"] = True
    if count_only:
        req["count_only"] = True
    if sort_by_value:
        req["sort_order"] = "ASCEND"
        req["sort_target"] = "VALUE"
    return {"request_range": req}


def cmp_mod(key: str, mod: int) -> dict[str, Any]:
    """The key's last change is ``mod`` (0: the key does not exist)."""
    return {"key": b64(key), "result": "EQUAL", "target": "MOD", "mod_revision": str(mod)}


def cmp_version(key: str, version: int) -> dict[str, Any]:
    return {"key": b64(key), "result": "EQUAL", "target": "VERSION", "version": str(version)}


def cmp_exists(key: str) -> dict[str, Any]:
    return {"key": b64(key), "result": "GREATER", "target": "VERSION", "version": "0"}


def cmp_create(key: str, create: int) -> dict[str, Any]:
    """``create == 0``: the key does not exist."""
    return {
        "key": b64(key),
        "result": "EQUAL",
        "target": "CREATE",
        "create_revision": str(create),
    }


def kvs_of(response: dict[str, Any]) -> list[KV]:
    """The key-values of a range response (``response_range`` of a txn, or a range)."""
    body = response.get("response_range", response)
    return [_kv(item) for item in body.get("kvs", ())]


def _kv(item: dict[str, Any]) -> KV:
    value = item.get("value")
    return KV(
        _unb64(item["key"]),
        _unb64(value) if value else "",
        int(item.get("mod_revision", 0)),
        int(item.get("version", 0)),
        int(item.get("create_revision", 0)),
    )


class _Body(httpx.AsyncByteStream):
    """A request body sent in one piece, without an async generator."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _Once(self._data)


class _Once:
    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data

    def __aiter__(self) -> _Once:
        return self

    async def __anext__(self) -> bytes:
        data, self._data = self._data, None
        if data is None:
            raise StopAsyncIteration
        return data


class EtcdClient:
    """One endpoint of an etcd cluster, reached through its JSON gateway."""

    def __init__(
        self,
        base_url: str,
        *,
        retry_for: float = 10.0,
        timeout: float = 10.0,
        verify: bool | str = True,
    ) -> None:
        self.base_url = base_url
        self.retry_for = retry_for
        self.revision = 0
        """The highest store revision seen in any answer."""
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            verify=verify,
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self._encoder = json.JSONEncoder(separators=(",", ":"))

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- the one request path ---------------------------------------------------------------
    async def call(
        self,
        path: str,
        body: dict[str, Any],
        *,
        retry_for: float | None = None,
        write: bool = False,
    ) -> dict[str, Any]:
        """POST ``body`` to ``path``; retries transient failures (see the module docstring).

        A ``write`` is shielded from cancellation once sent (each try is bounded by the
        timeout; the waits between tries are not shielded): etcd applies a request it
        received whether or not we still wait for the answer, so a write cancelled in
        flight could otherwise land after its caller moved on. The cancellation is then
        delivered at the caller's next checkpoint.
        """
        budget = self.retry_for if retry_for is None else retry_for
        deadline = trio.current_time() + budget
        delay = 0.05
        content = self._encoder.encode(body).encode()
        while True:
            try:
                await trio.lowlevel.checkpoint_if_cancelled()
                with trio.CancelScope(shield=write):
                    response = await self._client.send(self._request(path, content))
                data = response.json() if response.content else {}
            except (httpx.TransportError, json.JSONDecodeError) as exc:
                error: StoreError = StoreUnavailable(f"etcd at {self.base_url}: {exc!r}")
                error.__cause__ = exc
            else:
                if response.status_code == 200 and "error" not in data:
                    self._saw(data.get("header"))
                    return data
                code = int(data.get("code", 0)) if isinstance(data, dict) else 0
                message = data.get("message") if isinstance(data, dict) else None
                text = f"etcd {path}: {message or response.text[:200]} (code {code})"
                if code == _COMPACTED_CODE:
                    raise CompactedError(text)
                if code not in _UNAVAILABLE_CODES and response.status_code not in _RETRY_STATUS:
                    raise StoreError(text)
                error = StoreUnavailable(text)
            if trio.current_time() + delay > deadline:
                raise error
            log.debug("etcd %s failed, retrying in %.2fs: %s", path, delay, error)
            await trio.sleep(delay)
            delay = min(delay * 2, 1.0)

    def _request(self, path: str, content: bytes) -> httpx.Request:
        request = self._client.build_request(
            "POST", path, content=content, headers={"content-type": "application/json"}
        )
        # httpx sends bytes through an async generator, which a cancelled request leaves
        # suspended for the garbage collector: send them through a plain iterator.
        request.stream = _Body(content)
        return request

    def _saw(self, header: dict[str, Any] | None) -> None:
        if header:
            rev = int(header.get("revision", 0))
            if rev > self.revision:
                self.revision = rev

    # -- kv ------------------------------------------------------------------------------------
    async def txn(
        self,
        compare: Sequence[dict[str, Any]] = (),
        success: Sequence[dict[str, Any]] = (),
        failure: Sequence[dict[str, Any]] = (),
        *,
        write: bool = True,
    ) -> TxnResult:
        body: dict[str, Any] = {}
        if compare:
            body["compare"] = list(compare)
        if success:
            body["success"] = list(success)
        if failure:
            body["failure"] = list(failure)
        data = await self.call("/v3/kv/txn", body, write=write)
        header = data.get("header") or {}
        return TxnResult(
            bool(data.get("succeeded", False)),
            int(header.get("revision", 0)),
            list(data.get("responses", ())),
        )

    async def read(self, ranges: Sequence[dict[str, Any]]) -> tuple[list[list[KV]], int]:
        """Several range reads at one revision (a read-only transaction)."""
        result = await self.txn(success=ranges, write=False)
        return [kvs_of(r) for r in result.responses], result.revision

    async def get(self, key: str) -> KV | None:
        data = await self.call("/v3/kv/range", {"key": b64(key)})
        found = [_kv(item) for item in data.get("kvs", ())]
        return found[0] if found else None

    async def scan(self, prefix: str, *, page: int = 500, keys_only: bool = False) -> list[KV]:
        """Every key-value under ``prefix``, by key, read page by page at one revision."""
        end = b64(prefix_end(prefix))
        start = prefix
        revision = 0
        found: list[KV] = []
        while True:
            body: dict[str, Any] = {"key": b64(start), "range_end": end, "limit": str(page)}
            if keys_only:
                body["keys_only"] = True
            if revision:
                body["revision"] = str(revision)
            data = await self.call("/v3/kv/range", body)
            if not revision:
                revision = int((data.get("header") or {}).get("revision", 0))
            batch = [_kv(item) for item in data.get("kvs", ())]
            found.extend(batch)
            if not data.get("more") or not batch:
                return found
            start = batch[-1].key + "\0"

    # -- leases ---------------------------------------------------------------------------------
    async def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease: (id, granted TTL in seconds; etcd may raise it to its minimum)."""
        data = await self.call("/v3/lease/grant", {"TTL": str(ttl)}, write=True)
        return int(data["ID"]), int(data.get("TTL", ttl))

    async def keepalive(self, lease: int) -> int:
        """Refresh a lease; returns its TTL, 0 if it no longer exists."""
        request = self._request(
            "/v3/lease/keepalive", self._encoder.encode({"ID": str(lease)}).encode()
        )
        try:
            response = await self._client.send(request)
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"etcd keepalive at {self.base_url}: {exc!r}") from exc
        body = response.content
        try:
            data = json.loads(body.splitlines()[0]) if body.strip() else {}
        except json.JSONDecodeError as exc:
            raise StoreError(f"etcd keepalive: unreadable answer {body[:200]!r}") from exc
        result = data.get("result") or {}
        return int(result.get("TTL", 0))

    async def revoke(self, lease: int) -> None:
        try:
            await self.call("/v3/lease/revoke", {"ID": str(lease)})
        except StoreError as exc:
            if "not found" not in str(exc):
                raise

    # -- maintenance -----------------------------------------------------------------------------
    async def status(self, *, retry_for: float | None = None) -> dict[str, Any]:
        return await self.call("/v3/maintenance/status", {}, retry_for=retry_for)

    async def compact(self, revision: int) -> bool:
        """Compact history before ``revision``; False if it already was."""
        try:
            await self.call("/v3/kv/compaction", {"revision": str(revision)}, write=True)
        except CompactedError:
            return False
        return True

    # -- watch ------------------------------------------------------------------------------------
    @asynccontextmanager
    async def watch(self, key: str, start_revision: int) -> AsyncIterator[AsyncIterator[str]]:
        """A watch stream on ``key`` from ``start_revision``: yields its JSON lines.

        The stream has no read timeout (a quiet key sends nothing); it ends or raises
        when the connection drops.
        """
        body = {"create_request": {"key": b64(key), "start_revision": str(start_revision)}}
        try:
            request = self._request("/v3/watch", self._encoder.encode(body).encode())
            request.extensions["timeout"] = httpx.Timeout(10.0, read=None).as_dict()
            response = await self._client.send(request, stream=True)
            try:
                if response.status_code != 200:
                    text = (await response.aread()).decode(errors="replace")
                    raise StoreError(f"etcd watch: {text[:200]}")
                yield response.aiter_lines()
            finally:
                with trio.CancelScope(shield=True):
                    await response.aclose()
        except httpx.TransportError as exc:
            raise StoreUnavailable(f"etcd watch at {self.base_url}: {exc!r}") from exc
