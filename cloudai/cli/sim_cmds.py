"""`cloudai sim run|compare|train` and `cloudai agent train`: thin over agent.sim/learn."""

from __future__ import annotations

import json

import typer

from cloudai.errors import ConfigError

from .client import fail

sim_app = typer.Typer(
    no_args_is_help=True,
    help="Replay workload traces through the placement policies (deterministic, offline).",
)

TraceOpt = typer.Option(..., "--trace", help="SWF (.swf, .swf.gz) or openb pod CSV.")
FormatOpt = typer.Option("", "--format", help="swf or openb (default: from the file name).")
NodesOpt = typer.Option("", "--nodes", help="openb node CSV (needed for openb traces).")
NodeLimitOpt = typer.Option(0, "--node-limit", help="Seeded subset of N nodes (contention).")
ProcsOpt = typer.Option(0, "--procs", help="Machine size for SWF (default: header MaxProcs).")
BackfillOpt = typer.Option(False, "--backfill", help="EASY backfilling (single machine).")
SeedOpt = typer.Option(0, "--seed", help="Seed: windows, random picks, inflation.")
LimitOpt = typer.Option(0, "--limit", help="Only the first N jobs of the trace.")
SequencesOpt = typer.Option(0, "--sequences", help="K random windows (RLScheduler).")
LengthOpt = typer.Option(0, "--length", help="... of L jobs each.")
SliceOpt = typer.Option("", "--slice", help="Fraction of the trace, e.g. 0.7:1 (last 30%).")
ModelOpt = typer.Option("", "--model", help="Learned model file (default: the shipped one).")
JsonOpt = typer.Option(False, "--json", help="Print JSON.")


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
    return (k, length, seed)


def _load(text: str) -> tuple[float, float] | None:
    if not text:
        return None
    try:
        lo, hi = (float(x) for x in text.split(":"))
    except ValueError:
        raise ConfigError(f"--load {text!r}: use LO:HI, e.g. 0.9:1.25") from None
    if not 0 < lo <= hi:
        raise ConfigError(f"--load {text!r}: need 0 < LO <= HI")
    return (lo, hi)


def _names(text: str, known: tuple[str, ...], flag: str) -> tuple[str, ...]:
    names = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(f"{flag}: unknown {unknown[0]!r} (known: {', '.join(known)})")
    return names


