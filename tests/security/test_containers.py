"""Task containers are hardened by default: checked with `docker inspect` on real task
containers run by the real worker executor, and probed from inside."""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import docker
import pytest

from cloudai.convert import spec_to_pb, state_to_pb
from cloudai.model import Reason, Resources, TaskSpec, TaskState
from cloudai.proto import master_worker_pb2 as mw
from cloudai.proto import master_worker_pb2_grpc as mw_grpc
from cloudai.rpc import channel
from cloudai.worker.executor import DockerExecutor
from cloudai.worker.node import WorkerNode
from tests.dockerkit import require_docker
from tests.worker.fake_master import FakeMaster
from tests.worker.workerkit import BASE_IMAGE, make_settings, remove_worker_containers

pytestmark = [pytest.mark.docker]
MiB = 1024**2
PIDS_LIMIT = 64


@pytest.fixture(scope="module")
def docker_client() -> Iterator[docker.DockerClient]:
    client = require_docker(BASE_IMAGE)
    yield client
    client.close()


def new_id() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def spec(*command: str, **kw) -> TaskSpec:
    return TaskSpec(image=BASE_IMAGE, command=list(command), **kw)


def run_and_inspect(executor: DockerExecutor, docker_client, task: TaskSpec) -> dict:
    seen: dict = {}

    def inspect(started_at: float, container_id: str) -> None:
        seen.update(docker_client.api.inspect_container(container_id))

    outcome = executor.run(new_id(), 1, task, on_running=inspect)
    assert outcome.state == TaskState.SUCCEEDED, outcome
    return seen


@pytest.fixture
def executor(docker_client) -> Iterator[DockerExecutor]:
    settings = make_settings(pids_limit=PIDS_LIMIT)
    ex = DockerExecutor(settings)
    yield ex
    ex.close()
    remove_worker_containers(docker_client, settings.id)


def test_default_task_container_is_hardened(executor, docker_client):
    attrs = run_and_inspect(executor, docker_client, spec("sleep", "0.5"))
    host = attrs["HostConfig"]
    assert host["Privileged"] is False
    assert "ALL" in host["CapDrop"] and not host.get("CapAdd")
    assert "no-new-privileges" in host["SecurityOpt"]
    assert not any("unconfined" in opt for opt in host["SecurityOpt"])  # default seccomp
    assert host["PidsLimit"] > 0 and host["Memory"] > 0 and host["NanoCpus"] > 0
    assert host["NetworkMode"] not in ("host",) and not host["NetworkMode"].startswith("container")
    for mode in ("PidMode", "IpcMode", "UTSMode", "UsernsMode"):
        assert host.get(mode, "") != "host", mode
    assert not host.get("Binds") and not attrs["Mounts"]  # no host path, no docker.sock
    assert "docker.sock" not in str(attrs)
    assert not host.get("Devices")
    assert host["ReadonlyRootfs"] is False and attrs["Config"]["User"] == ""


def test_worker_settings_and_task_options_harden_further(docker_client):
    settings = make_settings(
        allowed_caps=["NET_BIND_SERVICE"], network_mode="none", default_user="65534:65534"
    )
    ex = DockerExecutor(settings)
    try:
        task = spec("sleep", "0.5", cap_add=["NET_BIND_SERVICE"], read_only_rootfs=True)
        attrs = run_and_inspect(ex, docker_client, task)
    finally:
        ex.close()
        remove_worker_containers(docker_client, settings.id)
    host = attrs["HostConfig"]
    assert host["CapAdd"] == ["NET_BIND_SERVICE"] and "ALL" in host["CapDrop"]
    assert host["NetworkMode"] == "none"
    assert attrs["Config"]["User"] == "65534:65534"
    assert host["ReadonlyRootfs"] is True and "/tmp" in host["Tmpfs"]


# mount(2) straight from perl: the base image has neither mount(8) nor ctypes. With
# CAP_SYS_ADMIN and seccomp unconfined the same probe prints "mount syscall: 0".
MOUNT_PROBE = r"""
case $(uname -m) in x86_64) n=165;; aarch64) n=40;; *) n=165;; esac
mkdir -p /tmp/m
perl -e 'my ($s, $t, $f) = ("none", "/tmp/m", "tmpfs");
         my $r = syscall($ARGV[0], $s, $t, $f, 0, 0); print "mount syscall: $r $!\n"' $n
unshare --mount true; echo "unshare rc=$?"
"""


def test_mount_fails_inside_a_task(executor):
    out = executor.run(new_id(), 1, spec("sh", "-c", MOUNT_PROBE))
    assert "mount syscall: -1 Operation not permitted" in out.log_tail, out.log_tail
    assert "unshare rc=0" not in out.log_tail and "unshare rc=" in out.log_tail


