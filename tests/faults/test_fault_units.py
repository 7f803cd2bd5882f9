"""Fast checks of the rules the fault suite relies on, without Docker (at most a
`sleep` process): retry budgets, memory growth after an OOM kill, requeueing tasks
with no live owner after a master crash, avoided workers as a lapsing preference,
how an attempt that ends during a Docker engine outage is named, and where the
dockerd restart helper starts the daemon again."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from cloudai.config import MasterSettings
from cloudai.master.registry import WorkerRegistry
from cloudai.master.scheduler import AVOID_FOR_S
from cloudai.master.server import Master
from cloudai.master.store import SQLiteStore
from cloudai.master.tasks import Report, TaskManager
from cloudai.model import (
    Attempt,
    Reason,
    Resources,
    Task,
    TaskSpec,
    TaskState,
    WorkerHealth,
    WorkerRecord,
)
from cloudai.worker.images import ImageList
from cloudai.worker.outcome import Outcome, after_engine_outage, stopped_by_signal

GiB = 1024**3
MiB = 1024**2


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "m.db")
    yield s
    s.close()


@pytest.fixture
def manager(store):
    registry = WorkerRegistry(store, timeout_s=30, sample_s=0)
    registry.register(
        WorkerRecord(id="w1", address="127.0.0.1:1", capacity=Resources(4, 8 * GiB)), [], [], None
    )
    return TaskManager(store, registry, max_transient_retries=3)


def _fail(manager: TaskManager, task_id: str, reason: str, peak: int = 0) -> Task:
    t = manager.get(task_id)
    placed, why = manager.commit_placement(task_id, t.attempt, "w1", None)
    assert placed is not None, why
    ok, _ = manager.report(
        Report("w1", task_id, placed.attempt, TaskState.FAILED, 1, reason, peak_memory_bytes=peak)
    )
    assert ok
    return manager.get(task_id)


def _ready(manager: TaskManager, task_id: str) -> None:
    with manager._lock:  # the backoff is real time; the test does not wait it out
        manager._live.get(task_id).queued_at = 0


@pytest.mark.parametrize(
    ("reason", "max_retries", "attempts", "retries_used"),
    [
        (Reason.PULL_FAILED, 0, 4, 0),  # 1 + its own bound of 3; --retries untouched
        (Reason.DOCKER_ERROR, 0, 4, 0),
        (Reason.PULL_FAILED, 1, 5, 1),  # then the user's budget
        (Reason.IMAGE_NOT_FOUND, 5, 1, 0),  # hopeless: at once
        (Reason.NONZERO_EXIT, 2, 3, 2),
    ],
)
def test_retry_budgets(manager, reason, max_retries, attempts, retries_used):
    tid = manager.submit(TaskSpec(image="x", max_retries=max_retries)).id
    t = manager.get(tid)
    while not t.state.terminal:
        _ready(manager, tid)
        t = _fail(manager, tid, reason)
        if not t.state.terminal:
            assert t.queued_at > time.time()  # backed off
    assert (t.state, t.reason, len(t.attempts), t.retries_used) == (
        TaskState.FAILED,
        reason,
        attempts,
        retries_used,
    )


def test_oom_retry_of_a_task_that_asked_no_memory_doubles_its_real_limit(manager):
    tid = manager.submit(TaskSpec(image="x", max_retries=1)).id
    t = _fail(manager, tid, Reason.OOM_KILLED, peak=512 * MiB)  # the worker's default limit
    assert t.state == TaskState.PENDING
    assert t.spec.resources.memory_bytes == 1024 * MiB


def test_restarted_master_requeues_tasks_of_an_inactive_or_unknown_worker(store):
    """A master killed between marking a worker lost and requeueing its tasks."""
    store.upsert_worker(
        WorkerRecord(
            id="gone",
            address="127.0.0.1:1",
            capacity=Resources(4, 8 * GiB),
            health=WorkerHealth.INACTIVE,
        )
    )
    ids = []
    for worker in ("gone", "never-registered"):
        t = Task(id=f"t-{worker}", spec=TaskSpec(image="x"), state=TaskState.RUNNING)
        t.attempt, t.worker_id = 1, worker
        t.attempts = [Attempt(1, worker, TaskState.RUNNING, placed_at=time.time())]
        store.create_task(t)
        ids.append(t.id)
    settings = MasterSettings(host="127.0.0.1", port=0, console=False, heartbeat_timeout=2)
    master = Master(settings, store=store, decide=lambda batch: [])
    master.start()
    try:
        deadline = time.time() + 5
        while time.time() < deadline and any(master.tasks.get(i).state.active for i in ids):
            time.sleep(0.05)
        for tid in ids:
            t = master.tasks.get(tid)
            assert t.state == TaskState.PENDING and t.attempts[-1].reason == Reason.WORKER_LOST
    finally:
        master.stop(grace=0)


def test_avoided_workers_lapse_for_a_task_that_waits(store):
    settings = MasterSettings(host="127.0.0.1", port=0, console=False)
    master = Master(settings, store=store, decide=lambda batch: [])
    master.start()
    fresh = Task(id="t-fresh", spec=TaskSpec(image="x"), avoid_workers=["w1"])
    old = Task(id="t-old", spec=TaskSpec(image="x"), avoid_workers=["w1"])
    old.queued_at = time.time() - AVOID_FOR_S - 1
    batch = master.scheduler.snapshot([fresh, old])
    assert [list(t.avoid_workers) for t in batch.tasks] == [["w1"], []]
    master.stop(grace=0)


@pytest.mark.parametrize(
    ("before", "reason"),
    [
        (Outcome(TaskState.FAILED, 137, Reason.NONZERO_EXIT), Reason.DOCKER_ERROR),
        (Outcome(TaskState.FAILED, 143, Reason.NONZERO_EXIT), Reason.DOCKER_ERROR),
        (Outcome(TaskState.FAILED, 1, Reason.NONZERO_EXIT), Reason.NONZERO_EXIT),
        (Outcome(TaskState.FAILED, 137, Reason.OOM_KILLED), Reason.OOM_KILLED),
        (Outcome(TaskState.SUCCEEDED, 0, Reason.COMPLETED), Reason.COMPLETED),
        (Outcome(TaskState.TIMED_OUT, 137, Reason.TIMEOUT), Reason.TIMEOUT),
    ],
)
def test_an_attempt_ending_in_an_engine_outage_is_named(before, reason):
    after = after_engine_outage(before)
    assert after.reason == reason and after.exit_code == before.exit_code
    assert stopped_by_signal(before) == (reason != before.reason)
    if after.reason == Reason.DOCKER_ERROR:
        assert "Docker engine" in after.message


def test_the_image_list_never_holds_a_heartbeat_on_a_hung_engine():
    """An engine that accepts but does not answer (a daemon still starting): the
    caller that starts a refresh waits its bounded while, the others not at all, and
    the last list is kept until the engine answers."""
    release = threading.Event()
    answers = [["cloudai/base:bookworm"]]

    def client():
        if not release.wait(30):
            raise OSError("never released")
        tags = answers.pop(0) if answers else ["new:1"]
        return SimpleNamespace(images=SimpleNamespace(list=lambda: [SimpleNamespace(tags=tags)]))

    images = ImageList(wait_s=0.3)
    began = time.monotonic()
    assert images.tags(client, 10) == []  # hung: gives up after wait_s
    assert 0.25 < time.monotonic() - began < 2
    began = time.monotonic()
    assert images.tags(client, 10) == []  # a refresh is running: no wait at all
    assert time.monotonic() - began < 0.1
    release.set()
    deadline = time.monotonic() + 5
    while images.tags(client, 10) != ["cloudai/base:bookworm"]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    images.invalidate()
    assert images.tags(client, 10) == ["new:1"]


def test_a_daemon_started_from_a_removed_directory_is_restarted_from_root(tmp_path):
    """dockerd keeps the cwd it was started in; once that checkout is deleted (an
    earlier CI clone), /proc shows "<path> (deleted)" and the restart uses /."""
    import shutil
    import subprocess

    from .dockerd import read_launch

    gone = tmp_path / "old-clone"
    gone.mkdir()
    proc = subprocess.Popen(["sleep", "30"], cwd=gone)
    try:
        deadline = time.monotonic() + 10
        while read_launch(proc.pid).argv != ["sleep", "30"]:  # until the exec is done
            assert time.monotonic() < deadline, "sleep did not start"
            time.sleep(0.01)
        assert read_launch(proc.pid).cwd == str(gone)
        shutil.rmtree(gone)
        launch = read_launch(proc.pid)
        assert launch.cwd == "/" and launch.argv == ["sleep", "30"]
    finally:
        proc.kill()
        proc.wait()
