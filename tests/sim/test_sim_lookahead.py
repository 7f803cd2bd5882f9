"""The look-ahead planner (agent/learn/lookahead.py) on hand-checked cases: it
replays candidates by requested times only, and its imagined arrivals come only from
held-out jobs."""

from __future__ import annotations

import numpy as np

from cloudai.agent.learn.heldout import eval_mask
from cloudai.agent.learn.lookahead import Planner, PlannerSim
from cloudai.agent.learn.resample import FutureSampler
from cloudai.agent.policy.registry import REGISTRY, Kind
from cloudai.agent.sim.machine import simulate_machine
from cloudai.agent.sim.runner import load_trace

from .helpers import jobs


def _fcfs_planner(**kw) -> Planner:
    return Planner(REGISTRY.create(Kind.ORDERER, "fcfs"), horizon=2000.0, **kw)


def test_the_planner_starts_the_short_job_first_where_fcfs_would_not():
    """A 4-wide 1,000 s job and a 1-wide 10 s job arrive together on 4 processors.
    FCFS starts the wide one: the short one waits 1,000 s (bsld 101). Replaying both
    choices, the planner starts the short one: the wide one waits 10 s (bsld 1.01)."""
    t = jobs((0, 1000, 4, 1000), (0, 10, 1, 10))
    fcfs = simulate_machine(t, 4, REGISTRY.create(Kind.ORDERER, "fcfs"))
    assert fcfs.start.tolist() == [0.0, 1000.0]
    planned = PlannerSim(t, 4, _fcfs_planner()).run()
    assert planned.start.tolist() == [10.0, 0.0]


def test_the_planner_replays_requested_times_not_run_times():
    """The short job asks for 10 s but runs 5,000 s: the planner, which cannot know,
    still starts it first, and the wide job then really waits 5,000 s."""
    t = jobs((0, 1000, 4, 1000), (0, 5000, 1, 10))
    planned = PlannerSim(t, 4, _fcfs_planner()).run()
    assert planned.start.tolist() == [5000.0, 0.0]


def test_rollout_costs_are_the_hand_computed_slowdowns():
    t = jobs((0, 1000, 4, 1000), (0, 10, 1, 10))
    sim = PlannerSim(t, 4, _fcfs_planner())
    sim._advance(arrivals=True)  # both jobs arrive at t = 0
    known, tasks = sim._known(np.random.default_rng(0))
    assert sim.candidates(sim.queue) == [0, 1]
    assert sim.rollout(known, tasks, 0) == 1.0 + (1000 + 10) / 10
    assert sim.rollout(known, tasks, 1) == (10 + 1000) / 1000 + 1.0


def test_imagined_arrivals_are_held_out_jobs_in_the_window_and_seeded(lublin):
    trace = load_trace(lublin)
    mask = eval_mask(len(trace), 10, 1024, 1)
    future = FutureSampler(trace, mask)
    t0 = float(trace.submit[5000])
    a = future.draw(t0, t0 + 6 * 3600, np.random.default_rng(3))
    b = future.draw(t0, t0 + 6 * 3600, np.random.default_rng(3))
    assert len(a) > 10 and a.submit.tolist() == b.submit.tolist()
    assert np.all((a.submit > t0) & (a.submit <= t0 + 6 * 3600)) and np.all(np.diff(a.submit) > 0)
    held_out = set(trace.job_id[~mask].tolist())
    assert set(a.job_id.tolist()) <= held_out


def test_the_planner_with_imagined_arrivals_is_deterministic(lublin):
    trace = load_trace(lublin)
    future = FutureSampler(trace, eval_mask(len(trace), 10, 1024, 1))
    part = trace.window(312, 120)
    plan = Planner(REGISTRY.create(Kind.ORDERER, "f1"), future, seed=1)
    one, two = (PlannerSim(part, 256, plan).run() for _ in range(2))
    assert np.array_equal(one.start, two.start) and not np.isnan(one.start).any()
