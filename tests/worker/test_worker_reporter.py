"""Reporter over real gRPC: retries through master outages, in order, exactly once."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator

import grpc
import pytest

from cloudai.convert import state_to_pb
from cloudai.model import TaskState
from cloudai.proto import master_worker_pb2 as mw
from cloudai.rpc import channel
from cloudai.worker.reporter import Reporter, backoff_delays
from tests.worker.fake_master import FakeMaster, free_port


def report(task_id: str, state: TaskState = TaskState.SUCCEEDED) -> mw.TaskStatusReport:
    return mw.TaskStatusReport(
        worker_id="w", task_id=task_id, attempt=1, state=state_to_pb(state), has_exit_code=True
    )


@pytest.fixture
def master() -> Iterator[FakeMaster]:
    fake = FakeMaster()
    yield fake
    fake.stop()


def make_reporter(port: int, **kwargs: object) -> tuple[Reporter, grpc.Channel]:
    ch = channel(f"127.0.0.1:{port}")
    rep = Reporter(ch, name="w", backoff_initial=0.05, backoff_cap=0.4, **kwargs)  # type: ignore[arg-type]
    rep.start()
    return rep, ch


def test_backoff_doubles_to_the_cap_with_bounded_jitter() -> None:
    delays = backoff_delays(0.2, 5.0, random.Random(7))
    got = [next(delays) for _ in range(8)]
    for value, nominal in zip(got, [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0], strict=True):
        assert nominal * 0.8 <= value <= nominal * 1.2


def test_report_arrives_exactly_once_after_master_errors(master: FakeMaster) -> None:
    master.fail_reports = 3
    rep, ch = make_reporter(master.start())
    rep.submit(report("t-1"))
    assert rep.flush(10)
    assert master.report_calls == 4
    assert [r.task_id for r in master.reports] == ["t-1"]
    rep.stop()
    ch.close()


def test_report_arrives_when_the_master_starts_late(master: FakeMaster) -> None:
    port = free_port()
    rep, ch = make_reporter(port)
    rep.submit(report("t-late"))
    time.sleep(1.0)
    assert rep.pending() == 1  # nobody listening yet: still held, not dropped
    master.start(port)
    assert rep.flush(10)
    assert [r.task_id for r in master.reports] == ["t-late"]
    rep.stop()
    ch.close()


def test_reports_keep_their_order_across_failures(master: FakeMaster) -> None:
    master.fail_reports = 2
    rep, ch = make_reporter(master.start())
    sent = [("a", TaskState.RUNNING), ("b", TaskState.RUNNING), ("a", TaskState.FAILED)]
    for task_id, state in sent:
        rep.submit(report(task_id, state))
    assert rep.flush(10)
    assert [(r.task_id, r.state) for r in master.reports] == [(t, state_to_pb(s)) for t, s in sent]
    rep.stop()
    ch.close()


def test_refused_report_is_dropped_and_calls_back(master: FakeMaster) -> None:
    master.refuse_tasks = {"t-stale"}
    refused: list[tuple[str, str]] = []
    answered: list[bool] = []
    rep, ch = make_reporter(
        master.start(),
        on_refused=lambda r, msg: refused.append((r.task_id, msg)),
        on_answered=lambda r, ok: answered.append(ok),
    )
    rep.submit(report("t-stale"))
    rep.submit(report("t-ok"))
    assert rep.flush(10)
    assert refused == [("t-stale", "stale attempt")]
    assert answered == [False, True]
    assert master.report_calls == 2  # the refusal was not retried
    assert [r.task_id for r in master.reports] == ["t-ok"]
    rep.stop()
    ch.close()


def test_stop_gives_up_and_says_how_many_were_left() -> None:
    rep, ch = make_reporter(free_port())
    rep.submit(report("t-lost"))
    began = time.monotonic()
    assert rep.stop(flush_timeout=0.3) == 1
    assert time.monotonic() - began < 3
    ch.close()
