"""`cloudai sim` on bad input: one clear line and exit 1, never a traceback or a silently
wrong result. In process (CliRunner) we see the exception the entry point would print
(main.main); a few cases run the real command to check the line and the exit code."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pytest
from typer.testing import CliRunner

from cloudai.agent.learn.model import LearnedModel, ModelError, load_model
from cloudai.agent.learn.priority import FEATURES
from cloudai.cli.client import CliExit
from cloudai.cli.main import app
from cloudai.errors import CloudAIError

runner = CliRunner()
POD_HEAD = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    "creation_time,deletion_time,scheduled_time"
)


def swf(tmp_path, jobs: int = 40, name: str = "t.swf") -> str:
    """`jobs` small jobs on an 8-processor machine; job 3's run time is unknown (-1)."""
    lines = [f"{k} {k * 50} -1 {k % 9 * 40 + 10} {k % 4 + 1} -1 -1 -1" for k in range(jobs)]
    lines[3] = "3 150 -1 -1 4 -1 -1 -1"
    body = "".join(f"{line} -1 -1 -1 1 -1 -1 -1 -1 -1 -1\n" for line in lines)
    (tmp_path / name).write_text(f"; MaxProcs: 8\n{body}")
    return str(tmp_path / name)


def pods(tmp_path, name: str = "pods.csv"):
    rows = [f"p{k},1000,1024,1,1000,,LS,Running,{k},{k + 500},{k}" for k in range(30)]
    (tmp_path / name).write_text(POD_HEAD + "\n" + "\n".join(rows) + "\n")
    return str(tmp_path / name)


def nodes(tmp_path):
    rows = [f"n{k},8000,65536,2" for k in range(6)]
    (tmp_path / "nodes.csv").write_text("sn,cpu_milli,memory_mib,gpu\n" + "\n".join(rows) + "\n")
    return str(tmp_path / "nodes.csv")


def error(*args: str) -> str:
    """The one-line message `cloudai ARGS` fails with (exit 1 at the entry point)."""
    out = runner.invoke(app, list(args))
    assert isinstance(out.exception, CloudAIError | CliExit), (out.exception, out.output)
    message = str(out.exception)
    assert message and "\n" not in message
    return message


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cloudai", *args], capture_output=True, text=True, timeout=120
    )


