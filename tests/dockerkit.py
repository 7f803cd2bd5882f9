"""The Docker preflight every suite that runs containers shares.

In CI (CI=true) a missing engine or image is a failure, not a skip: `make test` sets
them up before pytest runs. Elsewhere the tests that need them are skipped.
"""

from __future__ import annotations

import os

import docker
import pytest


def missing(what: str) -> None:
    """Fail in CI, skip elsewhere, saying how to set the machine up."""
    msg = f"{what} (run `bash scripts/setup.sh` or `make test`)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def require_docker(*images: str, timeout: int = 30) -> docker.DockerClient:
    """A client for the local engine, which must answer and hold `images`."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except Exception as err:  # noqa: BLE001 - any failure means "no engine"
        missing(f"no Docker engine: {err}")
    for image in images:
        try:
            client.images.get(image)
        except Exception:  # noqa: BLE001
            missing(f"image {image} missing")
    return client
