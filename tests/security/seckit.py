"""Helpers for the security tests: a cluster PKI in a tmp dir, tokens per role, an
in-process master with mTLS and tokens on loopback, and fake workers serving mTLS."""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from cloudai import rpc
from cloudai.config import MasterSettings
from cloudai.master.server import Master
from cloudai.master.store import SQLiteStore
from cloudai.proto import client_pb2_grpc, master_agent_pb2_grpc, master_worker_pb2_grpc
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_worker_pb2 as mw
from cloudai.security import certs
from cloudai.security.interceptor import WORKER_RULES, AuthInterceptor
from cloudai.security.tokens import Role, TokenStore

GiB = 1024**3
WORKERS = ("worker-a", "worker-b")


@dataclass
class Pki:
    root: Path  # the cluster's CA and certificates
    foreign: Path  # a second, unrelated CA with its own "admin"

    def tls(
        self,
        name: str,
        *,
        ca_from: Path | None = None,
        cert_from: Path | None = None,
        server_name: str = "",
    ) -> rpc.Tls:
        """`name`'s certificate and key (from `cert_from`, default the cluster's PKI),
        trusting the CA in `ca_from` (default the cluster's)."""
        ca_dir, cert_dir = ca_from or self.root, cert_from or self.root
        return rpc.Tls(
            ca=(ca_dir / "ca.crt").read_bytes(),
            cert=(cert_dir / f"{name}.crt").read_bytes(),
            key=(cert_dir / f"{name}.key").read_bytes(),
            server_name=server_name,
        )


def make_pki(tmp: Path) -> Pki:
    root, foreign = tmp / "pki", tmp / "foreign"
    certs.init_pki(root, workers={w: [] for w in WORKERS}, clients=["admin", "alice", "bob"])
    certs.init_pki(foreign, clients=["admin"])
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    certs.issue(root, "expired", [], not_before=past - dt.timedelta(days=30), not_after=past)
    return Pki(root, foreign)


def make_tokens(path: Path) -> dict[str, str]:
    """One token per caller, plus one revoked; name -> token."""
    store = TokenStore(path)
    out = {}
    for name, role, subject in (
        ("admin", Role.ADMIN, "admin"),
        ("alice", Role.SUBMITTER, "alice"),
        ("bob", Role.SUBMITTER, "bob"),
        ("worker-a", Role.WORKER, "worker-a"),
        ("worker-b", Role.WORKER, "worker-b"),
        ("agent", Role.AGENT, "agent"),
        ("master", Role.MASTER, "master"),
        ("revoked", Role.ADMIN, "mallory"),
    ):
        out[name], _ = store.create(role, subject)
    store.revoke(token=out["revoked"])
    return out


class RecordingWorker(master_worker_pb2_grpc.WorkerServicer):
    """A worker that accepts every assignment and records it; runs nothing."""

    def __init__(self) -> None:
        self.assigned: list[tuple[str, int]] = []
        self.specs: list[pb.TaskSpec] = []
        self.event = threading.Event()

    def AssignTask(self, request, context):
        self.assigned.append((request.task_id, request.attempt))
        self.specs.append(request.spec)
        self.event.set()
        return mw.AssignTaskResponse(accepted=True, message="accepted")

    def CancelTask(self, request, context):
        return mw.CancelTaskResponse(found=True)

    def GetTaskLogs(self, request, context):
        yield pb.LogChunk(data="", eof=True)


@dataclass
class TlsWorker:
    worker_id: str
    servicer: RecordingWorker
    server: grpc.Server
    port: int


@dataclass
class SecureCluster:
    pki: Pki
    tokens: dict[str, str]
    tokens_path: Path
    master: Master
    workers: dict[str, TlsWorker] = field(default_factory=dict)
    _channels: list[grpc.Channel] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"localhost:{self.master.port}"

    def channel(self, cert: str = "admin", token: str | None = "admin", **tls) -> grpc.Channel:
        """A channel with `cert` (from the cluster CA) and the named token."""
        ch = rpc.channel(
            self.target,
            tls=self.pki.tls(cert, **tls),
            token=self.tokens.get(token, token) if token else "",
        )
        self._channels.append(ch)
        return ch

    def raw_channel(self, tls: rpc.Tls | None, token: str = "") -> grpc.Channel:
        ch = rpc.channel(self.target, tls=tls, token=token)
        self._channels.append(ch)
        return ch

    def cluster(self, cert: str = "admin", token: str | None = "admin", **tls):
        return client_pb2_grpc.ClusterStub(self.channel(cert, token, **tls))

    def mw(self, cert: str, token: str | None):
        return master_worker_pb2_grpc.MasterWorkerStub(self.channel(cert, token))

    def agent(self, cert: str = "agent", token: str | None = "agent"):
        return master_agent_pb2_grpc.MasterAgentStub(self.channel(cert, token))

    def add_worker(self, worker_id: str, serve_with: str = "") -> TlsWorker:
        """Serve a recording worker with mTLS (only the master's certificate may call)
        and register it with its own certificate and token. `serve_with`: another
        certificate to serve with (an impostor at the worker's address)."""
        servicer = RecordingWorker()
        server, port, _ = rpc.build_server(
            "127.0.0.1:0",
            [lambda s: master_worker_pb2_grpc.add_WorkerServicer_to_server(servicer, s)],
            ["cloudai.v1.Worker"],
            tls=self.pki.tls(serve_with or worker_id),
            interceptors=[AuthInterceptor(WORKER_RULES, peer_names=frozenset({"master"}))],
        )
        server.start()
        w = TlsWorker(worker_id, servicer, server, port)
        self.workers[worker_id] = w
        resp = self.mw(worker_id, worker_id).RegisterWorker(
            mw.RegisterWorkerRequest(
                worker_id=worker_id,
                address=f"127.0.0.1:{port}",
                capacity=pb.Resources(cpu=4, memory_bytes=8 * GiB),
                hostname="test",
            ),
            timeout=5,
        )
        assert resp.accepted
        return w

    def close(self) -> None:
        for ch in self._channels:
            ch.close()
        self.master.stop(grace=0.5)
        for w in self.workers.values():
            w.server.stop(0)


def start_secure_master(tmp: Path, pki: Pki, **settings) -> SecureCluster:
    tokens_path = tmp / "tokens.json"
    tokens = make_tokens(tokens_path)
    s = MasterSettings(
        _env_file=None,  # type: ignore[call-arg]
        host="127.0.0.1",
        port=0,
        console=False,
        heartbeat_timeout=30.0,
        agent_timeout=3600.0,
        tls_ca=str(pki.root / "ca.crt"),
        tls_cert=str(pki.root / "master.crt"),
        tls_key=str(pki.root / "master.key"),
        tokens=str(tokens_path),
        **settings,
    )
    master = Master(s, store=SQLiteStore(tmp / "master.db"), warn=lambda m: None)
    master.start()
    return SecureCluster(pki, tokens, tokens_path, master)
