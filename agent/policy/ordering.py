"""Queue orderers: in which order the tasks of a batch are placed.

Order matters because each placement reserves resources for the rest of the batch:
the first tasks get the best workers, the last may find nothing left. Orderers are
plugins chosen by name (see registry); SJF, fair share and learned orderers join later.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from .snapshot import TaskRequest

# Ageing: a task gains one priority level for every AGING_S seconds it waits, so a
# priority-0 task queued for 10 minutes ranks with a fresh priority-10 task. Low
# priority work therefore never starves, yet a burst of high priority work still goes
# first for minutes. (Priorities are 0..1000; see cloudai.validation.)
AGING_S = 60.0


@runtime_checkable
class Orderer(Protocol):
    name: str

    def order(self, tasks: Sequence[TaskRequest], now: float) -> list[int]:
        """Indices into `tasks`, in the order they should be placed."""
        ...


class PriorityFifo:
    """Effective priority (priority + age / aging_s) descending, then oldest first."""

    name = "priority_fifo"

    def __init__(self, aging_s: float = AGING_S) -> None:
        if aging_s <= 0:
            raise ValueError("aging_s must be positive")
        self.aging_s = aging_s

    def order(self, tasks: Sequence[TaskRequest], now: float) -> list[int]:
        if not tasks:
            return []
        prio = np.fromiter((t.priority for t in tasks), np.float64, len(tasks))
        queued = np.fromiter((t.queued_at or t.created_at for t in tasks), np.float64, len(tasks))
        created = np.fromiter((t.created_at for t in tasks), np.float64, len(tasks))
        age = np.maximum(now - queued, 0.0)
        effective = prio + age / self.aging_s
        # lexsort: the last key is the primary one; the index keeps equal tasks stable.
        keys = (np.arange(len(tasks)), created, queued, -effective)
        return np.lexsort(keys).tolist()


class Fifo:
    """Oldest first, ignoring priority (a baseline for the simulator)."""

    name = "fifo"

    def order(self, tasks: Sequence[TaskRequest], now: float) -> list[int]:
        return sorted(range(len(tasks)), key=lambda i: (tasks[i].queued_at, tasks[i].created_at, i))


BUILTIN_ORDERERS: tuple[type, ...] = (PriorityFifo, Fifo)
