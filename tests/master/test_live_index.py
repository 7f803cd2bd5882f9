"""The master's live task index and the dispatcher's batching: the indexes behind the
hot paths agree with a full scan, copies never leak changes between versions, and
placements committed together reach each worker in one call."""

from __future__ import annotations

import random
import threading
import time

from cloudai.master.dispatcher import Dispatcher
from cloudai.master.live import LiveIndex
from cloudai.model import Attempt, Resources, Task, TaskSpec, TaskState

from .conftest import GiB, add_worker
from .test_tasks import finish, place, spec


def _task(i: int, state: TaskState, worker: str = "", pinned: str = "", delay=0.0) -> Task:
    now = 1000.0 + i
    return Task(
        id=f"t-{i:04d}",
        spec=TaskSpec(image="img", resources=Resources(1.0, GiB, 0.0), pinned_worker=pinned),
        state=state,
        worker_id=worker,
        created_at=now,
        queued_at=now + delay,
    )


def _random_tasks(seed: int, n: int) -> list[Task]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        state = rng.choice([TaskState.PENDING, TaskState.PLACED, TaskState.RUNNING])
        worker = "" if state == TaskState.PENDING else rng.choice(["w1", "w2", "w3"])
        pinned = rng.choice(["", "", "w2"]) if state == TaskState.PENDING else ""
        delay = rng.choice([0.0, 0.0, 500.0])
        out.append(_task(i, state, worker, pinned, delay))
    return out


def test_index_queries_match_a_full_scan_through_adds_and_removes():
    tasks = _random_tasks(seed=7, n=300)
    index = LiveIndex()
    for t in tasks:
        index.add(t)
    rng = random.Random(8)
    kept = set(range(len(tasks)))
    for i in rng.sample(range(len(tasks)), 120):
        index.remove(tasks[i])
        kept.discard(i)
    live = [tasks[i] for i in sorted(kept)]
    now = 1000.0 + 400  # some backoffs still running, some over
    ready = sorted(
        (t for t in live if t.state == TaskState.PENDING and t.queued_at <= now),
        key=lambda t: (t.queued_at, t.created_at),
    )
    assert [t.id for t in index.pending(now)] == [t.id for t in ready]
    assert [t.id for t in index.pending(now, pinned=True)] == [
        t.id for t in ready if t.spec.pinned_worker
    ]
    assert [t.id for t in index.pending(now, pinned=False)] == [
        t.id for t in ready if not t.spec.pinned_worker
    ]
    later = [t.queued_at for t in live if t.state == TaskState.PENDING and t.queued_at > now]
    assert index.next_wakeup(now) == min(later)
    for w in ("w1", "w2", "w3"):
        held = [t for t in live if t.state.active and t.worker_id == w]
        assert sorted(t.id for t in index.on_worker(w)) == sorted(t.id for t in held)
        assert index.allocated(w).cpu == float(len(held))
    assert index.active_worker_ids() == {t.worker_id for t in live if t.state.active}
    assert len(index) == len(live)


def test_terminal_tasks_are_not_indexed_and_clear_empties_everything():
    index = LiveIndex()
    index.add(_task(1, TaskState.SUCCEEDED, "w1"))
    index.add(_task(2, TaskState.RUNNING, "w1"))
    assert "t-0001" not in index and "t-0002" in index
    index.clear()
    assert len(index) == 0 and index.allocated("w1") == Resources()
    assert index.pending(1e12) == [] and index.next_wakeup(0.0) is None


def test_evolve_shares_the_spec_but_not_the_attempts():
    t = _task(1, TaskState.PLACED, "w1")
    t.attempts.append(Attempt(number=1, worker_id="w1", placed_at=1.0))
    new = t.evolve()
    new.attempts[0].started_at = 5.0
    new.avoid_workers.append("w9")
    assert t.attempts[0].started_at == 0.0 and t.avoid_workers == []
    assert new.spec is t.spec
    deep = t.clone()
    assert deep.spec is not t.spec and deep.spec == t.spec


def test_oom_memory_growth_does_not_change_the_previous_version(tasks, registry):
    add_worker(registry, "w1", mem=4 * GiB)
    placed = place(tasks, tasks.submit(spec(max_retries=1, resources=Resources(1, GiB, 0))).id)
    finish(tasks, placed, TaskState.FAILED, 137, "oom_killed")
    assert placed.spec.resources.memory_bytes == GiB  # the placed version is untouched
    assert tasks.get(placed.id).spec.resources.memory_bytes == 2 * GiB


