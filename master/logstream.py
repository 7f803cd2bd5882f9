"""A task's logs for StreamLogs (`cloudai logs`): from the worker while an attempt
runs, from the store once the task has ended.

Followed (`--follow`), the stream lasts until the task ends, across its attempts.
When the attempt being followed ends without ending the task (its worker was lost,
a retry is due), a notice says so (`attempt 1 ended: worker lost; the task is
pending again`) and the stream carries on with the next attempt's output. When the
worker's stream breaks while the attempt runs on (the worker restarted and re-adopted
its container), it is resumed where it broke; output that only the store still holds
when the attempt ends is sent then. The last chunk of a followed stream has eof set.
"""

from __future__ import annotations

import math
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
RESUME_S = 0.5  # how often a broken stream of a running attempt is tried again
MARK = 4096  # characters of what was sent, to find where a reader stands in a log tail
GAP_NOTICE = "the output could not be matched after the worker's stream broke: a gap is possible"
IsActive = Callable[[], bool]
OnLeave = Callable[[Callable[[], None]], bool]


class Caller:
    """The client of one StreamLogs call: is it still there, and which worker stream
    to cancel when it leaves. Without the cancel, a reader that left a quiet task's
    followed stream kept a master thread (and a worker's) until the task printed
    again or ended: enough of them took every thread of the master's server."""

    def __init__(self, is_active: IsActive, on_leave: OnLeave | None) -> None:
        self._is_active = is_active
        self._lock = threading.Lock()
        self._call: grpc.Future | None = None
        self._left = False
        if on_leave is not None and not on_leave(self.leave):
            self._left = True  # the call had already ended

    def __call__(self) -> bool:
        return not self._left and self._is_active()

    def track(self, call: object) -> None:
        """The worker stream being read now (cancelled at once if the caller left)."""
        cancel = getattr(call, "cancel", None)
        with self._lock:
            self._call = call if cancel else None  # type: ignore[assignment]
            left = self._left
        if left and cancel:
            cancel()

    def leave(self) -> None:
        with self._lock:
            self._left, call = True, self._call
        if call is not None:
            call.cancel()


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
        self,
        task_id: str,
        follow: bool,
        tail: int,
        is_active: IsActive,
        on_leave: OnLeave | None = None,
    ) -> Iterator[pb.LogChunk]:
        """`on_leave(callback)` (a gRPC context's add_callback) runs callback when the
        caller leaves: the worker's stream is cancelled then (see Caller)."""
        is_active = Caller(is_active, on_leave)
        if follow:
            yield from self._follow(task_id, tail, is_active)
            return
        task = self._tasks.get(task_id)
        if task.state.active and task.worker_id:
            sent = Sent(whole=tail <= 0)
            yield from self._from_worker(task, False, tail, is_active, sent)
            if sent.count:
                return
            if sent.error and task.state == TaskState.RUNNING:
                yield pb.LogChunk(notice=f"worker {task.worker_id} did not answer ({sent.error})")
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
            attempt, sent = task.attempt, Sent(whole=tail <= 0)
            yield from self._from_worker(task, True, tail, is_active, sent)
            task = yield from self._until_ended(task_id, attempt, sent, is_active)
            if task is None:
                return
            if task.state.terminal and task.attempt == attempt:
                yield self._last(task_id, tail, sent)
                return
            yield pb.LogChunk(notice=attempt_ended(task, attempt))
            tail = 0  # the next attempt's output is all new

    def _until_ended(
        self, task_id: str, attempt: int, sent: Sent, is_active: IsActive
    ) -> Generator[pb.LogChunk, None, Task | None]:
        """Wait for the attempt to end. If the worker's stream broke while the attempt
        runs on (a restarted worker that re-adopted the container, a network hiccup),
        resume it where it broke, trying every RESUME_S. A stream that simply ended
        (the container exited) is not read again: the store has the rest (`_last`).
        None if the caller left."""
        while True:
            due = time.time() + RESUME_S if sent.error else math.inf
            task = self._wait(task_id, is_active, _ended_or_due(attempt, due))
            if task is None or _ended(task, attempt):
                return task
            yield from self._resume(task, sent, is_active)

    def _resume(self, task: Task, sent: Sent, is_active: IsActive) -> Iterator[pb.LogChunk]:
        """The rest of the attempt's output after what was `sent`: the output so far
        (matched against what was sent), then the followed stream past it."""
        try:
            full = "".join(c.data for c in self._logs(task, follow=False))
        except grpc.RpcError:
            return  # still gone: try again later
        rest = sent.rest(full, exact=True)
        if rest is None:
            yield pb.LogChunk(notice=GAP_NOTICE)
            rest = ""
        if rest:
            yield pb.LogChunk(data=rest)
        sent.restart(full)
        yield from self._from_worker(task, True, 0, is_active, sent, skip=len(full))

    def _last(self, task_id: str, tail: int, sent: Sent) -> pb.LogChunk:
        """The followed attempt ended the task: what the store holds past what was
        sent (output the broken stream missed), with eof."""
        if not sent.count:
            return self._stored(task_id, tail)
        return pb.LogChunk(data=sent.rest(self._stored_log(task_id), exact=False) or "", eof=True)

    def _logs(self, task: Task, follow: bool, tail: int = 0) -> Iterator[pb.LogChunk]:
        return self._dispatcher.logs(task.worker_id, task.id, task.attempt, follow, tail)

    def _from_worker(
        self,
        task: Task,
        follow: bool,
        tail: int,
        is_active: IsActive,
        sent: Sent,
        skip: int = 0,
    ) -> Iterator[pb.LogChunk]:
        """The output of the task's current attempt from its worker, less its first
        `skip` characters; `sent` counts what went out. Sets `sent.error` if the
        worker could not be reached or the stream broke."""
        try:
            call = self._logs(task, follow, tail)
            if isinstance(is_active, Caller):
                is_active.track(call)
            for chunk in call:
                if not is_active():
                    break
                data = chunk.data[skip:]
                skip = max(0, skip - len(chunk.data))
                if data:
                    sent.add(data)
                    yield pb.LogChunk(data=data)
        except grpc.RpcError as err:
            sent.error = f"{err.code().name}: {err.details()}"  # the caller decides

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


class Sent:
    """What a reader has been sent of one attempt's output, to resume after a break."""

    def __init__(self, whole: bool) -> None:
        self.whole = whole  # it began at the output's start: `count` is an offset into it
        self.count = 0  # characters sent
        self.last = ""  # the last MARK characters sent
        self.error = ""  # why the worker's stream failed, if it did

    def add(self, data: str) -> None:
        self.count += len(data)
        self.last = (self.last + data)[-MARK:]

    def restart(self, full: str) -> None:
        """After a resume: the reader stands at the end of `full`, the output so far."""
        self.whole, self.count, self.last, self.error = True, len(full), full[-MARK:], ""

    def rest(self, full: str, exact: bool) -> str | None:
        """The part of `full` not sent yet. `full` is the output so far (`exact`) or a
        tail of it (the store's). None if where the reader stands cannot be found."""
        if exact and self.whole:
            return full[self.count :] if len(full) >= self.count else None
        if not self.count:
            return full
        i = full.rfind(self.last)
        return full[i + len(self.last) :] if i >= 0 else None


def _ended_or_due(attempt: int, due: float) -> Callable[[Task], bool]:
    return lambda task: _ended(task, attempt) or time.time() >= due


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
