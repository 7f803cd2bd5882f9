"""The master benchmark still runs end to end on a small cluster (its figures are for
docs/benchmarks.md; here only that every committed placement reached the workers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.traces import trace_path

ROOT = Path(__file__).resolve().parent.parent


def _run(script: str, *args: str) -> str:
    """stdout of benchmarks/<script> with these arguments (it must exit 0)."""
    cmd = [sys.executable, str(ROOT / "benchmarks" / script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout


def test_placement_master_benchmark_delivers_every_committed_placement():
    out = _run(
        "placement_master.py",
        *("--workers", "100", "--tasks", "1000", "--batch", "250"),
        *("--latency-tasks", "10", "--runs", "1", "--json"),
    )
    figures = json.loads(out[out.index("{") :])
    assert figures["undelivered"] == 0
    assert figures["placements_per_s"] > 0 and figures["delivered_per_s"] > 0
    assert 0 < figures["assign_calls"] <= 1000  # at most one call per placement
    assert figures["latency_p50_ms"] > 0


def test_heldout_check_scores_policies_on_the_validation_sequences():
    """The script docs/placement-results.md uses to choose between models without the
    evaluation windows: the same sequences as training's validation, every policy."""
    trace = trace_path("lublin_256.swf.gz")
    model = str(ROOT / "agent" / "models" / "lublin.joblib")
    out = _run(
        "heldout_check.py",
        *("--trace", str(trace), "--exclude", "10:1024:1", "--sampler", "resample"),
        *("--sequences", "2", "--length", "200", "--policies", "f1,fcfs", "--json"),
        *("--models", model),
    )
    figures = json.loads(out)
    assert set(figures) == {"f1", "fcfs", model}
    for fig in figures.values():
        assert len(fig["bsld"]) == 2 and all(b >= 1.0 for b in fig["bsld"])
    assert figures["f1"]["mean"] < figures["fcfs"]["mean"]


def test_lookahead_benchmark_prints_both_policies_and_their_ratio():
    trace = trace_path("lublin_256.swf.gz")
    out = _run(
        "lookahead.py",
        *("--trace", str(trace), "--sequences", "2", "--length", "150", "--json"),
    )
    figures = json.loads(out)
    assert figures["f1"] >= 1.0 and figures["planner"] >= 1.0
    assert abs(figures["ratio"] - figures["planner"] / figures["f1"]) < 1e-12


def test_lookahead_benchmark_runs_on_heldout_sequences_and_rejects_a_bad_load():
    trace = trace_path("lublin_256.swf.gz")
    args = ("--trace", str(trace), "--length", "150", "--heldout", "2", "--samples", "0")
    figures = json.loads(_run("lookahead.py", *args, "--json"))
    assert figures["f1"] >= 1.0 and figures["planner"] >= 1.0
    bad = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "lookahead.py"), *args, "--load", "x"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1 and bad.stderr.strip().startswith("lookahead: --load 'x'")


def test_store_owner_index_benchmark_compares_both_variants():
    out = _run(
        "store_owner_index.py",
        *("--prefill", "300", "--write-tasks", "60", "--batch", "20", "--sizes", "600"),
        *("--owners", "5", "--limits", "50", "--queries", "3", "--reps", "2", "--json"),
    )
    figures = json.loads(out)
    writes = figures["writes"]
    assert writes["without"]["tasks_per_s"] > 0 and writes["with"]["tasks_per_s"] > 0
    assert writes["total_ratio"] > 0 and writes["paired_ratio"] > 0
    (listing,) = figures["listing"]
    assert listing["same_results"] and listing["rows_per_owner_listing"] == {"50": 50}
    assert all(ms > 0 for ms in listing["without"].values())
    # The index serves the exact query list_tasks issues, and only when it exists.
    assert "USING INDEX idx_tasks_owner" in listing["plans"]["with"]["owner"]
    assert "idx_tasks_owner" not in listing["plans"]["without"]["owner"]


