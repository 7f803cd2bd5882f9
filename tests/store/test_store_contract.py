"""The `Store` contract, run against every backend (see conftest.py: sqlite,
mongomock-STANDIN, and mongodb-real when CLOUDAI_TEST_MONGODB_URI is set)."""

from __future__ import annotations

import threading

import pytest

from cloudai.errors import Conflict
from cloudai.master.store import MAX_LOG_TAIL, Store
from cloudai.model import Task, TaskState, WorkerHealth

from .builders import (
    make_decision,
    make_full_task,
    make_result,
    make_task,
    make_worker,
)
from .conftest import Backend

P, PL, R, S, F = (
    TaskState.PENDING,
    TaskState.PLACED,
    TaskState.RUNNING,
    TaskState.SUCCEEDED,
    TaskState.FAILED,
)


# -- workers ----------------------------------------------------------------------
def test_upsert_worker_inserts_then_replaces(store: Store) -> None:
    first = make_worker("w-1", zone="a")
    store.upsert_worker(first)
    assert store.get_worker("w-1") == first

    changed = make_worker("w-1", zone="b", gpu="a100")
    changed.address = "10.9.9.9:1"
    store.upsert_worker(changed)

    assert store.get_worker("w-1") == changed
    assert [w.id for w in store.list_workers()] == ["w-1"]


def test_list_workers_returns_every_worker_by_id(store: Store) -> None:
    for wid in ["w-3", "w-1", "w-2"]:
        store.upsert_worker(make_worker(wid))
    assert [w.id for w in store.list_workers()] == ["w-1", "w-2", "w-3"]
    assert store.get_worker("w-404") is None


@pytest.mark.parametrize(
    ("worker_id", "expect_ok"),
    [("w-1", True), ("w-unknown", False)],
)
def test_set_worker_health(store: Store, worker_id: str, expect_ok: bool) -> None:
    store.upsert_worker(make_worker("w-1", zone="a"))

    ok = store.set_worker_health(worker_id, WorkerHealth.INACTIVE, at=555.5)

    assert ok is expect_ok
    stored = store.get_worker("w-1")
    assert stored is not None
    if expect_ok:
        assert (stored.health, stored.last_heartbeat) == (WorkerHealth.INACTIVE, 555.5)
        assert stored.labels == {"zone": "a"}  # the rest of the record is untouched
    else:
        assert stored == make_worker("w-1", zone="a")
        assert store.get_worker(worker_id) is None  # no record conjured up


def test_a_worker_leave_is_stored_until_it_registers_again(backend: Backend) -> None:
    """set_worker_left keeps the health as it is, survives a reopen (a master
    restart), and a new registration (upsert_worker) clears it."""
    first = backend.open()
    first.upsert_worker(make_worker("w-1", zone="a"))
    assert first.set_worker_left("w-1", at=321.5)
    assert not first.set_worker_left("w-unknown", at=1.0)
    assert first.get_worker("w-unknown") is None  # no record conjured up
    first.close()

    second = backend.open()
    try:
        stored = second.get_worker("w-1")
        assert stored is not None and stored.left_at == 321.5
        assert (stored.health, stored.labels) == (WorkerHealth.ACTIVE, {"zone": "a"})
        assert second.set_worker_health("w-1", WorkerHealth.INACTIVE, at=400.0)
        assert second.get_worker("w-1").left_at == 321.5  # a health write keeps it
        second.upsert_worker(make_worker("w-1", zone="a"))  # it registers again
        assert second.get_worker("w-1") == make_worker("w-1", zone="a")
        assert second.get_worker("w-1").left_at == 0.0
    finally:
        second.close()


def test_telemetry_history_is_newest_samples_oldest_first(store: Store) -> None:
    for at in [3.0, 1.0, 5.0, 2.0, 4.0]:
        store.add_telemetry_sample("w-1", at, {"cpu": at / 10, "mem": int(at) * 100})
    store.add_telemetry_sample("w-2", 9.0, {"cpu": 0.9})

    recent = store.telemetry_history("w-1", limit=3)
    everything = store.telemetry_history("w-1", limit=0)

    assert recent == [
        (3.0, {"cpu": 0.3, "mem": 300}),
        (4.0, {"cpu": 0.4, "mem": 400}),
        (5.0, {"cpu": 0.5, "mem": 500}),
    ]
    assert [at for at, _ in everything] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert store.telemetry_history("w-none") == []


