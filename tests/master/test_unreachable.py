"""A worker whose heartbeats arrive but that the master cannot call: it is marked
unreachable, left out of placement, probed, and used again once it answers."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import pytest

from cloudai.cli import views
from cloudai.convert import spec_to_pb
from cloudai.master import dispatcher, retry
from cloudai.master import registry as registry_mod
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_worker_pb2 as mw
from tests.ports import free_port

from .conftest import add_worker
from .harness import FakeWorkerServicer, Harness, make_harness, serve_worker
from .test_tasks import place, spec


# -- the registry's mark --------------------------------------------------------------
@pytest.fixture
def clock(monkeypatch):
    """The registry's time, moved by hand."""
    now = [1_000_000.0]
    monkeypatch.setattr(registry_mod, "time", SimpleNamespace(time=lambda: now[0]))
    return now


def test_a_mark_doubles_its_cool_down_per_failed_check_up_to_the_cap(registry, clock):
    add_worker(registry, "w1")
    cooldowns = []
    for _ in range(6):
        mark, _ = registry.mark_unreachable("w1", "UNAVAILABLE: refused")
        cooldowns.append(mark.until - clock[0])
        clock[0] = mark.until  # the cool-down ends: the next failure is a new check
    assert cooldowns == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
    mark = registry.get("w1").unreachable
    assert (mark.since, mark.failures, mark.error) == (1_000_000.0, 6, "UNAVAILABLE: refused")


def test_failures_within_a_cool_down_keep_it_and_the_latest_error(registry, clock):
    add_worker(registry, "w1")
    first, new = registry.mark_unreachable("w1", "UNAVAILABLE: a")
    assert new
    clock[0] += 1
    again, new = registry.mark_unreachable("w1", "DEADLINE_EXCEEDED: b")
    assert not new and (again.until, again.failures) == (first.until, 1)
    assert again.error == "DEADLINE_EXCEEDED: b"
    kept, _ = registry.mark_unreachable("w1")  # a failed probe keeps the last error
    assert kept.error == "DEADLINE_EXCEEDED: b"


def test_mark_reachable_clears_and_says_whether_it_was_marked(registry, clock):
    add_worker(registry, "w1")
    assert not registry.mark_reachable("w1")
    registry.mark_unreachable("w1", "UNAVAILABLE")
    assert registry.unreachable() == [("w1", registry.get("w1").unreachable)]
    assert registry.mark_reachable("w1")
    assert registry.get("w1").unreachable is None and registry.unreachable() == []
    assert not registry.mark_reachable("w1")
    # A failed probe renews a mark but never sets one on a worker reached meanwhile.
    assert registry.mark_unreachable("w1", renew=True) == (None, False)
    assert registry.get("w1").unreachable is None


def test_a_new_registration_clears_the_mark_and_is_a_cluster_change(registry, clock):
    rec = add_worker(registry, "w1")
    registry.mark_unreachable("w1", "UNAVAILABLE")
    assert registry.register(rec, [], [], None)  # the scheduler is woken
    assert registry.get("w1").unreachable is None


def test_a_failure_at_an_address_the_worker_left_is_ignored(registry, clock):
    rec = add_worker(registry, "w1")
    assert registry.mark_unreachable("w1", "UNAVAILABLE", "10.0.0.9:1") == (None, False)
    assert registry.mark_unreachable("w1", "UNAVAILABLE", rec.address)[1]
    assert registry.mark_unreachable("ghost", "UNAVAILABLE") == (None, False)


def test_placement_refuses_an_unpinned_task_but_sends_a_pinned_one(tasks, registry):
    add_worker(registry, "w1")
    registry.mark_unreachable("w1", "UNAVAILABLE: connection refused")
    free = tasks.submit(spec())
    placed, reason = tasks.commit_placement(free.id, 0, "w1", None)
    assert placed is None
    assert reason.startswith("worker 'w1' is unreachable (last dispatch failed: UNAVAILABLE")
    assert "retrying it in 5s" in reason
    pinned = tasks.submit(spec(pinned_worker="w1"))
    assert place(tasks, pinned.id).worker_id == "w1"


# -- over real gRPC ---------------------------------------------------------------------
@pytest.fixture
def h(tmp_path, monkeypatch):
    monkeypatch.setattr(retry, "UNREACHABLE_BASE_S", 0.5)
    monkeypatch.setattr(retry, "UNREACHABLE_CAP_S", 1.0)
    monkeypatch.setattr(dispatcher, "PROBE_INTERVAL_S", 0.1)
    monkeypatch.setattr(dispatcher, "PROBE_TIMEOUT_S", 0.5)
    # No agent: the master places by fallback at once.
    harness = make_harness(tmp_path, agent_timeout=0.05)
    yield harness
    harness.close()


def register_at(h: Harness, worker_id: str, port: int) -> None:
    """A worker that registers and heartbeats, but at whose address nothing listens."""
    req = mw.RegisterWorkerRequest(
        worker_id=worker_id,
        address=f"127.0.0.1:{port}",
        capacity=pb.Resources(cpu=64, memory_bytes=256 * 1024**3),
        hostname="test",
    )
    assert h.mw.RegisterWorker(req, timeout=5).accepted
    beat = mw.HeartbeatRequest(worker_id=worker_id, telemetry=pb.Telemetry(cpu_percent=1))
    assert h.mw.SendHeartbeat(beat, timeout=5).known


