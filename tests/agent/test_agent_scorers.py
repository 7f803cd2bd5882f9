"""Each scorer orders workers as it should; the fast pipeline equals the scorers' own math."""

from __future__ import annotations

import numpy as np
import pytest

from cloudai.agent.policy import (
    BUILTIN_PROFILES,
    REGISTRY,
    Profile,
    make_state,
    make_task,
    make_worker,
    normalise,
    place_batch,
)
from cloudai.agent.policy.synthetic import random_cluster, random_tasks


def scores_of(scorer_name: str, task, state) -> dict[str, float]:
    """Normalised score per worker id, straight from the scorer (the reference path)."""
    s = REGISTRY.create("scorer", scorer_name)
    mask = np.ones(len(state), bool)
    norm = normalise(s.score(task, state, mask), s.bounds, mask)
    return dict(zip(state.ids, norm.tolist(), strict=True))


def only(scorer: str) -> Profile:
    return Profile(f"only-{scorer}", {scorer: 1.0})


# (scorer, workers, task, workers best-first by that scorer)
ORDERINGS = [
    (
        "least_allocated",
        [
            make_worker("half").cpu(8).mem("8g").used(cpu=4, mem="4g"),
            make_worker("empty").cpu(8).mem("8g"),
            make_worker("full").cpu(8).mem("8g").used(cpu=7, mem="7g"),
        ],
        make_task("t").cpu(1).mem("1g"),
        ["empty", "half", "full"],
    ),
    (
        "most_allocated",
        [
            make_worker("half").cpu(8).mem("8g").used(cpu=4, mem="4g"),
            make_worker("empty").cpu(8).mem("8g"),
            make_worker("full").cpu(8).mem("8g").used(cpu=6, mem="6g"),
        ],
        make_task("t").cpu(1).mem("1g"),
        ["full", "half", "empty"],
    ),
    (
        "balanced_allocation",
        [
            make_worker("cpu-heavy").cpu(8).mem("8g").used(cpu=6, mem="1g"),
            make_worker("even").cpu(8).mem("8g").used(cpu=3, mem="3g"),
            make_worker("mem-heavy").cpu(8).mem("8g").used(cpu=2, mem="4g"),
        ],
        make_task("t").cpu(1).mem("1g"),
        ["even", "mem-heavy", "cpu-heavy"],
    ),
    (
        "image_locality",
        [
            make_worker("cold").cpu(8).mem("8g"),
            make_worker("warm").cpu(8).mem("8g").image("docker.io/library/redis:7"),
        ],
        make_task("t").image("redis:7"),
        ["warm", "cold"],
    ),
    (
        "live_load",
        [
            make_worker("hot").cpu(8).mem("8g").load(90, 80),
            make_worker("idle").cpu(8).mem("8g").load(5, 10),
            make_worker("warm").cpu(8).mem("8g").load(50, 40),
        ],
        make_task("t"),
        ["idle", "warm", "hot"],
    ),
    (
        "tetris",
        [
            make_worker("mem-left").cpu(8).mem("16g").used(cpu=6, mem="2g"),
            make_worker("cpu-left").cpu(8).mem("16g").used(cpu=1, mem="14g"),
            make_worker("both-left").cpu(8).mem("16g").used(cpu=2, mem="4g"),
        ],
        make_task("t").cpu(4).mem("512m"),
        ["cpu-left", "both-left", "mem-left"],
    ),
]


@pytest.mark.parametrize("scorer,workers,task,best_first", ORDERINGS, ids=[o[0] for o in ORDERINGS])
def test_scorer_orders_workers(scorer, workers, task, best_first):
    state = make_state(*workers)
    t = task.build()
    got = scores_of(scorer, t, state)
    assert sorted(got, key=lambda w: -got[w]) == best_first
    assert all(0.0 <= v <= 100.0 for v in got.values())
    # The pipeline, with that scorer alone, picks the same winner and ranks the same way.
    [p] = place_batch([t], state, only(scorer), now=0)
    assert [c.worker_id for c in p.candidates] == best_first[: len(p.candidates)]
    assert p.worker_id == best_first[0]


def test_exact_values_of_allocation_scorers():
    # 8 cpu / 8 GiB, 2 cpu + 2 GiB used; a 2 cpu + 4 GiB task -> used fractions 0.5 / 0.75.
    state = make_state(make_worker("w").cpu(8).mem("8g").used(cpu=2, mem="2g"))
    t = make_task("t").cpu(2).mem("4g").build()
    assert scores_of("least_allocated", t, state) == {"w": pytest.approx(37.5)}
    assert scores_of("most_allocated", t, state) == {"w": pytest.approx(62.5)}
    # 1 - 4 * var(0.5, 0.75) = 1 - (0.25)^2
    assert scores_of("balanced_allocation", t, state) == {"w": pytest.approx(93.75)}


