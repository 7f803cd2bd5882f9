"""The master's in-memory index of the tasks that are not finished.

The store is the truth; this index mirrors its PENDING, PLACED and RUNNING tasks so
that the hot paths never scan every task: the queue, the pinned tasks, the tasks
waiting out a backoff, and each worker's tasks and allocation each have their own
index. The caller (TaskManager) holds its lock around every call.
"""

from __future__ import annotations

import bisect
import re

from cloudai.model import DecisionRecord, Resources, Task, TaskState

# Below this, what remains of a float allocation after its tasks are released is
# rounding residue (0.1 + 0.2 - 0.3 leaves 5.6e-17), not a reservation.
RESIDUE = 1e-9
# A pending task is offered again on every queue change, and each offer it is left
# out of ends in a decision. Storing every one made the decisions grow with pending
# tasks x batches (200,000 rows for 2,400 tasks in a minute under load). A decision
# that says what the task's last stored one said, numbers aside, is stored again only
# once REPEAT_DECISION_S has passed: `explain` still shows the latest reason.
REPEAT_DECISION_S = 60.0
_NUMBERS = re.compile(r"\d+(?:\.\d+)?")


class LiveIndex:
    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._pending: dict[str, Task] = {}
        self._pinned: set[str] = set()
        self._delayed: set[str] = set()
        # The latest queued_at of a delayed task next_wakeup found due and dropped: the
        # scheduler compares it with its last offer, so a backoff that ran out while it
        # was busy is not lost.
        self.came_due_at = 0.0
        self._on_worker: dict[str, set[str]] = {}
        self._alloc: dict[str, Resources] = {}
        # Per pending task: the gist of its last stored unplaced decision, and when.
        self._said: dict[str, tuple[tuple, float]] = {}

    def clear(self) -> None:
        for d in (self._tasks, self._pending, self._on_worker, self._alloc, self._said):
            d.clear()
        self._pinned.clear()
        self._delayed.clear()

    def get(self, task_id: str) -> Task | None:
        return self._tasks.get(task_id)

    def __contains__(self, task_id: str) -> bool:
        return task_id in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    # -- changes ---------------------------------------------------------------
    def add(self, task: Task) -> None:
        if task.state != TaskState.PENDING:
            self._said.pop(task.id, None)  # placed or ended: its next wait starts afresh
        if task.state.terminal:
            return
        self._tasks[task.id] = task
        if task.state == TaskState.PENDING:
            self._pending[task.id] = task
            if task.spec.pinned_worker:
                self._pinned.add(task.id)
            self._delayed.add(task.id)  # next_wakeup drops it once it is due
        elif task.worker_id:
            self._on_worker.setdefault(task.worker_id, set()).add(task.id)
            self._alloc[task.worker_id] = (
                self._alloc.get(task.worker_id, Resources()) + task.spec.resources
            )

    def remove(self, task: Task) -> None:
        """Forget `task` (the version that was indexed)."""
        self._tasks.pop(task.id, None)
        if self._pending.pop(task.id, None) is not None:
            self._pinned.discard(task.id)
            self._delayed.discard(task.id)
        elif task.worker_id and task.state.active:
            ids = self._on_worker.get(task.worker_id)
            if ids is not None:
                ids.discard(task.id)
                if not ids:
                    del self._on_worker[task.worker_id]
            if task.worker_id in self._on_worker:
                self._alloc[task.worker_id] = _settled(
                    self._alloc.get(task.worker_id, Resources()) - task.spec.resources
                )
            else:  # it holds nothing now: exactly nothing allocated
                self._alloc.pop(task.worker_id, None)

    def repeats(self, d: DecisionRecord) -> bool:
        """True if `d`, a decision that placed nothing, says what the last one stored
        for its pending task said (numbers aside) less than REPEAT_DECISION_S ago;
        otherwise it is remembered as that last one (for pending tasks only)."""
        task = self._pending.get(d.task_id)
        if task is None:
            return False
        text = "|".join([d.reject_reason, d.hint, d.summary, *sorted(d.rejections)])
        gist = (d.attempt, d.source, d.fallback, d.worker_id, _NUMBERS.sub("#", text))
        last = self._said.get(d.task_id)
        if last is not None and last[0] == gist and d.decided_at - last[1] < REPEAT_DECISION_S:
            return True
        self._said[d.task_id] = (gist, d.decided_at)
        return False

    # -- queries ---------------------------------------------------------------
    def pending(self, now: float, *, pinned: bool | None = None) -> list[Task]:
        """PENDING tasks whose backoff has elapsed, oldest first; only the pinned ones
        (pinned=True), only the unpinned ones (False) or all (None)."""
        source = [self._pending[i] for i in self._pinned] if pinned else self._pending.values()
        ready = [
            t
            for t in source
            if t.queued_at <= now and (pinned is not False or not t.spec.pinned_worker)
        ]
        return sorted(ready, key=lambda t: (t.queued_at, t.created_at))

    def next_wakeup(self, now: float) -> float | None:
        """The earliest future queued_at among tasks waiting out a backoff."""
        due = [i for i in self._delayed if self._pending[i].queued_at <= now]
        self._delayed.difference_update(due)
        for i in due:
            self.came_due_at = max(self.came_due_at, self._pending[i].queued_at)
        times = [self._pending[i].queued_at for i in self._delayed]
        return min(times) if times else None

    def allocated(self, worker_id: str) -> Resources:
        a = self._alloc.get(worker_id)
        return Resources(a.cpu, a.memory_bytes, a.gpu) if a else Resources()

    def active_worker_ids(self) -> set[str]:
        return set(self._on_worker)

    def on_worker(self, worker_id: str) -> list[Task]:
        """The PLACED and RUNNING tasks `worker_id` holds."""
        return [self._tasks[i] for i in self._on_worker.get(worker_id, ())]


def _settled(a: Resources) -> Resources:
    """An allocation after a release, with float residue cleared to exactly 0."""
    return Resources(
        0.0 if abs(a.cpu) < RESIDUE else a.cpu,
        a.memory_bytes,
        0.0 if abs(a.gpu) < RESIDUE else a.gpu,
    )


def offer_window(
    queue: list[Task], limit: int, cursor: tuple[float, float, str]
) -> tuple[list[Task], tuple[float, float, str]]:
    """What to offer of a queue (oldest first) longer than `limit`, and the next
    cursor: the half of the offer with the highest priority, then the others in turn
    from the `cursor` (where the last such offer stopped). Offering only the oldest
    `limit` left a task behind that many that cannot be placed (a selector no worker
    has) pending for ever, and a priority task too, while workers were free."""
    if len(queue) <= limit:
        return queue, cursor
    top = sorted(queue, key=lambda t: (-t.spec.priority, t.queued_at, t.created_at))
    head = top[: limit // 2]
    taken = {t.id for t in head}
    rest = sorted((t for t in queue if t.id not in taken), key=_fifo_key)
    start = bisect.bisect_right([_fifo_key(t) for t in rest], cursor)
    turn = (rest[start:] + rest[:start])[: limit - len(head)]
    return sorted(head + turn, key=_fifo_key), _fifo_key(turn[-1])


def _fifo_key(t: Task) -> tuple[float, float, str]:
    return (t.queued_at, t.created_at, t.id)
