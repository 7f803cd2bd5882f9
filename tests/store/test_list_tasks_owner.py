"""`Store.list_tasks(owner=...)`, run against every backend (see conftest.py): the
owner filter is part of the query, so `limit` counts only that owner's tasks."""

from __future__ import annotations

from cloudai.master.store import Store
from cloudai.model import TaskState

from .builders import make_task


def _fill(store: Store) -> None:
    for n, owner in enumerate(["alice", "bob", "alice", "", "bob"], start=1):
        task = make_task(f"t-{n}", created_at=1000.0 + n)
        task.spec.owner = owner
        store.create_task(task)


def test_owner_none_lists_every_task(store: Store) -> None:
    _fill(store)
    assert [t.id for t in store.list_tasks()] == ["t-1", "t-2", "t-3", "t-4", "t-5"]


def test_owner_filter_keeps_only_that_owners_tasks(store: Store) -> None:
    _fill(store)
    assert [t.id for t in store.list_tasks(owner="alice")] == ["t-1", "t-3"]
    assert [t.id for t in store.list_tasks(owner="bob")] == ["t-2", "t-5"]
    assert store.list_tasks(owner="carol") == []


def test_owner_filter_applies_before_the_limit(store: Store) -> None:
    _fill(store)
    assert [t.id for t in store.list_tasks(owner="alice", limit=1)] == ["t-3"]


def test_owner_filter_combines_with_state(store: Store) -> None:
    _fill(store)
    assert [t.id for t in store.list_tasks(states=[TaskState.PENDING], owner="bob")] == [
        "t-2",
        "t-5",
    ]
    assert store.list_tasks(states=[TaskState.RUNNING], owner="bob") == []
