"""QA pass 8 on the learned-policy surfaces: what the master would refuse on every watch
(an agent id, a profile name, a model version) is caught at start instead of a
reconnect loop; `cloudai agent train --json`, with a MongoDB password kept out of the
model file; and a shadow with no decision yet does not report a 0.0% disagreement rate."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import joblib
import pytest

from cloudai.agent.learn import live
from cloudai.agent.learn.model import DEFAULT_MODEL, load_default_model, load_model
from cloudai.agent.learn.predictors import synthetic_examples, with_predictors
from cloudai.agent.policy import make_task, make_worker
from cloudai.agent.policy.placement import Placement
from cloudai.agent.sidecar import Agent
from cloudai.agent.wire import batch_from_pb, batch_to_pb
from cloudai.config import AgentSettings

from .test_agent_predictors import history


def agent_cli(*args: str, cwd=None) -> subprocess.CompletedProcess[str]:
    # Port 1: nothing listens. Before the fix the agent retried the master for ever.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
    return subprocess.run(
        [sys.executable, "-m", "cloudai", "agent", *args],
        capture_output=True, text=True, timeout=30, env=env, cwd=cwd,
    )  # fmt: skip


@pytest.mark.parametrize(
    "agent_id", ["a b", "x" * 64, "ü-agent"], ids=["space", "64-chars", "non-ascii"]
)
def test_an_agent_id_the_master_refuses_is_one_line_and_exit_1(agent_id):
    done = agent_cli("--master", "127.0.0.1:1", "--id", agent_id)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("cloudai agent: --id: invalid id ")
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "name,why",
    [("p" * 129, "is longer than 128 characters"), ("a\tb", "must not contain control characters")],
)
def test_a_profile_name_the_master_refuses_is_one_line_and_exit_1(tmp_path, name, why):
    path = tmp_path / "prof.json"
    path.write_text(json.dumps({"name": name, "scorers": {"bestfit": 1}}))
    done = agent_cli("--master", "127.0.0.1:1", "--profile", str(path))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"cloudai agent: the profile's name in {str(path)!r} {why} (the master refuses it)\n"
    )


@pytest.mark.parametrize("policy", ["binpack", "learned"])
def test_a_policy_and_a_profile_file_together_are_refused(tmp_path, policy):
    """QA pass 7: the profile file silently won over --policy binpack (and `status`
    and every decision said binpack), and --policy learned silently ignored it."""
    path = tmp_path / "prof.json"
    path.write_text(json.dumps({"name": "mine", "scorers": {"bestfit": 1}}))
    done = agent_cli("--master", "127.0.0.1:1", "--policy", policy, "--profile", str(path))
    assert (done.returncode, done.stdout) == (1, "")
    want = f"cloudai agent: --policy {policy} and --profile {path}: give one"
    assert done.stderr.startswith(want)
    assert done.stderr.count("\n") == 1


@pytest.mark.parametrize("version", ["v" * 129, "learned\nv2"], ids=["long", "newline"])
def test_a_model_version_the_master_refuses_falls_back_with_one_warning(tmp_path, caplog, version):
    path = tmp_path / "m.joblib"
    joblib.dump({**joblib.load(DEFAULT_MODEL), "version": version}, path)
    caplog.set_level(logging.WARNING, logger="cloudai.agent")
    agent = Agent(AgentSettings(master="127.0.0.1:1", policy="learned", model=str(path)))
    assert (agent.learned, agent.policy_name, agent.model_version) == (None, "default", "")
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith(f"learned policy unavailable (model file {str(path)!r} is invalid: ")
    assert "its version" in line


def test_agent_train_json_reports_the_model_and_its_version(tmp_path):
    history(tmp_path / "m.db", n=20)
    args = ["train", "--db", f"sqlite:///{tmp_path / 'm.db'}", "--out", "out.joblib", "--json"]
    done = agent_cli(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    model = load_model(tmp_path / "out.joblib")
    assert report["version"] == model.version and report["examples"] == 20
    assert report["model"] == "out.joblib" and "past_owner" in report["dropped"]
    bad = agent_cli(
        "train", "--db", "sqlite:///nope.db", "--out", "o.joblib", "--json", cwd=tmp_path
    )
    assert (bad.returncode, bad.stdout, bad.stderr.count("\n")) == (1, "", 1)


def test_a_mongodb_password_is_not_kept_in_the_model_file():
    url = "mongodb://alice:s3cret@db.example:27017/cloudai"
    model = with_predictors(load_default_model(), synthetic_examples(20), source=url)
    assert model.meta["predictors_trained_on"] == "mongodb://alice:***@db.example:27017/cloudai"
    assert "s3cret" not in repr(model.meta)


def test_a_shadow_with_no_decision_yet_reports_no_rate():
    shadow = live.Shadow("spread")
    workers = [make_worker("w1").cpu(1).mem("1g").build()]
    stuck = batch_to_pb([make_task("big").cpu(64).build()], workers, sequence=1, timestamp=1.0)
    tasks, state = batch_from_pb(stuck)
    outcome = shadow.compare(stuck, tasks, state, [])
    assert outcome.decisions == 0
    expected = "shadow spread: no decision compared yet (neither policy has placed a task)"
    assert live.disagreement_line(shadow, outcome) == expected
    assert live.summary_line(shadow) == expected
    fits = batch_to_pb([make_task("t").cpu(1).build()], workers, sequence=2, timestamp=1.0)
    tasks, state = batch_from_pb(fits)
    shadow.compare(fits, tasks, state, [Placement("t", 1, "w1")])
    assert live.summary_line(shadow) == "shadow spread: disagreement rate 0.0% over 1 decision(s)"
