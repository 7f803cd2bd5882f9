"""A bad profile is refused when it is loaded, with one line naming the file and the
problem: types, plugin names, plugin params (every plugin is built once) and finite,
non-negative weights. Nothing it could break is left for the first batch to find."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import joblib
import numpy as np
import pytest

from cloudai.agent.learn.live import learned_or_none
from cloudai.agent.learn.model import LearnedModel, ModelError, load_model
from cloudai.agent.learn.priority import FEATURES
from cloudai.agent.policy import (
    Profile,
    load_profile,
    make_state,
    make_task,
    make_worker,
    place_batch,
)
from cloudai.agent.sidecar import run_agent
from cloudai.config import AgentSettings
from cloudai.errors import ConfigError

# Nothing listens here: a bad profile must stop the agent before it dials.
NO_MASTER = "127.0.0.1:57301"
OK = {"least_allocated": 1}

BAD_PROFILES = [
    (
        {"scorers": OK, "params": {"priority_fifo": {"bogus": 1}}},
        "orderer 'priority_fifo' has no parameter 'bogus' (it takes: aging_s)",
    ),
    (
        {"scorers": OK, "params": {"priority_fifo": {"aging_s": -5}}},
        "orderer 'priority_fifo' refused its params (aging_s=-5): aging_s must be positive",
    ),
    (
        {"scorers": OK, "params": {"fgd": {"workload": "abc"}}},
        "scorer 'fgd' refused its params (workload='abc')",
    ),
    (
        {"scorers": {"least_allocated": math.inf}},
        "scorer weight least_allocated must be a finite number >= 0, got inf",
    ),
    (
        {"scorers": {"least_allocated": math.nan}},
        "scorer weight least_allocated must be a finite number >= 0, got nan",
    ),
    (
        {"scorers": {"least_allocated": True}},
        "scorer weight least_allocated must be a finite number >= 0, got True",
    ),
    (
        {"scorers": {"least_allocated": "1"}},
        "scorer weight least_allocated must be a finite number >= 0, got '1'",
    ),
    (
        {"scorers": {"least_allocated": 0, "fgd": 0.0}},
        "at least one scorer weight must be > 0 (all are 0)",
    ),
    ({"scorers": OK, "filters": "health"}, "'filters' must be a list of filter names, got str"),
    ({"scorers": OK, "filters": [1]}, "a filter name must be a string, got int 1"),
    ({"scorers": OK, "orderer": ["fifo"]}, "'orderer' must be a string, got list"),
    ({"scorers": OK, "name": 7}, "'name' must be a string, got int 7"),
    ({"scorers": OK, "params": {"priority_fifo": 3}}, "'params.priority_fifo' must be a table"),
    ({"scorers": OK, "params": []}, "'params' must be a table of tables, got list"),
]


def _write(tmp_path, content: dict) -> str:
    # json.dumps writes inf and nan as Infinity and NaN, which json.loads reads back.
    path = tmp_path / "p.json"
    path.write_text(json.dumps(content))
    return str(path)


@pytest.mark.parametrize("content,problem", BAD_PROFILES)
def test_a_bad_profile_file_is_refused_naming_the_file(tmp_path, content, problem):
    path = _write(tmp_path, content)
    with pytest.raises(ConfigError) as got:
        load_profile(path)
    message = str(got.value)
    assert message.startswith(f"profile {path}: {problem}"), message
    assert "\n" not in message


@pytest.mark.parametrize("content,problem", BAD_PROFILES[:5])
def test_the_agent_exits_1_at_start_up_on_a_bad_profile(tmp_path, capsys, content, problem):
    path = _write(tmp_path, content)
    assert run_agent(AgentSettings(master=NO_MASTER, profile=path)) == 1
    out = capsys.readouterr()
    assert out.err.startswith(f"cloudai agent: profile {path}: {problem}"), out.err
    assert out.err.count("\n") == 1 and "Traceback" not in out.err
    assert "CloudAI agent" not in out.out  # it never started


def test_the_real_agent_command_prints_one_line_and_exits_1(tmp_path):
    path = _write(tmp_path, {"scorers": {"least_allocated": math.inf}})
    got = subprocess.run(
        [sys.executable, "-m", "cloudai", "agent", "--profile", path, "--master", NO_MASTER],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert got.returncode == 1
    want = f"profile {path}: scorer weight least_allocated must be a finite number >= 0, got inf"
    assert got.stderr == f"cloudai agent: {want}\n"
    assert got.stdout == ""


def test_a_profile_object_gets_the_same_checks_before_any_placement():
    state = make_state(make_worker("w1").cpu(4))
    bad = [
        Profile("inf", {"least_allocated": math.inf}),
        Profile("nan", {"least_allocated": math.nan}),
        Profile("str", OK, filters="health"),  # type: ignore[arg-type]
        Profile("bogus", OK, params={"priority_fifo": {"bogus": 1}}),
    ]
    for profile in bad:
        with pytest.raises(ConfigError, match=f"^profile '{profile.name}': "):
            profile.validate()
        with pytest.raises(ConfigError, match=f"^profile '{profile.name}': "):
            place_batch([make_task("t").build()], state, profile, now=0)


def test_unused_plugin_params_are_checked_too():
    # Params for a plugin the profile does not use are still a mistake worth naming.
    profile = Profile("x", OK, params={"most_allocated": {"bogus": 1}})
    with pytest.raises(ConfigError, match="scorer 'most_allocated' has no parameter 'bogus'"):
        profile.validate()


def _model_file(tmp_path, profile: dict) -> str:
    data = LearnedModel.new(np.zeros(len(FEATURES)), np.zeros(len(FEATURES))).to_dict()
    data["profile"] = profile
    joblib.dump(data, tmp_path / "m.joblib")
    return str(tmp_path / "m.joblib")


def test_a_model_files_tuned_profile_is_validated_the_same_way(tmp_path, caplog):
    tuned = {"name": "tuned", "scorers": OK, "params": {"fifo": {"bogus": 1}}}
    path = _model_file(tmp_path, tuned)
    with pytest.raises(ModelError, match="orderer 'fifo' has no parameter 'bogus'"):
        load_model(path)
    # As for any corrupt model file, the learned policy falls back with a warning.
    assert learned_or_none(path) is None
    assert "has no parameter 'bogus'" in caplog.text
    path = _model_file(tmp_path, {"name": "tuned", "scorers": {"least_allocated": math.inf}})
    with pytest.raises(ModelError, match="must be a finite number >= 0, got inf"):
        load_model(path)


def test_a_profile_without_the_filters_the_master_enforces_is_warned_about(tmp_path, caplog):
    """QA pass 7: such a profile proposed, every batch, placements the master refused
    (a selector no worker there matched), and the task waited without a word."""
    from cloudai.agent.sidecar import Agent

    path = _write(tmp_path, {"name": "thin", "scorers": {"tetris": 1}, "filters": ["cpu"]})
    with caplog.at_level("WARNING", logger="cloudai.agent"):
        Agent(AgentSettings(master=NO_MASTER, profile=path))
    [warning] = [r.getMessage() for r in caplog.records if "leaves out" in r.getMessage()]
    assert warning.startswith(
        "profile 'thin' leaves out the filter(s) health, selector, memory, gpu: the master "
        "refuses placements they would rule out"
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="cloudai.agent"):
        Agent(AgentSettings(master=NO_MASTER, policy="binpack"))
    assert not [r for r in caplog.records if "leaves out" in r.getMessage()]
