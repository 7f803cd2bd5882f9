"""Training sequences from the part of a trace that evaluation never uses.

RLScheduler (Zhang et al., SC'20) trains on random sequences of a trace and tests on
other sequences of the same trace. Our evaluation protocol draws K windows of L jobs
with a seed (`runner.windows`); on Lublin-1 the ten 1,024-job windows of seed 1
cover 7,554 of its 10,000 jobs, so what is left is five gaps of 105 to 1,161 jobs.

`heldout_sequences` builds training sequences from those gaps only: each is a
concatenation of random contiguous blocks of `block` jobs taken from the gaps
(a block bootstrap), with the arrival gaps inside a block kept and each block shifted
to follow the previous one by an inter-arrival time drawn from the gaps. So the
training jobs are never evaluation jobs (`train_jobs` lists them, and a test checks
that they are disjoint from every evaluation window), while the sequences keep the
trace's job mix and its local arrival bursts. Gluing blocks drops the quiet periods
between them, so the offered load of such a sequence is well above the trace's
(1.2 to 1.8 on Lublin-1 against about 1.0): with `load` = (lo, hi) each sequence's
arrival times are then stretched to an offered load drawn uniformly from that range.
"""

from __future__ import annotations

import numpy as np

from cloudai.agent.sim.trace import Trace


def eval_mask(n: int, sequences: int, length: int, seed: int) -> np.ndarray:
    """True for each job of an n-job trace inside an evaluation window (the windows
    `cloudai sim compare --sequences K --length L --seed S` draws)."""
    from cloudai.agent.sim.runner import windows

    mask = np.zeros(n, bool)
    for start, size in windows(n, sequences, length, seed):
        mask[start : start + size] = True
    return mask


def segments(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of every maximal run of False in `mask`."""
    free = np.concatenate(([False], ~mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(free))
    return [(int(a), int(b - a)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _blocks(segs: list[tuple[int, int]], block: int) -> list[tuple[int, int]]:
    """Every (start, length) block that lies inside one segment (shorter segments
    count as one block of their own length)."""
    out = []
    for start, size in segs:
        if size <= block:
            out.append((start, size))
        else:
            out.extend((s, block) for s in range(start, start + size - block + 1))
    return out


def offered_load(trace: Trace, procs: int) -> float:
    """Processor-seconds asked for over those available between first and last arrival."""
    span = float(trace.submit[-1] - trace.submit[0]) if len(trace) > 1 else 0.0
    return float(np.sum(trace.run * trace.procs)) / (span * procs) if span > 0 else np.inf


def stretch(seq: Trace, target: float, procs: int) -> None:
    """Scale seq's arrival times (in place) to an offered load of `target`."""
    now = offered_load(seq, procs or int(seq.procs.max()))
    if np.isfinite(now):
        seq.submit = seq.submit[0] + (seq.submit - seq.submit[0]) * (now / target)


def heldout_sequences(
    trace: Trace,
    mask: np.ndarray,
    k: int,
    length: int,
    block: int,
    seed: int,
    load: tuple[float, float] | None = None,
) -> list[Trace]:
    """k seeded sequences of `length` jobs, built only from jobs outside `mask`;
    with `load`, stretched (or compressed) in time to an offered load in that range."""
    segs = segments(mask)
    if not segs:
        raise ValueError("every job of the trace is in an evaluation window")
    blocks = _blocks(segs, block)
    gaps = np.concatenate([np.diff(trace.submit[s : s + n]) for s, n in segs if n > 1])
    rng = np.random.default_rng(seed)
    out = []
    for i in range(k):
        # Start at a real arrival time: F1's submit-time term depends on it.
        idx, submit, t = [], [], float(trace.submit[blocks[int(rng.integers(len(blocks)))][0]])
        while len(idx) < length:
            s, n = blocks[int(rng.integers(len(blocks)))]
            rel = trace.submit[s : s + n] - trace.submit[s]
            idx.extend(range(s, s + n))
            submit.extend((t + rel).tolist())
            t = submit[-1] + float(gaps[int(rng.integers(len(gaps)))]) if len(gaps) else t
        take = np.asarray(idx[:length], np.int64)
        seq = trace.take(take, f"{trace.name}[held-out {seed}.{i}]")
        seq.submit = np.asarray(submit[:length], np.float64)
        if load is not None:
            stretch(seq, float(rng.uniform(*load)), trace.max_procs)
        out.append(seq)
    return out


def train_jobs(seqs: list[Trace], trace: Trace) -> np.ndarray:
    """Indices (in `trace`) of the jobs the sequences use, matched by job id."""
    pos = {int(j): i for i, j in enumerate(trace.job_id)}
    return np.unique([pos[int(j)] for s in seqs for j in s.job_id])
