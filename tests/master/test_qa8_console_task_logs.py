"""QA pass 8, the `master>` console on a real in-process master (fake workers speaking
the real protocol over loopback gRPC):

- `task '' IMAGE` submitted an unpinned task ("submitted to  (img)"): the manual
  override with an empty worker id went anywhere;
- `task W IMAGE --cpu=2` was a bare usage error, `--gpu 1` too (taken for positional
  arguments), and `--cpu` without a value said "invalid --cpu ''";
- a line ending in a backslash was the unknown command 'workers\\n';
- `logs` dropped the master's notes (a worker that did not answer) and the output's
  blank lines, and broke a line that came in two chunks.
"""

from __future__ import annotations

import time

import grpc

from cloudai.convert import state_to_pb
from cloudai.model import DecisionRecord, TaskState
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_worker_pb2 as mw

from .harness import FakeWorkerServicer
from .test_console_input import run

IMAGE = "cloudai/sample-task:latest"
USAGE = "usage: task <worker_id> <docker_image>"


class ChunkedLogs(FakeWorkerServicer):
    """Output with blank lines, one line split over two chunks, no final newline."""

    def GetTaskLogs(self, request, context):
        yield pb.LogChunk(data="first\n\n\nsec")
        yield pb.LogChunk(data="ond\nno newline at the end")


class DeafLogs(FakeWorkerServicer):
    """Accepts tasks, but its log service fails."""

    def GetTaskLogs(self, request, context):
        context.abort(grpc.StatusCode.INTERNAL, "disk on fire")


def running_task(h, worker_id: str) -> str:
    """A task pinned to `worker_id` from the console, placed there and running."""
    out = run(h, f"task {worker_id} {IMAGE}")
    task_id = out.split()[2]
    task = h.master.tasks.get(task_id)
    placed, why = h.master.tasks.commit_placement(
        task_id, task.attempt, worker_id, DecisionRecord(task_id, task.attempt)
    )
    assert placed is not None, why
    report = mw.TaskStatusReport(
        worker_id=worker_id,
        task_id=task_id,
        attempt=placed.attempt,
        state=state_to_pb(TaskState.RUNNING),
        started_at=time.time(),
    )
    assert h.mw.ReportTaskStatus(report, timeout=5).accepted
    assert h.master.tasks.get(task_id).state == TaskState.RUNNING
    return task_id


def test_task_with_an_empty_worker_id_is_refused_not_submitted_unpinned(h):
    h.add_worker("w1")
    out = run(h, f"task '' {IMAGE}", f'task "" {IMAGE} --cpu 1')
    assert out.count("✗ the worker id is empty; " + USAGE) == 2, out
    assert "submitted" not in out
    assert h.master.store.list_tasks() == []


def test_task_takes_its_options_with_an_equals_sign(h):
    h.add_worker("w1", cpu=4)
    out = run(h, f"task w1 {IMAGE} --cpu=2 --mem=256m")
    assert out.startswith("✓ task t-") and "submitted to w1" in out, out
    [task] = h.master.store.list_tasks()
    assert task.spec.pinned_worker == "w1"
    assert task.spec.resources.cpu == 2
    assert task.spec.resources.memory_bytes == 256 * 1024**2


def test_task_names_an_unknown_option_and_an_option_without_a_value(h):
    h.add_worker("w1")
    out = run(h, f"task w1 {IMAGE} --gpu 1", f"task w1 {IMAGE} --cpu", f"task w1 {IMAGE} --mem")
    lines = out.splitlines()
    assert lines[0] == f"✗ unknown option '--gpu'; {USAGE} [--cpu N] [--mem 512m] [-- CMD ARGS...]"
    assert lines[1].startswith(f"✗ --cpu needs a value; {USAGE}"), lines
    assert lines[2].startswith(f"✗ --mem needs a value; {USAGE}"), lines
    assert h.master.store.list_tasks() == []


def test_options_after_the_double_dash_still_go_to_the_command(h):
    h.add_worker("w1")
    out = run(h, f"task w1 {IMAGE} -- app --gpu 1 --cpu=3")
    assert "submitted to w1" in out and "note: --cpu after -- is part of the command" in out
    [task] = h.master.store.list_tasks()
    assert task.spec.command == ["app", "--gpu", "1", "--cpu=3"]
    assert task.spec.resources.cpu == 0


def test_a_trailing_backslash_is_a_parse_error_not_an_unknown_command(h):
    out = run(h, "workers\\")
    assert out.strip() == "✗ cannot parse command: No escaped character", out


def test_logs_keeps_blank_lines_and_joins_a_line_split_over_chunks(h):
    h.add_worker("w1", servicer=ChunkedLogs())
    task_id = running_task(h, "w1")
    out = run(h, f"logs {task_id}", "status")
    assert out.startswith("first\n\n\nsecond\nno newline at the end\n╭"), out


def test_logs_says_when_the_worker_did_not_answer(h):
    h.add_worker("w1", servicer=DeafLogs())
    task_id = running_task(h, "w1")
    out = run(h, f"logs {task_id}")
    assert out.startswith("⚠ worker w1 did not answer (INTERNAL: disk on fire)\n"), out


def test_tasks_says_when_it_shows_only_the_newest(h, monkeypatch):
    """The console's `tasks` showed the newest 50 without a word that there were more,
    and `queue` listed every pending task, however many."""
    from cloudai.master import console
    from cloudai.model import TaskSpec

    monkeypatch.setattr(console, "CONSOLE_TASKS", 2)
    ids = [h.master.submit(TaskSpec(image=IMAGE, command=["true"])).id for _ in range(3)]
    out = run(h, "tasks")
    assert ids[0] not in out and ids[1] in out and ids[2] in out, out
    assert "(the newest 2 shown: `cloudai tasks --limit N` lists more)" in out, out
    out = run(h, "queue")  # all three wait: no worker
    assert ids[0] not in out and "(the newest 2 shown" in out, out
    monkeypatch.setattr(console, "CONSOLE_TASKS", 3)
    out = run(h, "tasks")
    assert all(i in out for i in ids) and "the newest" not in out, out
