"""Thin gRPC servicers: translate messages, call the master's logic, map errors.

Every handler is wrapped by `_guard`, the one place where CloudAI errors become
gRPC status codes (INVALID_ARGUMENT, NOT_FOUND, ...).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import grpc

from cloudai import rpc
from cloudai.config import MasterSettings
from cloudai.convert import (
    decision_to_pb,
    resources_from_pb,
    spec_from_pb,
    state_from_pb,
    task_to_pb,
)
from cloudai.errors import CloudAIError, InvalidArgument, NotFound, StoreError
from cloudai.model import Resources, TaskState, WorkerRecord
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import client_pb2_grpc as cpb_grpc
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_agent_pb2_grpc as apb_grpc
from cloudai.proto import master_worker_pb2 as mw
from cloudai.proto import master_worker_pb2_grpc as mw_grpc
from cloudai.security import inputs
from cloudai.security.interceptor import current_identity
from cloudai.text import printable
from cloudai.validation import validate_id, validate_labels, validate_spec

from .dispatcher import MAX_PEER_TEXT
from .explain import explain_text
from .registry import WorkerIdInUse
from .tasks import Report
from .throttle import Throttle

if TYPE_CHECKING:
    from .server import Master

log = logging.getLogger("cloudai.master")
MAX_LIST = 10_000


def _guard(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(self, request, context)
        except CloudAIError as err:
            _fail(context, err, fn.__name__)
        except ValueError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        except Exception:
            if _aborted(context):
                raise
            # A bug: its text (paths, queries, values) stays in the master's log.
            log.exception("%s failed", fn.__name__)
            context.abort(grpc.StatusCode.INTERNAL, "internal error (see the master's log)")

    return wrapper


_store_log = Throttle()


def _fail(context: Any, err: CloudAIError, call: str) -> NoReturn:
    """Abort the call with err; a store failure is also logged for the operator (the
    caller only learns that the master could not use its store)."""
    if isinstance(err, StoreError) and _store_log.ready():
        log.error("%s failed: %s", call, err)
    rpc.abort(context, err)


def _aborted(context: Any) -> bool:
    code = getattr(context, "code", None)
    return callable(code) and code() is not None


class MasterWorkerServicer(mw_grpc.MasterWorkerServicer):
    def __init__(self, master: Master) -> None:
        self.m = master

    @_guard
    def RegisterWorker(
        self, request: mw.RegisterWorkerRequest, context: Any
    ) -> mw.RegisterWorkerResponse:
        inputs.check_register(request)
        rec = _worker_record(request, self.m.settings)
        running = [(r.task_id, r.attempt) for r in request.running]
        try:
            changed = self.m.registry.register(
                rec,
                running,
                list(request.cached_images),
                request.telemetry if request.HasField("telemetry") else None,
            )
        except WorkerIdInUse as err:
            log.warning("refused registration of worker %s from %s: %s", rec.id, rec.address, err)
            raise
        log.info("worker %s registered from %s (%s)", rec.id, rec.address, _fmt_res(rec.capacity))
        if changed:
            self.m.scheduler.notify()
        return mw.RegisterWorkerResponse(
            accepted=True,
            message="registered",
            heartbeat_interval_s=self.m.settings.heartbeat_timeout / 3,
            stop=self._stale(rec.id, running),
        )

    @_guard
    def SendHeartbeat(self, request: mw.HeartbeatRequest, context: Any) -> mw.HeartbeatResponse:
        inputs.check_heartbeat(request)
        if request.address:
            inputs.check_address("address", request.address)
        if request.leaving:
            return self._leave(request)
        running = [(r.task_id, r.attempt) for r in request.running]
        entry, revived = self.m.registry.heartbeat(
            request.worker_id,
            request.telemetry,
            running,
            list(request.cached_images),
            address=request.address,
        )
        if entry is None:
            return mw.HeartbeatResponse(known=False)
        trouble = printable(request.engine_trouble, MAX_PEER_TEXT)
        changed = self.m.registry.set_engine_trouble(request.worker_id, trouble)
        if revived:
            log.info("worker %s is back", request.worker_id)
        if revived or changed:
            self.m.scheduler.notify()
        orphans = self.m.tasks.reconcile(
            request.worker_id, set(running), self.m.settings.heartbeat_timeout
        )
        if orphans:
            log.warning(
                "worker %s does not run %s: requeued", request.worker_id, ", ".join(orphans)
            )
        return mw.HeartbeatResponse(
            known=True, stop=self._stale(request.worker_id, running), drain=entry.drain_requested
        )

    def _leave(self, request: mw.HeartbeatRequest) -> mw.HeartbeatResponse:
        """The worker shuts down: place nothing more on it. Its tasks are not requeued
        here: their containers keep running for a restarted worker to re-adopt, and
        the heartbeat timeout decides about them as for a silent worker."""
        entry = self.m.registry.leave(request.worker_id, request.address)
        if entry is None:
            return mw.HeartbeatResponse(known=False)
        held = len(self.m.tasks.live_on(request.worker_id))
        log.info(
            "worker %s left (shut down): placing nothing more on it%s",
            request.worker_id,
            f"; its {held} task(s) wait {self.m.settings.heartbeat_timeout:g}s for it to come back"
            if held
            else "",
        )
        self.m.scheduler.notify()
        return mw.HeartbeatResponse(known=True)

    def _stale(self, worker_id: str, running: list[tuple[str, int]]) -> list[pb.TaskRef]:
        """Attempts the worker runs that are no longer current there: it must stop them."""
        return [
            pb.TaskRef(task_id=t, attempt=a)
            for t, a in running
            if not self.m.tasks.is_current(t, a) or self.m.tasks.get(t).worker_id != worker_id
        ]

    @_guard
    def ReportTaskStatus(self, request: mw.TaskStatusReport, context: Any) -> mw.TaskStatusAck:
        inputs.check_report(request)
        if not request.task_id or request.attempt < 1:
            raise InvalidArgument("report needs task_id and attempt >= 1")
        state = state_from_pb(request.state)
        if state in (TaskState.PENDING, TaskState.PLACED):
            raise InvalidArgument(f"a worker cannot report {state.value}")
        report = Report(
            worker_id=request.worker_id,
            task_id=request.task_id,
            attempt=request.attempt,
            state=state,
            exit_code=request.exit_code if request.has_exit_code else None,
            reason=request.reason,
            message=printable(request.message[:4096]),
            log_tail=request.log_tail,
            started_at=request.started_at,
            finished_at=request.finished_at,
            peak_memory_bytes=request.peak_memory_bytes,
        )
        accepted, message = self.m.tasks.report(report)
        if not accepted:
            log.info(
                "refused report from %s for %s/%d: %s",
                request.worker_id,
                request.task_id,
                request.attempt,
                message,
            )
        return mw.TaskStatusAck(accepted=accepted, message=message)


def _worker_record(request: mw.RegisterWorkerRequest, s: MasterSettings) -> WorkerRecord:
    validate_id("worker id", request.worker_id)
    if not request.address or len(request.address) > 255 or ":" not in request.address:
        raise InvalidArgument("worker address must be host:port")
    cap = resources_from_pb(request.capacity)
    _check_capacity(cap, s)
    labels = dict(request.labels)
    validate_labels(labels)
    now = time.time()
    return WorkerRecord(
        id=request.worker_id,
        address=request.address,
        capacity=cap,
        labels=labels,
        hostname=request.hostname[:255],
        version=request.version[:64],
        registered_at=now,
        last_heartbeat=now,
    )


def _check_capacity(cap: Resources, s: MasterSettings) -> None:
    """A worker cannot advertise more than the admin allows (CLOUDAI_MAX_WORKER_*)."""
    bounds = (
        ("capacity.cpu", cap.cpu, s.max_worker_cpu, "CPU"),
        ("capacity.memory_bytes", cap.memory_bytes, s.max_worker_memory, "MEMORY"),
        ("capacity.gpu", cap.gpu, s.max_worker_gpu, "GPU"),
    )
    for field, value, limit, name in bounds:
        if not (math.isfinite(value) and 0 <= value <= limit):
            raise InvalidArgument(
                f"{field} {value:g} is out of bounds: 0 to {limit:g} "
                f"(set by the admin: CLOUDAI_MAX_WORKER_{name})"
            )
    if cap.cpu <= 0 or cap.memory_bytes <= 0:
        raise InvalidArgument(f"worker capacity needs cpu > 0 and memory > 0: {_fmt_res(cap)}")


def _fmt_res(r: Resources) -> str:
    return f"cpu={r.cpu:g} mem={r.memory_bytes / 1024**3:.1f}GiB gpu={r.gpu:g}"


class ClusterServicer(cpb_grpc.ClusterServicer):
    def __init__(self, master: Master) -> None:
        self.m = master

    @_guard
    def SubmitTask(self, request: cpb.SubmitTaskRequest, context: Any) -> cpb.SubmitTaskResponse:
        ident = current_identity()
        spec = validate_spec(spec_from_pb(request.spec))
        if request.dry_run:
            self.m.admit(spec, ident)
            from cloudai.model import Task

            probe = Task(id="dry-run", spec=spec)
            return cpb.SubmitTaskResponse(
                task=task_to_pb(probe), decision=decision_to_pb(self.m.scheduler.dry_run(probe))
            )
        task = self.m.submit(spec, ident)
        return cpb.SubmitTaskResponse(task_id=task.id, task=task_to_pb(task))

    @_guard
    def GetTask(self, request: cpb.GetTaskRequest, context: Any) -> pb.Task:
        inputs.check_task_id(request)
        task = self.m.task_for(request.task_id, current_identity())
        return task_to_pb(task, log_tail=self.m.stored_log(task.id))

    @_guard
    def ListTasks(self, request: cpb.ListTasksRequest, context: Any) -> cpb.ListTasksResponse:
        inputs.check_list_tasks(request)
        states = [state_from_pb(s) for s in request.states] or None
        limit = min(request.limit or 1000, MAX_LIST)
        tasks = self.m.store.list_tasks(
            states=states,
            worker_id=request.worker_id or None,
            limit=limit,
            owner=current_identity().owner_filter,
        )
        return cpb.ListTasksResponse(tasks=[task_to_pb(t) for t in tasks])

    @_guard
    def CancelTask(self, request: cpb.CancelRequest, context: Any) -> cpb.CancelResponse:
        inputs.check_task_id(request)
        task, message = self.m.cancel(request.task_id, current_identity())
        return cpb.CancelResponse(task=task_to_pb(task), message=message)

    def StreamLogs(self, request: cpb.LogsRequest, context: grpc.ServicerContext):
        try:
            inputs.check_logs(request)
            self.m.task_for(request.task_id, current_identity())
            yield from self.m.stream_logs(
                request.task_id,
                request.follow,
                request.tail_lines,
                context.is_active,
                context.add_callback,
            )
        except CloudAIError as err:
            _fail(context, err, "StreamLogs")

    @_guard
    def Explain(self, request: cpb.ExplainRequest, context: Any) -> cpb.ExplainResponse:
        inputs.check_task_id(request)
        task = self.m.task_for(request.task_id, current_identity())
        decisions = self.m.store.list_decisions(task.id, limit=20)
        return cpb.ExplainResponse(
            task=task_to_pb(task),
            decisions=[decision_to_pb(d) for d in decisions],
            text=explain_text(task, decisions),
        )

    @_guard
    def ListWorkers(self, request: cpb.ListWorkersRequest, context: Any) -> cpb.ListWorkersResponse:
        return cpb.ListWorkersResponse(
            workers=[self.m.worker_info(e) for e in self.m.registry.all()]
        )

    @_guard
    def GetStatus(self, request: cpb.StatusRequest, context: Any) -> cpb.StatusResponse:
        return self.m.status()

    @_guard
    def DrainWorker(self, request: cpb.DrainRequest, context: Any) -> cpb.DrainResponse:
        inputs.check_drain(request)
        entry = self.m.registry.set_drain(request.worker_id, not request.undrain)
        if entry is None:
            raise NotFound(f"no worker {request.worker_id!r}")
        self.m.scheduler.notify()
        return cpb.DrainResponse(worker=self.m.worker_info(entry))


class MasterAgentServicer(apb_grpc.MasterAgentServicer):
    def __init__(self, master: Master) -> None:
        self.m = master

    def WatchSchedulingWork(self, request, context: grpc.ServicerContext):
        try:
            inputs.check_watch(request)
        except CloudAIError as err:
            _fail(context, err, "WatchSchedulingWork")
        # add_callback: the stream stops counting as connected the moment it ends.
        yield from self.m.scheduler.watch(request, context.is_active, context.add_callback)

    @_guard
    def SubmitPlacements(self, request, context: Any):
        inputs.check_placements(request)
        return self.m.scheduler.submit(request)
