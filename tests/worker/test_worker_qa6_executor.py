"""QA pass 6 on the Docker executor, against the real engine: a cancel that lands while
the image is still being pulled from a registry that does not answer, a --user that
the image does not have, and a CPU request below Docker's smallest limit."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import docker
import pytest

from cloudai.model import Reason, Resources, TaskSpec, TaskState
from cloudai.worker.containers import container_name
from cloudai.worker.executor import DockerExecutor
from cloudai.worker.outcome import Outcome
from tests.worker.workerkit import (
    BASE_IMAGE,
    make_settings,
    new_task_id,
    remove_worker_containers,
)

pytestmark = pytest.mark.docker


@contextlib.contextmanager
def silent_registry() -> Iterator[str]:
    """A loopback 'registry' that accepts connections and never answers: dockerd
    waits 30 s for its headers before it gives the pull up."""
    listener = socket.create_server(("127.0.0.1", 0))
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conns.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in [*conns, listener]:
            conn.close()


def test_cancel_while_pulling_from_a_silent_registry_ends_at_once(
    executor: DockerExecutor,
) -> None:
    with silent_registry() as registry:
        task_id, result = new_task_id(), {}
        spec = TaskSpec(image=f"{registry}/cloudai-qa6/silent:v1", command=["true"])
        thread = threading.Thread(
            target=lambda: result.update(out=executor.run(task_id, 1, spec)), daemon=True
        )
        thread.start()
        time.sleep(1.0)  # the pull is under way: dockerd waits on the registry
        assert thread.is_alive() and executor.is_active(task_id, 1)
        began = time.monotonic()
        assert executor.cancel(task_id, 1) is True
        thread.join(10)
        waited = time.monotonic() - began
    assert not thread.is_alive(), "the cancel waited for the pull"
    out: Outcome = result["out"]
    assert (out.state, out.reason, out.exit_code) == (TaskState.CANCELLED, Reason.CANCELLED, None)
    assert "pulling" in out.message
    assert waited < 3
    assert not executor.is_active(task_id, 1)


@pytest.mark.parametrize(
    ("user", "kind", "name"),
    [("nosuchuser", "user", "nosuchuser"), ("0:nogroup9", "group", "nogroup9")],
)
def test_a_task_user_the_image_lacks_is_an_invalid_spec(
    executor: DockerExecutor, user: str, kind: str, name: str
) -> None:
    """Docker refuses the start; no retry fixes the task's own --user, so it must not
    read as the engine's trouble (docker_error, retried on every worker)."""
    out = executor.run(new_task_id(), 1, TaskSpec(image=BASE_IMAGE, command=["id"], user=user))
    assert (out.state, out.reason, out.exit_code) == (TaskState.FAILED, Reason.INVALID_SPEC, None)
    assert out.message == (
        f"cannot start: the image has no {kind} {name} (--user {user}); name one from its "
        f"/etc/{'passwd' if kind == 'user' else 'group'} or give a numeric id"
    )


def test_a_worker_default_user_the_image_lacks_stays_a_docker_error(
    docker_client: docker.DockerClient,
) -> None:
    """The worker's own --user is its admin's setting: another worker may run the task."""
    settings = make_settings(default_user="nosuchuser")
    executor = DockerExecutor(settings, stats_interval=0.3, poll_interval=0.05)
    try:
        out = executor.run(new_task_id(), 1, TaskSpec(image=BASE_IMAGE, command=["id"]))
    finally:
        executor.close()
        remove_worker_containers(docker_client, settings.id)
    assert (out.state, out.reason) == (TaskState.FAILED, Reason.DOCKER_ERROR)
    assert "unable to find user nosuchuser" in out.message


def test_a_tiny_cpu_request_runs_at_dockers_smallest_limit(
    executor: DockerExecutor, docker_client: docker.DockerClient
) -> None:
    """--cpu 0.001 passes the master, but its CFS quota (100 us) is below the kernel's
    1 ms: every start failed with a long runc error, retried as docker_error."""
    executor.keep_finished = True  # to inspect its limit afterwards
    task_id = new_task_id()
    tiny = TaskSpec(image=BASE_IMAGE, command=["true"], resources=Resources(cpu=0.001))
    out = executor.run(task_id, 1, tiny)
    assert (out.state, out.reason, out.exit_code) == (TaskState.SUCCEEDED, Reason.COMPLETED, 0)
    container = docker_client.containers.get(container_name(task_id, 1))
    assert container.attrs["HostConfig"]["NanoCpus"] == 10_000_000  # 0.01 CPU
