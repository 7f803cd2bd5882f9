"""Helpers for the fault-injection suite: a LocalCluster that can be hurt, fast gRPC
queries, a Docker socket that can be cut, and the figures each test reports.

Every wait is bounded. Worker ids are unique per test, so the containers a test
leaves behind (a SIGKILLed worker's, say) are found by label and removed, and never
collide with other suites that run on the same engine.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import docker

from cloudai.cli.client import Client, CliExit
from cloudai.cli.demo import LocalCluster
from cloudai.convert import spec_to_pb
from cloudai.model import Resources, TaskSpec
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.worker.containers import LABEL_TASK, LABEL_WORKER
from tests.ports import free_port

BASE_IMAGE = "cloudai/base:bookworm"
TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"}
MiB = 1024**2


# -- figures ---------------------------------------------------------------------------
def record(test: str, **figures: Any) -> dict[str, Any]:
    """Print the measured figures (seen with -s) and append them as one JSON line to
    $CLOUDAI_FAULTS_REPORT when it is set."""
    row = {"test": test, **{k: _round(v) for k, v in figures.items()}}
    print(f"\n[faults] {test}: " + ", ".join(f"{k}={v}" for k, v in row.items() if k != "test"))
    path = os.environ.get("CLOUDAI_FAULTS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
    return row


def _round(v: Any) -> Any:
    return round(v, 3) if isinstance(v, float) else v


# -- names of things -------------------------------------------------------------------
def state(t: pb.Task) -> str:
    return pb.TaskState.Name(t.state).removeprefix("TASK_STATE_")


def health(w: pb.WorkerInfo) -> str:
    return pb.WorkerHealth.Name(w.health).removeprefix("WORKER_HEALTH_")


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.time() + timeout
    last: Any = None
    while time.time() < deadline:
        try:
            last = predicate()
        except (CliExit, AssertionError) as err:  # not up yet, or not there yet
            last = err
        else:
            if last:
                return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


# -- the cluster -----------------------------------------------------------------------
class FaultCluster(LocalCluster):
    """LocalCluster plus what fault tests need: per-process environment, restarts,
    signals, one long-lived client, and typed queries."""

    def __init__(self, root: Path, *, env: dict[str, str] | None = None, **kw: Any) -> None:
        # The master restarts on its port: one below the ephemeral range (tests/ports.py).
        super().__init__(root, port=free_port(), **kw)
        self.env = {**os.environ, **(env or {})}
        self.prefix = f"f{uuid.uuid4().hex[:5]}"
        self.worker_env: dict[str, dict[str, str]] = {}
        self.worker_ports: dict[str, int] = {}
        self._client: Client | None = None

    def wid(self, n: int) -> str:
        return f"{self.prefix}-w{n}"

    def start_worker(self, worker_id: str, *extra: str) -> subprocess.Popen:
        """As LocalCluster's, but a worker started again keeps its port, as one that a
        service manager restarts does: the master lets a live id register again at
        once only from the address it holds (another waits out the heartbeat timeout).
        This --port comes after LocalCluster's, and the last one given wins."""
        port = self.worker_ports.setdefault(worker_id, free_port())
        return super().start_worker(worker_id, "--port", str(port), *extra)

    def _env(self, name: str) -> dict[str, str]:
        return {**self.env, **self.worker_env.get(name, {})}

    @property
    def api(self) -> Client:
        if self._client is None:
            self._client = Client(self.address, timeout=5)
        return self._client

    def signal(self, name: str, sig: int) -> None:
        self.procs[name].send_signal(sig)
        if sig == signal.SIGKILL:
            self.procs[name].wait(10)

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, n_workers: int, *worker_args: str, agent: bool = False) -> None:
        self.start_master()
        for i in range(1, n_workers + 1):
            self.start_worker(self.wid(i), *worker_args)
        if agent:
            self.start_agent()
        wait_until(lambda: self.active_count() >= n_workers, 60, f"{n_workers} workers")
        if agent:
            wait_until(self.agent_connected, 30, "the agent")

    def wait_serving(self, timeout: float = 30) -> float:
        """Seconds until the master answers GetStatus."""
        began = time.time()
        wait_until(lambda: self.status(), timeout, "the master to serve", every=0.05)
        return time.time() - began

    # -- queries ---------------------------------------------------------------------
    def status(self) -> cpb.StatusResponse:
        return self.api.call("GetStatus", cpb.StatusRequest(), timeout=2)

    def workers(self) -> dict[str, pb.WorkerInfo]:
        resp = self.api.call("ListWorkers", cpb.ListWorkersRequest())
        return {w.id: w for w in resp.workers}

    def active_count(self) -> int:
        return sum(1 for w in self.workers().values() if health(w) == "ACTIVE")

    def task(self, task_id: str) -> pb.Task:
        return self.api.call("GetTask", cpb.GetTaskRequest(task_id=task_id))

    def tasks(self, states: Iterable[str] = ()) -> list[pb.Task]:
        req = cpb.ListTasksRequest(
            states=[pb.TaskState.Value("TASK_STATE_" + s) for s in states], limit=10_000
        )
        return list(self.api.call("ListTasks", req).tasks)

    def decisions(self, task_id: str) -> list:
        return list(self.api.call("Explain", cpb.ExplainRequest(task_id=task_id)).decisions)

    def submit(
        self,
        command: list[str],
        *,
        image: str = BASE_IMAGE,
        cpu: float = 0.1,
        memory: int = 32 * MiB,
        timeout: float = 0.0,
        **kw: Any,
    ) -> str:
        spec = TaskSpec(
            image=image,
            command=command,
            resources=Resources(cpu=cpu, memory_bytes=memory),
            timeout_s=timeout,
            **kw,
        )
        req = cpb.SubmitTaskRequest(spec=spec_to_pb(spec))
        return self.api.call("SubmitTask", req).task_id

    def wait_terminal(self, ids: Iterable[str], timeout: float) -> dict[str, pb.Task]:
        pending = set(ids)
        done: dict[str, pb.Task] = {}

        def all_done() -> bool:
            for tid in list(pending):
                t = self.task(tid)
                if state(t) in TERMINAL:
                    done[tid] = t
                    pending.discard(tid)
            return not pending

        wait_until(all_done, timeout, f"{len(pending)} task(s) to finish", every=0.3)
        return done

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "cloudai", args[0], "--master", self.address, *args[1:]]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env)

    def results(self, task_id: str) -> list[tuple[int, str]]:
        """(attempt, worker_id) of every stored result row, read from the SQLite file."""
        uri = f"file:{self.root / 'master.db'}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
            rows = conn.execute(
                "SELECT attempt, doc FROM results WHERE task_id = ? ORDER BY attempt", (task_id,)
            ).fetchall()
        return [(int(a), json.loads(doc).get("worker_id", "")) for a, doc in rows]

    def stop(self, timeout: float = 10.0) -> None:
        for proc in self.procs.values():  # a paused process cannot handle SIGTERM
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)
        if self._client is not None:
            self._client.close()
        super().stop(timeout)