def test_backfill_order_benchmark_matches_the_simulator_when_both_orders_agree():
    """With one orderer for the head and the backfilling candidates, the split
    simulator must give exactly `cloudai sim compare --backfill`'s figure."""
    trace = str(trace_path("lublin_256.swf.gz"))
    window = ("--length", "200", "--seed", "1")
    out = _run(
        "backfill_order.py",
        *("--trace", trace, "--validation", "2", "--windows", "2", "--eval-seeds", "1"),
        *window[:2],
        *("--heads", "f1", "--backfills", "f1,area"),
    )
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["head"], r["backfill"]) for r in rows] == [("f1", "f1"), ("f1", "area")]
    cmd = [sys.executable, "-m", "cloudai", "sim", "compare", "--trace", trace, "--backfill"]
    cmd += ["--sequences", "2", *window, "--policies", "f1", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    f1 = json.loads(done.stdout)["policies"]["f1"]["bsld"]
    assert rows[0]["seed1"] == round(f1, 2)
    assert all(r["val"] >= 1.0 and r["seed1"] >= 1.0 for r in rows)


def test_seed_sweep_agrees_with_sim_compare_on_each_seed():
    """Each seed's row is what `cloudai sim compare --seed S` prints for that seed."""
    trace = str(trace_path("lublin_256.swf.gz"))
    window = ("--sequences", "2", "--length", "200")
    out = json.loads(_run("seed_sweep.py", "--trace", trace, *window, "--seeds", "3,5", "--json"))
    assert [r["seed"] for r in out["rows"]] == [3, 5]
    for row in out["rows"]:
        cmd = [sys.executable, "-m", "cloudai", "sim", "compare", "--trace", trace, *window]
        cmd += ["--seed", str(row["seed"]), "--policies", "fcfs,wfp3,unicep,sjf,f1,learned"]
        pols = json.loads(
            subprocess.run([*cmd, "--json"], capture_output=True, text=True, check=True).stdout
        )["policies"]
        learned = pols.pop("learned")["bsld"]
        best = min(pols, key=lambda p: pols[p]["bsld"])
        assert (row["best"], row["best_bsld"], row["learned"]) == (
            best,
            pols[best]["bsld"],
            learned,
        )
        assert row["ratio"] == learned / pols[best]["bsld"]
    ratios = [r["ratio"] for r in out["rows"]]
    assert abs(out["median_ratio"] - sum(ratios) / 2) < 1e-12  # two seeds: their mean
    assert out["seeds_meeting_target"] == sum(x <= 0.9 for x in ratios)


def test_window_oracle_bounds_each_window_and_agrees_with_sim_compare():
    """The hindsight bound takes each window's best expert; the experts' means are
    `cloudai sim compare`'s figures; follow-the-leader with one expert is that expert."""
    trace = str(trace_path("lublin_256.swf.gz"))
    window = ("--sequences", "3", "--length", "200", "--seed", "1")
    experts = ("--experts", "f1,sjf,fits_smallest_area")
    out = json.loads(
        _run("window_oracle.py", "--trace", trace, *window, *experts, "--ftl", "24:6", "--json")
    )
    per = {n: e["bsld"] for n, e in out["experts"].items()}
    best_each = [min(v) for v in zip(*per.values(), strict=True)]
    assert abs(out["hindsight"]["mean"] - sum(best_each) / 3) < 1e-9
    assert all(out["hindsight"]["mean"] <= e["mean"] for e in out["experts"].values())
    assert out["best_heuristic"] in ("f1", "sjf")  # a named rule is not a heuristic
    cmd = [sys.executable, "-m", "cloudai", "sim", "compare", "--trace", trace, *window]
    done = subprocess.run([*cmd, "--policies", "f1,sjf", "--json"], capture_output=True,
                          text=True, check=True)  # fmt: skip
    pols = json.loads(done.stdout)["policies"]
    for name in ("f1", "sjf"):
        assert abs(out["experts"][name]["mean"] - pols[name]["bsld"]) < 1e-9
    ftl = out["ftl"]["24:6"]  # it switches within a window, so the bound is not its bound
    assert len(ftl["bsld"]) == 3 and all(b >= 1.0 for b in ftl["bsld"])

    alone = json.loads(
        _run("window_oracle.py", "--trace", trace, *window, "--experts", "sjf", "--ftl", "24:6",
             "--json")
    )  # fmt: skip
    assert alone["ftl"]["24:6"]["bsld"] == alone["experts"]["sjf"]["bsld"]


def test_window_oracle_rejects_a_bad_ftl_spec_in_one_line():
    trace = str(trace_path("lublin_256.swf.gz"))
    cmd = [sys.executable, str(ROOT / "benchmarks" / "window_oracle.py"), "--trace", trace]
    done = subprocess.run([*cmd, "--ftl", "72", "--experts", "f1"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == "window_oracle: --ftl '72': give H:R in hours, e.g. 72:6"


def _gate(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gate_oracle.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_gate_oracle_picks_the_rule_whose_replay_costs_least(tmp_path):
    """One processor: a 100 s job runs when a 1,000 s job and five 10 s jobs arrive
    together. Replaying FCFS runs the long job first and SJF the short ones; the gate
    must choose SJF at each of the five decisions with more than one job queued, and
    so score exactly SJF's figure, with the real future, the real arrivals (every job
    runs its requested time here), the last hour repeated, or none (nothing arrives
    later)."""
    jobs = [(0, 100), (1, 1000)] + [(1, 10)] * 5
    body = "".join(
        f"{j} {t} -1 {run} 1 -1 -1 1 {run} -1 1 1 -1 -1 -1 -1 -1 -1\n"
        for j, (t, run) in enumerate(jobs)
    )
    (tmp_path / "tiny.swf").write_text(f"; MaxProcs: 1\n{body}")
    window = ("--trace", str(tmp_path / "tiny.swf"), "--sequences", "1", "--length", "7")
    for future in ("hindsight", "arrivals", "recent", "none"):
        done = _gate(*window, "--experts", "fcfs,sjf", "--gate", "1:1e-4", "--future", future,
                     "--json")  # fmt: skip
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        sjf, fcfs = out["experts"]["sjf"]["mean"], out["experts"]["fcfs"]["mean"]
        assert sjf < fcfs / 5  # the case is what the docstring says
        gate = out["gate"]["1:0.0001"]
        assert gate["picks"] == {"sjf": 5} and gate["mean"] == sjf
    alone = json.loads(_gate(*window, "--experts", "fcfs", "--gate", "1:1e-4", "--future",
                             "hindsight", "--json").stdout)  # fmt: skip
    assert alone["gate"]["1:0.0001"]["bsld"] == alone["experts"]["fcfs"]["bsld"]
    # Every job of this trace is in the window: there is nothing to fit a model to.
    bad = _gate(*window, "--experts", "fcfs,sjf", "--future", "sampled")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
    assert bad.stderr.startswith("gate_oracle: --future sampled: every job of the trace")


def test_gate_oracle_with_imagined_futures_chooses_among_its_experts():
    trace = str(trace_path("lublin_256.swf.gz"))
    args = ("--trace", trace, "--sequences", "2", "--length", "150", "--seed", "1")
    done = _gate(*args, "--experts", "f1,sjf", "--gate", "12:6", "--samples", "1", "--json")
    assert done.returncode == 0, done.stderr
    gate = json.loads(done.stdout)["gate"]["12:6"]
    assert gate["future"] == "sampled" and len(gate["bsld"]) == 2
    assert set(gate["picks"]) <= {"f1", "sjf"} and sum(gate["picks"].values()) > 0
    assert all(b >= 1.0 for b in gate["bsld"])
    assert _gate(*args, "--future", "soon").stderr.strip() == (
        "gate_oracle: --future 'soon': one of hindsight, arrivals, sampled, none, recent"
    )
    assert _gate(*args, "--fit", "0.7").stderr.strip() == (
        "gate_oracle: --fit '0.7': use A:B with 0 <= A < B <= 1, e.g. 0:0.7"
    )


def _ceiling(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "ceiling.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_ceiling_starts_at_the_best_rule_and_never_gets_worse():
    """With no iteration the ceiling is its best start, and F1 written as linear
    weights scores exactly the registered F1; the clock terms and the neural scorer's
    output weights start at zero, so they change no start. The search re-scores its
    best, so the curve never rises."""
    trace = str(trace_path("lublin_256.swf.gz"))
    args = ("--trace", trace, "--sequences", "2", "--length", "150", "--json")
    plain = json.loads(_ceiling(*args, "--iterations", "0").stdout)
    assert plain["starts"]["f1"] == plain["heuristics"]["f1"]
    assert plain["best"] == min(plain["starts"].values()) and plain["curve"] == []
    done = _ceiling(*args, "--iterations", "2", "--population", "5", "--clock", "--hidden", "2")
    assert done.returncode == 0, done.stderr
    clock = json.loads(done.stdout)
    assert clock["starts"] == plain["starts"]
    assert len(clock["curve"]) == 2 and clock["curve"][1] <= clock["curve"][0] <= plain["best"]
    assert clock["best"] == clock["curve"][-1]
    assert clock["ratio"] == clock["best"] / clock["heuristics"][clock["best_heuristic"]]
    assert {"runtime_sin", "fits_cos", "f1_age", "w1_log_delay", "b1", "v1"} <= set(
        clock["weights"]
    )
    bad = _ceiling(*args, "--features", "log_runtime,bogus")
    assert bad.returncode == 2 and bad.stderr.startswith("ceiling: --features: unknown")
    bad = _ceiling(*args, "--hidden", "1", "--mlp-features", "")
    assert bad.returncode == 2 and bad.stderr.startswith("ceiling: --mlp-features: unknown")


def test_ceiling_neural_scorer_is_subtracted_from_the_linear_keys(monkeypatch):
    """keys = linear keys - v . tanh(W x + b), with x the named features of each job."""
    import numpy as np

    from cloudai.agent.learn.priority import LinearPriority
    from cloudai.agent.policy.job_ordering import JobColumns

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from ceiling import ExtendedPriority, Family

    c = JobColumns(
        submit=np.array([0.0, 50.0]),
        wait=np.array([100.0, 50.0]),
        runtime=np.array([10.0, 1000.0]),
        procs=np.array([1.0, 4.0]),
        fits=np.array([True, False]),
        capacity=8.0,
    )
    fam = Family(("log_runtime",), hidden=2, mlp_in=("fits", "log_procs"))
    assert fam.names() == ["log_runtime", "w0_fits", "w0_log_procs", "w1_fits",
                           "w1_log_procs", "b0", "b1", "v0", "v1"]  # fmt: skip
    w = np.array([2.0, 1.0, -1.0, 0.5, 3.0, 0.1, -0.2, 4.0, -2.0])
    x = np.array([[1.0, 0.0], [0.0, 2 / 3]])  # fits; log2(procs) / log2(capacity)
    hidden = np.tanh(x @ np.array([[1.0, -1.0], [0.5, 3.0]]).T + [0.1, -0.2])
    want = LinearPriority(np.array([2.0]), ("log_runtime",)).keys(c) - hidden @ [4.0, -2.0]
    assert np.allclose(ExtendedPriority(w, fam).keys(c), want, atol=1e-12)


def test_ceiling_clock_terms_follow_the_time_of_day(monkeypatch):
    """At 06:00 (a quarter of the day: sine 1, cosine 0) the sine terms are the job's
    scaled run time, size and fits, and the cosine terms vanish."""
    import numpy as np

    from cloudai.agent.policy.job_ordering import JobColumns

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from ceiling import clock_features

    c = JobColumns(
        submit=np.array([86_400.0, 100_000.0]),
        wait=np.array([21_600.0, 8_000.0]),  # both: now = 108,000 s, 06:00 on day 2
        runtime=np.array([10.0, 100_000.0]),
        procs=np.array([1.0, 256.0]),
        fits=np.array([True, False]),
        capacity=256.0,
    )
    f = clock_features(c)
    want = np.array([[0.2, 0, 0, 0, 1, 0], [1.0, 0, 1, 0, 0, 0]])
    assert np.allclose(f, want, atol=1e-12)
