"""Domain types shared by the master, the workers and the agent.

These are plain dataclasses: the store persists them, the servicers convert them
to and from protobuf (cloudai.convert), and the policy library reads them.
"""

from __future__ import annotations

import copy
import time
import uuid
from dataclasses import dataclass, field, fields
from enum import StrEnum


class TaskState(StrEnum):
    PENDING = "PENDING"
    PLACED = "PLACED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def active(self) -> bool:
        """PLACED or RUNNING: the task holds resources on a worker."""
        return self in (TaskState.PLACED, TaskState.RUNNING)


TERMINAL_STATES = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT}
)


class WorkerHealth(StrEnum):
    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"
    DRAINING = "DRAINING"


class Reason(StrEnum):
    """Why an attempt ended. Specific, so users and retry logic can act on it."""

    COMPLETED = "completed"
    NONZERO_EXIT = "nonzero_exit"
    OOM_KILLED = "oom_killed"
    IMAGE_NOT_FOUND = "image_not_found"
    PULL_FAILED = "pull_failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    WORKER_LOST = "worker_lost"
    INVALID_SPEC = "invalid_spec"
    DOCKER_ERROR = "docker_error"
    WORKER_REJECTED = "worker_rejected"
    # A task pinned to a worker that refused it, or could not be reached, too many
    # times in a row (the worker heartbeats, but its advertised address is dead).
    WORKER_UNREACHABLE = "worker_unreachable"
    POISON = "poison"


def _shallow(obj):
    """copy.copy for a slots dataclass, several times faster than copy.copy."""
    new = object.__new__(type(obj))
    for name in type(obj).__slots__:
        object.__setattr__(new, name, getattr(obj, name))
    return new


@dataclass(slots=True)
class Resources:
    cpu: float = 0.0
    memory_bytes: int = 0
    gpu: float = 0.0

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.cpu + other.cpu, self.memory_bytes + other.memory_bytes, self.gpu + other.gpu
        )

    def __sub__(self, other: Resources) -> Resources:
        return Resources(
            self.cpu - other.cpu, self.memory_bytes - other.memory_bytes, self.gpu - other.gpu
        )

    def fits_in(self, free: Resources, eps: float = 1e-9) -> bool:
        return (
            self.cpu <= free.cpu + eps
            and self.memory_bytes <= free.memory_bytes
            and self.gpu <= free.gpu + eps
        )

    def to_dict(self) -> dict:
        return {"cpu": self.cpu, "memory_bytes": self.memory_bytes, "gpu": self.gpu}

    @classmethod
    def from_dict(cls, d: dict | None) -> Resources:
        d = d or {}
        return cls(
            float(d.get("cpu", 0.0)), int(d.get("memory_bytes", 0)), float(d.get("gpu", 0.0))
        )


