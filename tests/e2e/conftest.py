"""End-to-end fixtures: real processes, real gRPC on loopback, a real Docker engine.

In CI (CI=true) a missing Docker engine, sample image or local registry is a failure,
not a skip: `make test` sets all three up before pytest runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from cloudai.cli.client import CliExit
from cloudai.cli.demo import LocalCluster
from tests.dockerkit import missing, require_docker

SAMPLE_IMAGE = "cloudai/sample-task:latest"
BASE_IMAGE = "cloudai/base:bookworm"
REGISTRY = "127.0.0.1:5000"
SUCCESS_LINE = "✓ Task completed successfully!"


@pytest.fixture(scope="session")
def docker_client():
    return require_docker(SAMPLE_IMAGE, BASE_IMAGE, timeout=10)


@pytest.fixture(scope="session")
def registry(docker_client) -> str:
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=3).read()
    except Exception as err:  # noqa: BLE001
        missing(f"no local registry on {REGISTRY}: {err}")
    return REGISTRY


def cli(address: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    # Options go right after the subcommand: anything after `--` is the task's command.
    cmd = [sys.executable, "-m", "cloudai", args[0], "--master", address, *args[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def cli_json(address: str, *args: str) -> object:
    out = cli(address, args[0], "--json", *args[1:])
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = predicate()
        except (CliExit, AssertionError) as err:  # not up yet
            last = err
        else:
            if last:
                return last
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def task_json(address: str, task_id: str) -> dict:
    return cli_json(address, "task", task_id)  # type: ignore[return-value]


def wait_task(address: str, task_id: str, timeout: float = 90) -> dict:
    terminal = {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"}

    def done():
        t = task_json(address, task_id)
        return t if t["state"].removeprefix("TASK_STATE_") in terminal else None

    return wait_until(done, timeout, f"task {task_id} to finish")  # type: ignore[return-value]


def state(t: dict) -> str:
    return t["state"].removeprefix("TASK_STATE_")


def workers_by_id(address: str) -> dict[str, dict]:
    return {w["id"]: w for w in cli_json(address, "workers")}  # type: ignore[union-attr]


def dump_logs(root: Path) -> None:
    for log in sorted(root.glob("*.log")):
        print(f"----- {log.name} -----")
        print(log.read_text(errors="replace")[-4000:])


@pytest.fixture
def cluster_factory(tmp_path, docker_client, request):
    clusters: list[LocalCluster] = []

    def make(**kw) -> LocalCluster:
        c = LocalCluster(tmp_path, **kw)
        clusters.append(c)
        return c

    yield make
    for c in clusters:
        c.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        dump_logs(tmp_path)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
