"""The sidecar against a fake master over real gRPC: place, submit, reconnect, stop."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from cloudai.agent.policy import make_task, make_worker
from cloudai.agent.sidecar import Agent, Backoff, run_agent
from cloudai.agent.wire import batch_to_pb
from cloudai.config import AgentSettings
from tests.ports import free_port

from .agent_fakes import FakeMaster, serve

WAIT_S = 10.0


def settings(port: int, **kw: str) -> AgentSettings:
    return AgentSettings(master=f"127.0.0.1:{port}", agent_id="test-agent", **kw)


def one_batch(seq: int, task_id: str = "t1"):
    workers = [
        make_worker("small").cpu(2).mem("2g").build(),
        make_worker("big").cpu(16).mem("32g").build(),
    ]
    tasks = [
        make_task(task_id).cpu(4).mem("1g").build(),
        make_task(f"{task_id}-huge").cpu(99).build(),
    ]
    return batch_to_pb(tasks, workers, sequence=seq, timestamp=1.0)


@pytest.fixture
def start_agent() -> Iterator[Callable[[Agent], Agent]]:
    """Run agents in threads; stop and join them after the test."""
    started: list[tuple[Agent, threading.Thread]] = []

    def start(agent: Agent) -> Agent:
        t = threading.Thread(target=agent.run, daemon=True)
        t.start()
        started.append((agent, t))
        return agent

    yield start
    for agent, t in started:
        agent.stop()
        t.join(timeout=WAIT_S)
        assert not t.is_alive(), "agent did not stop"


def test_agent_places_a_streamed_batch_and_submits_every_decision(start_agent):
    fake = FakeMaster()
    server, port = serve(fake)
    try:
        start_agent(Agent(settings(port, policy="binpack")))
        watch = fake.watches.get(timeout=WAIT_S)
        assert (watch.agent_id, watch.policy, watch.profile) == ("test-agent", "binpack", "binpack")
        fake.outbox.put(one_batch(seq=41))
        sent = fake.submitted.get(timeout=WAIT_S)
        assert (sent.agent_id, sent.sequence) == ("test-agent", 41)
        placed, unplaced = sent.decisions
        assert (placed.task_id, placed.worker_id, placed.profile) == ("t1", "big", "binpack")
        assert placed.candidates[0].worker_id == "big"
        assert placed.candidates[0].scores["most_allocated"] > 0
        assert (unplaced.task_id, unplaced.worker_id) == ("t1-huge", "")
        assert dict(unplaced.rejections) == {"insufficient cpu": 2}
        assert unplaced.hint.startswith("request <= 12 cpu")
    finally:
        server.stop(0)


def test_agent_reconnects_after_the_master_restarts(start_agent, caplog):
    caplog.set_level(logging.INFO, logger="cloudai.agent")
    fake = FakeMaster()
    # A port of the test range, not an ephemeral one: while the master is down, an
    # outgoing connection could take an ephemeral port (tests/ports.py).
    server, port = serve(fake, free_port())
    start_agent(Agent(settings(port), backoff=Backoff(0.05, 0.2)))
    fake.watches.get(timeout=WAIT_S)
    assert server.stop(0).wait(WAIT_S)  # its listening socket is closed
    # A new master on the same address: the agent must find it and serve it.
    fake2 = FakeMaster()
    server2, port2 = serve(fake2, port)
    try:
        assert port2 == port
        fake2.watches.get(timeout=WAIT_S)
        fake2.outbox.put(one_batch(seq=1, task_id="after"))
        sent = fake2.submitted.get(timeout=WAIT_S)
        assert sent.decisions[0].task_id == "after"
        assert sent.decisions[0].worker_id == "big"
        assert any("reconnecting in" in r.getMessage() for r in caplog.records)
    finally:
        server2.stop(0)


def test_agent_keeps_retrying_while_the_master_is_down(start_agent, caplog):
    caplog.set_level(logging.WARNING, logger="cloudai.agent")
    port = free_port()  # nothing listens on it
    agent = start_agent(Agent(settings(port), backoff=Backoff(0.02, 0.05)))
    deadline = time.monotonic() + WAIT_S
    while len(caplog.records) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) >= 3
    assert all("unavailable; reconnecting in" in line for line in lines)
    started = time.monotonic()
    agent.stop()
    assert time.monotonic() - started < 1.0


def test_backoff_grows_with_jitter_within_bounds():
    import random

    b = Backoff(0.2, 5.0, rng=random.Random(1))
    delays = [b.next() for _ in range(30)]
    assert all(0.2 <= d <= 5.0 for d in delays)
    assert max(delays) == 5.0
    assert len(set(delays)) > 10  # jittered, not a fixed ladder
    b.reset()
    assert b.next() <= 0.6


def test_bad_profile_exits_1(tmp_path, capsys):
    # Bad input is exit 1: exit 2 means a master that cannot be reached.
    assert run_agent(AgentSettings(master="127.0.0.1:1", profile=str(tmp_path / "none.json"))) == 1
    assert "cannot read profile file" in capsys.readouterr().err
    assert run_agent(AgentSettings(master="127.0.0.1:1", policy="nope")) == 1


def test_sigterm_stops_the_agent_process_cleanly():
    code = "from cloudai.agent.sidecar import run_agent; from cloudai.config import AgentSettings;"
    code += "raise SystemExit(run_agent(AgentSettings(master='127.0.0.1:1')))"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None
        assert "CloudAI agent" in proc.stdout.readline().decode()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=WAIT_S) == 0
    finally:
        proc.kill()
        proc.wait()
