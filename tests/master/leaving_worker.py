"""A worker process without Docker, for the tests of a worker's leave: the worker's
own Membership (registration, heartbeats, and on SIGTERM the leave, as `cloudai
worker` does) and a Worker gRPC server that accepts every task and holds it, running
nothing, until the master cancels it.
A real `cloudai worker` needs a Docker engine; its leave is the same Membership call.

    python -m tests.master.leaving_worker ID MASTER_PORT WORKER_PORT [CPU]

Prints `registered` once registered and `assigned TASK ATTEMPT` per assignment."""

from __future__ import annotations

import signal
import sys
import threading
import time

from cloudai import rpc
from cloudai.config import WorkerSettings
from cloudai.model import Resources
from cloudai.worker.membership import MemberHooks, Membership

from .harness import FakeWorkerServicer, serve_worker


class Holding(FakeWorkerServicer):
    """Holds every attempt it is given until the master cancels or stops it, and
    lists them in its heartbeats, as a worker running long containers does (a fake
    listing nothing has its tasks requeued at every heartbeat timeout)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._held: set[tuple[str, int]] = set()

    def AssignTask(self, request, context):  # noqa: N802 - gRPC naming
        print(f"assigned {request.task_id} {request.attempt}", flush=True)
        with self._lock:
            self._held.add((request.task_id, request.attempt))
        return super().AssignTask(request, context)

    def CancelTask(self, request, context):  # noqa: N802 - gRPC naming
        self.drop([request])
        return super().CancelTask(request, context)

    def drop(self, refs) -> None:
        with self._lock:
            self._held -= {(r.task_id, r.attempt) for r in refs}

    def running(self) -> list[tuple[str, int]]:
        with self._lock:
            return sorted(self._held)


def main(worker_id: str, master_port: int, port: int, cpu: float = 4.0) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    node = Holding()
    server, _ = serve_worker(node, f"127.0.0.1:{port}")
    settings = WorkerSettings(
        _env_file=None,
        id=worker_id,
        master=f"127.0.0.1:{master_port}",
        ip="127.0.0.1",
        heartbeat_interval=0.2,
    )
    hooks = MemberHooks(
        running=node.running, cached_images=list, stop_attempts=node.drop, say=print
    )
    with rpc.channel(settings.master) as channel:
        member = Membership(settings, channel, Resources(cpu, 8 * 2**30, 0), hooks)
        member.start(f"127.0.0.1:{port}")
        while not member.registrations:
            time.sleep(0.05)
        print("registered", flush=True)
        while not stop.wait(0.1):
            pass
        member.stop()
        member.leave()  # what a worker stopped with SIGTERM does
    server.stop(0)
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(args[0], int(args[1]), int(args[2]), *(float(a) for a in args[3:])))
