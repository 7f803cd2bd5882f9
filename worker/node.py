"""A worker node: the gRPC server the master calls, membership with the master,
and one thread per running attempt whose outcome goes to the Reporter.

Fencing: the master is the judge of which attempt is current. When it refuses a
report, or names attempts to stop, those attempts are killed and their results
are not reported (the master would refuse them anyway).

A finished attempt's container is removed only once the master has answered its
result: a worker killed in between finds the exited container again (re-adoption)
and reports it once more, so no result is lost. A periodic sweep re-adopts any
container of this worker that nobody supervises (say, missed while Docker was down)
and removes those of fenced attempts.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import grpc

from cloudai.config import WorkerSettings
from cloudai.convert import state_to_pb
from cloudai.model import Reason, TaskSpec, TaskState
from cloudai.proto import common_pb2
from cloudai.proto import master_worker_pb2 as mw
from cloudai.proto import master_worker_pb2_grpc as mw_grpc
from cloudai.rpc import build_server, listen_address
from cloudai.security.setup import for_worker
from cloudai.validation import format_size, validate_id, validate_labels
from cloudai.worker.containers import policy_problem
from cloudai.worker.executor import DockerExecutor
from cloudai.worker.logs import LogStream
from cloudai.worker.membership import MemberHooks, Membership, master_channel
from cloudai.worker.outcome import Outcome
from cloudai.worker.reporter import Reporter
from cloudai.worker.service import SERVICE_NAME, WorkerServicer
from cloudai.worker.telemetry import machine_capacity

Key = tuple[str, int]
LEFTOVER_SWEEP_S = 10.0
# Settled attempts remembered so the sweep does not re-adopt a container whose
# removal failed (it removes it instead).
DONE_MEMORY = 1024
# Fenced attempts (the master no longer runs them) that never settle here, remembered.
FENCED_MEMORY = 4096


class WorkerNode:
    def __init__(self, settings: WorkerSettings, *, executor: DockerExecutor | None = None) -> None:
        # What the master would refuse at every registration, refused here at once.
        validate_id("worker id", settings.id)
        validate_labels(dict(settings.labels))
        self.settings = settings
        self.executor = executor or DockerExecutor(settings)
        self.executor.keep_finished = True  # removed once the master has the result
        self.capacity = machine_capacity(settings)
        # TLS, tokens and the bind address; refuses a non-loopback --ip without TLS.
        self.security, self._bind = for_worker(settings, self.say)
        self._channel = master_channel(settings.master, self.security.transport)
        self.reporter = Reporter(
            self._channel,
            name=settings.id,
            on_refused=self._on_refused,
            on_answered=self._on_answered,
        )
        hooks = MemberHooks(
            self.running,
            self.executor.cached_images,
            self._stop_attempts,
            self.say,
            self._fail,
            self.executor.engine_trouble,
        )
        # Set when the master refused this worker for good (see `failed`).
        self.error = ""
        self._failed = threading.Event()
        self.membership = Membership(settings, self._channel, self.capacity, hooks)
        self._lock = threading.Lock()
        self._attempts: dict[Key, threading.Thread] = {}
        # Finished attempts whose result the master has not acknowledged yet: still
        # listed as running, so the master never takes them for lost in between.
        self._unacked: set[Key] = set()
        self._fenced: OrderedDict[Key, None] = OrderedDict()  # bounded: see _fence
        self._cancel_requested: set[Key] = set()
        self._done: OrderedDict[Key, None] = OrderedDict()
        self._draining = False
        self._halt = threading.Event()
        self._sweeper = threading.Thread(target=self._sweep, name="leftovers", daemon=True)
        self._stopped = threading.Event()
        self._server: grpc.Server | None = None
        self.port = 0
        self.address = ""

    # ---- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        """Check the Docker engine, bind and serve, re-adopt leftover containers,
        then register (in the background: a master that is down is retried, not
        fatal). Raises Unavailable when the engine does not answer: a worker without
        one would register as ACTIVE and fail every task placed on it."""
        self.executor.check_engine()
        servicer = WorkerServicer(self)
        server, port, _health = build_server(
            listen_address(self._bind, self.settings.port),
            [lambda s: mw_grpc.add_WorkerServicer_to_server(servicer, s)],
            [SERVICE_NAME],
            tls=self.security.transport.tls,
            interceptors=self.security.interceptors,
        )
        server.start()
        self._server, self.port = server, port
        ip = self.settings.ip
        self.address = f"[{ip}]:{port}" if ":" in ip and not ip.startswith("[") else f"{ip}:{port}"
        self.say(f"serving on {self.address}; master at {self.settings.master}")
        self.reporter.start()
        self._adopt_leftovers()
        self._sweeper.start()
        self.membership.start(self.address)

    def stop(self, grace: float = 5.0, *, kill_running: bool = False) -> None:
        """Stop heartbeats and new tasks, flush reports briefly, tell the master this
        worker leaves (best effort, bounded), stop the server. Running containers are
        left alone unless kill_running: a restarted worker re-adopts them. With
        kill_running their CANCELLED results are flushed before the leave."""
        if self._stopped.is_set():
            return
        self._halt.set()
        with self._lock:
            self._draining = True
            running = dict(self._attempts)
        self.membership.stop()
        if kill_running:
            for task_id, attempt in running:
                self.executor.cancel(task_id, attempt)
            # Let their CANCELLED results reach the reporter before it flushes.
            for thread in running.values():
                if thread.is_alive():
                    thread.join(timeout=max(0.1, grace / max(1, len(running))))
        left = self.reporter.stop(flush_timeout=min(grace, 3.0))
        if left:
            self.say(f"{left} report(s) not delivered before shutdown")
        self.membership.leave()
        if self._server is not None:
            self._server.stop(grace=min(grace, 1.0)).wait()
        self._channel.close()
        self._stopped.set()
        if self._server is not None:  # a start that failed said why in one line
            self.say("stopped")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until stop() finished; False on timeout."""
        return self._stopped.wait(timeout)

    def failed(self) -> bool:
        """The master refused this worker for good (`error` says why): the process
        should stop and exit non-zero."""
        return self._failed.is_set()

    def _fail(self, message: str) -> None:
        self.error = message
        self._failed.set()

    # ---- called by the servicer ---------------------------------------------

    def assign(self, task_id: str, attempt: int, spec: TaskSpec) -> tuple[bool, str]:
        key = (task_id, attempt)
        with self._lock:
            if key in self._attempts:
                return True, "already running"  # a retried AssignTask: idempotent
            if key in self._unacked or key in self._done or key in self._fenced:
                # A duplicate of an assignment that ran here already: its end is known
                # (or being reported), so the same attempt must not run a second time.
                return True, "already ran here"
            # Only our own shutdown refuses work. The master's drain flag reaches us with
            # the next heartbeat, so it can be stale (a drain just lifted); the master is
            # the authority and places nothing on a worker it drains.
            if self._draining:
                return False, "worker is shutting down"
            trouble = self.executor.engine_trouble()
            if trouble:  # the master places it again later, or elsewhere
                return False, f"{trouble}; not taking tasks until it answers"
            newer = [a for t, a in self._attempts if t == task_id and a > attempt]
            if newer:
                return False, f"attempt {max(newer)} of this task runs here already"
            older = [k for k in self._attempts if k[0] == task_id]
            thread = threading.Thread(
                target=self._run_attempt, args=(task_id, attempt, spec), daemon=True
            )
            self._attempts[key] = thread
            for old in older:
                self._fence(old)
        for old_task, old_attempt in older:
            self._event(old_task, old_attempt, "superseded by a newer attempt, stopping")
            self.executor.cancel(old_task, old_attempt)
        self._event(task_id, attempt, f"ACCEPTED {spec.image}")
        thread.start()
        return True, "accepted"

    def cancel(self, task_id: str, attempt: int, reason: str = "") -> bool:
        with self._lock:
            keys = [k for k in self._attempts if k[0] == task_id and attempt in (0, k[1])]
            self._cancel_requested.update(keys)
        found = self.executor.cancel(task_id, attempt)
        for key in keys:
            self._event(*key, f"cancel requested{': ' + reason if reason else ''}")
        return found or bool(keys)

    def logs(self, task_id: str, attempt: int, follow: bool, tail: int) -> LogStream:
        return self.executor.logs(task_id, attempt, follow=follow, tail=tail)

    def running(self) -> list[Key]:
        """Attempts this worker holds: running, or finished but not yet acknowledged."""
        with self._lock:
            return sorted(set(self._attempts) | self._unacked)

    # ---- attempts -----------------------------------------------------------

    def _run_attempt(self, task_id: str, attempt: int, spec: TaskSpec) -> None:
        key = (task_id, attempt)
        try:
            refused = policy_problem(spec, self.settings)
            if self._is_cancelled(key):
                outcome = Outcome(TaskState.CANCELLED, None, Reason.CANCELLED, "cancelled")
            elif refused:  # e.g. a capability this worker's admin does not allow
                outcome = Outcome(TaskState.FAILED, None, Reason.INVALID_SPEC, refused)
            else:
                outcome = self.executor.run(
                    task_id, attempt, spec, on_running=lambda t, c: self._on_running(key, t, c)
                )
        except Exception as err:  # a bug here must still end in a report
            outcome = Outcome(TaskState.FAILED, None, Reason.DOCKER_ERROR, f"worker error: {err!r}")
        self._finish(key, outcome)

    def _adopt_leftovers(self) -> None:
        """Supervise this worker's containers that nobody supervises; remove those of
        attempts that are fenced or already settled."""
        for task_id, attempt, status in self.executor.list_managed():
            key = (task_id, attempt)
            with self._lock:
                if key in self._attempts or key in self._unacked:
                    continue
                settled = key in self._fenced or key in self._done
                if not settled:
                    thread = threading.Thread(target=self._adopt, args=key, daemon=True)
                    self._attempts[key] = thread
            if settled:
                self.executor.remove(*key)
                continue
            self._event(task_id, attempt, f"re-adopting its container ({status})")
            thread.start()

    def _sweep(self) -> None:
        while not self._halt.wait(LEFTOVER_SWEEP_S):
            try:
                self._adopt_leftovers()
            except Exception as err:  # the sweep must outlive a bug or an engine blip
                self.say(f"leftover sweep failed: {err!r}")

    def _adopt(self, task_id: str, attempt: int) -> None:
        self._finish((task_id, attempt), self.executor.adopt(task_id, attempt))

    def _on_running(self, key: Key, started_at: float, container_id: str) -> None:
        if self._is_cancelled(key):  # a cancel that raced with the start
            self.executor.cancel(*key)
            return
        self._event(*key, f"RUNNING (container {container_id[:12]})")
        self.reporter.submit(
            mw.TaskStatusReport(
                worker_id=self.settings.id,
                task_id=key[0],
                attempt=key[1],
                state=state_to_pb(TaskState.RUNNING),
                started_at=started_at,
                container_id=container_id,
            )
        )

    def _finish(self, key: Key, outcome: Outcome) -> None:
        self._event(*key, _describe(outcome))
        with self._lock:
            self._attempts.pop(key, None)
            self._cancel_requested.discard(key)
            fenced = key in self._fenced
            if not fenced:
                self._unacked.add(key)
        if fenced:
            self._event(*key, "result not reported: the master no longer runs this attempt")
            self._settle(key)
            return
        if outcome.state == TaskState.CANCELLED:
            self.executor.remove(*key)  # the master decided this end: nothing to re-adopt
        self.reporter.submit(self._report(key, outcome))

    def _report(self, key: Key, outcome: Outcome) -> mw.TaskStatusReport:
        return mw.TaskStatusReport(
            worker_id=self.settings.id,
            task_id=key[0],
            attempt=key[1],
            state=state_to_pb(outcome.state),
            exit_code=outcome.exit_code if outcome.exit_code is not None else 0,
            has_exit_code=outcome.exit_code is not None,
            reason=str(outcome.reason),
            message=outcome.message,
            log_tail=outcome.log_tail,
            started_at=outcome.started_at,
            finished_at=outcome.finished_at,
            peak_memory_bytes=outcome.peak_memory_bytes,
            container_id=outcome.container_id,
        )

    def _on_answered(self, report: mw.TaskStatusReport, accepted: bool) -> None:
        if report.state != state_to_pb(TaskState.RUNNING):
            # Off the reporter's thread: a slow engine must not hold up other reports.
            key = (report.task_id, report.attempt)
            threading.Thread(target=self._settle, args=(key,), daemon=True).start()

    def _settle(self, key: Key) -> None:
        """The attempt's end is known to the master (or no longer wanted): remove its
        container, then stop listing it as running."""
        self.executor.remove(*key)
        with self._lock:
            self._unacked.discard(key)
            self._fenced.pop(key, None)  # `_done` remembers it from now on
            self._done[key] = None
            while len(self._done) > DONE_MEMORY:
                self._done.popitem(last=False)

    def _fence(self, key: Key) -> None:
        """Mark an attempt the master no longer runs (with the lock held). Most leave
        with `_settle`; those that never ran here are forgotten oldest first past
        FENCED_MEMORY (the master refuses their reports anyway)."""
        self._fenced[key] = None
        self._fenced.move_to_end(key)
        while len(self._fenced) > FENCED_MEMORY:
            self._fenced.popitem(last=False)

    def _on_refused(self, report: mw.TaskStatusReport, message: str) -> None:
        """The master says this attempt is not current: stop it if it still runs."""
        key = (report.task_id, report.attempt)
        with self._lock:
            self._fence(key)
            running = key in self._attempts
        if running:
            self._event(*key, "stopping: the master refused its report")
            self.executor.cancel(*key)

    def _stop_attempts(self, refs: Sequence[common_pb2.TaskRef]) -> None:
        """Called from the heartbeat thread: the kills and removals go to a thread of
        their own, since an engine that hangs would hold each for the client's timeout
        and the master would miss our heartbeats meanwhile."""
        keys = [(ref.task_id, ref.attempt) for ref in refs]
        with self._lock:
            for key in keys:
                self._fence(key)
                self._unacked.discard(key)
        threading.Thread(target=self._stop, args=(keys,), name="stop", daemon=True).start()

    def _stop(self, keys: list[Key]) -> None:
        for key in keys:
            if self.executor.cancel(*key):
                self._event(*key, "stopping: superseded at the master")

    def _is_cancelled(self, key: Key) -> bool:
        with self._lock:
            return key in self._cancel_requested or key in self._fenced

    # ---- output ---------------------------------------------------------------

    def say(self, text: str) -> None:
        print(f"[{self.settings.id}] {text}", flush=True)

    def _event(self, task_id: str, attempt: int, text: str) -> None:
        self.say(f"task {task_id} attempt {attempt}: {text}")


def _describe(outcome: Outcome) -> str:
    parts = [outcome.state.value]
    if outcome.exit_code is not None:
        parts.append(f"exit={outcome.exit_code}")
    if outcome.reason not in (Reason.COMPLETED, ""):
        parts.append(str(outcome.reason))
    if outcome.started_at and outcome.finished_at:
        parts.append(f"in {outcome.finished_at - outcome.started_at:.1f}s")
    if outcome.peak_memory_bytes:
        parts.append(f"peak {format_size(outcome.peak_memory_bytes)}")
    elif not outcome.peak_known:
        parts.append("peak memory unknown")
    text = " ".join(parts)
    if outcome.message and outcome.state != TaskState.SUCCEEDED:
        text += f": {outcome.message}"
    return text
