"""The ship guard (agent/learn/guard.py): searched weights replace the best named rule
only when a paired test on the validation sequences says they are better; otherwise
the rule's weights ship (Round 9 of docs/placement-results.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from typer.testing import CliRunner

from cloudai.agent.learn.guard import judge, paired_t, t_quantile
from cloudai.agent.learn.model import load_model
from cloudai.agent.learn.train import (
    F1_EXACT,
    TrainConfig,
    bslds,
    cem,
    named_rules,
    project,
    ship_guard,
    training_parts,
)
from cloudai.agent.sim.trace import load_swf
from cloudai.cli.main import app
from cloudai.errors import ConfigError


@pytest.mark.parametrize(
    ("confidence", "dof", "table"),
    # Student's t quantiles from a printed table.
    [(0.95, 5, 2.015), (0.95, 10, 1.812), (0.95, 47, 1.678), (0.99, 10, 2.764), (0.9, 20, 1.325)],
)
def test_t_quantile_matches_the_table(confidence, dof, table):
    assert t_quantile(confidence, dof) == pytest.approx(table, abs=0.002)


def test_paired_t_by_hand():
    # log-ratios 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t = 0.2 / (0.1 / sqrt 3)
    ref = np.array([100.0, 100.0, 100.0])
    mine = ref / np.exp([0.1, 0.2, 0.3])
    gain, t = paired_t(mine, ref)
    assert gain == pytest.approx(0.2)
    assert t == pytest.approx(0.2 / (0.1 / math.sqrt(3)))
    assert paired_t(ref, ref) == (0.0, 0.0)


def test_judge_compares_with_the_rule_of_lowest_mean():
    rules = {"a": np.array([10.0, 12.0, 11.0, 13.0]), "b": np.array([9.0, 14.0, 10.0, 12.0])}
    steady = np.array([9.0, 10.8, 9.9, 11.7])  # 10% better than "a" on every sequence
    v = judge(steady, rules, 0.95)
    assert v.against == "b"  # mean 11.25 < 11.5, although "a" wins two sequences
    # Against "b" the gains are -0.0, +0.26, -0.01, +0.025: not significant.
    assert not v.kept and v.t < v.needed
    v = judge(steady / 1.5, rules, 0.95)
    assert v.kept and v.gain > 0 and v.t >= v.needed
    assert "falls back to b" in judge(steady, rules, 0.95).line()
    with pytest.raises(ValueError, match="at least 3"):
        judge(steady[:2], rules, 0.95)


def _parts(lublin, seed: int, k: int = 6):
    trace = load_swf(lublin, limit=4000)
    return training_parts([(trace, 256)], TrainConfig(windows=k, length=256, seed=seed))


def test_a_near_copy_of_f1_falls_back_to_the_best_rule(lublin):
    feats = ("log_runtime", "fits", "log_area", "f1_term", "f1_age", "log_wait")
    val = _parts(lublin, 7919)
    rules = named_rules(feats)
    near = project(F1_EXACT, feats) + np.array([0, 0, 0, 0, 0, 0.01])
    v = ship_guard(near, rules, val, (True, feats, "mean", 0), 0.95)
    means = {name: bslds(w, val, True, feats).mean() for name, w in rules.items()}
    assert v.against == min(means, key=means.get)
    assert not v.kept and abs(v.gain) < 0.05


def test_cem_ships_the_rule_when_the_guard_rejects_and_the_search_when_it_accepts(lublin):
    parts, val = _parts(lublin, 0), _parts(lublin, 7919)
    # Only the job size is searchable: every named rule is then the zero vector (FCFS
    # order), which putting small jobs first beats on every window.
    feats = ("log_procs",)
    cfg = TrainConfig(iterations=3, population=6, init_std=1.0, features=feats, guard=0.95)
    cfg.validation = len(val)
    got, hist = cem(parts, False, cfg, val=val)
    assert hist.guard.kept and hist.guard.t >= hist.guard.needed
    assert got[0] < 0  # smaller first
    # No search at all: the result is the best rule itself, so the guard falls back.
    cfg.iterations = 0
    got, hist = cem(parts, False, cfg, val=val)
    assert not hist.guard.kept
    np.testing.assert_array_equal(got, named_rules(feats)[hist.guard.against])


def test_guard_needs_validation_and_a_sane_confidence(lublin):
    with pytest.raises(ConfigError, match="--guard needs --validation 3 or more"):
        TrainConfig(guard=0.95, validation=2).check()
    with pytest.raises(ConfigError, match=r"--guard 1.5: must be 0 \(off\) or in \[0.5, 1\)"):
        TrainConfig(guard=1.5, validation=8).check()
    args = ["sim", "train", "--trace", str(lublin), "--out", "/tmp/x.joblib", "--guard", "0.95"]
    out = CliRunner().invoke(app, args)  # the console entry point prints it on one line
    assert isinstance(out.exception, ConfigError)
    assert "--guard needs --validation 3 or more" in str(out.exception)


def test_sim_train_records_the_verdict_in_the_model(tmp_path, lublin):
    out = tmp_path / "m.joblib"
    args = ["sim", "train", "--trace", str(lublin), "--limit", "3000", "--out", str(out)]
    args += ["--windows", "3", "--length", "256", "--validation", "4", "--iterations", "0"]
    args += ["--modes", "backfill", "--guard", "0.9"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "backfill: scoring 6 starts on 3 training windows" in res.output
    assert "backfill: guard: scoring the result and 6 rules on 4 validation sequences" in res.output
    assert "backfill guard:" in res.output
    meta = load_model(out).meta
    assert meta["guard"] == 0.9
    verdict = meta["guard_verdict"]["backfill"]
    assert set(verdict) == {"against", "gain", "t", "needed", "kept"}
    assert verdict["kept"] is False  # no search: the result is a rule
