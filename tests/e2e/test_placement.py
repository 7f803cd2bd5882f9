"""Issue 3 end to end: `cloudai submit` with the agent placing tasks, explanations,
fallback when the agent dies, and the seed's manual flow alongside."""

from __future__ import annotations

import signal
import time

import pytest

from .conftest import (
    SAMPLE_IMAGE,
    cli,
    cli_json,
    state,
    wait_task,
    wait_until,
    workers_by_id,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]
GiB = 1024**3
FAST = ["--env", "SAMPLE_TASK_SECONDS=0.5"]

# Three workers with different capacities and labels (capacity flags are upper limits).
WORKERS = {
    "small": ["--cpu", "1", "--memory", "1g", "--label", "zone=a", "--label", "size=small"],
    "medium": ["--cpu", "2", "--memory", "3g", "--label", "zone=b", "--label", "size=medium"],
    "large": ["--cpu", "2", "--memory", "6g", "--label", "zone=b", "--label", "size=large"],
}


def start(cluster_factory, agent=True, **kw):
    c = cluster_factory(**kw)
    c.start_master()
    for wid, extra in WORKERS.items():
        c.start_worker(wid, *extra)
    wait_until(lambda: c.active_workers() >= 3, 60, "three workers")
    if agent:
        c.start_agent()
        wait_until(c.agent_connected, 30, "the agent to connect")
    return c


def submit(address: str, *args: str) -> dict:
    return cli_json(address, "submit", *args)  # type: ignore[return-value]


def explain(address: str, task_id: str) -> dict:
    return cli_json(address, "explain", task_id)  # type: ignore[return-value]


MIXED = [
    ["--cpu", "0.5", "--memory", "256m"],
    ["--cpu", "1", "--memory", "512m"],
    ["--cpu", "0.25", "--memory", "2g"],  # only medium or large
    ["--cpu", "1.5", "--memory", "1g"],  # not small (1 cpu)
    ["--cpu", "0.5", "--memory", "4g"],  # only large
    ["--cpu", "0.5", "--memory", "256m", "--selector", "zone=a"],  # only small
    ["--cpu", "0.5", "--memory", "256m", "--selector", "size=medium"],
    ["--cpu", "0.1", "--memory", "128m", "--priority", "5"],
    ["--cpu", "2", "--memory", "1g"],  # medium or large, whole machine
    ["--cpu", "0.5", "--memory", "512m", "--selector", "zone=b"],
    ["--cpu", "0.2", "--memory", "300m"],
    ["--cpu", "0.3", "--memory", "5g"],  # only large
]


def _fits(worker: dict, t: dict) -> bool:
    cap, req = worker["capacity"], t["spec"]["resources"]
    labels = worker["labels"]
    return (
        float(req["cpu"]) <= float(cap["cpu"])
        and req["memory_bytes"] <= cap["memory_bytes"]
        and all(labels.get(k) == v for k, v in t["spec"]["selector"].items())
    )


def test_agent_places_twelve_mixed_tasks_on_fitting_workers(cluster_factory):
    c = start(cluster_factory)
    ids = [
        submit(c.address, SAMPLE_IMAGE, *FAST, *req, "--name", f"mixed-{i}")["id"]
        for i, req in enumerate(MIXED)
    ]
    workers = workers_by_id(c.address)
    for tid in ids:
        t = wait_task(c.address, tid, timeout=180)
        assert state(t) == "SUCCEEDED", t
        assert _fits(workers[t["worker_id"]], t), (t["worker_id"], t["spec"])
        e = explain(c.address, tid)
        placed = [d for d in e["decisions"] if d["committed"]]
        assert placed and placed[0]["worker_id"] == t["worker_id"]
        assert placed[0]["source"] == "agent" and not placed[0]["fallback"]
        winner = placed[0]["candidates"][0]
        assert winner["worker_id"] == t["worker_id"] and winner["scores"]
        assert f"placed on {t['worker_id']}" in e["text"]


