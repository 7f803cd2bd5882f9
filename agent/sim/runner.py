"""Run policies on a trace with one configuration: what `cloudai sim` and notebooks call.

    cfg = SimConfig(backfill=True, sequences=10, length=1024, seed=1)
    report = compare(load_trace("lublin_256.swf.gz"), ["fcfs", "sjf", "learned"], cfg)
    report["policies"]["sjf"]["bsld"]

Every policy sees identical inputs: the same jobs, the same windows (drawn once from
the seed), the same cluster. Deterministic: the seed fixes the windows, the random
picker's stream and the inflation of a saturation run; nothing reads the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cloudai.errors import ConfigError

from .cluster import saturate
from .machine import simulate_machine
from .metrics import combine, metrics
from .policies import resolve
from .trace import Nodes, Trace, TraceError, load_openb_nodes, load_openb_pods, load_swf


@dataclass
class SimConfig:
    format: str = ""  # swf | openb; "" = from the file name
    procs: int = 0  # SWF machine size; 0 = the header's MaxProcs
    backfill: bool = False
    seed: int = 0
    limit: int = 0  # only the first `limit` jobs of the trace
    sequences: int = 0  # K random windows ...
    length: int = 0  # ... of L jobs (RLScheduler's protocol); 0 = the whole trace
    slice: tuple[float, float] = (0.0, 1.0)  # fraction of the trace to use
    nodes: str = ""  # openb node CSV
    node_limit: int = 0  # a seeded random subset of this many nodes (contention)

    def __post_init__(self) -> None:
        _check_counts(self)


MAX_SEQUENCES = 100_000  # windows per run: far beyond any protocol, and fits in memory
# The whole-number settings: each >= 0; what 0 means.
_COUNTS = {
    "seed": "",
    "limit": "the whole trace",
    "procs": "the header's MaxProcs",
    "node_limit": "all the nodes",
    "sequences": "the whole trace",
    "length": "the whole trace",
}


def _check_counts(cfg: SimConfig) -> None:
    """ConfigError (one line, named by the CLI flag) for a setting out of range."""
    for key, zero in _COUNTS.items():
        value = getattr(cfg, key)
        if value < 0:
            flag = "--" + key.replace("_", "-")
            meaning = f" (0: {zero})" if zero else ""
            raise ConfigError(f"{flag} {value}: must be 0 or more{meaning}")
    if cfg.sequences and not cfg.length:
        raise ConfigError("--sequences needs --length: K windows of L jobs each")
    if cfg.length and not cfg.sequences:
        raise ConfigError("--length needs --sequences: K windows of L jobs each")
    if cfg.node_limit and not cfg.nodes:
        raise ConfigError("--node-limit needs --nodes (an openb trace)")
    if cfg.sequences > MAX_SEQUENCES:
        raise ConfigError(f"--sequences {cfg.sequences}: at most {MAX_SEQUENCES:,}")


def guess_format(path: str | Path) -> str:
    if not Path(path).exists():
        raise ConfigError(f"no such trace file: {str(path)!r}")
    if Path(path).is_dir():
        raise ConfigError(f"{str(path)!r} is a directory, not a trace file")
    name = Path(path).name.lower()
    if ".swf" in name:
        return "swf"
    if name.endswith((".csv", ".csv.gz")):
        return "openb"
    raise ConfigError(f"cannot tell the format of {name!r}: pass --format swf|openb")


def check_format(path: str | Path, cfg: SimConfig) -> str:
    """The trace's format (as given, or from the file name), checked against --nodes:
    an openb trace runs on the nodes of --nodes, an SWF trace on one machine."""
    fmt = cfg.format or guess_format(path)
    name = Path(path).name
    if fmt == "openb" and not cfg.nodes:
        raise ConfigError(f"{name} is an openb trace: it needs its nodes, pass --nodes PATH")
    if fmt == "openb" and (cfg.procs or cfg.backfill):
        flag = "--procs" if cfg.procs else "--backfill"
        raise ConfigError(
            f"{flag} is for SWF traces (one machine); {name} is an openb trace, "
            "placed on the nodes of --nodes"
        )
    if fmt == "swf" and cfg.nodes:
        raise ConfigError(
            f"{name} is an SWF trace (one machine, --procs): --nodes is for openb traces"
        )
    return fmt


def load_trace(path: str | Path, cfg: SimConfig | None = None) -> Trace:
    cfg = cfg or SimConfig()
    fmt = cfg.format or guess_format(path)
    if fmt == "swf":
        trace = load_swf(path, cfg.limit)
    elif fmt == "openb":
        trace = load_openb_pods(path, cfg.limit)
    else:
        raise ConfigError(f"unknown trace format {fmt!r} (known: swf, openb)")
    lo, hi = cfg.slice
    if (lo, hi) == (0.0, 1.0):
        return trace
    part = trace.fraction(lo, hi)
    if not len(part):  # metrics of no jobs would read as a perfect result
        raise ConfigError(
            f"--slice {lo:g}:{hi:g} leaves none of the {len(trace)} jobs of {trace.name}"
        )
    return part


def load_nodes(cfg: SimConfig) -> Nodes:
    if not cfg.nodes:
        raise ConfigError("an openb trace needs its nodes: pass --nodes PATH")
    nodes = load_openb_nodes(cfg.nodes)
    if cfg.node_limit > len(nodes):
        raise ConfigError(
            f"--node-limit {cfg.node_limit}: {Path(cfg.nodes).name} has only {len(nodes)} nodes"
        )
    if cfg.node_limit and cfg.node_limit < len(nodes):
        rng = np.random.default_rng(cfg.seed)
        nodes = nodes.take(np.sort(rng.choice(len(nodes), cfg.node_limit, replace=False)))
    return nodes


def windows(n: int, k: int, length: int, seed: int) -> list[tuple[int, int]]:
    """K (start, length) windows drawn uniformly with the seed; the whole trace if k=0."""
    if k <= 0 or length <= 0:
        return [(0, n)]
    if length > n:
        raise ConfigError(f"--length {length} is longer than the trace ({n} jobs)")
    starts = np.random.default_rng(seed).integers(0, n - length + 1, size=k)
    return [(int(s), length) for s in starts]


def machine_size(trace: Trace, cfg: SimConfig) -> int:
    procs = cfg.procs or trace.max_procs
    if procs <= 0:
        raise TraceError(f"{trace.name}: no MaxProcs in the header: pass --procs N")
    return procs


def run_policy(
    trace: Trace, name: str, cfg: SimConfig, model: Any = None, nodes: Nodes | None = None
) -> dict[str, Any]:
    """Metrics of one policy (combined over the windows), plus its run time."""
    policy = resolve(name, model)
    started = time.perf_counter()
    runs = []
    for k, (start, length) in enumerate(windows(len(trace), cfg.sequences, cfg.length, cfg.seed)):
        part = trace if (start, length) == (0, len(trace)) else trace.window(start, length)
        if nodes is not None:
            runs.append(metrics(saturate(part, nodes, policy, cfg.seed + k)))
        else:
            extra = {"backfill": cfg.backfill} if policy.orderer == "learned" else {}
            outcome = simulate_machine(
                part, machine_size(trace, cfg), policy.make_orderer(**extra), cfg.backfill
            )
            runs.append(metrics(outcome))
    out: dict[str, Any] = combine(runs)
    out["seconds"] = round(time.perf_counter() - started, 3)
    if policy.model_version:
        out["model_version"] = policy.model_version
    return out


def compare(
    trace: Trace,
    names: Sequence[str],
    cfg: SimConfig,
    model: Any = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """{"policies": {name: metrics}, "trace": ..., "jobs": ..., "config": ...}; "skipped":
    the trace lines the loader skipped (SWF jobs with no run time or processors).
    `progress` is told of each policy as it ends ("2/6 sjf: bsld 258.4 in 3.1s")."""
    if cfg.format == "swf" and cfg.nodes:
        raise ConfigError("--nodes is for openb traces, not SWF")
    nodes = load_nodes(cfg) if (cfg.format or "") == "openb" or cfg.nodes else None
    policies = {}
    for k, name in enumerate(names, 1):
        row = policies[name] = run_policy(trace, name, cfg, model, nodes)
        if progress is not None:
            progress(f"{k}/{len(names)} {name}: {_headline(row)} in {row['seconds']:.1f}s")
    return {
        "trace": trace.name,
        "jobs": len(trace),
        "simulated": sum(n for _, n in windows(len(trace), cfg.sequences, cfg.length, cfg.seed)),
        "skipped": trace.skipped,
        "config": _resolved(cfg, trace, nodes),
        "policies": policies,
    }


def _resolved(cfg: SimConfig, trace: Trace, nodes: Nodes | None) -> dict[str, Any]:
    """The configuration as run: the format and the machine size resolved, not 0 or ""."""
    out = {**asdict(cfg), "slice": list(cfg.slice)}
    out["format"] = "openb" if nodes is not None else "swf"
    out["procs"] = 0 if nodes is not None else machine_size(trace, cfg)
    if nodes is not None:
        out["node_count"] = len(nodes)
    return out


def _headline(row: dict[str, Any]) -> str:
    """The figure a protocol is judged by: GPUs left unallocated at saturation on a
    cluster run, bounded slowdown on one machine."""
    gpu = row.get("unallocated_gpu_frac")
    return f"unallocated GPUs {gpu:.1%}" if gpu is not None else f"bsld {row['bsld']:.4g}"
