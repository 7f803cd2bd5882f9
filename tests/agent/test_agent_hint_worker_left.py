"""The hint for a task no worker can take tells a worker that shut down (it said so:
`left_s`, from the snapshot's `left_at`) from one that stopped heartbeating, and so do
its rejections: "1 worker shut down" rather than "1 worker unhealthy"."""

from __future__ import annotations

import pytest

from cloudai.agent.policy import make_task, make_worker, place_batch
from cloudai.agent.policy.hints import placement_hint
from cloudai.agent.policy.snapshot import ClusterState
from cloudai.agent.wire import batch_to_pb, state_from_pb


def _inactive(wid: str, left_s: float = -1.0):
    spec = make_worker(wid).cpu(4).mem("4g").unhealthy().build()
    spec.left_s = left_s
    return spec


SHUT, LOST = "worker shut down", "worker unhealthy"
CASES = [
    (
        "one worker, shut down",
        [_inactive("w1", 12.4)],
        "worker w1 shut down: restart it or start another",
        {SHUT: 1},
    ),
    (
        "one worker, killed",
        [_inactive("w1")],
        "worker w1 is inactive (no heartbeats): restart it or start another",
        {LOST: 1},
    ),
    (
        "all shut down",
        [_inactive("a", 30), _inactive("b", 5), _inactive("c", 90)],
        "all 3 workers shut down: restart one or start another",
        {SHUT: 3},
    ),
    (
        "some shut down, some killed",
        [_inactive("a", 30), _inactive("b"), _inactive("c", 8)],
        "all 3 workers are inactive (2 shut down, 1 without heartbeats): "
        "restart one or start another",
        {SHUT: 2, LOST: 1},
    ),
    (
        "all killed",
        [_inactive("a"), _inactive("b")],
        "all 2 workers are inactive (no heartbeats): restart one or start another",
        {LOST: 2},
    ),
]


@pytest.mark.parametrize(
    "workers,hint,rejections", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hint_and_rejections_name_the_workers_that_shut_down(workers, hint, rejections):
    [p] = place_batch([make_task("t").cpu(1).build()], ClusterState.from_workers(workers), now=0)
    assert (p.worker_id, p.hint, p.rejections) == ("", hint, rejections)


def test_rejections_count_shut_down_apart_from_draining_lost_and_busy():
    workers = [
        _inactive("left", 4),
        _inactive("lost"),
        make_worker("drain").cpu(4).mem("4g").draining().build(),
        make_worker("small").cpu(1).mem("4g").build(),
    ]
    [p] = place_batch([make_task("t").cpu(2).build()], ClusterState.from_workers(workers), now=0)
    assert p.rejections == {
        SHUT: 1,
        LOST: 1,
        "worker draining": 1,
        "insufficient cpu": 1,
    }
    assert p.summary == (
        "unplaced: 0 of 4 workers fit (1 insufficient cpu, 1 worker draining, "
        "1 worker shut down, 1 worker unhealthy)"
    )
    [p] = place_batch(
        [make_task("t").cpu(1).build()],
        ClusterState.from_workers([_inactive("a", 1), _inactive("b", 2), _inactive("c")]),
        now=0,
    )
    assert p.summary == "unplaced: 0 of 3 workers fit (2 workers shut down, 1 worker unhealthy)"


def test_a_pinned_task_hint_and_rejection_say_its_worker_shut_down():
    state = ClusterState.from_workers([_inactive("w1", 3), _inactive("w2")])
    task = make_task("t").cpu(1).build()
    assert placement_hint(task, state, only=0) == "worker w1 shut down: pin another worker"
    assert placement_hint(task, state, only=1) == "worker w2 is inactive: pin another worker"
    [p] = place_batch([make_task("t").cpu(1).pin("w1").build()], state, now=0)
    assert p.summary == "pinned worker rejected: 1 worker shut down"
    [p] = place_batch([make_task("t").cpu(1).pin("w2").build()], state, now=0)
    assert p.summary == "pinned worker rejected: 1 worker unhealthy"


def test_left_at_crosses_the_wire_as_seconds_before_the_snapshot():
    workers = [_inactive("w1", 7.5), _inactive("w2")]
    batch = batch_to_pb([], workers, timestamp=1000.0)
    assert [w.left_at for w in batch.workers] == [992.5, 0.0]
    assert state_from_pb(batch).left_s.tolist() == [7.5, -1.0]
    # A master without the field (an older one) sends 0: no worker left.
    batch.workers[0].ClearField("left_at")
    assert state_from_pb(batch).left_s.tolist() == [-1.0, -1.0]


def test_explain_counts_rejections_as_the_summary_does():
    """`cloudai explain` lists the stored rejections most first, ties by name, and says
    "workers" for more than one, as the decision's summary does."""
    import dataclasses

    from cloudai.master.explain import explain_text
    from tests.store.builders import make_decision
    from tests.store.builders import make_task as stored_task

    d = dataclasses.replace(
        make_decision("t1", 5.0),
        committed=False,
        rejections={"worker unhealthy": 2, "insufficient cpu": 1, "worker draining": 1},
        summary="",
    )
    text = explain_text(stored_task("t1"), [d])
    want = "workers rejected: 2 workers unhealthy; 1 insufficient cpu; 1 worker draining"
    assert want in text.splitlines(), text
