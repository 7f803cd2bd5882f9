"""Local TLS and token mistakes are named in one line, before anything is dialled or
bound: a key that does not match its certificate (master, worker, client: exit 1,
not "address in use" or "master unreachable"); a TLS client talking to a plaintext
master is told so; gRPC's own C-core log lines stay off stderr unless GRPC_VERBOSITY
asks for them; a worker whose token the master refuses at its first registration
exits 1 instead of retrying forever. Real `cloudai` processes on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloudai.config import MasterSettings
from cloudai.master.server import Master
from cloudai.master.store import SQLiteStore
from cloudai.security.tokens import TokenStore
from tests.ports import free_port
from tests.security.seckit import make_tokens

MASTER_PORT, WORKER_PORT, NOBODY_PORT, TOKENS_MASTER_PORT, PLAIN_MASTER_PORT = (
    free_port() for _ in range(5)
)


def cloudai(*args: str, env: dict | None = None) -> subprocess.Popen:
    """`cloudai ARGS` with no CLOUDAI_* or GRPC_* settings but those in `env`."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDAI_", "GRPC_"))}
    return subprocess.Popen(
        [sys.executable, "-m", "cloudai", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**clean, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


def finished(proc: subprocess.Popen, timeout: float = 30) -> tuple[int, str]:
    """Its exit status and stderr; killed if it is still there after `timeout`."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return -1, err
    return proc.returncode, err


def tls_flags(pki, cert: str, key: str | None = None) -> list[str]:
    root = pki.root
    return ["--tls-ca", str(root / "ca.crt"), "--tls-cert", str(root / f"{cert}.crt"),
            "--tls-key", str(root / f"{key or cert}.key")]  # fmt: skip


def mismatch(pki, cert: str, key: str) -> str:
    return (
        f"--tls-key {pki.root / key}.key does not match --tls-cert {pki.root / cert}.crt: "
        "use the key issued with that certificate"
    )


# -- a certificate and a key that do not belong together --------------------------------
def test_master_with_another_key_is_one_line_not_address_in_use(tmp_path, pki):
    proc = cloudai("master", "--port", str(MASTER_PORT), "--no-console",
                   "--db", f"sqlite:///{tmp_path / 'm.db'}",
                   *tls_flags(pki, "master", "worker-a"))  # fmt: skip
    code, err = finished(proc)
    assert (code, err) == (1, f"cloudai master: {mismatch(pki, 'master', 'worker-a')}\n")


def test_worker_with_another_key_is_one_line_not_address_in_use(pki):
    proc = cloudai("worker", "--id", "worker-a", "--ip", "127.0.0.1", "--port", str(WORKER_PORT),
                   "--master", f"127.0.0.1:{NOBODY_PORT}",
                   *tls_flags(pki, "worker-a", "worker-b"))  # fmt: skip
    code, err = finished(proc)
    assert (code, err) == (1, f"cloudai worker: {mismatch(pki, 'worker-a', 'worker-b')}\n")


def test_client_with_another_key_is_bad_input_not_an_unreachable_master(pki):
    """Exit 1 (its own mistake), not 2: nothing is dialled."""
    proc = cloudai(*tls_flags(pki, "admin", "agent"), "status",
                   "--master", f"127.0.0.1:{NOBODY_PORT}")  # fmt: skip
    code, err = finished(proc)
    assert (code, err) == (1, f"cloudai: {mismatch(pki, 'admin', 'agent')}\n")


# -- a TLS client, a plaintext master ---------------------------------------------------
@pytest.fixture
def plain_master(tmp_path):
    master = _master(tmp_path, PLAIN_MASTER_PORT)
    yield master
    master.stop(grace=0.5)


def _master(tmp: Path, port: int, **settings) -> Master:
    s = MasterSettings(
        _env_file=None,  # type: ignore[call-arg]
        host="127.0.0.1",
        port=port,
        console=False,
        heartbeat_timeout=30.0,
        agent_timeout=3600.0,
        **settings,
    )
    master = Master(s, store=SQLiteStore(tmp / "master.db"), warn=lambda m: None)
    master.start()
    return master


def test_tls_client_to_a_plaintext_master_is_told_it_may_be_plaintext(plain_master, pki):
    """One line: gRPC's `I1130 ... Handshake failed` log line is off by default."""
    proc = cloudai(*tls_flags(pki, "admin"), "status", "--master", f"127.0.0.1:{PLAIN_MASTER_PORT}")
    code, err = finished(proc)
    assert code == 2, err
    [line] = err.splitlines()
    assert "may be serving plaintext" in line and "drop --tls-ca" in line


def test_grpc_verbosity_set_by_the_user_shows_grpc_own_lines(plain_master, pki):
    proc = cloudai(*tls_flags(pki, "admin"), "status", "--master", f"127.0.0.1:{PLAIN_MASTER_PORT}",
                   env={"GRPC_VERBOSITY": "DEBUG"})  # fmt: skip
    code, err = finished(proc)
    assert code == 2
    assert "Handshake failed" in err and len(err.splitlines()) > 1


# -- a worker whose token the master refuses --------------------------------------------
@pytest.fixture
def token_master(tmp_path, pki):
    tokens_path = tmp_path / "tokens.json"
    tokens = make_tokens(tokens_path)
    root = pki.root
    master = _master(tmp_path, TOKENS_MASTER_PORT, tokens=str(tokens_path),
                     tls_ca=str(root / "ca.crt"), tls_cert=str(root / "master.crt"),
                     tls_key=str(root / "master.key"))  # fmt: skip
    yield tokens_path, tokens
    master.stop(grace=0.5)


def worker_b(tmp_path: Path, pki, token: str | None) -> subprocess.Popen:
    flags = []
    if token is not None:
        (tmp_path / "w.token").write_text(token + "\n")
        flags = ["--token-file", str(tmp_path / "w.token")]
    return cloudai("worker", "--id", "worker-b", "--ip", "127.0.0.1", "--port", str(WORKER_PORT),
                   "--master", f"127.0.0.1:{TOKENS_MASTER_PORT}", "--heartbeat-interval", "0.5",
                   *tls_flags(pki, "worker-b"), *flags)  # fmt: skip


@pytest.mark.docker  # a worker checks its Docker engine before it registers
@pytest.mark.parametrize(
    "token, why",
    [("worker-a", "a worker token for 'worker-a' cannot act for worker 'worker-b'"),
     (None, "missing token: present one with --token-file or CLOUDAI_TOKEN"),
     ("cai_not-a-token-of-this-cluster-00000", "invalid or revoked token")],
)  # fmt: skip
def test_worker_refused_at_its_first_registration_exits_1(tmp_path, pki, token_master, token, why):
    _, tokens = token_master
    proc = worker_b(tmp_path, pki, tokens.get(token, token) if token else None)
    code, err = finished(proc)
    assert (code, err) == (1, f"cloudai worker: the master refused this worker's token: {why}\n")


@pytest.mark.docker
def test_worker_registered_before_keeps_retrying_when_its_token_is_refused(
    tmp_path, pki, token_master
):
    """Its token may be being rotated: it retries, with its backoff, and stays up."""
    tokens_path, tokens = token_master
    proc = worker_b(tmp_path, pki, tokens["worker-b"])
    try:
        _wait_line(proc, "[worker-b] registered with master")
        TokenStore(tokens_path).revoke(token=tokens["worker-b"])
        _wait_line(proc, "invalid or revoked token, retrying in")
        _wait_line(proc, "invalid or revoked token, retrying in")  # and again
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        code, err = finished(proc)
    assert code == 0, err


def _wait_line(proc: subprocess.Popen, text: str, timeout: float = 20) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if text in line:
            return line
    raise AssertionError(f"no line with {text!r} (exit {proc.poll()})")


# -- a worker or agent whose TLS setup the master's does not match ------------------------
def _foreign_flags(tmp_path: Path, name: str) -> list[str]:
    """Certificates from another cluster's CA: neither side trusts the other."""
    from cloudai.security import certs

    other = tmp_path / "other-pki"
    certs.init_pki(other, workers={"worker-b": ["127.0.0.1"]})
    return ["--tls-ca", str(other / "ca.crt"), "--tls-cert", str(other / f"{name}.crt"),
            "--tls-key", str(other / f"{name}.key")]  # fmt: skip


@pytest.mark.docker  # a worker checks its Docker engine before it registers
def test_worker_whose_tls_handshake_fails_at_first_exits_1(tmp_path, token_master):
    """QA pass 7: it said `master ... unreachable, retrying` for ever."""
    _, tokens = token_master
    (tmp_path / "w.token").write_text(tokens["worker-b"] + "\n")
    proc = cloudai("worker", "--id", "worker-b", "--ip", "127.0.0.1", "--port", str(WORKER_PORT),
                   "--master", f"127.0.0.1:{TOKENS_MASTER_PORT}",
                   *_foreign_flags(tmp_path, "worker-b"),
                   "--token-file", str(tmp_path / "w.token"))  # fmt: skip
    _exits_naming_the_handshake(proc, "worker")


def test_agent_whose_tls_handshake_fails_at_first_exits_1(tmp_path, token_master):
    _, tokens = token_master
    (tmp_path / "a.token").write_text(tokens["agent"] + "\n")
    proc = cloudai("agent", "--master", f"127.0.0.1:{TOKENS_MASTER_PORT}",
                   *_foreign_flags(tmp_path, "agent"),
                   "--token-file", str(tmp_path / "a.token"))  # fmt: skip
    _exits_naming_the_handshake(proc, "agent")


def _exits_naming_the_handshake(proc: subprocess.Popen, prog: str) -> None:
    code, err = finished(proc)
    assert code == 1, err
    assert err.startswith(
        f"cloudai {prog}: TLS handshake with the CloudAI master at "
        f"127.0.0.1:{TOKENS_MASTER_PORT} failed: check --tls-ca"
    )
