"""The pipeline: reservations within a batch, pins, hints, records, and its fast paths."""

from __future__ import annotations

import pytest

from cloudai.agent.policy import batch as batch_module
from cloudai.agent.policy import (
    make_state,
    make_task,
    make_worker,
    place_batch,
    to_decision_record,
)
from cloudai.agent.policy.synthetic import random_cluster, random_tasks


def test_reservation_prevents_overcommit():
    state = make_state(make_worker("w1").cpu(8).mem("16g"))
    tasks = [make_task(f"t{i}").cpu(3).mem("1g").build() for i in range(3)]
    ps = place_batch(tasks, state, "binpack", now=0)
    assert [p.worker_id for p in ps] == ["w1", "w1", ""]
    assert ps[2].rejections == {"insufficient cpu": 1}
    assert ps[2].hint == (
        "request <= 2 cpu (largest free on a healthy worker), or wait for running tasks to finish"
    )
    # The caller's snapshot is untouched unless it asks for the reservations.
    assert state.allocated.tolist() == [[0.0, 0.0, 0.0]]


def test_mutate_keeps_the_reservations():
    state = make_state(make_worker("w1").cpu(8).mem("16g"))
    place_batch([make_task("t").cpu(3).mem("1g").build()], state, now=0, mutate=True)
    assert state.allocated.tolist() == [[3.0, 1024**3, 0.0]]


def test_spread_rotates_over_identical_workers():
    state = make_state(*(make_worker(f"w{i}").cpu(4).mem("4g") for i in range(3)))
    ps = place_batch([make_task(f"t{i}").build() for i in range(4)], state, "spread", now=0)
    assert [p.worker_id for p in ps] == ["w0", "w1", "w2", "w0"]


def test_gpu_tasks_share_a_gpu_until_it_is_full():
    state = make_state(make_worker("g").cpu(16).mem("32g").gpu(1))
    ps = place_batch([make_task(f"t{i}").gpu(0.5).build() for i in range(3)], state, now=0)
    assert [p.worker_id for p in ps] == ["g", "g", ""]
    assert ps[2].rejections == {"insufficient gpu": 1}
    assert ps[2].hint == "wait for capacity: no matching healthy worker has any gpu free"


def test_pinned_task_skips_scorers_but_not_filters():
    state = make_state(
        make_worker("big").cpu(32).mem("64g"),
        make_worker("small").cpu(2).mem("2g"),
    )
    ok, too_big, unknown = place_batch(
        [
            make_task("ok").cpu(1).pin("small").build(),
            make_task("too-big").cpu(4).pin("small").build(),
            make_task("unknown").pin("nope").build(),
        ],
        state,
        now=0,
    )
    assert (ok.worker_id, ok.pinned, ok.summary) == (
        "small",
        True,
        "pinned to small: filters passed, scorers skipped",
    )
    assert [c.scores for c in ok.candidates] == [{}]
    # "small" has 1 cpu left after "ok": the pin is rejected with that worker's reason.
    assert too_big.worker_id == ""
    assert too_big.rejections == {"insufficient cpu": 1}
    assert too_big.hint == "request <= 1 cpu (free on small)"
    assert unknown.rejections == {"unknown worker": 1}
    assert "not registered" in unknown.hint


def test_pinned_to_a_draining_worker():
    state = make_state(make_worker("d").cpu(8).draining(), make_worker("ok").cpu(8))
    [p] = place_batch([make_task("t").pin("d").build()], state, now=0)
    assert p.worker_id == ""
    assert p.rejections == {"worker draining": 1}
    assert p.hint == "worker d is draining: pin another worker"


def test_pinned_to_a_worker_without_a_gpu():
    state = make_state(make_worker("a").cpu(8).gpu(1), make_worker("b").cpu(8))
    [p] = place_batch([make_task("t").gpu(0.5).pin("b").build()], state, now=0)
    assert (p.worker_id, p.hint) == ("", "worker b has no GPU")


HINTS = [
    (
        "memory",
        [make_worker("a").cpu(8).mem("8g").used(mem="2g"), make_worker("b").cpu(8).mem("4g")],
        make_task("t").cpu(1).mem("10g"),
        "request <= 6.0 GiB memory (largest free on a healthy worker)",
    ),
    (
        "memory, and waiting helps",
        [make_worker("a").cpu(8).mem("16g").used(mem="14g"), make_worker("b").cpu(8).mem("4g")],
        make_task("t").cpu(1).mem("8g"),
        "request <= 4.0 GiB memory (largest free on a healthy worker), "
        "or wait for running tasks to finish",
    ),
    (
        "label nobody has",
        [make_worker("a").label("gpu", "t4"), make_worker("b")],
        make_task("t").cpu(0.5).selector(gpu="a100"),
        "no worker has label gpu=a100",
    ),
    (
        "label only a dead worker has",
        [make_worker("a").label("gpu", "a100").unhealthy(), make_worker("b")],
        make_task("t").cpu(0.5).selector(gpu="a100"),
        "no healthy worker has label gpu=a100",
    ),
    (
        "no healthy worker",
        [make_worker("a").unhealthy(), make_worker("b").draining()],
        make_task("t"),
        "no active worker (1 draining, 1 inactive): "
        "`cloudai drain b --undo` lets b take tasks again",
    ),
    (
        "no gpu anywhere",
        [make_worker("a").cpu(8).mem("8g")],
        make_task("t").gpu(1),
        "no healthy worker has a GPU",
    ),
    (
        "a GPU share, no gpu anywhere",
        [make_worker("a").cpu(8).mem("8g"), make_worker("b").cpu(4).mem("4g")],
        make_task("t").gpu(0.5),
        "no healthy worker has a GPU",
    ),
    (
        "gpu only on a worker without the labels",
        [make_worker("a").cpu(8).gpu(1), make_worker("b").cpu(8).label("zone", "d")],
        make_task("t").gpu(0.5).selector(zone="d"),
        "no healthy worker with its labels has a GPU",
    ),
    (
        "two resources short on every worker",
        [make_worker("a").cpu(2).mem("2g"), make_worker("b").cpu(3).mem("1g")],
        make_task("t").cpu(4).mem("4g"),
        "request <= 2 cpu and <= 2.0 GiB memory (free on a)",
    ),
    (
        "avoided everywhere",
        [make_worker("a").cpu(8)],
        make_task("t").avoid("a"),
        "the only matching workers are avoided after this task failed there",
    ),
]


