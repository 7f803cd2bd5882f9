"""Builders for store tests: every field set away from its default where it matters."""

from __future__ import annotations

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


def make_task(
    task_id: str,
    *,
    state: TaskState = TaskState.PENDING,
    attempt: int = 0,
    worker_id: str = "",
    created_at: float = 1000.0,
) -> Task:
    return Task(
        id=task_id,
        spec=TaskSpec(image="busybox:1.36", command=["echo", task_id]),
        state=state,
        attempt=attempt,
        worker_id=worker_id,
        created_at=created_at,
        updated_at=created_at,
        queued_at=created_at,
    )


def make_full_task(task_id: str = "t-full") -> Task:
    """A task with every field away from its default, to catch lossy round-trips."""
    spec = TaskSpec(
        image="registry.local/train:2.1",
        command=["python", "-m", "train", "--epochs=3"],
        env={"LR": "0.01", "MODE": "fast", "EMPTY": ""},
        resources=Resources(cpu=1.5, memory_bytes=3 * 2**30, gpu=0.5),
        priority=7,
        timeout_s=90.5,
        max_retries=2,
        selector={"cloudai.io/zone": "eu-1", "disk": "ssd"},
        name="nightly-train",
        pinned_worker="",
        always_pull=True,
        secret_env_keys=["API_TOKEN"],
        owner="alice",
    )
    attempts = [
        Attempt(1, "w-1", TaskState.FAILED, 137, "oom_killed", "OOM", 10.0, 11.0, 12.5, 2**31),
        Attempt(2, "w-2", TaskState.RUNNING, None, "", "", 20.0, 21.25, 0.0, 0),
    ]
    return Task(
        id=task_id,
        spec=spec,
        state=TaskState.RUNNING,
        attempt=2,
        worker_id="w-2",
        created_at=5.0,
        updated_at=21.25,
        queued_at=19.0,
        exit_code=None,
        reason="",
        message="retrying after OOM",
        attempts=attempts,
        retries_used=1,
        worker_losses=0,
        avoid_workers=["w-1"],
    )


def make_worker(worker_id: str, **labels: str) -> WorkerRecord:
    return WorkerRecord(
        id=worker_id,
        address=f"10.0.0.{len(worker_id)}:50052",
        capacity=Resources(cpu=8.0, memory_bytes=16 * 2**30, gpu=1.0),
        labels=dict(labels),
        hostname=f"host-{worker_id}",
        version="0.1.0",
        registered_at=100.0,
        last_heartbeat=100.0,
    )


def make_result(task_id: str, attempt: int, log_tail: str = "", exit_code: int = 0) -> Result:
    return Result(
        task_id=task_id,
        attempt=attempt,
        state=TaskState.SUCCEEDED if exit_code == 0 else TaskState.FAILED,
        exit_code=exit_code,
        reason="completed" if exit_code == 0 else "nonzero_exit",
        log_tail=log_tail,
        started_at=1.0,
        finished_at=2.0,
        peak_memory_bytes=1234,
        worker_id="w-1",
    )


def make_decision(task_id: str, decided_at: float, worker_id: str = "w-1") -> DecisionRecord:
    return DecisionRecord(
        task_id=task_id,
        attempt=1,
        worker_id=worker_id,
        policy="weighted",
        profile="default",
        candidates=[{"worker_id": worker_id, "total": 81.5, "scores": {"binpack": 90.0}}],
        rejections={"insufficient_memory": 2},
        summary=f"placed on {worker_id}",
        decided_at=decided_at,
        source="agent",
        committed=True,
    )
