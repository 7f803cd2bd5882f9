"""An agent that reconnects in a loop and never answers validly must not hold off the
master's fallback; status counts only live agent streams; fallback logs once.

Real gRPC over loopback: an in-process master on a fixed port, a fake worker, and
agent clients written here (a misbehaving one that submits NaN scores, a good one).
"""

from __future__ import annotations

import logging
import threading
import time

import grpc
import pytest

from cloudai import rpc
from cloudai.config import MasterSettings
from cloudai.convert import spec_to_pb
from cloudai.master.server import Master
from cloudai.master.store import SQLiteStore
from cloudai.model import Resources, TaskSpec
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_agent_pb2 as apb
from cloudai.proto import master_agent_pb2_grpc

from .harness import FakeWorker, FakeWorkerServicer, GiB, Harness, serve_worker

TIMEOUT = 1.0  # the master's --agent-timeout in these tests


def _harness(tmp_path, **settings) -> Harness:
    settings.setdefault("agent_timeout", TIMEOUT)
    settings.setdefault("heartbeat_timeout", 30.0)
    s = MasterSettings(host="127.0.0.1", port=0, console=False, **settings)
    master = Master(s, store=SQLiteStore(tmp_path / "master.db"))
    master.start()
    h = Harness(master=master, channel=rpc.channel(f"127.0.0.1:{master.port}"))
    servicer = FakeWorkerServicer()
    server, bound = serve_worker(servicer, "127.0.0.1:0")
    cap = pb.Resources(cpu=4, memory_bytes=8 * GiB)
    h.workers["w1"] = FakeWorker("w1", servicer, server, bound, cap)
    h.register(h.workers["w1"])
    return h


def _submit(h: Harness, cpu: float = 1.0) -> str:
    spec = TaskSpec(image="cloudai/sample-task:latest", resources=Resources(cpu, GiB, 0))
    req = cpb.SubmitTaskRequest(spec=spec_to_pb(spec))
    return h.cluster.SubmitTask(req, timeout=5).task_id


def _task(h: Harness, tid: str) -> pb.Task:
    return h.cluster.GetTask(cpb.GetTaskRequest(task_id=tid), timeout=5)


def _nan_placements(batch: apb.SchedulingBatch) -> apb.PlacementBatch:
    """What an agent with an infinite scorer weight sends: a NaN total."""
    decisions = [
        apb.Decision(
            task_id=t.task_id,
            attempt=t.attempt,
            worker_id="w1",
            candidates=[apb.Candidate(worker_id="w1", total=float("nan"))],
        )
        for t in batch.tasks
    ]
    return apb.PlacementBatch(agent_id="bad", sequence=batch.sequence, decisions=decisions)


class ReconnectingAgent(threading.Thread):
    """Watches, submits malformed placements, is refused, reconnects after a pause."""

    def __init__(self, h: Harness, pause: float = 0.25, think: float = 0.0) -> None:
        super().__init__(daemon=True)
        self.h, self.pause, self.think, self.stop = h, pause, think, threading.Event()
        self.refused = self.streams = 0

    def run(self) -> None:
        while not self.stop.is_set():
            with rpc.channel(f"127.0.0.1:{self.h.master.port}") as channel:
                self._once(master_agent_pb2_grpc.MasterAgentStub(channel))
            self.stop.wait(self.pause)

    def _once(self, stub: master_agent_pb2_grpc.MasterAgentStub) -> None:
        call = stub.WatchSchedulingWork(apb.WatchRequest(agent_id="bad"))
        self.streams += 1
        try:
            batch = next(iter(call))
            time.sleep(self.think)
            stub.SubmitPlacements(_nan_placements(batch), timeout=5)
        except grpc.RpcError as err:
            self.refused += err.code() == grpc.StatusCode.INVALID_ARGUMENT
        except StopIteration:  # the master closed the stream (shutting down)
            pass
        finally:
            call.cancel()