# -- Docker ------------------------------------------------------------------------------
def containers_of(client: docker.DockerClient, worker_id: str) -> list[dict]:
    """The worker's containers as the engine lists them (dicts with "Labels", "Id"):
    one listing call, so a container removed meanwhile is simply absent."""
    return client.api.containers(all=True, filters={"label": f"{LABEL_WORKER}={worker_id}"})


def remove_containers(client: docker.DockerClient, prefix: str) -> None:
    for c in client.api.containers(all=True, filters={"label": LABEL_WORKER}):
        if c["Labels"].get(LABEL_WORKER, "").startswith(prefix):
            with contextlib.suppress(docker.errors.DockerException):
                client.api.remove_container(c["Id"], force=True)


def container_starts(client: docker.DockerClient, since: float, task_ids: set[str]) -> dict:
    """How many times a container of each task was started since `since` (docker events)."""
    counts: dict[str, int] = {}
    events = client.events(
        since=int(since) - 1,
        until=int(time.time()) + 1,
        filters={"type": "container", "event": "start", "label": LABEL_TASK},
        decode=True,
    )
    for ev in events:
        tid = ev.get("Actor", {}).get("Attributes", {}).get(LABEL_TASK, "")
        if tid in task_ids:
            counts[tid] = counts.get(tid, 0) + 1
    return counts


@contextlib.contextmanager
def proxied_worker(make_cluster: Callable[..., Any], path: Path, grace_s: float):
    """A cluster (not started) whose worker 1 talks to Docker through a
    DockerSocketProxy at `path`, with that engine grace. Yields (cluster, proxy,
    worker id); the proxy is thawed and cut at the end."""
    proxy = DockerSocketProxy(path)
    proxy.up()
    c = make_cluster()
    wid = c.wid(1)
    c.worker_env[wid] = {"DOCKER_HOST": proxy.url, "CLOUDAI_ENGINE_GRACE_S": str(grace_s)}
    try:
        yield c, proxy, wid
    finally:
        proxy.thaw()
        proxy.down()


class DockerSocketProxy:
    """A unix socket that forwards to the real Docker socket and can be cut: `down()`
    drops every connection and stops answering, as a restarting daemon does from a
    client's point of view, without touching the engine other tests use. Containers
    keep running, as with Docker's live-restore. `freeze()` makes it a hung daemon
    instead: connections are still accepted, and nothing is answered until `thaw()`."""

    def __init__(self, path: Path, target: str = "/var/run/docker.sock") -> None:
        self.path = str(path)
        self.target = target
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._flowing = threading.Event()
        self._flowing.set()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def up(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lst.bind(self.path)
        lst.listen(64)
        self._listener = lst
        threading.Thread(target=self._accept, args=(lst,), daemon=True).start()

    def down(self) -> None:
        lst, self._listener = self._listener, None
        if lst is not None:
            with contextlib.suppress(OSError):
                lst.shutdown(socket.SHUT_RDWR)
            lst.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        with self._lock:
            conns, self._conns = self._conns, []
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self, lst: socket.socket) -> None:
        while True:
            try:
                client, _ = lst.accept()
            except OSError:
                return
            threading.Thread(target=self._bridge, args=(client,), daemon=True).start()

    def _bridge(self, client: socket.socket) -> None:
        with self._lock:
            self._conns.append(client)
        self._flowing.wait()  # a frozen daemon accepts, and then says nothing
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.target)
        except OSError:
            client.close()
            return
        with self._lock:
            self._conns.append(upstream)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
