"""Delivers task status reports to the master, in order, until it answers.

One background thread drains a FIFO queue. A report is retried with jittered
exponential backoff for as long as the master cannot be reached: a finished
task's result must survive a master restart or a network blip. An *answer* ends
the retries either way: accepted=False means the attempt is stale or unknown,
so the report is dropped and `on_refused` lets the node stop that attempt.
"""

from __future__ import annotations

import collections
import random
import threading
from collections.abc import Callable, Iterator

import grpc

from cloudai import rpc
from cloudai.proto import common_pb2
from cloudai.proto import master_worker_pb2 as mw
from cloudai.proto import master_worker_pb2_grpc as mw_grpc

OnRefused = Callable[[mw.TaskStatusReport, str], None]
OnAnswered = Callable[[mw.TaskStatusReport, bool], None]

BACKOFF_INITIAL_S = 0.2
BACKOFF_CAP_S = 5.0
RPC_TIMEOUT_S = 5.0
# How long stop() waits for a report still in flight once the flush is over: a master
# that accepts connections but does not answer (hung, SIGSTOPped) would otherwise hold
# a SIGTERMed worker for the call's whole deadline. The report is not lost: its
# container stays until the master has the result, and a restarted worker reports it.
STOP_JOIN_S = 0.5


def backoff_delays(initial: float, cap: float, rng: random.Random) -> Iterator[float]:
    """initial, 2*initial, ... capped, each with +-20% jitter so a fleet of workers
    does not hammer a master that just came back all in the same instant."""
    delay = initial
    while True:
        yield delay * rng.uniform(0.8, 1.2)
        delay = min(cap, delay * 2)


class Reporter:
    """Queue of TaskStatusReport, sent by one thread. Single FIFO: reports of one
    task (RUNNING, then the result) are delivered in the order they were queued."""

    def __init__(
        self,
        channel: grpc.Channel,
        *,
        name: str = "worker",
        on_refused: OnRefused | None = None,
        on_answered: OnAnswered | None = None,
        backoff_initial: float = BACKOFF_INITIAL_S,
        backoff_cap: float = BACKOFF_CAP_S,
        rpc_timeout: float = RPC_TIMEOUT_S,
    ) -> None:
        self._stub = mw_grpc.MasterWorkerStub(channel)
        self._name = name
        self._on_refused = on_refused
        self._on_answered = on_answered
        self._backoff = (backoff_initial, backoff_cap)
        self._rpc_timeout = rpc_timeout
        self._queue: collections.deque[mw.TaskStatusReport] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reporter", daemon=True)
        self._rng = random.Random()

    def start(self) -> None:
        self._thread.start()

    def submit(self, report: mw.TaskStatusReport) -> None:
        with self._cond:
            self._queue.append(report)
            self._cond.notify_all()

    def pending(self) -> int:
        """Reports not yet answered by the master (the one being sent included)."""
        with self._cond:
            return len(self._queue)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued report was answered; False if time ran out."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue, timeout=timeout)

    def stop(self, flush_timeout: float = 0.0) -> int:
        """Flush briefly, then stop retrying. Returns how many reports were left."""
        if flush_timeout > 0:
            self.flush(flush_timeout)
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=STOP_JOIN_S)
        return self.pending()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._stopping.is_set())
                if self._stopping.is_set():
                    return
                # The head stays queued until answered, so flush() and pending() see it.
                report = self._queue[0]
            if self._deliver(report):
                with self._cond:
                    self._queue.popleft()
                    self._cond.notify_all()

    def _deliver(self, report: mw.TaskStatusReport) -> bool:
        """Send until the master answers; False only when stopping first."""
        delays = backoff_delays(*self._backoff, self._rng)
        failures = 0
        while not self._stopping.is_set():
            try:
                ack = self._stub.ReportTaskStatus(report, timeout=self._rpc_timeout)
            # Anything but an answer is retried: a bug here must not silently end
            # deliveries (and lose every later result) by killing this thread.
            except Exception as err:
                failures += 1
                delay = next(delays)
                if failures == 1 or failures % 10 == 0:
                    print(
                        f"[{self._name}] report {_describe(report)} not delivered "
                        f"({_why(err)}), retrying in {delay:.1f}s",
                        flush=True,
                    )
                self._stopping.wait(delay)
                continue
            if not ack.accepted:
                self._refused(report, ack.message)
            self._call(self._on_answered, report, ack.accepted)
            return True
        return False

    def _refused(self, report: mw.TaskStatusReport, message: str) -> None:
        print(
            f"[{self._name}] master refused report {_describe(report)}: {message or 'stale'}",
            flush=True,
        )
        self._call(self._on_refused, report, message)

    def _call(self, callback: Callable[..., None] | None, *args: object) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception as err:  # a callback must not stop deliveries
            print(f"[{self._name}] report callback failed: {err!r}", flush=True)


def _describe(report: mw.TaskStatusReport) -> str:
    state = common_pb2.TaskState.Name(report.state).removeprefix("TASK_STATE_")
    return f"task {report.task_id} attempt {report.attempt} {state}"


def _why(err: Exception) -> str:
    """The status code, or what failed when the master answered that its store did."""
    if isinstance(err, grpc.RpcError) and rpc.store_failed(err):
        return f"the master cannot use its store: {err.details()}"
    return _code(err)


def _code(err: Exception) -> str:
    if isinstance(err, grpc.RpcError) and hasattr(err, "code"):
        return err.code().name
    return type(err).__name__
