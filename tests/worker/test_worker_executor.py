"""DockerExecutor against the real engine: outcomes, limits, labels, logs, cancel."""

from __future__ import annotations

import threading
import time
import urllib.request

import docker
import pytest

from cloudai.config import WorkerSettings
from cloudai.errors import NotFound
from cloudai.model import Reason, Resources, TaskSpec, TaskState
from cloudai.worker import containers as ct
from cloudai.worker.executor import DockerExecutor
from tests.worker.workerkit import BASE_IMAGE, new_task_id

pytestmark = pytest.mark.docker
MiB = 1024**2
REGISTRY = "127.0.0.1:5000"


def spec(*command: str, **kwargs: object) -> TaskSpec:
    return TaskSpec(image=BASE_IMAGE, command=list(command), **kwargs)  # type: ignore[arg-type]


def test_nonzero_exit_is_failed_with_its_code_and_logs(executor: DockerExecutor) -> None:
    out = executor.run(new_task_id(), 1, spec("sh", "-c", "echo hello; exit 3"))
    assert (out.state, out.exit_code, out.reason) == (TaskState.FAILED, 3, Reason.NONZERO_EXIT)
    assert "hello" in out.log_tail
    assert "3" in out.message
    assert 0 < out.started_at <= out.finished_at


def test_an_exit_code_from_a_signal_names_the_signal(executor: DockerExecutor) -> None:
    # The task's own child dies of SIGKILL and the shell passes its status on (137).
    out = executor.run(new_task_id(), 1, spec("sh", "-c", "sleep 30 & kill -9 $!; wait $!"))
    assert (out.state, out.exit_code, out.reason) == (TaskState.FAILED, 137, Reason.NONZERO_EXIT)
    assert out.message == "exited with code 137 (128 + SIGKILL)"


def test_success_collects_stdout_and_stderr(executor: DockerExecutor) -> None:
    out = executor.run(new_task_id(), 1, spec("sh", "-c", "echo to-out; echo to-err >&2"))
    assert (out.state, out.exit_code, out.reason) == (TaskState.SUCCEEDED, 0, Reason.COMPLETED)
    assert "to-out" in out.log_tail and "to-err" in out.log_tail
    assert out.container_id


def test_log_tail_keeps_the_end_of_a_long_log(executor: DockerExecutor) -> None:
    script = "for i in $(seq 1 20000); do echo line-$i-padding-padding; done"
    out = executor.run(new_task_id(), 1, spec("sh", "-c", script))
    assert out.state == TaskState.SUCCEEDED
    assert len(out.log_tail.encode()) <= 64 * 1024
    assert out.log_tail.rstrip().endswith("line-20000-padding-padding")
    assert "line-1-padding" not in out.log_tail


def test_over_memory_limit_is_oom_killed_with_137(executor: DockerExecutor) -> None:
    hog = "b = bytearray(200 * 1024 * 1024); print(len(b))"
    task = spec("python3", "-c", hog, resources=Resources(cpu=0.5, memory_bytes=32 * MiB))
    out = executor.run(new_task_id(), 1, task)
    assert (out.state, out.exit_code, out.reason) == (TaskState.FAILED, 137, Reason.OOM_KILLED)
    assert out.peak_memory_bytes >= 32 * MiB
    assert "memory" in out.message


@pytest.mark.parametrize(
    "image", ["127.0.0.1:5999/nope/missing:1", "cloudai-test/does-not-exist:never"]
)
def test_missing_image_fails_fast_naming_the_image(executor: DockerExecutor, image: str) -> None:
    began = time.monotonic()
    out = executor.run(new_task_id(), 1, TaskSpec(image=image, command=["true"]))
    assert time.monotonic() - began < 10
    assert out.state == TaskState.FAILED
    assert out.reason in (Reason.IMAGE_NOT_FOUND, Reason.PULL_FAILED)
    assert image in out.message
    assert out.exit_code is None
    assert "\n" not in out.message


def test_pulls_an_image_missing_locally_from_a_registry(
    executor: DockerExecutor, docker_client: docker.DockerClient
) -> None:
    try:
        urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=2).read()
    except OSError:
        pytest.skip(f"no local registry on {REGISTRY}")
    repo = f"{REGISTRY}/cloudai-wtest/pull"
    tag = new_task_id()
    docker_client.images.get(BASE_IMAGE).tag(repo, tag)
    for event in docker_client.api.push(repo, tag=tag, stream=True, decode=True):
        assert "error" not in event, event
    docker_client.images.remove(f"{repo}:{tag}")
    try:
        out = executor.run(new_task_id(), 1, TaskSpec(image=f"{repo}:{tag}", command=["true"]))
        assert (out.state, out.reason) == (TaskState.SUCCEEDED, Reason.COMPLETED)
        assert f"{repo}:{tag}" in executor.cached_images()  # pulled, and advertised
        missing = executor.run(new_task_id(), 1, TaskSpec(image=f"{repo}:no-such-tag"))
        assert missing.reason == Reason.IMAGE_NOT_FOUND and f"{repo}:no-such-tag" in missing.message
    finally:
        docker_client.images.remove(f"{repo}:{tag}")


