"""`cloudai sim run|compare|train` and `cloudai agent train`: thin over agent.sim/learn."""

from __future__ import annotations

import json
import math
import sys

import typer

from cloudai.errors import ConfigError

from .client import fail

POLICY_LIST = (
    "fcfs, sjf, wfp3, unicep, f1, random, roundrobin, firstfit, bestfit, spread, binpack, "
    "tetris, fgd or learned"
)
SAME_AS = (
    "On an SWF trace (one machine) placement is trivial, so the placement policies "
    "(random, roundrobin, firstfit, bestfit, spread, binpack, tetris, fgd) all give "
    "FCFS's results; on an openb trace pods are placed in arrival order, so the queue "
    "orderers (fcfs, sjf, wfp3, unicep, f1) all give firstfit's."
)
sim_app = typer.Typer(
    no_args_is_help=True,
    help="Replay workload traces through the placement policies (deterministic, offline). "
    + SAME_AS,
)

TraceOpt = typer.Option(..., "--trace", help="SWF (.swf, .swf.gz) or openb pod CSV.")
FormatOpt = typer.Option("", "--format", help="swf or openb (default: from the file name).")
NodesOpt = typer.Option("", "--nodes", help="openb node CSV (needed for openb traces).")
NodeLimitOpt = typer.Option(
    0, "--node-limit", help="Seeded subset of N nodes (contention); 0: all the nodes."
)
ProcsOpt = typer.Option(0, "--procs", help="Machine size for SWF; 0: the header's MaxProcs.")
BackfillOpt = typer.Option(False, "--backfill", help="EASY backfilling (single machine).")
SeedOpt = typer.Option(0, "--seed", help="Seed (>= 0): windows, random picks, inflation.")
LimitOpt = typer.Option(0, "--limit", help="Only the first N jobs of the trace; 0: all.")
SequencesOpt = typer.Option(
    0, "--sequences", help="K random windows (RLScheduler), with --length; 0: the whole trace."
)
LengthOpt = typer.Option(0, "--length", help="... of L jobs each (with --sequences).")
SliceOpt = typer.Option("", "--slice", help="Fraction of the trace, e.g. 0.7:1 (last 30%).")
ModelOpt = typer.Option("", "--model", help="Learned model file (default: the shipped one).")
JsonOpt = typer.Option(False, "--json", help="Print JSON.")

# `sim train` only.
OutOpt = typer.Option(..., "--out", help="Model file to write.")
IterationsOpt = typer.Option(14, "--iterations", help="CEM iterations.")
PopulationOpt = typer.Option(20, "--population", help="Candidates per iteration (>= 1).")
WindowsOpt = typer.Option(12, "--windows", help="Training windows (SWF).")
TrainLengthOpt = typer.Option(1024, "--length", help="Jobs per training window.")
WorkersOpt = typer.Option(1, "--workers", help="Simulation processes (1: in-process).")
BaseOpt = typer.Option(
    "", "--base", help="openb: keep its orderer; SWF: its weights for modes not searched."
)
SyntheticOpt = typer.Option(
    0, "--synthetic", help="SWF: also train on N seeded synthetic 256-processor sequences."
)
ExcludeOpt = typer.Option(
    "",
    "--exclude",
    help="SWF: K:L:S, leave out the jobs of the K windows of L jobs that "
    "`compare --sequences K --length L --seed S` evaluates on; train on "
    "block-bootstrap sequences of the other jobs.",
)
BlockOpt = typer.Option(128, "--block", help="With --exclude: jobs per bootstrap block.")
LoadOpt = typer.Option(
    "",
    "--load",
    help="SWF: LO:HI, stretch each training sequence in time to an offered load in it.",
)
SamplerOpt = typer.Option(
    "bootstrap",
    "--sampler",
    help="With --exclude: bootstrap (blocks of held-out jobs) or resample (a workload "
    "model fitted to them: jobs drawn independently, arrivals by hour of day).",
)
ValidationOpt = typer.Option(
    0, "--validation", help="SWF: N more sequences (another seed) to pick the result on."
)
StartFromBaseOpt = typer.Option(
    False, "--start-from-base", help="SWF: also start the search at --base's weights."
)
StartOnValidationOpt = typer.Option(
    False,
    "--start-on-validation",
    help="SWF, with --validation: start the search at the start that scores best on "
    "the validation sequences (default: on the training ones).",
)
GuardOpt = typer.Option(
    0.0,
    "--guard",
    help="SWF, with --validation: ship the searched weights only if they beat the best "
    "named rule (F1, SJF, ...) on the validation sequences by a one-sided paired t-test "
    "at this confidence (e.g. 0.95); otherwise ship that rule. 0: off.",
)
ObjectiveOpt = typer.Option(
    "logmean", "--objective", help="SWF: logmean (per-window log bsld) or mean (as evaluated)."
)
InitStdOpt = typer.Option(1.0, "--init-std", help="SWF: CEM's initial spread.")
RecentOpt = typer.Option(
    0,
    "--recent-runtimes",
    min=0,
    help="SWF: K > 0 orders by run times estimated from each user's last K jobs.",
)
FeaturesOpt = typer.Option(
    "", "--features", help="SWF: comma-separated orderer features to search (default: all)."
)
ModesOpt = typer.Option(
    "backfill,no_backfill",
    "--modes",
    help="SWF: weight vectors to search; the other comes from --base (or the shipped model).",
)


