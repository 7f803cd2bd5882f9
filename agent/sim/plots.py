"""Summaries, tables and matplotlib figures for the notebooks and the results doc.

The notebooks only call these (and the simulator's API), so every number and figure
they show can also be produced from a script. matplotlib is a dev dependency and is
imported on first use; from a script it renders headless (Agg) unless MPLBACKEND says
otherwise. The notebooks start with `%matplotlib inline`, so that their figures are
shown in the notebook even when MPLBACKEND=Agg is set, as CI sets it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .trace import Trace


def traces_dir() -> Path:
    """Where the shared traces are: CLOUDAI_TRACES, else ../shared/traces beside the
    repository (the notebooks run from notebooks/)."""
    env = os.environ.get("CLOUDAI_TRACES")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "traces"
        if (parent / "pyproject.toml").exists() and candidate.exists():
            return candidate
    return Path("../../shared/traces")


def notebook_jobs(default: int) -> int:
    """Slice size for notebooks: CLOUDAI_NB_JOBS (CI sets it small), else `default`."""
    return int(os.environ.get("CLOUDAI_NB_JOBS", default))


def trace_summary(trace: Trace) -> dict[str, Any]:
    gaps = np.diff(trace.submit)
    return {
        "jobs": len(trace),
        "max_procs": trace.max_procs,
        "span_days": float((trace.submit[-1] - trace.submit[0]) / 86400) if len(trace) else 0.0,
        "runtime_median_s": float(np.median(trace.run)),
        "runtime_p95_s": float(np.percentile(trace.run, 95)),
        "size_median": float(np.median(trace.procs)),
        "interarrival_median_s": float(np.median(gaps)) if gaps.size else 0.0,
        "overestimate_median": float(np.median(trace.req_time / np.maximum(trace.run, 1))),
        "gpu_jobs": int(np.count_nonzero(trace.gpu)),
    }


def gpu_demand(trace: Trace, top: int = 12) -> dict[str, int]:
    """How many jobs ask for each amount of GPU (0.5: half of one), for the `top` most
    common amounts, smallest amount first: {"0": 471, "0.32": 139, "1": 1502, ...}."""
    amounts, counts = np.unique(trace.gpu, return_counts=True)
    keep = np.sort(np.argsort(-counts, kind="stable")[:top])
    return {f"{amounts[k]:g}": int(counts[k]) for k in keep}


def _plt():
    import matplotlib

    if not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_distributions(trace: Trace):
    """Runtime (log), size and arrivals per hour of day."""
    plt = _plt()
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.5))
    ax[0].hist(np.log10(np.maximum(trace.run, 1)), bins=40)
    ax[0].set(xlabel="log10 runtime (s)", ylabel="jobs", title="runtime")
    ax[1].hist(trace.procs, bins=min(64, max(4, len(np.unique(trace.procs)))))
    ax[1].set(xlabel="processors / cpus", title="size")
    hours = (trace.submit // 3600) % 24
    ax[2].hist(hours, bins=24, range=(0, 24))
    ax[2].set(xlabel="hour of day (trace clock)", title="arrivals")
    fig.suptitle(trace.name)
    fig.tight_layout()
    return fig


def plot_curve(curves: Mapping[str, Sequence[float]], title: str, ylabel: str, ref=None):
    """Search or learning curves per iteration; `ref` draws a baseline level."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), ys, marker="o", label=name)
    if ref is not None:
        ax.axhline(ref[1], color="grey", linestyle="--", label=ref[0])
    ax.set(xlabel="iteration", ylabel=ylabel, title=title)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_bars(values: Mapping[str, float], title: str, ylabel: str, log: bool = False):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(values)), 3.5))
    names = list(values)
    ax.bar(names, [values[n] for n in names], color="tab:blue")
    if log:
        ax.set_yscale("log")
    ax.set(ylabel=ylabel, title=title)
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


def report_table(report: Mapping[str, Any], metrics: Sequence[str]) -> str:
    """A markdown table of a compare() report: one row per policy."""
    head = "| policy | " + " | ".join(metrics) + " |"
    lines = [head, "|" + "---|" * (len(metrics) + 1)]
    for name, row in report["policies"].items():
        cells = [_cell(row.get(m)) for m in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)
