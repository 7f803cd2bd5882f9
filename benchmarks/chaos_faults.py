"""The cluster and the fault injector of benchmarks/chaos_soak.py (see its docstring):
real master, worker and agent processes on loopback that can be killed and started
again, and a thread that hurts them on a seeded schedule."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudai.cli.client import Client, CliExit
from cloudai.cli.demo import LocalCluster, free_port
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.worker.containers import LABEL_ATTEMPT, LABEL_TASK, LABEL_WORKER

KINDS = ("master_kill", "worker_kill", "worker_loss", "worker_term", "agent_kill", "drain")
WEIGHTS = (2, 2, 2, 2, 2, 1)
_T0 = time.time()


def say(msg: str) -> None:
    print(f"[soak {time.time() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def state(t: pb.Task) -> str:
    return pb.TaskState.Name(t.state).removeprefix("TASK_STATE_")


def health(w: pb.WorkerInfo) -> str:
    return pb.WorkerHealth.Name(w.health).removeprefix("WORKER_HEALTH_")


def retrying(fn, timeout: float, every: float = 0.25) -> Any:
    """fn() once it returns something truthy without raising CliExit (a master down)."""
    deadline = time.time() + timeout
    while True:
        try:
            result = fn()
            if result:
                return result
        except CliExit:
            pass
        if time.time() > deadline:
            return None
        time.sleep(every)


def make_schedule(seed: int, duration: float, every: float) -> list[tuple[float, str]]:
    """(second, kind) of each fault: every kind once in a seeded order (a worker loss
    among the first two), then seeded weighted draws; none in the last `every` s."""
    rng = random.Random(seed * 7919 + 1)
    n = max(1, int(duration / every) - 1)
    kinds = list(KINDS)
    rng.shuffle(kinds)
    kinds.remove("worker_loss")
    kinds.insert(rng.randint(0, 1), "worker_loss")
    kinds += rng.choices(KINDS, WEIGHTS, k=max(0, n - len(kinds)))
    times = [every * (i + 1) + rng.uniform(-0.3, 0.3) * every for i in range(n)]
    return list(zip(times, kinds[:n], strict=True))


# -- the cluster -----------------------------------------------------------------------
class Cluster(LocalCluster):
    """LocalCluster whose processes can be killed and started again: a worker keeps its
    id and port, as one a service manager restarts does."""

    def __init__(self, root: Path, n_workers: int, heartbeat_timeout: float) -> None:
        super().__init__(root, heartbeat_timeout=heartbeat_timeout, agent_timeout=2.0)
        self.prefix = f"soak{uuid.uuid4().hex[:5]}"
        self.ids = [f"{self.prefix}-w{i}" for i in range(1, n_workers + 1)]
        self.ports = {w: free_port() for w in self.ids}
        self.lock = threading.Lock()
        self.api = Client(self.address, timeout=5)
        self.slow_exits = 0

    def start_worker(self, worker_id: str, *extra: str) -> subprocess.Popen:
        return super().start_worker(worker_id, "--port", str(self.ports[worker_id]), *extra)

    def launch(self, name: str) -> None:
        with self.lock:
            if name == "master":
                self.start_master()
            elif name == "agent":
                self.start_agent()
            else:
                self.start_worker(name)

    def hurt(self, name: str, sig: int) -> None:
        """Send sig and wait for the process to exit (SIGKILL after 15 s)."""
        with self.lock:
            proc = self.procs[name]
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            self.slow_exits += 1
            say(f"{name} did not exit within 15 s of signal {sig}: SIGKILL")
            proc.kill()
            proc.wait()

    def call(self, method: str, request: Any) -> Any:
        return self.api.call(method, request)

    def workers(self) -> dict[str, pb.WorkerInfo]:
        return {w.id: w for w in self.call("ListWorkers", cpb.ListWorkersRequest()).workers}

    def task(self, task_id: str) -> pb.Task:
        return self.call("GetTask", cpb.GetTaskRequest(task_id=task_id))

    def live_tasks(self) -> list[pb.Task]:
        states = [pb.TaskState.Value(f"TASK_STATE_{s}") for s in ("PENDING", "PLACED", "RUNNING")]
        req = cpb.ListTasksRequest(states=states, limit=100_000)
        return list(self.call("ListTasks", req).tasks)

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def boot(self) -> None:
        self.start_master()
        for wid in self.ids:
            self.start_worker(wid)
        self.start_agent()
        ready = lambda: sum(health(w) == "ACTIVE" for w in self.workers().values())  # noqa: E731
        if not retrying(lambda: ready() == len(self.ids), 60):
            raise TimeoutError(f"{len(self.ids)} workers did not register (logs in {self.root})")
        retrying(lambda: self.call("GetStatus", cpb.StatusRequest()).agent_connected, 30)


# -- faults ----------------------------------------------------------------------------
@dataclass
class Faults:
    done: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    loss_detect_s: list[float] = field(default_factory=list)
    loss_undetected: int = 0
    stale_found: int = 0
    stale_left: int = 0
    stale_cleared_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Injector(threading.Thread):
    """Runs the schedule. Master and agent faults are done in line; a worker's down
    time and a drain's undrain run in threads of their own, so faults overlap."""

    def __init__(self, c: Cluster, schedule: list, seed: int, engine) -> None:
        super().__init__(daemon=True)
        self.c, self.schedule, self.engine = c, schedule, engine
        self.rng = random.Random(seed * 31 + 7)
        self.f = Faults()
        self.down: set[str] = set()
        self.drained: set[str] = set()
        self.side: list[threading.Thread] = []
        self.began = time.time()

    def run(self) -> None:
        for at, kind in self.schedule:
            time.sleep(max(0.0, self.began + at - time.time()))
            if self._guarded(getattr(self, f"_{kind}")):
                self.f.done[kind] += 1
            else:
                self.f.skipped[kind] += 1

    def _guarded(self, fn, *args) -> bool:
        """fn(*args); an error of the soak itself is kept (an invariant) and said."""
        try:
            return bool(fn(*args))
        except Exception as err:  # noqa: BLE001 - reported as a failed invariant
            self.f.errors.append(f"{getattr(fn, '__name__', fn)}: {err!r}")
            say(f"soak error in {getattr(fn, '__name__', fn)}: {err!r}")
            return False

    def finish(self) -> None:
        self.join()
        for t in self.side:
            t.join()

    def _spawn(self, fn, *args) -> None:
        t = threading.Thread(target=self._guarded, args=(fn, *args), daemon=True)
        self.side.append(t)
        t.start()

    def _victim(self, prefer_busy: bool = False) -> str:
        """An up worker whose loss leaves another up and undrained ('' if none), the
        one running the most tasks when prefer_busy; waits up to 30 s for one."""

        def pick(busy: bool) -> str:
            ok = [w for w in self.c.ids if w not in self.down and w not in self.drained]
            cands = [w for w in self.c.ids if w not in self.down and set(ok) - {w}]
            if not cands or not busy:
                return self.rng.choice(cands) if cands else ""
            load = {w: len(i.running) for w, i in self.c.workers().items() if w in cands}
            best = max(cands, key=lambda w: load.get(w, 0))
            return best if load.get(best) else ""

        return (
            retrying(lambda: pick(prefer_busy), 20, every=0.5)
            or retrying(lambda: pick(False), 20, every=0.5)
            or ""
        )

    def _master_kill(self) -> bool:
        self.c.hurt("master", signal.SIGKILL)
        self.c.launch("master")
        up = retrying(lambda: self.c.call("GetStatus", cpb.StatusRequest()), 30)
        say(f"fault master_kill: master restarted{'' if up else ', NOT serving after 30 s'}")
        return True

    def _agent_kill(self) -> bool:
        self.c.hurt("agent", signal.SIGKILL)
        time.sleep(self.rng.uniform(0.5, 3.0))
        self.c.launch("agent")
        say("fault agent_kill: agent restarted")
        return True

    def _worker_kill(self) -> bool:
        return self._worker_down("worker_kill", signal.SIGKILL)

    def _worker_term(self) -> bool:
        return self._worker_down("worker_term", signal.SIGTERM)

    def _worker_loss(self) -> bool:
        return self._worker_down("worker_loss", signal.SIGKILL, prefer_busy=True)

    def _worker_down(self, kind: str, sig: int, prefer_busy: bool = False) -> bool:
        wid = self._victim(prefer_busy)
        if not wid:
            say(f"fault {kind}: skipped (no worker can go down now)")
            return False
        self.down.add(wid)
        info = retrying(lambda: self.c.workers().get(wid), 5)
        running = len(info.running) if info is not None else "?"
        self.c.hurt(wid, sig)
        say(f"fault {kind}: {wid} got signal {sig} with {running} task(s)")
        back = self._come_back_lost if kind == "worker_loss" else self._come_back
        self._spawn(back, wid)
        return True

    def _come_back(self, wid: str) -> None:
        time.sleep(self.rng.uniform(0.5, 2.0))
        self.c.launch(wid)
        self.down.discard(wid)

    def _come_back_lost(self, wid: str) -> None:
        """Wait for the master to mark wid INACTIVE, then start it again and time the
        removal of its containers whose attempts were superseded meanwhile."""
        began = time.time()
        timeout = self.c.heartbeat_timeout
        inactive = lambda: (w := self.c.workers().get(wid)) and health(w) == "INACTIVE"  # noqa: E731
        lost = retrying(inactive, 3 * timeout + 30)
        if lost:
            self.f.loss_detect_s.append(round(time.time() - began, 2))
        else:
            self.f.loss_undetected += 1
        time.sleep(max(0.0, began + timeout + 1 - time.time()) + self.rng.uniform(0.5, 2.0))
        stale = self._stale_containers(wid)
        self.c.launch(wid)
        self.down.discard(wid)
        say(f"worker_loss: {wid} back after {time.time() - began:.1f}s, {len(stale)} stale")
        self._wait_stale_gone(stale, time.time())

    def _stale_containers(self, wid: str) -> set[str]:
        """Ids of wid's containers whose attempt is no longer the task's current one."""
        filters = {"label": f"{LABEL_WORKER}={wid}"}
        stale = set()
        for ct in self.engine.api.containers(all=True, filters=filters):
            labels = ct["Labels"]
            task = retrying(lambda lb=labels: self.c.task(lb[LABEL_TASK]), 30)
            if task is not None and task.attempt != int(labels.get(LABEL_ATTEMPT, 0)):
                stale.add(ct["Id"])
        self.f.stale_found += len(stale)
        return stale

    def _wait_stale_gone(self, stale: set[str], since: float) -> None:
        def gone() -> bool:
            listed = {ct["Id"] for ct in self.engine.api.containers(all=True)}
            return not stale & listed

        if retrying(gone, 60, every=0.5):
            self.f.stale_cleared_s.append(round(time.time() - since, 2))
        else:
            listed = {ct["Id"] for ct in self.engine.api.containers(all=True)}
            self.f.stale_left += len(stale & listed)

    def _drain(self) -> bool:
        wid = self._victim()
        if not wid:
            return False
        self.drained.add(wid)
        if not retrying(lambda: self.c.call("DrainWorker", cpb.DrainRequest(worker_id=wid)), 30):
            self.drained.discard(wid)
            return False
        say(f"fault drain: {wid} drained")
        self._spawn(self._undrain, wid, self.rng.uniform(3.0, 8.0))
        return True

    def _undrain(self, wid: str, after: float) -> None:
        time.sleep(after)
        req = cpb.DrainRequest(worker_id=wid, undrain=True)
        retrying(lambda: self.c.call("DrainWorker", req), 60)
        self.drained.discard(wid)
