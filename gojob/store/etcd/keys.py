"""The etcd store's key layout, under one prefix per deployment.

=========================================  ==================================================
key (after the prefix)                     value
=========================================  ==================================================
``i/<uuid>``                               the instance record (instance, history, queue seq)
``r/<kind>/<priority>/<due>/<seq>``        ready index: queued and due when enqueued
``w/<kind>/<due>/<seq>``                   waiting index: queued, due later
``p/<uuid>``                               running index: the lease end (epoch µs)
``k/<dedupe key>``                         uuid of the non-final instance holding the key
``K/<kind>``                               a kind that was ever added (for ``kinds=None``)
``l/<uuid>/<seq>``                         a batch of log records of one instance
``s/<schedule id>``                        a schedule
``n/<node id>``                            a node record, attached to an etcd lease
``ev``                                     the events of the last transaction (watched)
=========================================  ==================================================

A range read of ``r/<kind>/`` returns queued work by priority, then due time, then
insertion; ``w/<kind>/`` by due time (due entries move to ``r/`` as claims meet them).
Index values are ``<due µs, 16 digits>:<instance version>:<instance record>``, so a
claim needs no second read, its compare checks the record did not change since, and a
range sorted by value starts with the earliest due time.

Kinds, dedupe keys, schedule and node ids are percent-encoded (no ``/`` inside a
segment); times are fixed-width decimal epoch microseconds; priorities and sequence
numbers fixed-width hex (priorities offset by 2**63 so negative ones sort first).
"""

from __future__ import annotations

from urllib.parse import quote, unquote

__all__ = ["Keys"]

_PRIORITY_OFFSET = 1 << 63
_PRIORITY_MAX = (1 << 64) - 1


def _q(text: str) -> str:
    return quote(text, safe="")


def due_text(due_us: int) -> str:
    return f"{max(due_us, 0):016d}"


class Keys:
    """Key names under ``prefix`` (which ends with ``/``)."""

    __slots__ = (
        "dedupe_prefix",
        "events",
        "instances",
        "kinds",
        "logs",
        "nodes",
        "prefix",
        "ready",
        "running",
        "schedules",
        "waiting",
    )

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.instances = prefix + "i/"
        self.ready = prefix + "r/"
        self.waiting = prefix + "w/"
        self.running = prefix + "p/"
        self.dedupe_prefix = prefix + "k/"
        self.kinds = prefix + "K/"
        self.logs = prefix + "l/"
        self.schedules = prefix + "s/"
        self.nodes = prefix + "n/"
        self.events = prefix + "ev"

    def instance(self, uuid: str) -> str:
        return self.instances + uuid

    def uuid_of(self, key: str) -> str:
        """The uuid in an ``i/`` or ``p/`` key."""
        return key[key.rindex("/") + 1 :]

    def ready_kind(self, kind: str) -> str:
        return f"{self.ready}{_q(kind)}/"

    def waiting_kind(self, kind: str) -> str:
        return f"{self.waiting}{_q(kind)}/"

    def ready_key(self, kind: str, priority: int, due_us: int, seq: int) -> str:
        prio = min(max(priority + _PRIORITY_OFFSET, 0), _PRIORITY_MAX)
        return f"{self.ready}{_q(kind)}/{prio:016x}/{due_text(due_us)}/{seq:016x}"

    def waiting_key(self, kind: str, due_us: int, seq: int) -> str:
        return f"{self.waiting}{_q(kind)}/{due_text(due_us)}/{seq:016x}"

    def waiting_until(self, kind: str, now_us: int) -> str:
        """End of the range of waiting entries of ``kind`` due at or before ``now_us``."""
        return f"{self.waiting}{_q(kind)}/{due_text(now_us + 1)}"

    def run(self, uuid: str) -> str:
        return self.running + uuid

    def dedupe(self, key: str) -> str:
        return self.dedupe_prefix + _q(key)

    def kind(self, kind: str) -> str:
        return self.kinds + _q(kind)

    def kind_of(self, key: str) -> str:
        """The kind of a ``K/`` key."""
        return unquote(key[len(self.kinds) :])

    def instance_logs(self, uuid: str) -> str:
        return f"{self.logs}{uuid}/"

    def log(self, uuid: str, seq: int) -> str:
        return f"{self.logs}{uuid}/{seq:016x}"

    def schedule(self, schedule_id: str) -> str:
        return self.schedules + _q(schedule_id)

    def node(self, node_id: str) -> str:
        return self.nodes + _q(node_id)