def test_real_command_prints_one_line_and_exits_1(tmp_path):
    data = gzip.compress(Path(pods(tmp_path)).read_bytes(), mtime=0)
    (tmp_path / "trunc.csv.gz").write_bytes(data[: len(data) // 2])
    cases = {
        "trunc.csv.gz: cannot decompress: ": [
            "--trace", str(tmp_path / "trunc.csv.gz"), "--nodes", nodes(tmp_path)
        ],
        "--sequences needs --length": ["--trace", swf(tmp_path), "--sequences", "3"],
    }  # fmt: skip
    for message, args in cases.items():
        done = cli("sim", "run", *args)
        assert done.returncode == 1 and done.stdout == "", done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith("cloudai: ") and message in line


@pytest.mark.parametrize(
    "args,message",
    [
        (["--sequences", "3"], "--sequences needs --length"),
        (["--length", "100"], "--length needs --sequences"),
        (["--sequences", "-3", "--length", "10"], "--sequences -3: must be 0 or more"),
        (["--sequences", "3", "--length", "-10"], "--length -10: must be 0 or more"),
        (["--seed", "-1"], "--seed -1: must be 0 or more"),
        (["--limit", "-5"], "--limit -5: must be 0 or more (0: the whole trace)"),
        (["--procs", "-5"], "--procs -5: must be 0 or more (0: the header's MaxProcs)"),
        (["--node-limit", "3"], "--node-limit needs --nodes"),
    ],
)
def test_bad_counts_are_one_line_errors(tmp_path, args, message):
    assert message in error("sim", "run", "--trace", swf(tmp_path), *args)


def test_negative_node_limit_is_an_error(tmp_path):
    got = error("sim", "run", "--trace", pods(tmp_path), "--nodes", nodes(tmp_path),
                "--node-limit", "-3")  # fmt: skip
    assert "--node-limit -3: must be 0 or more (0: all the nodes)" in got


def help_text(*cmd: str) -> str:
    """A command's --help as one line of words (no box drawing, no wrapping)."""
    out = runner.invoke(app, [*cmd, "--help"]).output
    return " ".join(out.replace("│", " ").split())


def test_help_says_zero_means_unset():
    out = help_text("sim", "run")
    assert "0: all." in out and "0: the header's MaxProcs" in out and "0: all the nodes" in out


def test_the_trace_format_decides_the_simulator(tmp_path):
    p, n = pods(tmp_path), nodes(tmp_path)
    for extra in ([], ["--procs", "100"]):
        got = error("sim", "run", "--trace", p, *extra)
        assert got == "pods.csv is an openb trace: it needs its nodes, pass --nodes PATH"
    got = error("sim", "run", "--trace", swf(tmp_path), "--nodes", n, "--policy", "firstfit")
    assert got.startswith("t.swf is an SWF trace") and "--nodes is for openb traces" in got
    got = error("sim", "compare", "--trace", p, "--format", "swf", "--nodes", n)
    assert got.startswith("pods.csv is an SWF trace")
    out = str(tmp_path / "m.joblib")
    got = error("sim", "train", "--trace", swf(tmp_path), "--nodes", n, "--out", out)
    assert "--nodes is for openb traces" in got


def test_swf_only_flags_are_refused_on_an_openb_trace(tmp_path):
    p, n = pods(tmp_path), nodes(tmp_path)
    for cmd in ("run", "compare"):
        got = error("sim", cmd, "--trace", p, "--nodes", n, "--procs", "64")
        assert got == (
            "--procs is for SWF traces (one machine); pods.csv is an openb trace, "
            "placed on the nodes of --nodes"
        )
        got = error("sim", cmd, "--trace", p, "--nodes", n, "--backfill")
        assert got.startswith("--backfill is for SWF traces (one machine)")
    out = str(tmp_path / "m.joblib")
    got = error("sim", "train", "--trace", p, "--nodes", n, "--procs", "8", "--out", out)
    assert got.startswith("--procs is for SWF traces")


def test_empty_policy_list_is_an_error(tmp_path):
    for given in ("", ",,", " , "):
        got = error("sim", "compare", "--trace", swf(tmp_path), "--policies", given)
        assert got.startswith("no policies given (known: fcfs,")


def test_skipped_lines_and_model_version_are_in_the_output(tmp_path):
    t = swf(tmp_path)
    out = runner.invoke(app, ["sim", "compare", "--trace", t, "--policies", "fcfs,learned"])
    assert out.exit_code == 0, out.output
    assert "t.swf: 39 jobs (1 skipped: no run time or processors)" in out.output
    assert "learned: model " in out.output
    out = runner.invoke(app, ["sim", "run", "--trace", t, "--json"])
    assert json.loads(out.output)["skipped"] == 1


def test_help_says_which_policies_coincide():
    for cmd in (["sim"], ["sim", "compare"]):
        text = help_text(*cmd)
        assert "placement policies" in text and "FCFS's results" in text, text
        assert "queue orderers" in text and "firstfit's" in text


TRAIN = ["--iterations", "1", "--population", "3", "--windows", "2", "--length", "20"]


@pytest.mark.parametrize(
    "change,message",
    [
        (["--population", "0"], "--population 0: must be 1 or more"),
        (["--windows", "0"], "--windows 0: nothing to train on"),
        (["--length", "0"], "--length 0: must be 1 or more"),
        (["--length", "100"], "--length 100 is longer than the trace (39 jobs)"),
        (["--iterations", "-1"], "--iterations -1: must be 0 or more"),
    ],
)
def test_sim_train_rejects_bad_settings(tmp_path, change, message):
    out = str(tmp_path / "m.joblib")
    assert message in error("sim", "train", "--trace", swf(tmp_path), "--out", out, *TRAIN, *change)


def test_sim_train_checks_the_output_path_before_training(tmp_path):
    out = runner.invoke(app, ["sim", "train", "--trace", swf(tmp_path), "--out", str(tmp_path),
                              *TRAIN])  # fmt: skip
    assert "is a directory: give a file name in it" in str(out.exception)
    assert "train log-bsld" not in out.output  # no training ran


def test_sim_train_prints_validation_only_when_asked(tmp_path):
    args = ["sim", "train", "--trace", swf(tmp_path), "--out", str(tmp_path / "m.joblib"), *TRAIN]
    out = runner.invoke(app, args)
    assert out.exit_code == 0 and "train log-bsld" in out.output, out.output
    assert "validation" not in out.output
    out = runner.invoke(app, [*args, "--validation", "2"])
    assert out.exit_code == 0 and "validation " in out.output


K = len(FEATURES)


def _model_file(tmp_path, name: str, **change) -> str:
    data = LearnedModel.new(np.zeros(K), np.zeros(K)).to_dict()
    for key, value in change.items():
        if key in ("backfill", "no_backfill"):
            data["priority"][key] = value
        else:
            data[key] = value
    joblib.dump(data, tmp_path / name)
    return str(tmp_path / name)


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"backfill": ["a"] * K}, f"priority weights 'backfill' must be {K} finite numbers"),
        (
            {"no_backfill": [np.nan] * K},
            f"priority weights 'no_backfill' must be {K} finite numbers",
        ),
        ({"priority": [1]}, "'priority' must be a table, got list"),
        ({"profile": 42}, "'profile' must be a table or None, got int"),
        ({"profile": {"weights": "x"}}, "placement profile: unknown profile field(s): weights"),
        ({"meta": [1, 2]}, "'meta' must be a table or None, got list"),
        ({"format_version": 999}, "unsupported model format 999"),
    ],
)
def test_model_file_of_the_wrong_shape_is_invalid(tmp_path, change, reason):
    path = _model_file(tmp_path, "m.joblib", **change)
    with pytest.raises(ModelError) as got:
        load_model(path)
    assert str(got.value) == f"model file {path!r} is invalid: {reason}"
    got_cli = error("sim", "run", "--trace", swf(tmp_path), "--policy", "learned", "--model", path)
    assert got_cli == str(got.value)


def test_empty_model_file_and_directory_say_so(tmp_path):
    (tmp_path / "empty.joblib").write_bytes(b"")
    with pytest.raises(ModelError, match="'.*empty.joblib' is empty$"):
        load_model(tmp_path / "empty.joblib")
    with pytest.raises(ModelError, match="is a directory, not a model file"):
        load_model(tmp_path)
