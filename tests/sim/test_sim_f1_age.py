"""F1 inside the learned family: the `f1_age` feature (F1's ageing term, 870
log10(submit) / capacity) lets a linear priority equal F1 exactly, so the search can
start at the best published heuristic (Round 8 of docs/placement-results.md); and
`--start-on-validation` chooses that start on the validation sequences."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from typer.testing import CliRunner

from cloudai.agent.learn.priority import LinearPriority, job_features
from cloudai.agent.learn.train import F1_EXACT, TrainConfig, cem, named_rules, project, score
from cloudai.agent.policy.job_ordering import F1, JobColumns
from cloudai.agent.sim.machine import simulate_machine
from cloudai.agent.sim.trace import load_swf
from cloudai.cli.main import app
from cloudai.errors import ConfigError

FEATS = ("f1_term", "f1_age")


def test_f1_age_is_f1s_ageing_term_over_the_capacity():
    c = JobColumns(
        runtime=np.array([100.0, 100.0]),
        procs=np.array([4.0, 4.0]),
        wait=np.array([0.0, 3600.0]),
        submit=np.array([1e6 + 3600.0, 1e6]),
        fits=np.array([True, True]),
        capacity=256.0,
    )
    age = job_features(c, ("f1_age",))[:, 0]
    assert age == pytest.approx(870.0 * np.log10([1e6 + 3600.0, 1e6]) / 256.0)
    # Equal jobs: the one submitted an hour earlier goes first, as under F1.
    lin = LinearPriority(project(F1_EXACT, FEATS), FEATS)
    assert np.argmin(lin.keys(c)) == np.argmin(F1().keys(c)) == 1


@pytest.mark.parametrize("backfill", [False, True])
def test_the_f1_start_makes_every_decision_f1_makes(lublin, backfill):
    """Only the main term (the old start) decides differently; with f1_age the linear
    priority is F1 itself, job for job."""
    trace = load_swf(lublin, limit=1500).window(300, 1000)
    f1 = simulate_machine(trace, 256, F1(), backfill)
    lin = simulate_machine(trace, 256, LinearPriority(project(F1_EXACT, FEATS), FEATS), backfill)
    main = simulate_machine(trace, 256, LinearPriority(np.array([-1.0]), ("f1_term",)), backfill)
    np.testing.assert_array_equal(lin.start, f1.start)
    assert not np.array_equal(main.start, f1.start)


def _parts(lublin, seed: int):
    from cloudai.agent.learn.train import training_parts

    trace = load_swf(lublin, limit=3000)
    cfg = TrainConfig(windows=2, length=300, seed=seed)
    return training_parts([(trace, 256)], cfg)


def test_start_on_validation_starts_at_the_best_start_on_validation(lublin):
    feats = ("log_runtime", "fits", "log_area", "log_delay", "wait_ratio", *FEATS)
    cfg = TrainConfig(iterations=0, features=feats, validation=2, start_on_validation=True)
    parts, val = _parts(lublin, 0), _parts(lublin, 7919)
    candidates = list(named_rules(feats).values())  # the named rules, then F1
    on_val = [score(w, val, True, feats) for w in candidates]
    on_train = [score(w, parts, True, feats) for w in candidates]
    assert int(np.argmin(on_val)) != int(np.argmin(on_train))  # the case that matters
    got, _ = cem(parts, True, cfg, val=val)
    np.testing.assert_array_equal(got, candidates[int(np.argmin(on_val))])
    off, _ = cem(parts, True, dataclasses.replace(cfg, start_on_validation=False), val=val)
    np.testing.assert_array_equal(off, candidates[int(np.argmin(on_train))])


def test_start_on_validation_needs_validation(lublin):
    with pytest.raises(ConfigError, match="--start-on-validation needs --validation N"):
        TrainConfig(start_on_validation=True).check()
    out = CliRunner().invoke(
        app,
        ["sim", "train", "--trace", str(lublin), "--out", "/tmp/x.joblib",
         "--start-on-validation"],
    )  # fmt: skip
    assert "--start-on-validation needs --validation N" in str(out.exception)


def test_features_with_zero_weight_are_not_computed_and_change_no_key():
    """A model file carries zeros for the features its search left out; they are
    skipped (the simulator's speed), with the same keys, and all-zero weights give
    equal keys rather than an error."""
    c = JobColumns(
        runtime=np.array([100.0, 10.0, 1000.0]),
        procs=np.array([4.0, 1.0, 64.0]),
        wait=np.array([5.0, 0.0, 60.0]),
        submit=np.array([50.0, 55.0, 0.0]),
        fits=np.array([True, True, False]),
        free=8.0,
        capacity=256.0,
    )
    some = LinearPriority(np.array([-1.0, 0.0, -0.5]), ("log_runtime", "wait_rank", "f1_age"))
    assert some._used == ("log_runtime", "f1_age")
    both = LinearPriority(np.array([-1.0, -0.5]), ("log_runtime", "f1_age"))
    np.testing.assert_array_equal(some.keys(c), both.keys(c))
    zero = LinearPriority(np.zeros(2), ("log_runtime", "f1_age"))
    np.testing.assert_array_equal(zero.keys(c), np.zeros(3))
