#!/usr/bin/env python3
"""Placement through the master over gRPC: commit throughput and submit-to-placed latency.

    python benchmarks/placement_master.py [--workers 1000] [--tasks 10000] [--batch 1000]
                                          [--latency-tasks 200] [--runs 3] [--json]

1. Commit throughput: a real `cloudai master` process with `--workers` registered
   workers (they share one in-process fake worker server that accepts every
   assignment, so nothing runs). The benchmark acts as the agent: it watches the
   stream and sends placements in batches of `--batch`; it reports committed
   placements per second (acknowledged to the agent after the store transaction),
   and delivered per second (until the workers received every committed placement)
   with the number of AssignTask(s) calls that carried them.
2. Latency at light load: the real `cloudai agent` process is started, and tasks are
   submitted one at a time; submit-to-placed is the master's own placed_at minus
   created_at for each task. Reports p50 and p99.
Figures are medians over `--runs` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cloudai import rpc
from cloudai.cli.demo import LocalCluster
from cloudai.convert import spec_to_pb
from cloudai.model import Resources, TaskSpec
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import client_pb2_grpc, master_agent_pb2_grpc, master_worker_pb2_grpc
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_agent_pb2 as apb
from cloudai.proto import master_worker_pb2 as mw

GiB = 1024**3


class AcceptAll(master_worker_pb2_grpc.WorkerServicer):
    """Accepts every assignment and counts them (with the calls that carried them)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.assigned = self.calls = 0

    def _count(self, n: int) -> None:
        with self.lock:
            self.assigned += n
            self.calls += 1

    def AssignTask(self, request, context):
        self._count(1)
        return mw.AssignTaskResponse(accepted=True)

    def AssignTasks(self, request, context):
        self._count(len(request.assignments))
        return mw.AssignTasksResponse(
            results=[mw.AssignTaskResponse(accepted=True) for _ in request.assignments]
        )

    def CancelTask(self, request, context):
        return mw.CancelTaskResponse(found=True)


def start_master(root: Path, agent_timeout: float) -> tuple[subprocess.Popen, str]:
    """A real master process on a fresh port, with its store and log in `root`."""
    local = LocalCluster(root, heartbeat_timeout=600, agent_timeout=agent_timeout)
    proc = local.start_master()
    ch = rpc.channel(local.address)
    client_pb2_grpc.ClusterStub(ch).GetStatus(cpb.StatusRequest(), timeout=30, wait_for_ready=True)
    ch.close()
    return proc, local.address


def register_workers(address: str, n: int, worker_port: int) -> None:
    stub = master_worker_pb2_grpc.MasterWorkerStub(rpc.channel(address))
    for i in range(n):
        cpu = (4, 8, 16, 32)[i % 4]
        stub.RegisterWorker(
            mw.RegisterWorkerRequest(
                worker_id=f"w{i:04d}",
                address=f"127.0.0.1:{worker_port}",
                capacity=pb.Resources(cpu=cpu, memory_bytes=cpu * 4 * GiB),
                labels={"zone": "ab"[i % 2]},
            )
        )


