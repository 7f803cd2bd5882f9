"""Pure pieces of the worker, no engine needed: outcome mapping, log tails, limits,
container naming, telemetry."""

from __future__ import annotations

import pytest

from cloudai.model import Reason, Resources, TaskSpec, TaskState
from cloudai.worker import containers as ct
from cloudai.worker import telemetry
from cloudai.worker.logs import LogTail, decode_chunks, last_lines
from cloudai.worker.outcome import (
    Outcome,
    finished_outcome,
    pull_outcome,
    readopted_outcome,
    start_failure_message,
)
from tests.worker.workerkit import make_settings

MiB = 1024**2


@pytest.mark.parametrize(
    ("error", "reason", "cause"),
    [
        (
            "manifest for 127.0.0.1:5000/x:1 not found: manifest unknown",
            Reason.IMAGE_NOT_FOUND,
            "manifest unknown",
        ),
        (
            "pull access denied for nope/x, repository does not exist or may require "
            "'docker login'",
            Reason.IMAGE_NOT_FOUND,
            "repository does not exist",
        ),
        (
            'Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io '
            "on 10.0.0.53:53: no such host",
            Reason.PULL_FAILED,
            "registry unreachable (no such host)",
        ),
        (
            'Get "http://127.0.0.1:5999/v2/": dial tcp 127.0.0.1:5999: connect: connection refused',
            Reason.PULL_FAILED,
            "registry unreachable (connection refused)",
        ),
        ("toomanyrequests: rate limit", Reason.PULL_FAILED, "toomanyrequests"),
    ],
)
def test_pull_errors_are_named_and_name_the_image(error: str, reason: Reason, cause: str) -> None:
    out = pull_outcome("reg/img:1", error, 1.0)
    assert (out.state, out.reason, out.exit_code) == (TaskState.FAILED, reason, None)
    assert "reg/img:1" in out.message and cause in out.message


@pytest.mark.parametrize(
    ("state", "killed_for", "expected"),
    [
        ({"ExitCode": 0}, None, (TaskState.SUCCEEDED, 0, Reason.COMPLETED)),
        ({"ExitCode": 2}, None, (TaskState.FAILED, 2, Reason.NONZERO_EXIT)),
        ({"ExitCode": 137, "OOMKilled": True}, None, (TaskState.FAILED, 137, Reason.OOM_KILLED)),
        ({"ExitCode": 137}, Reason.TIMEOUT, (TaskState.TIMED_OUT, 137, Reason.TIMEOUT)),
        ({"ExitCode": 137}, Reason.CANCELLED, (TaskState.CANCELLED, 137, Reason.CANCELLED)),
        # Our own kill explains an OOM flag raised while dying, not the other way round.
        (
            {"ExitCode": 137, "OOMKilled": True},
            Reason.CANCELLED,
            (TaskState.CANCELLED, 137, Reason.CANCELLED),
        ),
    ],
)
def test_finished_outcome_mapping(state: dict, killed_for: str | None, expected: tuple) -> None:
    out = finished_outcome(state, killed_for=killed_for, timeout_s=5, memory_limit=32 * MiB)
    assert (out.state, out.exit_code, out.reason) == expected


def test_readopted_outcome_takes_dockers_times_and_an_unknown_peak() -> None:
    state = {"StartedAt": "2024-05-01T10:00:00.5Z", "FinishedAt": "2024-05-01T10:00:25.5Z"}
    seen = Outcome(TaskState.SUCCEEDED, 0, Reason.COMPLETED, started_at=1.0, finished_at=99.0)
    out = readopted_outcome(seen, state)
    assert out.finished_at - out.started_at == 25.0
    assert (out.peak_memory_bytes, out.peak_known) == (0, False)
    sampled = Outcome(TaskState.SUCCEEDED, 0, Reason.COMPLETED, peak_memory_bytes=5 * MiB)
    never_ended = {"StartedAt": state["StartedAt"], "FinishedAt": "0001-01-01T00:00:00Z"}
    out = readopted_outcome(sampled, never_ended)
    assert (out.started_at, out.peak_known) == (0.0, True)  # times left as they were


def test_start_failure_message_keeps_the_actionable_part() -> None:
    text = (
        "failed to create shim task: OCI runtime create failed: runc create failed: unable "
        'to start container process: exec: "nope": executable file not found in $PATH: unknown'
    )
    assert start_failure_message(text) == (
        'cannot start: exec: "nope": executable file not found in $PATH'
    )


def test_log_tail_keeps_the_end_within_the_limit_and_says_it_was_cut() -> None:
    tail = LogTail(limit=200)
    for i in range(50):
        tail.feed(f"line {i}\n".encode())
    text = tail.text()
    assert text.endswith("line 49\n") and len(text.encode()) <= 200
    mark, first, *_ = text.splitlines()
    assert mark == "[cloudai: earlier output was not kept; the last 200 B follow]"
    assert first.startswith("line ")  # the partial first line was dropped
    assert text.splitlines()[1:] == [f"line {i}" for i in range(int(first[5:]), 50)]


