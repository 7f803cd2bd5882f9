"""QA pass 9, security as an adversary: identities that must not be usable for more
than they are. Real gRPC over loopback with mTLS, and real CLI processes.

- An agent's or a user's certificate (from `certs init`) is for clients only: a
  submitter holding `alice.crt` cannot pose as the master on localhost and collect
  the admin token a client presents (it could: every leaf was server and client).
  A renewed client stays a client; a master or worker given one refuses to start.
- A tokens file entry without a subject is refused: such a submitter owned, and so
  read, every task stored with no owner.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from cloudai import rpc
from cloudai.config import WorkerSettings
from cloudai.errors import ConfigError
from cloudai.model import TaskSpec
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import client_pb2_grpc
from cloudai.security import certs
from cloudai.security.setup import for_worker
from cloudai.security.tokens import token_hash
from tests.ports import free_port
from tests.security.seckit import make_tokens, start_secure_master

ADMIN_TOKEN = "cai_" + "A" * 43  # what a fake master would collect


class Collector(client_pb2_grpc.ClusterServicer):
    """A fake master: answers GetStatus and keeps the token it was shown."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def GetStatus(self, request, context):
        self.seen += [v for k, v in context.invocation_metadata() if k == "authorization"]
        return cpb.StatusResponse(version="fake")


def pose_as_master(pki, cert: str) -> tuple[grpc.StatusCode, list[str]]:
    """Serve a fake master with `cert` on localhost; an admin client calls it. The
    client's status code, and the tokens the fake master collected."""
    collector = Collector()
    server, port, _ = rpc.build_server(
        f"127.0.0.1:{free_port()}",
        [lambda s: client_pb2_grpc.add_ClusterServicer_to_server(collector, s)],
        ["cloudai.v1.Cluster"],
        tls=pki.tls(cert),
    )
    server.start()
    ch = rpc.channel(f"localhost:{port}", tls=pki.tls("admin"), token=ADMIN_TOKEN)
    try:
        client_pb2_grpc.ClusterStub(ch).GetStatus(cpb.StatusRequest(), timeout=5)
        code = grpc.StatusCode.OK
    except grpc.RpcError as err:
        code = err.code()
    finally:
        ch.close()
        server.stop(0)
    return code, collector.seen


@pytest.mark.parametrize("cert", ["alice", "agent", "admin"])
def test_a_client_certificate_cannot_pose_as_the_master(pki, cert):
    code, seen = pose_as_master(pki, cert)
    assert code == grpc.StatusCode.UNAVAILABLE  # the handshake fails
    assert seen == []


def test_the_master_certificate_still_serves(pki):
    """The positive control: the same client, the master's own certificate."""
    assert pose_as_master(pki, "master") == (grpc.StatusCode.OK, [f"Bearer {ADMIN_TOKEN}"])


def usages(path: Path) -> set:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_a_renewed_client_stays_a_client_and_servers_stay_servers(tmp_path):
    root = tmp_path / "pki"
    certs.init_pki(root, workers={"worker-1": []}, clients=["carol"])
    both = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    for name in ("carol", "worker-1", "dave"):
        certs.issue(root, name, [])  # renew carol and worker-1; dave is new
    assert usages(root / "carol.crt") == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert usages(root / "agent.crt") == {ExtendedKeyUsageOID.CLIENT_AUTH}
    for name in ("master", "worker-1", "dave"):
        assert usages(root / f"{name}.crt") == both, name


def test_the_master_refuses_to_serve_with_a_client_certificate(pki, tmp_path):
    tokens = tmp_path / "tokens.json"
    make_tokens(tokens)
    root = pki.root
    proc = subprocess.run(
        [
            sys.executable, "-m", "cloudai", "master", "--no-console",
            "--port", str(free_port()), "--db", ":memory:", "--tokens", str(tokens),
            "--tls-ca", str(root / "ca.crt"), "--tls-cert", str(root / "alice.crt"),
            "--tls-key", str(root / "alice.key"),
        ],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "alice.crt is a client certificate" in lines[0]


def test_a_worker_refuses_to_serve_with_a_client_certificate(pki):
    settings = WorkerSettings(
        _env_file=None,  # type: ignore[call-arg]
        id="worker-a",
        ip="127.0.0.1",
        tls_ca=str(pki.root / "ca.crt"),
        tls_cert=str(pki.root / "agent.crt"),
        tls_key=str(pki.root / "agent.key"),
    )
    with pytest.raises(ConfigError, match="agent.crt is a client certificate"):
        for_worker(settings, lambda m: None)


# -- a token without a subject ---------------------------------------------------------


def add_subjectless_submitter(tokens: Path) -> str:
    """Hand-edit the tokens file: a submitter entry with no subject."""
    token = "cai_" + "S" * 43
    data = json.loads(tokens.read_text())
    data["tokens"][token_hash(token)] = {"role": "submitter", "revoked": False, "created_at": 1.0}
    tokens.write_text(json.dumps(data))
    return token


def test_a_token_without_a_subject_reads_no_ownerless_task(tmp_path, pki):
    cluster = start_secure_master(tmp_path, pki)
    master = cluster.master
    try:
        # Submitted while tokens were off: no owner, for admins only.
        ownerless = master.submit(TaskSpec("cloudai/sample-task:latest", selector={"z": "none"}))
        token = add_subjectless_submitter(cluster.tokens_path)
        ch = rpc.channel(f"localhost:{master.port}", tls=pki.tls("alice"), token=token)
        stub = client_pb2_grpc.ClusterStub(ch)
        with pytest.raises(grpc.RpcError) as listed:
            stub.ListTasks(cpb.ListTasksRequest(), timeout=5)
        with pytest.raises(grpc.RpcError) as got:
            stub.GetTask(cpb.GetTaskRequest(task_id=ownerless.id), timeout=5)
        ch.close()
    finally:
        cluster.close()
    # The file is refused as a whole, as a corrupted one is: fail closed.
    assert listed.value.code() == got.value.code() == grpc.StatusCode.UNAVAILABLE
    assert ownerless.id not in listed.value.details() + got.value.details()


def test_token_list_names_the_entry_without_a_subject(tmp_path):
    tokens = tmp_path / "tokens.json"
    make_tokens(tokens)
    add_subjectless_submitter(tokens)
    proc = subprocess.run(
        [sys.executable, "-m", "cloudai", "token", "list", "--file", str(tokens)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1 and "has no subject" in proc.stderr, proc.stderr
