"""Scheduling coordination: feeds the agent, commits its placements, and falls back.

The agent watches a server stream. A batch is pushed the moment the queue or the
cluster changes while placeable work is pending, and at most one batch per stream is
outstanding: the next waits for the agent's answer, so the agent never places the
same task twice. If no agent is connected, or its batch stays unanswered, for
`agent_timeout` seconds, the master places the tasks itself with the same policy
library and the default profile, and marks those decisions `fallback`.
Work offered and not validly answered keeps its age when the agent's stream closes:
an agent that reconnects in a loop (its answers refused as malformed) does not hold
the fallback off. A well-formed answer, or an empty queue, clears it.
Pinned tasks (manual override) are committed by the master directly.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator

from cloudai.convert import decision_from_pb, health_to_pb, resources_to_pb, spec_to_pb
from cloudai.errors import StoreError
from cloudai.model import DecisionRecord, Task
from cloudai.proto import master_agent_pb2 as apb

from .dispatcher import Dispatcher
from .explain import left_out_rejections
from .live import offer_window
from .registry import WorkerRegistry
from .tasks import TaskManager
from .throttle import Throttle

log = logging.getLogger("cloudai.master")
# When the store fails, the loop tries again after STORE_RETRY_S (logged: throttle.py).
STORE_RETRY_S = 1.0
MAX_BATCH = 10_000
ROTATE_S = 5.0  # a queue longer than MAX_BATCH is offered again after this, in turn
AVOID_FOR_S = 10.0
Decider = Callable[[apb.SchedulingBatch], list[apb.Decision]]


class Scheduler:
    def __init__(
        self,
        tasks: TaskManager,
        registry: WorkerRegistry,
        dispatcher: Dispatcher,
        *,
        agent_timeout: float,
        decide: Decider,
    ) -> None:
        self._tasks = tasks
        self._registry = registry
        self._dispatcher = dispatcher
        self._timeout = agent_timeout
        self._decide = decide
        self._cond = threading.Condition()
        self._version = 0
        self._seq = 0
        # Open agent streams: stream number -> the agent's watch request (its id,
        # policy, profile and model version: for status and warnings).
        self._agents: dict[int, apb.WatchRequest] = {}
        self._stream_seq = 0
        self._outstanding: dict[int, float] = {}
        # When the oldest batch offered on a stream that has closed since was offered,
        # if no well-formed answer came after it.
        self._unanswered_since: float | None = None
        self._fallback_on = False  # for logging the start and the end of fallback once
        self._disconnected_at = time.time()
        self._agent_id = ""
        # How the agent status names described itself (its watch request): that of
        # the latest stream opened, or of the last one closed once none is open.
        self._agent_about = apb.WatchRequest()
        # (agent id, its shadow policy's latest counts), from its latest answer.
        self._shadow: tuple[str, apb.ShadowReport] | None = None
        self._agent_seen = 0.0
        self._stopping = False
        self._store_log = Throttle()
        # When the earliest avoidance offered in a snapshot lapses (AVOID_FOR_S): the
        # queue must be offered again then, or a task that only an avoided worker fits
        # waits until something else changes.
        self._avoid_lapse: float | None = None
        # When to offer the queue again after an agent's commit failed in the store.
        self._store_retry_at: float | None = None
        # When the queue version last changed: every offer after it holds the tasks
        # whose backoff had run out by then.
        self._changed_at = 0.0
        # Where an oversized queue's last offer stopped, and when to offer it again.
        self._cursor: tuple[float, float, str] = (0.0, 0.0, "")
        self._rotate_at: float | None = None
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    def notify(self) -> None:
        """Something changed (task queued or finished, worker joined or left)."""
        with self._cond:
            self._changed()

    def _changed(self) -> None:
        """A new queue version, and when it came. Called with self._cond held."""
        self._version += 1
        self._changed_at = time.time()
        self._cond.notify_all()

    # -- agent status ---------------------------------------------------------------
    def agent_status(self) -> tuple[bool, str, float]:
        """(connected and answering, agent id, seconds since last heard)."""
        with self._cond:
            # A batch the agent is working on is not a silence: it answers unless
            # the fallback is due (under load one is outstanding almost always).
            healthy = bool(self._agents) and not self._fallback_due(time.time())
            seen = time.time() - self._agent_seen if self._agent_seen else -1.0
            return healthy, self._agent_id, seen

    def connected_agents(self) -> list[str]:
        """The ids of the agents whose stream is open now (one, normally)."""
        with self._cond:
            return [self._agents[n].agent_id or "?" for n in sorted(self._agents)]

    def agent_about(self) -> tuple[apb.WatchRequest, apb.ShadowReport | None]:
        """How the agent that status names described itself when it connected, and
        its shadow policy's latest counts (None: it runs no shadow, or has not said)."""
        with self._cond:
            agent_id, shadow = self._agent_id, self._shadow
            open_ = [r for _, r in sorted(self._agents.items()) if r.agent_id == agent_id]
            about = open_[-1] if open_ else self._agent_about
            if about.agent_id != agent_id:  # only its answers were heard (no stream seen)
                about = apb.WatchRequest(agent_id=agent_id)
            return about, shadow[1] if shadow and shadow[0] == agent_id else None

    def _unhealthy_since(self) -> float | None:
        """Since when work waits for an agent: the oldest batch not validly answered
        (on an open stream or a closed one), or the last stream's close."""
        since = [*self._outstanding.values()]
        if self._unanswered_since is not None:
            since.append(self._unanswered_since)
        if not self._agents:
            since.append(self._disconnected_at)
        return min(since) if since else None

    def _fallback_due(self, now: float) -> bool:
        since = self._unhealthy_since()
        return since is not None and now - since >= self._timeout

    # -- the agent's stream ---------------------------------------------------------------
    def watch(
        self,
        request: apb.WatchRequest,
        is_active: Callable[[], bool],
        on_end: Callable[[Callable[[], None]], object] | None = None,
    ) -> Iterator[apb.SchedulingBatch]:
        """The agent's stream of batches. `on_end` (gRPC's context.add_callback) runs
        a callback the moment the RPC ends, so the stream stops counting at once, not
        when this generator next wakes."""
        stream = self._open_stream(request)
        mine: set[int] = set()
        if on_end is not None:
            on_end(lambda: self._close_stream(stream, mine, request.agent_id))
        sent_version = -1
        try:
            while is_active() and self._streaming(stream):
                # The version seen counts even without a batch (an empty queue):
                # the stream then waits for the next change instead of spinning.
                batch, sent_version = self._next_batch(stream, mine, sent_version)
                if batch is not None:
                    yield batch
        finally:
            self._close_stream(stream, mine, request.agent_id)

    def _streaming(self, stream: int) -> bool:
        with self._cond:
            return not self._stopping and stream in self._agents

    def _close_stream(self, stream: int, mine: set[int], agent_id: str) -> None:
        """Count the stream out (once). Its unanswered batches keep their age."""
        with self._cond:
            offered = [self._outstanding.pop(seq) for seq in mine if seq in self._outstanding]
            if offered:
                oldest = min(offered)
                if self._unanswered_since is None or oldest < self._unanswered_since:
                    self._unanswered_since = oldest
            closed = self._agents.pop(stream, None)
            was_open = closed is not None
            if self._agents:  # status names an agent that is still there
                self._agent_id = self._agents[max(self._agents)].agent_id
            elif was_open:
                self._disconnected_at = time.time()
                self._agent_about = closed  # status still describes the last one
            self._cond.notify_all()
        if was_open:
            log.info("agent %s disconnected", agent_id or "?")

    def _open_stream(self, request: apb.WatchRequest) -> int:
        """Count the agent's stream in; warn when another agent's is open already:
        both would place the same queue (the master commits the first placement of a
        task and rejects the other as stale)."""
        agent_id = request.agent_id or "?"
        with self._cond:
            others = [r.agent_id for r in self._agents.values()]
            self._stream_seq += 1
            self._agents[self._stream_seq] = self._agent_about = request
            self._agent_id, self._agent_seen = request.agent_id, time.time()
            if self._shadow is not None and self._shadow[0] == request.agent_id:
                self._shadow = None  # a new run of that agent counts afresh
            stream = self._stream_seq
        log.info("agent %s connected (policy %s)", agent_id, request.policy or "default")
        if others:
            log.warning(
                "agent %s connected while %d other agent stream(s) are open (%s): "
                "run one agent per master; their placements race and the later ones "
                "are rejected",
                agent_id,
                len(others),
                ", ".join(a or "?" for a in others),
            )
        return stream

    def _next_batch(
        self, stream: int, mine: set[int], sent_version: int
    ) -> tuple[apb.SchedulingBatch | None, int]:
        """The next batch for this stream and the queue version it shows, or None
        after at most a second when nothing is due."""

        def closed() -> bool:
            return self._stopping or stream not in self._agents

        def due() -> bool:
            return not (mine & self._outstanding.keys()) and self._version != sent_version

        with self._cond:
            self._cond.wait_for(lambda: closed() or due(), timeout=1.0)
            if closed() or not due():
                return None, sent_version
            version = self._version
        tasks = self._window(self._tasks.pending(pinned=False))
        with self._cond:
            if not tasks:  # nothing waits, so nothing offered earlier is still owed
                self._unanswered_since = None
                return None, version
            if stream not in self._agents:  # closed meanwhile: offer nothing
                return None, sent_version
            self._seq += 1
            seq = self._seq
            self._outstanding[seq] = time.time()
            mine.add(seq)
        return self.snapshot(tasks, seq), version

    def submit(self, batch: apb.PlacementBatch) -> apb.PlacementResults:
        """Commit each decision on its own; answer with a result per task. The batch
        stays outstanding until its commits are done, so the agent's next snapshot
        never holds a task this batch is placing."""
        with self._cond:
            self._agent_id, self._agent_seen = batch.agent_id or self._agent_id, time.time()
            resumed, self._fallback_on = self._fallback_on, False
            if batch.HasField("shadow"):
                self._shadow = (self._agent_id, batch.shadow)
            elif self._shadow is not None and self._shadow[0] == self._agent_id:
                # An answer without a shadow: whatever ran one under this id (another
                # run of it, now gone) no longer describes it.
                self._shadow = None
        if resumed:
            log.info("agent %s answering again; fallback off", batch.agent_id or "?")
        try:
            results = self._apply_all(batch.decisions, source="agent")
        except StoreError:
            # Nothing was committed. Offer the queue again shortly, on this stream
            # too: the agent may keep it open, and no queue change may come.
            with self._cond:
                self._store_retry_at = time.time() + STORE_RETRY_S
                self._cond.notify_all()
            raise
        finally:
            with self._cond:
                # A well-formed answer (the servicer refuses malformed ones before
                # this): the agent answers, whatever it was offered earlier.
                self._outstanding.pop(batch.sequence, None)
                self._unanswered_since = None
                self._cond.notify_all()
        return apb.PlacementResults(results=results)

    def _apply_all(
        self, decisions: Iterable[apb.Decision], *, source: str, fallback: bool = False
    ) -> list[apb.PlacementResult]:
        """Commit each decision on its own, all in one store transaction; dispatch to
        workers only once that transaction is durable."""
        results, placed = [], []
        left_out = self._left_out_rejections()  # once per batch, not per decision
        with self._dispatcher.commit_first(), self._tasks.batch():
            for d in decisions:
                result, task = self._apply(d, source=source, fallback=fallback, left_out=left_out)
                results.append(result)
                if task is not None:
                    placed.append(task)
        if placed:
            self._dispatcher.assign(placed)
        return results

    def _apply(
        self,
        d: apb.Decision,
        *,
        source: str,
        fallback: bool = False,
        left_out: dict[str, int] | None = None,
    ) -> tuple[apb.PlacementResult, Task | None]:
        """Commit one decision. An unplaced task also counts the workers `left_out`
        of the snapshot among its rejections (see _left_out_rejections)."""
        record = decision_from_pb(d)
        record.source, record.fallback, record.decided_at = source, fallback, time.time()
        if not d.worker_id:
            record.rejections.update(left_out or {})
            self._tasks.record_unplaced(record)
            reason = d.hint or "unplaced"
            return apb.PlacementResult(task_id=d.task_id, accepted=False, reason=reason), None
        task, reason = self._tasks.commit_placement(d.task_id, d.attempt, d.worker_id, record)
        if task is None:
            # A pinned task waiting for room on its worker is tried on every change:
            # normal, and `explain` says why (it once logged 26,000 lines a minute).
            level = logging.DEBUG if source == "manual" else logging.INFO
            log.log(level, "placement of %s on %s rejected: %s", d.task_id, d.worker_id, reason)
            return apb.PlacementResult(task_id=d.task_id, accepted=False, reason=reason), None
        return apb.PlacementResult(task_id=d.task_id, accepted=True), task

    def _left_out_rejections(self) -> dict[str, int]:
        """The workers left out of the snapshot, as rejections of a decision."""
        registry = self._registry
        return left_out_rejections(registry.unreachable(), registry.engine_troubled())

    def _window(self, queue: list[Task]) -> list[Task]:
        """At most MAX_BATCH of the queue, chosen in turn (live.offer_window)."""
        with self._cond:
            cursor = self._cursor
        tasks, cursor = offer_window(queue, MAX_BATCH, cursor)
        with self._cond:
            self._cursor = cursor
            if len(tasks) < len(queue) and self._rotate_at is None:
                # The others wait for their turn: offer again soon, change or not.
                self._rotate_at = time.time() + ROTATE_S
        return tasks

    # -- snapshot -----------------------------------------------------------------------
    def snapshot(self, tasks: list[Task], seq: int = 0) -> apb.SchedulingBatch:
        now = time.time()
        batch = apb.SchedulingBatch(sequence=seq, timestamp=now)
        self._note_avoid_lapse(tasks, now)
        for t in tasks:
            batch.tasks.append(
                apb.PendingTask(
                    task_id=t.id,
                    attempt=t.attempt,
                    spec=spec_to_pb(t.spec, redact_secrets=True),
                    created_at=t.created_at,
                    queued_at=t.queued_at,
                    # Avoiding the workers where earlier attempts died is a preference:
                    # it lapses for a task that has waited AVOID_FOR_S, so a task whose
                    # only fitting worker is avoided (one worker, back after a loss)
                    # is not stuck in the queue for ever.
                    avoid_workers=t.avoid_workers if now - t.queued_at < AVOID_FOR_S else [],
                )
            )
        for e in self._registry.all():
            # A worker the master cannot reach is not offered until it is reached again,
            # nor one that cannot run containers until it says it can.
            if not e.registered or e.unreachable is not None or e.engine_trouble:
                continue
            batch.workers.append(
                apb.WorkerSnapshot(
                    worker_id=e.record.id,
                    capacity=resources_to_pb(e.record.capacity),
                    allocated=resources_to_pb(self._tasks.allocated(e.record.id)),
                    telemetry=e.telemetry,
                    cached_images=e.cached_images,
                    labels=e.record.labels,
                    health=health_to_pb(e.record.health),
                    left_at=e.left_at,
                )
            )
        return batch

    def _note_avoid_lapse(self, tasks: list[Task], now: float) -> None:
        lapses = [
            t.queued_at + AVOID_FOR_S
            for t in tasks
            if t.avoid_workers and now - t.queued_at < AVOID_FOR_S
        ]
        if lapses:
            with self._cond:
                if self._avoid_lapse is None or min(lapses) < self._avoid_lapse:
                    self._avoid_lapse = min(lapses)

    def _wakeup(self) -> float | None:
        """When the loop must offer the queue again: a backoff or an avoidance ends, a
        store failure's retry or an oversized queue's next turn is due. Called with
        self._cond held."""
        backoff = self._tasks.next_wakeup()
        timers = [backoff, self._avoid_lapse, self._store_retry_at, self._rotate_at]
        if self._tasks.came_due_at() > self._changed_at:
            # A backoff ran out after the last change without the timer seeing it (the
            # loop was busy placing then): offer the queue now, or that task would wait
            # for an unrelated change.
            timers.append(time.time())
        times = [w for w in timers if w is not None]
        return min(times) if times else None

    def _forget_due(self, now: float) -> None:
        """The queue is offered again now: forget the avoidance lapse, store retry and
        rotation that this covers (each is offered once, not on every loop after)."""
        self._avoid_lapse, self._store_retry_at, self._rotate_at = (
            None if at is not None and now >= at else at
            for at in (self._avoid_lapse, self._store_retry_at, self._rotate_at)
        )

    def dry_run(self, task: Task) -> DecisionRecord:
        """What the default policy would decide for this task now, changing nothing."""
        decisions = self._decide(self.snapshot([task]))
        record = decision_from_pb(decisions[0]) if decisions else DecisionRecord(task.id, 0)
        record.source = "dry-run"
        if not record.worker_id:
            record.rejections.update(self._left_out_rejections())
        return record

    # -- the master's own loop: manual pins, fallback, backoff timers -------------------------
    def _loop(self) -> None:
        fallback_version = pinned_version = -1
        while True:
            with self._cond:
                wake = self._wakeup()
                timeout = 0.2 if wake is None else max(0.0, min(0.2, wake - time.time()))
                self._cond.wait(timeout=timeout)
                if self._stopping:
                    return
                if wake is not None and time.time() >= wake:
                    # A retry's backoff ran out: that is a queue change too.
                    self._changed()
                    self._forget_due(time.time())
                version, due = self._version, self._fallback_due(time.time())
            try:
                # Only on a change: a pin that does not fit now is not retried in a spin.
                if version != pinned_version:
                    pinned_version = version
                    self._place_pinned()
                if due and version != fallback_version:
                    fallback_version = version
                    self._fallback()
            except StoreError as err:
                # Not a bug: the store failed (a full disk, a database outage). Nothing
                # was placed; try again shortly, as the store may come back.
                fallback_version = pinned_version = -1
                self._store_failed(err)
            except Exception:  # a bug must not kill the scheduler thread
                log.exception("scheduler loop error")

    def _store_failed(self, err: StoreError) -> None:
        if self._store_log.ready():
            log.error("placing tasks failed, retrying every %.0fs: %s", STORE_RETRY_S, err)
        with self._cond:
            if not self._stopping:
                self._cond.wait(timeout=STORE_RETRY_S)

    def _place_pinned(self) -> None:
        self._tasks.fail_pinned_to_gone(self._registry.gone_for_good)
        decisions = [
            apb.Decision(
                task_id=t.id,
                attempt=t.attempt,
                worker_id=t.spec.pinned_worker,
                policy="manual",
                summary=f"pinned to {t.spec.pinned_worker} (manual override)",
            )
            for t in self._tasks.pending(pinned=True)
        ]
        if decisions:
            self._apply_all(decisions, source="manual")

    def _fallback(self) -> None:
        tasks = self._window(self._tasks.pending(pinned=False))
        if not tasks:
            return
        with self._cond:
            starts, self._fallback_on = not self._fallback_on, True
        log.log(
            logging.INFO if starts else logging.DEBUG,
            "no agent answering for %.1fs: placing %d task(s) by fallback%s",
            self._timeout,
            len(tasks),
            " (logged at DEBUG from now until an agent answers)" if starts else "",
        )
        self._apply_all(self._decide(self.snapshot(tasks)), source="master", fallback=True)
