"""The live agent and the simulator decide identically for one snapshot and policy."""

from __future__ import annotations

import dataclasses
import logging

import joblib
import numpy as np
import pytest

from cloudai.agent.learn.model import LearnedModel, ModelError, load_model
from cloudai.agent.learn.priority import FEATURES, LearnedOrderer
from cloudai.agent.policy.job_ordering import JobColumns
from cloudai.agent.policy.profiles import save_profile
from cloudai.agent.policy.snapshot import ClusterState
from cloudai.agent.policy.synthetic import random_tasks, random_workers
from cloudai.agent.sidecar import Agent
from cloudai.agent.sim.cluster import decide
from cloudai.agent.sim.policies import resolve
from cloudai.agent.wire import batch_to_pb
from cloudai.config import AgentSettings
from cloudai.proto import master_agent_pb2 as apb

NOW = 1_000_000.0


class CaptureStub:
    """Stands in for the master: keeps what the agent submits."""

    def __init__(self) -> None:
        self.sent: list[apb.PlacementBatch] = []

    def SubmitPlacements(self, msg: apb.PlacementBatch, timeout: float = 0) -> object:
        self.sent.append(msg)
        return apb.PlacementResults()


def snapshot(seed: int = 3):
    workers = random_workers(40, seed)
    tasks = random_tasks(60, seed, now=NOW, workers=40)
    batch = batch_to_pb(tasks, workers, sequence=1, timestamp=NOW)
    runtime = {}
    for k, t in enumerate(batch.tasks):  # timeouts: what the learned orderer reads live
        t.spec.timeout_s = 60.0 * (1 + (k * 7) % 13)
        runtime[t.task_id] = t.spec.timeout_s
    return workers, tasks, batch, runtime


def live(settings: AgentSettings, batch: apb.SchedulingBatch) -> list[apb.Decision]:
    stub = CaptureStub()
    Agent(settings)._answer(stub, batch)
    [sent] = stub.sent
    return list(sent.decisions)


def agent_settings(**kw) -> AgentSettings:
    return AgentSettings(master="127.0.0.1:1", agent_id="t", **kw)


@pytest.mark.parametrize("name", ["binpack", "spread", "tetris", "bestfit", "firstfit", "fgd"])
def test_profile_policies_decide_the_same_live_and_simulated(tmp_path, name):
    workers, tasks, batch, _ = snapshot()
    policy = resolve(name)
    # The profile the simulator runs, with its queue order (FCFS), as an agent file.
    profile = dataclasses.replace(policy.profile, orderer=policy.orderer)
    path = save_profile(profile, tmp_path / f"{name}.json")
    got = live(agent_settings(profile=str(path)), batch)
    sim = decide(tasks, ClusterState.from_workers(workers), policy, now=NOW)
    assert [(d.task_id, d.worker_id) for d in got] == [(p.task_id, p.worker_id) for p in sim]
    for d, p in zip(got, sim, strict=True):
        assert [c.total for c in d.candidates] == pytest.approx([c.total for c in p.candidates])


def test_learned_policy_decides_the_same_live_and_simulated():
    workers, tasks, batch, runtime = snapshot(5)
    got = live(agent_settings(policy="learned"), batch)
    sim = decide(tasks, ClusterState.from_workers(workers), resolve("learned"), NOW, runtime)
    assert [(d.task_id, d.worker_id) for d in got] == [(p.task_id, p.worker_id) for p in sim]
    assert {d.model_version for d in got} == {resolve("learned").model_version}
    assert all(d.policy == "learned" for d in got)


def test_missing_or_corrupt_model_falls_back_to_default_with_a_warning(tmp_path, caplog):
    bad = tmp_path / "bad.joblib"
    bad.write_bytes(b"not a model at all")
    # A file that unpickles but has the wrong shape: its profile is a number.
    shape = tmp_path / "shape.joblib"
    joblib.dump({**LearnedModel.new([0.0] * len(FEATURES), [0.0] * len(FEATURES)).to_dict(),
                 "profile": 42}, shape)  # fmt: skip
    for path in (str(bad), str(shape), str(tmp_path / "missing.joblib")):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cloudai.agent"):
            agent = Agent(agent_settings(policy="learned", model=path))
        assert agent.profile.name == "default" and agent.learned is None
        [line] = [r.getMessage() for r in caplog.records]
        assert "falling back to the default profile" in line and path in line
        if path == str(bad):  # what failed, named: not a bare number
            assert "is corrupt or not a model file (reading it failed with KeyError: " in line
        _, _, batch, _ = snapshot()
        decisions = live(agent_settings(policy="learned", model=path), batch)
        assert decisions and all(d.profile == "default" and not d.model_version for d in decisions)


def test_shadow_mode_reports_the_disagreement_rate(caplog):
    _, _, batch, _ = snapshot()
    agent = Agent(agent_settings(policy="binpack", shadow="spread"))
    with caplog.at_level(logging.INFO, logger="cloudai.agent"):
        agent._answer(CaptureStub(), batch)
    shadow = agent.shadow
    assert shadow is not None and shadow.decisions == 60
    assert 0 < shadow.disagreements <= 60
    line = next(r.getMessage() for r in caplog.records if "shadow spread" in r.getMessage())
    assert f"disagreement rate {shadow.rate:.1%} over 60" in line
    same = Agent(agent_settings(policy="binpack", shadow="binpack"))
    same._answer(CaptureStub(), batch)
    assert same.shadow is not None and same.shadow.rate == 0.0


def test_model_file_round_trips_with_its_version(tmp_path):
    k = len(FEATURES)
    m = LearnedModel.new([1.0] * k, [-1.0] * k, meta={"note": "test"})
    path = m.save(tmp_path / "m.joblib")
    back = load_model(path)
    assert back.version == m.version and back.version.startswith("learned-")
    assert back.weights(True).tolist() == [1.0] * k and back.meta == {"note": "test"}
    assert back.features == FEATURES


def test_model_with_an_older_feature_subset_still_loads_and_orders(tmp_path):
    old = FEATURES[:9]  # the first feature set
    m = LearnedModel.new([-1.0] + [0.0] * 8, [0.0] * 9, features=old)
    back = load_model(m.save(tmp_path / "old.joblib"))
    assert back.features == old
    cols = JobColumns(
        submit=np.zeros(3), wait=np.zeros(3), runtime=np.array([300.0, 10.0, 60.0]),
        procs=np.ones(3), fits=np.ones(3, bool), free=4.0, capacity=4.0,
    )  # fmt: skip
    keys = LearnedOrderer(back, backfill=True).keys(cols)
    assert np.argsort(keys).tolist() == [1, 2, 0]  # shortest first, as weighted
    bad = LearnedModel.new([0.0], [0.0], features=("no_such_feature",))
    with pytest.raises(ModelError, match="other features"):
        load_model(bad.save(tmp_path / "bad.joblib"))
