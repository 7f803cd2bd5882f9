"""The master process: wires the store, registry, task manager, scheduler and gRPC.

`Master(settings)` builds everything and binds the port (0 picks a free one);
`start()` serves; `stop()` shuts down. `run_master()` is the CLI entry point.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from cloudai import __version__, rpc
from cloudai.config import MasterSettings, data_dir
from cloudai.convert import health_to_pb, resources_to_pb
from cloudai.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from cloudai.model import Resources, Task, TaskSpec, WorkerHealth
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import client_pb2_grpc as cpb_grpc
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_agent_pb2_grpc as apb_grpc
from cloudai.proto import master_worker_pb2_grpc as mw_grpc
from cloudai.security.certs import is_host_name
from cloudai.security.setup import for_master, secret_box
from cloudai.security.tokens import ANONYMOUS, Identity

from .dispatcher import Dispatcher
from .logstream import TaskLogs
from .registry import WorkerEntry, WorkerRegistry
from .scheduler import Decider, Scheduler
from .servicers import ClusterServicer, MasterAgentServicer, MasterWorkerServicer
from .store import open_store
from .store.base import Store
from .sweeper import Sweeper
from .tasks import TaskManager

log = logging.getLogger("cloudai.master")
SERVICES = ("cloudai.v1.MasterWorker", "cloudai.v1.Cluster", "cloudai.v1.MasterAgent")


def default_decider() -> Decider:
    """The fallback placement: the agent's own policy library, default profile."""

    def decide(batch):  # imported lazily: the policy library pulls in numpy
        from cloudai.agent.fallback import decide_default

        return decide_default(batch)

    return decide


