"""Queue order: priority first, FIFO within a priority, and ageing against starvation."""

from __future__ import annotations

import pytest

from cloudai.agent.policy import AGING_S, make_state, make_task, make_worker, place_batch
from cloudai.agent.policy.ordering import Fifo, PriorityFifo
from cloudai.agent.policy.testing import tasks as build

NOW = 10_000.0


def ids(order: list[int], queue) -> list[str]:
    return [queue[i].task_id for i in order]


def test_priority_first_then_fifo():
    queue = build(
        make_task("low-old").priority(0).queued(NOW - 30),
        make_task("high-new").priority(5).queued(NOW - 1),
        make_task("high-old").priority(5).queued(NOW - 2),
        make_task("mid").priority(2).queued(NOW - 5),
    )
    order = ids(PriorityFifo().order(queue, NOW), queue)
    assert order == ["high-old", "high-new", "mid", "low-old"]


@pytest.mark.parametrize(
    "waited,first",
    [
        (60, "high"),  # a minute: priority 0 ages by 1, still far behind 5
        (4 * AGING_S, "high"),  # 0 + 4 < 5 + a little
        (6 * AGING_S, "low"),  # 0 + 6 > 5 + a little: the old task overtakes
    ],
)
def test_ageing_lets_an_old_low_priority_task_overtake(waited, first):
    queue = build(
        make_task("high").priority(5).queued(NOW - 10),
        make_task("low").priority(0).queued(NOW - waited),
    )
    assert ids(PriorityFifo().order(queue, NOW), queue)[0] == first


def test_ageing_rate_is_configurable():
    queue = build(make_task("high").priority(5).queued(NOW), make_task("low").queued(NOW - 100))
    assert ids(PriorityFifo(aging_s=10).order(queue, NOW), queue)[0] == "low"


def test_equal_tasks_keep_submission_order():
    queue = build(*(make_task(f"t{i}").queued(NOW) for i in range(5)))
    assert ids(PriorityFifo().order(queue, NOW), queue) == ["t0", "t1", "t2", "t3", "t4"]


def test_fifo_ignores_priority():
    queue = build(make_task("a").priority(9).queued(NOW - 1), make_task("b").queued(NOW - 2))
    assert ids(Fifo().order(queue, NOW), queue) == ["b", "a"]


def test_order_decides_who_gets_scarce_capacity():
    state = make_state(make_worker("w").cpu(2).mem("4g"))
    queue = build(
        make_task("low").cpu(2).priority(0).queued(NOW - 5),
        make_task("high").cpu(2).priority(3).queued(NOW - 1),
    )
    ps = place_batch(queue, state, now=NOW)
    assert [(p.task_id, p.worker_id) for p in ps] == [("high", "w"), ("low", "")]
    # The same batch placed FIFO gives the capacity to the older task.
    ps = place_batch(queue, state, now=NOW, orderer="fifo")
    assert [(p.task_id, p.worker_id) for p in ps] == [("low", "w"), ("high", "")]
