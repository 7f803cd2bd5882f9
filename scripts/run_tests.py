#!/usr/bin/env python3
"""Run the whole test suite as `make test` (and so CI) does, in two phases.

    python scripts/run_tests.py            # the whole suite
    python scripts/run_tests.py -x -k qa6  # extra arguments go to every pytest run

Phase 1 runs two pytest processes side by side, each printing with its own prefix:
- `cluster`: the tests that drive the real Docker engine or start real worker processes
  (markers `docker` and `workers`), one after another. Two of them must never run at
  once: many give their workers fixed ids ("worker-1", "w1"), and a worker adopts,
  reports and removes the containers that carry its id.
- `rest`: everything else (simulator, units, stores, in-process gRPC).
Most of the cluster tests wait on containers and timeouts, most of the rest compute,
so together they take about the time of the longer one.

Phase 2 runs the tests marked `serial` alone: those that measure timing under load
(the 60 s heartbeat load, the chaos soak) and the dockerd restarts, which stop every
container on the machine (run last, see tests/faults/conftest.py).

Each phase-1 process gets half of the loopback port range the tests draw fixed ports
from (CLOUDAI_TEST_PORTS, tests/ports.py) and its own pytest cache folder. Both phases
always run; the exit status is 1 if any run failed. Plain `pytest` runs the same tests
in one process, in about twice the time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.ports import port_range  # noqa: E402  (the one parser of CLOUDAI_TEST_PORTS)

CLUSTER = "docker or workers"
NO_TESTS = 5  # pytest's exit status when a filter leaves nothing to run


@dataclass
class Run:
    name: str
    marks: str
    ports: str
    status: int = -1
    summary: str = ""
    seconds: float = 0.0


def port_halves() -> tuple[str, str, str]:
    """The whole test port range, and its two halves for the two phase-1 processes."""
    ports = port_range()
    lo, hi = ports.start, ports.stop - 1
    mid = (lo + hi) // 2
    return f"{lo}-{hi}", f"{lo}-{mid}", f"{mid + 1}-{hi}"


def start(run: Run, extra: list[str], lock: threading.Lock) -> threading.Thread:
    """Start pytest for `run` and a thread that prints its lines with a prefix."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", run.marks]
    cmd += ["-o", f"cache_dir=.pytest_cache/{run.name}", *extra]
    env = {**os.environ, "CLOUDAI_TEST_PORTS": run.ports, "PYTHONUNBUFFERED": "1"}
    began = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
    )

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                run.summary = line.strip().strip("=").strip()
            with lock:
                print(f"[{run.name}] {line}", end="", flush=True)
        run.status = proc.wait()
        run.seconds = time.monotonic() - began

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return thread


def phase(title: str, runs: list[Run], extra: list[str]) -> None:
    print(f"== {title}: " + ", ".join(f"{r.name} (-m '{r.marks}')" for r in runs), flush=True)
    lock = threading.Lock()
    for thread in [start(r, extra, lock) for r in runs]:
        thread.join()


def main(extra: list[str]) -> int:
    whole, first, second = port_halves()
    parallel = [
        Run("cluster", f"({CLUSTER}) and not serial", first),
        Run("rest", f"not ({CLUSTER}) and not serial", second),
    ]
    alone = [Run("serial", "serial", whole)]
    began = time.monotonic()
    try:
        phase("phase 1 of 2, side by side", parallel, extra)
        phase("phase 2 of 2, alone", alone, extra)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    print(f"== test suite: {time.monotonic() - began:.0f} s in all")
    for r in parallel + alone:
        print(f"   {r.name:8} exit {r.status}  {r.seconds:6.0f} s  {r.summary}")
    return 0 if all(r.status in (0, NO_TESTS) for r in parallel + alone) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
