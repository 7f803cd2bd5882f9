"""Each filter rejects exactly the workers it should, with its own reason."""

from __future__ import annotations

import numpy as np
import pytest

from cloudai.agent.policy import make_state, make_task, make_worker, place_batch
from cloudai.agent.policy.filters import (
    AvoidFilter,
    CpuFilter,
    GpuFilter,
    HealthFilter,
    MemoryFilter,
    SelectorFilter,
)

# (case, workers, task, expected winner, expected rejections)
CASES = [
    (
        "cpu",
        [make_worker("small").cpu(2).mem("8g"), make_worker("big").cpu(8).mem("8g")],
        make_task("t").cpu(4).mem("1g"),
        "big",
        {"insufficient cpu": 1},
    ),
    (
        "cpu already allocated",
        [make_worker("busy").cpu(8).mem("8g").used(cpu=6), make_worker("idle").cpu(4).mem("8g")],
        make_task("t").cpu(3).mem("1g"),
        "idle",
        {"insufficient cpu": 1},
    ),
    (
        "memory",
        [make_worker("small").cpu(8).mem("2g"), make_worker("big").cpu(8).mem("16g")],
        make_task("t").cpu(1).mem("4g"),
        "big",
        {"insufficient memory": 1},
    ),
    (
        "whole gpu",
        [make_worker("none").cpu(8).mem("8g"), make_worker("one").cpu(8).mem("8g").gpu(1)],
        make_task("t").cpu(1).mem("1g").gpu(1),
        "one",
        {"insufficient gpu": 1},
    ),
    (
        "two gpus need two free",
        [
            make_worker("one").cpu(8).mem("8g").gpu(1),
            make_worker("half-used").cpu(8).mem("8g").gpu(2).used(gpu=1),
            make_worker("two").cpu(8).mem("8g").gpu(2),
        ],
        make_task("t").cpu(1).mem("1g").gpu(2),
        "two",
        {"insufficient gpu": 2},
    ),
    (
        "fractional gpu fits a shared gpu",
        [
            make_worker("full").cpu(8).mem("8g").gpu(1).used(gpu=1),
            make_worker("shared").cpu(8).mem("8g").gpu(1).used(gpu=0.5),
        ],
        make_task("t").cpu(1).mem("1g").gpu(0.5),
        "shared",
        {"insufficient gpu": 1},
    ),
    (
        "fractional gpu too big for what is left",
        [make_worker("shared").cpu(8).mem("8g").gpu(1).used(gpu=0.75)],
        make_task("t").cpu(1).mem("1g").gpu(0.5),
        "",
        {"insufficient gpu": 1},
    ),
    (
        "selector",
        [
            make_worker("a").cpu(8).mem("8g").label("zone", "a"),
            make_worker("b").cpu(8).mem("8g").label("zone", "b"),
            make_worker("none").cpu(8).mem("8g"),
        ],
        make_task("t").selector(zone="b"),
        "b",
        {"label mismatch: zone=b": 2},
    ),
    (
        "selector reports the first missing label",
        [
            make_worker("a-hdd").cpu(8).mem("8g").label("zone", "a").label("disk", "hdd"),
            make_worker("b-ssd").cpu(8).mem("8g").label("zone", "b").label("disk", "ssd"),
            make_worker("a-ssd").cpu(8).mem("8g").label("zone", "a").label("disk", "ssd"),
        ],
        make_task("t").selector(zone="a", disk="ssd"),
        "a-ssd",
        {"label mismatch: zone=a": 1, "label mismatch: disk=ssd": 1},
    ),
    (
        "unhealthy",
        [make_worker("lost").cpu(64).mem("64g").unhealthy(), make_worker("ok").cpu(2).mem("2g")],
        make_task("t"),
        "ok",
        {"worker unhealthy": 1},
    ),
    (
        "draining",
        [make_worker("leaving").cpu(64).mem("64g").draining(), make_worker("ok").cpu(2).mem("2g")],
        make_task("t"),
        "ok",
        {"worker draining": 1},
    ),
    (
        "avoid",
        [make_worker("crashed").cpu(64).mem("64g"), make_worker("ok").cpu(2).mem("2g")],
        make_task("t").avoid("crashed"),
        "ok",
        {"avoided after failure": 1},
    ),
    (
        "first failing filter wins: dead beats busy",
        [make_worker("dead-and-small").cpu(1).mem("1g").unhealthy(), make_worker("ok").cpu(8)],
        make_task("t").cpu(4).mem("128m"),
        "ok",
        {"worker unhealthy": 1},
    ),
]


@pytest.mark.parametrize(
    "workers,task,winner,rejections", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_filter_rejects_with_reason(workers, task, winner, rejections):
    [p] = place_batch([task.build()], make_state(*workers), "spread", now=0)
    assert p.worker_id == winner
    assert p.rejections == rejections
    assert p.feasible == len(workers) - sum(rejections.values())


def test_each_filter_mask_and_check_agree():
    """The vectorised mask and the one-worker check give the same verdicts."""
    rng = np.random.default_rng(7)
    workers = []
    for i in range(40):
        w = make_worker(f"w{i}").cpu(int(rng.integers(1, 9))).mem(f"{rng.integers(1, 9)}g")
        w.gpu(float(rng.choice([0, 1, 2]))).label("zone", str(rng.choice(["a", "b"])))
        w.used(cpu=float(rng.uniform(0, 1)), gpu=0.0)
        if rng.random() < 0.2:
            w.draining()
        workers.append(w)
    state = make_state(*workers)
    task = make_task("t").cpu(2).mem("3g").gpu(1).selector(zone="a").avoid("w3").build()
    for f in (
        HealthFilter(),
        AvoidFilter(),
        SelectorFilter(),
        CpuFilter(),
        MemoryFilter(),
        GpuFilter(),
    ):
        mask = f.filter(task, state)
        assert mask is not None
        assert [f.check(task, state, j) for j in range(len(state))] == mask.tolist(), f.name


@pytest.mark.parametrize(
    "f,task",
    [
        (AvoidFilter(), make_task("t")),
        (SelectorFilter(), make_task("t")),
        (CpuFilter(), make_task("t").cpu(0)),
        (MemoryFilter(), make_task("t").mem(0)),
        (GpuFilter(), make_task("t")),
    ],
    ids=["avoid", "selector", "cpu", "memory", "gpu"],
)
def test_nothing_to_check_costs_nothing(f, task):
    state = make_state(make_worker("w1"))
    assert f.filter(task.build(), state) is None


def test_unknown_avoided_worker_is_ignored():
    state = make_state(make_worker("w1").cpu(2))
    [p] = place_batch([make_task("t").avoid("gone").build()], state, now=0)
    assert p.worker_id == "w1"
    assert p.rejections == {}
