"""The `master>` console on a real in-process master: one-line errors for bad input."""

from __future__ import annotations

import io

import pytest

from cloudai.master.console import Console
from cloudai.model import TaskSpec, TaskState

from .harness import console_output, make_harness


@pytest.fixture
def h(tmp_path):
    harness = make_harness(tmp_path)
    yield harness
    harness.close()


def run(h, *lines: str) -> str:
    return console_output(h.master, *lines)


def test_tasks_with_an_unknown_state_lists_the_valid_ones(h):
    out = run(h, "tasks BOGUS")
    valid = ", ".join(s.value for s in TaskState)
    assert f"✗ unknown state 'BOGUS'; use one of {valid}" in out
    assert "internal error" not in out and "ValueError" not in out


def test_tasks_with_a_state_in_any_case_filters(h):
    h.master.submit(TaskSpec(image="alpine"))
    assert "Tasks (1)" in run(h, "tasks pending")
    assert "Tasks (0)" in run(h, "tasks Failed")
    assert "usage: tasks [STATE]" in run(h, "tasks PENDING RUNNING")


def test_exit_ends_the_console(h):
    ended = Console(h.master, out=io.StringIO()).run(io.StringIO("status\nexit\nstatus\n"))
    assert ended == Console.EXIT
