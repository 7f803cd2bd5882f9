"""A placement commit that the store refuses (a full disk, a database outage) is
tried again about every second, not at the next queue change: with nothing else
happening (no submit, no heartbeat, no registration), the queued tasks end up
placed and dispatched once the store works again, each once, and none is lost.

In-process master over loopback gRPC (a port the kernel picks), fake workers speaking the
real protocol and sending no heartbeats, the real SQLite store whose commit of a
placement (PENDING -> PLACED) fails with the project's StoreError a few times."""

from __future__ import annotations

import logging
import threading
import time

import grpc
import pytest

from cloudai import rpc
from cloudai.config import MasterSettings
from cloudai.errors import StoreError
from cloudai.master.server import Master
from cloudai.master.store import SQLiteStore
from cloudai.model import Task, TaskState
from cloudai.proto import master_agent_pb2 as apb
from tests.faults.faultkit import wait_until

from .harness import Harness
from .test_tasks import spec


class FailingCommits(SQLiteStore):
    """The real store; the next `failures` placement commits fail as a full disk.
    `versions` holds the scheduler's queue version at each commit, failed or not."""

    failures = 0
    version: object = staticmethod(lambda: -1)

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.versions: list[tuple[bool, int]] = []
        self._count = threading.Lock()

    def update_task(self, task: Task, expect_state: TaskState, expect_attempt: int) -> bool:
        if expect_state == TaskState.PENDING and task.state == TaskState.PLACED:
            with self._count:
                failing, self.failures = self.failures > 0, max(0, self.failures - 1)
            self.versions.append((failing, self.version()))
            if failing:
                raise StoreError(f"SQLite write failed ({self.url}): database or disk is full")
        return super().update_task(task, expect_state, expect_attempt)


def _master(tmp_path, **settings) -> tuple[Harness, FailingCommits]:
    store = FailingCommits(tmp_path / "master.db")
    s = MasterSettings(host="127.0.0.1", port=0, console=False, **settings)
    master = Master(s, store=store)
    store.version = lambda: master.scheduler._version
    master.start()
    return Harness(master=master, channel=rpc.channel(f"127.0.0.1:{master.port}")), store


@pytest.fixture
def make(tmp_path):
    made: list[Harness] = []

    def build(**settings) -> tuple[Harness, FailingCommits]:
        settings.setdefault("heartbeat_timeout", 30.0)  # no heartbeats needed
        h, store = _master(tmp_path, **settings)
        made.append(h)
        return h, store

    yield build
    for h in made:
        h.close()


def _placed_once(h: Harness, w, ids: list[str], store: FailingCommits) -> None:
    wait_until(lambda: len(w.servicer.assigned) >= len(ids), 10, "the dispatches")
    time.sleep(0.3)  # a second dispatch of the same task would show by now
    assert sorted(w.servicer.assigned) == sorted((t, 1) for t in ids)
    for t in ids:
        task = store.get_task(t)
        assert (task.state, task.attempt, task.worker_id) == (TaskState.PLACED, 1, w.worker_id)
    assert h.master.store.count_tasks_by_state()["PENDING"] == 0


def _no_queue_change_between_tries(store: FailingCommits, failures: int, step: int = 0) -> None:
    """From the first failed try on, the queue version moved by exactly `step` per
    try: nothing notified the scheduler, the retries came from its own timer (which
    moves the version by one to re-offer the queue to an agent's stream)."""
    tries = store.versions
    first_failed = next(i for i, (failed, _) in enumerate(tries) if failed)
    later = tries[first_failed:]
    assert sum(failed for failed, _ in later) == failures
    assert not later[-1][0]  # and the last one worked
    versions = sorted({v for _, v in later})
    assert versions == list(range(versions[0], versions[0] + step * failures + 1, step or 1)), tries


def test_a_fallback_placement_commit_that_fails_is_retried_every_second(make, caplog):
    h, store = make(agent_timeout=0.2)
    caplog.set_level(logging.ERROR, logger="cloudai.master")
    store.failures = 3
    ids = [h.master.submit(spec()).id for _ in range(3)]  # acknowledged; no worker yet
    began = time.monotonic()
    w = h.add_worker("w1")  # the last change: from here on nothing happens
    _placed_once(h, w, ids, store)
    took = time.monotonic() - began
    _no_queue_change_between_tries(store, failures=3)
    assert 2.5 < took < 8, took  # three waits of about 1 s, not the next queue change
    logged = [r.getMessage() for r in caplog.records if "placing tasks failed" in r.getMessage()]
    assert len(logged) == 1 and "retrying every 1s" in logged[0]  # throttled
    assert "database or disk is full" in logged[0]


def test_a_pinned_placement_commit_that_fails_is_retried_every_second(make):
    h, store = make(agent_timeout=3600.0)  # no fallback: the master's own pin path
    store.failures = 2
    # Queued before the worker registers (`submit --worker` would refuse it then).
    ids = [h.master.tasks.submit(spec(pinned_worker="w1")).id for _ in range(2)]
    w = h.add_worker("w1")  # the last change
    _placed_once(h, w, ids, store)
    _no_queue_change_between_tries(store, failures=2)


def test_an_agent_placement_whose_commit_fails_is_offered_again(make):
    """The agent's SubmitPlacements fails (UNAVAILABLE, store failed); the agent keeps
    its stream open and answers whatever it is offered. The master offers the queue
    again about a second later by itself: no queue change, no agent reconnect."""
    h, store = make(agent_timeout=3600.0)
    store.failures = 2
    offers: list[apb.SchedulingBatch] = []
    failed: list[grpc.StatusCode] = []
    stream = h.agent.WatchSchedulingWork(apb.WatchRequest(agent_id="a-test", policy="test"))
    answering = threading.Thread(target=_answer_all, args=(h, stream, offers, failed), daemon=True)
    answering.start()
    try:
        ids = [h.master.submit(spec()).id for _ in range(2)]
        w = h.add_worker("w1")  # the last change
        _placed_once(h, w, ids, store)
        assert failed == [grpc.StatusCode.UNAVAILABLE] * 2
        with_worker = [b for b in offers if b.workers]  # the first had no worker yet
        assert len(with_worker) == 3  # offered again after each failed commit, same stream
        gaps = [
            b.timestamp - a.timestamp
            for a, b in zip(with_worker[:-1], with_worker[1:], strict=True)
        ]
        assert all(0.8 < g < 2.5 for g in gaps), gaps  # about STORE_RETRY_S apart
        _no_queue_change_between_tries(store, failures=2, step=1)
    finally:
        stream.cancel()
        answering.join(5)


def _answer_all(h: Harness, stream, offers: list, failed: list) -> None:
    """A minimal agent: every pending task of a batch to its first worker, if any."""
    try:
        for batch in stream:
            offers.append(batch)
            decisions = [
                apb.Decision(
                    task_id=t.task_id,
                    attempt=t.attempt,
                    worker_id=batch.workers[0].worker_id if batch.workers else "",
                    policy="test",
                )
                for t in batch.tasks
            ]
            request = apb.PlacementBatch(
                agent_id="a-test", sequence=batch.sequence, decisions=decisions
            )
            try:
                h.agent.SubmitPlacements(request, timeout=5)
            except grpc.RpcError as err:
                failed.append(err.code())
    except grpc.RpcError:
        return  # cancelled at the end of the test
