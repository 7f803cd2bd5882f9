"""How CloudAI lays out and watches its containers: names, labels, limits, waits.

Every container a worker creates carries the labels below, so a restarted worker
can find its own containers again (`cloudai.worker_id`) and tell which attempt
each one runs.
"""

from __future__ import annotations

import os
import re
import threading
from datetime import datetime
from typing import Any, NamedTuple

import psutil
import requests
from docker.errors import DockerException
from docker.models.containers import Container
from docker.types import DeviceRequest, LogConfig

from cloudai.config import WorkerSettings
from cloudai.errors import InvalidArgument
from cloudai.model import TaskSpec
from cloudai.validation import normalize_caps

# Everything the engine or its HTTP transport may raise, translated at the boundary.
DOCKER_ERRORS = (DockerException, requests.exceptions.RequestException, OSError)


class EngineUnreachable(DockerException):
    """The engine stayed away longer than the worker waits; the message says so."""


LABEL_MANAGED = "cloudai.managed"
LABEL_TASK = "cloudai.task_id"
LABEL_ATTEMPT = "cloudai.attempt"
LABEL_WORKER = "cloudai.worker_id"
# Lets a restarted worker keep enforcing the timeout of a container it re-adopts.
LABEL_TIMEOUT = "cloudai.timeout_s"
# The worker process that created the container ("PID@START", see `process_tag`).
# Another worker process with the same id on this host (a second cluster whose worker
# is also `worker-1`, or a duplicate refused by the master) must not re-adopt, and so
# kill or remove, the containers of one that still runs.
LABEL_OWNER = "cloudai.worker_process"

# Docker's json-file logs grow without bound by default; a chatty task must not
# fill the worker's disk.
_LOG_CONFIG = LogConfig(type="json-file", config={"max-size": "10m", "max-file": "2"})
# Docker's smallest CPU limit (`docker run --cpus` takes 0.01 and up).
MIN_CPU = 0.01
_NAME_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]")
# With a read-only root filesystem a task still gets a small, non-executable /tmp.
_TMPFS = {"/tmp": "rw,noexec,nosuid,nodev,size=64m"}


class Limits(NamedTuple):
    memory_bytes: int
    nano_cpus: int
    pids: int


class Managed(NamedTuple):
    """A container this worker created: which attempt it runs and its Docker status."""

    task_id: str
    attempt: int
    status: str


def container_name(task_id: str, attempt: int) -> str:
    return f"cloudai-{_NAME_UNSAFE.sub('_', task_id)}-a{attempt}"


def has_exited(container: Container) -> bool:
    """Whether Docker says the container has ended (an exit waiter may not know yet)."""
    try:
        container.reload()
    except DOCKER_ERRORS:
        return False
    return container.status in ("exited", "dead")


def labels(
    task_id: str, attempt: int, worker_id: str, timeout_s: float, owner: str = ""
) -> dict[str, str]:
    return {
        LABEL_MANAGED: "true",
        LABEL_TASK: task_id,
        LABEL_ATTEMPT: str(attempt),
        LABEL_WORKER: worker_id,
        LABEL_TIMEOUT: f"{timeout_s:g}",
        LABEL_OWNER: owner or process_tag(),
    }


def _tag(proc: psutil.Process) -> str:
    # The start time tells a live owner from a later process that reuses its pid.
    return f"{proc.pid}@{proc.create_time():.2f}"


def process_tag(pid: int | None = None) -> str:
    """'PID@START' of this process (or of `pid`): who created a container."""
    return _tag(psutil.Process(pid))


def held_by_another_process(owner: str) -> bool:
    """Whether the worker process named by a container's LABEL_OWNER still runs and is
    not this one. A dead owner (a crashed or stopped worker), an unknown one (a
    container from an older version) and this process itself are all False: such a
    container is ours to re-adopt."""
    pid, _, _start = owner.partition("@")
    if not pid.isdigit() or owner == process_tag():
        return False
    try:
        return _tag(psutil.Process(int(pid))) == owner
    except (psutil.Error, ValueError, OverflowError):
        return False


def managed_filter(worker_id: str) -> dict[str, list[str]]:
    return {"label": [f"{LABEL_MANAGED}=true", f"{LABEL_WORKER}={worker_id}"]}


def limits_for(
    spec: TaskSpec, *, default_memory: int, default_cpu: float, pids_limit: int
) -> Limits:
    """Every container gets a memory, CPU and PID limit, even when the task asked for
    none: an unlimited container can take the whole machine down (fork bombs too)."""
    memory = spec.resources.memory_bytes or default_memory
    cpu = spec.resources.cpu or default_cpu
    # Docker refuses a CPU limit above the host's core count, and the kernel one below
    # 0.01 CPU (a CFS quota under 1 ms): clamp rather than fail the task at every start.
    cpu = max(MIN_CPU, min(cpu, float(os.cpu_count() or 1)))
    return Limits(memory_bytes=int(memory), nano_cpus=int(cpu * 1e9), pids=pids_limit)


