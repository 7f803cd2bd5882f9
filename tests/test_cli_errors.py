"""The CLI's error contract (README "Commands", DESIGN "Exit status"): bad input, usage
errors included, is one line on stderr and exit 1; exit 2 is kept for a master that
cannot be reached; never a traceback. Most cases run the real `cloudai` command; a
few need a real master process (no Docker), and the streaming ones a real cluster."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from cloudai.cli import views
from cloudai.cli.client import describe_error, master_address
from cloudai.cli.demo import LocalCluster
from cloudai.cli.render import MAX_CELL, box, clip
from cloudai.errors import InvalidArgument
from cloudai.model import Resources, TaskSpec
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import client_pb2_grpc as cpb_grpc
from cloudai.proto import common_pb2 as pb
from cloudai.validation import MIN_MEMORY, parse_address, validate_spec

DOWN = "127.0.0.1:1"  # nothing listens there: input that passes the checks exits 2
SAMPLE_IMAGE = "cloudai/sample-task:latest"


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    base = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
    return subprocess.run(
        [sys.executable, "-m", "cloudai", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, **(env or {})},
        cwd=cwd,
    )


def one_line_error(out: subprocess.CompletedProcess, code: int = 1) -> str:
    """The single `cloudai: ...` line the command failed with, exit status `code`."""
    assert out.returncode == code, out
    assert "Traceback" not in out.stderr and out.stdout == "", out
    [line] = out.stderr.splitlines()
    assert line.startswith("cloudai: "), line
    return line


# --- usage errors: one line, exit 1 (exit 2 means "master unreachable") ---------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["tasks", "--limit", "abc"], "invalid value 'abc' for --limit: expected a valid integer"),
        (["submit", "alpine", "--cpu", "abc"], "invalid value 'abc' for --cpu"),
        (["submit", "alpine", "-x"], "no such option: -x (see cloudai submit --help)"),
        (["tasks", "--bogus"], "no such option: --bogus (see cloudai tasks --help)"),
        (["frob"], "no such command 'frob' (see cloudai --help)"),
        (["submit"], "missing argument"),
        (["sim", "run", "--bogus"], "no such option: --bogus (see cloudai sim run --help)"),
        (["logs"], "missing argument"),
    ],
)
def test_usage_error_is_one_line_and_exit_1(args, message):
    assert message in one_line_error(run(*args))


@pytest.mark.parametrize(
    "args", [["--help"], ["submit", "--help"], ["tasks", "-h"], ["sim", "run", "--help"]]
)
def test_help_still_exits_0(args):
    out = run(*args)
    assert out.returncode == 0 and "Usage" in out.stdout, out


def test_submit_follow_help_says_where_logs_go_with_json():
    out = run("submit", "--help")
    assert "stderr" in out.stdout and "JSON" in out.stdout


# --- ranges and sizes, checked before dialling ----------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["tasks", "--limit", "99999999999"], "--limit must be between 0 and 2147483647"),
        (["tasks", "--limit", "-5"], "--limit must be between 0 and 2147483647"),
        (["logs", "t-1", "--tail", "999999999999"], "--tail must be between 0 and 2147483647"),
        (["logs", "t-1", "--tail", "-1"], "--tail must be between 0 and 2147483647"),
        (["submit", "alpine", "--memory", "10"], "below Docker's minimum of 6 MiB"),
        (["submit", "alpine", "--memory", "5m"], "below Docker's minimum of 6 MiB"),
        (["tasks", "--state", "bogus"], "unknown state 'bogus': use one of pending,"),
    ],
)
def test_out_of_range_is_one_line_before_contacting_the_master(args, message):
    assert message in one_line_error(run(*args, "--master", DOWN))


def test_memory_minimum_is_dockers_and_zero_means_the_default():
    def spec(memory: int) -> TaskSpec:
        return TaskSpec(image="alpine", resources=Resources(memory_bytes=memory))

    assert MIN_MEMORY == 6 * 1024**2
    for ok in (0, MIN_MEMORY, 512 * 1024**2):
        validate_spec(spec(ok))
    for bad in (1, 10, MIN_MEMORY - 1):
        with pytest.raises(InvalidArgument, match="6 MiB"):
            validate_spec(spec(bad))


def test_state_accepts_the_enum_names_json_prints():
    # Accepted: it then fails only for the unreachable master (exit 2).
    out = run("tasks", "--state", "TASK_STATE_SUCCEEDED", "--state", "running", "--master", DOWN)
    assert "cannot reach" in one_line_error(out, 2)


# --- the master's address --------------------------------------------------------------


@pytest.mark.parametrize(
    "address, why",
    [
        ("", "it is empty"),
        ("127.0.0.1:abc", "port 'abc' is not a number from 1 to 65535"),
        (":99999", "the host is missing"),
        ("127.0.0.1:99999", "port '99999'"),
        ("127.0.0.1:0", "port '0'"),
        ("::1", "an IPv6 address goes in brackets"),
        ("grpc://127.0.0.1:50051", "no scheme (grpc://) is taken, only the address"),
        ("[nope]:1", "'nope' in brackets is not an IPv6 address"),
        ("a b:1", "'a b' is not a host name"),
    ],
)
def test_bad_master_address_is_one_line_exit_1(address, why):
    line = one_line_error(run("status", "--master", address))
    assert f"bad --master address {address!r}: {why}" in line
    assert "HOST:PORT" in line


def test_bad_master_address_from_the_environment_says_where_it_came_from():
    line = one_line_error(run("workers", env={"CLOUDAI_MASTER": "localhost:port"}))
    assert "bad --master address 'localhost:port' (from CLOUDAI_MASTER or .env)" in line


@pytest.mark.parametrize(
    "given, target",
    [
        ("127.0.0.1", "127.0.0.1:50051"),
        ("master.example.com", "master.example.com:50051"),
        ("10.0.0.1:7000", "10.0.0.1:7000"),
        ("[::1]", "[::1]:50051"),
        ("[::1]:7000", "[::1]:7000"),
        (" localhost:1 ", "localhost:1"),
    ],
)
def test_address_without_a_port_uses_the_default_master_port(given, target):
    assert parse_address(given) == target
    assert master_address(given)[0] == target


def test_address_without_port_dials_50051():
    out = run("status", "--master", "127.0.0.1")
    assert out.returncode in (0, 2), out  # 0 if a master happens to serve on 50051
    assert out.returncode == 0 or "127.0.0.1:50051" in out.stderr


@pytest.mark.parametrize("process", ["worker", "agent"])
@pytest.mark.parametrize(
    "address, why",
    [
        ("a b:x", "'a b' is not a host name"),
        ("127.0.0.1:99999", "port '99999'"),
        ("::1", "an IPv6 address goes in brackets"),
    ],
)
def test_worker_and_agent_check_their_master_address(process, address, why):
    """Refused before the worker binds its port or touches Docker."""
    port = ["--port", "0"] if process == "worker" else []
    line = one_line_error(run(process, "--master", address, *port))
    assert f"bad --master address {address!r}: {why}" in line


@pytest.mark.parametrize("process", ["worker", "agent"])
def test_worker_and_agent_name_an_address_from_the_environment(process):
    line = one_line_error(run(process, env={"CLOUDAI_MASTER": "localhost:port"}))
    assert "bad --master address 'localhost:port' (from CLOUDAI_MASTER or .env)" in line


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cpu", "-2"], "invalid --cpu -2: use a number >= 0"),
        (["--gpu", "-0.5"], "invalid --gpu -0.5: use a number >= 0"),
        (["--cpu", "nan"], "invalid --cpu nan"),
        (["--memory", "-1g"], "invalid size '-1g'"),
    ],
)
def test_worker_refuses_negative_capacity_caps(args, message):
    """A negative cap used to advertise the whole machine."""
    line = one_line_error(run("worker", "--port", "0", "--master", DOWN, *args))
    assert message in line


def test_worker_refuses_a_negative_cap_from_the_environment():
    line = one_line_error(run("worker", "--port", "0", env={"CLOUDAI_CPU": "-2"}))
    assert "invalid cpu '-2': Input should be greater than or equal to 0" in line
    line = one_line_error(run("master", "--port", "0", "--agent-timeout", "nan"))
    assert "invalid agent_timeout nan: Input should be greater than 0" in line


def test_a_grpc_server_that_is_not_a_master_is_named_so():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        line = one_line_error(run("status", "--master", f"127.0.0.1:{port}"), 2)
    finally:
        server.stop(0)
    assert line == (
        f"cloudai: 127.0.0.1:{port} is not a CloudAI master (it does not serve the client API)"
    )


# --- against a real master (no workers, no Docker) ---------------------------------------


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    cluster = LocalCluster(tmp_path_factory.mktemp("cli-master"))
    cluster.start_master()
    try:
        cluster.wait_for(lambda: cluster.client().call("GetStatus", cpb.StatusRequest()), 30, "up")
        yield cluster.address
    finally:
        cluster.stop()


def test_dot_env_gives_the_master_after_flag_and_environment(master, tmp_path):
    (tmp_path / ".env").write_text(f"CLOUDAI_MASTER={master}\n")
    out = run("status", "--json", cwd=tmp_path)
    assert out.returncode == 0, out
    assert json.loads(out.stdout)["version"]
    # The environment comes before .env, and the flag before both.
    line = one_line_error(run("status", cwd=tmp_path, env={"CLOUDAI_MASTER": DOWN}), 2)
    assert f"at {DOWN}" in line
    out = run("status", "--master", master, cwd=tmp_path, env={"CLOUDAI_MASTER": DOWN})
    assert out.returncode == 0, out


def test_master_errors_lose_the_grpc_status_prefix(master):
    line = one_line_error(run("cancel", "t-nope", "--master", master))
    assert line == "cloudai: no task 't-nope'"


def test_state_names_from_json_are_accepted_by_a_master(master):
    out = run("tasks", "--state", "TASK_STATE_SUCCEEDED", "--master", master, "--json")
    assert out.returncode == 0 and json.loads(out.stdout) == [], out


def test_master_rejects_memory_below_dockers_minimum_from_any_client(master):
    stub = cpb_grpc.ClusterStub(grpc.insecure_channel(master))
    spec = pb.TaskSpec(image="alpine", resources=pb.Resources(memory_bytes=10))
    with pytest.raises(grpc.RpcError) as err:
        stub.SubmitTask(cpb.SubmitTaskRequest(spec=spec), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "6 MiB" in err.value.details()


# --- rendering ----------------------------------------------------------------------------


def test_long_cells_are_clipped_in_tables_never_in_json():
    command = "x" * 100_000
    task = pb.Task(id="t-1", spec=pb.TaskSpec(image="alpine", command=["echo", command]))
    for text in (views.task_panel(task), views.tasks_table([task])):
        assert max(map(len, text.splitlines())) < 200
    assert "…" in views.task_panel(task)
    assert command in views.to_json(task)
    assert clip("a\nb\x1b[2J") == "a\\nb\\x1b[2J"  # no raw newlines or terminal escapes
    row = box("T", ["A"], [["y" * 500]]).splitlines()[-2]
    assert len(row) == MAX_CELL + 4 and row.rstrip(" │").endswith("…")


def test_json_writes_64_bit_integers_as_numbers_at_any_depth():
    """The proto3 JSON mapping would write them as strings ("8589934592")."""
    task = pb.Task(id="t-1", peak_memory_bytes=2**40 + 1, spec=pb.TaskSpec(image="alpine"))
    task.spec.resources.memory_bytes = 8 * 2**30
    task.spec.env["N"] = "7"
    task.attempts.add(number=1, peak_memory_bytes=123)
    task.attempts.add(number=2)
    shown = json.loads(views.to_json({"tasks": [task]}))["tasks"][0]
    assert shown["peak_memory_bytes"] == 2**40 + 1
    assert shown["spec"]["resources"]["memory_bytes"] == 8 * 2**30
    assert [a["peak_memory_bytes"] for a in shown["attempts"]] == [123, 0]
    assert shown["spec"]["env"] == {"N": "7"} and shown["created_at"] == 0.0


def test_attempts_without_an_exit_code_show_a_dash():
    attempts = [
        pb.Attempt(number=1, worker_id="w1", reason="docker_error"),
        pb.Attempt(number=2, worker_id="w1", reason="pull_failed"),
        pb.Attempt(number=3, worker_id="w1", reason="nonzero_exit", exit_code=3),
        pb.Attempt(number=4, worker_id="w1", reason="completed"),
    ]
    text = views.task_panel(pb.Task(id="t-1", attempts=attempts))
    lines = {n: next(ln for ln in text.splitlines() if f"attempt {n} " in ln) for n in (1, 2, 3, 4)}
    assert "exit=- docker_error" in lines[1] and "exit=- pull_failed" in lines[2]
    assert "exit=3 nonzero_exit" in lines[3] and "exit=0 completed" in lines[4]


class _RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def test_tls_hint_only_before_any_data_arrived():
    closed = _RpcError(grpc.StatusCode.UNAVAILABLE, "Socket closed")
    assert "tls" in describe_error(closed, "h:1").lower()
    after_data = describe_error(closed, "h:1", streamed=True)
    assert "lost the connection" in after_data and "tls" not in after_data.lower()
    bad = _RpcError(grpc.StatusCode.FAILED_PRECONDITION, "task t-1 is already SUCCEEDED")
    assert describe_error(bad, "h:1") == "task t-1 is already SUCCEEDED"


# --- streaming against a real cluster (Docker) --------------------------------------------


@pytest.fixture
def cluster(tmp_path):
    from tests.dockerkit import require_docker
    from tests.worker.workerkit import remove_worker_containers

    client = require_docker(SAMPLE_IMAGE, timeout=10)
    worker_id = f"cli-{uuid.uuid4().hex[:8]}"  # its containers are this test's alone
    c = LocalCluster(tmp_path)
    c.start_master()
    c.start_worker(worker_id)
    try:
        c.wait_for(lambda: c.active_workers() == 1, 60, "a worker")
        yield c
    finally:
        c.stop()
        remove_worker_containers(client, worker_id)  # a master killed mid-task leaves one


@pytest.mark.docker
@pytest.mark.slow
def test_submit_follow_json_keeps_stdout_one_json_document(cluster):
    out = run("submit", SAMPLE_IMAGE, "--follow", "--json", "--master", cluster.address)
    assert out.returncode == 0, out
    task = json.loads(out.stdout)
    assert task["state"] == "TASK_STATE_SUCCEEDED"
    assert "Task completed successfully" in out.stderr  # the streamed logs
    # The id comes first, on stderr, so that the task can be cancelled meanwhile.
    assert out.stderr.splitlines()[0] == f"✓ submitted {task['id']}"


@pytest.mark.docker
@pytest.mark.slow
def test_master_dying_mid_stream_gives_no_tls_hint(cluster):
    loop = "import time\nfor i in range(40): print(i, flush=True); time.sleep(0.5)"
    submitted = run("submit", SAMPLE_IMAGE, "--json", "--master", cluster.address, "--",
                    "python3", "-c", loop)  # fmt: skip
    task_id = json.loads(submitted.stdout)["id"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDAI_")}
    base["CLOUDAI_RECONNECT"] = "0"  # no waiting for a restart (tests/faults/test_client_reconnect)
    follow = subprocess.Popen(
        [sys.executable, "-m", "cloudai", "logs", task_id, "--follow", "--master", cluster.address],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base,
    )  # fmt: skip
    try:
        assert follow.stdout.readline().strip() == "0"  # the stream is delivering
        cluster.procs["master"].send_signal(signal.SIGKILL)
        _, err = follow.communicate(timeout=60)
    finally:
        follow.kill()
    assert follow.returncode == 2, err
    [line] = err.splitlines()
    assert "lost the connection to the CloudAI master" in line and "TLS" not in line


def test_a_size_or_duration_too_long_for_a_float_is_out_of_range_not_a_crash():
    from cloudai.validation import parse_duration, parse_size

    huge = "9" * 400  # float() of it is inf
    for parse, what in ((parse_size, "0 to 16 TiB"), (parse_duration, "0 to 30 days")):
        with pytest.raises(InvalidArgument) as err:
            parse(huge)
        msg = str(err.value)
        assert msg.endswith(f"is out of range ({what})") and len(msg) < 100
    with pytest.raises(InvalidArgument, match="out of range"):
        parse_size(huge + "g")
    assert parse_size("16TiB") == 16 * 1024**4 and parse_size("1.5k") == 1536
