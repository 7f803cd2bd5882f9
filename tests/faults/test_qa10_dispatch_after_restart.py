"""QA pass 10 (crash consistency): the first dispatch to a worker restarted at the same
address must reach the new process.

The dispatcher kept one gRPC channel per worker address. While the worker was down,
each call on it failed and gRPC put the channel into its reconnect backoff (up to 2 s,
cloudai.rpc). The restarted worker registered at once, which cleared its unreachable
mark, and was placed on; but calls on the old channel kept failing at once with the
old "connection refused" until the backoff ended. The fresh worker was marked
unreachable again for 5 s, and every task sent to it meanwhile was refused and
requeued (an attempt spent, seconds lost). A registration now gets a fresh channel.
"""

from __future__ import annotations

import time

from cloudai import rpc
from cloudai.master.dispatcher import Dispatcher
from cloudai.master.registry import WorkerRegistry
from cloudai.master.store import SQLiteStore
from cloudai.master.tasks import TaskManager
from cloudai.model import DecisionRecord, Resources, TaskSpec, TaskState, WorkerRecord
from tests.master.harness import FakeWorkerServicer, serve_worker
from tests.ports import free_port

from .faultkit import wait_until

GiB = 1024**3


def _place(tasks: TaskManager, worker_id: str):
    t = tasks.submit(TaskSpec(image="cloudai/sample-task:latest", resources=Resources(1, GiB, 0)))
    placed, reason = tasks.commit_placement(
        t.id, t.attempt, worker_id, DecisionRecord(t.id, t.attempt)
    )
    assert placed is not None, reason
    return placed


def test_a_worker_restarted_at_its_address_gets_its_first_dispatch(tmp_path):
    store = SQLiteStore(tmp_path / "m.db")
    registry = WorkerRegistry(store, timeout_s=60.0, sample_s=3600.0)
    tasks = TaskManager(store, registry)
    address = f"127.0.0.1:{free_port()}"
    rec = WorkerRecord(id="w1", address=address, capacity=Resources(8, 16 * GiB, 0))
    registry.register(rec, [], [], None)  # then the worker process dies: nothing listens
    dispatcher = Dispatcher(registry, tasks, channel=rpc.channel)
    server = None
    try:
        lost = _place(tasks, "w1")
        dispatcher.assign([lost])
        wait_until(lambda: tasks.get(lost.id).state == TaskState.PENDING, 10, "the failed dispatch")
        # The worker stays down long enough for gRPC's reconnect backoff to grow to its
        # cap (2 s), as it does for a worker restarted by a service manager.
        time.sleep(5.0)
        worker = FakeWorkerServicer()
        server, _ = serve_worker(worker, address)
        registry.register(
            WorkerRecord(id="w1", address=address, capacity=Resources(8, 16 * GiB, 0)), [], [], None
        )
        began = time.time()
        fresh = _place(tasks, "w1")
        dispatcher.assign([fresh])
        assert worker.event.wait(5.0), "the restarted worker never got its task"
        took = time.time() - began
        after = tasks.get(fresh.id)
        assert worker.assigned == [(fresh.id, fresh.attempt)]
        assert after.state == TaskState.PLACED and after.attempt == 1, after.attempts
        assert registry.get("w1").unreachable is None
        assert took < 1.0, f"first dispatch took {took:.2f}s"
    finally:
        dispatcher.close()
        if server is not None:
            server.stop(0)
        store.close()