def _config(fmt, nodes, node_limit, procs, backfill, seed, limit, sequences, length, slice_):
    from cloudai.agent.sim.runner import SimConfig

    return SimConfig(
        format=fmt,
        procs=procs,
        backfill=backfill,
        seed=seed,
        limit=limit,
        sequences=sequences,
        length=length,
        slice=_slice(slice_),
        nodes=nodes,
        node_limit=node_limit,
    )


def _slice(text: str) -> tuple[float, float]:
    if not text:
        return (0.0, 1.0)
    try:
        lo, hi = (float(x) if x else d for x, d in zip(text.split(":"), (0.0, 1.0), strict=True))
    except ValueError:
        raise ConfigError(f"--slice {text!r}: use A:B with 0 <= A < B <= 1, e.g. 0.7:1") from None
    if not 0 <= lo < hi <= 1:
        raise ConfigError(f"--slice {text!r}: use A:B with 0 <= A < B <= 1, e.g. 0.7:1")
    return (lo, hi)


def _exclude(text: str) -> tuple[int, int, int]:
    if not text:
        return (0, 0, 0)
    try:
        k, length, seed = (int(x) for x in text.split(":"))
    except ValueError:
        raise ConfigError(f"--exclude {text!r}: use K:L:S, e.g. 10:1024:1") from None
    if k <= 0 or length <= 0:
        raise ConfigError(f"--exclude {text!r}: K and L must be positive")
    if seed < 0:  # as --seed: numpy's generators take no negative seed (a traceback)
        raise ConfigError(f"--exclude {text!r}: the seed S must be 0 or more")
    from cloudai.agent.sim.runner import MAX_SEQUENCES

    if k > MAX_SEQUENCES:  # as --sequences: K windows are drawn at once, in memory
        raise ConfigError(f"--exclude {text!r}: K is at most {MAX_SEQUENCES:,}")
    return (k, length, seed)


def _load(text: str) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        lo, hi = (float(x) for x in text.split(":"))
    except ValueError:
        raise ConfigError(f"--load {text!r}: use LO:HI, e.g. 0.9:1.25") from None
    if not 0 < lo <= hi < math.inf:  # inf: no load to stretch to (a traceback)
        raise ConfigError(f"--load {text!r}: need 0 < LO <= HI, both finite")
    return (lo, hi)


