"""What a worker logs against a master that is down, or up with a failing store.

Registration failures in a row are said on the 1st, 2nd, 4th, 8th... try, but a new
reason is said at once (a master back from an outage whose store fails must not
stay 'unreachable' in the log for minutes), and a success starts the count again.
A report the master could not store names the store, and is retried until it is
acknowledged. Fake master on real loopback gRPC, the worker's own classes."""

from __future__ import annotations

import re
from collections.abc import Iterator

import grpc
import pytest

from cloudai import rpc
from cloudai.config import WorkerSettings
from cloudai.convert import state_to_pb
from cloudai.errors import StoreError
from cloudai.model import Resources, TaskState
from cloudai.proto import master_worker_pb2 as mw
from cloudai.worker.membership import MemberHooks, Membership
from cloudai.worker.reporter import Reporter
from tests.worker.fake_master import FakeMaster

FULL = "SQLite write failed (sqlite:///m.db): disk I/O error"


class FlakyMaster(FakeMaster):
    """Registration fails as the script says, one entry per try: "down" (UNAVAILABLE,
    as a lost connection), "store" (its store fails), "ok"; then "ok" for ever.
    Reports fail with a store failure `store_reports` times."""

    def __init__(self, script: list[str]) -> None:
        super().__init__()
        self.script = list(script)
        self.store_reports = 0

    def RegisterWorker(self, request, context):  # noqa: N802 - gRPC naming
        with self._cond:
            step = self.script.pop(0) if self.script else "ok"
        if step == "down":
            context.abort(grpc.StatusCode.UNAVAILABLE, "connection refused")
        if step == "store":
            rpc.abort(context, StoreError(FULL))
        return super().RegisterWorker(request, context)

    def ReportTaskStatus(self, request, context):  # noqa: N802
        with self._cond:
            failing, self.store_reports = self.store_reports > 0, max(0, self.store_reports - 1)
        if failing:
            rpc.abort(context, StoreError(FULL))
        return super().ReportTaskStatus(request, context)


@pytest.fixture
def fake() -> Iterator[tuple[FlakyMaster, int]]:
    master = FlakyMaster([])
    port = master.start()
    yield master, port
    master.stop()


def _membership(port: int, said: list[str]) -> Membership:
    settings = WorkerSettings(
        id="w-qa7", master=f"127.0.0.1:{port}", heartbeat_interval=0.2, ip="127.0.0.1"
    )
    hooks = MemberHooks(
        running=list, cached_images=list, stop_attempts=lambda refs: None, say=said.append
    )
    channel = rpc.channel(settings.master)
    return Membership(settings, channel, Resources(cpu=1, memory_bytes=2**30), hooks)


def _retries(said: list[str]) -> list[tuple[str, int]]:
    """(why, count) of each 'retrying' line; count 1 when the line has none."""
    out = []
    for line in said:
        if "retrying in" in line:
            count = re.search(r"\(failed (\d+) times in a row\)", line)
            out.append((line.split(", retrying in")[0], int(count.group(1)) if count else 1))
    return out


def test_a_new_reason_is_said_at_once_and_a_success_resets_the_count(fake):
    master, port = fake
    down = f"master at 127.0.0.1:{port} unreachable"
    store = f"master at 127.0.0.1:{port} cannot use its store: {FULL}"
    master.script = ["down"] * 4 + ["store"] * 3
    said: list[str] = []
    member = _membership(port, said)
    member.start("127.0.0.1:1")
    try:
        assert master.wait_for(lambda m: len(m.registrations) == 1, 15)
        master.script = ["down"] * 3  # after a success: the count starts again
        master.forget_once = True  # the next heartbeat sends it back to registering
        assert master.wait_for(lambda m: len(m.registrations) == 2, 15)
    finally:
        member.stop()
    lines = _retries(said)
    # Before: tries 5-7 (the store failing) were never said, as 5, 6, 7 are not powers of 2.
    assert lines[:4] == [(down, 1), (down, 2), (down, 4), (store, 5)], said
    assert lines[4:] == [(down, 1), (down, 2)], said
    assert sum("registered with master" in x for x in said) == 2, said


def _deliver(port: int, report: mw.TaskStatusReport) -> bool:
    """Send one report with the worker's own Reporter; True once it was acknowledged."""
    channel = rpc.channel(f"127.0.0.1:{port}")
    reporter = Reporter(channel, name="w-qa7", backoff_initial=0.05, backoff_cap=0.1)
    reporter.start()
    try:
        reporter.submit(report)
        return reporter.flush(10)
    finally:
        reporter.stop()
        channel.close()


def test_a_report_the_master_could_not_store_is_retried_and_names_the_store(fake, capsys):
    master, port = fake
    master.store_reports = 2
    report = mw.TaskStatusReport(
        worker_id="w-qa7", task_id="t-1", attempt=1, state=state_to_pb(TaskState.SUCCEEDED)
    )
    assert _deliver(port, report)  # acknowledged once the store works again
    assert [r.task_id for r in master.reports] == ["t-1"] and master.store_reports == 0
    out = capsys.readouterr().out
    assert f"(the master cannot use its store: {FULL})" in out, out
    assert "(UNAVAILABLE)" not in out, out


def test_a_lost_connection_is_still_named_by_its_code(fake, capsys):
    master, port = fake
    master.fail_reports = 1
    assert _deliver(port, mw.TaskStatusReport(worker_id="w-qa7", task_id="t-2", attempt=1))
    out = capsys.readouterr().out
    assert "report task t-2 attempt 1 UNSPECIFIED not delivered (UNAVAILABLE)" in out, out
