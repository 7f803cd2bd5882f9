"""An in-process fake of the master's MasterWorker service, on a real gRPC server.

It records every call and can be told to fail, refuse or forget, so tests drive
the worker's retry and re-registration paths over real loopback gRPC.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from concurrent import futures

import grpc

from cloudai.proto import common_pb2
from cloudai.proto import master_worker_pb2 as mw
from cloudai.proto import master_worker_pb2_grpc as mw_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeMaster(mw_grpc.MasterWorkerServicer):
    def __init__(self) -> None:
        self.registrations: list[mw.RegisterWorkerRequest] = []
        self.heartbeats: list[mw.HeartbeatRequest] = []
        self.reports: list[mw.TaskStatusReport] = []
        self.report_calls = 0
        # Knobs a test sets:
        self.fail_reports = 0  # abort this many ReportTaskStatus calls with UNAVAILABLE
        self.refuse_tasks: set[str] = set()  # answer accepted=False for these task ids
        self.forget_once = False  # next heartbeat answers known=False
        self.stop_next: list[common_pb2.TaskRef] = []  # sent in the next heartbeat
        self.drain = False
        self.id_in_use = ""  # refuse registrations with ALREADY_EXISTS and this message
        self._cond = threading.Condition()
        self._server: grpc.Server | None = None

    # ---- servicer ---------------------------------------------------------

    def RegisterWorker(self, request, context):  # noqa: N802 - gRPC naming
        with self._cond:
            self.registrations.append(request)
            self._cond.notify_all()
        if self.id_in_use:
            context.abort(grpc.StatusCode.ALREADY_EXISTS, self.id_in_use)
        return mw.RegisterWorkerResponse(accepted=True, message="welcome")

    def SendHeartbeat(self, request, context):  # noqa: N802
        with self._cond:
            self.heartbeats.append(request)
            known, self.forget_once = not self.forget_once, False
            stop, self.stop_next = self.stop_next, []
            self._cond.notify_all()
        return mw.HeartbeatResponse(known=known, stop=stop, drain=self.drain)

    def ReportTaskStatus(self, request, context):  # noqa: N802
        with self._cond:
            self.report_calls += 1
            if self.fail_reports > 0:
                self.fail_reports -= 1
                context.abort(grpc.StatusCode.UNAVAILABLE, "master blip")
            accepted = request.task_id not in self.refuse_tasks
            if accepted:
                self.reports.append(request)
            self._cond.notify_all()
        return mw.TaskStatusAck(accepted=accepted, message="" if accepted else "stale attempt")

    # ---- test helpers -----------------------------------------------------

    def start(self, port: int = 0) -> int:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        mw_grpc.add_MasterWorkerServicer_to_server(self, server)
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        self._server = server
        return bound

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=0).wait()
            self._server = None

    def wait_for(self, predicate: Callable[[FakeMaster], object], timeout: float = 10) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self), timeout=timeout)

    def reports_for(self, task_id: str) -> list[mw.TaskStatusReport]:
        with self._cond:
            return [r for r in self.reports if r.task_id == task_id]
