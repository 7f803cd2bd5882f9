"""Agent faults: SIGKILL and SIGSTOP. The master places by fallback within the
agent timeout, marks those decisions, and keeps answering (issue 5, item 5)."""

from __future__ import annotations

import signal
import time

import pytest

from .faultkit import record, state, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow]
AGENT_TIMEOUT = 2.0
SLACK = 2.0  # the scheduler's tick, a loaded 2-core machine, and our polling


def _placement(c, ids: list[str]) -> tuple[float, list]:
    """Seconds until every task left PENDING, and the committed decision of each."""
    began = time.time()
    wait_until(lambda: all(state(c.task(t)) != "PENDING" for t in ids), 30, "placement", every=0.05)
    took = time.time() - began
    committed = []
    for tid in ids:
        ds = [d for d in c.decisions(tid) if d.committed]
        assert ds, f"{tid} has no committed decision"
        committed.append(ds[0])
    return took, committed


def _status_latency(c) -> float:
    began = time.time()
    c.status()
    return time.time() - began


def test_agent_killed_or_stalled_master_places_by_fallback(make_cluster):
    c = make_cluster(agent_timeout=AGENT_TIMEOUT)
    c.start(2, agent=True)
    cmd = ["sh", "-c", "echo placed"]

    took, ds = _placement(c, [c.submit(cmd)])
    assert not ds[0].fallback and ds[0].source == "agent"

    c.signal("agent", signal.SIGKILL)
    ids = [c.submit(cmd) for _ in range(5)]
    killed_took, ds = _placement(c, ids)
    assert all(d.fallback and d.source == "master" for d in ds)
    assert killed_took <= AGENT_TIMEOUT + SLACK

    c.start_agent()
    wait_until(c.agent_connected, 30, "the agent to reconnect")
    took, ds = _placement(c, [c.submit(cmd)])
    assert not ds[0].fallback

    c.signal("agent", signal.SIGSTOP)
    ids = [c.submit(cmd) for _ in range(5)]
    stalled_latency = max(_status_latency(c) for _ in range(5))
    stalled_took, ds = _placement(c, ids)
    assert all(d.fallback for d in ds)
    assert stalled_took <= AGENT_TIMEOUT + SLACK
    assert stalled_latency < 1.0  # a stalled agent does not block other RPCs
    assert not c.status().agent_connected

    c.signal("agent", signal.SIGCONT)
    wait_until(c.agent_connected, 30, "the agent to answer again")
    took, ds = _placement(c, [c.submit(cmd)])
    assert not ds[0].fallback
    everything = [t.id for t in c.tasks()]
    done = c.wait_terminal(everything, 60)
    assert {state(t) for t in done.values()} == {"SUCCEEDED"}
    record(
        "agent_kill_and_stall",
        agent_timeout_s=AGENT_TIMEOUT,
        placed_after_sigkill_s=killed_took,
        placed_after_sigstop_s=stalled_took,
        status_rpc_during_stall_s=stalled_latency,
        fallback_decisions=10,
        tasks=len(everything),
    )
