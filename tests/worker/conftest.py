"""Fixtures for the worker tests: real Docker, real gRPC on loopback port 0."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from cloudai.config import WorkerSettings
from cloudai.worker.executor import DockerExecutor
from tests.dockerkit import require_docker
from tests.worker.workerkit import BASE_IMAGE, make_settings, remove_worker_containers


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    client = require_docker(BASE_IMAGE)
    yield client
    client.close()


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