def test_trim_telemetry_deletes_only_older_samples(store: Store) -> None:
    for at in [1.0, 2.0, 3.0, 4.0]:
        store.add_telemetry_sample("w-1", at, {"cpu": at})
    store.add_telemetry_sample("w-2", 1.5, {"cpu": 0.1})

    assert store.trim_telemetry(3.0) == 3  # 1.0, 1.5 and 2.0; 3.0 itself stays
    assert [at for at, _ in store.telemetry_history("w-1", limit=0)] == [3.0, 4.0]
    assert store.telemetry_history("w-2") == []
    assert store.trim_telemetry(3.0) == 0


# -- tasks: create / get ------------------------------------------------------------
def test_full_task_round_trips_exactly(store: Store) -> None:
    task = make_full_task()
    store.create_task(task)

    got = store.get_task(task.id)

    assert got == task
    assert got is not None and got.current is not None
    assert got.current.number == 2 and got.attempts[0].exit_code == 137


def test_get_unknown_task_is_none(store: Store) -> None:
    assert store.get_task("t-missing") is None


def test_duplicate_create_raises_conflict_and_keeps_original(store: Store) -> None:
    original = make_task("t-1", created_at=1.0)
    store.create_task(original)
    impostor = make_task("t-1", state=TaskState.RUNNING, attempt=3, created_at=2.0)

    with pytest.raises(Conflict):
        store.create_task(impostor)

    assert store.get_task("t-1") == original


# -- tasks: list ----------------------------------------------------------------------
# id -> (state, worker, created_at); created_at order differs from id order on purpose.
LISTED = {
    "t-a": (S, "w-1", 10.0),
    "t-b": (P, "", 20.0),
    "t-c": (R, "w-1", 30.0),
    "t-d": (PL, "w-2", 40.0),
    "t-e": (P, "", 50.0),
    "t-f": (F, "w-2", 5.0),
}


@pytest.mark.parametrize(
    ("states", "worker_id", "limit", "expected"),
    [
        pytest.param(None, None, 0, ["t-f", "t-a", "t-b", "t-c", "t-d", "t-e"], id="all"),
        pytest.param([P], None, 0, ["t-b", "t-e"], id="pending"),
        pytest.param([P, PL, R], None, 0, ["t-b", "t-c", "t-d", "t-e"], id="non-terminal"),
        pytest.param([], None, 0, [], id="empty-states"),
        pytest.param(None, "w-1", 0, ["t-a", "t-c"], id="worker"),
        pytest.param(None, "", 0, ["t-b", "t-e"], id="unassigned"),
        pytest.param([R, PL], "w-2", 0, ["t-d"], id="states+worker"),
        pytest.param(None, None, 2, ["t-d", "t-e"], id="limit-keeps-newest"),
        pytest.param([P, PL, R], None, 3, ["t-c", "t-d", "t-e"], id="states+limit"),
        pytest.param(None, "w-2", 10, ["t-f", "t-d"], id="limit>count"),
        pytest.param([TaskState.CANCELLED], None, 0, [], id="no-match"),
    ],
)
def test_list_tasks_filters_and_limits(
    store: Store,
    states: list[TaskState] | None,
    worker_id: str | None,
    limit: int,
    expected: list[str],
) -> None:
    for tid, (state, wid, created) in LISTED.items():
        store.create_task(make_task(tid, state=state, worker_id=wid, created_at=created))

    got = store.list_tasks(states=states, worker_id=worker_id, limit=limit)

    assert [t.id for t in got] == expected


def test_list_tasks_breaks_creation_time_ties_by_id(store: Store) -> None:
    for tid in ["t-2", "t-3", "t-1"]:
        store.create_task(make_task(tid, created_at=7.0))
    assert [t.id for t in store.list_tasks()] == ["t-1", "t-2", "t-3"]
    assert [t.id for t in store.list_tasks(limit=2)] == ["t-2", "t-3"]


# -- tasks: conditional update ------------------------------------------------------------
def _placed(task_id: str = "t-1") -> Task:
    return make_task(task_id, state=PL, attempt=1, worker_id="w-1")


def _running_on(task: Task, worker_id: str) -> Task:
    nxt = Task.from_dict(task.to_dict())
    nxt.state, nxt.worker_id, nxt.updated_at = R, worker_id, task.updated_at + 1
    return nxt


