"""Conversion between protobuf messages (cloudai.proto) and domain types (cloudai.model)."""

from __future__ import annotations

from dataclasses import fields

from cloudai.model import (
    Attempt,
    DecisionRecord,
    Resources,
    Task,
    TaskSpec,
    TaskState,
    WorkerHealth,
)
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_agent_pb2 as apb


def state_to_pb(state: TaskState) -> int:
    return pb.TaskState.Value("TASK_STATE_" + state.value)


def state_from_pb(value: int) -> TaskState:
    """Raises ValueError for UNSPECIFIED or an unknown number."""
    try:
        name = pb.TaskState.Name(value)
    except ValueError as err:
        raise ValueError(f"unknown task state {value}") from err
    if name == "TASK_STATE_UNSPECIFIED":
        raise ValueError("task state is unspecified")
    return TaskState(name.removeprefix("TASK_STATE_"))


def health_to_pb(health: WorkerHealth) -> int:
    return pb.WorkerHealth.Value("WORKER_HEALTH_" + health.value)


def health_from_pb(value: int) -> WorkerHealth:
    name = pb.WorkerHealth.Name(value)
    if name == "WORKER_HEALTH_UNSPECIFIED":
        return WorkerHealth.ACTIVE
    return WorkerHealth(name.removeprefix("WORKER_HEALTH_"))


def resources_to_pb(r: Resources) -> pb.Resources:
    return pb.Resources(cpu=r.cpu, memory_bytes=r.memory_bytes, gpu=r.gpu)


def resources_from_pb(m: pb.Resources) -> Resources:
    return Resources(cpu=m.cpu, memory_bytes=m.memory_bytes, gpu=m.gpu)


# TaskSpec fields copied to the message only when set: a constructor given only the
# fields in use is markedly cheaper, and dispatch converts every placed task. Every
# field but these three (converted on their own) has the same name in the message.
_SPEC_OPTIONAL = tuple(
    f.name for f in fields(TaskSpec) if f.name not in ("image", "env", "resources")
)


def spec_to_pb(s: TaskSpec, *, redact_secrets: bool = False) -> pb.TaskSpec:
    env = s.env
    if redact_secrets and s.secret_env_keys:
        env = {k: v for k, v in env.items() if k not in s.secret_env_keys}
    kwargs: dict = {"image": s.image, "resources": resources_to_pb(s.resources)}
    if env:
        kwargs["env"] = env
    for name in _SPEC_OPTIONAL:
        value = getattr(s, name)
        if value:
            kwargs[name] = value
    return pb.TaskSpec(**kwargs)


def spec_from_pb(m: pb.TaskSpec) -> TaskSpec:
    return TaskSpec(
        image=m.image,
        command=list(m.command),
        env=dict(m.env),
        resources=resources_from_pb(m.resources),
        priority=m.priority,
        timeout_s=m.timeout_s,
        max_retries=m.max_retries,
        selector=dict(m.selector),
        name=m.name,
        pinned_worker=m.pinned_worker,
        always_pull=m.always_pull,
        secret_env_keys=list(m.secret_env_keys),
        owner=m.owner,
        cap_add=list(m.cap_add),
        read_only_rootfs=m.read_only_rootfs,
        user=m.user,
    )


def attempt_to_pb(a: Attempt) -> pb.Attempt:
    return pb.Attempt(
        number=a.number,
        worker_id=a.worker_id,
        state=state_to_pb(a.state),
        exit_code=a.exit_code if a.exit_code is not None else 0,
        reason=a.reason,
        message=a.message,
        placed_at=a.placed_at,
        started_at=a.started_at,
        finished_at=a.finished_at,
        peak_memory_bytes=a.peak_memory_bytes,
    )


def task_to_pb(t: Task, *, log_tail: str = "", redact_secrets: bool = True) -> pb.Task:
    cur = t.current
    return pb.Task(
        id=t.id,
        spec=spec_to_pb(t.spec, redact_secrets=redact_secrets),
        state=state_to_pb(t.state),
        attempt=t.attempt,
        worker_id=t.worker_id,
        created_at=t.created_at,
        updated_at=t.updated_at,
        exit_code=t.exit_code if t.exit_code is not None else 0,
        has_exit_code=t.exit_code is not None,
        reason=t.reason,
        message=t.message,
        attempts=[attempt_to_pb(a) for a in t.attempts],
        started_at=cur.started_at if cur else 0.0,
        finished_at=cur.finished_at if cur else 0.0,
        peak_memory_bytes=cur.peak_memory_bytes if cur else 0,
        log_tail=log_tail,
        retries_used=t.retries_used,
        worker_losses=t.worker_losses,
    )


def decision_to_pb(d: DecisionRecord) -> apb.Decision:
    return apb.Decision(
        task_id=d.task_id,
        attempt=d.attempt,
        worker_id=d.worker_id,
        policy=d.policy,
        profile=d.profile,
        model_version=d.model_version,
        candidates=[
            apb.Candidate(
                worker_id=c["worker_id"],
                total=float(c.get("total", 0.0)),
                scores={k: float(v) for k, v in c.get("scores", {}).items()},
            )
            for c in d.candidates
        ],
        rejections=d.rejections,
        summary=d.summary,
        hint=d.hint,
        fallback=d.fallback,
        decided_at=d.decided_at,
        source=d.source,
        committed=d.committed,
        reject_reason=d.reject_reason,
    )


def decision_from_pb(m: apb.Decision) -> DecisionRecord:
    return DecisionRecord(
        task_id=m.task_id,
        attempt=m.attempt,
        worker_id=m.worker_id,
        policy=m.policy,
        profile=m.profile,
        model_version=m.model_version,
        candidates=[
            {"worker_id": c.worker_id, "total": c.total, "scores": dict(c.scores)}
            for c in m.candidates
        ],
        rejections=dict(m.rejections),
        summary=m.summary,
        hint=m.hint,
        fallback=m.fallback,
        decided_at=m.decided_at,
        source=m.source,
        committed=m.committed,
        reject_reason=m.reject_reason,
    )
