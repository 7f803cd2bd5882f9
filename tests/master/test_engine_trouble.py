"""A worker whose Docker engine does not answer says so in its heartbeats
(`engine_trouble`, worker/watch.py): the master places nothing on it, pinned tasks
included, `explain` and `cloudai workers` say why, and it is used again once a
heartbeat clears it. The worker side, with a real hung engine, is
tests/faults/test_docker_hung.py."""

from __future__ import annotations

import logging
import time

import pytest

from cloudai.cli import views
from cloudai.convert import spec_to_pb
from cloudai.master.explain import MAX_NAMED, left_out_rejections
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import master_worker_pb2 as mw

from .harness import Harness, make_harness
from .test_tasks import spec
from .test_unreachable import get, wait_for, workers


@pytest.fixture
def h(tmp_path):
    harness = make_harness(tmp_path, agent_timeout=0.05)  # no agent: fallback at once
    yield harness
    harness.close()


HUNG = "the Docker engine at unix:///var/run/docker.sock has not answered for 20s (timed out)"


def beat(h: Harness, worker_id: str, trouble: str = "") -> None:
    w = h.workers[worker_id]
    req = mw.HeartbeatRequest(
        worker_id=worker_id, address=f"127.0.0.1:{w.port}", engine_trouble=trouble
    )
    assert h.mw.SendHeartbeat(req, timeout=5).known


def submit(h: Harness, **kw) -> str:
    req = cpb.SubmitTaskRequest(spec=spec_to_pb(spec(**kw)))
    return h.cluster.SubmitTask(req, timeout=5).task_id


def explain(h: Harness, task_id: str) -> str:
    return h.cluster.Explain(cpb.ExplainRequest(task_id=task_id), timeout=5).text


def test_a_worker_without_an_engine_is_left_out_then_used_again(h, caplog):
    caplog.set_level(logging.INFO, logger="cloudai.master")
    w1 = h.add_worker("w1")
    beat(h, "w1", HUNG)
    task = submit(h)
    why = f"worker 'w1' cannot run containers now: {HUNG}"
    wait_for(lambda: why in explain(h, task))
    assert get(h, task).attempt == 0 and w1.servicer.assigned == []
    info = workers(h)["w1"]
    assert info.engine_trouble == HUNG
    assert "ACTIVE (no Docker engine)" in views.workers_table([info])
    assert f'"engine_trouble": "{HUNG}"' in views.to_json([info])
    s = h.cluster.GetStatus(cpb.StatusRequest(), timeout=5)
    assert s.workers_no_engine == 1 and "1 active, " in views.status_panel(s)
    assert "1 without Docker engine" in views.status_panel(s)
    beat(h, "w1", HUNG)  # the same word again changes nothing
    beat(h, "w1")
    wait_for(lambda: w1.servicer.assigned == [(task, 1)])
    assert not workers(h)["w1"].engine_trouble
    assert h.cluster.GetStatus(cpb.StatusRequest(), timeout=5).workers_no_engine == 0
    logged = [r.getMessage() for r in caplog.records]
    warned = [m for m in logged if m.startswith("worker w1 cannot run containers")]
    assert warned == [f"worker w1 cannot run containers: {HUNG}; placing nothing on it"]
    assert "worker w1 can run containers again" in logged


def test_a_pinned_task_waits_for_the_engine_instead_of_failing(h):
    """Sent anyway, it would be refused five times and fail (retry.MAX_DISPATCH_FAILURES)."""
    w1 = h.add_worker("w1")
    beat(h, "w1", HUNG)
    task = submit(h, pinned_worker="w1")
    wait_for(lambda: "cannot run containers now" in explain(h, task))
    time.sleep(1.0)  # the master's own loop tries pinned tasks on every change
    t = get(h, task)
    assert t.attempt == 0 and list(t.attempts) == [] and w1.servicer.assigned == []
    beat(h, "w1")
    wait_for(lambda: w1.servicer.assigned == [(task, 1)])


def test_new_tasks_go_to_a_worker_whose_engine_answers(h):
    bad, good = h.add_worker("bad"), h.add_worker("good")
    beat(h, "bad", HUNG)
    tasks = [submit(h) for _ in range(3)]
    wait_for(lambda: len(good.servicer.assigned) == 3)
    assert {t for t, _ in good.servicer.assigned} == set(tasks) and bad.servicer.assigned == []


def test_the_trouble_a_worker_sends_is_cleaned_and_bounded(h):
    h.add_worker("w1")
    beat(h, "w1", "\x1b[31mred\x1b[0m " + "x" * 10_000)
    stored = workers(h)["w1"].engine_trouble
    assert "\x1b" not in stored and stored.startswith("\ufffd[31mred")
    assert len(stored) <= 300


def test_left_out_names_a_few_workers_and_counts_many():
    few = [(f"w{i}", HUNG) for i in range(MAX_NAMED)]
    named = {f"worker '{w}' cannot run containers now: {HUNG}": 1 for w, _ in few}
    assert left_out_rejections([], few) == named
    many = [(f"w{i}", HUNG) for i in range(MAX_NAMED + 2)]
    assert left_out_rejections([], many) == {
        "cannot run containers now (Docker engine)": MAX_NAMED + 2
    }
    assert left_out_rejections([], []) == {}
