"""The real Docker daemon, stopped and started again the way scripts/setup.sh starts
it (`setsid nohup dockerd ${CLOUDAI_DOCKERD_ARGS} >>/var/log/cloudai-dockerd.log`).

Before stopping it, the daemon's command line, environment and working directory are
read from /proc, so the daemon that comes back is the one that went away. Every wait
is bounded, and `ensure_up()` starts a daemon that is not running again: tests call
it from their teardown, so a failed test never leaves the machine without Docker.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from .faultkit import health

PID_FILE = Path("/var/run/docker.pid")
LOG = Path("/var/log/cloudai-dockerd.log")
SOCKET = "/var/run/docker.sock"
LIVE_RESTORE = "--live-restore"


@dataclass(frozen=True)
class Launch:
    """How the running dockerd was started: what is needed to start it the same way."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    log: str  # where its stdout goes ("" when unknown)


def running_pid() -> int:
    """The live dockerd's pid, or 0."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(PID_FILE.read_text().strip())
        if _is_dockerd(pid):
            return pid
    out = subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout
    for word in out.split():
        if _is_dockerd(int(word)):
            return int(word)
    return 0


def _is_dockerd(pid: int) -> bool:
    """Alive (not a zombie) and named dockerd."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    return name == "dockerd" and stat[stat.rindex(")") + 2] not in "ZX"


def read_launch(pid: int) -> Launch:
    proc = Path(f"/proc/{pid}")
    argv = _argv(pid)
    env = {}
    for item in proc.joinpath("environ").read_bytes().split(b"\0"):
        key, sep, value = item.decode(errors="replace").partition("=")
        if sep:
            env[key] = value
    log = ""
    with contextlib.suppress(OSError):
        log = os.readlink(proc / "fd" / "1")
    cwd = os.readlink(proc / "cwd")
    # A daemon started from a directory that was removed since (an earlier CI clone)
    # reads as "<path> (deleted)": start it again from / instead.
    return Launch(argv=argv, env=env, cwd=cwd if os.path.isdir(cwd) else "/", log=log)


def answers(timeout: float = 5.0) -> bool:
    """Whether the engine answers `docker info` now."""
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


class Daemon:
    """The machine's dockerd, as scripts/setup.sh started it."""

    def __init__(self) -> None:
        pid = running_pid()
        if not pid:
            raise RuntimeError("no dockerd is running")
        self.launch = read_launch(pid)

    @staticmethod
    def why_not_restartable() -> str:
        """Why this test must not restart the daemon here ("" when it may)."""
        if os.geteuid() != 0:
            return "not root: cannot stop and start dockerd"
        pid = running_pid()
        if not pid:
            return "no dockerd process is running"
        if Path("/run/systemd/system").is_dir() and _is_systemd_unit(pid):
            return "dockerd runs under systemd, not started by scripts/setup.sh"
        try:
            log = os.readlink(f"/proc/{pid}/fd/1")
        except OSError:
            log = ""
        if log != str(LOG):
            return f"dockerd was not started by scripts/setup.sh (its output goes to {log!r})"
        return ""

    def stop(self, timeout: float = 60.0) -> float:
        """SIGTERM, then wait for the process to end and the socket to stop answering.
        Returns the seconds the process took to exit."""
        began = time.monotonic()
        pid = running_pid()
        if pid:
            os.kill(pid, signal.SIGTERM)
            _wait(lambda: not _is_dockerd(pid), timeout, f"dockerd {pid} to exit", every=0.05)
        took = time.monotonic() - began
        _wait(lambda: not answers(2.0), 10, "the Docker socket to stop answering")
        return took

    def start(self, timeout: float = 60.0, extra: Sequence[str] = ()) -> float:
        """Start dockerd as setup.sh does, plus the flags in `extra`, and wait until
        `docker info` answers. Returns the seconds it took."""
        began = time.monotonic()
        words = [*self.launch.argv, *(a for a in extra if a not in self.launch.argv)]
        argv = " ".join(shlex.quote(a) for a in words)
        log = shlex.quote(self.launch.log or str(LOG))
        # The shell exits at once: the daemon is nobody's child, as after setup.sh.
        subprocess.run(
            ["sh", "-c", f"setsid nohup {argv} >>{log} 2>&1 </dev/null &"],
            env=self.launch.env,
            cwd=self.launch.cwd,
            check=True,
            timeout=10,
        )
        _wait(answers, timeout, "`docker info` to answer after starting dockerd", every=0.2)
        return time.monotonic() - began

    def ensure_up(self, timeout: float = 60.0) -> None:
        """Start the daemon again unless it answers (teardown after any failure)."""
        if answers():
            return
        if not running_pid():
            self.start(timeout)
        else:
            _wait(answers, timeout, "`docker info` to answer", every=0.5)

    def restore(self, timeout: float = 60.0) -> None:
        """Leave the daemon as it was found (teardown): one running with other flags
        (a test's `--live-restore`) is stopped and started with its own again."""
        pid = running_pid()
        with contextlib.suppress(OSError):  # it exited meanwhile: nothing to stop
            if pid and _argv(pid) != self.launch.argv:
                self.stop(timeout)
        self.ensure_up(timeout)


def _argv(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [a.decode() for a in raw.split(b"\0") if a]


def _is_systemd_unit(pid: int) -> bool:
    try:
        return ".service" in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


def _wait(predicate, timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


# How long a test waits for other people's containers to end before it restarts dockerd.
QUIET_WAIT_S = 120.0


def wait_for_quiet_engine(docker_client) -> int:
    """On a shared machine other suites may be running containers: wait (bounded) until
    none runs. Returns how many still run."""
    deadline = time.time() + QUIET_WAIT_S
    while True:
        running = len(docker_client.api.containers())
        if not running or time.time() >= deadline:
            return running
        time.sleep(2)


class HealthWatch:
    """Polls the master's view of one worker 4 times a second in the background and
    keeps every health other than ACTIVE it sees."""

    def __init__(self, cluster, worker_id: str) -> None:
        self.cluster, self.worker_id = cluster, worker_id
        self.seen: list[tuple[float, str]] = []
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                h = health(self.cluster.workers()[self.worker_id])
            except Exception as err:  # noqa: BLE001 - a failed poll is itself a finding
                h = f"poll failed: {err!r}"
            self.polls += 1
            if h != "ACTIVE":
                self.seen.append((time.time(), h))


def ensure_restartable(docker_client) -> None:
    """Fail (in CI) or skip (elsewhere) a test that cannot restart the real dockerd;
    on a shared machine, first wait (bounded) for other people's containers to end."""
    why = Daemon.why_not_restartable()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"cannot restart the real dockerd in CI: {why}")
        pytest.skip(f"real dockerd restart not possible here: {why}")
    busy = wait_for_quiet_engine(docker_client)
    if busy and not os.environ.get("CI"):
        pytest.skip(
            f"{busy} container(s) of someone else kept running for {QUIET_WAIT_S:.0f}s: "
            "restarting dockerd now would kill them"
        )