def test_read_only_rootfs_refuses_writes_to_root_but_not_tmp(executor):
    script = "touch /probe && echo wrote-root; touch /tmp/probe && echo wrote-tmp"
    out = executor.run(new_id(), 1, spec("sh", "-c", script, read_only_rootfs=True))
    assert "wrote-root" not in out.log_tail
    assert "Read-only file system" in out.log_tail and "wrote-tmp" in out.log_tail


def test_non_root_user_option(executor):
    out = executor.run(new_id(), 1, spec("id", "-u", user="65534:65534"))
    assert out.state == TaskState.SUCCEEDED and out.log_tail.strip() == "65534"


# -- a fork bomb, on a real worker node that keeps heartbeating -------------------------------


@pytest.fixture
def node(docker_client) -> Iterator[tuple[WorkerNode, FakeMaster]]:
    master = FakeMaster()
    port = master.start()
    settings = make_settings(
        master=f"127.0.0.1:{port}",
        pids_limit=PIDS_LIMIT,
        default_memory=128 * MiB,
        default_cpu=0.5,
        allowed_caps=[],
    )
    worker = WorkerNode(settings)
    worker.start()
    assert master.wait_for(lambda m: m.registrations, 10)
    yield worker, master
    worker.stop(grace=0.5, kill_running=True)
    master.stop()
    with contextlib.suppress(docker.errors.NotFound):  # the node may remove it meanwhile
        remove_worker_containers(docker_client, settings.id)


def _assign(worker: WorkerNode, task_id: str, task: TaskSpec) -> mw.AssignTaskResponse:
    ch = channel(worker.address)
    try:
        req = mw.AssignTaskRequest(task_id=task_id, attempt=1, spec=spec_to_pb(task))
        return mw_grpc.WorkerStub(ch).AssignTask(req, timeout=5)
    finally:
        ch.close()


def _final(master: FakeMaster, task_id: str, timeout: float) -> mw.TaskStatusReport:
    running = state_to_pb(TaskState.RUNNING)
    assert master.wait_for(
        lambda m: any(r.state != running for r in m.reports_for(task_id)), timeout
    ), f"no result for {task_id}"
    return next(r for r in master.reports_for(task_id) if r.state != running)


def _peak_pids(docker_client, name: str, stop: threading.Event, out: list[int]) -> None:
    while not stop.is_set():
        try:
            stats = docker_client.api.stats(name, stream=False, one_shot=True)
            out.append(int((stats.get("pids_stats") or {}).get("current") or 0))
        except (docker.errors.DockerException, ValueError):
            pass  # not created yet, or already gone
        stop.wait(0.3)


def test_fork_bomb_is_contained_and_the_worker_stays_healthy(node, docker_client):
    worker, master = node
    bomb_id = new_id()
    # The shell itself then waits with a builtin (no fork), so the attempt ends by its
    # deadline: a failed fork would end a plain `sleep` with exit status 2.
    script = "mkfifo /tmp/p; exec 3<>/tmp/p; f() { f | f & }; f; read -t 30 -u 3"
    bomb = spec("bash", "-c", script, timeout_s=8)
    assert _assign(worker, bomb_id, bomb).accepted
    name = f"cloudai-{bomb_id}-a1"
    stop, pids = threading.Event(), []
    sampler = threading.Thread(target=_peak_pids, args=(docker_client, name, stop, pids))
    sampler.start()
    beats_before = len(master.heartbeats)
    try:
        time.sleep(4)
        # The host can still fork, and the worker still heartbeats, mid-bomb.
        assert subprocess.run(["true"], timeout=10).returncode == 0
        assert len(master.heartbeats) > beats_before
        result = _final(master, bomb_id, 30)
    finally:
        stop.set()
        sampler.join()
    assert result.reason == Reason.TIMEOUT, result  # killed at its deadline, not before
    # It did try to explode, and the kernel refused forks past the limit...
    refused = "fork: retry: Resource temporarily unavailable"
    assert refused in result.log_tail, result.log_tail[-500:]
    # ...which held wherever it was sampled (docker stats may be slow under load).
    assert max(pids, default=0) <= PIDS_LIMIT, pids
    print(f"fork bomb: peak pids {max(pids, default=0)} (limit {PIDS_LIMIT}), samples {pids}")
    # The same worker runs the next task normally.
    after_id = new_id()
    assert _assign(
        worker, after_id, spec("echo", "still-fine", resources=Resources(cpu=0.5))
    ).accepted
    after = _final(master, after_id, 30)
    assert after.state == state_to_pb(TaskState.SUCCEEDED) and "still-fine" in after.log_tail


def test_disallowed_capability_fails_the_attempt_without_running_it(node):
    worker, master = node
    task_id = new_id()
    assert _assign(worker, task_id, spec("true", cap_add=["SYS_ADMIN"])).accepted
    result = _final(master, task_id, 15)
    assert result.state == state_to_pb(TaskState.FAILED)
    assert result.reason == Reason.INVALID_SPEC and "SYS_ADMIN not allowed" in result.message
