"""Pinning a task to a worker the master knows only from its store (it has not
registered since the master restarted): the refusal says so, instead of calling the
worker "active" (its stored health) while refusing it. Real gRPC, two masters in turn
on one SQLite file."""

from __future__ import annotations

import grpc
import pytest

from cloudai.convert import spec_to_pb
from cloudai.model import Resources, TaskSpec
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb

from .harness import FakeWorker, FakeWorkerServicer, GiB, make_harness, serve_worker


def test_a_pin_to_a_worker_not_registered_since_the_restart_says_why(tmp_path):
    first = make_harness(tmp_path)
    servicer = FakeWorkerServicer()
    server, port = serve_worker(servicer)
    try:
        w1 = FakeWorker("w1", servicer, server, port, pb.Resources(cpu=4, memory_bytes=8 * GiB))
        first.register(w1)
    finally:
        first.close()
    second = make_harness(tmp_path)  # the same store: w1 is known, but silent so far
    try:
        [w] = second.cluster.ListWorkers(cpb.ListWorkersRequest(), timeout=5).workers
        assert w.id == "w1"
        spec = TaskSpec(image="cloudai/sample-task:latest", resources=Resources(1, GiB))
        spec.pinned_worker = "w1"
        with pytest.raises(grpc.RpcError) as err:
            second.cluster.SubmitTask(cpb.SubmitTaskRequest(spec=spec_to_pb(spec)), timeout=5)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert err.value.details() == (
            "worker 'w1' has not registered with this master since it started: "
            "wait for its next heartbeat, or pin another worker"
        )
        assert second.cluster.ListTasks(cpb.ListTasksRequest(), timeout=5).tasks == []
    finally:
        second.close()
        server.stop(0)
