"""A restarted master makes up no last heartbeat. Heartbeats are kept in memory and
only health changes are stored, so a master loading its workers from the store does
not know when one last beat; it used to show its own start time ("LAST BEAT 1s ago")
for every worker it had not heard from since. Now `cloudai workers` shows the stored
time where the store has it right (a worker that left, or that went silent before the
restart) and "none since master start" where it does not (a worker stored ACTIVE),
and `--json` says the same (`last_heartbeat` 0, `heard_since_master_start` false).
The heartbeat timeout still counts from the master's start for such a worker.

Real master processes on one SQLite file and `cloudai` CLI commands; the workers run
the worker's own Membership (tests/master/leaving_worker.py). Loopback ports as there."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator

import pytest

from cloudai.master.registry import WorkerRegistry
from cloudai.master.store import SQLiteStore
from cloudai.model import WorkerHealth
from tests.faults.faultkit import wait_until
from tests.store.builders import make_worker

from .test_worker_left_explain_restart import TIMEOUT_S, Cluster

pytestmark = pytest.mark.workers  # real worker processes with fixed ids (tests/conftest.py)


@pytest.fixture
def cluster(tmp_path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.close()


def _row(table: str, wid: str) -> str:
    return next(line for line in table.splitlines() if re.match(rf"\W+{wid}\W", line))


def test_workers_not_heard_from_since_a_restart_show_no_made_up_last_beat(cluster):
    c = cluster
    with c.serving():
        for wid in ("alive", "lost", "left"):
            c.start_worker(wid)
        c.stop_worker("left", signal.SIGTERM)
        left_at = wait_until(lambda: c.workers_json()["left"].get("left_at"), 5, "the leave")
        c.stop_worker("lost", signal.SIGKILL)
        health = lambda: c.workers_json()["lost"]["health"]  # noqa: E731
        wait_until(lambda: "INACTIVE" in health(), 3 * TIMEOUT_S, "lost to time out")
        lost_beat = c.workers_json()["lost"]["last_heartbeat"]
    c.stop_worker("alive", signal.SIGKILL)  # it beat until the master stopped
    started = time.time()
    with c.serving():  # the same store
        ws = c.workers_json()
        assert not any(w["heard_since_master_start"] for w in ws.values()), ws
        assert ws["alive"]["last_heartbeat"] == 0, ws["alive"]  # not known
        assert ws["lost"]["last_heartbeat"] == pytest.approx(lost_beat, abs=1e-3)
        assert ws["left"]["last_heartbeat"] == pytest.approx(left_at, abs=1e-3)
        table = c.cli("workers")
        assert "none since master start" in _row(table, "alive"), table
        for wid in ("lost", "left"):
            assert re.search(r"\d+s ago", _row(table, wid)), table

        c.start_worker("alive")  # heard from: a real time again
        alive = c.workers_json()["alive"]
        assert alive["heard_since_master_start"] and alive["last_heartbeat"] > started, alive
        assert re.search(r"\ds ago", _row(c.cli("workers"), "alive")), c.cli("workers")


def test_a_worker_loaded_from_the_store_times_out_a_full_timeout_after_the_load(tmp_path):
    store = SQLiteStore(tmp_path / "m.db")
    try:
        store.upsert_worker(make_worker("w1"))  # stored ACTIVE, last heard at 100.0
        registry = WorkerRegistry(store, timeout_s=0.5)
        [entry] = registry.all()
        assert (entry.record.last_heartbeat, entry.registered) == (0.0, False)
        assert registry.expire() == []  # the timeout counts from the load, not from 0
        time.sleep(0.6)
        assert registry.expire() == ["w1"]
        stored = store.get_worker("w1")
        # Stored INACTIVE, and with no made-up time: when it last beat is not known.
        assert (stored.health, stored.last_heartbeat) == (WorkerHealth.INACTIVE, 0.0)
    finally:
        store.close()
