"""QA pass 6 on `cloudai sim`: a --slice that keeps no job is an error (not a row of
zeros that reads as a perfect result), and `sim train` refuses --modes naming no mode
and --workers below 1 before it trains."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cloudai.agent.sim.runner import SimConfig, compare, load_trace
from cloudai.cli.main import app
from cloudai.errors import CloudAIError

from .test_sim_bad_input import nodes, pods, swf

runner = CliRunner()


def test_a_slice_that_keeps_no_job_is_one_line_and_exit_1(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "cloudai", "sim", "run", "--trace", swf(tmp_path),
         "--slice", "0.99:1", "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == "cloudai: --slice 0.99:1 leaves none of the 39 jobs of t.swf\n"


def test_a_slice_that_keeps_no_pod_is_an_error_too(tmp_path):
    out = runner.invoke(
        app,
        ["sim", "compare", "--trace", pods(tmp_path), "--nodes", nodes(tmp_path),
         "--slice", "0.99:1", "--policies", "firstfit"],
    )  # fmt: skip
    assert isinstance(out.exception, CloudAIError)
    assert str(out.exception) == "--slice 0.99:1 leaves none of the 30 jobs of pods.csv"


def test_a_slice_that_keeps_one_job_still_runs(tmp_path):
    out = runner.invoke(app, ["sim", "run", "--trace", swf(tmp_path), "--slice", "0.98:1"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("t.swf[0.98:1]: 1 jobs")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--modes", ","], "--modes ',': name backfill, no_backfill or both"),
        (["--modes", ""], "--modes '': name backfill, no_backfill or both"),
        (["--workers", "0"], "--workers 0: must be 1 or more"),
        (["--workers", "-2"], "--workers -2: must be 1 or more"),
    ],
)
def test_sim_train_refuses_settings_that_train_nothing(tmp_path, args, message):
    out_file = tmp_path / "m.joblib"
    out = runner.invoke(
        app,
        ["sim", "train", "--trace", swf(tmp_path), "--out", str(out_file), "--length", "10",
         "--windows", "1", "--iterations", "1", "--population", "2", *args],
    )  # fmt: skip
    assert isinstance(out.exception, CloudAIError), out.output
    assert str(out.exception) == message
    assert not out_file.exists()


def _compare(trace: str, stderr) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cloudai", "sim", "compare", "--trace", trace,
         "--policies", "fcfs,sjf", "--json"],
        stdout=subprocess.PIPE, stderr=stderr, text=True, timeout=120,
    )  # fmt: skip


def test_compare_says_on_a_terminal_as_each_policy_ends(tmp_path):
    """stderr on a pty: one line per policy, and stdout is still only the JSON."""
    main, sub = pty.openpty()
    try:
        done = _compare(swf(tmp_path), sub)
        os.close(sub)
        said = os.read(main, 65536).decode()
    finally:
        os.close(main)
    assert done.returncode == 0, said
    report = json.loads(done.stdout)
    lines = said.splitlines()
    assert [line.split(":")[0] for line in lines] == ["[sim] 1/2 fcfs", "[sim] 2/2 sjf"]
    for line, name in zip(lines, ("fcfs", "sjf"), strict=True):
        assert f"bsld {report['policies'][name]['bsld']:.4g} in " in line


def test_compare_into_a_pipe_prints_no_progress(tmp_path):
    done = _compare(swf(tmp_path), subprocess.PIPE)
    assert (done.returncode, done.stderr) == (0, "")
    assert set(json.loads(done.stdout)["policies"]) == {"fcfs", "sjf"}


def test_progress_on_a_cluster_run_is_the_unallocated_gpu_share(tmp_path):
    lines: list[str] = []
    cfg = SimConfig(nodes=nodes(tmp_path))
    report = compare(
        load_trace(pods(tmp_path), cfg), ["fgd", "bestfit"], cfg, progress=lines.append
    )
    gpu = report["policies"]["bestfit"]["unallocated_gpu_frac"]
    assert lines[1].startswith(f"2/2 bestfit: unallocated GPUs {gpu:.1%} in ")