@pytest.mark.parametrize(
    ("expect_state", "expect_attempt", "wins"),
    [
        (PL, 1, True),
        (P, 1, False),  # wrong state
        (R, 1, False),  # wrong state
        (PL, 0, False),  # stale attempt
        (PL, 2, False),  # future attempt
    ],
)
def test_update_task_is_compare_and_set(
    store: Store, expect_state: TaskState, expect_attempt: int, wins: bool
) -> None:
    before = _placed()
    store.create_task(before)
    after = _running_on(before, "w-7")

    ok = store.update_task(after, expect_state, expect_attempt)

    assert ok is wins
    assert store.get_task("t-1") == (after if wins else before)


def test_update_unknown_task_returns_false_and_creates_nothing(store: Store) -> None:
    assert store.update_task(_placed("t-ghost"), P, 0) is False
    assert store.get_task("t-ghost") is None


def test_update_moves_task_between_state_and_worker_filters(store: Store) -> None:
    before = _placed()
    store.create_task(before)

    assert store.update_task(_running_on(before, "w-9"), PL, 1)

    assert store.list_tasks(states=[PL]) == []
    assert [t.id for t in store.list_tasks(states=[R], worker_id="w-9")] == ["t-1"]
    assert store.list_tasks(worker_id="w-1") == []


def test_second_update_with_same_expectation_loses(store: Store) -> None:
    before = _placed()
    store.create_task(before)
    assert store.update_task(_running_on(before, "w-2"), PL, 1)
    assert not store.update_task(_running_on(before, "w-3"), PL, 1)
    stored = store.get_task("t-1")
    assert stored is not None and stored.worker_id == "w-2"


