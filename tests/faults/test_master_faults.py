"""Master faults: SIGKILL three times under a stream of submissions (issue 5, item 3),
and SIGTERM shutting every process down gracefully."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from cloudai.cli.client import Client, CliExit
from cloudai.convert import spec_to_pb
from cloudai.model import Resources, TaskSpec
from cloudai.proto import client_pb2 as cpb

from .faultkit import BASE_IMAGE, TERMINAL, MiB, health, record, state, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]
TOTAL = 50


class Submitter(threading.Thread):
    """Submits TOTAL short tasks, one every ~0.25 s, through master outages. Only ids
    the master returned count as acknowledged; a failed call is tried again."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.client = Client(address, timeout=3)
        self.acked: list[str] = []
        self.failed_calls = 0

    def run(self) -> None:
        while len(self.acked) < TOTAL:
            n = len(self.acked)
            spec = TaskSpec(
                image=BASE_IMAGE,
                command=["sh", "-c", f"sleep {1 + n % 2}; echo done {n}"],
                resources=Resources(cpu=0.1, memory_bytes=32 * MiB),
            )
            try:
                req = cpb.SubmitTaskRequest(spec=spec_to_pb(spec))
                self.acked.append(self.client.call("SubmitTask", req).task_id)
            except CliExit:
                self.failed_calls += 1
                time.sleep(0.2)
                continue
            time.sleep(0.25)


def _ownerless(c, timeout: float) -> list[str]:
    """PLACED/RUNNING tasks that no live worker holds, past the time a placement
    needs to reach its worker's heartbeat. Re-checked once to skip tasks that just
    finished between the two listings."""

    def suspects() -> list[str]:
        tasks = c.tasks(["PLACED", "RUNNING"])
        workers = c.workers()
        out = []
        for t in tasks:
            w = workers.get(t.worker_id)
            held = (
                w is not None
                and health(w) == "ACTIVE"
                and any(r.task_id == t.id and r.attempt == t.attempt for r in w.running)
            )
            if not held and time.time() - t.attempts[-1].placed_at > timeout + 1:
                out.append(t.id)
        return out

    first = suspects()
    return [tid for tid in first if tid in suspects()] if first else []


def test_master_sigkilled_three_times_loses_no_acknowledged_task(make_cluster):
    c = make_cluster()
    c.start(3, agent=True)
    sub = Submitter(c.address)
    began = time.time()
    sub.start()
    kills, restarts = _kill_master_three_times(c, sub)
    sub.join(60)
    assert len(sub.acked) == TOTAL
    done = c.wait_terminal(sub.acked, 150)
    finished = time.time() - began
    states, everything, spanned = _check_no_acknowledged_task_lost(c, sub.acked, done, kills)
    record(
        "kill_master_3x",
        acknowledged=len(sub.acked),
        succeeded=sum(s == "SUCCEEDED" for s in states.values()),
        lost=TOTAL - len(done),
        unacknowledged_calls=sub.failed_calls,
        extra_tasks_from_unacknowledged_calls=len(everything) - TOTAL,
        ran_twice=sum(len(t.attempts) > 1 for t in done.values()),
        ran_across_a_kill=len(spanned),
        serve_again_s=[round(r["serve"], 2) for r in restarts],
        workers_back_s=[round(r["workers"], 2) for r in restarts],
        agent_back_s=[round(r["agent"], 2) for r in restarts],
        total_s=finished,
    )


def _kill_master_three_times(c, sub: Submitter) -> tuple[list[float], list[dict[str, float]]]:
    """SIGKILL the master after 8, 20 and 35 acknowledged submissions. Returns when
    each kill happened and how long each restart took."""
    restarts: list[dict[str, float]] = []
    kills: list[float] = []
    for at in (8, 20, 35):
        wait_until(lambda at=at: len(sub.acked) >= at, 60, f"{at} acknowledged submissions")
        killed_at, restart = _sigkill_and_restart_master(c)
        kills.append(killed_at)
        restarts.append(restart)
        # Past one heartbeat timeout, every PLACED/RUNNING task has a live owner.
        time.sleep(c.heartbeat_timeout + 1.5)
        assert _ownerless(c, c.heartbeat_timeout) == []
    return kills, restarts


def _sigkill_and_restart_master(c) -> tuple[float, dict[str, float]]:
    """Kill the master and start it again; returns when it died and the seconds until it
    served, until every worker had registered again, and until the agent was back."""
    mark = len(c.log("master"))
    c.signal("master", signal.SIGKILL)
    spawned = time.time()
    c.start_master()
    serve = c.wait_serving()

    def reconnected() -> bool:
        log = c.log("master")[mark:]
        return all(f"worker {c.wid(i)} registered" in log for i in (1, 2, 3))

    wait_until(reconnected, 30, "workers to re-register")
    workers_back = time.time() - spawned
    wait_until(lambda: "agent agent-1 connected" in c.log("master")[mark:], 30, "the agent")
    return spawned, {"serve": serve, "workers": workers_back, "agent": time.time() - spawned}


def _check_no_acknowledged_task_lost(c, acked, done, kills):
    """Every acknowledged task succeeded, nothing is left unfinished or ownerless, and
    some task ran across a kill. Returns the final states, every task the master
    knows, and the tasks that ran across a kill."""
    states = {tid: state(t) for tid, t in done.items()}
    assert set(states.values()) == {"SUCCEEDED"}, states
    everything = c.tasks()
    assert {t.id for t in everything} >= set(acked)  # every acknowledged task is there
    assert [t.id for t in everything if state(t) not in TERMINAL] == []
    assert _ownerless(c, c.heartbeat_timeout) == []
    # Tasks that ran across a master kill: their results landed through the outage.
    spanned = [
        tid
        for tid, t in done.items()
        if any(t.attempts[-1].started_at < k < t.attempts[-1].finished_at for k in kills)
    ]
    assert spanned, "no task was running while the master was down"
    return states, everything, spanned


def test_sigterm_stops_every_process_gracefully(make_cluster):
    c = make_cluster()
    c.start(2, agent=True)
    tid = c.submit(["sh", "-c", "echo hello"])
    assert state(c.wait_terminal([tid], 60)[tid]) == "SUCCEEDED"
    order = ["agent", c.wid(1), c.wid(2), "master"]
    took = {}
    for name in order:
        began = time.time()
        c.procs[name].send_signal(signal.SIGTERM)
        code = c.procs[name].wait(15)
        took[name] = time.time() - began
        assert code == 0, f"{name} exited {code}"
    assert "✓ agent stopped" in c.log("agent")
    for wid in order[1:3]:
        assert f"[{wid}] stopped" in c.log(wid)
    assert "✓ master stopped" in c.log("master")
    for name in order:
        assert "Traceback" not in c.log(name), name
    record(
        "sigterm_graceful",
        agent_exit_s=took["agent"],
        worker_exit_s=max(took[w] for w in order[1:3]),
        master_exit_s=took["master"],
    )
