from __future__ import annotations

import pytest

from cloudai.master.registry import WorkerRegistry
from cloudai.master.store import SQLiteStore
from cloudai.master.tasks import TaskManager
from cloudai.model import Resources, WorkerRecord

GiB = 1024**3


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "m.db")
    yield s
    s.close()


@pytest.fixture
def h(tmp_path):
    """An in-process master with real gRPC over loopback (harness.py); a test file may
    define its own `h` with other settings."""
    from .harness import make_harness

    harness = make_harness(tmp_path)
    yield harness
    harness.close()


@pytest.fixture
def registry(store):
    return WorkerRegistry(store, timeout_s=0.3, sample_s=0.0)


@pytest.fixture
def changes():
    return []


@pytest.fixture
def tasks(store, registry, changes):
    return TaskManager(store, registry, max_worker_losses=3, on_change=lambda: changes.append(1))


def add_worker(registry, wid="w1", cpu=4.0, mem=8 * GiB, gpu=0.0, labels=None):
    rec = WorkerRecord(
        id=wid,
        address=f"127.0.0.1:{50000 + len(wid)}",
        capacity=Resources(cpu, mem, gpu),
        labels=labels or {},
    )
    registry.register(rec, [], [], None)
    return rec