def test_labels_limits_and_security_defaults(
    executor: DockerExecutor, docker_client: docker.DockerClient, settings: WorkerSettings
) -> None:
    task_id, seen = new_task_id(), {}

    def inspect(started_at: float, container_id: str) -> None:
        seen["attrs"] = docker_client.api.inspect_container(container_id)
        seen["managed"] = executor.list_managed()

    # Long enough for one memory sample: dockerd answers a stats call at its collector's
    # next tick (up to about 1 s), and a container that has ended by then reads 0.
    task = spec("sleep", "1.5", resources=Resources(cpu=0.5, memory_bytes=64 * MiB))
    out = executor.run(task_id, 2, task, on_running=inspect)
    assert out.state == TaskState.SUCCEEDED
    assert 0 < out.peak_memory_bytes < 64 * MiB
    attrs = seen["attrs"]
    labels = attrs["Config"]["Labels"]
    assert labels[ct.LABEL_TASK] == task_id and labels[ct.LABEL_ATTEMPT] == "2"
    assert labels[ct.LABEL_WORKER] == settings.id and labels[ct.LABEL_MANAGED] == "true"
    assert attrs["Name"] == f"/cloudai-{task_id}-a2"
    host = attrs["HostConfig"]
    assert host["PidsLimit"] == settings.pids_limit
    assert host["Memory"] == 64 * MiB and host["NanoCpus"] == 500_000_000
    assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
    assert host["Privileged"] is False and host["NetworkMode"] != "host"
    assert ct.Managed(task_id, 2, "running") in seen["managed"]


def test_defaults_apply_when_the_task_asks_for_nothing(
    executor: DockerExecutor, docker_client: docker.DockerClient, settings: WorkerSettings
) -> None:
    seen = {}

    def inspect(started_at: float, container_id: str) -> None:
        seen.update(docker_client.api.inspect_container(container_id)["HostConfig"])

    assert executor.run(new_task_id(), 1, spec("true"), on_running=inspect).exit_code == 0
    assert seen["Memory"] == settings.default_memory
    assert seen["NanoCpus"] == int(settings.default_cpu * 1e9)
    assert seen["PidsLimit"] == settings.pids_limit


def test_timeout_kills_the_container(executor: DockerExecutor) -> None:
    began = time.monotonic()
    out = executor.run(new_task_id(), 1, spec("sleep", "30", timeout_s=1.0))
    assert (out.state, out.reason) == (TaskState.TIMED_OUT, Reason.TIMEOUT)
    assert time.monotonic() - began < 6


def test_cancel_ends_cancelled_and_removes_the_container(
    executor: DockerExecutor, docker_client: docker.DockerClient
) -> None:
    task_id, running, result = new_task_id(), threading.Event(), {}
    thread = threading.Thread(
        target=lambda: result.update(
            out=executor.run(task_id, 1, spec("sleep", "30"), lambda *_: running.set())
        )
    )
    thread.start()
    assert running.wait(10)
    assert executor.is_active(task_id, 1)
    assert executor.cancel(task_id, 1) is True
    thread.join(10)
    out = result["out"]
    assert (out.state, out.reason) == (TaskState.CANCELLED, Reason.CANCELLED)
    with pytest.raises(docker.errors.NotFound):
        docker_client.containers.get(ct.container_name(task_id, 1))
    assert not executor.is_active(task_id, 1)


def test_cancel_of_unknown_attempt_finds_nothing(executor: DockerExecutor) -> None:
    assert executor.cancel(new_task_id(), 1) is False


def test_command_not_found_fails_like_docker_run(executor: DockerExecutor) -> None:
    out = executor.run(new_task_id(), 1, spec("no-such-binary-xyz"))
    assert (out.state, out.exit_code, out.reason) == (TaskState.FAILED, 127, Reason.NONZERO_EXIT)
    assert "no-such-binary-xyz" in out.message


