"""QA pass 6 on the sidecar, over real gRPC (a fake master): a model file whose
predictors cannot predict is refused at start (not on every batch), and a long queue
of tasks that fit nowhere is summed up in one log line per batch, not one per task."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

import joblib
import pytest

from cloudai.agent.learn.model import DEFAULT_MODEL
from cloudai.agent.learn.predictors import Predictors, _Stats
from cloudai.agent.policy import make_task, make_worker
from cloudai.agent.sidecar import MAX_REFUSED_LINES, Agent
from cloudai.agent.wire import batch_to_pb
from cloudai.config import AgentSettings
from cloudai.proto import master_agent_pb2 as apb

from .agent_fakes import FakeMaster, serve

WAIT_S = 10.0
WORKERS = [make_worker(f"w{k}").cpu(4).mem("8g").build() for k in range(3)]


class RefusingMaster(FakeMaster):
    """Refuses every placement, as a master does whose workers just went away."""

    def SubmitPlacements(self, request, context):
        self.submitted.put(request)
        return apb.PlacementResults(
            results=[
                apb.PlacementResult(task_id=d.task_id, accepted=False, reason="worker gone")
                for d in request.decisions
            ]
        )


def settings(port: int, **kw: str) -> AgentSettings:
    return AgentSettings(master=f"127.0.0.1:{port}", agent_id="qa6", **kw)


def answer(agent: Agent, master: FakeMaster, batch) -> apb.PlacementBatch:
    """Serve one batch to `agent` in a thread; its answer (the test fails without one)."""
    t = threading.Thread(target=agent.run, daemon=True)
    t.start()
    try:
        master.watches.get(timeout=WAIT_S)
        master.outbox.put(batch)
        return master.submitted.get(timeout=WAIT_S)
    finally:
        agent.stop()
        t.join(timeout=WAIT_S)


def model_with_predictors(path, predictors) -> str:
    data = joblib.load(DEFAULT_MODEL)
    joblib.dump({**data, "predictors": {"tasks": predictors}}, path)
    return str(path)


@pytest.mark.parametrize(
    "predictors,reason",
    [
        ("not a predictor", "'predictors' has no predict_runtime() (got str)"),
        (Predictors("x", "y", _Stats(), 8), "its predictors cannot predict: 'str' object"),
    ],
)
def test_a_model_whose_predictors_cannot_predict_is_refused_at_start(
    fake, caplog, tmp_path, predictors, reason
):
    master, port = fake
    path = model_with_predictors(tmp_path / "m.joblib", predictors)
    caplog.set_level(logging.INFO, logger="cloudai.agent")
    agent = Agent(settings(port, policy="learned", model=path))
    assert (agent.policy_name, agent.learned) == ("default", None)
    tasks = [make_task("t1").cpu(1).build()]
    sent = answer(agent, master, batch_to_pb(tasks, WORKERS, sequence=1, timestamp=1.0))
    assert [(d.task_id, bool(d.worker_id)) for d in sent.decisions] == [("t1", True)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    warnings = [w for w in warnings if "reconnecting" not in w]
    assert len(warnings) == 1 and reason in warnings[0], warnings
    assert warnings[0].startswith("learned policy unavailable (model file")


def test_a_long_queue_of_unplaceable_tasks_is_one_line_per_batch(fake, caplog):
    master, port = fake
    caplog.set_level(logging.INFO, logger="cloudai.agent")
    tasks = [make_task(f"big{k}").cpu(99).build() for k in range(300)]
    tasks += [make_task(f"zone{k}").selector(zone="x").build() for k in range(5)]
    tasks += [make_task("fits").cpu(1).build()]
    sent = answer(Agent(settings(port)), master, batch_to_pb(tasks, WORKERS, sequence=7))
    assert len(sent.decisions) == 306
    lines = [r.getMessage() for r in caplog.records if "reconnecting" not in r.getMessage()]
    assert len(lines) == 2, lines[:5]
    assert lines[0].startswith("batch 7: 306 task(s), 1 placed, 1 committed")
    summary = lines[1]
    assert summary.startswith("batch 7: 305 task(s) left pending: ")
    assert "(300, e.g. big0)" in summary and "(5, e.g. zone0)" in summary
    assert summary.index("(300,") < summary.index("(5,")  # most common first


def test_refused_placements_are_one_line_each_up_to_a_cap(caplog):
    master = RefusingMaster()
    server, port = serve(master)
    try:
        caplog.set_level(logging.INFO, logger="cloudai.agent")
        tasks = [make_task(f"t{k}").cpu(0.1).build() for k in range(25)]
        sent = answer(Agent(settings(port)), master, batch_to_pb(tasks, WORKERS, sequence=3))
        assert all(d.worker_id for d in sent.decisions)
    finally:
        server.stop(0)
    lines = [r.getMessage() for r in caplog.records if "reconnecting" not in r.getMessage()]
    refused = [x for x in lines if x.startswith("task ")]
    assert len(refused) == MAX_REFUSED_LINES
    assert refused[0].startswith("task t0 not placed on w") and refused[0].endswith(": worker gone")
    assert f"batch 3: {25 - MAX_REFUSED_LINES} more placement(s) refused" in lines
    assert not any("left pending" in x for x in lines)


@pytest.mark.parametrize("name", ["latin1.json", "latin1.toml"])
def test_a_profile_file_that_is_not_utf8_is_one_line_and_exit_1(tmp_path, name):
    (tmp_path / name).write_bytes('{"name": "caf\xe9"}'.encode("latin-1"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
    done = subprocess.run(
        [sys.executable, "-m", "cloudai", "agent", "--master", "127.0.0.1:1",
         "--profile", str(tmp_path / name)],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"cloudai agent: profile file {str(tmp_path / name)!r} is not UTF-8 text: "
        "invalid continuation byte\n"
    )


@pytest.mark.parametrize("agent_id", ["", "  "])
def test_an_empty_agent_id_is_bad_input(agent_id):
    # The master would list it as an agent without a name: "1 connected (?)". Without
    # the check the agent runs (retrying 127.0.0.1:1) until the timeout fails the test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
    done = subprocess.run(
        [sys.executable, "-m", "cloudai", "agent", "--master", "127.0.0.1:1", "--id", agent_id],
        capture_output=True, text=True, timeout=20, env=env,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "cloudai agent: --id: the agent id must not be empty (default: agent-1)\n"
