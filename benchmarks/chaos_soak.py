#!/usr/bin/env python3
"""Chaos soak: a real cluster under a seeded schedule of crashes, then the checks that
no acknowledged task was dropped.

    python benchmarks/chaos_soak.py [--duration 240] [--workers 3] [--seed 1]
                                    [--heartbeat-timeout 5] [--rate 1.5] [--fault-every 8]
                                    [--max-sleep 20] [--keep] [--json]

It starts a real `cloudai master` (SQLite in a temporary folder), `--workers` real
`cloudai worker` processes and the `cloudai agent` on loopback, and submits a stream
of short Docker tasks (`cloudai/base:bookworm`, 0.1 CPU, 32 MiB) for `--duration`
seconds: quick successes, 5 to `--max-sleep` s sleeps (running when a worker dies),
non-zero exits, failures and coin flips with `--retries`, and `--timeout` kills. Only
ids the master returned count as acknowledged; a call that failed is tried again.

Every `--fault-every` seconds (with jitter) it injects one fault, the kinds in an
order drawn from `--seed`; every kind runs at least once when the run is long
enough, and a worker loss always does:

  master_kill  SIGKILL the master, start it again on the same store
  worker_kill  SIGKILL a worker, start it again within 0.5-2 s (same id and port)
  worker_loss  SIGKILL the worker running the most tasks and leave it down until the
               master marks it INACTIVE (past --heartbeat-timeout), so its tasks are
               requeued elsewhere (worker_lost); then start it again with the same id
               and check that its containers of superseded attempts are stopped
  worker_term  SIGTERM a worker (graceful), start it again
  agent_kill   SIGKILL the agent, start it again (the master falls back meanwhile)
  drain        drain a worker for 3-8 s, then undrain it

At least one worker stays up and undrained. After `--duration` it waits for the
queue to drain, stops everything and prints the figures (with --json, one JSON
line). Exit status 1 when an invariant fails: every acknowledged task known and
terminal, every task ended as its kind allows, no task with two successful
attempts, worker_lost exercised when a worker loss ran, every superseded container
found on a returning worker stopped, and no cloudai container left behind. Progress
lines go to stderr. Logs are kept (and their folder printed) on failure or --keep.
The cluster and the fault injector are in benchmarks/chaos_faults.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from chaos_faults import Cluster, Injector, make_schedule, retrying, say, state

from cloudai.cli.client import Client, CliExit
from cloudai.convert import spec_to_pb
from cloudai.model import Resources, TaskSpec
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.worker.containers import LABEL_TASK, LABEL_WORKER

IMAGE = "cloudai/base:bookworm"
MiB = 1024**2
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"}
OK, FAIL = "SUCCEEDED", "FAILED/nonzero_exit"


def outcome(t: pb.Task) -> str:
    s = state(t)
    return s if s == "SUCCEEDED" else f"{s}/{t.reason}"


# -- the workload -----------------------------------------------------------------------
@dataclass
class Job:
    kind: str
    command: list[str]
    expected: set[str]
    retries: int = 0
    timeout_s: float = 0.0

    def spec(self) -> TaskSpec:
        res = Resources(cpu=0.1, memory_bytes=32 * MiB)
        return TaskSpec(IMAGE, self.command, resources=res, max_retries=self.retries,
                        timeout_s=self.timeout_s, name=f"soak-{self.kind}")  # fmt: skip


def make_job(rng: random.Random, max_sleep: int) -> Job:
    roll = rng.random()
    if roll < 0.45:
        return Job("quick", ["sh", "-c", f"sleep {rng.uniform(0.1, 1.5):.1f}; echo ok"], {OK})
    if roll < 0.70:
        return Job("long", ["sh", "-c", f"sleep {rng.randint(5, max_sleep)}; echo ok"], {OK})
    if roll < 0.80:
        return Job("fail", ["sh", "-c", "echo failing; exit 3"], {FAIL})
    if roll < 0.87:
        return Job("retry_fail", ["sh", "-c", "sleep 0.5; exit 1"], {FAIL}, retries=1)
    if roll < 0.95:
        flip = "[ $(od -An -N1 -tu1 /dev/urandom) -lt 128 ]"
        return Job("flaky", ["sh", "-c", flip], {OK, FAIL}, retries=2)
    return Job("timeout", ["sleep", "30"], {"TIMED_OUT/timeout"}, timeout_s=2.0)


# -- submissions -----------------------------------------------------------------------
class Submitter(threading.Thread):
    """Submits jobs at `rate` a second until stopped, through master outages."""

    def __init__(self, c: Cluster, seed: int, rate: float, max_sleep: int) -> None:
        super().__init__(daemon=True)
        self.c, self.rate, self.max_sleep = c, rate, max_sleep
        self.rng = random.Random(seed)
        self.acked: dict[str, Job] = {}
        self.submitted = self.failed_calls = 0
        self.halt = threading.Event()

    def run(self) -> None:
        client = Client(self.c.address, timeout=3)
        while not self.halt.is_set():
            job = make_job(self.rng, self.max_sleep)
            self.submitted += 1
            req = cpb.SubmitTaskRequest(spec=spec_to_pb(job.spec()))
            while not self.halt.is_set():
                try:
                    self.acked[client.call("SubmitTask", req).task_id] = job
                    break
                except CliExit:
                    self.failed_calls += 1
                    time.sleep(0.3)
            self.halt.wait(self.rng.expovariate(self.rate))
        client.close()


# -- the end: drain, check, report -----------------------------------------------------
def status_line(c: Cluster, sub: Submitter, inj: Injector | None) -> str:
    try:
        by_state = dict(c.call("GetStatus", cpb.StatusRequest()).tasks_by_state)
        tasks = " ".join(f"{k.lower()}={v}" for k, v in sorted(by_state.items()) if v)
    except CliExit:
        tasks = "master not answering"
    line = f"submitted={sub.submitted} acked={len(sub.acked)} | {tasks}"
    if inj is not None:
        faults = sum(inj.f.done.values())
        line += f" | faults={faults} down={sorted(inj.down) or '-'} drained={len(inj.drained)}"
    return line


def run_for(c: Cluster, sub: Submitter, inj: Injector, until: float) -> None:
    next_line = 0.0
    while time.time() < until:
        if time.time() >= next_line:
            next_line = time.time() + 10
            say(status_line(c, sub, inj))
        time.sleep(min(1.0, max(0.0, until - time.time())))


def wait_drained(c: Cluster, sub: Submitter, timeout: float) -> float | None:
    """Seconds until no task is PENDING, PLACED or RUNNING (None: timed out)."""
    began = time.time()
    next_line = began + 10
    while time.time() < began + timeout:
        try:
            if not c.live_tasks():
                return time.time() - began
        except CliExit:
            pass
        if time.time() >= next_line:
            next_line = time.time() + 10
            say(f"draining the queue: {status_line(c, sub, None)}")
        time.sleep(0.5)
    return None


def fetch(c: Cluster, task_id: str) -> pb.Task | None:
    """The task, None if the master does not know it (retried while unreachable)."""
    for _ in range(60):
        try:
            return c.task(task_id)
        except CliExit as err:
            if err.code != 2:
                return None
            time.sleep(0.5)
    return None


def check_tasks(c: Cluster, acked: dict[str, Job]) -> dict[str, Any]:
    ended, missing, unexpected = Counter(), [], []
    lost = reconciled = rerun = dup = 0
    for tid, job in acked.items():
        t = fetch(c, tid)
        if t is None or state(t) not in TERMINAL:
            missing.append(f"{tid} ({job.kind}): {state(t) if t else 'unknown'}")
            continue
        end = outcome(t)
        ended[end] += 1
        if end not in job.expected | ({"FAILED/poison"} if t.worker_losses >= 3 else set()):
            unexpected.append(f"{tid} ({job.kind}, {len(t.attempts)} attempts): {end}")
        lost_msgs = [a.message for a in t.attempts if a.reason == "worker_lost"]
        lost += any("missed heartbeats" in m for m in lost_msgs)
        reconciled += any("no longer runs" in m for m in lost_msgs)
        rerun += len(t.attempts) > 1
        dup += sum(state(a) == "SUCCEEDED" for a in t.attempts) > 1
    return {
        "ended": dict(sorted(ended.items())),
        "missing": len(missing),
        "missing_examples": missing[:10],
        "unexpected_end": len(unexpected),
        "unexpected_examples": unexpected[:10],
        "duplicate_success_attempts": dup,
        "tasks_requeued_worker_lost": lost,
        "tasks_requeued_reconciled": reconciled,
        "tasks_with_several_attempts": rerun,
    }


def stored_successes(db: Path) -> Counter:
    """Result rows of state SUCCEEDED per task, read from the SQLite store."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        rows = conn.execute("SELECT task_id, doc FROM results").fetchall()
    return Counter(tid for tid, doc in rows if json.loads(doc).get("state") == "SUCCEEDED")


