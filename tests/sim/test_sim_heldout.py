"""Held-out training for the learned orderer: the training sequences never use a job
of the evaluation windows, and the shipped per-trace models load and say so."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cloudai.agent.learn.heldout import eval_mask, heldout_sequences, segments, train_jobs
from cloudai.agent.learn.model import DEFAULT_MODEL, load_model
from cloudai.agent.learn.train import VAL_SEED, TrainConfig, training_parts
from cloudai.agent.sim.runner import load_trace, windows

from .helpers import jobs

MODELS = DEFAULT_MODEL.parent


def test_segments_are_the_runs_outside_the_mask():
    mask = np.array([1, 1, 0, 0, 1, 0, 1, 0, 0, 0], bool)
    assert segments(mask) == [(2, 2), (5, 1), (7, 3)]
    assert segments(np.zeros(3, bool)) == [(0, 3)]
    assert segments(np.ones(3, bool)) == []


def test_sequences_keep_arrival_gaps_inside_blocks():
    t = jobs(*[(10.0 * k * k, 5.0, 1.0, 5.0) for k in range(12)])
    mask = np.zeros(12, bool)
    mask[4:8] = True
    seqs = heldout_sequences(t, mask, 3, 20, 3, seed=0)
    for s in seqs:
        assert len(s) == 20 and np.all(np.diff(s.submit) >= 0)
        assert not mask[train_jobs([s], t)].any()
    with pytest.raises(ValueError):
        heldout_sequences(t, np.ones(12, bool), 1, 5, 3, seed=0)


def test_lublin_training_jobs_are_disjoint_from_the_evaluation_windows(lublin):
    """The protocol of docs/placement-results.md: `compare --sequences 10 --length
    1024 --seed 1`; the shipped Lublin model trains with `--exclude 10:1024:1`."""
    trace = load_trace(lublin)
    cfg = TrainConfig(windows=6, length=1024, exclude=(10, 1024, 1), block=128, load=(0.9, 1.25))
    parts = training_parts([(trace, 256)], cfg)
    # The validation sequences are drawn the same way with another seed.
    val = training_parts([(trace, 256)], dataclasses.replace(cfg, seed=cfg.seed + VAL_SEED))
    used = train_jobs([p.trace for p in parts + val], trace)
    assert len(parts) == 6 and len(used) > 1000
    for start, length in windows(len(trace), 10, 1024, 1):
        assert not np.isin(used, np.arange(start, start + length)).any()
    assert not eval_mask(len(trace), 10, 1024, 1)[used].any()


@pytest.mark.parametrize("name", ["lublin.joblib", "kth.joblib"])
def test_shipped_per_trace_models_load_with_a_version(name):
    path = MODELS / name
    if not path.exists():
        pytest.skip(f"{name} not shipped")
    m = load_model(path)
    assert m.version.startswith("learned-") and m.meta.get("trained_on")


def test_sim_train_held_out_one_mode_keeps_the_other_from_base(tmp_path, lublin):
    from typer.testing import CliRunner

    from cloudai.cli.main import app

    base, out = load_model(DEFAULT_MODEL), tmp_path / "m.joblib"
    res = CliRunner().invoke(
        app,
        ["sim", "train", "--trace", str(lublin), "--limit", "800", "--out", str(out),
         "--exclude", "2:200:1", "--load", "0.9:1.2", "--modes", "backfill",
         "--features", "fits,log_area,fills_gap", "--iterations", "1", "--population", "4",
         "--windows", "2", "--length", "150"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    m = load_model(out)
    assert m.meta["excluded_eval_windows"] == [2, 200, 1]
    assert m.meta["trained_modes"] == ["backfill"]
    assert set(base.features) <= set(m.features) and "fills_gap" in m.features
    kept = dict(zip(m.features, m.weights(False), strict=True))
    assert [kept[f] for f in base.features] == base.weights(False).tolist()
