"""`cloudai sim` and `cloudai agent train` from the command line (in process)."""

from __future__ import annotations

import json
import time

from typer.testing import CliRunner

from cloudai.agent.learn.model import load_model
from cloudai.agent.sim.metrics import METRICS
from cloudai.cli.main import app
from cloudai.master.store import open_store
from cloudai.model import Attempt, Resources, Task, TaskSpec, TaskState

runner = CliRunner()


def invoke(*args: str):
    out = runner.invoke(app, list(args))
    assert out.exit_code == 0, out.output
    return out.output


def test_compare_json_has_every_metric_for_every_policy(lublin):
    out = invoke(
        "sim", "compare", "--trace", str(lublin), "--limit", "600", "--sequences", "2",
        "--length", "200", "--seed", "1", "--backfill", "--policies", "fcfs,sjf,f1,learned",
        "--json",
    )  # fmt: skip
    report = json.loads(out)
    assert list(report["policies"]) == ["fcfs", "sjf", "f1", "learned"]
    for row in report["policies"].values():
        assert set(METRICS) <= set(row)
    assert report["config"]["backfill"] is True


def test_run_openb_reports_the_unallocated_gpu_fraction(openb_pods, openb_nodes):
    out = invoke(
        "sim", "run", "--trace", str(openb_pods), "--nodes", str(openb_nodes),
        "--node-limit", "30", "--limit", "300", "--policy", "fgd", "--json",
    )  # fmt: skip
    row = json.loads(out)["policies"]["fgd"]
    assert 0.0 <= row["unallocated_gpu_frac"] <= 1.0


def test_unknown_policy_and_bad_slice_are_one_line_errors(lublin):
    # The entry point turns these into one line on stderr (main.main); here we see
    # the exceptions it would print.
    out = runner.invoke(app, ["sim", "run", "--trace", str(lublin), "--policy", "nope"])
    assert "unknown policy 'nope'" in str(out.exception)
    out = runner.invoke(app, ["sim", "run", "--trace", str(lublin), "--slice", "0.9:0.2"])
    assert "--slice '0.9:0.2'" in str(out.exception)


def test_sim_train_writes_a_loadable_model(tmp_path, lublin):
    path = tmp_path / "m.joblib"
    invoke(
        "sim", "train", "--trace", str(lublin), "--limit", "800", "--out", str(path),
        "--iterations", "1", "--population", "4", "--windows", "2", "--length", "150",
        "--workers", "1",
    )  # fmt: skip
    assert load_model(path).version.startswith("learned-")


def _history(db: str, n: int = 40) -> None:
    store = open_store(db)
    now = time.time()
    for k in range(n):
        quick = k % 2 == 0
        spec = TaskSpec(
            image="app:quick" if quick else "app:slow",
            command=["run"],
            resources=Resources(1.0, 256 * 1024**2, 0.0),
            name="job",
            owner="ann",
        )
        run = 5.0 if quick else 500.0
        a = Attempt(1, "w1", TaskState.SUCCEEDED, 0, "completed", "", now, now, now + run,
                    (50 if quick else 200) * 1024**2)  # fmt: skip
        store.create_task(
            Task(f"t{k}", spec, TaskState.SUCCEEDED, 1, "w1", now, now, now, 0, attempts=[a])
        )
    store.close()


def test_agent_train_fits_predictors_on_the_store(tmp_path):
    db = f"sqlite:///{tmp_path / 'master.db'}"
    _history(db)
    out = tmp_path / "pred.joblib"
    invoke("agent", "train", "--db", db, "--out", str(out))
    model = load_model(out)
    pred = model.predictors["tasks"]
    quick = TaskSpec("app:quick", ["run"], resources=Resources(1.0, 256 * 1024**2), name="job")
    slow = TaskSpec("app:slow", ["run"], resources=Resources(1.0, 256 * 1024**2), name="job")
    rt = pred.predict_runtime([quick, slow])
    assert rt[0] < 20 < 200 < rt[1]
    mem = pred.predict_memory([quick, slow])
    assert mem[0] < mem[1]


def test_sim_train_keeps_the_base_models_profile_and_predictors(tmp_path, lublin):
    """Training the orderer from a base replaces its weights only: the base's placement
    profile and predictors (from `agent train`) stay, so the agent loading the new
    file still packs and predicts as before."""
    db = f"sqlite:///{tmp_path / 'master.db'}"
    _history(db)
    base_path, out = tmp_path / "base.joblib", tmp_path / "new.joblib"
    invoke("agent", "train", "--db", db, "--out", str(base_path))
    base = load_model(base_path)
    assert base.profile and base.predictors  # the default model's profile, and fitted
    invoke(
        "sim", "train", "--trace", str(lublin), "--limit", "800", "--out", str(out),
        "--iterations", "1", "--population", "4", "--windows", "2", "--length", "150",
        "--modes", "backfill", "--base", str(base_path),
    )  # fmt: skip
    new = load_model(out)
    assert new.profile == base.profile
    assert set(new.predictors) == set(base.predictors)
    kept = dict(zip(new.features, new.weights(False), strict=True))
    assert [kept[f] for f in base.features] == base.weights(False).tolist()  # mode kept
    assert new.version != base.version
