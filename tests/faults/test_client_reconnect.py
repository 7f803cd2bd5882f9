"""`submit --wait` / `submit --follow` ride out a master restart: a real master
process SIGKILLed and started again on the same store while the client waits. The
client retries for a bounded time (CLOUDAI_RECONNECT), resumes the log stream
without printing a line twice, and exits with the task's own code; a master that
stays away past the bound still gives exit 2."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from .faultkit import BASE_IMAGE, wait_until

pytestmark = [pytest.mark.docker]
LINES = [f"line {i}" for i in range(1, 5)]


def _cluster(make_cluster):
    """One worker; the master's port, from the test range, stays the same across its
    restarts (faultkit.FaultCluster)."""
    c = make_cluster()
    c.start(1)
    return c


def _submit(c, script: str, *flags: str, reconnect: str = "60") -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cloudai", "submit", BASE_IMAGE, "--master", c.address,
           "--cpu", "0.1", "--memory", "32m", *flags, "--", "sh", "-c", script]  # fmt: skip
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**c.env, "CLOUDAI_RECONNECT": reconnect, "PYTHONUNBUFFERED": "1"},
    )


def _running(c) -> None:
    wait_until(lambda: c.tasks(["RUNNING"]), 60, "the task to run", every=0.2)


def _restart_master(c, away: float) -> None:
    c.signal("master", signal.SIGKILL)
    time.sleep(away)
    c.start_master()


def _read_until(proc: subprocess.Popen, line: str) -> list[str]:
    """stdout's lines up to and including `line`."""
    assert proc.stdout is not None
    seen: list[str] = []
    while not seen or seen[-1] != line:
        text = proc.stdout.readline()
        assert text, f"stdout ended before {line!r}: {seen}"
        seen.append(text.rstrip("\n"))
    return seen


def _check_rode_out(proc: subprocess.Popen, err: str) -> None:
    assert proc.returncode == 5, err  # the task's own exit code
    assert "unreachable; retrying for up to 60s" in err, err
    assert "cloudai: reconnected" in err, err
    assert "cannot reach" not in err and "lost the connection" not in err, err


def test_wait_rides_out_a_master_restart_and_exits_with_the_task_code(make_cluster):
    c = _cluster(make_cluster)
    proc = _submit(c, "sleep 6; exit 5", "--wait")
    _running(c)
    _restart_master(c, away=2)
    out, err = proc.communicate(timeout=60)
    _check_rode_out(proc, err)
    assert "FAILED" in out and "exit code    5" in out


def test_follow_resumes_a_running_task_without_repeating_lines(make_cluster):
    c = _cluster(make_cluster)
    proc = _submit(c, "echo line 1; echo line 2; sleep 4; echo line 3; echo line 4; exit 5",
                   "--follow")  # fmt: skip
    before = _read_until(proc, "line 2")
    _restart_master(c, away=1)  # back while the task still runs: a full replay
    out, err = proc.communicate(timeout=60)
    _check_rode_out(proc, err)
    printed = [x for x in [*before, *out.splitlines()] if x.startswith("line ")]
    assert printed == LINES


def test_follow_resumes_a_task_that_ended_while_the_master_was_away(make_cluster):
    c = _cluster(make_cluster)
    proc = _submit(c, "echo line 1; echo line 2; sleep 2; echo line 3; echo line 4; exit 5",
                   "--follow")  # fmt: skip
    before = _read_until(proc, "line 2")
    _restart_master(c, away=5)  # the container ends meanwhile
    out, err = proc.communicate(timeout=60)
    _check_rode_out(proc, err)
    printed = [x for x in [*before, *out.splitlines()] if x.startswith("line ")]
    assert printed == LINES


def test_wait_gives_up_with_exit_2_when_the_master_stays_away(make_cluster):
    c = _cluster(make_cluster)
    proc = _submit(c, "sleep 60", "--wait", reconnect="2")
    _running(c)
    c.signal("master", signal.SIGKILL)
    began = time.monotonic()
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - began
    assert proc.returncode == 2, err
    assert f"master at {c.address} unreachable; retrying for up to 2s" in err
    assert f"cannot reach the CloudAI master at {c.address}" in err
    assert "(gave up after 2s)" in err and "reconnected" not in err
    assert 2 <= took < 15