class ExitWatcher(threading.Thread):
    """Counts, per task, its containers that exited 0 (runs, not reports), from the
    engine's live event stream: a later query of past events sees only the last 256."""

    def __init__(self, engine, prefix: str) -> None:
        super().__init__(daemon=True)
        filters = {"type": "container", "event": "die", "label": LABEL_TASK}
        self.stream = engine.events(filters=filters, decode=True)
        self.prefix = prefix + "-"
        self.zero: Counter = Counter()

    def run(self) -> None:
        with contextlib.suppress(Exception):  # the stream closed by stop()
            for ev in self.stream:
                attrs = ev.get("Actor", {}).get("Attributes", {})
                mine = attrs.get(LABEL_WORKER, "").startswith(self.prefix)
                if mine and attrs.get("exitCode") == "0":
                    self.zero[attrs.get(LABEL_TASK, "")] += 1

    def stop(self) -> int:
        """Tasks whose container exited 0 more than once."""
        with contextlib.suppress(Exception):
            self.stream.close()
        self.join(5)
        return sum(n > 1 for n in self.zero.values())


def ours(engine, prefix: str) -> list[dict]:
    listed = engine.api.containers(all=True, filters={"label": LABEL_WORKER})
    return [ct for ct in listed if ct["Labels"].get(LABEL_WORKER, "").startswith(prefix + "-")]