def _report(names: list[str], trace_path: str, cfg, model: str, as_json: bool) -> None:
    from cloudai.agent.learn.model import load_model
    from cloudai.agent.sim.policies import POLICY_NAMES
    from cloudai.agent.sim.runner import check_format, compare, load_trace

    if not names:
        fail(f"no policies given (known: {', '.join(POLICY_NAMES)})")
    unknown = [n for n in names if n not in POLICY_NAMES]
    if unknown:
        fail(f"unknown policy {unknown[0]!r} (known: {', '.join(POLICY_NAMES)})")
    if model and "learned" not in names:  # nothing would read it: say so, not ignore it
        fail(
            "--model is read only by the learned policy, and none of the policies given "
            f"({', '.join(names)}) is learned: add learned, or leave --model out"
        )
    check_format(trace_path, cfg)
    m = load_model(model) if model else None
    # On a terminal, one line per policy on stderr as it ends: a comparison can take
    # minutes. Not into a pipe or a file, where it would mix with what scripts read.
    say = _say if len(names) > 1 and sys.stderr.isatty() else None
    report = compare(load_trace(trace_path, cfg), names, cfg, m, progress=say)
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    _warn_if_none_ran(report)


def _say(line: str) -> None:
    print(f"[sim] {line}", file=sys.stderr, flush=True)


def _print_table(report: dict) -> None:
    head = f"{report['trace']}: {report['jobs']} jobs"
    if report["skipped"]:
        head += f" ({report['skipped']} skipped: no run time or processors)"
    cfg = report["config"]
    if cfg["sequences"]:
        head += f", {cfg['sequences']} windows of {cfg['length']}"
    print(head)
    cols = ("bsld", "mean_wait", "mean_jct", "p95_jct", "utilization", "unplaced")
    cols += ("unallocated_gpu_frac",)
    print(f"{'policy':<12}" + "".join(f"{c:>22}" for c in cols))
    for name, row in report["policies"].items():
        cells = "".join(f"{_fmt(row[c]):>22}" for c in cols)
        print(f"{name:<12}{cells}")
    for name, row in report["policies"].items():
        if row.get("model_version"):
            print(f"{name}: model {row['model_version']}")


