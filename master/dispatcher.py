"""Calls from the master to workers: AssignTask, CancelTask, GetTaskLogs.

Dispatch runs on its own small pool, outside the master's lock, so a slow or dead
worker never stalls placement or other RPCs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc

from cloudai import rpc
from cloudai.convert import spec_to_pb
from cloudai.model import Task, TaskSpec
from cloudai.proto import common_pb2
from cloudai.proto import master_worker_pb2 as mw
from cloudai.proto import master_worker_pb2_grpc as mw_grpc

from .registry import WorkerRegistry
from .tasks import TaskManager

log = logging.getLogger("cloudai.master")
ASSIGN_TIMEOUT_S = 10.0


class Dispatcher:
    def __init__(
        self,
        registry: WorkerRegistry,
        tasks: TaskManager,
        *,
        channel: Callable[[str], grpc.Channel] = rpc.channel,
        reveal: Callable[[TaskSpec], TaskSpec] = lambda spec: spec,
    ) -> None:
        """`channel` dials a worker (with the master's TLS and token); `reveal`
        decrypts a task's sealed secret env values just before they are sent."""
        self._registry = registry
        self._tasks = tasks
        self._channel = channel
        self._reveal = reveal
        self._pool = futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="dispatch")
        self._stubs: dict[str, tuple[str, mw_grpc.WorkerStub, grpc.Channel]] = {}
        self._lock = threading.Lock()

    def _stub(self, worker_id: str) -> mw_grpc.WorkerStub | None:
        entry = self._registry.get(worker_id)
        if entry is None:
            return None
        address = entry.record.address
        with self._lock:
            cached = self._stubs.get(worker_id)
            if cached and cached[0] == address:
                return cached[1]
            if cached:
                cached[2].close()
            ch = self._channel(address)
            stub = mw_grpc.WorkerStub(ch)
            self._stubs[worker_id] = (address, stub, ch)
            return stub

    def assign(self, task: Task) -> None:
        """Send a committed placement to its worker (asynchronously)."""
        self._pool.submit(self._assign, task)

    def _assign(self, task: Task) -> None:
        stub = self._stub(task.worker_id)
        if stub is None:
            self._tasks.dispatch_failed(task.id, task.attempt, "worker vanished")
            return
        req = mw.AssignTaskRequest(
            task_id=task.id, attempt=task.attempt, spec=spec_to_pb(self._reveal(task.spec))
        )
        try:
            resp = stub.AssignTask(req, timeout=ASSIGN_TIMEOUT_S)
        except grpc.RpcError as err:
            msg = f"worker {task.worker_id} unreachable: {err.code().name}"
            log.warning("dispatch of %s failed: %s", task.id, msg)
            self._tasks.dispatch_failed(task.id, task.attempt, msg)
            return
        if not resp.accepted:
            self._tasks.dispatch_failed(task.id, task.attempt, f"worker refused: {resp.message}")

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
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for _, _, ch in self._stubs.values():
                ch.close()
            self._stubs.clear()