def test_pinned_and_backoff_queries_through_the_task_manager(tasks, registry):
    add_worker(registry, "w1")
    free = tasks.submit(spec())
    pinned = tasks.submit(spec(pinned_worker="w1"))
    assert [t.id for t in tasks.pending(pinned=True)] == [pinned.id]
    assert [t.id for t in tasks.pending(pinned=False)] == [free.id]
    placed = place(tasks, free.id)
    tasks.dispatch_failed(placed.id, placed.attempt, "refused")  # back with a 0.5 s delay
    wake = tasks.next_wakeup()
    assert wake is not None and 0 < wake - time.time() <= 0.5
    assert [t.id for t in tasks.pending(pinned=False)] == []


class _CountingStub:
    """Stands in for a worker's stub: records each call and how many tasks it carried."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __getattr__(self, name):
        calls = self.calls

        class _Method:
            def future(self, request, timeout=None):
                n = len(request.assignments) if name == "AssignTasks" else 1
                calls.append((name, n))
                return _Done()

        return _Method()


class _Done:
    def add_done_callback(self, fn):
        pass


def test_batches_queued_together_share_one_call_per_worker(tasks, registry, monkeypatch):
    add_worker(registry, "w1")
    add_worker(registry, "w2")
    placed = [place(tasks, tasks.submit(spec()).id, w) for w in ("w1", "w2", "w1")]
    placed += [place(tasks, tasks.submit(spec()).id, w) for w in ("w2", "w1", "w2")]
    d = Dispatcher(registry, tasks, channel=lambda address: None)
    d.close()  # stop its thread: this test drives the queue itself
    stub = _CountingStub()
    monkeypatch.setattr(d, "_stub", lambda worker_id: stub)
    d._queue = type(d._queue)()
    d.assign(placed[:3])
    d.assign(placed[3:])
    taken = d._drain()
    assert [t.id for t in taken] == [t.id for t in placed]
    d._dispatch(taken)
    assert sorted(stub.calls) == [("AssignTasks", 3), ("AssignTasks", 3)]
    d.assign(placed[:1])
    d._queue.put(None)
    assert [t.id for t in d._drain()] == [placed[0].id]  # delivered before stopping
    assert d._drain() is None


def test_dispatch_waits_for_a_commit_in_progress(tasks, registry, monkeypatch):
    add_worker(registry, "w1")
    placed = [place(tasks, tasks.submit(spec()).id)]
    d = Dispatcher(registry, tasks, channel=lambda address: None)
    d.close()
    stub = _CountingStub()
    monkeypatch.setattr(d, "_stub", lambda worker_id: stub)
    with d.commit_first(), d.commit_first():
        sender = threading.Thread(target=d._dispatch, args=(placed,))
        sender.start()
        time.sleep(0.02)  # dispatch waits up to YIELD_S (0.05 s) for the commit
        assert stub.calls == []
    sender.join(5)
    assert stub.calls == [("AssignTask", 1)]
    assert d._no_commit.is_set()


def test_released_fractional_cpu_leaves_exactly_zero_allocated(tasks, registry):
    """0.1 + 0.2 + 0.3 - 0.1 - 0.2 - 0.3 is 5.6e-17 in floats: `cloudai workers` showed
    cpu=1.11022e-16 allocated on an idle worker. Releases clear that residue."""
    add_worker(registry, "w1")
    placed = [
        place(tasks, tasks.submit(spec(resources=Resources(cpu, GiB // 4, 0.0))).id)
        for cpu in (0.1, 0.2, 0.3)
    ]
    for t in placed:
        assert finish(tasks, t) == (True, "recorded")
    assert tasks.allocated("w1") == Resources(0.0, 0, 0.0)


def test_residue_is_cleared_while_other_tasks_still_hold_the_worker():
    """A memory-only task stays: its worker's CPU and GPU go back to exactly 0."""
    index = LiveIndex()
    shares = [(0.1, 0.25), (0.2, 0.5), (0.3, 0.25)]
    held = [_task(i, TaskState.RUNNING, "w1") for i in range(len(shares) + 1)]
    for t, (cpu, gpu) in zip(held, shares, strict=False):
        t.spec.resources = Resources(cpu, GiB, gpu)
    held[-1].spec.resources = Resources(0.0, GiB, 0.0)
    for t in held:
        index.add(t)
    for t in held[:-1]:
        index.remove(t)
    assert index.allocated("w1") == Resources(0.0, GiB, 0.0)
    index.remove(held[-1])
    assert index.allocated("w1") == Resources()
