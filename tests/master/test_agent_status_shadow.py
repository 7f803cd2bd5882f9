"""Status says which policy the agent runs and how its shadow policy disagrees.

Real gRPC over loopback: an in-process master with fake workers, the real agent
(`cloudai.agent.sidecar.Agent`) in a thread, and hand-written agent clients for the
bookkeeping cases (a second agent, a reconnect, a malformed report).
"""

from __future__ import annotations

import json
import threading
import time

import grpc
import pytest

from cloudai.agent.sidecar import Agent
from cloudai.cli import views
from cloudai.config import AgentSettings
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import master_agent_pb2 as apb

from .harness import make_harness
from .test_agent_api import submit

WAIT_S = 10.0


@pytest.fixture
def h(tmp_path):
    harness = make_harness(tmp_path)
    yield harness
    harness.close()


def status_when(h, check, what: str) -> cpb.StatusResponse:
    deadline = time.monotonic() + WAIT_S
    while True:
        status = h.cluster.GetStatus(cpb.StatusRequest(), timeout=5)
        if check(status):
            return status
        assert time.monotonic() < deadline, f"status never showed {what}: {status}"
        time.sleep(0.05)


def test_status_shows_the_real_agents_policy_and_its_shadow_counts(h):
    """binpack puts a 1-cpu task on the small worker, spread on the big one: every
    decision is a disagreement, on another worker."""
    h.add_worker("small", cpu=4)
    h.add_worker("big", cpu=16)
    settings = AgentSettings(
        master=f"127.0.0.1:{h.master.port}", agent_id="a-shadow", policy="binpack", shadow="spread"
    )
    agent = Agent(settings)
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        tids = [submit(h, cpu=1.0) for _ in range(3)]
        status = status_when(
            h, lambda s: s.agent_shadow.decisions == len(tids), "3 decisions compared"
        )
        assert {h.master.store.get_task(t).worker_id for t in tids} == {"small"}
        assert (status.agent_id, status.agent_policy, status.agent_profile) == (
            "a-shadow",
            "binpack",
            "binpack",
        )
        r = status.agent_shadow
        assert (r.policy, r.decisions, r.disagreements, r.other_worker) == ("spread", 3, 3, 3)
        assert agent.shadow is not None and agent.shadow.report() == r
        text = views.status_panel(status)
        assert "policy     binpack (profile binpack)" in text
        assert "shadow     spread: disagrees on 100.0% of 3 decision(s) (another worker 3" in text
        shown = json.loads(views.to_json(status))["agent_shadow"]
        assert shown == {"policy": "spread", "decisions": 3, "disagreements": 3, "other_worker": 3}
    finally:
        agent.stop()
        thread.join(timeout=WAIT_S)


def answer(h, agent_id: str, shadow: apb.ShadowReport | None) -> None:
    """One well-formed answer (no decisions) from `agent_id`."""
    batch = apb.PlacementBatch(agent_id=agent_id, sequence=0, shadow=shadow)
    h.agent.SubmitPlacements(batch, timeout=5)


def watch(h, agent_id: str, policy: str):
    request = apb.WatchRequest(agent_id=agent_id, policy=policy, profile=policy)
    stream = h.agent.WatchSchedulingWork(request, timeout=30)
    status_when(h, lambda s: agent_id in s.connected_agent_ids, f"{agent_id} connected")
    return stream


def test_status_follows_the_agent_it_names_and_a_new_run_counts_afresh(h):
    h.add_worker("w1")
    submit(h)  # something to watch for
    first = watch(h, "a1", "binpack")
    answer(h, "a1", apb.ShadowReport(policy="fgd", decisions=10, disagreements=4))
    s = status_when(h, lambda s: s.HasField("agent_shadow"), "a1's shadow")
    assert (s.agent_policy, s.agent_shadow.disagreements) == ("binpack", 4)

    second = watch(h, "a2", "spread")  # status names the newest agent: no shadow
    s = status_when(h, lambda s: s.agent_id == "a2", "a2")
    assert (s.agent_policy, s.HasField("agent_shadow")) == ("spread", False)
    second.cancel()
    s = status_when(h, lambda s: s.agents_connected == 1, "a2 gone")
    assert (s.agent_id, s.agent_policy, s.agent_shadow.decisions) == ("a1", "binpack", 10)

    first.cancel()  # gone too: status still describes it
    s = status_when(h, lambda s: s.agents_connected == 0, "a1 gone")
    assert (s.agent_id, s.agent_policy, s.agent_shadow.decisions) == ("a1", "binpack", 10)
    assert "a1 (not answering" in views.status_panel(s)

    again = watch(h, "a1", "binpack")  # a new run of a1: its old counts are gone
    s = status_when(h, lambda s: s.agents_connected == 1, "a1 back")
    assert not s.HasField("agent_shadow")
    again.cancel()


def test_an_answer_without_a_shadow_clears_another_runs_counts_under_that_id(h):
    """QA pass 7: two runs of one agent id at once, the one with a shadow stopped, and
    status kept showing its counts beside the other run's policy."""
    h.add_worker("w1")
    submit(h)
    plain = watch(h, "ag1", "learned")
    shadowed = watch(h, "ag1", "spread")
    answer(h, "ag1", apb.ShadowReport(policy="binpack", decisions=3, disagreements=3))
    status_when(h, lambda s: s.HasField("agent_shadow"), "the shadow's counts")
    shadowed.cancel()
    status_when(h, lambda s: s.agents_connected == 1, "the shadowed run gone")
    answer(h, "ag1", None)  # the remaining run answers: it runs no shadow
    s = status_when(h, lambda s: not s.HasField("agent_shadow"), "the counts cleared")
    assert (s.agent_id, s.agent_policy) == ("ag1", "learned")
    plain.cancel()


@pytest.mark.parametrize(
    "report, message",
    [
        (
            apb.ShadowReport(policy="fgd", decisions=2, disagreements=3),
            "shadow.disagreements must be between 0 and shadow.decisions (2), got 3",
        ),
        (
            apb.ShadowReport(policy="fgd", decisions=5, disagreements=2, other_worker=-1),
            "shadow.other_worker must be between 0 and shadow.disagreements (2), got -1",
        ),
        (apb.ShadowReport(policy="x" * 500, decisions=1), "shadow.policy"),
    ],
)
def test_a_report_that_cannot_be_true_is_refused_and_not_shown(h, report, message):
    with pytest.raises(grpc.RpcError) as err:
        answer(h, "liar", report)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()
    assert not h.cluster.GetStatus(cpb.StatusRequest(), timeout=5).HasField("agent_shadow")