def _warn_if_none_ran(report: dict) -> None:
    """Every job unplaced leaves no bsld or JCT: say why the figures are '-'."""
    for name, row in report["policies"].items():
        if row["bsld"] is None and row["unplaced"]:
            print(
                f"cloudai: warning: {name}: no job ran ({row['unplaced']} could not be "
                "placed: larger than the machine or any node?)",
                file=sys.stderr,
            )


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@sim_app.command("run")
def sim_run(
    trace: str = TraceOpt,
    fmt: str = FormatOpt,
    nodes: str = NodesOpt,
    node_limit: int = NodeLimitOpt,
    procs: int = ProcsOpt,
    backfill: bool = BackfillOpt,
    seed: int = SeedOpt,
    limit: int = LimitOpt,
    sequences: int = SequencesOpt,
    length: int = LengthOpt,
    slice_: str = SliceOpt,
    policy: str = typer.Option(
        "fcfs",
        "--policy",
        help=f"One policy: {POLICY_LIST}.",
    ),
    model: str = ModelOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Replay a trace through one policy and print its metrics."""
    cfg = _config(fmt, nodes, node_limit, procs, backfill, seed, limit, sequences, length, slice_)
    _report([policy], trace, cfg, model, as_json)


@sim_app.command("compare")
def sim_compare(
    trace: str = TraceOpt,
    fmt: str = FormatOpt,
    nodes: str = NodesOpt,
    node_limit: int = NodeLimitOpt,
    procs: int = ProcsOpt,
    backfill: bool = BackfillOpt,
    seed: int = SeedOpt,
    limit: int = LimitOpt,
    sequences: int = SequencesOpt,
    length: int = LengthOpt,
    slice_: str = SliceOpt,
    policies: str = typer.Option(
        "fcfs,sjf,wfp3,unicep,f1,learned",
        "--policies",
        help=f"Comma-separated policy names, from: {POLICY_LIST}.",
    ),
    model: str = ModelOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Run several policies on identical inputs.

    SWF trace (one machine): the placement policies all give FCFS's results.
    openb trace (pods placed in arrival order): the queue orderers all give firstfit's."""
    cfg = _config(fmt, nodes, node_limit, procs, backfill, seed, limit, sequences, length, slice_)
    # Each once: the report has one entry per name, so a repeat would only run again.
    names = list(dict.fromkeys(p.strip() for p in policies.split(",") if p.strip()))
    _report(names, trace, cfg, model, as_json)


@sim_app.command("train")
def sim_train(
    trace: str = TraceOpt,
    fmt: str = FormatOpt,
    out: str = OutOpt,
    nodes: str = NodesOpt,
    node_limit: int = NodeLimitOpt,
    procs: int = ProcsOpt,
    slice_: str = SliceOpt,
    limit: int = LimitOpt,
    seed: int = SeedOpt,
    iterations: int = IterationsOpt,
    population: int = PopulationOpt,
    windows: int = WindowsOpt,
    length: int = TrainLengthOpt,
    workers: int = WorkersOpt,
    base: str = BaseOpt,
    synthetic: int = SyntheticOpt,
    exclude: str = ExcludeOpt,
    block: int = BlockOpt,
    load: str = LoadOpt,
    sampler: str = SamplerOpt,
    validation: int = ValidationOpt,
    start_from_base: bool = StartFromBaseOpt,
    start_on_validation: bool = StartOnValidationOpt,
    guard: float = GuardOpt,
    objective: str = ObjectiveOpt,
    init_std: float = InitStdOpt,
    recent: int = RecentOpt,
    features: str = FeaturesOpt,
    modes: str = ModesOpt,
) -> None:
    """Train the learned policy on (a slice of) a trace; write a model file.

    SWF: the orderer's weights, by cross-entropy search in the simulator. openb: the
    placement profile's weights (the orderer is kept from --base or the shipped model)."""
    options = dict(locals())  # just the options: a copy, taken before the import binds more
    from .sim_train import TrainOptions, run_train

    run_train(TrainOptions(**options), sim_train)


def agent_train(
    db: str = typer.Option(None, "--db", help="The master's store URL (CLOUDAI_DB)."),
    out: str = typer.Option(..., "--out", help="Model file to write."),
    base: str = typer.Option("", "--base", help="Model whose policy to keep (default: shipped)."),
    as_json: bool = JsonOpt,
) -> None:
    """Retrain the runtime and memory predictors on the master's task history."""
    import os

    from cloudai.agent.learn.model import load_model, writable
    from cloudai.agent.learn.predictors import train_from_store
    from cloudai.config import MasterSettings

    writable(out)
    url = db or os.environ.get("CLOUDAI_DB") or MasterSettings().db_url()
    try:
        model = train_from_store(url, load_model(base) if base else None)
    except ValueError as err:
        fail(f"cannot train: {err}")
    path = model.save(out)
    pred = model.predictors["tasks"] if model.predictors else None
    report = {
        "version": model.version,
        "model": str(path),
        "examples": model.meta["examples"],
        "trained_on": model.meta["predictors_trained_on"],
        "dropped": list(pred.dropped) if pred is not None else [],
        "memory_dropped": list(pred.memory_dropped) if pred is not None else [],
    }
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        _print_trained(report)


def _print_trained(report: dict) -> None:
    print(
        f"✓ predictors {report['version']} trained on {report['examples']} runs "
        f"-> {report['model']}"
    )
    if report["dropped"]:
        names = ", ".join(report["dropped"])
        print(f"  left out (no run in the history has a value): {names}")
    if report["memory_dropped"]:
        names = ", ".join(report["memory_dropped"])
        print(f"  left out of the memory model (no earlier run has a known peak): {names}")


def register(app: typer.Typer, agent_app: typer.Typer) -> None:
    app.add_typer(sim_app, name="sim")
    agent_app.command("train")(agent_train)
