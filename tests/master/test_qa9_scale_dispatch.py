"""QA pass 9 (scale and concurrency): a cancel racing a placement's dispatch."""

from __future__ import annotations

import time

from cloudai import rpc
from cloudai.master.dispatcher import Dispatcher
from cloudai.model import Resources, WorkerRecord

from .harness import FakeWorkerServicer, serve_worker
from .test_tasks import place, spec


def test_a_task_cancelled_between_its_commit_and_its_dispatch_is_not_sent(tasks, registry):
    """The master freed the cancelled task's room at once and could give it to the next
    task, while the worker, sent the cancelled one anyway (its cancel racing ahead of
    the assignment), ran both until its next heartbeat: over its capacity."""
    worker = FakeWorkerServicer()
    server, port = serve_worker(worker)
    rec = WorkerRecord(id="w1", address=f"127.0.0.1:{port}", capacity=Resources(4, 2**33, 0))
    registry.register(rec, [], [], None)
    dispatcher = Dispatcher(registry, tasks, channel=rpc.channel)
    try:
        cancelled = place(tasks, tasks.submit(spec()).id)
        kept = place(tasks, tasks.submit(spec()).id)
        tasks.cancel(cancelled.id)  # after the commit, before the dispatch thread sends
        dispatcher.assign([cancelled, kept])
        assert worker.event.wait(5.0)
        time.sleep(0.2)  # anything else sent would have arrived by now
        assert worker.assigned == [(kept.id, kept.attempt)]
    finally:
        dispatcher.close()
        server.stop(0)