@pytest.mark.parametrize("workers,task,hint", [h[1:] for h in HINTS], ids=[h[0] for h in HINTS])
def test_unplaced_hint(workers, task, hint):
    [p] = place_batch([task.build()], make_state(*workers), now=0)
    assert p.worker_id == ""
    assert p.hint == hint
    assert p.summary.startswith("unplaced: 0 of")


def test_placed_summary_names_the_winner_and_scores():
    state = make_state(make_worker("w1").cpu(4).mem("4g"), make_worker("w2").cpu(8).mem("8g"))
    [p] = place_batch([make_task("t").cpu(2).mem("1g").build()], state, "spread", now=0)
    # w2 after the task: 6/8 cpu and 7/8 GiB free -> mean 81.25.
    assert p.summary == (
        "placed on w2: best total 81.2 (least_allocated 81); runner-up w1 62.5; "
        "2 of 2 workers feasible"
    )
    assert len(p.candidates) == 2


def test_top_k_limits_the_candidates():
    state = make_state(*(make_worker(f"w{i}").cpu(4).mem("4g") for i in range(6)))
    [p] = place_batch([make_task("t").build()], state, now=0, top_k=5)
    assert len(p.candidates) == 5
    [p] = place_batch([make_task("t").build()], state, now=0, top_k=1)
    assert [c.worker_id for c in p.candidates] == ["w0"]


def test_decision_record_carries_the_explanation():
    state = make_state(make_worker("w1").cpu(4).mem("4g").image("app:1"), make_worker("w2").cpu(4))
    [p] = place_batch([make_task("t").image("app:1").build()], state, now=0)
    rec = to_decision_record(
        p, "default", "default", "", fallback=True, source="master", decided_at=5.0
    )
    assert (rec.task_id, rec.attempt, rec.worker_id) == ("t", 1, "w1")
    assert (rec.policy, rec.profile, rec.fallback, rec.source, rec.decided_at) == (
        "default",
        "default",
        True,
        "master",
        5.0,
    )
    assert rec.candidates[0]["worker_id"] == "w1"
    assert set(rec.candidates[0]["scores"]) == {
        "least_allocated",
        "balanced_allocation",
        "image_locality",
        "live_load",
    }
    assert rec.candidates[0]["scores"]["image_locality"] == 100.0
    assert rec.summary == p.summary


def test_empty_batch_and_empty_cluster():
    assert place_batch([], make_state(make_worker("w")), now=0) == []
    [p] = place_batch([make_task("t").build()], make_state(), now=0)
    assert p.worker_id == ""
    assert p.hint == (
        "no worker to place on (none registered, or all unreachable or without a "
        "Docker engine): start a worker"
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("profile", ["default", "binpack", "spread"])
def test_incremental_path_decides_exactly_like_the_full_path(monkeypatch, seed, profile):
    """Replicas of a job reuse the previous evaluation; that must change nothing."""
    state = random_cluster(120, seed)
    tasks = random_tasks(1500, seed, workers=120)
    fast = place_batch(tasks, state, profile, now=1e6)
    original = batch_module.Batch.__init__

    def no_reuse(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self._incremental = False

    monkeypatch.setattr(batch_module.Batch, "__init__", no_reuse)
    slow = place_batch(tasks, state, profile, now=1e6)
    assert sum(p.placed for p in fast) > 0
    assert sum(not p.placed for p in fast) > 0  # the run covers full workers too
    for a, b in zip(fast, slow, strict=True):
        assert (a.task_id, a.worker_id, a.rejections, a.hint) == (
            b.task_id,
            b.worker_id,
            b.rejections,
            b.hint,
        )
        assert list(a.candidates) == list(b.candidates)


def test_same_seed_same_decisions():
    tasks = random_tasks(300, 4, workers=80)
    a = place_batch(tasks, random_cluster(80, 4), now=1e6)
    b = place_batch(tasks, random_cluster(80, 4), now=1e6)
    assert [p.worker_id for p in a] == [p.worker_id for p in b]


def test_never_overcommits_a_random_cluster():
    state = random_cluster(50, 9)
    tasks = random_tasks(2000, 9, workers=50)
    before = state.free.copy()
    ps = place_batch(tasks, state, "binpack", now=1e6)
    used = {w: [0.0, 0.0, 0.0] for w in state.ids}
    demand = {t.task_id: t for t in tasks}
    for p in ps:
        if p.placed:
            t = demand[p.task_id]
            for r, v in enumerate((t.cpu, t.memory_bytes, t.gpu)):
                used[p.worker_id][r] += v
    for j, w in enumerate(state.ids):
        for r in range(3):
            assert used[w][r] <= before[r, j] + 1e-6 or used[w][r] == 0.0