def submit(h: Harness) -> str:
    req = cpb.SubmitTaskRequest(spec=spec_to_pb(spec()))
    return h.cluster.SubmitTask(req, timeout=5).task_id


def get(h: Harness, task_id: str) -> pb.Task:
    return h.cluster.GetTask(cpb.GetTaskRequest(task_id=task_id), timeout=5)


def wait_for(check, timeout: float = 10.0):
    deadline = time.time() + timeout
    while not (result := check()):
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)
    return result


def status(h: Harness) -> cpb.StatusResponse:
    return h.cluster.GetStatus(cpb.StatusRequest(), timeout=5)


def workers(h: Harness) -> dict[str, pb.WorkerInfo]:
    return {w.id: w for w in h.cluster.ListWorkers(cpb.ListWorkersRequest(), timeout=5).workers}


def fail_first_dispatch(h: Harness, worker_id: str) -> str:
    """Submit a task; once its dispatch to the unreachable worker has failed, return it."""
    first = submit(h)
    wait_for(lambda: any(a.worker_id == worker_id for a in get(h, first).attempts))
    wait_for(lambda: status(h).workers_unreachable == 1)
    return first


def test_new_tasks_skip_an_unreachable_worker_for_a_reachable_one(h):
    register_at(h, "bad", free_port())
    first = fail_first_dispatch(h, "bad")
    good = h.add_worker("good", cpu=4)
    second = submit(h)
    wait_for(lambda: len(good.servicer.assigned) == 2)
    assert {t for t, _ in good.servicer.assigned} == {first, second}
    assert [a.worker_id for a in get(h, second).attempts] == ["good"]


def test_an_unreachable_worker_is_shown_left_out_and_used_once_it_answers(h, caplog):
    caplog.set_level(logging.INFO, logger="cloudai.master")
    port = free_port()
    register_at(h, "w1", port)
    first = fail_first_dispatch(h, "w1")
    second = submit(h)
    text = wait_for(lambda: _explained_unreachable(h, second))
    assert "worker 'w1' is unreachable (last dispatch failed: UNAVAILABLE" in text
    assert get(h, second).attempt == 0  # never placed on w1
    assert status(h).workers_unreachable == 1
    assert "1 unreachable" in views.status_panel(status(h))
    info = workers(h)["w1"]
    assert info.unreachable_error.startswith("UNAVAILABLE")
    assert info.unreachable_since <= time.time() <= info.unreachable_until + 5
    assert "ACTIVE (unreachable" in views.workers_table([info])
    assert '"unreachable_error": "UNAVAILABLE' in views.to_json([info])
    # Once its cool-down ends the prober finds it still dead and starts another.
    wait_for(lambda: workers(h)["w1"].unreachable_until > info.unreachable_until)
    assert workers(h)["w1"].unreachable_since == info.unreachable_since

    servicer = FakeWorkerServicer()
    server, _ = serve_worker(servicer, f"127.0.0.1:{port}")
    try:
        # The first task still avoids w1 for a while (AVOID_FOR_S): it failed there.
        wait_for(lambda: (second, 1) in servicer.assigned)
        assert first not in {t for t, _ in servicer.assigned}
        assert status(h).workers_unreachable == 0
        assert not workers(h)["w1"].unreachable_error
    finally:
        server.stop(0)
    logged = [r.getMessage() for r in caplog.records]
    # One warning when it was marked, not one per failed probe.
    assert sum(m.startswith("worker w1 unreachable at") for m in logged) == 1, logged
    assert "not placing on it for 0.5s" in next(m for m in logged if "not placing" in m)
    assert "worker w1 reachable again" in logged


def _explained_unreachable(h: Harness, task_id: str) -> str:
    text = h.cluster.Explain(cpb.ExplainRequest(task_id=task_id), timeout=5).text
    return text if "unreachable" in text else ""


def test_a_worker_that_leaves_or_is_lost_drops_its_mark(registry, clock):
    """A worker marked unreachable and then stopped (SIGTERM: it left) or silent past
    the heartbeat timeout is gone, not unreachable: `explain` counted it as
    "unreachable ... retrying it in 13s" instead of shut down, and the master kept
    probing it. A call in flight when it went sets no new mark."""
    rec = add_worker(registry, "w1")
    add_worker(registry, "w2")
    registry.mark_unreachable("w1", "UNAVAILABLE")
    registry.mark_unreachable("w2", "UNAVAILABLE")
    assert registry.leave("w1", rec.address) is not None
    assert registry.get("w1").unreachable is None
    assert registry.mark_unreachable("w1", "UNAVAILABLE", rec.address) == (None, False)
    clock[0] = time.time() + 1.0  # past the 0.3 s heartbeat timeout (added in real time)
    assert "w2" in registry.expire()
    assert registry.get("w2").unreachable is None
    assert registry.mark_unreachable("w2", "UNAVAILABLE") == (None, False)
    assert registry.unreachable() == []
