"""Trace loaders: each parses a slice of its real trace and names the bad line."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from cloudai.agent.sim.synthetic import synthetic_nodes, synthetic_trace
from cloudai.agent.sim.trace import TraceError, load_openb_nodes, load_openb_pods, load_swf

SWF_OK = "1 0 -1 100 4 -1 -1 4 200 -1 1 1 -1 -1 -1 -1 -1 -1"
POD_HEAD = (
    "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    "creation_time,deletion_time,scheduled_time"
)


def test_swf_slice_of_lublin(lublin):
    t = load_swf(lublin, limit=100)
    assert len(t) == 100 and t.max_procs == 256
    assert t.job_id[0] == 1 and t.submit[0] == 5094 and t.run[0] == 12072 and t.procs[0] == 16
    # Lublin has no requested time: it is the run time.
    assert np.array_equal(t.req_time, t.run)
    assert np.all(np.diff(t.submit) >= 0)


def test_swf_kth_header_and_requested_time(kth):
    t = load_swf(kth, limit=50)
    assert t.max_procs == 100
    assert (t.req_time >= 0).all() and not np.array_equal(t.req_time, t.run)


def test_swf_plain_and_gzip_agree(tmp_path):
    text = f"; MaxProcs: 8\n{SWF_OK}\n"
    (tmp_path / "a.swf").write_text(text)
    with gzip.open(tmp_path / "a.swf.gz", "wt") as f:
        f.write(text)
    a, b = load_swf(tmp_path / "a.swf"), load_swf(tmp_path / "a.swf.gz")
    assert a.max_procs == b.max_procs == 8 and a.run.tolist() == b.run.tolist() == [100.0]


@pytest.mark.parametrize(
    "bad,message",
    [
        ("1 0 -1 100 4", "a.swf:3: expected 18"),
        (SWF_OK.replace(" 100 ", " ten "), r"a.swf:3: SWF field 4 \(run time\) is not a number"),
        (SWF_OK.replace("1 0 ", "1 -1 ", 1), "a.swf:3: negative submit time"),
        (
            SWF_OK.replace("1 0 ", "1 nan ", 1),
            r"a.swf:3: SWF field 2 \(submit time\) is not a finite",
        ),
        (SWF_OK.replace(" 100 ", " inf "), r"a.swf:3: SWF field 4 \(run time\) is not a finite"),
        (SWF_OK.replace(" 100 ", " -50 "), r"a.swf:3: SWF field 4 \(run time\) is -50: the only"),
        (SWF_OK.replace(" 4 ", " -4 ", 1), r"field 5 \(allocated processors\) is -4"),
        (SWF_OK.replace(" 200 ", " -100 "), r"field 9 \(requested time\) is -100"),
        (SWF_OK.replace("1 0 ", "1e300 0 ", 1), r"a.swf:3: SWF field 1 \(job id\) is too large"),
    ],
)
def test_swf_malformed_line_names_its_number(tmp_path, bad, message):
    (tmp_path / "a.swf").write_text(f"; MaxProcs: 8\n{SWF_OK}\n{bad}\n")
    with pytest.raises(TraceError, match=message):
        load_swf(tmp_path / "a.swf")


def test_swf_minus_one_is_unknown_skipped_and_counted(tmp_path):
    # -1 is SWF's "unknown": a job with no run time (or no processors) is skipped.
    no_run = SWF_OK.replace(" 100 ", " -1 ")
    no_procs = SWF_OK.replace(" 4 -1 -1 4 ", " -1 -1 -1 -1 ")
    (tmp_path / "a.swf").write_text(f"{SWF_OK}\n{no_run}\n{no_procs}\n{SWF_OK}\n")
    t = load_swf(tmp_path / "a.swf")
    assert len(t) == 2 and t.skipped == 2


def _gzip_bytes(text: str) -> bytes:
    return gzip.compress(text.encode(), mtime=0)


def _corrupt(data: bytes) -> bytes:
    """A good gzip member, then one whose deflate data is invalid (zlib.error when read):
    block type 3 is reserved."""
    return data + gzip.compress(b"", mtime=0)[:10] + b"\x07" + bytes(64)


def _swf_line(k: int) -> str:
    return f"{k} {k * 37} -1 {k * 13 % 997 + 1} 4 -1 -1 4 2000 -1 1 {k % 7} -1 -1 -1 -1 -1 -1\n"


def _pod_line(k: int) -> str:
    return (
        f"p{k},{k % 16 * 1000},{k * 31 % 4096},{k % 2},{k * 7 % 1000},,LS,Running,{k},{k + 9},{k}\n"
    )


SWF_MANY = "; MaxProcs: 8\n" + "".join(_swf_line(k) for k in range(1, 2000))
PODS_MANY = POD_HEAD + "\n" + "".join(_pod_line(k) for k in range(2000))


@pytest.mark.parametrize("name", ["a.swf.gz", "pods.csv.gz"])
@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_damaged_gzip_is_one_clear_error(tmp_path, name, damage):
    data = _gzip_bytes(SWF_MANY if name.endswith(".swf.gz") else PODS_MANY)
    bad = _corrupt(data) if damage == "corrupt" else data[: len(data) // 2]
    (tmp_path / name).write_bytes(bad)
    load = load_swf if name.endswith(".swf.gz") else load_openb_pods
    with pytest.raises(TraceError, match=f"{name}: cannot decompress: "):
        load(tmp_path / name)


def test_swf_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(TraceError, match="cannot read trace"):
        load_swf(tmp_path / "nope.swf")


def test_openb_pods_slice(openb_pods):
    t = load_openb_pods(openb_pods, limit=200)
    assert len(t) == 200
    assert t.procs[0] == 12.0 and t.memory[0] == 16384 * 1024**2 and t.gpu[0] == 1.0
    assert t.gpu[1] == pytest.approx(0.46)  # 460 milli-GPU of one shared device


def test_openb_nodes(openb_nodes):
    n = load_openb_nodes(openb_nodes)
    assert len(n) == 1213 and n.gpus[0] == 2 and n.cpu[0] == 64.0


@pytest.mark.parametrize(
    "row,message",
    [
        ("p1,12000,16384,1,1000,,LS,Running,x,10,0", "pods.csv:3: column creation_time"),
        ("p1,12000,-5,1,1000,,LS,Running,0,10,0", "pods.csv:3: column memory_mib is negative"),
        ("p1,12000", "pods.csv:3: wrong number of fields"),
        ("p1,nan,16384,1,1000,,LS,Running,0,10,0", "pods.csv:3: column cpu_milli is not a finite"),
        (
            "p1,12000,16384,inf,1000,,LS,Running,0,10,0",
            "pods.csv:3: column num_gpu is not a finite",
        ),
        ("p1,12000,1e300,1,1000,,LS,Running,0,10,0", "pods.csv:3: column memory_mib is too large"),
    ],
)
def test_openb_malformed_row_names_its_line(tmp_path, row, message):
    good = "p0,1000,1024,0,0,,LS,Running,0,10,0"
    (tmp_path / "pods.csv").write_text(f"{POD_HEAD}\n{good}\n{row}\n")
    with pytest.raises(TraceError, match=message):
        load_openb_pods(tmp_path / "pods.csv")


@pytest.mark.parametrize(
    "gpu,message",
    [
        ("nan", "n.csv:3: column gpu is not a finite number: 'nan'"),
        ("inf", "n.csv:3: column gpu is not a finite number: 'inf'"),
        ("1e30", "n.csv:3: column gpu is too large: '1e30'"),
        ("5000", "n.csv:3: column gpu must be a whole number of devices, 0 to 1024: '5000'"),
        ("1.5", "n.csv:3: column gpu must be a whole number of devices"),
    ],
)
def test_openb_nodes_gpu_count_must_be_a_sane_whole_number(tmp_path, gpu, message):
    (tmp_path / "n.csv").write_text(f"sn,cpu_milli,memory_mib,gpu\nn0,1000,1,2\nn1,1000,1,{gpu}\n")
    with pytest.raises(TraceError, match=message):
        load_openb_nodes(tmp_path / "n.csv")


def test_openb_nodes_missing_column(tmp_path):
    (tmp_path / "n.csv").write_text("sn,cpu_milli,gpu\nn0,1000,2\n")
    with pytest.raises(TraceError, match="n.csv:1: missing column"):
        load_openb_nodes(tmp_path / "n.csv")


def test_synthetic_is_seeded():
    a, b, c = synthetic_trace(300, seed=4), synthetic_trace(300, seed=4), synthetic_trace(300, 5)
    assert np.array_equal(a.submit, b.submit) and np.array_equal(a.procs, b.procs)
    assert not np.array_equal(a.run, c.run)
    assert (a.procs <= 256).all() and (a.req_time >= a.run).all()
    nodes = synthetic_nodes(20, seed=1)
    assert len(nodes) == 20 and nodes.ids == synthetic_nodes(20, seed=1).ids
