"""Each baseline makes its textbook choice on a constructed case."""

from __future__ import annotations

import math

import pytest

from cloudai.agent.policy import make_state, make_task, make_worker, place_batch
from cloudai.agent.policy.job_ordering import F1, Fcfs, JobColumns, Sjf, Unicep, Wfp3
from cloudai.agent.policy.testing import tasks as build
from cloudai.agent.sim.cluster import node_state
from cloudai.agent.sim.policies import POLICY_NAMES, resolve

from .helpers import nodes

NOW = 10_000.0


def first(orderer, queue, runtime) -> str:
    o = orderer(runtime=runtime)
    return queue[o.order(queue, NOW)[0]].task_id


QUEUE = build(
    make_task("long-old").cpu(1).queued(NOW - 900),
    make_task("short-new").cpu(1).queued(NOW - 10),
    make_task("wide-mid").cpu(64).queued(NOW - 500),
)
RUNTIME = {"long-old": 3600.0, "short-new": 60.0, "wide-mid": 600.0}


@pytest.mark.parametrize(
    "orderer,expected",
    [
        (Fcfs, "long-old"),  # oldest submission
        (Sjf, "short-new"),  # shortest requested time
        # (w/r)^3 * n: wide-mid (500/600)^3 * 64 = 37 beats long-old's 0.016.
        (Wfp3, "wide-mid"),
        # w / (log2(n) r): a one-cpu job that has waited divides by ~0: first.
        (Unicep, "long-old"),
        # Submit times dominate F1 (870 log10 s): the oldest goes first here.
        (F1, "long-old"),
    ],
)
def test_orderers_textbook_choice(orderer, expected):
    assert first(orderer, QUEUE, RUNTIME) == expected


def test_orderer_formulas_match_the_readme():
    c = JobColumns.from_tasks(QUEUE, NOW, RUNTIME)
    w, r, n, s = c.wait, c.runtime, c.procs, c.submit
    assert Wfp3().keys(c).tolist() == pytest.approx((-((w / r) ** 3) * n).tolist())
    assert Unicep().keys(c)[2] == pytest.approx(-500 / (math.log2(64) * 600))
    assert F1().keys(c).tolist() == pytest.approx(
        [math.log10(x) * y + 870 * math.log10(z) for x, y, z in zip(r, n, s, strict=True)]
    )


def test_f1_among_equal_submissions_prefers_narrow_jobs_over_short_ones():
    queue = build(
        make_task("wide-short").cpu(64).queued(NOW),
        make_task("mid").cpu(8).queued(NOW),
        make_task("narrow-long").cpu(1).queued(NOW),
    )
    runtime = {"wide-short": 60.0, "mid": 600.0, "narrow-long": 3600.0}
    # log10(r) * n: 113.8, 22.2, 3.6; SJF would pick wide-short.
    assert first(F1, queue, runtime) == "narrow-long"
    assert first(Sjf, queue, runtime) == "wide-short"


def test_sjf_without_estimates_keeps_submission_order():
    assert first(Sjf, QUEUE, None) == "long-old"


def _workers():
    return make_state(
        make_worker("big").cpu(16).mem("64g"),
        make_worker("tight").cpu(4).mem("8g").used(cpu=2, mem="4g"),
        make_worker("empty").cpu(8).mem("16g"),
        make_worker("small").cpu(1).mem("1g"),
    )


@pytest.mark.parametrize(
    "policy,expected",
    [
        ("firstfit", "big"),  # the first worker that fits, in order
        ("bestfit", "tight"),  # least left over after placing
        ("binpack", "tight"),  # fullest
        ("spread", "big"),  # emptiest after placing (2/16 used)
        ("tetris", "tight"),  # free shape (cpu 2/4, mem 4/8) aligns with the demand
    ],
)
def test_pickers_textbook_choice(policy, expected):
    task = make_task("t").cpu(2).mem("4g").build()
    [p] = place_batch([task], _workers(), resolve(policy).profile, now=NOW)
    assert p.worker_id == expected


def test_roundrobin_rotates_over_workers():
    state = make_state(*(make_worker(f"w{i}").cpu(8).mem("8g") for i in range(3)))
    queue = build(*(make_task(f"t{i}").queued(NOW + i) for i in range(4)))
    ps = place_batch(queue, state, resolve("roundrobin").profile, now=NOW)
    assert [p.worker_id for p in ps] == ["w0", "w1", "w2", "w0"]


def test_random_is_seeded_and_uses_several_workers():
    state = make_state(*(make_worker(f"w{i}").cpu(64).mem("64g") for i in range(6)))
    queue = build(*(make_task(f"t{i}").queued(NOW + i) for i in range(12)))

    def picks(seed):
        prof = resolve("random").profile
        prof = type(prof)(**{**prof.__dict__, "params": {"random": {"seed": seed}}})
        return [p.worker_id for p in place_batch(queue, state, prof, now=NOW)]

    assert picks(1) == picks(1) and picks(1) != picks(2) and len(set(picks(1))) > 2


def test_fgd_avoids_breaking_a_whole_gpu():
    # n0 has a device with 0.3 free: a 0.3 task fills it exactly and fragments
    # nothing; on n1 it would split a whole GPU. Spread would pick n1.
    state = node_state(nodes(2, 2))
    state.reserve(0, 1.0, 0, 0.7)  # leaves n0 devices at [0.3, 1.0]
    task = make_task("t").cpu(1).mem("1g").gpu(0.3).build()
    for policy, expected in (("fgd", "n0"), ("spread", "n1")):
        [p] = place_batch([task], state, resolve(policy).profile, now=NOW)
        assert p.worker_id == expected, policy
    assert state.dev_free[0].tolist() == pytest.approx([0.3, 1.0])


def test_every_policy_name_resolves():
    for name in POLICY_NAMES:
        assert resolve(name).profile.scorers


def test_learned_orderer_keeps_explicit_priority_first():
    from cloudai.agent.learn.priority import LearnedOrderer

    queue = build(
        make_task("urgent-long").priority(5).queued(NOW - 1),
        make_task("plain-short").queued(NOW - 1),
    )
    runtime = {"urgent-long": 36_000.0, "plain-short": 10.0}
    assert first(LearnedOrderer, queue, runtime) == "urgent-long"
    same = build(make_task("long").queued(NOW - 1), make_task("short").queued(NOW - 1))
    assert first(LearnedOrderer, same, {"long": 36_000.0, "short": 10.0}) == "short"