def test_log_tail_untruncated_is_verbatim() -> None:
    tail = LogTail(limit=100)
    tail.feed(b"a\n")
    tail.feed(b"b")
    assert tail.text() == "a\nb"


def test_decode_chunks_handles_split_utf8() -> None:
    data = "✓ done\n".encode()
    assert "".join(decode_chunks([data[:1], data[1:2], data[2:]])) == "✓ done\n"


def test_last_lines() -> None:
    assert last_lines("a\nb\nc\n", 2) == "b\nc\n"
    assert last_lines("a\nb\n", 0) == "a\nb\n"


@pytest.mark.parametrize(
    ("task_id", "name"),
    [("t-abc", "cloudai-t-abc-a1"), ("weird/id:x", "cloudai-weird_id_x-a1")],
)
def test_container_names_are_valid_for_docker(task_id: str, name: str) -> None:
    assert ct.container_name(task_id, 1) == name


def test_limits_default_and_clamp() -> None:
    defaults = {"default_memory": 256 * MiB, "default_cpu": 1.0, "pids_limit": 100}
    none = ct.limits_for(TaskSpec(image="x"), **defaults)
    assert none == ct.Limits(256 * MiB, 1_000_000_000, 100)
    huge = ct.limits_for(TaskSpec(image="x", resources=Resources(cpu=10_000)), **defaults)
    assert 0 < huge.nano_cpus < 10_000 * 1_000_000_000  # clamped to the host's cores


def test_parse_docker_time() -> None:
    assert ct.parse_docker_time("0001-01-01T00:00:00Z") == 0.0
    stamp = ct.parse_docker_time("2024-01-02T03:04:05.123456789Z")
    assert stamp == pytest.approx(1704164645.123456789, abs=1e-5)


def test_machine_capacity_detects_and_caps() -> None:
    real = telemetry.machine_capacity(make_settings())
    assert real.cpu >= 1 and real.memory_bytes > 0 and real.gpu >= 0
    capped = telemetry.machine_capacity(make_settings(cpu=0.5, memory=MiB, gpu=64))
    assert (capped.cpu, capped.memory_bytes, capped.gpu) == (0.5, MiB, real.gpu)
    above = telemetry.machine_capacity(make_settings(cpu=10_000))
    assert above.cpu == real.cpu  # a cap never advertises more than the machine has


def test_telemetry_sample_is_real() -> None:
    sample = telemetry.sample()
    assert sample.memory_total_bytes > sample.memory_used_bytes > 0
    assert 0 <= sample.cpu_percent <= 100 and 0 < sample.memory_percent < 100
    assert sample.disk_free_bytes > 0 and sample.timestamp > 0
    if telemetry.nvidia_smi_path() is None:
        assert list(sample.gpu_util_percent) == []


def test_coalesced_joins_what_has_arrived_and_keeps_order() -> None:
    import threading
    import time

    from cloudai.worker.logs import coalesced

    burst_sent = threading.Event()

    def source():
        yield from (f"{i}\n" for i in range(1000))  # a burst: all there at once
        burst_sent.set()
        time.sleep(0.3)
        yield "late\n"  # alone: it arrives after the reader has taken the burst

    pieces = []
    for piece in coalesced(source(), limit=1_000_000):
        if not pieces:
            burst_sent.wait(5)  # let the whole burst queue up behind the first piece
        pieces.append(piece)
    assert "".join(pieces) == "".join(f"{i}\n" for i in range(1000)) + "late\n"
    assert len(pieces) <= 4 and pieces[-1] == "late\n"
    # No piece runs much past the limit: it closes once it reaches it.
    capped = list(coalesced((f"{i:04}\n" for i in range(1000)), limit=50))
    assert "".join(capped) == "".join(f"{i:04}\n" for i in range(1000))
    assert max(map(len, capped)) <= 50


def test_coalesced_raises_the_source_error_after_what_came_before() -> None:
    from cloudai.worker.logs import coalesced

    def source():
        yield "a\n"
        raise RuntimeError("engine went away")

    got = coalesced(source(), limit=100)
    assert next(got) == "a\n"
    with pytest.raises(RuntimeError, match="engine went away"):
        next(got)


def test_coalesced_reader_that_stops_early_ends_the_pump() -> None:
    import threading
    import time

    from cloudai.worker.logs import coalesced

    def endless():
        while True:
            yield "x\n"

    before = threading.active_count()
    got = coalesced(endless(), limit=10)
    assert next(got).startswith("x\n")
    got.close()  # the reader leaves (the RPC's client went away)
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert threading.active_count() == before