def log_figures(c: Cluster) -> dict[str, int]:
    master = c.log("master")
    workers = "".join(c.log(w) for w in c.ids)
    every = master + workers + c.log("agent")
    return {
        "worker_lost_events_in_master_log": master.count(" lost (no heartbeat for "),
        "stale_reports_refused_in_master_log": master.count("refused report from "),
        "stale_attempts_stopped_by_workers": workers.count("stopping: superseded at the master")
        + workers.count("stopping: the master refused its report"),
        "stale_results_withheld_by_workers": workers.count("result not reported: the master"),
        "tracebacks_in_logs": every.count("Traceback (most recent call last)"),
    }


def invariants(f: dict[str, Any]) -> list[str]:
    checks = {
        "the queue drained": f["queue_drain_s"] is not None,
        "every acknowledged task is known and terminal": f["missing"] == 0,
        "every task ended as its kind allows": f["unexpected_end"] == 0,
        "no task has two successful attempts": f["duplicate_successes"] == 0,
        "worker_lost exercised when a worker loss ran": f["tasks_requeued_worker_lost"] > 0
        or not f["faults"].get("worker_loss"),
        "every worker loss detected by the master": f["worker_losses_undetected"] == 0,
        "superseded containers of returning workers stopped": f["stale_containers_left"] == 0,
        "no cloudai container left behind": f["leftover_containers"] == 0,
        "the fault injector ran without an error": not f["soak_errors"],
    }
    return [name for name, ok in checks.items() if not ok]


def soak(c: Cluster, engine, args: argparse.Namespace) -> dict[str, Any]:
    schedule = make_schedule(args.seed, args.duration, args.fault_every)
    say(f"cluster in {c.root}; schedule: " + ", ".join(f"{t:.0f}s {k}" for t, k in schedule))
    watch = ExitWatcher(engine, c.prefix)
    watch.start()
    c.boot()
    began = time.time()
    sub = Submitter(c, args.seed, args.rate, args.max_sleep)
    inj = Injector(c, schedule, args.seed, engine)
    sub.start()
    inj.start()
    run_for(c, sub, inj, began + args.duration)
    sub.halt.set()
    sub.join(30)
    say("submissions stopped; waiting for the last faults to end")
    inj.finish()
    drain_s = wait_drained(c, sub, 180 + 3 * args.max_sleep)
    say(f"queue drained in {drain_s:.1f}s" if drain_s is not None else "queue NOT drained")
    f = {**task_figures(c, sub), **fault_figures(c, inj)}
    f["tasks_run_to_exit_0_twice"] = watch.stop()
    f.update(end_figures(c, engine))
    f["queue_drain_s"] = None if drain_s is None else round(drain_s, 1)
    f["total_s"] = round(time.time() - began, 1)
    f["failed_invariants"] = invariants(f)
    return f


