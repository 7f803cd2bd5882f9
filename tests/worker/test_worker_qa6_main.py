"""QA pass 6 on `cloudai worker` as a real process: setups that can never work end at
start with one line and exit 1, before the worker serves or registers. A --network the
Docker engine lacks used to register ACTIVE and fail every task with docker_error; an
invalid --id or --label, or a registration the master finds invalid (an --ip with an
underscore), used to be retried forever."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest

from tests.worker.fake_master import FakeMaster

SCRIPT = """
from cloudai.config import WorkerSettings
from cloudai.worker.main import run_worker
settings = WorkerSettings(_env_file=None, id="{id}", ip="127.0.0.1", port=0,
                          master="127.0.0.1:{port}", heartbeat_interval=0.2,
                          network_mode="{network}", labels={labels})
raise SystemExit(run_worker(settings))
"""
NETWORK = "cloudai-qa6-no-such-network"


def run_worker(master: FakeMaster, **fields: object) -> subprocess.CompletedProcess[str]:
    values: dict[str, object] = {"id": "wqa6", "network": "bridge", "labels": {}}
    values.update(fields)
    port = master.start()
    try:
        return subprocess.run(
            [sys.executable, "-c", SCRIPT.format(port=port, **values)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        master.stop()


class StrictMaster(FakeMaster):
    """Answers registrations as the real master does an address it cannot take."""

    def RegisterWorker(self, request, context):  # noqa: N802 - gRPC naming
        super().RegisterWorker(request, context)
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "address must be host:port")


@pytest.mark.docker
def test_run_worker_exits_1_when_its_task_network_does_not_exist() -> None:
    master = FakeMaster()
    proc = run_worker(master, network=NETWORK)
    assert proc.returncode == 1, proc
    assert proc.stderr.startswith(f"cloudai worker: Docker network '{NETWORK}' not found on ")
    assert proc.stderr.endswith(
        f"; create it (docker network create {NETWORK}) or pick another --network\n"
    )
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "serving on" not in proc.stdout and master.registrations == []


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        ({"id": "bad id"}, "invalid worker id 'bad id': use 1-63 letters, digits"),
        ({"labels": {"bad key": "v"}}, "invalid label key 'bad key': use e.g. zone"),
    ],
)
def test_run_worker_exits_1_on_an_id_or_label_the_master_would_refuse(
    fields: dict[str, object], line: str
) -> None:
    master = FakeMaster()
    proc = run_worker(master, **fields)
    assert proc.returncode == 1, proc
    assert proc.stderr.startswith(f"cloudai worker: {line}") and proc.stderr.count("\n") == 1
    assert "serving on" not in proc.stdout and master.registrations == []


@pytest.mark.docker
def test_run_worker_exits_1_when_the_master_finds_its_registration_invalid() -> None:
    master = StrictMaster()
    proc = run_worker(master)
    assert proc.returncode == 1, proc
    assert proc.stderr == (
        "cloudai worker: the master refused this worker's registration: address must be host:port\n"
    )
    assert len(master.registrations) == 1  # not retried
