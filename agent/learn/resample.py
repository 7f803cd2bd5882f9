"""Training sequences from a workload model fitted to the held-out jobs.

The block bootstrap of heldout.py glues together runs of consecutive jobs, which
drops the quiet hours between them and breaks the daily cycle, so its sequences are
loaded unlike the evaluation windows (their load has to be stretched back by hand).
This module fits a small generative model to the jobs outside the evaluation windows
instead, in the spirit of the Lublin-Feitelson model that generated Lublin-1:

- jobs are drawn independently, with replacement, from the held-out jobs, so each
  keeps its own (size, run time, requested time) and their correlation;
- arrivals follow the held-out trace's daily cycle: the time to the next arrival is
  drawn from the held-out inter-arrival times whose earlier job arrived in the same
  hour of the day, so the burstiness and the day/night swing carry over.

Every sequence starts at the arrival time of a random held-out job (F1's
`870·log10(s)` term depends on the absolute time). Only held-out jobs and the gaps
between consecutive held-out jobs are used; nothing of the evaluation windows.
"""

from __future__ import annotations

import numpy as np

from cloudai.agent.sim.trace import Trace

from .heldout import segments, stretch

DAY, HOUR = 86_400.0, 3_600.0


def hourly_gaps(trace: Trace, mask: np.ndarray) -> list[np.ndarray]:
    """For each hour of the day, the inter-arrival times (seconds) after held-out
    jobs that arrived in that hour, within each held-out stretch of the trace."""
    by_hour: list[list[np.ndarray]] = [[] for _ in range(24)]
    for start, n in segments(mask):
        if n < 2:
            continue
        t = trace.submit[start : start + n]
        hours = ((t[:-1] % DAY) // HOUR).astype(int)
        gaps = np.diff(t)
        for h in range(24):
            by_hour[h].append(gaps[hours == h])
    out = [np.concatenate(g) if g else np.zeros(0) for g in by_hour]
    pooled = np.concatenate(out)
    if not len(pooled) or pooled.max() <= 0:
        raise ValueError("the held-out jobs have no inter-arrival times to fit")
    # An hour never seen, or seen only with simultaneous arrivals (time would never
    # advance through it): all the gaps instead.
    return [g if len(g) and g.max() > 0 else pooled for g in out]


class FutureSampler:
    """The workload model fitted to the jobs outside `mask`: held-out jobs, and
    arrivals by hour of the day. It draws the training sequences and what a
    look-ahead planner (lookahead.py) imagines will arrive next."""

    def __init__(self, trace: Trace, mask: np.ndarray) -> None:
        self.trace, self.pool = trace, np.flatnonzero(~mask)
        if not len(self.pool):
            raise ValueError("every job of the trace is in an evaluation window")
        self.gaps = hourly_gaps(trace, mask)

    def next_arrival(self, t: float, rng: np.random.Generator) -> float:
        """The arrival after one at time t: a held-out gap of t's hour of the day."""
        g = self.gaps[int((t % DAY) // HOUR)]
        return t + float(g[int(rng.integers(len(g)))])

    def draw(self, t: float, until: float, rng: np.random.Generator) -> Trace:
        """The jobs arriving in (t, until], in order."""
        submit = []
        while True:
            t = self.next_arrival(t, rng)
            if t > until:
                break
            submit.append(t)
        out = self.trace.take(rng.choice(self.pool, len(submit), replace=True), "future")
        out.submit = np.asarray(submit, np.float64)
        return out


def resampled_sequences(
    trace: Trace,
    mask: np.ndarray,
    k: int,
    length: int,
    seed: int,
    load: tuple[float, float] | None = None,
) -> list[Trace]:
    """k seeded sequences of `length` jobs drawn from the model fitted to the jobs
    outside `mask` (see the module docstring); with `load`, each is stretched in
    time to an offered load drawn from that range, as heldout.py does."""
    model = FutureSampler(trace, mask)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(k):
        jobs = rng.choice(model.pool, length, replace=True)
        submit = np.empty(length)
        t = float(trace.submit[int(rng.choice(model.pool))])
        for j in range(length):
            submit[j] = t
            t = model.next_arrival(t, rng)
        seq = trace.take(jobs, f"{trace.name}[resampled {seed}.{i}]")
        seq.submit = submit
        if load is not None:
            stretch(seq, float(rng.uniform(*load)), trace.max_procs)
        out.append(seq)
    return out