def _report(names: list[str], trace_path: str, cfg, model: str, as_json: bool) -> None:
    from cloudai.agent.learn.model import load_model
    from cloudai.agent.sim.policies import POLICY_NAMES
    from cloudai.agent.sim.runner import compare, load_trace

    unknown = [n for n in names if n not in POLICY_NAMES]
    if unknown:
        fail(f"unknown policy {unknown[0]!r} (known: {', '.join(POLICY_NAMES)})")
    m = load_model(model) if model else None
    report = compare(load_trace(trace_path, cfg), names, cfg, m)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(f"{report['trace']}: {report['jobs']} jobs")
    cols = ("bsld", "mean_wait", "mean_jct", "p95_jct", "utilization", "unplaced")
    cols += ("unallocated_gpu_frac",)
    print(f"{'policy':<12}" + "".join(f"{c:>22}" for c in cols))
    for name, row in report["policies"].items():
        cells = "".join(f"{_fmt(row[c]):>22}" for c in cols)
        print(f"{name:<12}{cells}")


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
    policy: str = typer.Option("fcfs", "--policy", help="One policy name."),
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
        "fcfs,sjf,wfp3,unicep,f1,learned", "--policies", help="Comma-separated names."
    ),
    model: str = ModelOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Run several policies on identical inputs."""
    cfg = _config(fmt, nodes, node_limit, procs, backfill, seed, limit, sequences, length, slice_)
    names = [p.strip() for p in policies.split(",") if p.strip()]
    _report(names, trace, cfg, model, as_json)


@sim_app.command("train")
def sim_train(
    trace: str = TraceOpt,
    fmt: str = FormatOpt,
    out: str = typer.Option(..., "--out", help="Model file to write."),
    nodes: str = NodesOpt,
    node_limit: int = NodeLimitOpt,
    procs: int = ProcsOpt,
    slice_: str = SliceOpt,
    limit: int = LimitOpt,
    seed: int = SeedOpt,
    iterations: int = typer.Option(14, "--iterations", help="CEM iterations."),
    population: int = typer.Option(20, "--population", help="Candidates per iteration."),
    windows: int = typer.Option(12, "--windows", help="Training windows."),
    length: int = typer.Option(1024, "--length", help="Jobs per training window."),
    workers: int = typer.Option(1, "--workers", help="Simulation processes (1: in-process)."),
    base: str = typer.Option(
        "", "--base", help="openb: keep its orderer; SWF: its weights for modes not searched."
    ),
    synthetic: int = typer.Option(
        0, "--synthetic", help="SWF: also train on N seeded synthetic 256-processor sequences."
    ),
    exclude: str = typer.Option(
        "",
        "--exclude",
        help="SWF: K:L:S, leave out the jobs of the K windows of L jobs that "
        "`compare --sequences K --length L --seed S` evaluates on; train on "
        "block-bootstrap sequences of the other jobs.",
    ),
    block: int = typer.Option(128, "--block", help="With --exclude: jobs per bootstrap block."),
    load: str = typer.Option(
        "",
        "--load",
        help="SWF: LO:HI, stretch each training sequence in time to an offered load in it.",
    ),
    sampler: str = typer.Option(
        "bootstrap",
        "--sampler",
        help="With --exclude: bootstrap (blocks of held-out jobs) or resample (a workload "
        "model fitted to them: jobs drawn independently, arrivals by hour of day).",
    ),
    validation: int = typer.Option(
        0, "--validation", help="SWF: N more sequences (another seed) to pick the result on."
    ),
    start_from_base: bool = typer.Option(
        False, "--start-from-base", help="SWF: also start the search at --base's weights."
    ),
    objective: str = typer.Option(
        "logmean", "--objective", help="SWF: logmean (per-window log bsld) or mean (as evaluated)."
    ),
    init_std: float = typer.Option(1.0, "--init-std", help="SWF: CEM's initial spread."),
    recent: int = typer.Option(
        0,
        "--recent-runtimes",
        min=0,
        help="SWF: K > 0 orders by run times estimated from each user's last K jobs.",
    ),
    features: str = typer.Option(
        "", "--features", help="SWF: comma-separated orderer features to search (default: all)."
    ),
    modes: str = typer.Option(
        "backfill,no_backfill",
        "--modes",
        help="SWF: weight vectors to search; the other comes from --base (or the shipped model).",
    ),
) -> None:
    """Train the learned policy on (a slice of) a trace; write a model file.

    SWF: the orderer's weights, by cross-entropy search in the simulator. openb: the
    placement profile's weights (the orderer is kept from --base or the shipped model)."""
    from cloudai.agent.learn.model import load_model
    from cloudai.agent.learn.priority import FEATURES
    from cloudai.agent.learn.train import TrainConfig
    from cloudai.agent.learn.tune import train_on_trace

    cfg = _config(fmt, nodes, node_limit, procs, False, seed, limit, 0, 0, slice_)
    tcfg = TrainConfig(
        iterations,
        population,
        0.25,
        windows,
        length,
        seed,
        workers,
        init_std,
        synthetic=synthetic,
        exclude=_exclude(exclude),
        block=block,
        load=_load(load),
        features=_names(features, FEATURES, "--features") or FEATURES,
        modes=_names(modes, ("backfill", "no_backfill"), "--modes"),
        validation=validation,
        start_from_base=start_from_base,
        objective=(_names(objective, ("logmean", "mean"), "--objective") or ("logmean",))[0],
        recent=recent,
        sampler=(_names(sampler, ("bootstrap", "resample"), "--sampler") or ("bootstrap",))[0],
    )
    say = lambda line: print(line, flush=True)  # noqa: E731
    model = train_on_trace(trace, cfg, tcfg, say, load_model(base) if base else None)
    path = model.save(out)
    print(f"✓ model {model.version} written to {path}")


def agent_train(
    db: str = typer.Option(None, "--db", help="The master's store URL (CLOUDAI_DB)."),
    out: str = typer.Option(..., "--out", help="Model file to write."),
    base: str = typer.Option("", "--base", help="Model whose policy to keep (default: shipped)."),
) -> None:
    """Retrain the runtime and memory predictors on the master's task history."""
    import os

    from cloudai.agent.learn.model import load_model
    from cloudai.agent.learn.predictors import train_from_store
    from cloudai.config import MasterSettings

    url = db or os.environ.get("CLOUDAI_DB") or MasterSettings().db_url()
    try:
        model = train_from_store(url, load_model(base) if base else None)
    except ValueError as err:
        fail(f"cannot train: {err}")
    path = model.save(out)
    print(f"✓ predictors {model.version} trained on {model.meta['examples']} runs -> {path}")


def register(app: typer.Typer, agent_app: typer.Typer) -> None:
    app.add_typer(sim_app, name="sim")
    agent_app.command("train")(agent_train)
