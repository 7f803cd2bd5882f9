"""Calls from the master to workers: AssignTask, CancelTask, GetTaskLogs.

Dispatch runs on its own thread with non-blocking calls, outside the master's lock,
so a slow or dead worker never stalls placement or other RPCs.

A dispatch that cannot reach its worker (UNAVAILABLE, DEADLINE_EXCEEDED) marks the
worker unreachable in the registry (placement leaves it out); any answer from it clears
the mark. While a worker is marked, a prober thread checks it each time its cool-down
ends: connected clears the mark, not connected starts a cool-down twice as long.
A worker that answers with another error (it refuses the master's token, the request,
or is out of room for it) is reachable: its tasks go back to the queue as refused, and
it stays in placement. A batch it found too large is sent again in halves.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc

from cloudai import rpc
from cloudai.convert import spec_to_pb
from cloudai.model import Task, TaskSpec
from cloudai.proto import common_pb2
from cloudai.proto import master_worker_pb2 as mw
from cloudai.proto import master_worker_pb2_grpc as mw_grpc
from cloudai.text import printable

from .registry import WorkerRegistry
from .tasks import TaskManager

log = logging.getLogger("cloudai.master")
ASSIGN_TIMEOUT_S = 10.0
# Dispatch batching under load: after a batch of at least LINGER_MIN_TASKS placements,
# wait LINGER_S so that batches committed meanwhile share its calls to the workers.
LINGER_MIN_TASKS = 64
LINGER_S = 0.01
# Commits go first: every YIELD_EVERY calls, dispatch waits up to YIELD_S for a batch
# of commits in progress to finish (see Dispatcher.commit_first).
YIELD_EVERY = 32
YIELD_S = 0.05
# The prober wakes every PROBE_INTERVAL_S and gives a connection PROBE_TIMEOUT_S.
PROBE_INTERVAL_S = 1.0
PROBE_TIMEOUT_S = 2.5
# Errors that mean the worker could not be reached: no connection, or no answer in time.
# Any other status is the worker's answer (it refused the call), so it is reachable.
TRANSPORT_ERRORS = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
# One AssignTasks call stays well under what a worker accepts in one request
# (rpc.MAX_REQUEST_BYTES, and the worker's bound on assignments per batch).
MAX_CALL_BYTES = rpc.MAX_REQUEST_BYTES // 2
MAX_CALL_TASKS = 512
# A worker's refusal or error text, as stored on the task: bounded and printable.
MAX_PEER_TEXT = 300
# What to check when a worker refuses the master's credentials.
_AUTH_ADVICE = (
    " (the worker checks the master's token: start the master with "
    "--dispatch-token-file holding a token of role master from the worker's --tokens file)"
)


class Dispatcher:
    def __init__(
        self,
        registry: WorkerRegistry,
        tasks: TaskManager,
        *,
        channel: Callable[..., grpc.Channel] = rpc.channel,
        reveal: Callable[[TaskSpec], TaskSpec] = lambda spec: spec,
        on_reachable: Callable[[], None] = lambda: None,
        server_name: Callable[[str], str] = lambda worker_id: "",
    ) -> None:
        """`channel` dials a worker (with the master's TLS and token); `reveal`
        decrypts a task's sealed secret env values just before they are sent;
        `on_reachable` is called when an unreachable worker is reached again;
        `server_name(worker_id)`, with TLS, is the name the worker's certificate must
        carry ("": its address's host). The master gives the worker's id: every
        certificate names localhost, so otherwise another worker's certificate could
        serve on this one's loopback address and take its tasks, secrets revealed."""
        self._registry = registry
        self._tasks = tasks
        self._channel = channel
        self._reveal = reveal
        self._on_reachable = on_reachable
        self._server_name = server_name
        self._pool = futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="dispatch")
        self._queue: queue.SimpleQueue[list[Task] | None] = queue.SimpleQueue()
        # By (address, the name its certificate must carry); and by (address, name,
        # worker id) the registration (registry entry) each worker's calls went out for.
        self._stubs: dict[tuple[str, str], tuple[str, mw_grpc.WorkerStub, grpc.Channel]] = {}
        self._dialed_for: dict[tuple[str, str, str], object] = {}
        self._lock = threading.Lock()
        self._commits = 0
        self._no_commit = threading.Event()
        self._no_commit.set()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._dispatch_loop, name="dispatch", daemon=True)
        self._thread.start()
        self._prober = threading.Thread(target=self._probe_loop, name="probe", daemon=True)
        self._prober.start()

    def _stub(self, worker_id: str) -> mw_grpc.WorkerStub | None:
        conn = self._connect(worker_id)
        return conn[1] if conn else None

    def _connect(self, worker_id: str) -> tuple[str, mw_grpc.WorkerStub, grpc.Channel] | None:
        """(address, stub, channel) of the worker, kept open. `server_name(id)` is the
        name its certificate must carry instead of the address's host (see __init__).

        A worker that registers again (a restarted process) gets a new channel: the old
        one may still wait out gRPC's reconnect backoff from while the worker was down,
        and fail every call at once with the old "connection refused" meanwhile (the
        restarted worker would be marked unreachable, and its tasks refused)."""
        entry = self._registry.get(worker_id)
        if entry is None:
            return None
        address = entry.record.address
        name = self._server_name(worker_id)
        key, mine = (address, name), (address, name, worker_id)
        stale = None
        with self._lock:
            cached = self._stubs.get(key)
            before = self._dialed_for.get(mine)
            if cached is not None and before is not None and before is not entry:
                stale, cached = cached[2], None  # this worker registered again
            if cached is None:
                ch = self._channel(address, name) if name else self._channel(address)
                cached = (address, mw_grpc.WorkerStub(ch), ch)
                self._stubs[key] = cached
            self._dialed_for[mine] = entry
        if stale is not None:
            stale.close()  # the calls on it went to the worker's previous process
        return cached

    @contextmanager
    def commit_first(self) -> Iterator[None]:
        """Around a batch of commits: dispatch pauses (between groups of calls, for
        at most YIELD_S each time) so the commit that an agent is waiting on does not
        share the interpreter with it; dispatch catches up in between."""
        with self._lock:
            self._commits += 1
            self._no_commit.clear()
        try:
            yield
        finally:
            with self._lock:
                self._commits -= 1
                if self._commits == 0:
                    self._no_commit.set()

    def assign(self, tasks: list[Task]) -> None:
        """Send committed placements to their workers, one call per worker. This only
        queues them: a single thread issues non-blocking calls, so a large batch costs
        the committing thread nothing and no pool of blocked threads competes with it."""
        self._queue.put(list(tasks))

    def _dispatch_loop(self) -> None:
        while (tasks := self._drain()) is not None:
            self._dispatch(tasks)

    def _dispatch(self, tasks: list[Task]) -> None:
        """One call per worker for all of `tasks`."""
        by_worker: dict[str, list[Task]] = {}
        for task in tasks:
            by_worker.setdefault(task.worker_id, []).append(task)
        for i, (worker_id, group) in enumerate(by_worker.items()):
            if i % YIELD_EVERY == 0:
                self._no_commit.wait(YIELD_S)
            try:
                self._send(worker_id, group)
            except Exception:  # a bug must not stop dispatching
                log.exception("dispatch to %s failed", worker_id)

    def _drain(self) -> list[Task] | None:
        """Wait for committed placements, then take every batch queued since: under
        load, batches committed while the last ones were sent travel together, one
        call per worker instead of one per worker per batch. A large batch waits
        LINGER_S for more to join it (a lone task never waits). None means stop."""
        tasks = self._queue.get()
        if tasks is not None and len(tasks) >= LINGER_MIN_TASKS:
            time.sleep(LINGER_S)
        while tasks is not None:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                return tasks
            if more is None:
                self._queue.put(None)  # deliver what was taken, then stop
                return tasks
            tasks.extend(more)
        return None

    def _send(self, worker_id: str, tasks: list[Task]) -> None:
        # A task cancelled (or requeued) since its commit is not sent: its worker would
        # run it until its next heartbeat, beside the task given its room meanwhile.
        tasks = [t for t in tasks if self._tasks.is_current(t.id, t.attempt)]
        if not tasks:
            return
        address = self._address(worker_id)
        stub = self._stub(worker_id)
        if stub is None:
            for task in tasks:
                self._tasks.dispatch_failed(
                    task.id, task.attempt, "worker vanished", unreachable=True
                )
            return
        reqs = [
            # Sealed secret env values are decrypted only here, on their way to the worker.
            mw.AssignTaskRequest(
                task_id=t.id, attempt=t.attempt, spec=spec_to_pb(self._reveal(t.spec))
            )
            for t in tasks
        ]
        for lo, hi in _calls(reqs):
            self._call(worker_id, address, stub, tasks[lo:hi], reqs[lo:hi])

    def _call(
        self,
        worker_id: str,
        address: str,
        stub: mw_grpc.WorkerStub,
        tasks: list[Task],
        reqs: list[mw.AssignTaskRequest],
    ) -> None:
        if len(reqs) == 1:
            call = stub.AssignTask.future(reqs[0], timeout=ASSIGN_TIMEOUT_S)
        else:
            batch = mw.AssignTasksRequest(assignments=reqs)
            call = stub.AssignTasks.future(batch, timeout=ASSIGN_TIMEOUT_S)
        call.add_done_callback(lambda fut: self._settle(worker_id, address, tasks, fut))

    def _settle(self, worker_id: str, address: str, tasks: list[Task], fut: grpc.Future) -> None:
        """Runs when the worker answered: requeue what it refused or never got."""
        try:
            resp = fut.result()
            answers = [resp] if len(tasks) == 1 else list(resp.results)
        except grpc.RpcError as err:
            self._failed(worker_id, address, tasks, err)
            return
        self._reachable(worker_id)
        for task, resp in zip(tasks, answers, strict=False):
            if not resp.accepted:
                reason = f"worker refused: {printable(resp.message, MAX_PEER_TEXT)}"
                self._tasks.dispatch_failed(task.id, task.attempt, reason)
        if len(answers) < len(tasks):  # a worker that answers only some: requeue the rest
            reason = f"worker {worker_id} answered {len(answers)} of {len(tasks)} assignments"
            log.warning("dispatch to %s: %s", address, reason)
            for task in tasks[len(answers) :]:
                self._tasks.dispatch_failed(task.id, task.attempt, reason)

    def _failed(self, worker_id: str, address: str, tasks: list[Task], err: grpc.RpcError) -> None:
        """A call ended in an error: the worker could not be reached, or it refused."""
        code = err.code()
        if code in TRANSPORT_ERRORS:
            msg = f"worker {worker_id} unreachable at {address}: {code.name}"
            log.warning("dispatch of %d task(s) failed: %s", len(tasks), msg)
            self._unreachable(worker_id, address, err)
            for task in tasks:
                self._tasks.dispatch_failed(task.id, task.attempt, msg, unreachable=True)
            return
        self._reachable(worker_id)  # it answered
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED and len(tasks) > 1:
            log.info("worker %s found a batch of %d too large: halving it", worker_id, len(tasks))
            self._resend_halves(worker_id, tasks)
            return
        msg = f"worker {worker_id} refused the task: {_error_text(err)}"
        auth = code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
        log.warning("dispatch of %d task(s): %s%s", len(tasks), msg, _AUTH_ADVICE if auth else "")
        for task in tasks:
            self._tasks.dispatch_failed(task.id, task.attempt, msg)

    def _resend_halves(self, worker_id: str, tasks: list[Task]) -> None:
        half = len(tasks) // 2
        for part in (tasks[:half], tasks[half:]):
            try:
                self._send(worker_id, part)
            except Exception:  # a bug must not lose the other half
                log.exception("dispatch to %s failed", worker_id)

    def _address(self, worker_id: str) -> str:
        entry = self._registry.get(worker_id)
        return entry.record.address if entry else "?"

    # -- reachability --------------------------------------------------------------------
    def _unreachable(self, worker_id: str, address: str, err: grpc.RpcError) -> None:
        """Mark the worker unreachable before its tasks are requeued, so that the
        placement of the requeued tasks already leaves it out."""
        error = _error_text(err)
        mark, new = self._registry.mark_unreachable(worker_id, error, address)
        if mark is not None and new:
            log.warning(
                "worker %s unreachable at %s: %s; not placing on it for %gs",
                worker_id,
                address,
                error,
                mark.until - mark.since,
            )

    def _reachable(self, worker_id: str) -> None:
        if self._registry.mark_reachable(worker_id):
            log.info("worker %s reachable again", worker_id)
            self._on_reachable()

    def _probe_loop(self) -> None:
        while not self._closed.wait(PROBE_INTERVAL_S):
            try:
                self._probe_due()
            except Exception:  # a bug must not stop probing
                log.exception("probing unreachable workers failed")

    def _probe_due(self) -> None:
        """Try to connect to each marked worker whose cool-down has ended, all at once."""
        now = time.time()
        probes = []
        for worker_id, mark in self._registry.unreachable():
            conn = self._connect(worker_id) if mark.until <= now else None
            if conn is not None:
                probes.append((worker_id, conn[0], grpc.channel_ready_future(conn[2])))
        deadline = time.time() + PROBE_TIMEOUT_S
        for worker_id, address, ready in probes:
            try:
                ready.result(timeout=max(0.0, deadline - time.time()))
            except grpc.FutureTimeoutError:
                ready.cancel()
                mark, _ = self._registry.mark_unreachable(worker_id, address=address, renew=True)
                if mark is not None:
                    log.debug("worker %s still unreachable at %s", worker_id, address)
                continue
            self._reachable(worker_id)

    def cancel(self, worker_id: str, task_id: str, attempt: int, reason: str = "cancelled") -> None:
        self._pool.submit(self._cancel, worker_id, task_id, attempt, reason)

    def _cancel(self, worker_id: str, task_id: str, attempt: int, reason: str) -> None:
        stub = self._stub(worker_id)
        if stub is None:
            return
        try:
            stub.CancelTask(
                mw.CancelTaskRequest(task_id=task_id, attempt=attempt, reason=reason),
                timeout=ASSIGN_TIMEOUT_S,
            )
        except grpc.RpcError as err:
            log.warning("cancel of %s on %s failed: %s", task_id, worker_id, err.code().name)

    def logs(
        self, worker_id: str, task_id: str, attempt: int, follow: bool, tail: int
    ) -> Iterator[common_pb2.LogChunk]:
        """Stream logs from the worker. Raises grpc.RpcError if it cannot be reached."""
        stub = self._stub(worker_id)
        if stub is None:
            return iter(())
        req = mw.GetTaskLogsRequest(
            task_id=task_id, attempt=attempt, follow=follow, tail_lines=tail
        )
        return stub.GetTaskLogs(req, timeout=None if follow else ASSIGN_TIMEOUT_S)

    def close(self) -> None:
        self._closed.set()
        self._queue.put(None)
        self._thread.join(timeout=5)
        self._prober.join(timeout=PROBE_TIMEOUT_S + 1)
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for _, _, ch in self._stubs.values():
                ch.close()
            self._stubs.clear()
            self._dialed_for.clear()


def _error_text(err: grpc.RpcError) -> str:
    """'CODE: details', bounded."""
    return printable(f"{err.code().name}: {err.details() or ''}".rstrip(": "), MAX_PEER_TEXT)


def _calls(reqs: list[mw.AssignTaskRequest]) -> Iterator[tuple[int, int]]:
    """Cut the assignments to one worker into calls of at most MAX_CALL_TASKS and
    MAX_CALL_BYTES each (a single assignment is always sent): (start, end) pairs."""
    lo, size = 0, 0
    for i, req in enumerate(reqs):
        n = req.ByteSize() + 8  # with the field's tag and length
        if i > lo and (i - lo >= MAX_CALL_TASKS or size + n > MAX_CALL_BYTES):
            yield lo, i
            lo, size = i, 0
        size += n
    if lo < len(reqs):
        yield lo, len(reqs)