@dataclass(slots=True)
class TaskSpec:
    image: str
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    priority: int = 0
    timeout_s: float = 0.0
    max_retries: int = 0
    selector: dict[str, str] = field(default_factory=dict)
    name: str = ""
    pinned_worker: str = ""
    always_pull: bool = False
    secret_env_keys: list[str] = field(default_factory=list)
    owner: str = ""
    # Container hardening the task asks for (docs/security.md).
    cap_add: list[str] = field(default_factory=list)
    read_only_rootfs: bool = False
    user: str = ""

    def clone(self) -> TaskSpec:
        new = _shallow(self)
        for name in _CONTAINER_FIELDS:
            setattr(new, name, copy.copy(getattr(self, name)))
        r = self.resources
        new.resources = Resources(r.cpu, r.memory_bytes, r.gpu)
        return new

    def to_dict(self) -> dict:
        return {
            "image": self.image,
            "command": list(self.command),
            "env": dict(self.env),
            "resources": self.resources.to_dict(),
            "priority": self.priority,
            "timeout_s": self.timeout_s,
            "max_retries": self.max_retries,
            "selector": dict(self.selector),
            "name": self.name,
            "pinned_worker": self.pinned_worker,
            "always_pull": self.always_pull,
            "secret_env_keys": list(self.secret_env_keys),
            "owner": self.owner,
            "cap_add": list(self.cap_add),
            "read_only_rootfs": self.read_only_rootfs,
            "user": self.user,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TaskSpec:
        return cls(
            image=d["image"],
            command=list(d.get("command", [])),
            env=dict(d.get("env", {})),
            resources=Resources.from_dict(d.get("resources")),
            priority=int(d.get("priority", 0)),
            timeout_s=float(d.get("timeout_s", 0.0)),
            max_retries=int(d.get("max_retries", 0)),
            selector=dict(d.get("selector", {})),
            name=d.get("name", ""),
            pinned_worker=d.get("pinned_worker", ""),
            always_pull=bool(d.get("always_pull", False)),
            secret_env_keys=list(d.get("secret_env_keys", [])),
            owner=d.get("owner", ""),
            cap_add=list(d.get("cap_add", [])),
            read_only_rootfs=bool(d.get("read_only_rootfs", False)),
            user=d.get("user", ""),
        )


# TaskSpec fields holding lists or dicts: clone() copies them.
_CONTAINER_FIELDS = tuple(
    f.name
    for f in fields(TaskSpec)
    if f.default_factory in (list, dict)  # type: ignore[misc]
)


@dataclass(slots=True)
class Attempt:
    number: int
    worker_id: str = ""
    state: TaskState = TaskState.PLACED
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    placed_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    peak_memory_bytes: int = 0

    def to_dict(self) -> dict:
        return {
            "number": self.number,
            "worker_id": self.worker_id,
            "state": self.state.value,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "message": self.message,
            "placed_at": self.placed_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "peak_memory_bytes": self.peak_memory_bytes,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Attempt:
        return cls(
            number=int(d["number"]),
            worker_id=d.get("worker_id", ""),
            state=TaskState(d.get("state", "PLACED")),
            exit_code=d.get("exit_code"),
            reason=d.get("reason", ""),
            message=d.get("message", ""),
            placed_at=float(d.get("placed_at", 0.0)),
            started_at=float(d.get("started_at", 0.0)),
            finished_at=float(d.get("finished_at", 0.0)),
            peak_memory_bytes=int(d.get("peak_memory_bytes", 0)),
        )


def new_task_id() -> str:
    return "t-" + uuid.uuid4().hex[:12]


@dataclass(slots=True)
class Task:
    """A task and its current attempt. `attempt` is 0 until the first placement."""

    id: str
    spec: TaskSpec
    state: TaskState = TaskState.PENDING
    attempt: int = 0
    worker_id: str = ""
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    # When the task (re-)entered the queue; retries may set it in the future (backoff).
    queued_at: float = field(default_factory=time.time)
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    retries_used: int = 0
    worker_losses: int = 0
    avoid_workers: list[str] = field(default_factory=list)
    # Retries after engine trouble (pull_failed, docker_error): their own budget,
    # separate from the user's --retries.
    transient_failures: int = 0

    @property
    def current(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def clone(self) -> Task:
        """A deep copy, much cheaper than a to_dict/from_dict round trip."""
        new = self.evolve()
        new.spec = self.spec.clone()
        return new

    def evolve(self) -> Task:
        """A copy to change and write back: its own attempts (deep) and lists, but the
        same spec object. Only for code that replaces the spec rather than mutating it
        (the master's copy-on-write task index)."""
        new = _shallow(self)
        new.attempts = [_shallow(a) for a in self.attempts]
        new.avoid_workers = list(self.avoid_workers)
        return new

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "spec": self.spec.to_dict(),
            "state": self.state.value,
            "attempt": self.attempt,
            "worker_id": self.worker_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "queued_at": self.queued_at,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "message": self.message,
            "attempts": [a.to_dict() for a in self.attempts],
            "retries_used": self.retries_used,
            "worker_losses": self.worker_losses,
            "avoid_workers": list(self.avoid_workers),
            "transient_failures": self.transient_failures,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Task:
        return cls(
            id=d["id"],
            spec=TaskSpec.from_dict(d["spec"]),
            state=TaskState(d["state"]),
            attempt=int(d.get("attempt", 0)),
            worker_id=d.get("worker_id", ""),
            created_at=float(d.get("created_at", 0.0)),
            updated_at=float(d.get("updated_at", 0.0)),
            queued_at=float(d.get("queued_at", d.get("created_at", 0.0))),
            exit_code=d.get("exit_code"),
            reason=d.get("reason", ""),
            message=d.get("message", ""),
            attempts=[Attempt.from_dict(a) for a in d.get("attempts", [])],
            retries_used=int(d.get("retries_used", 0)),
            worker_losses=int(d.get("worker_losses", 0)),
            avoid_workers=list(d.get("avoid_workers", [])),
            transient_failures=int(d.get("transient_failures", 0)),
        )


@dataclass(slots=True)
class Result:
    """The stored outcome of one attempt: exit code, reason, bounded log tail, usage."""

    task_id: str
    attempt: int
    state: TaskState
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    log_tail: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    peak_memory_bytes: int = 0
    worker_id: str = ""

    def to_dict(self) -> dict:
        return {
            "task_id": self.task_id,
            "attempt": self.attempt,
            "state": self.state.value,
            "exit_code": self.exit_code,
            "reason": self.reason,
            "message": self.message,
            "log_tail": self.log_tail,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "peak_memory_bytes": self.peak_memory_bytes,
            "worker_id": self.worker_id,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Result:
        return cls(
            task_id=d["task_id"],
            attempt=int(d["attempt"]),
            state=TaskState(d["state"]),
            exit_code=d.get("exit_code"),
            reason=d.get("reason", ""),
            message=d.get("message", ""),
            log_tail=d.get("log_tail", ""),
            started_at=float(d.get("started_at", 0.0)),
            finished_at=float(d.get("finished_at", 0.0)),
            peak_memory_bytes=int(d.get("peak_memory_bytes", 0)),
            worker_id=d.get("worker_id", ""),
        )


@dataclass(slots=True)
class WorkerRecord:
    """The persisted part of a worker: registration and health, not telemetry."""

    id: str
    address: str
    capacity: Resources
    labels: dict[str, str] = field(default_factory=dict)
    health: WorkerHealth = WorkerHealth.ACTIVE
    hostname: str = ""
    version: str = ""
    registered_at: float = field(default_factory=time.time)
    last_heartbeat: float = field(default_factory=time.time)
    # When it said it shut down (0: it did not, or registered since).
    left_at: float = 0.0

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "address": self.address,
            "capacity": self.capacity.to_dict(),
            "labels": dict(self.labels),
            "health": self.health.value,
            "hostname": self.hostname,
            "version": self.version,
            "registered_at": self.registered_at,
            "last_heartbeat": self.last_heartbeat,
            "left_at": self.left_at,
        }

    @classmethod
    def from_dict(cls, d: dict) -> WorkerRecord:
        return cls(
            id=d["id"],
            address=d["address"],
            capacity=Resources.from_dict(d.get("capacity")),
            labels=dict(d.get("labels", {})),
            health=WorkerHealth(d.get("health", "ACTIVE")),
            hostname=d.get("hostname", ""),
            version=d.get("version", ""),
            registered_at=float(d.get("registered_at", 0.0)),
            last_heartbeat=float(d.get("last_heartbeat", 0.0)),
            left_at=float(d.get("left_at", 0.0)),
        )


@dataclass(slots=True)
class DecisionRecord:
    """One placement decision, as stored and as `cloudai explain` shows it.

    `candidates` holds the top workers: {"worker_id", "total", "scores": {plugin: 0..100}}.
    `rejections` counts filtered-out workers by reason. These records are also the
    training data of the learned policies.
    """

    task_id: str
    attempt: int
    worker_id: str = ""
    policy: str = ""
    profile: str = ""
    model_version: str = ""
    candidates: list[dict] = field(default_factory=list)
    rejections: dict[str, int] = field(default_factory=dict)
    summary: str = ""
    hint: str = ""
    fallback: bool = False
    decided_at: float = field(default_factory=time.time)
    source: str = ""
    committed: bool = False
    reject_reason: str = ""

    def to_dict(self) -> dict:
        return {
            "task_id": self.task_id,
            "attempt": self.attempt,
            "worker_id": self.worker_id,
            "policy": self.policy,
            "profile": self.profile,
            "model_version": self.model_version,
            "candidates": [dict(c) for c in self.candidates],
            "rejections": dict(self.rejections),
            "summary": self.summary,
            "hint": self.hint,
            "fallback": self.fallback,
            "decided_at": self.decided_at,
            "source": self.source,
            "committed": self.committed,
            "reject_reason": self.reject_reason,
        }

    @classmethod
    def from_dict(cls, d: dict) -> DecisionRecord:
        return cls(
            task_id=d["task_id"],
            attempt=int(d.get("attempt", 0)),
            worker_id=d.get("worker_id", ""),
            policy=d.get("policy", ""),
            profile=d.get("profile", ""),
            model_version=d.get("model_version", ""),
            candidates=[dict(c) for c in d.get("candidates", [])],
            rejections={k: int(v) for k, v in d.get("rejections", {}).items()},
            summary=d.get("summary", ""),
            hint=d.get("hint", ""),
            fallback=bool(d.get("fallback", False)),
            decided_at=float(d.get("decided_at", 0.0)),
            source=d.get("source", ""),
            committed=bool(d.get("committed", False)),
            reject_reason=d.get("reject_reason", ""),
        )
