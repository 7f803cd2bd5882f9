"""Trace loaders: each parses a slice of its real trace and names the bad line."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from cloudai.agent.sim.synthetic import synthetic_nodes, synthetic_trace
from cloudai.agent.sim.trace import TraceError, load_openb_nodes, load_openb_pods, load_swf

SWF_OK = "1 0 -1 100 4 -1 -1 4 200 -1 1 1 -1 -1 -1 -1 -1 -1"


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
        (SWF_OK.replace(" 100 ", " ten "), "a.swf:3: SWF field 4 is not a number: 'ten'"),
        (SWF_OK.replace("1 0 ", "1 -5 ", 1), "a.swf:3: negative submit time"),
    ],
)
def test_swf_malformed_line_names_its_number(tmp_path, bad, message):
    (tmp_path / "a.swf").write_text(f"; MaxProcs: 8\n{SWF_OK}\n{bad}\n")
    with pytest.raises(TraceError, match=message):
        load_swf(tmp_path / "a.swf")


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
    ],
)
def test_openb_malformed_row_names_its_line(tmp_path, row, message):
    head = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,"
    head += "creation_time,deletion_time,scheduled_time"
    good = "p0,1000,1024,0,0,,LS,Running,0,10,0"
    (tmp_path / "pods.csv").write_text(f"{head}\n{good}\n{row}\n")
    with pytest.raises(TraceError, match=message):
        load_openb_pods(tmp_path / "pods.csv")


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
