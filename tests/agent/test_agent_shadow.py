"""Shadow mode over real gRPC (a fake master): the disagreement rate counts only the
decisions either policy made, each once per batch; a learned shadow whose model cannot
be loaded is disabled with one warning. And the agent's bad-input lines."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading

from cloudai.agent.learn.live import Shadow
from cloudai.agent.policy import make_task, make_worker
from cloudai.agent.policy.placement import Placement
from cloudai.agent.sidecar import Agent, run_agent
from cloudai.agent.wire import batch_from_pb, batch_to_pb
from cloudai.config import AgentSettings
from cloudai.reasons import shadow_kinds

from .agent_fakes import FakeMaster

WAIT_S = 10.0
WORKERS = [
    make_worker("busy").cpu(8).mem("16g").used(cpu=4, mem="4g").build(),
    make_worker("idle").cpu(8).mem("16g").build(),
]
STUCK = [make_task(f"stuck{k}").selector(zone="x").build() for k in range(3)]


def batch(seq: int, *task_ids: str):
    """The three tasks nobody can place (they stay pending) plus these new ones."""
    tasks = [*STUCK, *(make_task(t).build() for t in task_ids)]
    return batch_to_pb(tasks, WORKERS, sequence=seq, timestamp=1.0)


def run(agent: Agent, master: FakeMaster, batches) -> None:
    """Serve `batches` to `agent` in a thread; return once every answer is in."""
    t = threading.Thread(target=agent.run, daemon=True)
    t.start()
    try:
        master.watches.get(timeout=WAIT_S)
        for b in batches:
            master.outbox.put(b)
            master.submitted.get(timeout=WAIT_S)
    finally:
        agent.stop()
        t.join(timeout=WAIT_S)


def settings(port: int, **kw: str) -> AgentSettings:
    return AgentSettings(master=f"127.0.0.1:{port}", agent_id="shadow-test", **kw)


def shadow_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "disagreement rate" in r.getMessage()]


def test_pending_tasks_do_not_dilute_the_disagreement_rate(fake, caplog):
    master, port = fake
    caplog.set_level(logging.INFO, logger="cloudai.agent")
    agent = Agent(settings(port, policy="binpack", shadow="spread"))
    # QA's case: 3 unplaceable tasks pushed with every batch, 4 placed tasks that differ.
    run(agent, master, [batch(k, f"p{k}") for k in range(1, 5)])
    assert agent.shadow is not None
    assert (agent.shadow.decisions, agent.shadow.disagreements) == (4, 4)
    lines = shadow_lines(caplog)
    assert len(lines) == 4
    assert lines[-1].endswith(
        "shadow spread: 1 of 1 decision(s) differ: p4: busy->idle; disagreement rate 100.0% over 4"
        " (another worker 4, another task chosen 0)"
    )


def test_a_decision_counts_when_only_one_policy_placed_the_task():
    shadow = Shadow("spread")
    pb = batch(1, "a", "b")
    tasks, state = batch_from_pb(pb)
    # The active policy placed a on idle (as spread would) and left b unplaced.
    active = [Placement(t.task_id, 1) for t in STUCK]
    active += [Placement("a", 1, "idle"), Placement("b", 1)]
    outcome = shadow.compare(pb, tasks, state, active)
    assert outcome.decisions == 2 and outcome.diff == [("b", "-", "idle")]
    assert shadow.rate == 0.5
    assert (shadow.disagreements, shadow.elsewhere) == (1, 0)
    assert shadow_kinds(1, 0) == " (another worker 0, another task chosen 1)"
    # A batch of tasks neither policy can place is no decision at all.
    stuck = batch(2)
    tasks, state = batch_from_pb(stuck)
    outcome = shadow.compare(stuck, tasks, state, [Placement(t.task_id, 1) for t in STUCK])
    assert (outcome.decisions, outcome.diff, shadow.decisions) == (0, [], 2)


def test_a_learned_shadow_with_a_bad_model_is_disabled_with_one_warning(fake, caplog, tmp_path):
    master, port = fake
    bad = tmp_path / "bad.joblib"
    bad.write_bytes(b"garbage")
    caplog.set_level(logging.INFO, logger="cloudai.agent")
    agent = Agent(settings(port, policy="spread", shadow="learned", model=str(bad)))
    assert agent.shadow is None and agent.profile.name == "spread"
    run(agent, master, [batch(1, "a"), batch(2, "b")])
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    warnings = [w for w in warnings if "reconnecting" not in w]
    assert len(warnings) == 1
    assert warnings[0].startswith("shadow policy learned disabled (model file")
    assert str(bad) in warnings[0] and not shadow_lines(caplog)


def test_model_without_a_learned_policy_is_ignored_with_a_warning(caplog, tmp_path):
    caplog.set_level(logging.WARNING, logger="cloudai.agent")
    agent = Agent(settings(1, policy="spread", model=str(tmp_path / "missing.joblib")))
    [line] = [r.getMessage() for r in caplog.records]
    assert "ignored: it is used only by --policy learned or --shadow learned" in line
    assert agent.model_version == "" and agent.shadow is None
    caplog.clear()
    Agent(settings(1, policy="spread", shadow="spread", model=str(tmp_path / "m.joblib")))
    assert len(caplog.records) == 1


def test_unknown_policy_is_bad_input_naming_every_accepted_name(capsys):
    assert run_agent(AgentSettings(master="127.0.0.1:1", policy="nosuch")) == 1
    err = capsys.readouterr().err
    assert err == (
        "cloudai agent: unknown policy 'nosuch': use one of default, binpack, spread, "
        "tetris, learned, or a profile file path\n"
    )
    assert run_agent(AgentSettings(master="127.0.0.1:1", shadow="nosuch")) == 1
    assert "unknown shadow policy 'nosuch': use one of default, binpack" in capsys.readouterr().err


def test_the_agent_command_exits_1_with_one_line_for_an_unknown_policy():
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
    done = subprocess.run(
        [sys.executable, "-m", "cloudai", "agent", "--policy", "nosuch", "--master", "127.0.0.1:1"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "learned" in done.stderr
