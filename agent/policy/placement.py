"""What the placement core decides: a Placement per task, with its candidates.

A Placement carries everything `cloudai explain` shows: the winner, the top candidates
with per-plugin scores, rejection counts by reason, and for an unplaced task a hint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np

from cloudai.reasons import counted_reasons


@dataclass(slots=True)
class Candidate:
    worker_id: str
    total: float
    # Plugin name -> normalised score 0..100 (before weighting).
    scores: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"worker_id": self.worker_id, "total": self.total, "scores": dict(self.scores)}


class CandidateTable:
    """The candidates of a whole batch, appended decision after decision: worker index
    and minus the total per candidate. Their per-plugin scores are computed for the
    whole batch at once, by `compute`, when the first candidate is read."""

    __slots__ = ("ids", "names", "workers", "neg_totals", "_scores", "_compute")

    def __init__(
        self,
        ids: list[str],
        names: list[str],
        workers: Sequence[int],
        neg_totals: Sequence[float],
        compute: Callable[[], np.ndarray],
    ) -> None:
        self.ids, self.names, self.workers, self.neg_totals = ids, names, workers, neg_totals
        self._scores: np.ndarray | None = None
        self._compute: Callable[[], np.ndarray] | None = compute

    @property
    def scores(self) -> np.ndarray:
        """(candidates, plugins) normalised scores, in `names` order."""
        if self._scores is None:
            assert self._compute is not None
            self._scores, self._compute = self._compute(), None
        return self._scores


class CandidateList(Sequence[Candidate]):
    """A decision's candidates. Their numbers are computed with the batch; the Python
    objects are built only when read, as most decisions are sent, not read."""

    __slots__ = ("_table", "_start", "_k", "_items")

    def __init__(self, table: CandidateTable, start: int, k: int) -> None:
        self._table, self._start, self._k = table, start, k
        self._items: list[Candidate] | None = None

    def _list(self) -> list[Candidate]:
        if self._items is None:
            t, lo, hi = self._table, self._start, self._start + self._k
            rows = t.scores[lo:hi].tolist()
            self._items = [
                Candidate(t.ids[j], -neg, dict(zip(t.names, row, strict=True)))
                for j, neg, row in zip(t.workers[lo:hi], t.neg_totals[lo:hi], rows, strict=True)
            ]
        return self._items

    @overload
    def __getitem__(self, i: int) -> Candidate: ...
    @overload
    def __getitem__(self, i: slice) -> list[Candidate]: ...
    def __getitem__(self, i: int | slice) -> Candidate | list[Candidate]:
        return self._list()[i]

    def __len__(self) -> int:
        return self._k

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self._list())

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, Sequence) else NotImplemented

    def __repr__(self) -> str:
        return repr(self._list())


@dataclass(slots=True)
class Placement:
    """One decision. `worker_id` is empty when the task could not be placed."""

    task_id: str
    attempt: int
    worker_id: str = ""
    # The best workers, best first (the winner is the first); totals are weighted sums.
    candidates: Sequence[Candidate] = field(default_factory=list)
    # Rejection reason -> number of workers rejected for it (first failing filter).
    rejections: dict[str, int] = field(default_factory=dict)
    hint: str = ""
    pinned: bool = False
    feasible: int = 0
    workers: int = 0

    @property
    def placed(self) -> bool:
        return bool(self.worker_id)

    @property
    def summary(self) -> str:
        """One line: why this worker won, or why there is none."""
        if self.pinned:
            if self.placed:
                return f"pinned to {self.worker_id}: filters passed, scorers skipped"
            return f"pinned worker rejected: {_reasons(self.rejections)}"
        if not self.placed:
            return f"unplaced: 0 of {self.workers} workers fit ({_reasons(self.rejections)})"
        best = self.candidates[0]
        parts = ", ".join(f"{k} {v:.0f}" for k, v in best.scores.items())
        line = f"placed on {self.worker_id}: best total {best.total:.1f} ({parts})"
        if len(self.candidates) > 1:
            line += f"; runner-up {self.candidates[1].worker_id} {self.candidates[1].total:.1f}"
        return line + f"; {self.feasible} of {self.workers} workers feasible"


def _reasons(rejections: dict[str, int]) -> str:
    return ", ".join(counted_reasons(rejections)) if rejections else "no workers"