def test_logs_follow_live_then_fall_back_to_the_kept_tail(executor: DockerExecutor) -> None:
    task_id, chunks, done = new_task_id(), [], threading.Event()

    def follow(started_at: float, container_id: str) -> None:
        def reader() -> None:
            chunks.extend(executor.logs(task_id, 1, follow=True))
            done.set()

        threading.Thread(target=reader, daemon=True).start()

    script = "for i in 1 2 3; do echo step-$i; sleep 0.2; done"
    out = executor.run(task_id, 1, spec("sh", "-c", script), on_running=follow)
    assert out.state == TaskState.SUCCEEDED
    assert done.wait(5)
    assert "step-1" in "".join(chunks) and "step-3" in "".join(chunks)
    # The container is gone now; the tail kept in memory answers, also for attempt 0.
    assert "".join(executor.logs(task_id, 1)) == out.log_tail
    assert "".join(executor.logs(task_id, 0, tail=1)) == "step-3\n"
    with pytest.raises(NotFound):
        executor.logs(task_id, 7)


def test_adopts_a_container_left_by_an_earlier_worker(
    executor: DockerExecutor, docker_client: docker.DockerClient, settings: WorkerSettings
) -> None:
    task_id = new_task_id()
    docker_client.containers.run(
        BASE_IMAGE,
        ["sh", "-c", "sleep 0.5; echo adopted; exit 4"],
        name=ct.container_name(task_id, 3),
        labels=ct.labels(task_id, 3, settings.id, 0.0),
        detach=True,
    )
    assert ct.Managed(task_id, 3, "running") in executor.list_managed()
    out = executor.adopt(task_id, 3)
    assert (out.state, out.exit_code, out.reason) == (TaskState.FAILED, 4, Reason.NONZERO_EXIT)
    assert "adopted" in out.log_tail
    assert executor.list_managed() == []


def test_readopting_an_ended_container_reports_its_own_runtime(
    executor: DockerExecutor, docker_client: docker.DockerClient, settings: WorkerSettings
) -> None:
    """QA: a ~25 s container re-adopted later was logged as 'SUCCEEDED in 50.6s'. The
    runtime is Docker's StartedAt..FinishedAt; its peak memory was never sampled."""
    task_id = _ended_while_down(docker_client, settings, "sleep 1", timeout_s=0.0)
    time.sleep(2.0)  # nobody watches it: the worker is "down"
    out = executor.adopt(task_id, 1)
    assert (out.state, out.exit_code) == (TaskState.SUCCEEDED, 0)
    assert 0.9 <= out.finished_at - out.started_at < 1.9, out
    assert out.finished_at < time.time() - 1.5
    assert (out.peak_memory_bytes, out.peak_known) == (0, False)


def test_cached_images_lists_local_tags(executor: DockerExecutor) -> None:
    assert BASE_IMAGE in executor.cached_images()


def test_unreachable_engine_is_a_docker_error_outcome(settings: WorkerSettings) -> None:
    ex = DockerExecutor(
        settings, client_factory=lambda: docker.DockerClient(base_url="unix:///nonexistent.sock")
    )
    out = ex.run(new_task_id(), 1, spec("true"))
    assert (out.state, out.reason) == (TaskState.FAILED, Reason.DOCKER_ERROR)
    assert out.message.startswith("docker:") and "\n" not in out.message
    assert ex.list_managed() == [] and ex.cached_images() == []


def test_readopting_a_container_that_ended_in_time_after_its_deadline_is_its_own_result(
    executor: DockerExecutor, docker_client: docker.DockerClient, settings: WorkerSettings
) -> None:
    """QA pass 7: it exited 0 after 1 s of a 1.5 s timeout while no worker watched;
    adopted after the deadline, it was reported TIMED_OUT, 'killed after the timeout'
    (the exit waiter had not caught up when the deadline check ran)."""
    task_id = _ended_while_down(docker_client, settings, "sleep 1; echo done", timeout_s=1.5)
    time.sleep(1.0)  # the deadline passes while nobody watches
    out = executor.adopt(task_id, 1)
    assert (out.state, out.exit_code, out.reason) == (TaskState.SUCCEEDED, 0, Reason.COMPLETED)
    assert "done" in out.log_tail


def _ended_while_down(
    docker_client: docker.DockerClient, settings: WorkerSettings, script: str, timeout_s: float
) -> str:
    """A task's attempt-1 container, as an earlier worker process left it, run to its
    end with no worker watching; the task's id."""
    task_id = new_task_id()
    container = docker_client.containers.run(
        BASE_IMAGE,
        ["sh", "-c", script],
        name=ct.container_name(task_id, 1),
        labels=ct.labels(task_id, 1, settings.id, timeout_s),
        detach=True,
    )
    container.wait(timeout=30)
    return task_id
