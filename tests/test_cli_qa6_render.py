"""Tables stay aligned with wide (CJK) and combining characters, and text that could
rewrite an operator's terminal (C1 controls, bidirectional overrides) is refused on
submit and shown escaped if stored: the real `cloudai` command against a real master
on a loopback port (no Docker: tasks wait, nothing runs)."""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata

import pytest

from cloudai.cli.render import box, clip, panel
from cloudai.config import MasterSettings
from cloudai.master.server import Master
from cloudai.master.store import SQLiteStore


def cols(text: str) -> int:
    """Terminal columns, computed here independently of the code under test."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def cli(master: Master, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
    env["CLOUDAI_MASTER"] = f"127.0.0.1:{master.port}"
    return subprocess.run(
        [sys.executable, "-m", "cloudai", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


@pytest.fixture
def master(tmp_path):
    s = MasterSettings(host="127.0.0.1", port=0, console=False, agent_timeout=3600)
    m = Master(s, store=SQLiteStore(tmp_path / "m.db"))
    m.start()
    yield m
    m.stop(grace=0.5)


def test_tasks_table_is_aligned_with_wide_names(master):
    for name in ("数据处理任务", "café", "plain"):
        out = cli(master, "submit", "cloudai/sample-task:latest", "--name", name)
        assert out.returncode == 0, out.stderr
    out = cli(master, "tasks")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any("数据处理任务" in ln for ln in lines)
    assert len({cols(ln) for ln in lines}) == 1, out.stdout  # every row as wide as the box


@pytest.mark.parametrize("bad", ["a\u202eevil", "x\x9b31m", "r\u2066l"])
def test_submit_refuses_terminal_rewriting_names_in_one_line(master, bad):
    out = cli(master, "submit", "cloudai/sample-task:latest", "--name", bad)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out
    assert out.stderr == "cloudai: name must not contain control characters\n"
    assert cli(master, "tasks", "--json").stdout.strip() == "[]"  # nothing was queued


def test_cells_clip_by_columns_and_escape_c1_and_bidi():
    assert clip("a\u202eb\x9bc") == "a\\u202eb\\x9bc"
    wide = clip("名" * 100, 10)
    assert wide == "名" * 4 + "…" and cols(wide) == 9
    assert cols("e\u0301") == 1
    table = box("T", ["ID", "NAME"], [["1", "名前"], ["2", "ab"]]).splitlines()
    assert len({cols(ln) for ln in table}) == 1
    lines = panel("P", [("name", "名前"), ("id", "x")]).splitlines()
    assert len({cols(ln) for ln in lines}) == 1