def test_gpu_counts_only_for_gpu_tasks():
    # An idle GPU must not make a GPU box look emptier to a CPU-only task.
    state = make_state(
        make_worker("gpu-box").cpu(8).mem("8g").gpu(4).used(cpu=4, mem="4g"),
        make_worker("cpu-box").cpu(8).mem("8g").used(cpu=4, mem="4g"),
    )
    cpu_task = make_task("c").cpu(1).mem("1g").build()
    got = scores_of("least_allocated", cpu_task, state)
    assert got["gpu-box"] == got["cpu-box"]
    gpu_task = make_task("g").cpu(1).mem("1g").gpu(1).build()
    assert scores_of("least_allocated", gpu_task, state)["gpu-box"] > got["gpu-box"]


def test_binpack_and_spread_choose_different_workers():
    workers = [
        make_worker("busy").cpu(16).mem("32g").used(cpu=10, mem="20g"),
        make_worker("quiet").cpu(16).mem("32g").used(cpu=2, mem="4g"),
        make_worker("medium").cpu(16).mem("32g").used(cpu=6, mem="12g"),
    ]
    t = make_task("t").cpu(2).mem("2g").build()
    [packed] = place_batch([t], make_state(*workers), "binpack", now=0)
    [spread] = place_batch([t], make_state(*workers), "spread", now=0)
    assert (packed.worker_id, spread.worker_id) == ("busy", "quiet")


def test_live_load_separates_equal_reservations():
    # Same reservations, so only telemetry tells them apart: the default profile
    # prefers the idle one.
    state = make_state(
        make_worker("noisy").cpu(8).mem("8g").load(95, 90),
        make_worker("calm").cpu(8).mem("8g").load(3, 10),
    )
    [p] = place_batch([make_task("t").build()], state, now=0)
    assert p.worker_id == "calm"
    assert p.candidates[0].scores["live_load"] > p.candidates[1].scores["live_load"]


def test_live_load_counts_what_the_batch_just_placed():
    # Two idle twins: after the first task lands on one, its predicted load rises,
    # so the second task goes to the other even under a live-load-only profile.
    state = make_state(make_worker("a").cpu(4).mem("4g"), make_worker("b").cpu(4).mem("4g"))
    ps = place_batch(
        [make_task("t1").cpu(2).build(), make_task("t2").cpu(2).build()],
        state,
        only("live_load"),
        now=0,
    )
    assert [p.worker_id for p in ps] == ["a", "b"]


@pytest.mark.parametrize("profile", sorted(BUILTIN_PROFILES))
@pytest.mark.parametrize("seed", [1, 2])
def test_pipeline_totals_equal_reference_scores(profile, seed):
    """Decision by decision, every candidate's per-plugin scores and total equal the
    weighted sum of the scorers' own normalised scores on the state at that moment."""
    state = random_cluster(60, seed)
    tasks = random_tasks(40, seed, workers=60)
    prof = BUILTIN_PROFILES[profile]
    for task in tasks:
        before = state.copy()
        [p] = place_batch([task], state, prof, now=0, mutate=True)
        for c in p.candidates:
            ref = {n: scores_of(n, task, before)[c.worker_id] for n in prof.scorers}
            assert c.scores == pytest.approx(ref, abs=1e-6)
            total = sum(prof.scorers[n] * v for n, v in ref.items())
            assert c.total == pytest.approx(total, abs=1e-6)
        if p.candidates:
            best = max(c.total for c in p.candidates)
            assert p.candidates[0].total == pytest.approx(best)


def test_ties_go_to_the_lowest_index():
    state = make_state(*(make_worker(f"w{i}").cpu(4).mem("4g") for i in range(5)))
    [p] = place_batch([make_task("t").build()], state, "spread", now=0)
    assert [c.worker_id for c in p.candidates] == ["w0", "w1", "w2"]


def test_normalise_bounds_and_minmax():
    raw = np.array([0.0, 0.5, 1.0, 2.0])
    assert normalise(raw, (0.0, 1.0)).tolist() == [0.0, 50.0, 100.0, 100.0]
    mask = np.array([True, True, True, False])
    assert normalise(raw, None, mask).tolist()[:3] == [0.0, 50.0, 100.0]
    assert normalise(np.array([3.0, 3.0]), None).tolist() == [100.0, 100.0]
