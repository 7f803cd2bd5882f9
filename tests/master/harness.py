"""An in-process master on port 0 plus fake workers that speak the real protocol."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import grpc

from cloudai import rpc
from cloudai.config import MasterSettings
from cloudai.master.server import Master
from cloudai.master.store import SQLiteStore
from cloudai.proto import client_pb2_grpc, master_agent_pb2_grpc, master_worker_pb2_grpc
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_worker_pb2 as mw

GiB = 1024**3


class FakeWorkerServicer(master_worker_pb2_grpc.WorkerServicer):
    """Accepts every assignment and records it; runs nothing."""

    def __init__(self) -> None:
        self.assigned: list[tuple[str, int]] = []
        self.cancelled: list[tuple[str, int]] = []
        self.event = threading.Event()

    def AssignTask(self, request, context):
        self.assigned.append((request.task_id, request.attempt))
        self.event.set()
        return mw.AssignTaskResponse(accepted=True)

    def AssignTasks(self, request, context):
        return mw.AssignTasksResponse(
            results=[self.AssignTask(a, context) for a in request.assignments]
        )

    def CancelTask(self, request, context):
        self.cancelled.append((request.task_id, request.attempt))
        return mw.CancelTaskResponse(found=True)

    def GetTaskLogs(self, request, context):
        yield pb.LogChunk(data=f"logs of {request.task_id}\n", eof=True)


@dataclass
class FakeWorker:
    worker_id: str
    servicer: FakeWorkerServicer
    server: grpc.Server
    port: int
    capacity: pb.Resources
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Harness:
    master: Master
    channel: grpc.Channel
    workers: dict[str, FakeWorker] = field(default_factory=dict)

    @property
    def mw(self):
        return master_worker_pb2_grpc.MasterWorkerStub(self.channel)

    @property
    def agent(self):
        return master_agent_pb2_grpc.MasterAgentStub(self.channel)

    @property
    def cluster(self):
        return client_pb2_grpc.ClusterStub(self.channel)

    def add_worker(
        self,
        worker_id: str,
        cpu: float = 4,
        mem: int = 8 * GiB,
        gpu: float = 0,
        labels: dict[str, str] | None = None,
        servicer: FakeWorkerServicer | None = None,
    ) -> FakeWorker:
        servicer = servicer or FakeWorkerServicer()
        server, port = serve_worker(servicer)
        cap = pb.Resources(cpu=cpu, memory_bytes=mem, gpu=gpu)
        w = FakeWorker(worker_id, servicer, server, port, cap, labels or {})
        self.workers[worker_id] = w
        self.register(w)
        return w

    def register(self, w: FakeWorker) -> None:
        resp = self.mw.RegisterWorker(
            mw.RegisterWorkerRequest(
                worker_id=w.worker_id,
                address=f"127.0.0.1:{w.port}",
                capacity=w.capacity,
                labels=w.labels,
                hostname="test",
            )
        )
        assert resp.accepted

    def close(self) -> None:
        self.channel.close()
        self.master.stop(grace=0.5)
        for w in self.workers.values():
            w.server.stop(0)


def serve_worker(servicer: FakeWorkerServicer, address: str = "127.0.0.1:0") -> tuple:
    """A started real gRPC server for the fake worker at `address`: (server, port)."""
    server, port, _ = rpc.build_server(
        address,
        [lambda s: master_worker_pb2_grpc.add_WorkerServicer_to_server(servicer, s)],
        ["cloudai.v1.Worker"],
    )
    server.start()
    return server, port


def make_harness(tmp_path, **settings) -> Harness:
    settings.setdefault("heartbeat_timeout", 30.0)
    settings.setdefault("agent_timeout", 3600.0)
    s = MasterSettings(host="127.0.0.1", port=0, console=False, **settings)
    master = Master(s, store=SQLiteStore(tmp_path / "master.db"))
    master.start()
    return Harness(master=master, channel=rpc.channel(f"127.0.0.1:{master.port}"))


def console_output(master: Master, *lines: str) -> str:
    """What the console prints for these input lines (a pipe: it ends at EOF)."""
    import io

    from cloudai.master.console import Console

    out = io.StringIO()
    ended = Console(master, out=out).run(io.StringIO("".join(f"{x}\n" for x in lines)))
    assert ended == Console.EOF
    return out.getvalue()
