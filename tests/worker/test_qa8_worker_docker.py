"""QA pass 8 on the worker with the real Docker engine.

- Two worker processes with the same id on one host (two clusters whose workers are
  both `worker-1`, or a duplicate that its master then refuses) each took the other's
  running containers for leftovers to re-adopt: the second one enforced the timeout,
  reported to its own master, was refused and killed the container. The first
  cluster's task ended `nonzero_exit` 137 with "could not read logs: 409".
- A task whose child was OOM-killed but which itself exited 0 was FAILED `oom_killed`
  "killed ... (exit 0)", and `submit --wait` exited 125; `docker run` says 0.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import docker
import pytest

from cloudai.config import WorkerSettings
from cloudai.model import Reason, Resources, TaskSpec, TaskState
from cloudai.worker import containers as ct
from cloudai.worker.executor import DockerExecutor
from tests.worker.workerkit import BASE_IMAGE, new_task_id

pytestmark = pytest.mark.docker
MiB = 1024**2
HOG = "python3 -c 'bytearray(200 * 1024 * 1024)'"


@pytest.fixture
def other_worker() -> Iterator[subprocess.Popen[bytes]]:
    """A live process standing for another worker process on this host."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_containers_of_another_live_worker_process_are_not_taken(
    executor: DockerExecutor,
    docker_client: docker.DockerClient,
    settings: WorkerSettings,
    other_worker: subprocess.Popen[bytes],
) -> None:
    task_id = new_task_id()
    docker_client.containers.run(
        BASE_IMAGE,
        ["sleep", "30"],
        name=ct.container_name(task_id, 1),
        labels=ct.labels(task_id, 1, settings.id, 0.0, owner=ct.process_tag(other_worker.pid)),
        detach=True,
    )
    assert executor.list_managed() == []  # its owner still supervises it
    other_worker.kill()
    other_worker.wait()
    # Its owner is gone (crashed or stopped): now it is a leftover to re-adopt.
    assert executor.list_managed() == [ct.Managed(task_id, 1, "running")]


def test_a_container_names_the_worker_process_that_created_it(
    executor: DockerExecutor, docker_client: docker.DockerClient
) -> None:
    task_id = new_task_id()
    executor.keep_finished = True
    out = executor.run(task_id, 1, TaskSpec(image=BASE_IMAGE, command=["true"]))
    assert out.state == TaskState.SUCCEEDED
    labels = docker_client.containers.get(ct.container_name(task_id, 1)).labels
    assert labels[ct.LABEL_OWNER] == ct.process_tag()
    assert not ct.held_by_another_process(labels[ct.LABEL_OWNER])
    assert ct.Managed(task_id, 1, "exited") in executor.list_managed()


def _oom_task(exit_code: int) -> TaskSpec:
    script = f"{HOG}; echo child $?; exit {exit_code}"
    return TaskSpec(
        image=BASE_IMAGE,
        command=["sh", "-c", script],
        resources=Resources(cpu=0.5, memory_bytes=32 * MiB),
    )


def test_a_task_that_survives_an_oom_kill_and_exits_0_succeeded(executor: DockerExecutor) -> None:
    out = executor.run(new_task_id(), 1, _oom_task(0))
    assert (out.state, out.exit_code, out.reason) == (TaskState.SUCCEEDED, 0, Reason.COMPLETED)
    assert "child 137" in out.log_tail
    note = "a process was killed at the 32.0 MiB memory limit (out of memory); exit 0"
    assert out.message == note
    assert out.peak_memory_bytes >= 32 * MiB


def test_a_task_that_fails_after_an_oom_kill_says_what_happened(executor: DockerExecutor) -> None:
    out = executor.run(new_task_id(), 1, _oom_task(3))
    assert (out.state, out.exit_code, out.reason) == (TaskState.FAILED, 3, Reason.OOM_KILLED)
    assert out.message == (
        "out of memory: a process was killed at the 32.0 MiB memory limit, "
        "then the task exited with code 3"
    )


SCRIPT = """
from cloudai.config import WorkerSettings
from cloudai.worker.main import run_worker
settings = WorkerSettings(_env_file=None, id="wqa8", ip="127.0.0.1", port=0,
                          master="127.0.0.1:1", network_mode="cloudai-qa8-no-such-network")
raise SystemExit(run_worker(settings))
"""


def test_a_worker_that_cannot_start_prints_its_one_line_only() -> None:
    # It also printed "[wqa8] stopped" on stdout, after the line saying why.
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 1, proc
    assert proc.stderr.startswith("cloudai worker: Docker network 'cloudai-qa8-no-such-network'")
    assert proc.stderr.count("\n") == 1
    assert proc.stdout == ""
