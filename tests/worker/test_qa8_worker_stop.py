"""QA pass 8: a worker stopped with SIGTERM while its master hangs (accepts
connections, never answers: SIGSTOPped, wedged) took 11 s to exit, past `docker
stop`'s 10 s before SIGKILL: after its 3 s flush, the reporter waited out the 5 s
deadline of the report in flight. Real gRPC over loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from cloudai.proto import master_worker_pb2 as mw
from cloudai.worker.reporter import Reporter
from tests.worker.fake_master import FakeMaster


class HungMaster(FakeMaster):
    """Takes reports and never answers them (until released)."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.received = threading.Event()

    def ReportTaskStatus(self, request, context):  # noqa: N802 - gRPC naming
        self.received.set()
        self.release.wait(30)
        return super().ReportTaskStatus(request, context)


@pytest.fixture
def hung() -> Iterator[tuple[HungMaster, grpc.Channel]]:
    master = HungMaster()
    port = master.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield master, channel
    master.release.set()
    channel.close()
    master.stop()


def test_stop_does_not_wait_out_a_report_the_master_never_answers(
    hung: tuple[HungMaster, grpc.Channel],
) -> None:
    master, channel = hung
    reporter = Reporter(channel, name="wqa8")
    reporter.start()
    reporter.submit(mw.TaskStatusReport(worker_id="wqa8", task_id="t-qa8", attempt=1))
    assert master.received.wait(5)
    began = time.monotonic()
    left = reporter.stop(flush_timeout=0.2)
    took = time.monotonic() - began
    assert left == 1  # not delivered: the container waits for a restarted worker
    assert took < 1.5, f"stop took {took:.1f}s"
