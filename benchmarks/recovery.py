#!/usr/bin/env python3
"""Master recovery: time to serve again after SIGKILL, with 100,000 tasks in SQLite.

    python benchmarks/recovery.py [--tasks 100000] [--live 1000] [--runs 3] [--json]

It fills a SQLite store through the store's own API: `--tasks` tasks, of which
`--live` are PENDING, PLACED or RUNNING (on 50 registered workers) and the rest
finished, each finished one with its result (exit code and a log tail) and every
task with its placement decision. Then, per run: start `cloudai master` on that
file, let it serve, SIGKILL it, start it again, and time from the new process's
spawn to its first answered RPC (GetStatus, which counts every task by state) and
to the first answered GetTask of a live task (the queue is back). The same is timed
on an empty store, so the cost of starting a Python process is visible apart.
Prints each run, then the medians as one JSON line. Target: under 2 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

from cloudai.cli.demo import free_port
from cloudai.master.store import SQLiteStore
from cloudai.model import (
    Attempt,
    DecisionRecord,
    Resources,
    Result,
    Task,
    TaskSpec,
    TaskState,
    WorkerRecord,
)
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import client_pb2_grpc

GiB = 1024**3
LOG = "step 1/3: loading\nstep 2/3: working\nstep 3/3: done\n✓ Task completed successfully!\n"
LIVE_STATES = (TaskState.PENDING, TaskState.PLACED, TaskState.RUNNING)


def fill(path: Path, n_tasks: int, n_live: int) -> str:
    """Write the store; return the id of one live task."""
    store = SQLiteStore(path)
    now = time.time() - 86_400
    workers = [f"w-{i:02d}" for i in range(50)]
    for w in workers:
        store.upsert_worker(
            WorkerRecord(id=w, address=f"10.0.0.{len(w)}:50052", capacity=Resources(32, 64 * GiB))
        )
    live_id = ""
    batch = getattr(store, "batch", None)
    chunk = 5_000
    for start in range(0, n_tasks, chunk):
        with batch() if batch else contextlib.nullcontext():
            for i in range(start, min(n_tasks, start + chunk)):
                task = _task(i, n_tasks, n_live, now, workers)
                store.create_task(task)
                store.add_decision(
                    DecisionRecord(
                        task_id=task.id,
                        attempt=1,
                        worker_id=workers[i % 50],
                        policy="default",
                        profile="default",
                        candidates=[{"worker_id": workers[i % 50], "total": 300.0, "scores": {}}],
                        summary=f"placed on {workers[i % 50]}",
                        committed=True,
                        decided_at=task.created_at,
                    )
                )
                if task.state.terminal:
                    store.put_result(
                        Result(task.id, 1, task.state, task.exit_code, "completed", "", LOG)
                    )
                elif not live_id:
                    live_id = task.id
    store.close()
    return live_id


def _task(i: int, n_tasks: int, n_live: int, now: float, workers: list[str]) -> Task:
    spec = TaskSpec(
        image="cloudai/sample-task:latest",
        command=["python", "task.py"],
        resources=Resources(0.5, 256 * 1024**2),
        name=f"job-{i}",
    )
    live = i >= n_tasks - n_live
    state = (
        LIVE_STATES[i % 3] if live else (TaskState.FAILED if i % 50 == 0 else TaskState.SUCCEEDED)
    )
    t = Task(id=f"t-{i:012d}", spec=spec, state=state, created_at=now + i * 0.5)
    t.updated_at = t.queued_at = t.created_at
    if state != TaskState.PENDING:
        t.attempt, t.worker_id = 1, workers[i % 50] if not state.terminal else ""
        a = Attempt(1, workers[i % 50], state, placed_at=t.created_at + 0.1)
        if state.terminal:
            t.exit_code = a.exit_code = 0 if state == TaskState.SUCCEEDED else 1
            a.started_at, a.finished_at = t.created_at + 0.5, t.created_at + 3.0
        t.attempts = [a]
    return t


def spawn(db: Path, port: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cloudai",
            "master",
            "--no-console",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--db",
            f"sqlite:///{db}",
        ],
        stdout=open(log, "ab"),  # noqa: SIM115 - owned by the process
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def time_to_serve(db: Path, live_id: str, log: Path) -> tuple[float, float, int]:
    """Start a master, SIGKILL it once it serves, start it again: seconds from that
    spawn to the first GetStatus answered and to the live task answered, and the
    task count GetStatus reported."""
    port = free_port()
    first = spawn(db, port, log)
    _wait(port, live_id, 60)
    first.send_signal(signal.SIGKILL)
    first.wait()
    began = time.perf_counter()
    proc = spawn(db, port, log)
    try:
        status_s, task_s, total = _wait(port, live_id, 60, began)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return status_s, task_s, total


def _wait(
    port: int, live_id: str, timeout: float, began: float | None = None
) -> tuple[float, float, int]:
    began = time.perf_counter() if began is None else began
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = client_pb2_grpc.ClusterStub(ch)
        status = None
        while status is None:
            if time.perf_counter() - began > timeout:
                raise TimeoutError("the master did not serve")
            try:
                status = stub.GetStatus(cpb.StatusRequest(), timeout=0.5, wait_for_ready=True)
            except grpc.RpcError:
                time.sleep(0.01)
        status_s = time.perf_counter() - began
        if live_id:
            stub.GetTask(cpb.GetTaskRequest(task_id=live_id), timeout=5)
        task_s = time.perf_counter() - began
    return status_s, task_s, sum(status.tasks_by_state.values())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=100_000)
    p.add_argument("--live", type=int, default=1_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print only the JSON figures")
    a = p.parse_args()
    say = (lambda *_: None) if a.json else print
    root = Path(tempfile.mkdtemp(prefix="cloudai-recovery-"))
    db, empty = root / "full.db", root / "empty.db"
    began = time.perf_counter()
    live_id = fill(db, a.tasks, a.live)
    fill(empty, 0, 0)
    size_mb = sum(f.stat().st_size for f in root.glob("full.db*")) / 1024**2
    say(
        f"store: {a.tasks} tasks ({a.live} live), {size_mb:.0f} MB, filled in "
        f"{time.perf_counter() - began:.1f}s"
    )
    runs, baseline = [], []
    for n in range(1, a.runs + 1):
        status_s, task_s, total = time_to_serve(db, live_id, root / "master.log")
        assert total == a.tasks, f"GetStatus counted {total} tasks, expected {a.tasks}"
        runs.append((status_s, task_s))
        baseline.append(time_to_serve(empty, "", root / "empty.log")[0])
        say(
            f"run {n}: serving again {status_s:.3f}s after SIGKILL+restart, live task "
            f"answered at {task_s:.3f}s (empty store: {baseline[-1]:.3f}s)"
        )
    figures = {
        "tasks": a.tasks,
        "live": a.live,
        "store_mb": round(size_mb, 1),
        "runs": a.runs,
        "serve_again_s_median": round(statistics.median(r[0] for r in runs), 3),
        "live_task_answered_s_median": round(statistics.median(r[1] for r in runs), 3),
        "empty_store_serve_s_median": round(statistics.median(baseline), 3),
        "serve_again_s_all": [round(r[0], 3) for r in runs],
        "target_s": 2.0,
    }
    figures["met_target"] = figures["live_task_answered_s_median"] < 2.0
    print(json.dumps(figures))
    return 0 if figures["met_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
