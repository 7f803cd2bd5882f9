"""QA pass 7 on `cloudai sim` and `cloudai bench`: paths and gzip told apart by what
they are, not by their names; figures of no job are '-' with a warning, not zeros;
the JSON records the setup that ran; `sim train` refuses SWF-only options on openb
and an empty --features; its pool workers end with it; bench placement checks ranges."""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from cloudai.cli.main import app
from tests.traces import trace_path

from .test_sim_bad_input import error, nodes, pods, swf

runner = CliRunner()


def _cloudai(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cloudai", *args], capture_output=True, text=True, timeout=120
    )


def test_gzip_is_told_by_its_bytes_not_its_name(tmp_path):
    plain = Path(swf(tmp_path))
    want = json.loads(runner.invoke(app, ["sim", "run", "--trace", str(plain), "--json"]).output)
    for name in ("T.SWF.GZ", "zipped.swf"):
        (tmp_path / name).write_bytes(gzip.compress(plain.read_bytes()))
        out = runner.invoke(app, ["sim", "run", "--trace", str(tmp_path / name), "--json"])
        assert out.exit_code == 0, out.output
        got = json.loads(out.output)
        assert got["jobs"] == want["jobs"] == 39
        assert _without_seconds(got["policies"]) == _without_seconds(want["policies"])


def _without_seconds(policies: dict) -> dict:
    """The figures, less the run time, which differs between runs."""
    for row in policies.values():
        row.pop("seconds", None)
    return policies


def test_a_directory_or_a_missing_path_says_so(tmp_path):
    assert error("sim", "run", "--trace", str(tmp_path)) == (
        f"{str(tmp_path)!r} is a directory, not a trace file"
    )
    missing = str(tmp_path / "nope.swf")
    assert error("sim", "run", "--trace", missing) == f"no such trace file: {missing!r}"
    out = str(tmp_path / "m.joblib")
    got = error("sim", "train", "--trace", missing, "--out", out)
    assert got == f"no such trace file: {missing!r}"
    got = error("sim", "run", "--trace", pods(tmp_path), "--nodes", str(tmp_path))
    assert got.endswith("is a directory, not a file")


def test_no_job_ran_is_dashes_and_a_warning_not_a_perfect_score(tmp_path):
    """One job of 4 processors on a 2-processor machine: nothing runs, so there is
    no bsld (it is at least 1 by definition; 0 would read as perfect)."""
    path = tmp_path / "big.swf"
    path.write_text("; MaxProcs: 2\n1 0 0 100 4 -1 -1 4 100 -1 1 1 1 1 1 -1 -1 -1\n")
    done = _cloudai("sim", "run", "--trace", str(path), "--json")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)["policies"]["fcfs"]
    assert row["bsld"] is None and row["mean_jct"] is None and row["p95_jct"] is None
    assert row["unplaced"] == 1
    assert done.stderr.startswith("cloudai: warning: fcfs: no job ran (1 could not be placed")
    table = _cloudai("sim", "run", "--trace", str(path))
    assert table.stdout.splitlines()[2].split()[:2] == ["fcfs", "-"]
    assert "no job ran" in table.stderr


def test_the_json_records_the_setup_that_ran(tmp_path):
    out = runner.invoke(
        app, ["sim", "run", "--trace", swf(tmp_path), "--sequences", "3", "--length", "5",
              "--json"],
    )  # fmt: skip
    report = json.loads(out.output)
    assert (report["jobs"], report["simulated"]) == (39, 15)
    assert report["config"]["format"] == "swf" and report["config"]["procs"] == 8
    table = runner.invoke(app, ["sim", "run", "--trace", swf(tmp_path), "--sequences", "3",
                                "--length", "5"])  # fmt: skip
    assert table.output.splitlines()[0] == "t.swf: 39 jobs (1 skipped: no run time or " \
        "processors), 3 windows of 5"  # fmt: skip
    cluster = runner.invoke(
        app, ["sim", "run", "--trace", pods(tmp_path), "--nodes", nodes(tmp_path),
              "--policy", "bestfit", "--json"],
    )  # fmt: skip
    cfg = json.loads(cluster.output)["config"]
    assert (cfg["format"], cfg["procs"], cfg["node_count"]) == ("openb", 0, 6)