@pytest.fixture
def bad_agent():
    agents: list[ReconnectingAgent] = []

    def start(h: Harness, think: float = 0.0) -> ReconnectingAgent:
        agents.append(ReconnectingAgent(h, think=think))
        agents[-1].start()
        return agents[-1]

    yield start
    for a in agents:
        a.stop.set()
        a.join(5)


def test_a_reconnecting_agent_with_malformed_answers_does_not_hold_off_fallback(
    tmp_path, bad_agent
):
    h = _harness(tmp_path)
    try:
        agent = bad_agent(h)
        tid = _submit(h)
        began = time.monotonic()
        while _task(h, tid).state == pb.TASK_STATE_PENDING and time.monotonic() - began < 8:
            time.sleep(0.05)
        took = time.monotonic() - began
        assert _task(h, tid).state == pb.TASK_STATE_PLACED, "the task waited for ever"
        assert took < TIMEOUT + 2.0
        assert agent.refused >= 2 and agent.is_alive()  # it kept reconnecting meanwhile
        explain = h.cluster.Explain(cpb.ExplainRequest(task_id=tid), timeout=5)
        committed = [d for d in explain.decisions if d.committed]
        assert committed and committed[0].fallback and committed[0].source == "master"
        # Later work is placed by fallback too while the agent keeps failing.
        second = _submit(h)
        deadline = time.monotonic() + TIMEOUT + 2.0
        while _task(h, second).state == pb.TASK_STATE_PENDING and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _task(h, second).state == pb.TASK_STATE_PLACED
    finally:
        h.close()


def test_status_counts_only_live_agent_streams(tmp_path, bad_agent):
    h = _harness(tmp_path, agent_timeout=3600.0)
    try:
        _submit(h, cpu=64)  # never fits: every stream gets a batch and keeps it
        call = h.agent.WatchSchedulingWork(apb.WatchRequest(agent_id="one"))
        next(iter(call))
        status = h.cluster.GetStatus(cpb.StatusRequest(), timeout=5)
        assert list(status.connected_agent_ids) == ["one"]
        call.cancel()
        time.sleep(0.3)  # well under the stream's 1 s wait
        assert h.cluster.GetStatus(cpb.StatusRequest(), timeout=5).agents_connected == 0
        agent = bad_agent(h, think=0.1)  # each stream lives 0.1 s of every 0.35 s
        seen = []
        while agent.streams < 8:
            seen.append(h.cluster.GetStatus(cpb.StatusRequest(), timeout=5).agents_connected)
            time.sleep(0.02)
        assert 1 in seen and max(seen) == 1, seen  # old streams no longer count
    finally:
        h.close()


def _answer(h: Harness, batch: apb.SchedulingBatch, worker: str = "w1") -> None:
    decisions = [
        apb.Decision(task_id=t.task_id, attempt=t.attempt, worker_id=worker, policy="test")
        for t in batch.tasks
    ]
    res = h.agent.SubmitPlacements(
        apb.PlacementBatch(agent_id="good", sequence=batch.sequence, decisions=decisions),
        timeout=5,
    )
    assert all(r.accepted for r in res.results) or not worker


def _source(h: Harness, tid: str) -> tuple[bool, str]:
    explain = h.cluster.Explain(cpb.ExplainRequest(task_id=tid), timeout=5)
    d = next(d for d in explain.decisions if d.committed)
    return d.fallback, d.source


def test_a_healthy_agent_restarting_once_triggers_no_fallback(tmp_path):
    h = _harness(tmp_path)
    try:
        first = _submit(h)
        call = h.agent.WatchSchedulingWork(apb.WatchRequest(agent_id="good"))
        next(iter(call))  # offered, then the agent restarts before answering
        call.cancel()
        time.sleep(0.4)
        call = h.agent.WatchSchedulingWork(apb.WatchRequest(agent_id="good"))
        batches = iter(call)
        _answer(h, next(batches))
        assert _source(h, first) == (False, "agent")
        time.sleep(TIMEOUT * 1.5)  # idle, well past the timeout: nothing is owed
        assert h.cluster.GetStatus(cpb.StatusRequest(), timeout=5).agent_connected
        second = _submit(h)
        batch = next(batches)
        time.sleep(TIMEOUT / 3)  # a slow but timely answer
        _answer(h, batch)
        call.cancel()
        assert _source(h, second) == (False, "agent")
    finally:
        h.close()


