"""QA pass 8, memory packing by prediction, over real gRPC (a fake master): the master
commits by *request*, so a task whose predicted peak is far below its request must
never be sent to a worker its request does not fit (the master would refuse it and the
task would wait although another worker has room)."""

from __future__ import annotations

import threading

from cloudai.agent.learn.live import LearnedPolicy
from cloudai.agent.learn.model import load_default_model, load_model
from cloudai.agent.learn.predictors import Example, with_predictors
from cloudai.agent.policy import make_task, make_worker
from cloudai.agent.sidecar import Agent
from cloudai.agent.wire import batch_from_pb, batch_to_pb
from cloudai.config import AgentSettings
from cloudai.model import Resources, TaskSpec
from cloudai.validation import parse_size

WAIT_S = 10.0
MIB = 1024**2
# w1 is the fuller worker, which the learned model's profile prefers: 324 MiB free.
WORKERS = [
    make_worker("w1").cpu(2).mem("1g").used(cpu=0.5, mem="700m").build(),
    make_worker("w2").cpu(2).mem("4g").build(),
]


def tiny_model(path) -> str:
    """A model whose predictors learned that this work peaks at about 5 MiB."""
    spec = TaskSpec(image="app:1", resources=Resources(0.5, 256 * MIB, 0.0), name="job")
    runs = [Example(spec, 1.0 + k / 10, 5 * MIB, float(k)) for k in range(12)]
    with_predictors(load_default_model(), runs).save(path)
    return str(path)


def tasks():
    # Each predicted at ~5 MiB: packed, all three "fit" w1's 324 MiB; by request only
    # one of the 200 MiB tasks does, and the 512 MiB one does not at all.
    return [
        make_task("big").cpu(0.1).mem("512m").image("app:1").build(),
        make_task("a").cpu(0.1).mem("200m").image("app:1").build(),
        make_task("b").cpu(0.1).mem("200m").image("app:1").build(),
    ]


def requested_by_worker(decisions) -> dict[str, int]:
    need = {t.task_id: t.memory_bytes for t in tasks()}
    used: dict[str, int] = {}
    for d in decisions:
        used[d.worker_id] = used.get(d.worker_id, 0) + need[d.task_id]
    return used


def test_packing_never_sends_a_task_where_its_request_does_not_fit(fake, tmp_path):
    master, port = fake
    settings = AgentSettings(
        master=f"127.0.0.1:{port}",
        agent_id="qa8",
        policy="learned",
        model=tiny_model(tmp_path / "tiny.joblib"),
        pack_predicted_memory=True,
    )
    agent = Agent(settings)
    assert agent.learned is not None and agent.learned.pack_memory
    t = threading.Thread(target=agent.run, daemon=True)
    t.start()
    try:
        master.watches.get(timeout=WAIT_S)
        master.outbox.put(batch_to_pb(tasks(), WORKERS, sequence=1, timestamp=1.0))
        sent = master.submitted.get(timeout=WAIT_S)
    finally:
        agent.stop()
        t.join(timeout=WAIT_S)
    assert sorted(d.task_id for d in sent.decisions if d.worker_id) == ["a", "b", "big"]
    used = requested_by_worker(sent.decisions)
    assert used["w1"] <= parse_size("1g") - parse_size("700m"), used
    assert [d.worker_id for d in sent.decisions if d.task_id == "big"] == ["w2"]


def test_packing_still_packs_when_the_requests_fit(tmp_path):
    # Both workers have room for every request: packing changes nothing that is valid.
    policy = LearnedPolicy(load_model(tiny_model(tmp_path / "m.joblib")), pack_memory=True)
    workers = [
        make_worker("w1").cpu(4).mem("4g").build(),
        make_worker("w2").cpu(4).mem("4g").build(),
    ]
    pb = batch_to_pb(tasks(), workers, sequence=1, timestamp=1.0)
    packed, _ = policy.prepare(pb, *batch_from_pb(pb))
    assert all(t.memory_bytes < 16 * MIB for t in packed)  # the prediction plus margin
    placed = policy.place(pb, *batch_from_pb(pb))
    assert len(placed) == 3 and all(p.placed for p in placed)


def test_a_task_that_fits_nowhere_by_request_holds_nothing(tmp_path):
    """QA pass 7: packed by its small predicted peak, a 64 GiB task went to the one
    worker in the first pass and held a core there; moved out because its request
    fits nowhere, it kept the 1.5-core task it had crowded out waiting (and explain
    suggested asking for 1 core)."""
    policy = LearnedPolicy(load_model(tiny_model(tmp_path / "m.joblib")), pack_memory=True)
    workers = [make_worker("w").cpu(2).mem("2g").build()]
    for first, second in (("huge", "mid"), ("mid", "huge")):
        made = {
            "huge": make_task("huge").cpu(1).mem("64g").image("app:1").build(),
            "mid": make_task("mid").cpu(1.5).mem("64m").image("app:1").build(),
        }
        pb = batch_to_pb([made[first], made[second]], workers, sequence=1, timestamp=1.0)
        placed = {p.task_id: p for p in policy.place(pb, *batch_from_pb(pb))}
        assert placed["mid"].placed and placed["mid"].worker_id == "w", (first, placed)
        assert not placed["huge"].placed
