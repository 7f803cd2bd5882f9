"""QA pass 6 on `cloudai agent train` (a real process on a real store file): when no
run has a known peak memory (containers that ended before their memory was sampled),
the runtime model still learns from each command's earlier run times."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from cloudai.agent.learn.model import load_model
from cloudai.master.store import open_store
from cloudai.model import Attempt, Resources, Task, TaskSpec, TaskState

MIB = 1024**2


def spec(image: str) -> TaskSpec:
    return TaskSpec(image, ["run"], resources=Resources(1.0, 256 * MIB, 0.0))


def history(path: Path, n: int = 40) -> None:
    """Quick (5 s) and slow (500 s) runs, alternating; peak memory unknown (0) in all."""
    store = open_store(f"sqlite:///{path}")
    now = time.time()
    for k in range(n):
        quick = k % 2 == 0
        run = 5.0 if quick else 500.0
        a = Attempt(1, "w1", TaskState.SUCCEEDED, 0, "completed", "", now, now + k,
                    now + k + run, 0)  # fmt: skip
        task = Task(f"t{k}", spec("app:quick" if quick else "app:slow"), TaskState.SUCCEEDED,
                    1, "w1", now, now, now, 0, attempts=[a])  # fmt: skip
        store.create_task(task)
    store.close()


def agent_train(db: Path, out: Path) -> subprocess.CompletedProcess:
    """`cloudai agent train` as a process on the store `db`, writing `out`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
    return subprocess.run(
        [sys.executable, "-m", "cloudai", "agent", "train", "--db", f"sqlite:///{db}",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, env=env, cwd=db.parent,
    )  # fmt: skip


def test_unknown_peaks_do_not_take_the_run_time_history_away(tmp_path):
    db, out = tmp_path / "master.db", tmp_path / "pred.joblib"
    history(db)
    done = agent_train(db, out)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == "  left out (no run in the history has a value): past_name, past_owner"
    assert lines[2] == (
        "  left out of the memory model (no earlier run has a known peak): past_command, past_image"
    )
    pred = load_model(out).predictors["tasks"]
    assert "past_command" in pred.features and "past_command" not in pred.memory_features
    quick, slow = pred.predict_runtime([spec("app:quick"), spec("app:slow")])
    assert quick < 20 and slow > 200, (quick, slow)
    assert pred.predict_memory([spec("app:quick")]).shape == (1,)
