"""QA pass 9 on `cloudai agent train --out` (a real process on a real store file): a
model is never written over an SQLite database, least of all the store it was trained
on (which lost the master's whole history), and an empty --out says so."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cloudai.master.store import open_store

from .test_agent_predictors import history


def train(*args: str, cwd) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
    return subprocess.run(
        [sys.executable, "-m", "cloudai", "agent", "train", *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=cwd,
    )  # fmt: skip


def test_the_model_is_not_written_over_the_store_it_was_trained_on(tmp_path):
    db = tmp_path / "master.db"
    history(db, n=20)
    before = db.read_bytes()
    done = train("--db", f"sqlite:///{db}", "--out", str(db), cwd=tmp_path)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"cloudai: {str(db)!r} is an SQLite database (a master's store?), not a model "
        "file: it is left alone; give another file name\n"
    )
    assert db.read_bytes() == before
    store = open_store(f"sqlite:///{db}")
    try:
        assert len(store.list_tasks()) == 20
    finally:
        store.close()


def test_another_sqlite_database_is_not_overwritten_either(tmp_path):
    db, other = tmp_path / "master.db", tmp_path / "other.db"
    history(db, n=20)
    history(other, n=2)
    before = other.read_bytes()
    done = train("--db", f"sqlite:///{db}", "--out", "other.db", "--json", cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr.count("\n")) == (1, "", 1)
    assert other.read_bytes() == before


@pytest.mark.parametrize("out", ["", "  "])
def test_an_empty_out_is_one_clear_line(tmp_path, out):
    history(tmp_path / "master.db", n=20)
    done = train("--db", "sqlite:///master.db", "--out", out, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (1, "")
    # Before the fix: "model file '.' is a directory: give a file name in it".
    assert done.stderr == "cloudai: no model file given: name the file to write\n"


def test_agent_help_names_what_the_options_accept(tmp_path):
    """--policy and --shadow take TOML profile files too, --model defaults to the
    shipped model and --id to agent-1: the help said none of it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
    env["COLUMNS"] = "200"
    done = subprocess.run(
        [sys.executable, "-m", "cloudai", "agent", "--help"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.replace("│", " ").split())
    assert "learned; or a profile file (JSON or TOML)." in text
    assert "(a --policy name or profile file, or firstfit" in text
    assert "--shadow learned (default: the shipped model)" in text
    assert "Agent id (agent-1)." in text
