"""QA pass 11 on `cloudai sim`: the loaders' and the options' edge cases that gave a
traceback, a wrong flag name, a silently wrong result or a misleading line.

    - a node with an empty `sn` took pods that then counted as unplaced
    - a UTF-8 byte-order mark (spreadsheet export) hid the first column or line
    - a bad SWF header had no line number; a missing --nodes file was "a trace"
    - a damaged gzip file read as a malformed line; an empty CSV as missing columns
    - `sim train --exclude` with a negative seed, or windows covering every job, and
      `--load LO:inf`: tracebacks; `--exclude` with L too long blamed --length
    - `sim compare --policies` named none of the policies, and ran a repeated one twice
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from typer.testing import CliRunner

from cloudai.cli.main import app

from .test_sim_bad_input import POD_HEAD, cli, error, help_text, nodes, pods, swf

runner = CliRunner()
BOM = "\ufeff"


def _ok(*args: str) -> dict:
    out = runner.invoke(app, [*args, "--json"])
    assert out.exit_code == 0, (out.exception, out.output)
    return json.loads(out.output)


def _untimed(report: dict) -> dict:
    return {
        n: {k: v for k, v in m.items() if k != "seconds"} for n, m in report["policies"].items()
    }


# --- loaders --------------------------------------------------------------------------


def test_a_node_with_no_name_is_an_error_naming_its_line(tmp_path):
    """A placement on a worker named "" reads as not placed: the run reported every
    pod unplaced while their GPUs stayed allocated (and exited 0)."""
    (tmp_path / "n.csv").write_text("sn,cpu_milli,memory_mib,gpu\nn0,8000,65536,2\n,8000,65536,2\n")
    got = error("sim", "run", "--trace", pods(tmp_path), "--nodes", str(tmp_path / "n.csv"))
    assert got == f"{tmp_path / 'n.csv'}:3: column sn (the node's name) is empty"


def test_a_byte_order_mark_is_not_part_of_the_first_column_or_line(tmp_path):
    """With a BOM the pod CSV lacked column 'name' (it was '\\ufeffname'), the node CSV
    'sn', and an SWF file's first line was not a header comment."""
    bom_pods = tmp_path / "bom_pods.csv"
    bom_pods.write_text(BOM + Path(pods(tmp_path)).read_text())
    bom_nodes = tmp_path / "bom_nodes.csv"
    bom_nodes.write_text(BOM + Path(nodes(tmp_path)).read_text())
    plain = _ok("sim", "run", "--trace", pods(tmp_path), "--nodes", nodes(tmp_path))
    got = _ok("sim", "run", "--trace", str(bom_pods), "--nodes", str(bom_nodes))
    assert _untimed(got) == _untimed(plain)
    assert got["jobs"] == plain["jobs"] == 30

    bom_swf = tmp_path / "bom.swf"
    bom_swf.write_text(BOM + Path(swf(tmp_path)).read_text())
    got = _ok("sim", "run", "--trace", str(bom_swf))
    assert got["config"]["procs"] == 8 and got["jobs"] == 39


def test_a_bad_swf_header_names_its_line(tmp_path):
    body = Path(swf(tmp_path)).read_text().replace("; MaxProcs: 8\n", "")
    (tmp_path / "h.swf").write_text("; Version: 2.2\n; MaxProcs: eight\n" + body)
    got = error("sim", "run", "--trace", str(tmp_path / "h.swf"))
    assert got == f"{tmp_path / 'h.swf'}:2: header maxprocs is not a number: 'eight'"


def test_a_missing_node_file_is_called_a_node_file(tmp_path):
    missing = str(tmp_path / "nodes.csv")
    got = error("sim", "run", "--trace", pods(tmp_path), "--nodes", missing)
    assert got.startswith(f"cannot read node file {missing!r}: ")