def test_counts_beyond_what_exists_are_one_line_errors(tmp_path):
    trace = swf(tmp_path)
    got = error("sim", "run", "--trace", trace, "--sequences", "99999999999", "--length", "1")
    assert got == "--sequences 99999999999: at most 100,000"
    got = error("sim", "run", "--trace", pods(tmp_path), "--nodes", nodes(tmp_path),
                "--node-limit", "7")  # fmt: skip
    assert got == "--node-limit 7: nodes.csv has only 6 nodes"


def test_a_cluster_with_no_gpu_is_refused(tmp_path):
    (tmp_path / "cpu.csv").write_text("sn,cpu_milli,memory_mib,gpu\nn0,8000,65536,0\n")
    got = error("sim", "run", "--trace", pods(tmp_path), "--nodes", str(tmp_path / "cpu.csv"))
    assert got.startswith("none of the 1 nodes has a GPU: a saturation run fills the GPUs")


def test_sim_train_refuses_swf_only_options_on_openb_and_an_empty_feature_list(tmp_path):
    p, n, out = pods(tmp_path), nodes(tmp_path), str(tmp_path / "m.joblib")
    base = ("sim", "train", "--trace", p, "--nodes", n, "--out", out)
    for flag, value in (("--guard", "0.95"), ("--features", "fits"), ("--windows", "3"),
                        ("--exclude", "1:5:1"), ("--modes", "backfill")):  # fmt: skip
        got = error(*base, flag, value)
        assert got.startswith(f"{flag} is for SWF traces; on an openb trace training tunes")
    assert not Path(out).exists()
    got = error("sim", "train", "--trace", swf(tmp_path), "--out", out, "--features", ",")
    assert got == "--features ',': name at least one (or leave it out for all)"


def _children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    return [int(x) for x in found.stdout.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_sim_train_pool_workers_end_when_it_is_killed(tmp_path):
    """SIGKILL skips the pool's shutdown; the workers must not linger as orphans."""
    trace = str(trace_path("lublin_256.swf.gz"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "cloudai", "sim", "train", "--trace", trace, "--windows", "4",
         "--length", "512", "--iterations", "50", "--population", "4", "--workers", "2",
         "--modes", "no_backfill", "--out", str(tmp_path / "m.joblib")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(workers := _children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(workers) >= 2, "the pool never started"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while any(map(_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(map(_alive, workers)), f"orphaned pool workers: {workers}"
    finally:
        proc.kill()
        for pid in _children(proc.pid):
            os.kill(pid, signal.SIGKILL)


def test_bench_placement_checks_its_ranges_and_explains_its_options():
    for flag, value, low in (("--workers", "0", 1), ("--tasks", "-5", 1), ("--seed", "-1", 0)):
        done = _cloudai("bench", "placement", flag, value)
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert done.stderr.startswith(
            f"cloudai: invalid value '{value}' for {flag}: expected greater than or equal to {low}"
        )
    help_text = runner.invoke(app, ["bench", "placement", "--help"]).output
    assert "Workers of the random cluster" in help_text and "built-in profile name" in help_text


def test_sim_run_help_lists_every_policy():
    import typer

    from cloudai.agent.sim.policies import POLICY_NAMES

    run = typer.main.get_command(app).commands["sim"].commands["run"]
    (policy,) = [p for p in run.params if p.name == "policy"]
    listed = policy.help.split(": ", 1)[1].rstrip(".").replace(" or ", ", ").split(", ")
    assert sorted(listed) == sorted(POLICY_NAMES)
