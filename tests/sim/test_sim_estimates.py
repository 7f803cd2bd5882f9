"""Run-time estimates from users' past jobs, and training sequences drawn from a
workload model fitted to the held-out jobs."""

from __future__ import annotations

import numpy as np
import pytest

from cloudai.agent.learn.heldout import eval_mask, offered_load, train_jobs
from cloudai.agent.learn.model import LearnedModel, ModelError, load_model
from cloudai.agent.learn.priority import LearnedOrderer, LinearPriority, RecentRuntimes
from cloudai.agent.learn.resample import hourly_gaps, resampled_sequences
from cloudai.agent.policy.job_ordering import JobColumns
from cloudai.agent.sim.machine import simulate_machine
from cloudai.agent.sim.runner import load_trace

from .helpers import jobs


def _cols(users, runtime):
    n = len(users)
    return JobColumns(
        submit=np.zeros(n),
        wait=np.zeros(n),
        runtime=np.asarray(runtime, np.float64),
        procs=np.ones(n),
        fits=np.ones(n, bool),
        user=np.asarray(users, np.int64),
    )


def test_recent_runtimes_average_the_last_k_completions_capped_by_the_request():
    est = RecentRuntimes(2)
    c = _cols([7, 8, -1], [500.0, 500.0, 500.0])
    assert est.estimate(c).tolist() == [500.0, 500.0, 500.0]  # nothing ended yet
    for run in (900.0, 100.0, 300.0):  # only the last two count: (100 + 300) / 2
        est.observe(7, run)
    est.observe(-1, 5.0)  # no user id: never pooled
    est.observe(8, 2000.0)  # longer than job 8's request: the request caps it
    assert est.estimate(c).tolist() == [200.0, 500.0, 500.0]
    with pytest.raises(ValueError):
        RecentRuntimes(0)


class _Spy:
    """An orderer that records what the simulator tells it (FCFS order)."""

    def __init__(self):
        self.seen = []

    def observe(self, user, runtime):
        self.seen.append((user, runtime))

    def keys(self, c):
        return np.zeros(len(c.procs))


def test_the_machine_simulator_reports_each_completion_with_its_user():
    t = jobs((0, 30, 4, 60), (1, 10, 4, 60), (2, 20, 4, 60))
    t.user = np.array([5, 6, 5])
    spy = _Spy()
    out = simulate_machine(t, 4, spy)
    assert out.end.tolist() == [30.0, 40.0, 60.0]
    # The run ends once the last job has started: its own completion decides nothing.
    assert spy.seen == [(5, 30.0), (6, 10.0)]


def test_estimate_features_change_the_order_only_through_the_estimate():
    """Two jobs that ask for the same time: the one whose user's jobs ran short goes
    first when the model reads log_estimate; without history both look alike."""
    prio = LinearPriority(np.array([-1.0]), ("log_estimate",), recent=1)
    c = _cols([1, 2], [3600.0, 3600.0])
    assert prio.keys(c)[0] == prio.keys(c)[1]
    prio.observe(2, 60.0)
    k = prio.keys(c)
    assert k[1] < k[0]


def test_model_files_carry_recent_and_reject_a_bad_one(tmp_path):
    m = LearnedModel.new(np.array([-1.0]), np.array([-1.0]), features=("log_estimate",), recent=2)
    path = m.save(tmp_path / "m.joblib")
    back = load_model(path)
    assert back.recent == 2 and back.version == m.version
    assert LearnedOrderer(model=back).priority.recent.k == 2
    bad = m.to_dict()
    bad["priority"]["recent"] = -3
    import joblib

    joblib.dump(bad, tmp_path / "bad.joblib")
    with pytest.raises(ModelError, match="recent"):
        load_model(tmp_path / "bad.joblib")


def test_resampled_sequences_use_only_held_out_jobs_and_their_gaps(lublin):
    trace = load_trace(lublin)
    mask = eval_mask(len(trace), 10, 1024, 1)
    a = resampled_sequences(trace, mask, 3, 500, seed=4)
    b = resampled_sequences(trace, mask, 3, 500, seed=4)
    assert [s.submit.tolist() for s in a] == [s.submit.tolist() for s in b]  # seeded
    assert not mask[train_jobs(a, trace)].any()
    held = np.concatenate(hourly_gaps(trace, mask))
    for s in a:
        assert len(s) == 500
        assert np.isin(np.diff(s.submit), held).all()
    stretched = resampled_sequences(trace, mask, 2, 500, seed=4, load=(1.0, 1.0))
    assert [round(offered_load(s, 256), 6) for s in stretched] == [1.0, 1.0]
    with pytest.raises(ValueError):
        resampled_sequences(trace, np.ones(len(trace), bool), 1, 10, seed=0)


def test_an_hour_with_only_simultaneous_arrivals_borrows_all_the_gaps():
    """Drawing from an hour whose gaps are all 0 would never leave it."""
    t = jobs((0, 5, 1, 5), (0, 5, 1, 5), (100, 5, 1, 5), (4000, 5, 1, 5), (4600, 5, 1, 5))
    mask = np.array([False, False, True, False, False])  # two held-out stretches
    gaps = hourly_gaps(t, mask)
    assert gaps[0].tolist() == [0.0, 600.0]  # hour 0 had only a 0 gap: all gaps
    assert gaps[1].tolist() == [600.0] and gaps[5].tolist() == [0.0, 600.0]
    with pytest.raises(ValueError):
        hourly_gaps(jobs((0, 5, 1, 5), (0, 5, 1, 5)), np.zeros(2, bool))


def test_plain_training_windows_can_be_stretched_to_a_load(kth):
    from cloudai.agent.learn.train import TrainConfig, draw_parts

    trace = load_trace(kth, None).take(slice(0, 3000))
    plain = draw_parts([(trace, 100)], TrainConfig(windows=3, length=500, seed=2))
    aug = draw_parts([(trace, 100)], TrainConfig(windows=3, length=500, seed=2, load=(0.5, 0.5)))
    assert [p.trace.job_id.tolist() for p in plain] == [p.trace.job_id.tolist() for p in aug]
    assert all(round(offered_load(p.trace, 100), 6) == 0.5 for p in aug)
    assert any(round(offered_load(p.trace, 100), 6) != 0.5 for p in plain)
