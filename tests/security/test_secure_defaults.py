"""Secure by default, except on loopback: real `cloudai` processes, no Docker needed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from cloudai.config import MasterSettings, WorkerSettings
from cloudai.errors import ConfigError
from cloudai.security.setup import for_master, for_worker
from cloudai.security.tls import is_loopback


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cloudai(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
    return subprocess.Popen(
        [sys.executable, "-m", "cloudai", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**clean, **(env or {})},
        **kw,
    )


def test_master_on_all_interfaces_without_tls_refuses_to_start(tmp_path):
    proc = cloudai(
        "master", "--host", "0.0.0.0", "--port", str(free_port()), "--no-console",
        "--db", f"sqlite:///{tmp_path / 'm.db'}",
    )  # fmt: skip
    out, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "refusing to serve on 0.0.0.0 without TLS and tokens" in err
    assert "--insecure" in err and "Traceback" not in err
    assert not (tmp_path / "m.db").exists()  # refused before touching the store


def test_master_with_insecure_starts_and_warns_loudly(tmp_path):
    proc = cloudai(
        "master", "--host", "0.0.0.0", "--port", str(free_port()), "--no-console",
        "--db", f"sqlite:///{tmp_path / 'm.db'}", "--insecure",
    )  # fmt: skip
    try:
        line = proc.stdout.readline()  # the "listening" line comes after the warning
        assert "listening on 0.0.0.0" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "WARNING: --insecure" in err and "WITHOUT TLS and tokens" in err
    assert proc.returncode in (0, -signal.SIGTERM)  # the handler is set just after "listening"


def test_master_default_host_is_loopback():
    assert MasterSettings(_env_file=None).host == "127.0.0.1"  # type: ignore[call-arg]


def test_master_needs_both_tls_and_tokens_off_loopback(tmp_path, pki):
    tls = {
        "tls_ca": str(pki.root / "ca.crt"),
        "tls_cert": str(pki.root / "master.crt"),
        "tls_key": str(pki.root / "master.key"),
    }
    tokens = tmp_path / "tokens.json"
    tokens.write_text('{"tokens": {}}')
    for given in ({}, tls, {"tokens": str(tokens)}):
        s = MasterSettings(_env_file=None, host="0.0.0.0", **given)  # type: ignore[call-arg]
        with pytest.raises(ConfigError):
            for_master(s, warn=lambda m: None)
    s = MasterSettings(_env_file=None, host="0.0.0.0", tokens=str(tokens), **tls)  # type: ignore
    assert for_master(s, warn=pytest.fail).summary == "mTLS, tokens"


def test_worker_with_a_public_ip_and_no_tls_refuses_to_start():
    # 192.0.2.0/24 is TEST-NET-1: nothing is ever sent there (it refuses before binding).
    proc = cloudai("worker", "--id", "w1", "--ip", "192.0.2.10", "--port", "0")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "refusing to serve on 0.0.0.0 (--ip 192.0.2.10) without TLS" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "ip, insecure, bind",
    [("127.0.0.1", False, "127.0.0.1"), ("localhost", False, "localhost"), ("::1", False, "::1"),
     ("192.0.2.10", True, "0.0.0.0")],
)  # fmt: skip
def test_worker_binds_loopback_ip_only(ip, insecure, bind):
    s = WorkerSettings(_env_file=None, ip=ip, insecure=insecure)  # type: ignore[call-arg]
    warnings: list[str] = []
    _, got = for_worker(s, warnings.append)
    assert got == bind
    assert bool(warnings) == insecure


@pytest.mark.parametrize(
    "host, loopback",
    [("127.0.0.1", True), ("127.1.2.3", True), ("localhost", True), ("::1", True),
     ("[::1]", True), ("0.0.0.0", False), ("::", False), ("10.0.0.1", False),
     ("example.com", False), ("", False)],
)  # fmt: skip
def test_is_loopback(host, loopback):
    assert is_loopback(host) == loopback


def test_cli_master_with_missing_tls_file_is_one_line(tmp_path):
    proc = cloudai(
        "master", "--port", str(free_port()), "--no-console", "--tls-ca", "/nonexistent/ca.crt",
        "--tls-cert", "/nonexistent/m.crt", "--tls-key", "/nonexistent/m.key",
        "--db", f"sqlite:///{tmp_path / 'm.db'}",
    )  # fmt: skip
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "cannot read --tls-ca /nonexistent/ca.crt" in err and "Traceback" not in err


def test_client_against_tls_master_without_certificate_says_so(tmp_path, pki):
    """The CLI's one-line error names the TLS options, and exits 2 (unreachable)."""
    from tests.security.seckit import start_secure_master

    cluster = start_secure_master(tmp_path, pki)
    try:
        proc = cloudai("status", "--master", cluster.target)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 2 and "--tls-ca" in err and err.count("\n") == 1
        env = {
            "CLOUDAI_TLS_CA": str(pki.root / "ca.crt"),
            "CLOUDAI_TLS_CERT": str(pki.root / "admin.crt"),
            "CLOUDAI_TLS_KEY": str(pki.root / "admin.key"),
        }
        proc = cloudai("status", "--master", cluster.target, env=env)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 1 and "missing token" in err
        token = tmp_path / "admin.token"
        token.write_text(cluster.tokens["admin"] + "\n")
        proc = cloudai("--token-file", str(token), "status", "--json", "--master", cluster.target,
                       env=env)  # fmt: skip
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert cluster.tokens["admin"] not in out + err
    finally:
        cluster.close()


def test_master_never_presents_cloudai_token_to_workers(tmp_path):
    """An admin token in the master's environment (for the CLI) must not reach workers."""
    s = MasterSettings(_env_file=None, token="cai_admin-token-of-the-operator-000")  # type: ignore
    assert for_master(s, warn=pytest.fail).transport.token == ""
    token = tmp_path / "master.token"
    token.write_text("cai_master-role-token-0000000000\n")
    s = MasterSettings(_env_file=None, dispatch_token_file=str(token))  # type: ignore
    assert for_master(s, warn=pytest.fail).transport.token == "cai_master-role-token-0000000000"