def test_unplaceable_task_waits_with_reason_then_runs_when_a_big_worker_joins(cluster_factory):
    c = start(cluster_factory)
    tid = submit(c.address, SAMPLE_IMAGE, *FAST, "--memory", "10g")["id"]

    def explained():
        e = explain(c.address, tid)
        return e if "insufficient memory" in e["text"] else None

    e = wait_until(explained, 30, "an explanation for the waiting task")
    assert state(e["task"]) == "PENDING"
    assert "3 insufficient memory" in e["text"]
    assert "request <=" in e["text"] and "memory" in e["text"]
    c.start_worker("huge", "--memory", "12g")
    t = wait_task(c.address, tid, timeout=120)
    assert state(t) == "SUCCEEDED" and t["worker_id"] == "huge"


def test_killed_agent_falls_back_then_takes_over_again(cluster_factory):
    c = start(cluster_factory, agent_timeout=2.0)
    before = submit(c.address, SAMPLE_IMAGE, *FAST)["id"]
    assert state(wait_task(c.address, before)) == "SUCCEEDED"
    c.procs["agent"].send_signal(signal.SIGKILL)
    c.procs["agent"].wait()
    sent = time.time()
    tid = submit(c.address, SAMPLE_IMAGE, *FAST)["id"]
    t = wait_task(c.address, tid)
    assert state(t) == "SUCCEEDED"
    d = [d for d in explain(c.address, tid)["decisions"] if d["committed"]][0]
    assert d["fallback"] and d["source"] == "master"
    assert d["decided_at"] - sent < 2.0 + 3.0  # within the configured time, with slack
    c.start_agent()
    wait_until(c.agent_connected, 30, "the agent to reconnect")
    again = submit(c.address, SAMPLE_IMAGE, *FAST)["id"]
    assert state(wait_task(c.address, again)) == "SUCCEEDED"
    d = [d for d in explain(c.address, again)["decisions"] if d["committed"]][0]
    assert not d["fallback"] and d["source"] == "agent"


def test_manual_pin_works_alongside_the_agent_and_is_validated(cluster_factory):
    c = start(cluster_factory)
    pinned = submit(c.address, SAMPLE_IMAGE, *FAST, "--worker", "small")["id"]
    auto = submit(c.address, SAMPLE_IMAGE, *FAST)["id"]
    t = wait_task(c.address, pinned)
    assert state(t) == "SUCCEEDED" and t["worker_id"] == "small"
    assert state(wait_task(c.address, auto)) == "SUCCEEDED"
    d = [d for d in explain(c.address, pinned)["decisions"] if d["committed"]][0]
    assert d["source"] == "manual"
    too_big = cli(c.address, "submit", SAMPLE_IMAGE, "--worker", "small", "--memory", "2g")
    assert too_big.returncode == 1 and "does not fit worker 'small'" in too_big.stderr
    unknown = cli(c.address, "submit", SAMPLE_IMAGE, "--worker", "nope")
    assert unknown.returncode == 1 and "unknown worker 'nope'" in unknown.stderr


def test_submit_wait_exits_with_the_task_exit_code_and_dry_run_changes_nothing(cluster_factory):
    c = start(cluster_factory)
    out = cli(c.address, "submit", "--wait", "cloudai/base:bookworm", "--", "sh", "-c", "exit 7")
    assert out.returncode == 7
    dry = cli_json(c.address, "submit", "--dry-run", SAMPLE_IMAGE, "--memory", "4g")
    assert dry["worker_id"] == "large" and dry["candidates"]
    before = len(cli_json(c.address, "tasks"))  # type: ignore[arg-type]
    cli(c.address, "submit", "--dry-run", SAMPLE_IMAGE)
    assert len(cli_json(c.address, "tasks")) == before  # type: ignore[arg-type]
    follow = cli(c.address, "submit", "--follow", SAMPLE_IMAGE, *FAST)
    assert follow.returncode == 0 and "Task completed successfully" in follow.stdout
