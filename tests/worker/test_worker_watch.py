"""EngineWatch (worker/watch.py): how long the engine has gone without answering,
from scripted pings and a hand-moved clock. The real hang, through a frozen socket
proxy, is tests/faults/test_docker_hung.py."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest

from cloudai.errors import Unavailable
from cloudai.worker.engine import EngineConnection
from cloudai.worker.watch import EngineWatch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _watch(answers: list[str], clock: Clock, said: list[str], took: float = 0.0) -> EngineWatch:
    """A watch whose pings answer `answers` in turn, each taking `took` seconds."""

    def probe() -> str:
        clock.now += took
        return answers.pop(0)

    return EngineWatch(probe, said.append, silent_s=15.0, clock=clock)


def test_silence_counts_from_the_first_unanswered_ping():
    clock, said = Clock(), []
    watch = _watch(["", "timed out", "timed out", ""], clock, said, took=5.0)
    watch.probe_once()
    assert watch.silent_for() == 0.0 and watch.answering() and watch.cause() == ""
    clock.now += 5
    watch.probe_once()  # began at 1010, failed at 1015
    assert watch.silent_for() == 5.0 and watch.cause() == "timed out"
    assert watch.answering() and said == []
    clock.now += 5
    watch.probe_once()  # began at 1020: still counted from 1010
    assert watch.silent_for() == 15.0 and not watch.answering()
    assert said == [
        "the Docker engine has not answered for 15s (timed out); new tasks are refused "
        "until it does, and running ones given up after the engine grace"
    ]
    clock.now += 5
    watch.probe_once()
    assert watch.silent_for() == 0.0 and watch.answering() and watch.cause() == ""
    assert said[-1] == "the Docker engine answers again, after 25s"


def test_a_short_silence_is_not_reported_and_not_said_to_be_over():
    clock, said = Clock(), []
    watch = _watch(["connection refused", ""], clock, said, took=1.0)
    watch.probe_once()
    assert watch.silent_for() == 1.0 and watch.cause() == "connection refused"
    watch.probe_once()
    assert watch.silent_for() == 0.0 and said == []


def test_silence_is_said_once_however_long_it_lasts():
    clock, said = Clock(), []
    watch = _watch(["timed out"] * 6, clock, said, took=5.0)
    for _ in range(6):
        watch.probe_once()
        clock.now += 5
    assert watch.silent_for() == 60.0 and len(said) == 1


def test_an_unstarted_watch_counts_the_engine_as_answering():
    watch = EngineWatch(lambda: "timed out", lambda _t: None)
    assert watch.silent_for() == 0.0 and watch.answering()


def test_the_watch_thread_pings_until_stopped():
    pings = []
    watch = EngineWatch(lambda: pings.append(1) or "", lambda _t: None, every=0.01)
    watch.start()
    time.sleep(0.3)
    watch.stop()
    time.sleep(0.05)
    seen = len(pings)
    time.sleep(0.1)
    assert seen >= 5 and len(pings) == seen


@pytest.fixture
def hung_engine(tmp_path, monkeypatch):
    """DOCKER_HOST at a real socket that accepts connections and answers nothing, as a
    hung dockerd, with the engine's short timeouts cut to 0.5 s."""
    monkeypatch.setattr("cloudai.worker.engine.PROBE_TIMEOUT_S", 0.5)
    monkeypatch.setattr("cloudai.worker.engine.CHECK_TIMEOUT_S", 0.5)
    path = str(tmp_path / "hung.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    yield path
    listener.close()


def test_a_ping_to_an_engine_that_never_answers_times_out(hung_engine):
    """The ping gives up after its short timeout instead of the client's 60 s."""
    began = time.monotonic()
    assert EngineConnection().ping() == "timed out"
    assert time.monotonic() - began < 5.0


def test_a_worker_starting_on_a_hung_engine_says_so_in_seconds(hung_engine):
    began = time.monotonic()
    with pytest.raises(Unavailable, match="cannot reach the Docker engine at unix://.*: timed out"):
        EngineConnection().check()
    assert time.monotonic() - began < 5.0
