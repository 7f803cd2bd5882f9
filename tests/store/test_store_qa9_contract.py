"""QA pass 8 (store): the contract on text every backend must keep exactly, run
against every backend (sqlite, mongomock-STANDIN, mongodb-real when configured):
non-ASCII ids, names, env values, commands, labels with dots, log tails cut in the
middle of a multi-byte character, and the largest spec the master accepts."""

from __future__ import annotations

from cloudai.master.store import MAX_LOG_TAIL, Store
from cloudai.model import Task, TaskState
from cloudai.validation import MAX_ENV_VALUE, MAX_ENV_VARS

from .builders import make_decision, make_result, make_task, make_worker

TEXT = 'héllo wörld 世界 🚀 naïve Ω \u200b\t"quoted" \\ back'


def test_non_ascii_text_round_trips_everywhere(store: Store) -> None:
    task = make_task("t-ünï-🚀")
    task.spec.name = "naïve-名前"
    task.spec.command = ["sh", "-c", f"echo '{TEXT}'"]
    task.spec.env = {"GREETING": TEXT, "EMPTY": ""}
    task.spec.owner = "zoë"
    task.message = TEXT
    store.create_task(task)
    worker = make_worker("w-ü", **{"cloudai.io/zone": "eu-1", "gpu.model": "a100"})
    worker.hostname = "hôte-1"
    store.upsert_worker(worker)
    store.add_telemetry_sample("w-ü", 1.0, {"note": TEXT, "cpu": 0.5})
    store.add_decision(make_decision(task.id, 2.0, worker_id="w-ü"))

    assert store.get_task(task.id) == task
    assert [t.id for t in store.list_tasks(owner="zoë")] == [task.id]
    assert store.get_worker("w-ü") == worker
    assert store.telemetry_history("w-ü") == [(1.0, {"note": TEXT, "cpu": 0.5})]
    assert store.list_decisions(task.id) == [make_decision(task.id, 2.0, worker_id="w-ü")]


def test_a_log_tail_cut_inside_a_character_keeps_whole_characters(store: Store) -> None:
    """4-byte characters straddling the 64 KiB bound: the stored tail is the end of
    the log, valid text, and within the bound."""
    log = "start\n" + "🚀" * (MAX_LOG_TAIL // 4) + "x\nend ✓"
    store.put_result(make_result("t-1", 1, log_tail=log))

    (stored,) = store.get_results("t-1")

    size = len(stored.log_tail.encode("utf-8"))
    assert MAX_LOG_TAIL - 4 < size <= MAX_LOG_TAIL
    assert log.endswith(stored.log_tail) and stored.log_tail.endswith("x\nend ✓")


def test_the_largest_accepted_spec_is_stored_and_moved_whole(store: Store) -> None:
    """Every env variable at its largest (8 MiB of spec): created, moved by a CAS
    update, and read back unchanged."""
    task = make_task("t-big")
    task.spec.env = {f"V{i}": "é" * (MAX_ENV_VALUE // 2) for i in range(MAX_ENV_VARS)}
    store.create_task(task)
    moved = Task.from_dict(task.to_dict())
    moved.state, moved.attempt, moved.worker_id = TaskState.PLACED, 1, "w-1"

    assert store.update_task(moved, TaskState.PENDING, 0)
    assert store.get_task("t-big") == moved
    assert store.count_tasks_by_state()["PLACED"] == 1
