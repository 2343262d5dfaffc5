"""The machinery a manager runs in its nursery: claiming (dispatcher and worker lanes),
batched acknowledgements, lease extension, reaping, notifications and draining.

``Manager`` (``gojob/manager.py``) adds the public API on top; this module holds the
state both share and the tasks ``open_manager`` starts.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import trio

from . import _scheduler
from ._logs import LogBuffer
from .clock import Clock
from .codec import Limits
from .errors import GojobError, LeaseLost, ManagerClosed, StoreError
from .instance import Instance
from .job import Job, Registry
from .state import FAILED, FINAL, State
from .store.base import EventType, Outcome, Store
from .worker import (
    Attempt,
    StopReason,
    WorkerPool,
    after_failure,
    execute,
    group_failure,
    run_in_scope,
    run_processor,
    stopped_outcome,
)

if TYPE_CHECKING:
    from .server.metrics import Metrics

__all__ = ["Runtime"]

log = logging.getLogger("gojob.manager")

PREFETCH_HORIZON = 0.05
"""Seconds of work a node may claim ahead of its workers while the store has a backlog
(``Runtime._capacity``): a batch of fast jobs, nothing of slow ones."""

_ACK_BACKLOG = 1000
"""Claimed attempts a node may hold beyond its capacity while their outcomes wait to be
acknowledged (``Runtime._claim``)."""


class Runtime:
    """State and background tasks of one node's manager (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        *,
        workers: int,
        node_id: str,
        clock: Clock,
        lease: float,
        poll_interval: float,
        limits: Limits,
        sync_threads: int,
        prefetch: int = 0,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        """Prometheus metrics (``gojob.server.metrics``) this node updates, if any."""
        self.node_id = node_id
        self.clock = clock
        self.lease = lease
        self.poll_interval = poll_interval
        self.limits = limits
        self.registry = Registry()
        self._sync_limiter = trio.CapacityLimiter(sync_threads)
        self._pool = WorkerPool(self, workers)
        self._running: dict[str, Attempt] = {}  # claim token -> attempt
        self._by_uuid: dict[str, Attempt] = {}
        self._in_flight = 0
        """Claimed and not yet written (running, queued for a worker, or awaiting its ack)."""
        self._busy = 0
        """Claimed and not yet decided (running or queued for a worker): the claim budget."""
        self._claiming = False
        self._redundant_dues = 0
        """DUE events still to come of this node's own adds whose claim took all due work:
        each lets one DUE event pass without waking the dispatcher (see ``_add``)."""
        self._dispatcher_wants_capacity = True
        """False while the dispatcher sleeps with room to claim: then freed capacity
        need not wake it (see ``_dispatch``)."""
        self._backlog = False
        self._closing = False
        self._dispatch_wake = trio.Event()
        self._idle = trio.Event()
        self._idle.set()
        self._leases_wanted = trio.Event()
        self._waiters: dict[str, list[trio.Event]] = {}
        """uuid -> one Event per waiting wait() call, set on a relevant state change."""
        self._closed = False
        self._claim_done = trio.Event()
        self._claim_done.set()
        self._finish_queue: list[tuple[str, Outcome]] = []
        """(claim token, outcome) pairs waiting for the finisher: the batch it writes."""
        self._finish_wake = trio.Event()
        self.prefetch = prefetch
        self._attempt_seconds: float | None = None
        """Moving average of how long an attempt runs here (None: not known yet)."""
        self._log_buffer: LogBuffer | None = None
        self.scheduler = _scheduler.Scheduler(self)

    # -- internals: dispatch ------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closing:
            raise ManagerClosed("the manager is shutting down")

    def _wake_dispatcher(self) -> None:
        self._dispatch_wake.set()

    def _free(self) -> int:
        """How many attempts a claim may take now (0: none)."""
        capacity = self._capacity()
        # Outcomes awaiting their acknowledgement count too, past a bound: claims must
        # not outrun a store that is slow to write them.
        return min(capacity - self._busy, max(2 * capacity, _ACK_BACKLOG) - self._in_flight)

    async def _claim(self) -> int:
        """Claim as many due attempts as there are free slots and queue them for the
        workers; returns how many. One claim at a time per node (the dispatcher, or a
        worker that ran out of work while the store had a backlog)."""
        kinds = self.registry.kinds()
        free = self._free()
        if self._claiming or self._closing or not kinds or free <= 0:
            return 0
        _, batch = await self._claiming_call(None, kinds, free)
        return len(batch)

    async def _add(self, instances: list[Instance]) -> list[Instance]:
        """Add ``instances``; when this node has a free worker and one of them is due now
        and of a kind it runs, claim in the same store call (``Store.add_and_claim``), so
        an immediate job starts without a round trip after ``schedule`` returns."""
        kinds = self.registry.kinds()
        free = self._free()
        if self._claiming or self._closing or free <= 0 or not kinds:
            return await self.store.add(instances)
        now = self.clock.now()
        runnable = set(kinds)
        due_now = [
            inst.kind in runnable and (inst.scheduled_at is None or inst.scheduled_at <= now)
            for inst in instances
        ]
        if not any(due_now):
            return await self.store.add(instances)
        # When the claim takes everything due, these included, the DUE event this add
        # announces (delivered to this node too, maybe while the claim runs) has nothing
        # left to wake the dispatcher for: one DUE wake-up is skipped. Counted before
        # the call, and settled after it if the claim came back full or the add was
        # not all new, so that no wake-up is ever lost (at worst one is spent twice).
        redundant = all(due_now)
        if redundant:
            self._redundant_dues += 1
        try:
            added, claimed = await self._claiming_call(instances, kinds, free)
        except BaseException:
            if redundant:
                self._settle_due()
            raise
        if redundant and (
            len(claimed) >= free
            or any(a.uuid != i.uuid for a, i in zip(added, instances, strict=True))
        ):
            self._settle_due()
        return added

    def _settle_due(self) -> None:
        """An add counted in ``_redundant_dues`` was not redundant after all: take the
        count back and wake the dispatcher as its DUE event would have."""
        if self._redundant_dues:
            self._redundant_dues -= 1
        self._dispatch_wake.set()

    async def _claiming_call(
        self, instances: list[Instance] | None, kinds: list[str], free: int
    ) -> tuple[list[Instance], list[Instance]]:
        """The one claim of this node in flight (``_claiming``): ``store.claim``, or
        ``store.add_and_claim`` of ``instances``; its attempts queued for the workers.
        Returns ``(added, claimed)``."""
        self._claiming = True
        self._claim_done = trio.Event()
        try:
            lease_until = trio.current_time() + self.lease
            if instances is None:
                added: list[Instance] = []
                batch = await self.store.claim(self.node_id, kinds, free, self.lease)
            else:
                added, batch = await self.store.add_and_claim(
                    instances, self.node_id, kinds, free, self.lease
                )
        finally:
            self._claiming = False
            self._claim_done.set()
        self._accept(batch, free, lease_until)
        return added, batch

    def _accept(self, batch: list[Instance], asked: int, lease_until: float) -> None:
        """Queue the attempts of a claim for the workers."""
        # A full batch suggests more is due: idle workers claim again themselves, without
        # waiting for the dispatcher (a task switch per batch saved).
        self._backlog = len(batch) == asked
        if batch:
            self._in_flight += len(batch)
            self._busy += len(batch)
            if self._idle.is_set():
                self._idle = trio.Event()
            running = self._running
            by_uuid = self._by_uuid
            put = self._pool.queue.put_nowait
            for inst in batch:
                token = inst.claim_token
                assert token is not None
                attempt = Attempt(inst, token, "", lease_until)
                running[token] = attempt
                by_uuid[inst.uuid] = attempt
                put(attempt)
            self._leases_wanted.set()

    def _capacity(self) -> int:
        """How many attempts this node may hold claimed and undecided.

        The free workers, plus ``prefetch`` while the store has a backlog (the last
        claim came back full): then workers take their next attempt without waiting for
        a claim round trip, and a claim carries a batch worth its round trip. While the
        queue is shallow nothing is claimed ahead, so a better instance that arrives is
        claimed as soon as a worker is free; with a backlog it may wait behind at most
        ``prefetch`` attempts claimed before it arrived. Nothing is claimed ahead until
        an attempt has run here, and never more than the workers get through in
        :data:`PREFETCH_HORIZON` at the attempts' average run time: a node claims no
        slow jobs ahead of its workers while other nodes could run them.
        """
        workers = self._pool.target
        each = self._attempt_seconds
        if not self._backlog or not self.prefetch or each is None:
            return workers
        # At most what the workers get through in PREFETCH_HORIZON: slow jobs are not
        # hoarded here while other nodes idle (10 workers: 1 s jobs get no prefetch,
        # no-op jobs all of it).
        if each * self.prefetch > workers * PREFETCH_HORIZON:
            return workers + int(workers * PREFETCH_HORIZON / each)
        return workers + self.prefetch

    def _note_runtime(self, seconds: float, attempts: int) -> None:
        """``attempts`` ran one after the other in ``seconds`` (a lane, or one attempt)."""
        each = seconds / attempts
        known = self._attempt_seconds
        self._attempt_seconds = each if known is None else known + 0.25 * (each - known)

    async def _dispatch(self) -> None:
        """Claim due work in batches while workers are free; sleep until woken or due."""
        backoff = 0.05
        while not self._closing:
            self._dispatch_wake = trio.Event()
            self._dispatcher_wants_capacity = True
            timeout = math.inf
            if self._claiming:
                # A worker is claiming: its result decides what comes next (and a claim
                # of ours now would read as "nothing due").
                await self._claim_done.wait()
                continue
            try:
                claimed = await self._claim()
                backoff = 0.05
            except StoreError as exc:
                log.warning("claim failed (retrying in %.2fs): %s", backoff, exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self.poll_interval)
                continue
            if claimed:
                if self._capacity() - self._busy > 0:
                    continue
                # Full: workers wake it as they free up; the poll bounds a missed wake-up.
                timeout = self.poll_interval
            elif self._capacity() - self._busy > 0 and self.registry.kinds():
                timeout = self.poll_interval
                try:
                    due = await self.store.next_due(self.registry.kinds())
                except StoreError as exc:
                    log.warning("next_due failed: %s", exc)
                    due = None
                if due is not None:
                    wait = (due - self.clock.now()).total_seconds()
                    # Due but not claimable (clock skew between node and store): no spin.
                    timeout = min(max(wait, 0.01), timeout)
            else:
                timeout = self.poll_interval
            # Asleep with room to claim, it waits for due work, not for capacity: an
            # attempt finishing then need not wake it (an idle node would claim nothing
            # after every job, and an enqueue meeting that claim in flight could not
            # claim its own job at once).
            self._dispatcher_wants_capacity = self._free() <= 0
            with trio.move_on_after(timeout):
                await self._dispatch_wake.wait()

    async def _claim_for_worker(self) -> bool:
        """Called by a worker that found no work queued: claim directly while the store
        has a backlog. Returns True if work was queued."""
        if not self._backlog or self._claiming or self._closing:
            return False
        # One schedule point per batch: lets the finisher and the listener run.
        await trio.lowlevel.checkpoint()
        try:
            if await self._claim() > 0:
                return True
            # Nothing more: the dispatcher goes back to sleeping until the next due time.
            self._dispatch_wake.set()
            return False
        except StoreError as exc:
            log.warning("claim failed: %s", exc)
            self._backlog = False
            self._dispatch_wake.set()
            return False

    def _lane_ready(self, attempt: Attempt, job: Job | None) -> bool:
        """Can this attempt run in a worker's shared lane (see ``_run_lane``)?"""
        return (
            job is not None
            and job.on_complete is None
            and job.on_state_change is None
            and attempt.stop_reason is None
            and not self._closing
        )

    def _hand_over(self, attempt: Attempt, outcome: Outcome | None) -> None:
        """The attempt's outcome is decided: queue it for the finisher (or forget the
        attempt when its lease was lost) and free its place in the claim budget."""
        attempt.instance._sink = None
        self._busy -= 1
        if not self._backlog and self._dispatcher_wants_capacity:
            self._dispatch_wake.set()
        if self.metrics is not None:
            self._observe(attempt, outcome)
        if outcome is None:
            self._forget(attempt)
            return
        queue = self._finish_queue
        queue.append((attempt.token, outcome))
        if len(queue) == 1:
            self._finish_wake.set()

    async def _run_lane(self, first: Attempt, worker: str) -> None:
        """Run ``first``, then every attempt already queued behind it, on ``worker``.

        A cancel scope costs several microseconds to open and close, more than the rest
        of a no-op job's overhead. So consecutive attempts share one scope (a *lane*)
        while they need nothing awaited outside their executor: each attempt owns the
        lane only while its executor runs (``attempt.scope``), a timeout is the lane's
        deadline for that attempt, and a lane whose scope was cancelled is closed and a
        fresh one opened. Attempts with processors after the write, or stopped before
        they started, take the one-scope-per-attempt path (``_run_claimed``).
        """
        pool = self._pool
        assert self._log_buffer is not None
        sink = self._log_buffer.write
        attempt: Attempt | None = first
        while attempt is not None:
            job = self.registry.find(attempt.instance.kind)
            if not self._lane_ready(attempt, job):
                await self._run_claimed(attempt, worker)
                attempt = pool.take_nowait()
                continue
            assert job is not None
            current: Attempt | None = attempt
            attempt = None
            lane_started = trio.current_time()
            ran = 0
            try:
                with trio.CancelScope() as lane:
                    while current is not None:
                        inst = current.instance
                        current.worker = worker
                        inst.worker = worker
                        inst._sink = sink
                        timeout = inst.policy.timeout
                        deadline = math.inf
                        if timeout is not None:
                            deadline = lane.deadline = trio.current_time() + timeout
                        outcome, error = await run_in_scope(self, job, current, lane, deadline)
                        if timeout is not None:
                            lane.deadline = math.inf
                        if outcome is None:
                            break  # stopped, cancellation swallowed: decided below
                        if outcome.state in FAILED:
                            outcome = await after_failure(self, job, inst, outcome, error)
                        self._hand_over(current, outcome)
                        current = None
                        ran += 1
                        if lane.cancel_called:
                            break  # a stale cancel must not reach the next attempt
                        following = pool.take_nowait()
                        if following is None:
                            break
                        next_job = self.registry.find(following.instance.kind)
                        if next_job is not job or not self._lane_ready(following, next_job):
                            attempt = following
                            break
                        current = following
            except Exception as exc:
                if current is not None:
                    outcome = group_failure(exc, worker)
                    if job is not None:
                        outcome = await after_failure(self, job, current.instance, outcome, exc)
                    self._hand_over(current, outcome)
                    current = None
            if current is not None:
                # Its executor was stopped: cancelled, lease lost, released or timed out.
                stopped = stopped_outcome(current)
                if stopped is not None and stopped.state in FAILED:
                    stopped = await after_failure(self, job, current.instance, stopped, None)
                self._hand_over(current, stopped)
            if ran:
                self._note_runtime(trio.current_time() - lane_started, ran)
            if attempt is None:
                attempt = pool.take_nowait()

    async def _run_claimed(self, attempt: Attempt, worker: str) -> None:
        """Run one claimed attempt on ``worker`` and finish it (called by the pool).

        Attempts whose job has no processor to run after the write hand their outcome
        to the finisher, which acknowledges many in one ``finish_many``; the worker
        goes on to its next attempt at once.
        """
        inst = attempt.instance
        attempt.worker = worker
        assert self._log_buffer is not None
        inst._sink = self._log_buffer.write
        inst.worker = worker
        handed_over = False
        try:
            job = self.registry.find(inst.kind)
            outcome: Outcome | None
            if attempt.stop_reason is not None or self._closing:
                # Stopped before it started (cancel, lease loss, shutdown): do not run it.
                outcome = (
                    stopped_outcome(attempt)
                    if attempt.stop_reason is not None
                    else Outcome(State.SCHEDULED, reason="released", worker=worker)
                )
            elif job is None:
                outcome = Outcome(
                    State.SCHEDULED, reason="released: kind not registered here", worker=worker
                )
            else:
                if job.on_state_change is not None:
                    await run_processor(
                        inst, "on_state_change", job.on_state_change, State.PROCESSING
                    )
                started = trio.current_time()
                outcome = await execute(self, job, attempt)
                self._note_runtime(trio.current_time() - started, 1)
            if self.metrics is not None:
                self._observe(attempt, outcome)
            if outcome is None:
                return  # lease lost: the attempt is fenced off, nothing to write
            if job is None or (job.on_complete is None and job.on_state_change is None):
                queue = self._finish_queue
                queue.append((attempt.token, outcome))
                if len(queue) == 1:
                    self._finish_wake.set()
                handed_over = True
                return
            finished = await self._finish(attempt, outcome)
            if finished is not None:
                await self._after_finish(job, inst, finished, outcome)
        finally:
            inst._sink = None
            self._busy -= 1
            if not self._backlog:
                self._dispatch_wake.set()
            if not handed_over:
                self._forget(attempt)

    def _observe(self, attempt: Attempt, outcome: Outcome | None) -> None:
        """Report an attempt's decided outcome to the metrics (None: its lease was lost)."""
        assert self.metrics is not None
        self.metrics.attempt_finished(
            attempt.instance.kind,
            outcome.state if outcome is not None else None,
            getattr(attempt, "started", None),
        )

    def _forget(self, attempt: Attempt) -> None:
        """The attempt is written (or abandoned): free its slot in the claim budget."""
        del self._running[attempt.token]
        uuid = attempt.instance.uuid
        if self._by_uuid.get(uuid) is attempt:
            # A retry may already be claimed again under the same uuid: keep its entry.
            del self._by_uuid[uuid]
        self._in_flight -= 1
        if self._in_flight == 0:
            self._idle.set()

    async def _finisher(self) -> None:
        """Acknowledge handed-over outcomes in batches: one store write per batch.

        A batch the store fails to write is kept (its leases are still extended) and
        written again with a growing pause; it is dropped only when its leases are
        lost, i.e. when another node has taken the instances back.
        """
        backoff = 0.05
        while True:
            if not self._finish_queue:
                self._finish_wake = trio.Event()
                await self._finish_wake.wait()
            batch, self._finish_queue = self._finish_queue, []
            if await self._finish_batch(batch):
                backoff = 0.05
            else:
                self._finish_queue[:0] = batch
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self.poll_interval)

    async def _write_back(self) -> None:
        """Write, from the closing task, the outcomes waiting for the finisher, and release
        every other attempt this node holds (back to Scheduled): otherwise their leases
        would keep them from every node until they expire. Bounded; a store failure is
        logged (the reaper then rescues them)."""
        items, self._finish_queue = self._finish_queue, []
        decided = {token for token, _ in items}
        items += [
            (token, Outcome(State.SCHEDULED, reason="released", worker=attempt.worker or None))
            for token, attempt in self._running.items()
            if token not in decided
        ]
        if not items:
            return
        with trio.move_on_after(max(self.lease, 5.0)):
            try:
                # Some may be written already (a finisher's shielded retry): such a
                # token no longer holds its lease and is left alone.
                await self.store.finish_many(items, returning=False)
            except GojobError as exc:
                log.warning("could not write back %d attempts at close: %s", len(items), exc)
        for token, _ in items:
            attempt = self._running.get(token)
            if attempt is not None:
                self._forget(attempt)

    async def _finish_batch(self, items: list[tuple[str, Outcome]]) -> bool:
        """Write one batch; False (nothing forgotten) when the store failed."""
        results: list[Instance | LeaseLost | None] = []
        try:
            try:
                results = await self.store.finish_many(items, returning=False)
            except trio.Cancelled:
                # The write must land even while this task is being cancelled: repeat it
                # shielded and bounded (finishes already written are idempotent).
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + max(self.lease, 5.0)
                    await self.store.finish_many(items, returning=False)
                for token, _ in items:
                    self._forget(self._running[token])
                raise
        except StoreError as exc:
            log.error("could not finish %d attempts (retrying): %s", len(items), exc)
            return False
        except GojobError as exc:
            # Outcomes are built here, so this is a bug; it must not stop the node.
            log.error("finishing %d attempts was refused: %r", len(items), exc)
        running = self._running
        for (token, _), result in zip(items, results, strict=False):
            if isinstance(result, LeaseLost):
                log.warning(
                    "lease of %s lost before finishing; attempt discarded",
                    running[token].instance.uuid,
                )
        for token, _ in items:
            self._forget(running[token])
        if self._dispatcher_wants_capacity:
            self._dispatch_wake.set()  # claims held back by unacknowledged work may go on
        return True

    async def _finish(self, attempt: Attempt, outcome: Outcome) -> Instance | None:
        try:
            try:
                return await self.store.finish(attempt.token, outcome)
            except trio.Cancelled:
                # The write must land even while this task is being cancelled: repeat it
                # shielded and bounded (a finish already written is idempotent).
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + max(self.lease, 5.0)
                    await self.store.finish(attempt.token, outcome)
                raise
        except LeaseLost:
            log.warning(
                "lease of %s lost before finishing; attempt discarded", attempt.instance.uuid
            )
        except StoreError as exc:
            log.error(
                "could not finish %s: %s (the reaper will rescue it)", attempt.instance.uuid, exc
            )
        except GojobError as exc:
            log.error("finishing %s was refused: %r", attempt.instance.uuid, exc)
        return None

    async def _after_finish(
        self, job: Job, inst: Instance, finished: Instance, outcome: Outcome
    ) -> None:
        finished._sink = inst._sink
        try:
            if outcome.state is State.COMPLETED and job.on_complete is not None:
                await run_processor(finished, "on_complete", job.on_complete, outcome.result)
            if job.on_state_change is not None:
                await run_processor(finished, "on_state_change", job.on_state_change, outcome.state)
                if outcome.state is not State.SCHEDULED and finished.state is State.SCHEDULED:
                    await run_processor(
                        finished, "on_state_change", job.on_state_change, State.SCHEDULED
                    )
                elif outcome.state is not State.CANCELED and finished.state is State.CANCELED:
                    # A pending cancel turned the requeue into Canceled in the store.
                    await run_processor(
                        finished, "on_state_change", job.on_state_change, State.CANCELED
                    )
        finally:
            finished._sink = None

    def _release_worker_attempt(self, worker: str) -> None:
        for attempt in self._running.values():
            if attempt.worker == worker:
                attempt.stop(StopReason.RELEASED)

    # -- internals: leases, reaping, notifications -------------------------------------------
    async def _keep_leases(self) -> None:
        interval = self.lease / 3
        while True:
            if not self._running:
                self._leases_wanted = trio.Event()
                await self._leases_wanted.wait()
            await trio.sleep(interval)
            tokens = list(self._running)
            if not tokens:
                continue
            sent = trio.current_time()
            try:
                reply = await self.store.extend_leases(self.node_id, tokens, self.lease)
            except StoreError as exc:
                log.warning("lease extension failed: %s", exc)
                # Unextended, a lease runs out at the store too and another node may
                # rescue the instance: stop running it here once it surely has (a node
                # cut off from its store would otherwise run it alongside the rescuer).
                now = trio.current_time()
                for unextended in list(self._running.values()):
                    if unextended.lease_until <= now:
                        log.warning(
                            "lease of %s ran out unextended; cancelling its attempt",
                            unextended.instance.uuid,
                        )
                        unextended.stop(StopReason.LEASE_LOST)
                continue
            lease_until = sent + self.lease
            for token in reply.extended:
                extended = self._running.get(token)
                if extended is not None:
                    extended.lease_until = lease_until
            for token in reply.lost:
                attempt = self._running.get(token)
                if attempt is not None:
                    log.warning("lease of %s lost; cancelling its attempt", attempt.instance.uuid)
                    attempt.stop(StopReason.LEASE_LOST)
            for token in reply.cancel_requested:
                attempt = self._running.get(token)
                if attempt is not None:
                    attempt.stop(StopReason.CANCELED)

    async def _reap(self, interval: float) -> None:
        while True:
            await trio.sleep(interval)
            try:
                reaped = await self.store.reap_expired()
            except StoreError as exc:
                log.warning("reaping failed: %s", exc)
                continue
            for inst in reaped:
                log.warning(
                    "instance %s (%s) abandoned by node %s: now %s",
                    inst.uuid,
                    inst.kind,
                    inst.node_id,
                    inst.state.value,
                )
                if self.metrics is not None:
                    self.metrics.abandoned(inst.kind)
                job = self.registry.find(inst.kind)
                if job is not None and job.on_state_change is not None:
                    inst._sink = self._log_buffer.write if self._log_buffer is not None else None
                    try:
                        await run_processor(
                            inst, "on_state_change", job.on_state_change, inst.state
                        )
                    finally:
                        inst._sink = None

    def _wake_all_waiters(self) -> None:
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()

    async def _listen(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Follow the store's notifications; resubscribe (and catch up) if they fail."""
        backoff = 0.05
        while True:
            try:
                await self._listen_once(task_status)
                log.warning("the store's notification stream ended; resubscribing")
            except StoreError as exc:
                log.warning("notifications failed (resubscribing in %.2fs): %s", backoff, exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self.poll_interval)
            task_status = trio.TASK_STATUS_IGNORED
            # Anything may have changed meanwhile: every consumer catches up.
            self._redundant_dues = 0
            self._wake_all_waiters()
            self._dispatch_wake.set()
            self.scheduler.wake()

    async def _listen_once(self, task_status: trio.TaskStatus[None]) -> None:
        # Processing transitions interest nobody here: the store may skip them.
        async with self.store.subscribe(states=FINAL | {State.SCHEDULED}) as subscription:
            task_status.started()
            async for batch in subscription:
                for event in batch:
                    etype = event.type
                    if etype is EventType.STATE:
                        if event.state in FINAL or event.state is State.SCHEDULED:
                            for waiter in self._waiters.get(event.uuid or "", ()):
                                waiter.set()
                            self.scheduler.instance_changed(event.uuid)
                    elif etype is EventType.DUE:
                        if self._redundant_dues:
                            self._redundant_dues -= 1
                        else:
                            self._dispatch_wake.set()
                    elif etype is EventType.CANCEL:
                        attempt = self._by_uuid.get(event.uuid or "")
                        if attempt is not None:
                            attempt.stop(StopReason.CANCELED)
                    elif etype is EventType.SCHEDULE:
                        self.scheduler.wake()
                    elif etype is EventType.RESYNC:
                        self._redundant_dues = 0
                        self._wake_all_waiters()
                        self._dispatch_wake.set()
                        self.scheduler.wake()

    async def _drain(self, grace: float, *, tasks_alive: bool = True) -> None:
        """Stop claiming; let running attempts finish for ``grace`` seconds, then release
        them (back to Scheduled) and wait for their release to be written.

        ``tasks_alive`` false: the manager's own tasks are being cancelled with it (a
        cancel from a scope around the manager), so no worker or finisher will write
        anything more: write what they held here (:meth:`_write_back`)."""
        self._closing = True
        self._dispatch_wake.set()
        if not tasks_alive:
            await self._write_back()
            return
        with trio.move_on_after(grace):
            # A claim on its way back would land after the drain: wait for it first.
            await self._claim_done.wait()
            await self._idle.wait()
        for attempt in list(self._running.values()):
            attempt.stop(StopReason.RELEASED)
        with trio.move_on_after(max(self.lease, 10.0)):
            await self._claim_done.wait()
            for attempt in list(self._running.values()):
                attempt.stop(StopReason.RELEASED)
            await self._idle.wait()
