"""scripts/run_tests.py, the runner behind `make test` and CI: which process and phase
runs which test, with which ports, and its exit status. It runs here on a small test
file of its own, with real pytest processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RUNNER = Path(__file__).resolve().parents[1] / "scripts" / "run_tests.py"

SAMPLE = """
import os
import pytest

def note(name):
    with open(os.environ["RUNNER_NOTES"], "a") as f:
        f.write(f"{name} {os.environ['CLOUDAI_TEST_PORTS']}\\n")

@pytest.mark.docker
def test_docker():
    note("docker")

@pytest.mark.workers
def test_workers():
    note("workers")

def test_plain():
    note("plain")
    assert os.environ.get("RUNNER_FAIL") != "1"

@pytest.mark.serial
def test_serial():
    note("serial")

@pytest.mark.docker
@pytest.mark.serial
def test_docker_serial():
    note("docker_serial")
"""


def _run(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, dict[str, str]]:
    sample = tmp_path / "test_sample.py"
    sample.write_text(SAMPLE)
    notes = tmp_path / "notes.txt"
    env = {**os.environ, "RUNNER_NOTES": str(notes), "CLOUDAI_TEST_PORTS": "30000-30009", **env}
    done = subprocess.run(
        [sys.executable, str(RUNNER), "-p", "no:cacheprovider", str(sample)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    ran = dict(line.split() for line in notes.read_text().splitlines())
    return done, ran


def test_each_test_runs_once_in_its_process_with_its_half_of_the_ports(tmp_path):
    done, ran = _run(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ran == {
        "docker": "30000-30004",  # the cluster process
        "workers": "30000-30004",
        "plain": "30005-30009",  # the rest, beside it
        "serial": "30000-30009",  # alone, after both
        "docker_serial": "30000-30009",
    }
    lines = done.stdout.splitlines()
    assert any(line.startswith("[cluster] ") for line in lines)
    assert any(line.startswith("[rest] ") for line in lines)
    assert any(line.startswith("[serial] ") for line in lines)
    assert "2 passed" in next(line for line in lines if line.lstrip().startswith("cluster"))


def test_a_failure_fails_the_run_and_the_serial_phase_still_runs(tmp_path):
    done, ran = _run(tmp_path, RUNNER_FAIL="1")
    assert done.returncode == 1
    assert set(ran) == {"docker", "workers", "plain", "serial", "docker_serial"}
    rest = next(line for line in done.stdout.splitlines() if line.lstrip().startswith("rest "))
    assert "exit 1" in rest and "1 failed" in rest
