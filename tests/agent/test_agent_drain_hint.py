"""The smallest-change hint when every worker is draining: name the drain to undo."""

from __future__ import annotations

import pytest

from cloudai.agent.policy import make_state, make_task, make_worker, place_batch

CASES = [
    (
        "one worker, draining",
        [make_worker("w1").cpu(4).mem("4g").draining()],
        make_task("t").cpu(1),
        "worker w1 is draining: `cloudai drain w1 --undo` lets it take tasks again",
    ),
    (
        "all draining: the one the task fits",
        [
            make_worker("small").cpu(1).mem("4g").draining(),
            make_worker("big").cpu(8).mem("4g").draining(),
        ],
        make_task("t").cpu(4),
        "all 2 workers are draining: `cloudai drain big --undo` lets big take tasks again",
    ),
    (
        "all draining, and the task fits none as it is",
        [make_worker("a").cpu(2).mem("4g").draining(), make_worker("b").cpu(1).draining()],
        make_task("t").cpu(4),
        "all 2 workers are draining: `cloudai drain a --undo` lets a take tasks again; "
        "then: request <= 2 cpu (largest free on a worker)",
    ),
    (
        "all draining, only one with the label",
        [make_worker("a").cpu(8).draining(), make_worker("b").label("zone", "x").draining()],
        make_task("t").cpu(0.5).selector(zone="x"),
        "all 2 workers are draining: `cloudai drain b --undo` lets b take tasks again",
    ),
    (
        "draining and inactive: says both, names the drain to undo",
        [make_worker("a").unhealthy(), make_worker("b").draining()],
        make_task("t"),
        "no active worker (1 draining, 1 inactive): "
        "`cloudai drain b --undo` lets b take tasks again",
    ),
    (
        "the only worker with the label drains, another is active (QA pass 7)",
        [make_worker("a").cpu(8), make_worker("ssd").label("disk", "ssd").draining()],
        make_task("t").cpu(0.5).selector(disk="ssd"),
        "no healthy worker has label disk=ssd: ssd has it but is draining "
        "(`cloudai drain ssd --undo`)",
    ),
    (
        "one worker, inactive",
        [make_worker("a").unhealthy()],
        make_task("t"),
        "worker a is inactive (no heartbeats): restart it or start another",
    ),
    (
        "all inactive",
        [make_worker("a").unhealthy(), make_worker("b").unhealthy()],
        make_task("t"),
        "all 2 workers are inactive (no heartbeats): restart one or start another",
    ),
]


@pytest.mark.parametrize("workers,task,hint", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hint_when_every_worker_drains(workers, task, hint):
    [p] = place_batch([task.build()], make_state(*workers), now=0)
    assert (p.worker_id, p.hint) == ("", hint)
