"""The key layout of the Redis store: every key it uses, under one prefix.

All keys start with ``{prefix}:``. The braces are a Redis Cluster hash tag: every key
of one deployment hashes to one slot, so a Lua script may touch any of them. The
store never reads, writes or deletes a key outside this namespace (the tests check
it), and never issues ``FLUSHALL``/``FLUSHDB``.

Layout (``P`` is ``{prefix}:``; the Lua scripts build the same names):

=========================  ======  =========================================================
key                        type    holds
=========================  ======  =========================================================
``P i:<uuid>``             hash    one instance (fields: :data:`gojob.store.redis.lua.FIELDS`)
``P q:<prio>:<kind>``      zset    ready queue of a kind and priority: score due (µs),
                                   member ``<seq:016d><uuid>`` (insertion order on ties)
``P pr:<kind>``            zset    the priorities that have a ready queue for a kind
``P dl:<kind>``            zset    delayed instances of a kind: score due, member uuid
``P kinds``                set     every kind ever queued
``P lease``                zset    running instances: score lease expiry, member uuid
``P st:<state>``           set     uuids by state
``P cnt``                  hash    ``<kind>\\t<state>`` -> number of instances
``P ix:c``                 zset    every instance by created_at (member uuid)
``P ix:k:<kind>``          zset    instances of a kind by created_at
``P ix:sid:<id>``          set     instances of a schedule
``P ix:dk:<key>``          set     instances that carried a dedupe key
``P dd``                   hash    dedupe key -> uuid of its live (non-final) holder
``P fin``                  zset    final instances by the time they became final
``P h:<uuid>``             list    an instance's history records
``P hist``                 zset    every history record by timestamp
``P l:<uuid>``             list    an instance's log records
``P logs``                 zset    every log record by timestamp
``P s:<id>``               hash    a recurring schedule
``P sk:<id>``              list    its latest skipped slots
``P sch``                  zset    schedule ids (score 0: ordered by id)
``P nodes``                hash    node id -> ``<last_seen>|<expires>|<json>``
``P nodex``                zset    node id by expiry
``P seq``                  string  the sequence of records, queue entries and tokens
``P events``               —       the pub/sub channel of notifications
=========================  ======  =========================================================
"""

from __future__ import annotations

__all__ = ["Keys", "key_prefix"]


def key_prefix(prefix: str) -> str:
    """The namespace of ``prefix``: ``{prefix}:`` (a hash tag, for Redis Cluster)."""
    if not prefix or any(c in prefix for c in "{}*?[]\\ \t\r\n"):
        raise ValueError(f"invalid Redis key prefix {prefix!r}")
    return f"{{{prefix}}}:"


class Keys:
    """Key names of one deployment (those the Python side reads directly)."""

    __slots__ = ("base", "channel", "counts", "history", "logs", "pattern", "seq")

    def __init__(self, prefix: str) -> None:
        self.base = key_prefix(prefix)
        self.pattern = self.base + "*"  # braces are no glob characters
        """A SCAN ``MATCH`` pattern of every key of the deployment."""
        self.seq = self.base + "seq"
        self.counts = self.base + "cnt"
        self.history = self.base + "hist"
        self.logs = self.base + "logs"
        self.channel = self.base + "events"

    def instance(self, uuid: str) -> str:
        return f"{self.base}i:{uuid}"

    def instance_history(self, uuid: str) -> str:
        return f"{self.base}h:{uuid}"

    def instance_logs(self, uuid: str) -> str:
        return f"{self.base}l:{uuid}"