def task_figures(c: Cluster, sub: Submitter) -> dict[str, Any]:
    f: dict[str, Any] = {"submitted": sub.submitted, "acknowledged": len(sub.acked)}
    f["submit_calls_failed"] = sub.failed_calls
    everything = {t.id for t in c.call("ListTasks", cpb.ListTasksRequest(limit=100_000)).tasks}
    f["stored_not_acknowledged"] = len(everything - set(sub.acked))
    f["jobs_by_kind"] = dict(Counter(j.kind for j in sub.acked.values()))
    f.update(check_tasks(c, sub.acked))
    succ = stored_successes(c.root / "master.db")
    f["duplicate_successes"] = f["duplicate_success_attempts"] + sum(n > 1 for n in succ.values())
    return f


def fault_figures(c: Cluster, inj: Injector) -> dict[str, Any]:
    return {
        "faults": dict(inj.f.done),
        "faults_skipped": dict(inj.f.skipped),
        "worker_loss_detect_s": inj.f.loss_detect_s,
        "worker_losses_undetected": inj.f.loss_undetected,
        "stale_containers_at_return": inj.f.stale_found,
        "stale_containers_cleared_s": inj.f.stale_cleared_s,
        "stale_containers_left": inj.f.stale_left,
        "slow_exits_sigkilled": c.slow_exits,
        "soak_errors": inj.f.errors,
    }


def end_figures(c: Cluster, engine) -> dict[str, Any]:
    """Containers left once the queue drained, then after every process stopped."""
    gone = retrying(lambda: not ours(engine, c.prefix), 30, every=0.5)
    f = {"containers_left_30s_after_drain": 0 if gone else len(ours(engine, c.prefix))}
    c.stop()
    f["leftover_containers"] = len(ours(engine, c.prefix))
    return {**f, **log_figures(c)}


def report(f: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(f), flush=True)
        return
    for key, value in f.items():
        print(f"{key:40} {value}")
    bad = f["failed_invariants"]
    print("INVARIANTS " + ("FAILED: " + "; ".join(bad) if bad else "OK"), flush=True)


def engine_or_none(image: str):
    try:
        engine = docker.from_env(timeout=30)
        engine.ping()
        engine.images.get(image)
    except Exception as err:  # noqa: BLE001 - any failure means "not ready"
        print(f"chaos_soak: Docker engine or {image} not ready: {err}", file=sys.stderr)
        return None
    return engine


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=240.0, help="seconds of submissions")
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--heartbeat-timeout", type=float, default=5.0)
    p.add_argument("--rate", type=float, default=1.5, help="submissions a second")
    p.add_argument("--fault-every", type=float, default=8.0, help="seconds between faults")
    p.add_argument("--max-sleep", type=int, default=20, help="longest sleep of a long task")
    p.add_argument("--keep", action="store_true", help="keep the logs and the store")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON line")
    args = p.parse_args()
    if args.workers < 2 or args.max_sleep < 5 or args.duration <= 0:
        p.error("needs --workers >= 2, --max-sleep >= 5 and --duration > 0")
    return args


def main() -> int:
    args = parse()
    engine = engine_or_none(IMAGE)
    if engine is None:
        return 2
    root = Path(tempfile.mkdtemp(prefix="cloudai-soak-"))
    c = Cluster(root, args.workers, args.heartbeat_timeout)
    ok = False
    try:
        f = soak(c, engine, args)
        ok = not f["failed_invariants"]
        report(f, args.json)
    finally:
        c.stop()
        c.api.close()
        for ct in ours(engine, c.prefix):
            with contextlib.suppress(docker.errors.DockerException):
                engine.api.remove_container(ct["Id"], force=True)
        if ok and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            say(f"logs and store kept in {root}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