def _race(store: Store, task_id: str, racers: int) -> list[int]:
    """All racers read PENDING/0 and try to place the task; returns the winners."""
    barrier = threading.Barrier(racers)
    winners: list[int] = []
    lock = threading.Lock()
    base = store.get_task(task_id)
    assert base is not None

    def attempt_placement(i: int) -> None:
        mine = Task.from_dict(base.to_dict())
        mine.state, mine.attempt, mine.worker_id = PL, 1, f"w-{i}"
        barrier.wait()
        if store.update_task(mine, P, 0):
            with lock:
                winners.append(i)

    threads = [threading.Thread(target=attempt_placement, args=(i,)) for i in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return winners


def test_concurrent_cas_has_exactly_one_winner(store: Store, backend: Backend) -> None:
    if backend.name == "mongomock-STANDIN":
        # mongomock matches then mutates without a lock, so two threads can both
        # "win"; atomicity is the server's job and mongodb-real checks it.
        pytest.skip("mongomock updates are not atomic across threads")
    for round_ in range(5):
        tid = f"t-race-{round_}"
        store.create_task(make_task(tid))

        winners = _race(store, tid, racers=12)

        assert len(winners) == 1
        stored = store.get_task(tid)
        assert stored is not None
        assert (stored.state, stored.attempt, stored.worker_id) == (PL, 1, f"w-{winners[0]}")


def test_count_tasks_by_state_includes_zero_states(store: Store) -> None:
    for tid, (state, wid, created) in LISTED.items():
        store.create_task(make_task(tid, state=state, worker_id=wid, created_at=created))

    counts = store.count_tasks_by_state()

    expected = {"PENDING": 2, "PLACED": 1, "RUNNING": 1, "SUCCEEDED": 1, "FAILED": 1}
    assert counts == {**dict.fromkeys(TaskState, 0), **expected}


# -- results ----------------------------------------------------------------------------
def test_put_result_upserts_by_task_and_attempt(store: Store) -> None:
    store.put_result(make_result("t-1", 2, "second", exit_code=0))
    store.put_result(make_result("t-1", 1, "first", exit_code=1))
    store.put_result(make_result("t-1", 1, "first, reported again", exit_code=3))
    store.put_result(make_result("t-other", 1, "x"))

    got = store.get_results("t-1")

    assert [(r.attempt, r.exit_code, r.log_tail) for r in got] == [
        (1, 3, "first, reported again"),
        (2, 0, "second"),
    ]
    assert got[1] == make_result("t-1", 2, "second")
    assert store.get_results("t-none") == []


_MARK = "<<END OF LOG>>"


@pytest.mark.parametrize(
    ("log", "kept_whole"),
    [
        ("short log\n" + _MARK, True),
        ("x" * (MAX_LOG_TAIL - len(_MARK)) + _MARK, True),  # exactly at the bound
        ("x" * MAX_LOG_TAIL + _MARK, False),
        ("é" * MAX_LOG_TAIL + _MARK, False),  # 2-byte chars: cut on a char boundary
        ("a€" * MAX_LOG_TAIL + _MARK, False),  # mixed 1- and 3-byte chars
    ],
    ids=["short", "at-bound", "ascii-over", "2-byte-over", "mixed-over"],
)
def test_result_log_tail_keeps_the_end_within_bound(
    store: Store, log: str, kept_whole: bool
) -> None:
    store.put_result(make_result("t-1", 1, log))

    (stored,) = store.get_results("t-1")

    size = len(stored.log_tail.encode("utf-8"))
    assert size <= MAX_LOG_TAIL
    assert stored.log_tail.endswith(_MARK)
    assert (stored.log_tail == log) is kept_whole
    if not kept_whole:
        assert size > MAX_LOG_TAIL - 4  # lost at most one partial character


# -- decisions --------------------------------------------------------------------------
def test_list_decisions_is_newest_first_per_task(store: Store) -> None:
    for at in [3.0, 1.0, 2.0]:
        store.add_decision(make_decision("t-1", at, worker_id=f"w-{int(at)}"))
    store.add_decision(make_decision("t-2", 9.0))

    assert [d.decided_at for d in store.list_decisions("t-1")] == [3.0, 2.0, 1.0]
    assert [d.decided_at for d in store.list_decisions("t-1", limit=2)] == [3.0, 2.0]
    assert store.list_decisions("t-1", limit=1) == [make_decision("t-1", 3.0, "w-3")]
    assert store.list_decisions("t-none") == []


@pytest.mark.parametrize(
    ("since", "limit", "expected"),
    [
        (0.0, 0, [("t-1", 1.0), ("t-2", 1.5), ("t-1", 2.0), ("t-3", 4.0)]),
        (2.0, 0, [("t-1", 2.0), ("t-3", 4.0)]),  # "at or after"
        (1.2, 2, [("t-2", 1.5), ("t-1", 2.0)]),  # oldest `limit` since
        (4.5, 0, []),
    ],
)
def test_iter_decisions_since_is_oldest_first(
    store: Store, since: float, limit: int, expected: list[tuple[str, float]]
) -> None:
    for tid, at in [("t-3", 4.0), ("t-1", 1.0), ("t-1", 2.0), ("t-2", 1.5)]:
        store.add_decision(make_decision(tid, at))

    got = store.iter_decisions(since=since, limit=limit)

    assert [(d.task_id, d.decided_at) for d in got] == expected


# -- durability -------------------------------------------------------------------------
def test_state_survives_close_and_reopen(backend: Backend) -> None:
    """sqlite reopens the same file. mongomock-STANDIN is in memory only, so the
    shared mongomock client plays the server that outlives the store."""
    first = backend.open()
    task = make_full_task()
    first.create_task(task)
    moved = Task.from_dict(task.to_dict())
    moved.state, moved.exit_code = S, 0
    assert first.update_task(moved, R, 2)
    first.upsert_worker(make_worker("w-1", zone="a"))
    first.set_worker_health("w-1", WorkerHealth.DRAINING, at=77.0)
    first.add_telemetry_sample("w-1", 5.0, {"cpu": 0.5})
    first.put_result(make_result(task.id, 2, "done"))
    first.add_decision(make_decision(task.id, 6.0))
    first.close()

    second = backend.open()
    try:
        assert second.get_task(task.id) == moved
        worker = second.get_worker("w-1")
        assert worker is not None and worker.health == WorkerHealth.DRAINING
        assert second.telemetry_history("w-1") == [(5.0, {"cpu": 0.5})]
        assert second.get_results(task.id) == [make_result(task.id, 2, "done")]
        assert second.list_decisions(task.id) == [make_decision(task.id, 6.0)]
        assert second.count_tasks_by_state()["SUCCEEDED"] == 1
        # The reopened store still enforces the CAS guard on the reloaded state.
        assert not second.update_task(moved, R, 2)
    finally:
        second.close()


def test_batch_commits_every_write_together(store: Store) -> None:
    with store.batch():
        store.create_task(make_task("t-b1"))
        with store.batch():  # nesting joins the outer batch
            store.create_task(make_task("t-b2"))
        store.add_decision(make_decision("t-b1", 1.0))
    assert store.get_task("t-b1") is not None and store.get_task("t-b2") is not None
    assert len(store.list_decisions("t-b1")) == 1


def test_failed_write_inside_batch_leaves_the_others(store: Store) -> None:
    store.create_task(make_task("t-dup"))
    with store.batch():
        store.create_task(make_task("t-ok"))
        with pytest.raises(Conflict):
            store.create_task(make_task("t-dup"))
        store.create_task(make_task("t-ok2"))
    assert store.get_task("t-ok") is not None and store.get_task("t-ok2") is not None