def test_an_empty_csv_is_called_empty(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    got = error("sim", "run", "--trace", str(tmp_path / "empty.csv"), "--nodes", nodes(tmp_path))
    assert got == f"{tmp_path / 'empty.csv'}: empty file (no header line)"
    got = error("sim", "run", "--trace", pods(tmp_path), "--nodes", str(tmp_path / "empty.csv"))
    assert got == f"{tmp_path / 'empty.csv'}: empty file (no header line)"


def test_a_damaged_gzip_is_reported_as_damaged_not_as_a_bad_line(tmp_path):
    """A corrupt deflate stream can decode to garbage lines before zlib or the CRC
    check at the end notices: the garbage was reported as a malformed line. Here the
    garbage is a line of the compressed text and the damage a wrong CRC."""
    text = Path(swf(tmp_path)).read_text() + "garbage garbage\n"
    data = bytearray(gzip.compress(text.encode(), mtime=0))
    data[-8:-4] = bytes(4)  # the CRC-32 of the member
    (tmp_path / "d.swf.gz").write_bytes(bytes(data))
    got = error("sim", "run", "--trace", str(tmp_path / "d.swf.gz"))
    assert got.startswith(f"{tmp_path / 'd.swf.gz'}: cannot decompress: CRC check failed"), got

    csv_text = Path(pods(tmp_path)).read_text() + "garbage\n"
    data = bytearray(gzip.compress(csv_text.encode(), mtime=0))
    data[-8:-4] = bytes(4)
    (tmp_path / "d.csv.gz").write_bytes(bytes(data))
    got = error("sim", "run", "--trace", str(tmp_path / "d.csv.gz"), "--nodes", nodes(tmp_path))
    assert got.startswith(f"{tmp_path / 'd.csv.gz'}: cannot decompress: CRC check failed"), got

    # The damage check must not hide a real malformed line of an intact file.
    text = POD_HEAD + "\np0,1000,1024,1,1000,,LS,Running,0,10,0\np1,abc,1024,1,1000,,LS,R,0,1,0\n"
    (tmp_path / "p.csv.gz").write_bytes(gzip.compress(text.encode(), mtime=0))
    got = error("sim", "run", "--trace", str(tmp_path / "p.csv.gz"), "--nodes", nodes(tmp_path))
    assert got == f"{tmp_path / 'p.csv.gz'}:3: column cpu_milli is not a number: 'abc'"


# --- sim train's options --------------------------------------------------------------


def _train(tmp_path, *extra: str) -> str:
    return error(
        "sim", "train", "--trace", swf(tmp_path, jobs=200), "--out", str(tmp_path / "m.joblib"),
        "--iterations", "1", "--population", "1", "--windows", "1", "--length", "16", *extra,
    )  # fmt: skip


def test_exclude_with_a_negative_seed_is_refused(tmp_path):
    got = _train(tmp_path, "--exclude", "2:16:-1")
    assert got == "--exclude '2:16:-1': the seed S must be 0 or more"


def test_exclude_with_too_many_windows_is_refused(tmp_path):
    got = _train(tmp_path, "--exclude", "100001:16:1")
    assert got == "--exclude '100001:16:1': K is at most 100,000"


def test_exclude_longer_than_the_trace_names_exclude(tmp_path):
    """It said "--length 500 is longer than the trace", and --length was 16."""
    got = _train(tmp_path, "--exclude", "1:500:1")
    assert got == "--exclude 1:500:1: L=500 is longer than the trace (199 jobs)"


def test_exclude_that_leaves_nothing_to_train_on_is_refused(tmp_path):
    for sampler in ("bootstrap", "resample"):
        got = _train(tmp_path, "--exclude", "4:199:1", "--sampler", sampler)
        assert got.startswith("--exclude 4:199:1: its windows leave no two consecutive jobs")


def test_load_must_be_finite(tmp_path):
    for text in ("1:inf", "nan:1"):
        got = _train(tmp_path, "--load", text)
        assert got == f"--load {text!r}: need 0 < LO <= HI, both finite"


def test_real_train_command_prints_one_line(tmp_path):
    done = cli(
        "sim", "train", "--trace", swf(tmp_path, jobs=200), "--out", str(tmp_path / "m.joblib"),
        "--iterations", "1", "--population", "1", "--windows", "1", "--length", "16",
        "--exclude", "4:199:1",
    )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("cloudai: --exclude 4:199:1: its windows leave no two")


# --- sim compare ----------------------------------------------------------------------


def test_compare_help_names_the_policies():
    words = help_text("sim", "compare")
    assert "Comma-separated policy names, from: fcfs, sjf," in words
    for name in ("roundrobin", "tetris", "fgd", "learned"):
        assert name in words.split("--policies", 1)[1].split("--model", 1)[0]


def test_compare_runs_a_repeated_policy_once(tmp_path, monkeypatch):
    from cloudai.agent.sim import runner as sim_runner

    seen: list[list[str]] = []
    real = sim_runner.compare

    def spy(trace, names, *args, **kwargs):
        seen.append(list(names))
        return real(trace, names, *args, **kwargs)

    monkeypatch.setattr(sim_runner, "compare", spy)
    got = _ok("sim", "compare", "--trace", swf(tmp_path), "--policies", "fcfs,sjf,fcfs")
    assert seen == [["fcfs", "sjf"]]
    assert list(got["policies"]) == ["fcfs", "sjf"]
