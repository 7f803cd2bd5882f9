"""The benchmark runs and reports what it measured (figures are not asserted: not timed)."""

from __future__ import annotations

import json

from cloudai.agent.bench import bench_placement, main


def test_bench_reports_its_figures():
    r = bench_placement(workers=60, tasks=300, seed=1)
    assert {
        "workers",
        "tasks",
        "decisions",
        "placed",
        "seconds",
        "decisions_per_s",
        "profile",
    } <= set(r)
    assert (r["workers"], r["tasks"], r["decisions"], r["profile"]) == (60, 300, 300, "default")
    assert 0 < r["placed"] <= 300
    assert r["decisions_per_s"] > 0


def test_bench_cli_prints_json(capsys):
    assert main(["--workers", "40", "--tasks", "100", "--profile", "tetris", "--runs", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["profile"] == "tetris" and len(out["runs"]) == 3