def test_offer_then_cancelled_task_leaves_no_unanswered_work(tmp_path):
    """The agent drops its stream with a batch outstanding, the task is cancelled, the
    agent comes back to an empty queue: nothing is owed, so a new task waits for it."""
    h = _harness(tmp_path)
    try:
        tid = _submit(h)
        call = h.agent.WatchSchedulingWork(apb.WatchRequest(agent_id="good"))
        next(iter(call))
        call.cancel()
        h.cluster.CancelTask(cpb.CancelRequest(task_id=tid), timeout=5)
        call = h.agent.WatchSchedulingWork(apb.WatchRequest(agent_id="good"))
        batches = iter(call)
        time.sleep(TIMEOUT * 1.5)
        assert h.cluster.GetStatus(cpb.StatusRequest(), timeout=5).agent_connected
        second = _submit(h)
        _answer(h, next(batches))
        call.cancel()
        assert _source(h, second) == (False, "agent")
    finally:
        h.close()


def _fallback_lines(caplog, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and "by fallback" in r.getMessage()
    ]


def test_fallback_is_logged_once_when_it_starts_and_once_when_it_ends(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="cloudai.master")
    h = _harness(tmp_path, agent_timeout=0.2)
    try:
        time.sleep(0.4)  # no agent: fallback is due
        for _ in range(4):  # unplaceable work: every change runs the fallback again
            _submit(h, cpu=64)
            time.sleep(0.4)
        assert len(_fallback_lines(caplog, logging.INFO)) == 1
        assert len(_fallback_lines(caplog, logging.DEBUG)) >= 2
        call = h.agent.WatchSchedulingWork(apb.WatchRequest(agent_id="good"))
        batches = iter(call)
        _answer(h, next(batches), worker="")  # a valid answer: nothing fits
        answered = [r for r in caplog.records if "answering again" in r.getMessage()]
        assert [(r.levelno, r.getMessage()) for r in answered] == [
            (logging.INFO, "agent good answering again; fallback off")
        ]
        _submit(h, cpu=64)
        _answer(h, next(batches), worker="")
        assert len([r for r in caplog.records if "answering again" in r.getMessage()]) == 1
        call.cancel()
        time.sleep(0.4)
        _submit(h, cpu=64)  # the agent is gone: fallback starts again, logged again
        time.sleep(0.5)
        assert len(_fallback_lines(caplog, logging.INFO)) == 2
    finally:
        h.close()


def test_an_idle_stream_waits_for_changes_instead_of_spinning(tmp_path, monkeypatch):
    """The queue empties (a task cancelled) while an agent's stream is idle: the
    stream must wait for the next change, not poll the queue in a busy loop."""
    h = _harness(tmp_path, agent_timeout=3600.0)
    try:
        call = h.agent.WatchSchedulingWork(apb.WatchRequest(agent_id="good"))
        tid = _submit(h, cpu=64)
        _answer(h, next(iter(call)), worker="")
        h.cluster.CancelTask(cpb.CancelRequest(task_id=tid), timeout=5)
        time.sleep(0.3)
        polls, pending = [], h.master.tasks.pending
        monkeypatch.setattr(
            h.master.tasks, "pending", lambda **kw: polls.append(1) or pending(**kw)
        )
        time.sleep(1.0)
        call.cancel()
        assert len(polls) < 5, f"the queue was read {len(polls)} times in 1 s idle"
    finally:
        h.close()
