"""The worker's gRPC surface (cloudai.v1.Worker), called by the master.

Thin on purpose: it validates and translates messages, and the node does the work.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import NoReturn, Protocol

import grpc

from cloudai.convert import spec_from_pb
from cloudai.errors import CloudAIError, InvalidArgument, ResourceExhausted
from cloudai.model import TaskSpec
from cloudai.proto import common_pb2
from cloudai.proto import master_worker_pb2 as mw
from cloudai.proto import master_worker_pb2_grpc as mw_grpc
from cloudai.rpc import abort
from cloudai.security import inputs
from cloudai.validation import validate_id, validate_spec
from cloudai.worker.logs import LogStream, coalesced

SERVICE_NAME = "cloudai.v1.Worker"
# Keep each streamed message small; a log tail can be 64 KiB in one piece.
MAX_CHUNK_CHARS = 16 * 1024


# Bound on one AssignTasks call; the master sends far fewer.
MAX_BATCH_ASSIGNMENTS = 1024
# Followed log streams served at once. Each holds one of the server's RPC threads
# (build_server's 32) for as long as its task runs; with no bound, enough followers
# (`cloudai logs -f`, or followers that detached from a quiet task, which the master
# notices only when it next prints) took every thread, and the master's AssignTask and
# CancelTask calls waited behind them. Past the bound a follow is refused at once
# (RESOURCE_EXHAUSTED); the master tries it again shortly.
MAX_FOLLOWED_STREAMS = 24


class WorkerOps(Protocol):
    """What the servicer needs from the node."""

    def assign(self, task_id: str, attempt: int, spec: TaskSpec) -> tuple[bool, str]: ...

    def cancel(self, task_id: str, attempt: int, reason: str = "") -> bool: ...

    def logs(self, task_id: str, attempt: int, follow: bool, tail: int) -> LogStream: ...


def parse_assignment(request: mw.AssignTaskRequest) -> tuple[str, int, TaskSpec]:
    """Raises InvalidArgument with a message that names the bad field."""
    task_id = validate_id("task id", request.task_id)
    if request.attempt < 1:
        raise InvalidArgument(f"attempt must be >= 1, got {request.attempt}")
    if not request.HasField("spec"):
        raise InvalidArgument("spec is missing")
    return task_id, request.attempt, validate_spec(spec_from_pb(request.spec))


def _abort(context: grpc.ServicerContext, err: CloudAIError) -> NoReturn:
    abort(context, err)  # raises; the line below only informs type checkers
    raise AssertionError("context.abort returned")


class WorkerServicer(mw_grpc.WorkerServicer):
    def __init__(self, node: WorkerOps, max_followed: int = MAX_FOLLOWED_STREAMS) -> None:
        self._node = node
        self._max_followed = max_followed
        self._followed = threading.BoundedSemaphore(max_followed)

    def AssignTask(
        self, request: mw.AssignTaskRequest, context: grpc.ServicerContext
    ) -> mw.AssignTaskResponse:
        try:
            task_id, attempt, spec = parse_assignment(request)
        except CloudAIError as err:
            _abort(context, err)
        accepted, message = self._node.assign(task_id, attempt, spec)
        return mw.AssignTaskResponse(accepted=accepted, message=message)

    def AssignTasks(
        self, request: mw.AssignTasksRequest, context: grpc.ServicerContext
    ) -> mw.AssignTasksResponse:
        """A batch of assignments; a malformed one is refused alone, not the batch."""
        if len(request.assignments) > MAX_BATCH_ASSIGNMENTS:
            # Refused whole, not cut short: the master halves a batch refused so.
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{len(request.assignments)} assignments in one call; at most "
                f"{MAX_BATCH_ASSIGNMENTS}",
            )
        results = []
        for item in request.assignments:
            try:
                task_id, attempt, spec = parse_assignment(item)
            except CloudAIError as err:
                results.append(mw.AssignTaskResponse(accepted=False, message=str(err)))
                continue
            accepted, message = self._node.assign(task_id, attempt, spec)
            results.append(mw.AssignTaskResponse(accepted=accepted, message=message))
        return mw.AssignTasksResponse(results=results)

    def CancelTask(
        self, request: mw.CancelTaskRequest, context: grpc.ServicerContext
    ) -> mw.CancelTaskResponse:
        try:
            inputs.check_cancel_attempt(request)
        except CloudAIError as err:
            _abort(context, err)
        found = self._node.cancel(request.task_id, request.attempt, request.reason)
        message = "cancelling" if found else "no such attempt running on this worker"
        return mw.CancelTaskResponse(found=found, message=message)

    def GetTaskLogs(
        self, request: mw.GetTaskLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.LogChunk]:
        try:
            inputs.check_worker_logs(request)
        except CloudAIError as err:
            _abort(context, err)
        if request.follow and not self._followed.acquire(blocking=False):
            _abort(
                context,
                ResourceExhausted(
                    f"{self._max_followed} followed log streams are open on this worker "
                    "already; try again shortly"
                ),
            )
        try:
            yield from self._stream_logs(request, context)
        finally:
            if request.follow:
                self._followed.release()

    def _stream_logs(
        self, request: mw.GetTaskLogsRequest, context: grpc.ServicerContext
    ) -> Iterator[common_pb2.LogChunk]:
        try:
            stream = self._node.logs(
                request.task_id, request.attempt, request.follow, max(0, request.tail_lines)
            )
        except CloudAIError as err:
            _abort(context, err)
        # A followed stream blocks on Docker; end it when the caller goes away.
        context.add_callback(stream.close)
        for text in coalesced(stream, MAX_CHUNK_CHARS):
            for start in range(0, len(text), MAX_CHUNK_CHARS):
                yield common_pb2.LogChunk(data=text[start : start + MAX_CHUNK_CHARS])
        yield common_pb2.LogChunk(data="", eof=True)
