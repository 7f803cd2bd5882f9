"""A master whose store fails (here: a file-size limit, as on a full disk) is still
running: clients say that its store failed, not that it is unreachable; the master
logs the error; nothing acknowledged is lost, and it serves again once writes work.

The limit is RLIMIT_FSIZE on the real master process (Python ignores SIGXFSZ, so the
write fails with EFBIG and SQLite reports a disk I/O error); lifting it with prlimit
is the operator freeing disk space."""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import pytest

from tests.ports import free_port

from .test_startup_errors import serving_master

LIMIT_BYTES = 400_000


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, resource.RLIM_INFINITY))


def cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "cloudai", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def limited_master(tmp_path):
    port = free_port()
    with serving_master(port, tmp_path / "m.db", preexec_fn=_limit_file_size) as proc:
        yield proc, f"127.0.0.1:{port}"


def test_a_failing_store_is_named_and_nothing_acknowledged_is_lost(limited_master):
    proc, address = limited_master
    big = "x" * 20_000  # each task row is about this large: the limit is hit in ~20
    acked, failed = [], None
    for _ in range(60):
        out = cli("submit", "alpine", "--master", address, "--json", "--", "echo", big)
        if out.returncode != 0:
            failed = out
            break
        acked.append(json.loads(out.stdout)["id"])
    assert failed is not None, "the file-size limit was never reached"
    assert acked, "the limit was reached before any task was stored"
    line = failed.stderr.strip()
    assert failed.returncode == 2 and "\n" not in line, failed
    assert f"the CloudAI master at {address} cannot use its store" in line, line
    assert "SQLite write failed" in line and "cannot reach" not in line, line

    # The operator frees space: the same master serves again and has every task it
    # acknowledged.
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
    out = cli("submit", "alpine", "--master", address, "--json", "--", "echo", "hi")
    assert out.returncode == 0, out
    acked.append(json.loads(out.stdout)["id"])
    listed = cli("tasks", "--master", address, "--json")
    assert listed.returncode == 0, listed
    assert sorted(t["id"] for t in json.loads(listed.stdout)) == sorted(acked)

    proc.terminate()
    log, _ = proc.communicate(timeout=30)
    assert "ERROR SubmitTask failed: SQLite write failed" in log, log
