"""The start-delay features: the simulator's running-job columns give each queued
job its EASY shadow time, and the live agent (which does not know them) gets 0."""

from __future__ import annotations

import math

import numpy as np

from cloudai.agent.learn.priority import FEATURES, job_features
from cloudai.agent.policy.job_ordering import JobColumns
from cloudai.agent.sim.machine import MachineSim

from .helpers import jobs


def _cols(**kw) -> JobColumns:
    base = dict(
        submit=np.zeros(3), wait=np.zeros(3), runtime=np.array([100.0, 5.0, 50.0]),
        procs=np.array([2.0, 5.0, 9.0]), fits=np.array([True, False, False]),
        free=3.0, capacity=10.0,
    )  # fmt: skip
    return JobColumns(**{**base, **kw})


def test_start_delay_is_the_shadow_time_of_each_job():
    c = _cols(release_in=np.array([10.0, 20.0, 30.0]), release_procs=np.array([1.0, 3.0, 3.0]))
    assert c.start_delay().tolist() == [0.0, 20.0, 30.0]
    f = dict(zip(FEATURES, job_features(c).T, strict=True))
    # Job 0 fits but runs 100 s, past the earliest other start (20 s): no gap filled.
    assert f["fills_gap"].tolist() == [0.0, 0.0, 0.0]
    short = _cols(runtime=np.array([15.0, 5.0, 50.0]), release_in=c.release_in,
                  release_procs=c.release_procs)  # fmt: skip
    assert dict(zip(FEATURES, job_features(short).T, strict=True))["fills_gap"][0] == 1.0
    assert math.isclose(f["log_idle"][1], np.log10(1 + 3 * 20) / 8)


def test_without_running_jobs_known_the_delay_features_are_zero():
    f = dict(zip(FEATURES, job_features(_cols()).T, strict=True))
    for name in ("log_delay", "log_idle"):
        assert not f[name].any()


def test_machine_columns_agree_with_the_backfill_reservation():
    # 4 processors; two jobs run, a 4-processor job waits for both.
    t = jobs((0, 100, 2, 100), (0, 50, 1, 60), (1, 10, 4, 10), max_procs=4)
    sim = MachineSim(t, 4, orderer=None, backfill=True)
    sim._advance(arrivals=True)
    sim._start(0)
    sim._start(1)
    sim.t = 1.0
    sim.queue.append(2)
    cols = sim._columns(np.array([2]))
    shadow, _ = sim._reservation(2)
    assert cols.start_delay()[0] == shadow - sim.t == 99.0
