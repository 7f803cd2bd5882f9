"""The master checks that the worker it dials is that worker, not only that its
certificate names the address: every certificate `certs init` makes names localhost
and 127.0.0.1, so worker-a's could serve on worker-b's loopback address and receive
worker-b's tasks, secrets decrypted (QA pass 9). The master now expects the worker's
id among the names of the certificate it is shown (`certs issue` adds it).

Real gRPC over loopback with mTLS: an in-process master, recording workers."""

from __future__ import annotations

import time

import pytest

from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb

from .seckit import GiB, start_secure_master


@pytest.fixture
def cluster(tmp_path, pki):
    c = start_secure_master(tmp_path, pki)
    yield c
    c.close()


def _submit_pinned(cluster, worker_id: str) -> str:
    spec = pb.TaskSpec(
        image="busybox:1.36",
        command=["true"],
        resources=pb.Resources(cpu=1, memory_bytes=GiB),
        pinned_worker=worker_id,
        env={"DB_PASS": "hunter2"},
        secret_env_keys=["DB_PASS"],
    )
    return cluster.cluster().SubmitTask(cpb.SubmitTaskRequest(spec=spec), timeout=5).task_id


def test_a_worker_certificate_cannot_receive_another_workers_tasks(cluster):
    genuine = cluster.add_worker("worker-a")
    impostor = cluster.add_worker("worker-b", serve_with="worker-a")  # at b's address
    _submit_pinned(cluster, "worker-b")
    mine = _submit_pinned(cluster, "worker-a")
    assert genuine.servicer.event.wait(10), "the genuine worker got nothing"
    assert [t for t, _ in genuine.servicer.assigned] == [mine]
    assert genuine.servicer.specs[0].env["DB_PASS"] == "hunter2"  # revealed to it only
    deadline = time.monotonic() + 10
    while cluster.master.registry.get("worker-b").unreachable is None:
        assert time.monotonic() < deadline, "worker-b's dispatch never failed"
        time.sleep(0.1)
    assert impostor.servicer.assigned == []
    error = cluster.master.registry.get("worker-b").unreachable.error
    assert "UNAVAILABLE" in error, error
