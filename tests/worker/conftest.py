"""Fixtures for the worker tests: real Docker, real gRPC on loopback port 0."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import docker
import pytest

from cloudai.config import WorkerSettings
from cloudai.worker.containers import LABEL_WORKER
from cloudai.worker.executor import DockerExecutor

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


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as err:
        pytest.skip(f"no Docker engine: {err}")
    try:
        client.images.get(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{BASE_IMAGE} is missing: run scripts/setup.sh")
    yield client
    client.close()


def remove_worker_containers(client: docker.DockerClient, worker_id: str) -> None:
    for container in client.containers.list(
        all=True, filters={"label": f"{LABEL_WORKER}={worker_id}"}
    ):
        with contextlib.suppress(docker.errors.DockerException):
            container.remove(force=True)


@pytest.fixture
def settings() -> WorkerSettings:
    return make_settings()


@pytest.fixture
def executor(
    docker_client: docker.DockerClient, settings: WorkerSettings
) -> Iterator[DockerExecutor]:
    ex = DockerExecutor(settings, stats_interval=0.3, poll_interval=0.05)
    yield ex
    ex.close()
    remove_worker_containers(docker_client, settings.id)
