"""A task's logs for StreamLogs (`cloudai logs`): from the worker while an attempt
runs, from the store once the task has ended.

Followed (`--follow`), the stream lasts until the task ends, across its attempts.
When the attempt being followed ends without ending the task (its worker was lost,
a retry is due), a notice says so (`attempt 1 ended: worker lost; the task is
pending again`) and the stream carries on with the next attempt's output. The last
chunk of a followed stream has eof set.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING

import grpc

from cloudai.model import Reason, Task, TaskState
from cloudai.proto import common_pb2 as pb

if TYPE_CHECKING:
    from .dispatcher import Dispatcher
    from .tasks import TaskManager

POLL_S = 0.1
IsActive = Callable[[], bool]


class TaskLogs:
    def __init__(
        self,
        tasks: TaskManager,
        dispatcher: Dispatcher,
        stored_log: Callable[[str], str],
        stopping: threading.Event,
    ) -> None:
        self._tasks = tasks
        self._dispatcher = dispatcher
        self._stored_log = stored_log
        self._stopping = stopping

    def stream(
        self, task_id: str, follow: bool, tail: int, is_active: IsActive
    ) -> Iterator[pb.LogChunk]:
        if follow:
            yield from self._follow(task_id, tail, is_active)
            return
        task = self._tasks.get(task_id)
        if task.state.active and task.worker_id:
            got_data = yield from self._from_worker(task, False, tail, is_active)
            if got_data:
                return
        # Not running, or the container ended before its output could be read: the
        # result (with its log tail) is in the store.
        yield self._stored(task_id, tail)

    def _follow(self, task_id: str, tail: int, is_active: IsActive) -> Iterator[pb.LogChunk]:
        """Each attempt in turn, until the task ends (or the caller leaves)."""
        while True:
            task = self._wait(task_id, is_active, _started)
            if task is None:
                return
            if task.state.terminal:
                yield self._stored(task_id, tail)
                return
            attempt = task.attempt
            got_data = yield from self._from_worker(task, True, tail, is_active)
            task = self._wait(task_id, is_active, functools.partial(_ended, attempt=attempt))
            if task is None:
                return
            if task.state.terminal and task.attempt == attempt:
                yield pb.LogChunk(eof=True) if got_data else self._stored(task_id, tail)
                return
            yield pb.LogChunk(notice=attempt_ended(task, attempt))
            tail = 0  # the next attempt's output is all new

    def _from_worker(
        self, task: Task, follow: bool, tail: int, is_active: IsActive
    ) -> Generator[pb.LogChunk, None, bool]:
        """The output of the task's current attempt, from its worker; whether any came."""
        got_data = False
        try:
            stream = self._dispatcher.logs(task.worker_id, task.id, task.attempt, follow, tail)
            for chunk in stream:
                if not is_active():
                    break
                if chunk.data:
                    got_data = True
                    yield pb.LogChunk(data=chunk.data)
        except grpc.RpcError:
            pass  # the worker is gone: the store or the next attempt tells the rest
        return got_data

    def _wait(self, task_id: str, is_active: IsActive, done: Callable[[Task], bool]) -> Task | None:
        """The task once `done(task)`; None if the caller left or the master stops."""
        while is_active() and not self._stopping.is_set():
            task = self._tasks.get(task_id)
            if done(task):
                return task
            time.sleep(POLL_S)
        return None

    def _stored(self, task_id: str, tail: int) -> pb.LogChunk:
        return pb.LogChunk(data=tail_lines(self._stored_log(task_id), tail), eof=True)


def _started(task: Task) -> bool:
    return task.state not in (TaskState.PENDING, TaskState.PLACED)


def _ended(task: Task, attempt: int) -> bool:
    """The followed attempt is over: the task ended, or it is queued or placed again."""
    return task.state.terminal or task.attempt != attempt or task.state == TaskState.PENDING


def attempt_ended(task: Task, attempt: int) -> str:
    """'attempt 1 ended: worker lost; the task is pending again' (it was requeued; it
    may be placed, or run, again by the time the follower looks)."""
    ended = next((a for a in task.attempts if a.number == attempt), None)
    why = "ended"
    if ended is not None and ended.reason:
        why = ended.reason.replace("_", " ")
        if ended.reason == Reason.NONZERO_EXIT and ended.exit_code is not None:
            why = f"exited with code {ended.exit_code}"
    return f"attempt {attempt} ended: {why}; the task is pending again"


def tail_lines(text: str, n: int) -> str:
    if n <= 0:
        return text
    return "\n".join(text.splitlines()[-n:]) + ("\n" if text.endswith("\n") else "")
