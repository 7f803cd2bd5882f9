"""Task retention in the master: the setting (CLOUDAI_TASK_RETENTION_S), the sweeper's
hourly pass that deletes finished tasks past it, and what the master answers about a
deleted task afterwards (not found, as for an id it never had), over real gRPC.

Real SQLite store, registry, task manager and sweeper; the in-process master of
harness.py with fake workers that speak the real protocol."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import grpc
import pytest
from pydantic import ValidationError

from cloudai.config import MasterSettings
from cloudai.convert import state_to_pb
from cloudai.master import sweeper as sweeper_module
from cloudai.master.registry import WorkerRegistry
from cloudai.master.store import SQLiteStore
from cloudai.master.sweeper import Sweeper
from cloudai.master.tasks import TaskManager
from cloudai.model import DecisionRecord, Result, Task, TaskSpec, TaskState
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_worker_pb2 as mw

from .harness import console_output, make_harness

HOUR = 3600.0
GONE, KEPT, LIVE = "t-0000000000a1", "t-0000000000b2", "t-0000000000c3"


def _seed(store: SQLiteStore, task_id: str, state: TaskState, ended: float) -> None:
    """A task created an hour before `ended`, with a result and a decision when it ran."""
    task = Task(id=task_id, spec=TaskSpec(image="busybox"), state=state)
    task.created_at = task.queued_at = ended - HOUR
    task.updated_at = ended
    store.create_task(task)
    if state == TaskState.PENDING:
        return
    task.attempt, task.worker_id = 1, "w1"
    store.update_task(task, TaskState.PENDING, 0)
    store.put_result(Result(task_id, 1, state, exit_code=0, log_tail=f"log of {task_id}\n"))
    store.add_decision(DecisionRecord(task_id=task_id, attempt=1, worker_id="w1", decided_at=ended))


# -- the setting -------------------------------------------------------------------
def test_the_setting_defaults_to_30_days_and_reads_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("CLOUDAI_TASK_RETENTION_S", raising=False)
    assert MasterSettings().task_retention_s == 30 * 86400 == 2592000
    monkeypatch.setenv("CLOUDAI_TASK_RETENTION_S", "0")
    assert MasterSettings().task_retention_s == 0  # keep for ever
    monkeypatch.setenv("CLOUDAI_TASK_RETENTION_S", "7200")
    assert MasterSettings().task_retention_s == 7200
    with pytest.raises(ValidationError):
        MasterSettings(task_retention_s=-1)


def test_a_negative_retention_stops_the_master_with_one_line(tmp_path) -> None:
    env = {**os.environ, "CLOUDAI_TASK_RETENTION_S": "-5"}
    args = ["master", "--no-console", "--port", "25187", "--db", f"sqlite:///{tmp_path}/m.db"]
    proc = subprocess.run(
        [sys.executable, "-m", "cloudai", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "task_retention_s" in proc.stderr and "greater than or equal to 0" in proc.stderr
    assert not (tmp_path / "m.db").exists()


# -- the sweeper -------------------------------------------------------------------
@pytest.fixture
def parts(tmp_path):
    store = SQLiteStore(tmp_path / "m.db")
    registry = WorkerRegistry(store, timeout_s=30.0, sample_s=HOUR)
    yield store, registry
    store.close()


def _sweeper(parts, retention_s: float) -> Sweeper:
    store, registry = parts
    tasks = TaskManager(store, registry)
    return Sweeper(
        store,
        registry,
        tasks,
        heartbeat_timeout=30.0,
        telemetry_retention_s=86400.0,
        task_retention_s=retention_s,
        notify=lambda: None,
    )


def test_the_sweeper_deletes_old_finished_tasks_and_logs_it(parts, caplog) -> None:
    store, _ = parts
    now = time.time()
    _seed(store, GONE, TaskState.SUCCEEDED, now - 2 * HOUR)
    _seed(store, "t-0000000000a2", TaskState.TIMED_OUT, now - 3 * HOUR)
    _seed(store, KEPT, TaskState.FAILED, now - 60)
    _seed(store, LIVE, TaskState.PENDING, now - 5 * HOUR)
    sweeper = _sweeper(parts, HOUR)

    with caplog.at_level(logging.INFO, logger="cloudai.master"):
        sweeper.sweep_once()

    assert {t.id for t in store.list_tasks()} == {KEPT, LIVE}
    assert store.get_results(GONE) == [] and store.list_decisions(GONE) == []
    assert "deleted 2 finished task(s) older than 3600 s" in caplog.text


def test_the_sweeper_deletes_once_an_hour(parts) -> None:
    store, _ = parts
    now = time.time()
    sweeper = _sweeper(parts, HOUR)
    sweeper.sweep_once()  # the first pass: nothing yet
    _seed(store, GONE, TaskState.CANCELLED, now - 2 * HOUR)

    sweeper.sweep_once()  # within the hour: not again
    assert store.get_task(GONE) is not None

    sweeper._trimmed_at -= sweeper_module.TRIM_EVERY_S  # an hour has passed
    sweeper.sweep_once()
    assert store.get_task(GONE) is None


def test_a_backlog_goes_over_the_next_passes(parts, monkeypatch) -> None:
    """A pass deletes at most TASKS_PER_PASS; the rest goes on the next passes, not an
    hour later, and a pass that found less stops asking."""
    store, _ = parts
    monkeypatch.setattr(sweeper_module, "TASKS_PER_PASS", 2)
    now = time.time()
    for i in range(5):
        _seed(store, f"t-00000000000{i}", TaskState.SUCCEEDED, now - 2 * HOUR)
    sweeper = _sweeper(parts, HOUR)

    left = []
    for _ in range(4):
        sweeper.sweep_once()
        left.append(len(store.list_tasks()))
    _seed(store, GONE, TaskState.FAILED, now - 2 * HOUR)
    sweeper.sweep_once()

    assert left == [3, 1, 0, 0]
    assert store.get_task(GONE) is not None  # the backlog is done: back to hourly


def test_retention_zero_deletes_nothing(parts, caplog) -> None:
    store, _ = parts
    _seed(store, GONE, TaskState.SUCCEEDED, 1000.0)  # finished in 1970
    sweeper = _sweeper(parts, 0.0)

    with caplog.at_level(logging.INFO, logger="cloudai.master"):
        sweeper.sweep_once()
        sweeper._trimmed_at -= sweeper_module.TRIM_EVERY_S
        sweeper.sweep_once()

    assert store.get_task(GONE) is not None and len(store.get_results(GONE)) == 1
    assert "finished task" not in caplog.text


# -- the master, over gRPC ---------------------------------------------------------
@pytest.fixture
def h(tmp_path):
    """A master whose first sweep (at start) finds GONE past a retention of an hour."""
    store = SQLiteStore(tmp_path / "master.db")
    now = time.time()
    _seed(store, GONE, TaskState.SUCCEEDED, now - 2 * HOUR)
    _seed(store, KEPT, TaskState.SUCCEEDED, now - 60)
    _seed(store, LIVE, TaskState.PENDING, now - 5 * HOUR)
    store.close()
    harness = make_harness(tmp_path, heartbeat_timeout=2.0, task_retention_s=HOUR)
    deadline = time.time() + 10
    while harness.master.store.get_task(GONE) is not None and time.time() < deadline:
        time.sleep(0.05)
    yield harness
    harness.close()


def _not_found(call) -> str:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND, caught.value.details()
    return caught.value.details()


def test_a_deleted_task_reads_as_not_found(h) -> None:
    c = h.cluster
    unknown = "t-0000000000ff"  # never existed: the deleted task must answer alike

    for task_id in (GONE, unknown):
        assert task_id in _not_found(lambda t=task_id: c.GetTask(cpb.GetTaskRequest(task_id=t)))
        _not_found(lambda t=task_id: c.Explain(cpb.ExplainRequest(task_id=t)))
        _not_found(lambda t=task_id: list(c.StreamLogs(cpb.LogsRequest(task_id=t))))
        _not_found(lambda t=task_id: c.CancelTask(cpb.CancelRequest(task_id=t)))

    listed = {t.id for t in c.ListTasks(cpb.ListTasksRequest()).tasks}
    assert listed == {KEPT, LIVE}
    assert c.GetTask(cpb.GetTaskRequest(task_id=KEPT)).log_tail == f"log of {KEPT}\n"
    assert c.Explain(cpb.ExplainRequest(task_id=KEPT)).decisions[0].worker_id == "w1"
    counts = c.GetStatus(cpb.StatusRequest()).tasks_by_state
    assert counts["SUCCEEDED"] == 1 and counts["PENDING"] == 1


def test_late_worker_word_about_a_deleted_task_is_refused_cleanly(h) -> None:
    worker = h.add_worker("w1")
    report = mw.TaskStatusReport(
        worker_id="w1",
        task_id=GONE,
        attempt=1,
        state=state_to_pb(TaskState.SUCCEEDED),
        has_exit_code=True,
        exit_code=0,
        log_tail="late\n",
    )

    ack = h.mw.ReportTaskStatus(report)
    beat = h.mw.SendHeartbeat(
        mw.HeartbeatRequest(
            worker_id="w1",
            address=f"127.0.0.1:{worker.port}",
            running=[pb.TaskRef(task_id=GONE, attempt=1)],
        )
    )

    assert not ack.accepted and f"unknown task {GONE!r}" in ack.message
    assert h.master.store.get_results(GONE) == []  # the late result is not stored
    assert beat.known and [(r.task_id, r.attempt) for r in beat.stop] == [(GONE, 1)]


def test_the_console_says_not_found_for_a_deleted_task(h) -> None:
    out = console_output(h.master, f"explain {GONE}", f"logs {GONE}", f"explain {KEPT}")

    assert out.count(f"✗ no task {GONE!r}") == 2
    assert "Traceback" not in out and "internal error" not in out
