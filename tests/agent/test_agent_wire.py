"""Protobuf in and out: what the agent reads from a batch and what it sends back."""

from __future__ import annotations

import numpy as np

from cloudai.agent.fallback import decide_default
from cloudai.agent.policy import make_state, make_task, make_worker, place_batch
from cloudai.agent.policy.synthetic import random_tasks, random_workers
from cloudai.agent.wire import (
    batch_from_pb,
    batch_to_pb,
    decision_to_pb,
    placement_from_pb,
    placements_to_pb,
)
from cloudai.convert import decision_from_pb
from cloudai.model import WorkerHealth
from cloudai.proto import common_pb2, master_agent_pb2


def test_batch_round_trip():
    workers = random_workers(30, seed=3)
    tasks = random_tasks(50, seed=3, workers=30)
    msg = master_agent_pb2.SchedulingBatch.FromString(
        batch_to_pb(tasks, workers, sequence=7, timestamp=123.0).SerializeToString()
    )
    got_tasks, state = batch_from_pb(msg)
    assert got_tasks == tasks
    expected = make_state(*workers)
    assert state.ids == expected.ids
    for field in ("cap", "free", "health_code", "cpu_percent", "memory_percent", "view"):
        assert np.array_equal(getattr(state, field), getattr(expected, field)), field
    assert state.labels == expected.labels
    assert state.cached_images == expected.cached_images


def test_worker_snapshot_fields_map_to_the_state():
    msg = master_agent_pb2.SchedulingBatch(
        workers=[
            master_agent_pb2.WorkerSnapshot(
                worker_id="w1",
                capacity=common_pb2.Resources(cpu=8, memory_bytes=16 * 1024**3, gpu=1),
                allocated=common_pb2.Resources(cpu=2, memory_bytes=4 * 1024**3, gpu=0.5),
                telemetry=common_pb2.Telemetry(
                    cpu_percent=40.0, memory_used_bytes=1, memory_total_bytes=4
                ),
                cached_images=["busybox"],
                labels={"zone": "a"},
                health=common_pb2.WORKER_HEALTH_DRAINING,
            )
        ]
    )
    _, state = batch_from_pb(msg)
    assert state.capacity.tolist() == [[8.0, 16 * 1024**3, 1.0]]
    assert state.allocated.tolist() == [[2.0, 4 * 1024**3, 0.5]]
    assert state.health_of(0) == WorkerHealth.DRAINING
    # memory_percent missing: derived from used / total.
    assert state.memory_percent.tolist() == [25.0]
    assert state.image_mask("busybox:latest").tolist() == [True]


def test_decisions_carry_scores_rejections_and_hints():
    state = make_state(
        make_worker("w1").cpu(4).mem("8g").image("app:1"),
        make_worker("w2").cpu(2).mem("2g").unhealthy(),
    )
    placed, unplaced = place_batch(
        [make_task("ok").cpu(1).image("app:1").build(), make_task("huge").cpu(64).build()],
        state,
        now=0,
    )
    batch = placements_to_pb(
        [placed, unplaced], agent_id="a1", sequence=9, policy="default", profile="default"
    )
    batch = master_agent_pb2.PlacementBatch.FromString(batch.SerializeToString())
    assert (batch.agent_id, batch.sequence, len(batch.decisions)) == ("a1", 9, 2)
    ok, huge = batch.decisions
    assert (ok.task_id, ok.worker_id, ok.policy, ok.profile, ok.source) == (
        "ok",
        "w1",
        "default",
        "default",
        "agent",
    )
    assert ok.candidates[0].worker_id == "w1"
    assert ok.candidates[0].scores["image_locality"] == 100.0
    assert ok.summary.startswith("placed on w1")
    assert huge.worker_id == ""
    assert dict(huge.rejections) == {"worker unhealthy": 1, "insufficient cpu": 1}
    assert huge.hint == "request <= 3 cpu (largest free on a healthy worker)"
    for original, sent in ((placed, ok), (unplaced, huge)):
        back = placement_from_pb(sent)
        assert (back.task_id, back.worker_id, back.rejections, back.hint) == (
            original.task_id,
            original.worker_id,
            original.rejections,
            original.hint,
        )
        assert list(back.candidates) == list(original.candidates)


def test_decision_fields_for_the_master_record():
    state = make_state(make_worker("w1"))
    [p] = place_batch([make_task("t").attempt(3).build()], state, now=0)
    d = decision_to_pb(
        p, policy="p", profile="q", model_version="m1", fallback=True, decided_at=1.5
    )
    rec = decision_from_pb(d)
    assert (rec.attempt, rec.model_version, rec.fallback, rec.decided_at) == (3, "m1", True, 1.5)


def test_master_fallback_uses_the_same_library():
    workers = [
        make_worker("w1").cpu(2).mem("4g").build(),
        make_worker("w2").cpu(8).mem("8g").build(),
    ]
    tasks = [make_task("t1").cpu(4).build(), make_task("t2").cpu(16).build()]
    decisions = decide_default(batch_to_pb(tasks, workers, timestamp=10.0))
    assert [(d.task_id, d.worker_id) for d in decisions] == [("t1", "w2"), ("t2", "")]
    assert all(d.policy == "default" and d.profile == "default" for d in decisions)
    # Hints describe the state after the batch: t1 took 4 of w2's 8 cpus.
    assert decisions[1].hint == "request <= 4 cpu (largest free on a healthy worker)"
