"""The two server streams, on the Trio side: follow an instance's log, watch state changes.

Both subscribe to the store's notifications *before* reading anything, so no change
between the first read and the subscription is missed, and both read through the
Manager (``logs``, ``get``). ``send`` is the stream's ``send_message`` across the
asyncio bridge: it waits for the client's flow control, so a slow client slows its own
stream and nothing piles up in the server.

A stream ends by itself as its contract says (the instance is final), with
``UNAVAILABLE`` when the store's notifications end (the manager closed), and when the
server shuts down its handler is cancelled (see :mod:`gojob.server._guard`).

Limit: a follow sends the lines in the store once the instance is final, after
flushing this node's log buffer; lines an executor wrote on *another* node reach the
store when that node flushes, which may be just after the instance became final.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .._generated import gojob_pb2 as gpb
from ..errors import ManagerClosed
from ..instance import Instance, LogLevel
from ..manager import Manager
from ..state import FINAL, State
from ..store.base import Event, EventType
from ._convert import STATE_TO_PROTO, instance_to_gojob, log_to_proto

__all__ = ["Send", "WatchFilter", "follow_logs", "watch_events"]

Send = Callable[[Any], Awaitable[None]]


async def _next_batch(events: AsyncIterator[list[Event]]) -> list[Event]:
    try:
        return await anext(events)
    except StopAsyncIteration:
        raise ManagerClosed("the store's notification stream ended") from None


async def follow_logs(
    manager: Manager, uuid: str, min_level: LogLevel | None, page: int, send: Send
) -> None:
    """Send the instance's log lines so far, then each new one; return once the instance
    is final and its last lines are sent. Raises InstanceNotFound for an unknown uuid."""
    async with manager.store.subscribe(states=FINAL) as subscription:
        events = aiter(subscription)
        final = (await manager.get(uuid)).is_final
        sent = 0
        while True:
            # Offsets are stable: an instance's records are read in write order.
            while True:
                rows = await manager.logs(uuid=uuid, level=min_level, limit=page, offset=sent)
                for row in rows:
                    await send(log_to_proto(row))
                sent += len(rows)
                if len(rows) < page:
                    break
            if final:
                return
            # Wait for new lines or the end; the final state is read back before the last
            # read of the log (a failed attempt with a retry left is not an end).
            while True:
                batch = await _next_batch(events)
                mine = [e for e in batch if e.uuid == uuid or e.type is EventType.RESYNC]
                if not mine:
                    continue
                if any(e.type is not EventType.LOG for e in mine):
                    final = (await manager.get(uuid)).is_final
                break


@dataclass(frozen=True, slots=True)
class WatchFilter:
    uuid: str | None = None
    kind: str | None = None
    states: frozenset[State] | None = None
    until_final: bool = False
    include_instance: bool = False

    def matches(self, event: Event) -> bool:
        return (
            event.type is EventType.STATE
            and (self.uuid is None or event.uuid == self.uuid)
            and (self.kind is None or event.kind == self.kind)
            and (self.states is None or event.state in self.states)
        )


async def watch_events(manager: Manager, flt: WatchFilter, send: Send) -> None:
    """Send ``STARTED`` once subscribed, then every matching state change; with
    ``until_final`` (and a uuid), the instance's current state first, and return once
    it is final. Raises InstanceNotFound for an unknown uuid."""
    if flt.until_final and flt.uuid is None:
        raise ValueError("until_final needs a uuid")
    # The end is judged on every state change of the instance, not only those shown.
    hint = None if flt.until_final else flt.states
    async with manager.store.subscribe(states=hint) as subscription:
        events = aiter(subscription)
        current = await manager.get(flt.uuid) if flt.uuid is not None else None
        await send(_event(manager, gpb.EVENT_TYPE_STARTED))
        if flt.until_final and current is not None:
            await send(_state_event(manager, current, include=flt.include_instance))
            if current.is_final:
                return
        while True:
            maybe_final = False
            for event in await _next_batch(events):
                if event.type is EventType.RESYNC:
                    await send(_event(manager, gpb.EVENT_TYPE_RESYNC))
                    maybe_final = True
                elif flt.matches(event):
                    inst = None
                    if flt.include_instance:  # None if it was pruned meanwhile
                        inst = await manager.store.get(event.uuid or "")
                    await send(_change_event(manager, event, inst))
                if event.uuid == flt.uuid and event.state in FINAL:
                    maybe_final = True
            # Read back: a failed attempt with a retry left is no end.
            if flt.until_final and maybe_final and (await manager.get(flt.uuid or "")).is_final:
                return


def _event(manager: Manager, kind: gpb.EventType) -> gpb.InstanceEvent:
    msg = gpb.InstanceEvent(type=kind)
    msg.observed_at.FromDatetime(manager.clock.now())
    return msg


def _state_event(manager: Manager, inst: Instance, *, include: bool) -> gpb.InstanceEvent:
    msg = _event(manager, gpb.EVENT_TYPE_STATE)
    msg.uuid = inst.uuid
    msg.kind = inst.kind
    msg.state = STATE_TO_PROTO[inst.state]
    if inst.node_id is not None:
        msg.node_id = inst.node_id
    if include:
        msg.instance.CopyFrom(instance_to_gojob(inst))
    return msg


def _change_event(manager: Manager, event: Event, inst: Instance | None) -> gpb.InstanceEvent:
    msg = _event(manager, gpb.EVENT_TYPE_STATE)
    msg.uuid = event.uuid or ""
    msg.kind = event.kind or ""
    if event.state is not None:
        msg.state = STATE_TO_PROTO[event.state]
    if event.node_id is not None:
        msg.node_id = event.node_id
    if inst is not None:
        msg.instance.CopyFrom(instance_to_gojob(inst))
    return msg