def allowed_caps(settings: WorkerSettings | None) -> list[str]:
    if settings is None:
        return []
    try:
        return normalize_caps(list(settings.allowed_caps), "allowed_caps")
    except InvalidArgument:
        return []  # a bad setting allows nothing; the worker says so at start


def policy_problem(spec: TaskSpec, settings: WorkerSettings) -> str:
    """Why this worker refuses to run the spec as asked ("" when it does not)."""
    allowed = allowed_caps(settings)
    extra = [cap for cap in spec.cap_add if cap not in allowed]
    if extra:
        return (
            f"capabilit{'ies' if len(extra) > 1 else 'y'} {', '.join(extra)} not allowed on "
            f"worker {settings.id} (allowed: {', '.join(allowed) or 'none'}; the worker's "
            "admin can extend it with --allowed-cap)"
        )
    return ""


def hardening(spec: TaskSpec, settings: WorkerSettings | None) -> dict[str, Any]:
    """The security settings of every task container (OWASP / CIS Docker guidance):
    never privileged; every capability dropped, only allow-listed ones added back;
    no-new-privileges; Docker's default seccomp profile (never unconfined); private
    IPC and PID namespaces; the worker's network (never the host's); no volume or
    bind of any host path, the Docker socket included; optionally a read-only root
    filesystem and a non-root user."""
    caps = [cap for cap in spec.cap_add if cap in allowed_caps(settings)]
    out: dict[str, Any] = {
        "privileged": False,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "network_mode": settings.network_mode if settings else "bridge",
        "ipc_mode": "private",
    }
    if caps:
        out["cap_add"] = caps
    user = spec.user or (settings.default_user if settings else "")
    if user:
        out["user"] = user
    if spec.read_only_rootfs or (settings is not None and settings.read_only_rootfs):
        out["read_only"] = True
        out["tmpfs"] = dict(_TMPFS)
    return out


def create_kwargs(
    spec: TaskSpec,
    name: str,
    container_labels: dict[str, str],
    limits: Limits,
    settings: WorkerSettings | None = None,
) -> dict[str, Any]:
    """Arguments for `containers.create`, with the security defaults every task gets
    (see `hardening`) and the worker's settings for network, user and capabilities."""
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": list(spec.command) or None,
        "name": name,
        "labels": container_labels,
        "environment": dict(spec.env),
        "detach": True,
        "mem_limit": limits.memory_bytes,
        # Equal to the memory limit: no swap, so an over-limit task is OOM-killed
        # promptly instead of thrashing.
        "memswap_limit": limits.memory_bytes,
        "nano_cpus": limits.nano_cpus,
        "pids_limit": limits.pids,
        **hardening(spec, settings),
        "log_config": _LOG_CONFIG,
    }
    if spec.resources.gpu > 0:
        count = max(1, int(spec.resources.gpu + 0.999))
        kwargs["device_requests"] = [DeviceRequest(count=count, capabilities=[["gpu"]])]
    return kwargs


def parse_docker_time(value: str | None) -> float:
    """Docker's RFC 3339 times carry nanoseconds, which datetime does not take;
    the zero time '0001-01-01T00:00:00Z' (never started) maps to 0.0."""
    if not value or value.startswith("0001-"):
        return 0.0
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", value)
    if not m:
        return 0.0
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    stamp = datetime.fromisoformat(m.group(1) + zone).timestamp()
    return stamp + float("0." + (m.group(2) or "0"))


class ExitWaiter:
    """Blocks on `container.wait()` in its own thread, so the supervising loop can
    enforce timeouts and cancellation while it waits."""

    def __init__(self, container: Container) -> None:
        self.done = threading.Event()
        self.error: BaseException | None = None
        threading.Thread(target=self._wait, args=(container,), daemon=True).start()

    def _wait(self, container: Container) -> None:
        try:
            container.wait()
        except BaseException as err:  # handed to the supervising thread
            self.error = err
        finally:
            self.done.set()


def memory_usage(container: Container) -> int:
    """Peak memory so far, best effort: cgroup v1 reports max_usage, v2 only usage."""
    try:
        stats = container.stats(stream=False, one_shot=True)
    except (*DOCKER_ERRORS, ValueError):
        return 0
    mem = stats.get("memory_stats") or {}
    return int(max(mem.get("max_usage", 0) or 0, mem.get("usage", 0) or 0))
