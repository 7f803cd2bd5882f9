"""QA pass 9 on `cloudai sim` and the benchmarks beside it: --model without the learned
policy is refused (it would be read by nothing), and the rule benchmarks list each
expert once."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from typer.testing import CliRunner

from cloudai.cli.main import app

from .test_sim_bad_input import error, swf

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
KTH_MODEL = str(ROOT / "agent" / "models" / "kth.joblib")


def test_model_without_the_learned_policy_is_refused(tmp_path):
    """Only `learned` reads --model: with fcfs alone the file was loaded and ignored,
    and the output looked like a run of that model."""
    trace = swf(tmp_path)
    got = error("sim", "run", "--trace", trace, "--policy", "fcfs", "--model", KTH_MODEL)
    assert got.startswith("--model is read only by the learned policy")
    assert "fcfs" in got
    got = error(
        "sim", "compare", "--trace", trace, "--policies", "sjf,f1", "--model", KTH_MODEL
    )  # fmt: skip
    assert "sjf, f1" in got


def test_model_with_the_learned_policy_still_runs(tmp_path):
    out = runner.invoke(
        app,
        ["sim", "compare", "--trace", swf(tmp_path), "--policies", "fcfs,learned",
         "--model", KTH_MODEL, "--json"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)["policies"]
    assert rows["learned"]["model_version"].startswith("learned-")
    assert "model_version" not in rows["fcfs"]


def test_the_rule_benchmarks_list_each_expert_once():
    """window_oracle's (and gate_oracle's) default --experts named sjf twice: once as
    a heuristic and once as a named rule."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import window_oracle
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    assert len(window_oracle.EXPERTS) == len(set(window_oracle.EXPERTS))
    assert window_oracle.EXPERTS[:4] == ("wfp3", "unicep", "sjf", "f1")
    assert "soonest_smallest_area" in window_oracle.EXPERTS


def _train(tmp_path, *extra: str) -> tuple[int, str]:
    out = runner.invoke(
        app,
        ["sim", "train", "--trace", swf(tmp_path, jobs=60), "--out", str(tmp_path / "m.joblib"),
         "--windows", "1", "--length", "20", "--iterations", "1", "--population", "2", *extra],
    )  # fmt: skip
    return out.exit_code, out.output


def test_sim_train_modes_named_twice_train_that_mode_once(tmp_path):
    """`--modes backfill,backfill` failed with a ValueError traceback (the other mode
    was not taken from the shipped model, as `--modes backfill` takes it)."""
    from cloudai.agent.learn.model import load_model

    code, output = _train(tmp_path, "--modes", "backfill,backfill")
    assert code == 0, output
    assert output.count("backfill 0:") == 1
    assert load_model(str(tmp_path / "m.joblib")).meta["trained_modes"] == ["backfill"]


def test_sim_train_one_choice_options_take_one_name(tmp_path):
    """--objective and --sampler took the first of several names and dropped the rest."""
    out = str(tmp_path / "m.joblib")
    base = ("sim", "train", "--trace", swf(tmp_path), "--out", out)
    got = error(*base, "--objective", "mean,logmean")
    assert got == "--objective 'mean,logmean': name one of logmean, mean"
    got = error(*base, "--exclude", "1:5:1", "--sampler", "resample,bootstrap")
    assert got == "--sampler 'resample,bootstrap': name one of bootstrap, resample"


def test_sim_train_refuses_exclude_options_without_exclude(tmp_path):
    """--block and --sampler shape the held-out sequences of --exclude; without it
    they were ignored and the model was the one trained without them."""
    out = str(tmp_path / "m.joblib")
    base = ("sim", "train", "--trace", swf(tmp_path), "--out", out)
    for flag, value in (("--block", "64"), ("--sampler", "resample")):
        got = error(*base, flag, value)
        assert got == f"{flag} is for --exclude (the held-out sequences): pass --exclude K:L:S"
    assert not Path(out).exists()