class Master:
    def __init__(
        self,
        settings: MasterSettings,
        *,
        store: Store | None = None,
        warn: Callable[[str], None] = print,
        decide: Decider | None = None,
        keepalive_ms: int = rpc.KEEPALIVE_MS,
    ) -> None:
        self.settings = settings
        self.started_at = time.time()
        # Security first: a refused configuration must not even create a database.
        self.security = for_master(settings, warn)
        # Then the port: a second master on a port in use must not open the store.
        self.server, self.port, self._health = self._build_server(keepalive_ms)
        try:
            self._build(store, warn, decide)
        except BaseException:
            self.server.stop(None)
            raise
        log.info("security: %s", self.security.summary)

    def _build_server(self, keepalive_ms: int) -> tuple[grpc.Server, int, Any]:
        s = self.settings
        rpc.check_port(s.port)
        return rpc.build_server(
            rpc.listen_address(s.host, s.port),
            [
                lambda srv: mw_grpc.add_MasterWorkerServicer_to_server(
                    MasterWorkerServicer(self), srv
                ),
                lambda srv: cpb_grpc.add_ClusterServicer_to_server(ClusterServicer(self), srv),
                lambda srv: apb_grpc.add_MasterAgentServicer_to_server(
                    MasterAgentServicer(self), srv
                ),
            ],
            SERVICES,
            max_workers=64,
            tls=self.security.transport.tls,
            interceptors=self.security.interceptors,
            keepalive_ms=keepalive_ms,
        )

    def _build(
        self, store: Store | None, warn: Callable[[str], None], decide: Decider | None
    ) -> None:
        settings = self.settings
        self.store = store or self._open_store(warn)
        self.secrets = secret_box(self.store.url, settings, data_dir())
        self.registry = WorkerRegistry(
            self.store, timeout_s=settings.heartbeat_timeout, sample_s=settings.telemetry_sample_s
        )
        self.tasks = TaskManager(
            self.store,
            self.registry,
            max_worker_losses=settings.max_worker_losses,
            max_transient_retries=settings.max_transient_retries,
            on_change=lambda: self.scheduler.notify(),
        )
        self.dispatcher = Dispatcher(
            self.registry,
            self.tasks,
            channel=self.security.transport.channel,
            reveal=self.secrets.reveal,
            on_reachable=lambda: self.scheduler.notify(),
            server_name=self._worker_server_name,
        )
        self.scheduler = Scheduler(
            self.tasks,
            self.registry,
            self.dispatcher,
            agent_timeout=settings.agent_timeout,
            decide=decide or default_decider(),
        )
        self._stop = threading.Event()
        self._logs = TaskLogs(self.tasks, self.dispatcher, self.stored_log, self._stop)
        self.sweeper = Sweeper(
            self.store,
            self.registry,
            self.tasks,
            heartbeat_timeout=settings.heartbeat_timeout,
            telemetry_retention_s=settings.telemetry_retention_s,
            task_retention_s=settings.task_retention_s,
            notify=lambda: self.scheduler.notify(),
        )
        self._sweeper = threading.Thread(
            target=self.sweeper.run, args=(self._stop,), name="sweeper", daemon=True
        )

    def _worker_server_name(self, worker_id: str) -> str:
        """With TLS, the name a worker's certificate must carry when the master dials
        it: its id, when that is a host name (`certs init` and `certs issue` add it to
        the worker's names); otherwise its address's host."""
        tls = self.security.transport.tls is not None
        return worker_id if tls and is_host_name(worker_id) else ""

    def _open_store(self, warn: Callable[[str], None]) -> Store:
        s = self.settings
        # The store makes the folders it needs, and reports a failure in one line.
        fallback = data_dir() / "master.db"
        password = s.mongodb_password.get_secret_value() if s.mongodb_password else None
        return open_store(
            s.db_url(),
            mongo_username=s.mongodb_username,
            mongo_password=password,
            fallback_sqlite_path=str(fallback),
            warn=warn,
            exclusive=True,
        )

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self.server.start()
        self.scheduler.start()
        self._sweeper.start()
        self.scheduler.notify()

    def stop(self, grace: float = 2.0) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._health.enter_graceful_shutdown()
        self.scheduler.stop()
        self.server.stop(grace).wait(grace + 1)
        self.dispatcher.close()
        self.store.close()

    # -- operations used by servicers and the console ---------------------------------
    def check_pin(self, spec: TaskSpec) -> None:
        """Manual override skips the scorers but is still validated."""
        entry = self.registry.get(spec.pinned_worker)
        if entry is None:
            raise NotFound(f"unknown worker {spec.pinned_worker!r} (see `workers`)")
        if entry.left_at:
            raise Conflict(f"worker {spec.pinned_worker!r} is inactive: it shut down")
        if entry.record.health != WorkerHealth.ACTIVE:
            raise Conflict(f"worker {spec.pinned_worker!r} is {entry.record.health.value.lower()}")
        if not entry.registered:  # known from the store, silent since this master started
            raise Conflict(
                f"worker {spec.pinned_worker!r} has not registered with this master since it "
                "started: wait for its next heartbeat, or pin another worker"
            )
        if not spec.resources.fits_in(entry.record.capacity):
            raise InvalidArgument(
                f"task does not fit worker {spec.pinned_worker!r}: "
                f"capacity cpu={entry.record.capacity.cpu:g} "
                f"mem={entry.record.capacity.memory_bytes / 1024**2:.0f}MiB "
                f"gpu={entry.record.capacity.gpu:g}"
            )

    def admit(self, spec: TaskSpec, ident: Identity = ANONYMOUS) -> None:
        """May this caller run this spec here? Image allow-list, pinning (admin only,
        then validated), and the owner, taken from the caller's token."""
        self.security.images.check(spec.image)
        if spec.pinned_worker:
            if not ident.is_admin:
                raise PermissionDenied("pinning a task to a worker (--worker) needs the admin role")
            self.check_pin(spec)
        if ident.authenticated:
            spec.owner = ident.subject

    def submit(self, spec: TaskSpec, ident: Identity = ANONYMOUS) -> Task:
        self.admit(spec, ident)
        return self.tasks.submit(self.secrets.seal(spec))

    def task_for(self, task_id: str, ident: Identity = ANONYMOUS) -> Task:
        """The task, if this caller may read or act on it: an admin (and every caller
        when tokens are off) any task, anyone else only the tasks it owns.
        NotFound if there is no such task, PermissionDenied if it is another's."""
        task = self.tasks.get(task_id)
        if ident.owner_filter not in (None, task.spec.owner):
            raise PermissionDenied(f"task {task_id} belongs to another user")
        return task

    def cancel(self, task_id: str, ident: Identity = ANONYMOUS) -> tuple[Task, str]:
        before = self.task_for(task_id, ident)
        task, worker = self.tasks.cancel(task_id)
        if worker:
            self.dispatcher.cancel(worker, task_id, before.attempt)
            return task, f"cancelled; stopping its container on {worker}"
        return task, "cancelled"

    def stored_log(self, task_id: str) -> str:
        results = self.store.get_results(task_id)
        return results[-1].log_tail if results else ""

    def stream_logs(
        self,
        task_id: str,
        follow: bool,
        tail: int,
        is_active: Callable[[], bool],
        on_leave: Callable[[Callable[[], None]], bool] | None = None,
    ) -> Iterator[pb.LogChunk]:
        """The task's logs; followed, across its attempts until it ends (logstream.py)."""
        return self._logs.stream(task_id, follow, tail, is_active, on_leave)

    def worker_info(self, e: WorkerEntry) -> pb.WorkerInfo:
        r, mark = e.record, e.unreachable
        info = pb.WorkerInfo(
            id=r.id,
            address=r.address,
            capacity=resources_to_pb(r.capacity),
            labels=r.labels,
            health=health_to_pb(r.health),
            registered_at=r.registered_at,
            last_heartbeat=r.last_heartbeat,
            telemetry=e.telemetry,
            allocated=resources_to_pb(self.tasks.allocated(r.id)),
            # A lost worker's last report is stale: its tasks were requeued.
            running=[] if e.lost else [pb.TaskRef(task_id=t, attempt=a) for t, a in e.running],
            cached_images=e.cached_images[:50],
            hostname=r.hostname,
            version=r.version,
        )
        info.left_at, info.heard_since_master_start = e.left_at, e.registered
        info.engine_trouble = e.engine_trouble
        if mark is not None:
            info.unreachable_error = mark.error
            info.unreachable_since, info.unreachable_until = mark.since, mark.until
        return info

    def status(self) -> cpb.StatusResponse:
        entries = self.registry.all()
        counts = {h: sum(1 for e in entries if e.record.health == h) for h in WorkerHealth}
        cap, alloc = Resources(), Resources()
        for e in entries:
            if e.record.health != WorkerHealth.INACTIVE:
                cap = cap + e.record.capacity
                alloc = alloc + self.tasks.allocated(e.record.id)
        healthy, agent_id, seen = self.scheduler.agent_status()
        agents = self.scheduler.connected_agents()
        about, shadow = self.scheduler.agent_about()
        return cpb.StatusResponse(
            version=__version__,
            uptime_s=time.time() - self.started_at,
            store=self.store.url,
            workers_active=counts[WorkerHealth.ACTIVE],
            workers_inactive=counts[WorkerHealth.INACTIVE],
            workers_draining=counts[WorkerHealth.DRAINING],
            workers_unreachable=sum(1 for e in entries if e.unreachable is not None),
            workers_no_engine=len(self.registry.engine_troubled()),
            tasks_by_state=self.store.count_tasks_by_state(),
            agent_connected=healthy,
            agent_id=agent_id,
            agent_last_seen_s=seen,
            agents_connected=len(agents),
            connected_agent_ids=agents,
            agent_policy=about.policy,
            agent_profile=about.profile,
            agent_model_version=about.model_version,
            agent_shadow=shadow,
            capacity=resources_to_pb(cap),
            allocated=resources_to_pb(alloc),
        )
