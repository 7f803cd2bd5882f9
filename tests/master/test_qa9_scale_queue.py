"""QA pass 9 (scale and concurrency): the queue the scheduler offers, the decisions a
long wait stores, and the agent's status under load."""

from __future__ import annotations

import time

import pytest

from cloudai.master import scheduler as scheduler_mod
from cloudai.master.dispatcher import Dispatcher
from cloudai.master.scheduler import Scheduler
from cloudai.master.server import default_decider
from cloudai.master.tasks import TaskManager
from cloudai.model import DecisionRecord, TaskState
from cloudai.proto import master_agent_pb2 as apb

from .conftest import add_worker
from .test_tasks import spec


@pytest.fixture
def cluster(store, registry):
    """A scheduler placing by fallback (no agent) with the real default policy; every
    batch it offers is kept in `offers`."""
    offers: list[list[str]] = []
    decide = default_decider()

    def recording(batch):
        offers.append([t.task_id for t in batch.tasks])
        return decide(batch)

    hub: dict[str, Scheduler] = {}
    tasks = TaskManager(store, registry, on_change=lambda: hub["s"].notify())
    dispatcher = Dispatcher(registry, tasks, channel=lambda address: None)
    sched = Scheduler(tasks, registry, dispatcher, agent_timeout=0.05, decide=recording)
    hub["s"] = sched
    add_worker(registry, labels={"zone": "a"})
    yield tasks, sched, offers
    sched.stop()
    dispatcher.close()


def _wait(cond, timeout=5.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def test_a_placeable_task_behind_a_full_batch_of_unplaceable_ones_is_placed(cluster, monkeypatch):
    """Only the oldest MAX_BATCH pending tasks were offered: behind that many tasks no
    worker can take (a selector nobody has), a task that fits waited for ever."""
    monkeypatch.setattr(scheduler_mod, "MAX_BATCH", 4)
    monkeypatch.setattr(scheduler_mod, "ROTATE_S", 0.05)
    tasks, sched, offers = cluster
    for _ in range(6):
        tasks.submit(spec(selector={"zone": "mars"}))
    fits = tasks.submit(spec())
    sched.start()
    assert _wait(lambda: tasks.get(fits.id).state == TaskState.PLACED), offers
    assert all(len(o) <= 4 for o in offers)


def test_a_priority_task_behind_a_full_batch_is_offered_in_the_next_batch(cluster, monkeypatch):
    monkeypatch.setattr(scheduler_mod, "MAX_BATCH", 4)
    tasks, sched, offers = cluster
    for _ in range(6):
        tasks.submit(spec(selector={"zone": "mars"}))
    sched.start()
    assert _wait(lambda: len(offers) >= 1)
    urgent = tasks.submit(spec(priority=1000, selector={"zone": "mars"}))
    seen = len(offers)
    assert _wait(lambda: len(offers) > seen)
    assert urgent.id in offers[seen]


def test_a_long_wait_stores_its_reason_once_not_once_per_offer(store, tasks, registry):
    """Every queue change offers a pending task again; each offer left it out with the
    same reason, and each was stored (200,000 decision rows in a minute under load)."""
    add_worker(registry)
    waiting = tasks.submit(spec(selector={"zone": "mars"}))
    for i in range(50):  # the same reason, with changing counts
        d = DecisionRecord(waiting.id, waiting.attempt, source="agent", hint=f"needs {i} cpu")
        d.rejections = {"no worker has label zone=mars": 1 + i}
        tasks.record_unplaced(d)
    assert len(store.list_decisions(waiting.id, limit=0)) == 1
    other = DecisionRecord(waiting.id, waiting.attempt, source="agent")
    other.rejections = {"no cpu free": 1}
    tasks.record_unplaced(other)  # another reason: stored
    later = DecisionRecord(waiting.id, waiting.attempt, source="agent", decided_at=time.time() + 61)
    later.rejections = {"no cpu free": 1}
    tasks.record_unplaced(later)  # the same one, a minute on: stored again
    assert len(store.list_decisions(waiting.id, limit=0)) == 3
    # A pinned task waiting for room: each rejected commit was stored too.
    pinned = tasks.submit(spec(pinned_worker="w1", resources=spec().resources))
    add_worker(registry, "w1", cpu=0.5)
    for _ in range(20):
        placed, reason = tasks.commit_placement(
            pinned.id, pinned.attempt, "w1", DecisionRecord(pinned.id, pinned.attempt)
        )
        assert placed is None and "does not fit" in reason
    assert len(store.list_decisions(pinned.id, limit=0)) == 1


def test_an_agent_working_on_a_batch_is_reported_answering(store, tasks, registry):
    """Under load a batch is outstanding almost all the time: status said the agent
    was not answering ("master falls back") while it answered every batch in time."""
    add_worker(registry)
    tasks.submit(spec())
    dispatcher = Dispatcher(registry, tasks, channel=lambda address: None)
    sched = Scheduler(tasks, registry, dispatcher, agent_timeout=3600, decide=lambda b: [])
    sched.start()
    try:
        stream = sched.watch(apb.WatchRequest(agent_id="a1"), lambda: True)
        batch = next(stream)
        assert len(batch.tasks) == 1
        healthy, agent_id, _ = sched.agent_status()
        assert (healthy, agent_id) == (True, "a1")
        stream.close()
        assert not sched.agent_status()[0]  # no agent connected: not answering
    finally:
        sched.stop()
        dispatcher.close()
