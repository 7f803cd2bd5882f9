"""The simulators on hand-checked scenarios: exact bsld, JCT, waits, fragmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cloudai.agent.policy.fgd import Workload
from cloudai.agent.sim.cluster import saturate
from cloudai.agent.sim.machine import simulate_machine
from cloudai.agent.sim.metrics import metrics
from cloudai.agent.sim.policies import resolve
from cloudai.agent.sim.runner import SimConfig, compare, load_trace

from .helpers import jobs, nodes, pods


def run(trace, policy="fcfs", backfill=False, procs=4):
    return metrics(simulate_machine(trace, procs, resolve(policy).make_orderer(), backfill))


def test_fcfs_waits_jct_and_bsld_by_hand():
    # A fills the machine until 100; B (1 cpu) and C (2 cpus) both start then.
    m = run(jobs((0, 100, 4, 100), (10, 5, 1, 5), (20, 50, 2, 50)))
    # waits 0, 90, 80; runs 100, 5, 50; bsld 1, 95/10, 130/50
    assert m["mean_wait"] == pytest.approx(170 / 3)
    assert m["bsld"] == pytest.approx((1 + 9.5 + 2.6) / 3)
    assert m["mean_jct"] == pytest.approx((100 + 95 + 130) / 3)
    assert m["makespan"] == 150.0
    assert m["utilization"] == pytest.approx(505 / 600)
    assert m["unplaced"] == 0 and m["unallocated_gpu_frac"] is None


def test_sjf_runs_the_short_job_first_and_lowers_bsld():
    trace = jobs((0, 100, 4, 100), (1, 50, 4, 50), (1, 10, 4, 10))
    # B and C queue together. FCFS: B 100-150, C 150-160; SJF: C 100-110, B 110-160.
    assert run(trace, "fcfs")["bsld"] == pytest.approx((1 + 149 / 50 + 159 / 10) / 3)
    assert run(trace, "sjf")["bsld"] == pytest.approx((1 + 159 / 50 + 109 / 10) / 3)


def test_a_chosen_job_waits_for_its_processors_without_being_re_ranked():
    # As in SchedGym: at t=1 B is the only job and is chosen; C, shorter, arrives at 2
    # but B keeps its turn (without backfilling) and starts at 100.
    trace = jobs((0, 100, 4, 100), (1, 50, 4, 50), (2, 10, 4, 10))
    o = simulate_machine(trace, 4, resolve("sjf").make_orderer())
    assert o.start.tolist() == [0, 100, 150]


def test_easy_backfilling_starts_a_job_that_ends_before_the_reservation():
    trace = jobs((0, 100, 2, 100), (1, 100, 4, 100), (2, 50, 2, 50), (3, 200, 2, 200))
    plain = simulate_machine(trace, 4, resolve("fcfs").make_orderer(), backfill=False)
    easy = simulate_machine(trace, 4, resolve("fcfs").make_orderer(), backfill=True)
    assert plain.start.tolist() == [0, 100, 200, 200]
    # C fits beside A and ends at 52, before B's reservation at 100; D would not.
    assert easy.start.tolist() == [0, 100, 2, 200]
    assert metrics(easy)["bsld"] == pytest.approx((1 + 1.99 + 1 + 1.985) / 4)
    assert metrics(plain)["bsld"] == pytest.approx((1 + 1.99 + 4.96 + 1.985) / 4)


def test_a_job_larger_than_the_machine_is_unplaced():
    m = run(jobs((0, 10, 2, 10), (1, 10, 8, 10)))
    assert m["unplaced"] == 1 and m["mean_jct"] == 10.0


def test_fragmentation_by_hand():
    w = Workload([(0, 0, 0.5, 1), (0, 0, 1.0, 1), (0, 0, 2.0, 1)])
    dev = np.array([[1.0, 0.3], [1.0, 1.0]])
    big = np.array([64.0, 64.0])
    # Node 0: 0.3 is a fragment for the 0.5 and 1-GPU classes; the 2-GPU class cannot
    # run there, so all 1.3 free is. Node 1: nothing is a fragment.
    assert w.fragmentation(big, big * 2**30, dev).tolist() == pytest.approx([1.9 / 3, 0.0])


@pytest.mark.parametrize("policy,expected", [("firstfit", 0.0), ("fgd", 0.0), ("spread", 0.5)])
def test_saturation_unallocated_gpu_fraction(policy, expected):
    # Two 1-GPU nodes; pods of 0.5, 0.5 and 1 GPU: spreading the halves strands both.
    o = saturate(pods(0.5, 0.5, 1.0), nodes(1, 1), resolve(policy), seed=0)
    assert o.unallocated_gpu_frac == pytest.approx(expected)
    assert metrics(o)["unplaced"] == (1 if expected else 0)


def test_fractional_gpus_must_fit_on_one_device():
    # 2 devices: 0.6 + 0.6 take one device each (0.4 left on each): a 0.5 pod fits the
    # pool (0.8 free) but no device, so it is refused.
    o = saturate(pods(0.6, 0.6, 0.5, 0.3), nodes(2), resolve("firstfit"), seed=0)
    assert np.isnan(o.start).tolist() == [False, False, True, False]


def test_runs_are_deterministic_under_a_seed(lublin):
    cfg = SimConfig(seed=7, sequences=3, length=150, limit=2000)
    trace = load_trace(lublin, cfg)
    names = ["fcfs", "sjf", "random", "learned"]

    def strip(report):
        for row in report["policies"].values():
            row.pop("seconds")
        return json.dumps(report, sort_keys=True)

    assert strip(compare(trace, names, cfg)) == strip(compare(trace, names, cfg))
    other = SimConfig(seed=8, sequences=3, length=150, limit=2000)
    assert strip(compare(trace, ["fcfs"], other)) != strip(compare(trace, ["fcfs"], cfg))


def test_openb_saturation_is_deterministic(openb_pods, openb_nodes):
    cfg = SimConfig(limit=400, nodes=str(openb_nodes), node_limit=40, seed=3)
    trace = load_trace(openb_pods, cfg)
    a = compare(trace, ["random", "fgd"], cfg)["policies"]
    b = compare(trace, ["random", "fgd"], cfg)["policies"]
    for name in a:
        a[name].pop("seconds"), b[name].pop("seconds")
    assert a == b
    assert 0.0 <= a["fgd"]["unallocated_gpu_frac"] <= 1.0
