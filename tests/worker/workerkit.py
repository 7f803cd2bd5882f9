"""Helpers shared by the worker tests (a uniquely named module: see conftest.py)."""

from __future__ import annotations

import contextlib
import uuid

import docker

from cloudai.config import WorkerSettings
from cloudai.worker.containers import LABEL_WORKER

BASE_IMAGE = "cloudai/base:bookworm"


def make_settings(**overrides: object) -> WorkerSettings:
    """Settings that ignore the developer's CLOUDAI_* environment and .env file."""
    values: dict[str, object] = {
        "id": f"wtest-{uuid.uuid4().hex[:8]}",
        "ip": "127.0.0.1",
        "port": 0,
        "heartbeat_interval": 0.2,
        "labels": {},
        "cpu": 0.0,
        "memory": 0,
        "gpu": 0.0,
        "pids_limit": 256,
        "default_memory": 128 * 1024**2,
        "default_cpu": 0.5,
    }
    values.update(overrides)
    return WorkerSettings(_env_file=None, **values)  # type: ignore[call-arg]


def new_task_id() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def remove_worker_containers(client: docker.DockerClient, worker_id: str) -> None:
    # The low-level listing: the high-level one inspects each container and fails
    # when the worker removes one in between.
    for c in client.api.containers(all=True, filters={"label": f"{LABEL_WORKER}={worker_id}"}):
        with contextlib.suppress(docker.errors.DockerException):
            client.api.remove_container(c["Id"], force=True)
