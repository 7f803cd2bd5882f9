"""The fast path's building blocks: exact single-worker totals, fused terms, shortlists,
and explanations computed later, from a record that creates no reference cycle."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from cloudai.agent.policy import REGISTRY, Placement, Profile, place_batch
from cloudai.agent.policy.batch import Batch
from cloudai.agent.policy.core import Pipeline
from cloudai.agent.policy.explain import DecisionLog
from cloudai.agent.policy.fused import fuse
from cloudai.agent.policy.plan import ScoringPlan
from cloudai.agent.policy.scorers import feature_matrix
from cloudai.agent.policy.shortlist import Shortlist
from cloudai.agent.policy.synthetic import random_cluster, random_tasks

PROFILES = [
    Profile("default-like", {"least_allocated": 1, "balanced_allocation": 1, "live_load": 1}),
    Profile("uneven", {"least_allocated": 2.0, "balanced_allocation": 0.5, "image_locality": 3}),
    Profile("pack", {"most_allocated": 1.0, "image_locality": 1.0}),
]


def _plan(profile: Profile, state) -> ScoringPlan:
    return ScoringPlan(Pipeline.build(profile).scorers, state)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
@pytest.mark.parametrize("seed", [0, 1])
def test_one_workers_value_is_bit_for_bit_the_clusters_total(profile, seed):
    """`value` (Python floats, one worker) and `total` (numpy, every worker) must agree
    exactly, or a tie between a re-ranked worker and an untouched one could break the
    wrong way. Checked after reservations, so that fused columns are in the matrix."""
    state = random_cluster(90, seed)
    plan = _plan(profile, state)
    tasks = random_tasks(60, seed, workers=90)
    rng = np.random.default_rng(seed)
    for task in tasks:
        gpu = task.gpu > 0
        phi = (feature_matrix([task])[0] * plan.feature_scale)[list(plan.features(gpu))]
        total, _ = plan.total(task, phi, np.ones(len(state), bool))
        got = [plan.value(task, phi.tolist(), j) for j in range(len(state))]
        assert got == total.tolist()
        j = int(rng.integers(len(state)))
        plan.reserved(j, state.reserve(j, task.cpu, task.memory_bytes, task.gpu))


@pytest.mark.parametrize("name", ["least_allocated", "most_allocated", "balanced_allocation"])
@pytest.mark.parametrize("gpu", [False, True])
def test_fused_terms_give_the_terms_numbers(name, gpu):
    scorer = REGISTRY.create("scorer", name)
    features = ScoringPlan.features(gpu)
    column = fuse([scorer.terms], gpu, features, None, 0.25)
    assert column is not None
    state = random_cluster(40, 3)
    for j in range(len(state)):
        view = state.workers_view(j)
        want = [t for f, t in enumerate(scorer.terms(view, gpu)) if f in features]
        want[0] += 0.25
        assert column(*view) == want


def test_terms_that_inspect_the_view_are_not_fused():
    class Branchy:
        def terms(self, v, gpu):
            return (1.0 if v.a_cpu > 0.5 else 0.0,) + (0.0,) * 9

    class Numpy:
        def terms(self, v, gpu):
            return (np.minimum(v.a_cpu, 1.0),) + (0.0,) * 9

    for scorer in (Branchy(), Numpy()):
        assert fuse([scorer.terms], False, ScoringPlan.features(False), None, 0.0) is None


def test_shortlist_stays_the_exact_ranking():
    """Re-ranking the head worker, again and again, gives the same order as sorting
    the whole row each time (ties to the lowest index), as long as the list lasts."""
    rng = np.random.default_rng(5)
    for _ in range(200):
        n, m = int(rng.integers(1, 30)), int(rng.integers(1, 8))
        values = rng.integers(0, 6, size=n).astype(float)  # many ties
        alive = rng.random(n) < 0.8
        feasible = int(alive.sum())
        short = Shortlist(values.copy(), alive, min(m, feasible), feasible)
        current = {j: values[j] for j in np.flatnonzero(alive)}
        for _ in range(m - 1):
            if not short.workers:
                break
            want = sorted(current, key=lambda j: (-current[j], j))
            assert short.workers == want[: len(short.workers)]
            j = short.workers[0]
            if rng.random() < 0.2:
                del current[j]
                short.rerank_first(None)
            else:
                current[j] = float(rng.integers(0, 6))
                short.rerank_first(current[j])


def test_explanations_read_later_describe_the_moment_of_decision():
    """Per-plugin scores are computed when first read; the simulator may have placed
    more on the same state by then, and that must not change them."""
    tasks = random_tasks(400, 2, workers=60)
    ahead = place_batch(tasks[:200], random_cluster(60, 2), now=1e6)
    read_now = [[c.to_dict() for c in p.candidates] for p in ahead]
    state = random_cluster(60, 2)
    later = place_batch(tasks[:200], state, now=1e6, mutate=True)
    place_batch(tasks[200:], state, now=1e6, mutate=True)
    assert [[c.to_dict() for c in p.candidates] for p in later] == read_now


def test_a_batch_leaves_no_reference_cycles():
    """What a batch leaves behind is freed by reference counting alone: the candidate
    tables computed later hold their record, and the record holds no placement."""
    ours = (Placement, Batch, DecisionLog, ScoringPlan)
    place_batch(random_tasks(80, 4, workers=30), random_cluster(30, 4), now=1e6)
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for profile in ("default", "tetris", "binpack"):
            ps = place_batch(random_tasks(80, 4, workers=30), random_cluster(30, 4), profile)
            del ps
        gc.collect()
        assert not [o for o in gc.garbage if isinstance(o, ours)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        if was:
            gc.enable()