def submit_many(address: str, n: int) -> list[str]:
    stub = client_pb2_grpc.ClusterStub(rpc.channel(address))
    spec = spec_to_pb(
        TaskSpec(image="cloudai/sample-task:latest", resources=Resources(0.5, GiB // 2, 0))
    )
    return [stub.SubmitTask(cpb.SubmitTaskRequest(spec=spec)).task_id for _ in range(n)]


def commit_throughput(
    address: str, n_workers: int, n_tasks: int, batch: int, workers: AcceptAll
) -> dict:
    """Placements committed per second (acknowledged to the agent), and delivered per
    second: until the workers have received every committed placement."""
    submit_many(address, n_tasks)
    before = workers.assigned, workers.calls
    agent = master_agent_pb2_grpc.MasterAgentStub(rpc.channel(address))
    stream = agent.WatchSchedulingWork(apb.WatchRequest(agent_id="bench", max_batch=n_tasks))
    snapshot = next(iter(stream))
    tasks = list(snapshot.tasks)
    decisions = [
        apb.Decision(
            task_id=t.task_id,
            attempt=t.attempt,
            worker_id=f"w{i % n_workers:04d}",
            policy="bench",
            summary="bench",
        )
        for i, t in enumerate(tasks)
    ]
    committed = 0
    start = time.perf_counter()
    for i in range(0, len(decisions), batch):
        res = agent.SubmitPlacements(
            apb.PlacementBatch(
                agent_id="bench", sequence=snapshot.sequence, decisions=decisions[i : i + batch]
            )
        )
        committed += sum(r.accepted for r in res.results)
    elapsed = time.perf_counter() - start
    stream.cancel()
    last, last_change = -1, time.perf_counter()
    while (got := workers.assigned - before[0]) < committed:
        if got != last:
            last, last_change = got, time.perf_counter()
        elif time.perf_counter() - last_change > 15:
            break  # refused or failed calls put their tasks back in the queue
        time.sleep(0.001)
    delivered = time.perf_counter() - start if got >= committed else float("inf")
    return {
        "placements_per_s": committed / elapsed,
        "delivered_per_s": committed / delivered,
        "assign_calls": workers.calls - before[1],
        "undelivered": committed - got,
    }


def latency(address: str, n: int) -> tuple[float, float]:
    stub = client_pb2_grpc.ClusterStub(rpc.channel(address))
    spec = spec_to_pb(
        TaskSpec(image="cloudai/sample-task:latest", resources=Resources(0.1, GiB // 8, 0))
    )
    ids = []
    for _ in range(n):
        ids.append(stub.SubmitTask(cpb.SubmitTaskRequest(spec=spec)).task_id)
        time.sleep(0.02)  # light load: one task at a time
    time.sleep(1.0)
    lat = []
    for tid in ids:
        t = stub.GetTask(cpb.GetTaskRequest(task_id=tid))
        if t.attempts:
            lat.append((t.attempts[0].placed_at - t.created_at) * 1000)
    lat.sort()
    return statistics.median(lat), lat[min(len(lat) - 1, int(0.99 * len(lat)))]


def one_run(args: argparse.Namespace) -> dict:
    workers = AcceptAll()
    server, worker_port, _ = rpc.build_server(
        "127.0.0.1:0",
        [lambda s: master_worker_pb2_grpc.add_WorkerServicer_to_server(workers, s)],
        ["cloudai.v1.Worker"],
    )
    server.start()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        master, address = start_master(root, agent_timeout=3600)
        try:
            register_workers(address, args.workers, worker_port)
            rates = commit_throughput(address, args.workers, args.tasks, args.batch, workers)
        finally:
            master.terminate()
            master.wait(10)
        if rates["undelivered"]:
            print(f"{rates['undelivered']} placements not delivered; the master said:")
            for line in (root / "master.log").read_text().splitlines():
                if "WARN" in line or "ERROR" in line:
                    print("  " + line)
        (root / "master.log").unlink()
        (root / "master.db").unlink()
        master, address = start_master(root, agent_timeout=3600)
        agent = subprocess.Popen(
            [sys.executable, "-m", "cloudai", "agent", "--master", address],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            register_workers(address, 50, worker_port)
            time.sleep(2.0)  # the agent connects
            p50, p99 = latency(address, args.latency_tasks)
        finally:
            agent.terminate()
            master.terminate()
            agent.wait(10)
            master.wait(10)
    server.stop(0)
    return {**rates, "latency_p50_ms": p50, "latency_p99_ms": p99}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=1000)
    p.add_argument("--tasks", type=int, default=10000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--latency-tasks", type=int, default=200)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    runs = []
    for i in range(args.runs):
        r = one_run(args)
        runs.append(r)
        if not args.json:
            print(
                f"run {i + 1}: {r['placements_per_s']:.0f} placements/s committed, "
                f"{r['delivered_per_s']:.0f}/s delivered in {r['assign_calls']} calls "
                f"({r['undelivered']} undelivered), "
                f"p50 {r['latency_p50_ms']:.1f} ms, p99 {r['latency_p99_ms']:.1f} ms",
                flush=True,
            )
    summary = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    summary.update(workers=args.workers, tasks=args.tasks, batch=args.batch, runs=args.runs)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
