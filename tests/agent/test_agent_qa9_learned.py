"""QA pass 9 on the learned policy: a history where only a few runs have a known peak
memory (the others are 0, unknown) must not teach the memory model that tasks peak at
a few kB, nor may a prediction be negative; and a learned shadow packs memory as
`--policy learned` does with the same settings, so `--policy learned --shadow learned`
agrees with itself."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

from cloudai.agent.learn.model import load_model
from cloudai.agent.learn.predictors import Predictors, examples_from_tasks
from cloudai.agent.policy import make_task, make_worker
from cloudai.agent.sidecar import Agent
from cloudai.agent.wire import batch_to_pb
from cloudai.config import AgentSettings
from cloudai.master.store import open_store
from cloudai.model import Attempt, Resources, Task, TaskSpec, TaskState

from .test_agent_predictors import history
from .test_agent_qa6_predictors import agent_train

MIB = 1024**2
WAIT_S = 10.0


def spec(image: str = "app:x") -> TaskSpec:
    return TaskSpec(image, ["run"], resources=Resources(1.0, 256 * MIB, 0.0))


def task(k: int, run: float, peak: int) -> Task:
    now = 1_000_000.0
    a = Attempt(1, "w1", TaskState.SUCCEEDED, 0, "completed", "", now, now + k,
                now + k + run, peak)  # fmt: skip
    return Task(f"t{k}", spec(), TaskState.SUCCEEDED, 1, "w1", now, now, now, 0, attempts=[a])


def few_known_peaks(path: Path) -> None:
    """12 runs of one command; only 3 have a known peak (10 MiB), the rest 0 (unknown)."""
    store = open_store(f"sqlite:///{path}")
    for k in range(12):
        store.create_task(task(k, 5.0 + k, 10 * MIB if k % 4 == 0 else 0))
    store.close()


def test_unknown_peaks_do_not_pull_the_memory_prediction_to_zero(tmp_path):
    db, out = tmp_path / "master.db", tmp_path / "pred.joblib"
    few_known_peaks(db)
    done = agent_train(db, out)
    assert done.returncode == 0, done.stderr
    pred = load_model(out).predictors["tasks"]
    # Before the fix: ~3.5 kB, the mean of log(10 MiB) and of nine "0 bytes".
    [memory] = pred.predict_memory([spec()])
    assert 9 * MIB < memory < 11 * MIB, memory / MIB


def test_predictions_are_never_negative():
    # Run times of 0 s: before the fix an unseen task was predicted at -0.0015 s.
    tasks = [task(k, 0.0 if k % 3 == 0 else 5.0 * k, 0 if k % 2 else 10 * MIB) for k in range(12)]
    pred = Predictors.fit(examples_from_tasks(tasks))
    specs = [spec(), TaskSpec("other")]
    assert (pred.predict_runtime(specs) >= 0).all(), pred.predict_runtime(specs)
    assert (pred.predict_memory(specs) >= 0).all()


def packing_batch():
    """A batch where packing by predicted memory changes where the tasks go."""
    workers = [
        make_worker("w0").cpu(2).mem("300m").build(),
        make_worker("w1").cpu(2).mem("600m").build(),
        make_worker("w2").cpu(4).mem("1000m").build(),
    ]
    kinds = [(0.5, "app:quick"), (1, "app:quick"), (0.5, "app:slow"), (1, "app:slow")]
    tasks = [
        make_task(f"t{k}").cpu(cpu).mem("256m").image(image).build()
        for k, (cpu, image) in enumerate(kinds)
    ]
    batch = batch_to_pb(tasks, workers, sequence=1, timestamp=1.0)
    for t in batch.tasks:  # the command the history ran (test_agent_predictors.history)
        t.spec.command[:] = ["run", ""]
    return batch


def test_a_learned_shadow_packs_memory_as_the_learned_policy_does(fake, tmp_path):
    master, port = fake
    history(tmp_path / "h.db", n=30)  # quick runs peak at 50 MiB, slow ones at 200 MiB
    model = tmp_path / "m.joblib"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
    subprocess.run(
        [sys.executable, "-m", "cloudai", "agent", "train", "--db",
         f"sqlite:///{tmp_path / 'h.db'}", "--out", str(model)],
        check=True, capture_output=True, timeout=120, env=env,
    )  # fmt: skip
    settings = AgentSettings(
        master=f"127.0.0.1:{port}", agent_id="qa9", policy="learned", shadow="learned",
        model=str(model), pack_predicted_memory=True,
    )  # fmt: skip
    agent = Agent(settings)
    t = threading.Thread(target=agent.run, daemon=True)
    t.start()
    try:
        master.watches.get(timeout=WAIT_S)
        master.outbox.put(packing_batch())
        answer = master.submitted.get(timeout=WAIT_S)
    finally:
        agent.stop()
        t.join(timeout=WAIT_S)
    assert sum(bool(d.worker_id) for d in answer.decisions) == 4
    # The same model with the same settings: before the fix the shadow did not pack,
    # and reported 2 disagreements out of 4 with the very policy it shadowed.
    assert (answer.shadow.decisions, answer.shadow.disagreements) == (4, 0)


def test_the_packing_batch_is_one_where_packing_matters(tmp_path):
    """Guards the test above: without packing, the learned policy decides otherwise."""
    from cloudai.agent.learn.live import LearnedPolicy
    from cloudai.agent.learn.predictors import train_from_store
    from cloudai.agent.wire import batch_from_pb

    history(tmp_path / "h.db", n=30)
    model = train_from_store(f"sqlite:///{tmp_path / 'h.db'}")
    batch = packing_batch()
    tasks, state = batch_from_pb(batch)
    packed = LearnedPolicy(model, pack_memory=True).place(batch, tasks, state)
    plain = LearnedPolicy(model).place(batch, tasks, state)
    assert {p.task_id: p.worker_id for p in packed} != {p.task_id: p.worker_id for p in plain}


def test_packing_with_a_model_without_predictors_says_it_is_ignored(caplog):
    # The shipped model has no predictors: before, CLOUDAI_PACK_PREDICTED_MEMORY was
    # silently ignored, and the user believed memory was packed by prediction.
    caplog.set_level(logging.WARNING, logger="cloudai.agent")
    settings = AgentSettings(
        master="127.0.0.1:1", agent_id="qa9", policy="learned", pack_predicted_memory=True
    )
    agent = Agent(settings)
    assert agent.learned is not None and agent.learned.predictors is None
    [line] = [r.getMessage() for r in caplog.records if "PACK_PREDICTED" in r.getMessage()]
    assert line == (
        f"CLOUDAI_PACK_PREDICTED_MEMORY ignored: model {agent.model_version} has no "
        "predictors (train them with `cloudai agent train`); memory is packed by request"
    )
    caplog.clear()
    Agent(settings.model_copy(update={"pack_predicted_memory": False}))
    assert not [r for r in caplog.records if "PACK_PREDICTED" in r.getMessage()]
