"""Runs task attempts as Docker containers through the docker SDK.

This is the boundary where Docker's exceptions end: `run()` and `adopt()` always
return an Outcome, and an engine that is down or answers with an error becomes
FAILED/docker_error with a one-line message. An engine that goes away while a
container runs (a daemon restart) is waited for, up to `engine_grace_s`: if the
container is still there when it is back, supervision simply carries on. One that
hangs (answers no ping, watch.py) for `engine_grace_s` has its attempts given up
(supervise.py); while it does not answer, the node refuses new tasks, and attempts
accepted just before fail at once.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import docker
from docker.errors import APIError, NotFound
from docker.models.containers import Container

from cloudai.config import WorkerSettings
from cloudai.errors import Conflict
from cloudai.errors import NotFound as CloudNotFound
from cloudai.model import Reason, TaskSpec, TaskState
from cloudai.worker import containers as ct
from cloudai.worker.containers import DOCKER_ERRORS
from cloudai.worker.engine import EngineConnection, engine_gone
from cloudai.worker.images import ImageList, Pull
from cloudai.worker.logs import LogStream, collect_tail, last_lines
from cloudai.worker.outcome import (
    Outcome,
    after_engine_outage,
    docker_error_outcome,
    finished_outcome,
    readopted_outcome,
    start_failure_message,
    stopped_by_signal,
    unknown_user_outcome,
)
from cloudai.worker.supervise import Supervision, kill_in_background

# Called once the container runs: (started_at, container_id).
OnRunning = Callable[[float, str], None]


@dataclass(slots=True, eq=False)
class _Active:
    task_id: str
    attempt: int
    cancel: threading.Event = field(default_factory=threading.Event)
    container: Container | None = None


class DockerExecutor:
    """One per worker. Thread-safe: the node runs each attempt in its own thread."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        client_factory: Callable[[], docker.DockerClient] | None = None,
        stats_interval: float = 2.0,
        poll_interval: float = 0.2,
        keep_tails: int = 64,
    ) -> None:
        self.worker_id = settings.id
        self._settings = settings
        self._engine = EngineConnection(client_factory, say=self._say)
        self._lock = threading.Lock()
        self._active: dict[tuple[str, int], _Active] = {}
        self._tails: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._keep_tails = keep_tails
        self.stats_interval = stats_interval
        self.poll_interval = poll_interval
        self._images = ImageList()
        # Keep a finished attempt's container until `remove()`: the node removes it
        # once the master acknowledged the result, so a worker killed in between
        # re-adopts the exited container and reports it again instead of losing it.
        self.keep_finished = False

    # ---- public API --------------------------------------------------------

    def run(
        self, task_id: str, attempt: int, spec: TaskSpec, on_running: OnRunning | None = None
    ) -> Outcome:
        """Pull if needed, create, start, wait, collect logs, remove. Blocking.
        Raises only Conflict, when the same attempt is already running here (a bug
        in the caller); every Docker failure is an Outcome."""
        active = self._register(task_id, attempt)
        try:
            return self._run(active, spec, on_running)
        except DOCKER_ERRORS as err:
            return docker_error_outcome(err, time.time(), self._engine.address)
        finally:
            self._unregister(active)

    def adopt(self, task_id: str, attempt: int) -> Outcome:
        """Supervise a container left by an earlier worker process to its end."""
        active = self._register(task_id, attempt)
        try:
            return self._adopt(active)
        except NotFound:
            return Outcome(
                TaskState.FAILED, None, Reason.WORKER_LOST, "container vanished on worker restart"
            )
        except DOCKER_ERRORS as err:
            return docker_error_outcome(err, time.time(), self._engine.address)
        finally:
            self._unregister(active)

    def check_engine(self) -> None:
        """Raise Unavailable (one line) unless the Docker engine answers now, and
        InvalidArgument when the tasks' network is not on it: every task would fail."""
        self._engine.check()
        self._engine.check_network(self._settings.network_mode)

    def engine_trouble(self) -> str:
        """Empty while the engine answers; once it has not answered for a while
        (watch.py), why, for the master (in heartbeats, and instead of taking a task)."""
        return "" if self._engine.watch.answering() else self._engine.silence()

    def cancel(self, task_id: str, attempt: int = 0) -> bool:
        """Kill the attempt's container (attempt 0: every attempt of the task). The
        supervising run() then ends CANCELLED. Returns whether anything was found."""
        with self._lock:
            targets = [
                a
                for (tid, num), a in self._active.items()
                if tid == task_id and (attempt <= 0 or num == attempt)
            ]
            for active in targets:
                active.cancel.set()
        for active in targets:
            if active.container is not None:
                kill_in_background(active.container)
        if targets or attempt <= 0:
            return bool(targets)
        return self._remove_orphan(ct.container_name(task_id, attempt))

    def remove(self, task_id: str, attempt: int) -> bool:
        """Remove a finished attempt's container; False if none (or the engine is down)."""
        if self.is_active(task_id, attempt):
            return False
        try:
            name = ct.container_name(task_id, attempt)
            self._engine.client().containers.get(name).remove(force=True)
        except DOCKER_ERRORS:
            return False
        return True

    def active(self) -> list[tuple[str, int]]:
        """Attempts being run or supervised now (including those still pulling)."""
        with self._lock:
            return sorted(self._active)

    def is_active(self, task_id: str, attempt: int) -> bool:
        with self._lock:
            return (task_id, attempt) in self._active

    def logs(
        self, task_id: str, attempt: int = 0, follow: bool = False, tail: int = 0
    ) -> LogStream:
        """Live logs while the container exists; afterwards the tail kept in memory.
        attempt 0 means the latest attempt this worker knows. Raises NotFound."""
        if attempt <= 0:
            attempt = self._latest_attempt(task_id)
        if self._engine.watch.answering():  # a hung engine would hold the call: use the tail
            try:
                name = ct.container_name(task_id, attempt)
                container = self._engine.client().containers.get(name)
                stream = container.logs(
                    stdout=True, stderr=True, stream=True, follow=follow, tail=tail or "all"
                )
                return LogStream(stream, closer=getattr(stream, "close", None))
            except DOCKER_ERRORS:
                pass  # gone already, or the engine is down: fall back to what we kept
        with self._lock:
            text = self._tails.get((task_id, attempt))
        if text is None:
            raise CloudNotFound(f"no logs for task {task_id} attempt {attempt} on this worker")
        return LogStream(text=last_lines(text, tail))

    def list_managed(self) -> list[ct.Managed]:
        """Containers this worker created and that still exist ([] if Docker is down),
        but for those another live worker process with the same id created."""
        try:
            # One listing call: the high-level list inspects each container after
            # listing, and fails if one is removed in between.
            found = self._engine.client().api.containers(
                all=True, filters=ct.managed_filter(self.worker_id)
            )
        except DOCKER_ERRORS:
            return []
        out: list[ct.Managed] = []
        for container in found:
            labels = container.get("Labels") or {}
            try:
                attempt = int(labels.get(ct.LABEL_ATTEMPT, ""))
            except ValueError:
                continue
            if ct.held_by_another_process(labels.get(ct.LABEL_OWNER, "")):
                continue  # another live worker with our id supervises it
            task_id = labels.get(ct.LABEL_TASK, "")
            out.append(ct.Managed(task_id, attempt, container.get("State", "")))
        return out

    def cached_images(self, limit: int = 200) -> list[str]:
        """Local image tags, for heartbeats ([] if Docker is down). Never blocks for
        long on a slow engine: the list is refreshed in the background."""
        return self._images.tags(self._engine.client, limit)

    def close(self) -> None:
        self._engine.close()

    # ---- one attempt -------------------------------------------------------

    def _run(self, active: _Active, spec: TaskSpec, on_running: OnRunning | None) -> Outcome:
        if not self._engine.watch.answering():  # each call would wait out the timeout
            message = f"{self._engine.silence()}; the task was not started"
            return Outcome(
                TaskState.FAILED, None, Reason.DOCKER_ERROR, message, finished_at=time.time()
            )
        client = self._engine.client()
        pull = Pull(client, spec.image, spec.always_pull)
        if not pull.wait(active.cancel, self.poll_interval):
            return Outcome(TaskState.CANCELLED, None, Reason.CANCELLED, "cancelled while pulling")
        if pull.outcome is not None:
            return pull.outcome
        self._images.invalidate()  # advertise a freshly pulled image soon
        if active.cancel.is_set():
            return Outcome(TaskState.CANCELLED, None, Reason.CANCELLED, "cancelled before start")
        limits = ct.limits_for(
            spec,
            default_memory=self._settings.default_memory,
            default_cpu=self._settings.default_cpu,
            pids_limit=self._settings.pids_limit,
        )
        container = self._create(client, active, spec, limits)
        try:
            return self._start(active, container, spec, limits, on_running)
        finally:
            if not self.keep_finished:
                self._remove(container)

    def _create(
        self, client: docker.DockerClient, active: _Active, spec: TaskSpec, limits: ct.Limits
    ) -> Container:
        name = ct.container_name(active.task_id, active.attempt)
        self._remove_orphan(name)
        labels = ct.labels(active.task_id, active.attempt, self.worker_id, spec.timeout_s)
        kwargs = ct.create_kwargs(spec, name, labels, limits, self._settings)
        container = client.containers.create(**kwargs)
        with self._lock:
            active.container = container
        return container

    def _start(
        self,
        active: _Active,
        container: Container,
        spec: TaskSpec,
        limits: ct.Limits,
        on_running: OnRunning | None,
    ) -> Outcome:
        # Checked after the container is published in _create: a cancel from now on
        # either sees the container or is caught here or in the wait loop.
        if active.cancel.is_set():
            return Outcome(TaskState.CANCELLED, None, Reason.CANCELLED, "cancelled before start")
        try:
            container.start()
        except APIError as err:
            return self._start_failed(container, err, spec.user)
        started_at = time.time()
        if on_running is not None:
            try:
                on_running(started_at, container.id or "")
            except Exception as err:  # a reporting bug must not kill the task
                print(f"[{self.worker_id}] on_running callback failed: {err!r}", flush=True)
        return self._supervise(active, container, started_at, spec.timeout_s, limits.memory_bytes)

    def _start_failed(self, container: Container, err: APIError, task_user: str) -> Outcome:
        """`docker run` exits 126/127 when the command cannot be executed: that is the
        task's own failure, and so is a --user its image does not know. Anything else
        at start is the engine's."""
        bad_user = unknown_user_outcome(err.explanation or str(err), task_user, time.time())
        if bad_user is not None:
            return bad_user
        container.reload()
        code = int(container.attrs.get("State", {}).get("ExitCode", 0))
        if code in (126, 127):
            message = start_failure_message(err.explanation or str(err))
            return Outcome(
                TaskState.FAILED, code, Reason.NONZERO_EXIT, message, finished_at=time.time()
            )
        return docker_error_outcome(err, time.time())

    def _adopt(self, active: _Active) -> Outcome:
        name = ct.container_name(active.task_id, active.attempt)
        container = self._engine.client().containers.get(name)
        with self._lock:
            active.container = container
        try:
            if container.status == "created":  # the old worker died between create and start
                return Outcome(
                    TaskState.FAILED, None, Reason.WORKER_LOST, "worker restarted before start"
                )
            state = container.attrs.get("State", {})
            started_at = ct.parse_docker_time(state.get("StartedAt")) or time.time()
            try:
                timeout_s = float(container.labels.get(ct.LABEL_TIMEOUT, "0"))
            except ValueError:
                timeout_s = 0.0
            memory = int(container.attrs.get("HostConfig", {}).get("Memory") or 0)
            outcome = self._supervise(active, container, started_at, timeout_s, memory)
            # _supervise inspected it after the end (a new handle after an outage).
            latest = active.container or container
            return readopted_outcome(outcome, latest.attrs.get("State", {}))
        finally:
            if not self.keep_finished:
                self._remove(container)

    def _supervise(
        self,
        active: _Active,
        container: Container,
        started_at: float,
        timeout_s: float,
        memory_limit: int,
    ) -> Outcome:
        supervision = self._supervision(active)
        ended = supervision.wait(container, started_at, timeout_s)
        killed_for, container, engine_lost = ended.killed_for, ended.container, ended.engine_lost
        peak = [ended.peak]
        finished_at = time.time()
        try:
            container.reload()
        except DOCKER_ERRORS as err:
            if not engine_gone(err):
                raise
            engine_lost = True  # it exited, then the engine went away before we looked
            container = supervision.reattach(type(err).__name__, err)
            container.reload()
        state = container.attrs.get("State", {})
        outcome = finished_outcome(
            state, killed_for=killed_for, timeout_s=timeout_s, memory_limit=memory_limit
        )
        if (
            not engine_lost
            and killed_for is None
            and stopped_by_signal(outcome)
            and not self._engine.accepts_new_connections()
        ):
            # A daemon that shuts down first closes its socket to new connections, then
            # stops its containers (without live-restore), still answering on the
            # connections already open: our wait ended normally, but the container
            # died of the restart, not of its own. Wait for the engine, then report.
            engine_lost = True
            container = supervision.reattach("container stopped while the engine shut down")
        if engine_lost:
            outcome = after_engine_outage(outcome)
            # It may have ended while the engine was away, not when we saw it: Docker knows.
            ended = ct.parse_docker_time(state.get("FinishedAt"))
            finished_at = ended if started_at <= ended < finished_at else finished_at
        if state.get("OOMKilled"):  # the task itself may have survived it (exit 0)
            peak[0] = max(peak[0], memory_limit)  # it reached the limit, by definition
        outcome.log_tail = self._collect_logs(active, container)
        outcome.started_at, outcome.finished_at = started_at, finished_at
        outcome.peak_memory_bytes = peak[0]
        outcome.container_id = container.id or ""
        return outcome

    def _collect_logs(self, active: _Active, container: Container) -> str:
        """Kept in memory too, so `logs()` still answers after the container is gone."""
        text = collect_tail(container)
        key = (active.task_id, active.attempt)
        with self._lock:
            self._tails[key] = text
            self._tails.move_to_end(key)
            while len(self._tails) > self._keep_tails:
                self._tails.popitem(last=False)
        return text

    # ---- helpers -----------------------------------------------------------

    def _register(self, task_id: str, attempt: int) -> _Active:
        with self._lock:
            if (task_id, attempt) in self._active:
                raise Conflict(f"task {task_id} attempt {attempt} is already running here")
            active = self._active[(task_id, attempt)] = _Active(task_id, attempt)
            return active

    def _unregister(self, active: _Active) -> None:
        with self._lock:
            if self._active.get((active.task_id, active.attempt)) is active:
                del self._active[(active.task_id, active.attempt)]

    def _latest_attempt(self, task_id: str) -> int:
        with self._lock:
            known = [num for tid, num in [*self._active, *self._tails] if tid == task_id]
        if not known:
            raise CloudNotFound(f"task {task_id} has no attempt on this worker")
        return max(known)

    def _supervision(self, active: _Active) -> Supervision:
        def publish(container: Container) -> None:
            with self._lock:
                active.container = container

        return Supervision(
            self._engine,
            name=ct.container_name(active.task_id, active.attempt),
            cancel=active.cancel,
            publish=publish,
            say=self._say,
            grace_s=self._settings.engine_grace_s,
            poll_s=self.poll_interval,
            stats_s=self.stats_interval,
        )

    def _say(self, text: str) -> None:
        print(f"[{self.worker_id}] {text}", flush=True)

    def _remove(self, container: Container) -> None:
        # Already gone is fine; a real leftover is found again by list_managed().
        with contextlib.suppress(*DOCKER_ERRORS):
            container.remove(force=True)

    def _remove_orphan(self, name: str) -> bool:
        """Remove a container of that name that nobody supervises (a dead earlier
        run of the same attempt); its name would block the new one."""
        if not self._engine.watch.answering():
            return False  # the leftover sweep removes it once the engine answers
        try:
            old = self._engine.client().containers.get(name)
            old.remove(force=True)
        except DOCKER_ERRORS:
            return False
        print(f"[{self.worker_id}] removed leftover container {name}", flush=True)
        return True
