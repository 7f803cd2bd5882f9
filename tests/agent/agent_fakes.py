"""A fake MasterAgent service on a real gRPC server (port 0), for the sidecar tests."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import grpc

from cloudai import rpc
from cloudai.proto import master_agent_pb2 as apb
from cloudai.proto import master_agent_pb2_grpc as apb_grpc

SERVICE = "cloudai.v1.MasterAgent"


class FakeMaster(apb_grpc.MasterAgentServicer):
    """Streams the batches a test puts in `outbox`; records what the agent sends."""

    def __init__(self) -> None:
        self.outbox: queue.Queue[apb.SchedulingBatch] = queue.Queue()
        self.watches: queue.Queue[apb.WatchRequest] = queue.Queue()
        self.submitted: queue.Queue[apb.PlacementBatch] = queue.Queue()

    def WatchSchedulingWork(
        self, request: apb.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[apb.SchedulingBatch]:
        self.watches.put(request)
        while context.is_active():
            try:
                yield self.outbox.get(timeout=0.05)
            except queue.Empty:
                continue

    def SubmitPlacements(
        self, request: apb.PlacementBatch, context: grpc.ServicerContext
    ) -> apb.PlacementResults:
        self.submitted.put(request)
        return apb.PlacementResults(
            results=[
                apb.PlacementResult(
                    task_id=d.task_id,
                    accepted=bool(d.worker_id),
                    reason="" if d.worker_id else d.hint,
                )
                for d in request.decisions
            ]
        )


def serve(fake: FakeMaster, port: int = 0) -> tuple[grpc.Server, int]:
    server, bound, _ = rpc.build_server(
        f"127.0.0.1:{port}",
        [lambda s: apb_grpc.add_MasterAgentServicer_to_server(fake, s)],
        [SERVICE],
        max_workers=4,
    )
    server.start()
    return server, bound
