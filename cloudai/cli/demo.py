"""`cloudai demo`: a whole local cluster on the embedded default, running the sample task.

It starts a master (SQLite in a temporary folder), workers and the placement agent
as real processes on loopback, submits the sample task without naming a worker,
streams its logs, shows where it ran and why, and shuts everything down.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cloudai.proto import client_pb2 as cpb

from . import views
from .client import Client, CliExit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


class LocalCluster:
    """Real master, worker and agent processes on loopback (also used by tests)."""

    def __init__(
        self,
        root: Path,
        *,
        heartbeat_timeout: float = 15.0,
        agent_timeout: float = 3.0,
        port: int = 0,
    ) -> None:
        """`port`: the master's (0: a free one now)."""
        self.root = root
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.heartbeat_timeout = heartbeat_timeout
        self.agent_timeout = agent_timeout

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "cloudai", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self._env(name),
        )
        self.procs[name] = proc
        return proc

    def _env(self, name: str) -> dict[str, str] | None:
        """The environment of process `name` (None: this one's)."""
        return None

    def start_master(self) -> subprocess.Popen:
        return self._spawn(
            "master",
            [
                "master",
                "--no-console",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--db",
                f"sqlite:///{self.root / 'master.db'}",
                "--heartbeat-timeout",
                str(self.heartbeat_timeout),
                "--agent-timeout",
                str(self.agent_timeout),
            ],
        )

    def start_worker(self, worker_id: str, *extra: str) -> subprocess.Popen:
        return self._spawn(
            worker_id,
            [
                "worker",
                "--id",
                worker_id,
                "--ip",
                "127.0.0.1",
                "--port",
                str(free_port()),
                "--master",
                self.address,
                "--heartbeat-interval",
                "1",
                *extra,
            ],
        )

    def start_agent(self, *extra: str) -> subprocess.Popen:
        return self._spawn("agent", ["agent", "--master", self.address, *extra])

    def client(self) -> Client:
        return Client(self.address, timeout=5)

    def wait_for(self, predicate, timeout: float, what: str) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if predicate():
                    return
            except CliExit:
                pass  # not up yet
            time.sleep(0.2)
        raise TimeoutError(
            f"timed out after {timeout:.0f}s waiting for {what} (logs in {self.root})"
        )

    def active_workers(self) -> int:
        resp = self.client().call("ListWorkers", cpb.ListWorkersRequest())
        return sum(1 for w in resp.workers if views.health_name(w.health) == "ACTIVE")

    def agent_connected(self) -> bool:
        return self.client().call("GetStatus", cpb.StatusRequest()).agent_connected

    def stop(self, timeout: float = 10.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.time() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def preflight(image: str) -> str:
    """Empty string when Docker and the image are ready, else what to do."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
    except Exception:
        return (
            "no Docker engine is reachable: start dockerd (in a CloudAI checkout, `make demo` "
            "installs and starts one on Debian as root)"
        )
    try:
        client.images.get(image)
    except Exception:
        return f"image {image} is not present: {image_hint(image)}"
    return ""


SAMPLE_IMAGE = "cloudai/sample-task:latest"


def sample_task_dir() -> Path | None:
    """The installed sample task's image sources (cloudai.sample_task), if present."""
    try:
        from cloudai import sample_task
    except ImportError:  # an editable install made before the package existed
        return None
    folder = Path(sample_task.__file__).resolve().parent
    return folder if (folder / "Dockerfile").is_file() else None


def image_hint(image: str) -> str:
    """How to get a missing image, without assuming a checkout of the repository."""
    if image != SAMPLE_IMAGE:
        return f"pull or build it first (docker pull {image})"
    folder = sample_task_dir()
    if folder is None:
        return "run `make demo` or `bash scripts/setup.sh` in a CloudAI checkout to build it"
    return (
        f"build it with `docker build -t {image} {folder}` (a base other than "
        "python:3.11-slim: --build-arg BASE_IMAGE=...; in a checkout, `make demo` does it)"
    )


def run_demo(
    workers: int = 2, image: str = "cloudai/sample-task:latest", keep: bool = False
) -> int:
    problem = preflight(image)
    if problem:
        print(f"cloudai demo: {problem}", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="cloudai-demo-"))
    cluster = LocalCluster(root)
    started = time.time()
    try:
        return _run(cluster, workers, image)
    except (TimeoutError, CliExit) as err:
        print(f"cloudai demo: {getattr(err, 'message', '') or err}", file=sys.stderr)
        return 1
    finally:
        say("shutting down the cluster...")
        cluster.stop()
        say(f"done in {time.time() - started:.1f}s")
        if keep:
            say(f"data and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _run(cluster: LocalCluster, workers: int, image: str) -> int:
    say(f"starting master on {cluster.address} (SQLite in {cluster.root})")
    cluster.start_master()
    for i in range(1, workers + 1):
        say(f"starting worker-{i}")
        cluster.start_worker(f"worker-{i}", "--label", f"zone={'ab'[i % 2]}")
    say("starting the placement agent")
    cluster.start_agent()
    cluster.wait_for(lambda: cluster.active_workers() >= workers, 60, f"{workers} workers")
    cluster.wait_for(cluster.agent_connected, 30, "the agent")
    client = cluster.client()
    print(views.workers_table(list(client.call("ListWorkers", cpb.ListWorkersRequest()).workers)))
    say(f"submitting {image} without naming a worker; the agent places it")
    from cloudai.convert import spec_to_pb
    from cloudai.model import Resources, TaskSpec

    spec = TaskSpec(
        image=image, name="sample", resources=Resources(cpu=0.5, memory_bytes=256 * 1024**2)
    )
    task_id = client.call("SubmitTask", cpb.SubmitTaskRequest(spec=spec_to_pb(spec))).task_id
    say(f"task {task_id} submitted; streaming its logs:")
    for chunk in client.stream("StreamLogs", cpb.LogsRequest(task_id=task_id, follow=True)):
        sys.stdout.write(chunk.data)
        if chunk.notice:
            say(chunk.notice)
    sys.stdout.flush()
    cluster.wait_for(lambda: _terminal(client, task_id), 120, f"task {task_id} to finish")
    task = client.call("GetTask", cpb.GetTaskRequest(task_id=task_id))
    print(views.task_panel(task))
    say("why it ran there (cloudai explain):")
    print(client.call("Explain", cpb.ExplainRequest(task_id=task_id)).text)
    ok = views.state_name(task.state) == "SUCCEEDED"
    say(
        "✓ the sample task succeeded"
        if ok
        else f"✗ the sample task ended {views.state_name(task.state)}"
    )
    return 0 if ok else 1


def _terminal(client: Client, task_id: str) -> bool:
    t = client.call("GetTask", cpb.GetTaskRequest(task_id=task_id))
    return views.state_name(t.state) in ("SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT")
