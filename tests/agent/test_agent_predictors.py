"""Runtime/memory predictors trained on a real store file: histories where a feature
has no value in any run (no owners, no names, every command new), and a store that
does not exist. `cloudai agent train` runs as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cloudai.agent.learn.model import load_model
from cloudai.agent.learn.predictors import (
    FEATURES,
    Predictors,
    examples_from_tasks,
    train_from_store,
)
from cloudai.errors import ConfigError
from cloudai.master.store import open_store
from cloudai.model import Attempt, Resources, Task, TaskSpec, TaskState

MIB = 1024**2


def history(path: Path, n: int = 40, *, owner: str = "", name: str = "", fresh: bool = False):
    """`n` finished tasks in a SQLite store at `path`: quick ones (5 s, 50 MiB) and slow
    ones (500 s, 200 MiB). `fresh`: every task runs its own image and command."""
    store = open_store(f"sqlite:///{path}")
    now = time.time()
    for k in range(n):
        quick = k % 2 == 0
        image = f"app:{k}" if fresh else ("app:quick" if quick else "app:slow")
        spec = TaskSpec(
            image, ["run", str(k) if fresh else ""], resources=Resources(1.0, 256 * MIB, 0.0),
            name=name, owner=owner,
        )  # fmt: skip
        run = 5.0 if quick else 500.0
        a = Attempt(1, "w1", TaskState.SUCCEEDED, 0, "completed", "", now, now, now + run,
                    (50 if quick else 200) * MIB)  # fmt: skip
        store.create_task(
            Task(f"t{k}", spec, TaskState.SUCCEEDED, 1, "w1", now, now, now, 0, attempts=[a])
        )
    store.close()


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
    return subprocess.run(
        [sys.executable, "-m", "cloudai", *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=cwd,
    )  # fmt: skip


def spec(image: str, owner: str = "", name: str = "") -> TaskSpec:
    return TaskSpec(image, ["run", ""], resources=Resources(1.0, 256 * MIB), owner=owner, name=name)


def test_training_on_a_store_without_owners_or_names_leaves_those_features_out(tmp_path):
    db = tmp_path / "master.db"
    history(db)  # the default cluster: no tokens, so no task has an owner
    out = tmp_path / "pred.joblib"
    done = cli("agent", "train", "--db", f"sqlite:///{db}", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    model = load_model(out)
    assert model.version.startswith("predictors-") and model.version in done.stdout
    assert "left out (no run in the history has a value): past_name, past_owner" in done.stdout
    pred = model.predictors["tasks"]
    assert pred.dropped == ("past_name", "past_owner")
    assert model.meta["predictor_features"] == [f for f in FEATURES if f not in pred.dropped]
    rt = pred.predict_runtime([spec("app:quick"), spec("app:slow")])
    assert rt[0] < 20 < 200 < rt[1]
    # An owner and a name at prediction time are ignored the same way: same columns.
    named = pred.predict_runtime([spec("app:quick", "ann", "job"), spec("app:slow", "ann", "job")])
    assert named.tolist() == rt.tolist()
    assert pred.predict_memory([spec("app:quick")])[0] < pred.predict_memory([spec("app:slow")])[0]


def test_a_history_where_every_statistic_is_missing_still_trains(tmp_path):
    history(tmp_path / "master.db", fresh=True)  # every image and command ran once
    model = train_from_store(f"sqlite:///{tmp_path / 'master.db'}")
    pred = model.predictors["tasks"]
    assert set(pred.dropped) == {f"past_{k}" for k in ("command", "image", "name", "owner")}
    back = load_model(model.save(tmp_path / "m.joblib")).predictors["tasks"]
    assert back.dropped == pred.dropped
    got = back.predict_runtime([spec("app:0"), spec("app:new", "bob", "x")])
    assert np.isfinite(got).all() and (got > 0).all()


def test_importances_cover_every_feature_with_zero_for_the_dropped(tmp_path):
    history(tmp_path / "master.db", owner="ann")
    store = open_store(f"sqlite:///{tmp_path / 'master.db'}")
    examples = examples_from_tasks(store.list_tasks())
    store.close()
    pred = Predictors.fit(examples)
    assert pred.dropped == ("past_name",)
    imp = pred.importances(examples)
    assert list(imp) == list(FEATURES) and imp["past_name"] == 0.0


def test_training_on_a_missing_store_fails_without_creating_it(tmp_path):
    missing = tmp_path / "nonexist.db"
    done = cli("agent", "train", "--db", f"sqlite:///{missing}", "--out", "m.joblib", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip() == f"cloudai: no store at {str(missing)!r}"
    assert not missing.exists() and not (tmp_path / "m.joblib").exists()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "empty.db").touch()
    with pytest.raises(ConfigError, match="the file is empty"):
        train_from_store(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(ConfigError, match="it is a directory"):
        train_from_store(str(tmp_path))
    assert (tmp_path / "empty.db").stat().st_size == 0


def test_unknown_peaks_do_not_pull_memory_predictions_down():
    """A peak of 0 is unknown (a re-adopted container): it must not count as 0 bytes."""
    now = time.time()

    def task(k: int, peak: int) -> Task:
        spec = TaskSpec("app:mem", ["run", ""], resources=Resources(1.0, 256 * MIB, 0.0))
        a = Attempt(1, "w1", TaskState.SUCCEEDED, 0, "completed", "", now, now + k, now + k + 5,
                    peak)  # fmt: skip
        return Task(f"t{k}", spec, TaskState.SUCCEEDED, 1, "w1", now, now, now, 0, attempts=[a])

    known = [task(k, 200 * MIB) for k in range(20)]
    mixed = known + [task(k, 0) for k in range(20, 40)]  # half of the runs: peak unknown
    for tasks in (known, mixed):
        p = Predictors.fit(examples_from_tasks(tasks))
        [memory] = p.predict_memory([spec("app:mem")])
        assert 190 * MIB < memory < 210 * MIB, (len(tasks), memory / MIB)
