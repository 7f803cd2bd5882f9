"""Fuzzing the servicers in process with hypothesis over generated protobuf messages.

Every request message is generated from its descriptor: random field values, huge
strings, control characters, NaN and infinities, out-of-range and invalid enum
numbers, nested messages and maps. A pool of *valid* ids (registered workers, queued
tasks) is mixed in so the fuzzer also gets past validation into the logic.

The only outcomes allowed:
- OK;
- INVALID_ARGUMENT (a malformed or out-of-bounds field);
- NOT_FOUND (a well-formed id that names no task or worker);
- FAILED_PRECONDITION (a valid request in the wrong state: cancelling a finished task,
  pinning to a worker that is not active);
- RESOURCE_EXHAUSTED (a size limit);
- ALREADY_EXISTS (registering a worker id that a live worker holds elsewhere).
Never INTERNAL or UNKNOWN, never an exception out of a handler, and no unbounded
memory growth (RSS is measured before and after). The case counts are printed.
"""

from __future__ import annotations

import gc
import os
from collections import Counter

import grpc
import psutil
import pytest
from google.protobuf.descriptor import FieldDescriptor as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudai.model import Resources, TaskSpec
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_agent_pb2 as apb
from cloudai.proto import master_worker_pb2 as mw
from cloudai.worker.logs import LogStream
from cloudai.worker.service import WorkerServicer
from tests.master.harness import GiB, make_harness

EXAMPLES = int(os.environ.get("CLOUDAI_FUZZ_EXAMPLES", "300"))
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ALREADY_EXISTS,
}
MAX_RSS_GROWTH = 200 * 1024**2
CASES: Counter[str] = Counter()
OUTCOMES: Counter[str] = Counter()
POOL = ["w1", "w2", "worker-1", "t-1", "alpine", "cloudai/sample-task:latest", "zone", "a"]


# -- message generation from descriptors ------------------------------------------------------

_huge = st.integers(1_000, 300_000).map(lambda n: "x" * n)
_nasty = st.sampled_from(
    ["", " ", "\x00", "\x1b[2J", "../../etc/passwd", "a" * 64, "A=B", "é", "😀", "-", "."]
)
_strings = st.one_of(st.text(max_size=40), _nasty, _huge, st.sampled_from(POOL))
_doubles = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -1.0, 0.5, 1.0, 4.0, 1e308, -0.0]),
)
_SCALARS = {
    F.TYPE_STRING: _strings,
    F.TYPE_BYTES: st.binary(max_size=64),
    F.TYPE_BOOL: st.booleans(),
    F.TYPE_DOUBLE: _doubles,
    F.TYPE_FLOAT: st.floats(width=32, allow_nan=True, allow_infinity=True),
    F.TYPE_INT32: st.one_of(st.integers(-(2**31), 2**31 - 1), st.integers(-2, 3)),
    F.TYPE_INT64: st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-2, 3 * GiB)),
    F.TYPE_UINT32: st.integers(0, 2**32 - 1),
    F.TYPE_UINT64: st.integers(0, 2**64 - 1),
    # Invalid enum numbers too: proto3 enums are open, a client may send anything.
    F.TYPE_ENUM: st.integers(-3, 12),
}


def scalar(field) -> st.SearchStrategy:
    return _SCALARS[field.type]


@st.composite
def messages(draw, cls, depth: int = 0):
    msg = cls()
    for field in cls.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        _fill(draw, msg, field, depth)
    return msg


def _fill(draw, msg, field, depth: int) -> None:
    target = getattr(msg, field.name)
    is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
    if is_map:
        key_f, value_f = field.message_type.fields
        keys = draw(st.lists(scalar(key_f), max_size=4))
        for key in keys:
            if value_f.type == F.TYPE_MESSAGE:
                target[key].CopyFrom(draw(messages(value_f.message_type._concrete_class, 9)))
            else:
                target[key] = draw(scalar(value_f))
    elif field.is_repeated:
        if field.type == F.TYPE_MESSAGE:
            if depth < 3:
                for item in draw(st.lists(messages(field.message_type._concrete_class, depth + 1),
                                          max_size=3)):  # fmt: skip
                    target.add().CopyFrom(item)
        else:
            target.extend(draw(st.lists(scalar(field), max_size=4)))
    elif field.type == F.TYPE_MESSAGE:
        if depth < 3:
            target.CopyFrom(draw(messages(field.message_type._concrete_class, depth + 1)))
    else:
        setattr(msg, field.name, draw(scalar(field)))


@st.composite
def mutated(draw, template):
    """A valid request with one or two fields replaced by random values, so the fuzzer
    also reaches the logic behind validation."""
    msg = type(template)()
    msg.CopyFrom(template)
    _mutate(draw, msg, 0)
    return msg


def _mutate(draw, msg, depth: int) -> None:
    fields = list(msg.DESCRIPTOR.fields)
    for field in draw(st.lists(st.sampled_from(fields), min_size=1, max_size=2)):
        nested = field.type == F.TYPE_MESSAGE and not field.is_repeated
        if nested and depth < 3 and msg.HasField(field.name) and draw(st.booleans()):
            _mutate(draw, getattr(msg, field.name), depth + 1)
        else:
            msg.ClearField(field.name)
            _fill(draw, msg, field, depth)


def requests(cls, template=None) -> st.SearchStrategy:
    return st.one_of(messages(cls), mutated(template)) if template is not None else messages(cls)


def templates() -> dict[str, object]:
    """One valid request per RPC (the pool's last task is queued and stays so)."""
    task = POOL[-1]
    spec = pb.TaskSpec(
        image="alpine", resources=pb.Resources(cpu=1, memory_bytes=GiB), selector={"zone": "b"}
    )
    return {
        "Cluster.SubmitTask": cpb.SubmitTaskRequest(spec=spec),
        "Cluster.GetTask": cpb.GetTaskRequest(task_id=task),
        "Cluster.ListTasks": cpb.ListTasksRequest(limit=10, states=[1]),
        "Cluster.CancelTask": cpb.CancelRequest(task_id=task),
        "Cluster.StreamLogs": cpb.LogsRequest(task_id=task, tail_lines=5),
        "Cluster.Explain": cpb.ExplainRequest(task_id=task),
        "Cluster.DrainWorker": cpb.DrainRequest(worker_id="w2", undrain=True),
        "MasterWorker.RegisterWorker": mw.RegisterWorkerRequest(
            worker_id="w3",
            address="127.0.0.1:9",
            capacity=pb.Resources(cpu=2, memory_bytes=GiB),
            telemetry=pb.Telemetry(cpu_percent=5),
        ),
        "MasterWorker.SendHeartbeat": mw.HeartbeatRequest(
            worker_id="w1", telemetry=pb.Telemetry(cpu_percent=5)
        ),
        "MasterWorker.ReportTaskStatus": mw.TaskStatusReport(
            worker_id="w1", task_id=task, attempt=1, state=3
        ),
        "MasterAgent.WatchSchedulingWork": apb.WatchRequest(agent_id="fuzz"),
        "MasterAgent.SubmitPlacements": apb.PlacementBatch(
            agent_id="fuzz", decisions=[apb.Decision(task_id=task, attempt=0, worker_id="w1")]
        ),
        "Worker.AssignTask": mw.AssignTaskRequest(task_id="t-1", attempt=1, spec=spec),
        "Worker.AssignTasks": mw.AssignTasksRequest(
            assignments=[mw.AssignTaskRequest(task_id="t-2", attempt=1, spec=spec)]
        ),
        "Worker.CancelTask": mw.CancelTaskRequest(task_id="t-1", attempt=1),
        "Worker.GetTaskLogs": mw.GetTaskLogsRequest(task_id="t-1", tail_lines=2),
    }


# -- calling a handler in process -----------------------------------------------------------------


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


class FakeContext:
    """Enough of grpc.ServicerContext; abort raises, streams end at once."""

    def __init__(self) -> None:
        self._code: grpc.StatusCode | None = None

    def abort(self, code, details):
        self._code = code
        raise Aborted(code, details)

    def code(self):
        return self._code

    def is_active(self) -> bool:
        return False

    def add_callback(self, callback) -> bool:
        return True

    def peer(self) -> str:
        return "fuzz"

    def invocation_metadata(self):
        return ()

    def auth_context(self):
        return {}


def outcome(handler, request) -> grpc.StatusCode:
    context = FakeContext()
    try:
        result = handler(request, context)
        if hasattr(result, "__next__"):
            for _ in zip(range(5), result, strict=False):
                pass
    except Aborted as err:
        return err.code
    return grpc.StatusCode.OK


def check(name: str, handler, request) -> None:
    code = outcome(handler, request)  # any other exception fails the test as a crash
    CASES[name] += 1
    OUTCOMES[code.name] += 1
    assert code in ALLOWED, f"{name} ended {code.name} for {request!r:.500}"


# -- the targets -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    h = make_harness(tmp_path_factory.mktemp("fuzz"), max_worker_cpu=64)
    for worker_id in ("w1", "w2"):
        h.add_worker(worker_id, labels={"zone": "a"})
    from cloudai.convert import spec_to_pb

    for _ in range(3):
        spec = TaskSpec(image="alpine", resources=Resources(cpu=1), selector={"zone": "b"})
        POOL.append(h.cluster.SubmitTask(cpb.SubmitTaskRequest(spec=spec_to_pb(spec))).task_id)
    yield h
    h.close()


def _servicers(h):
    from cloudai.master.servicers import ClusterServicer, MasterAgentServicer, MasterWorkerServicer

    return (
        ClusterServicer(h.master),
        MasterWorkerServicer(h.master),
        MasterAgentServicer(h.master),
    )


MASTER_TARGETS = [
    ("Cluster.SubmitTask", 0, cpb.SubmitTaskRequest),
    ("Cluster.GetTask", 0, cpb.GetTaskRequest),
    ("Cluster.ListTasks", 0, cpb.ListTasksRequest),
    ("Cluster.CancelTask", 0, cpb.CancelRequest),
    ("Cluster.StreamLogs", 0, cpb.LogsRequest),
    ("Cluster.Explain", 0, cpb.ExplainRequest),
    ("Cluster.ListWorkers", 0, cpb.ListWorkersRequest),
    ("Cluster.GetStatus", 0, cpb.StatusRequest),
    ("Cluster.DrainWorker", 0, cpb.DrainRequest),
    ("MasterWorker.RegisterWorker", 1, mw.RegisterWorkerRequest),
    ("MasterWorker.SendHeartbeat", 1, mw.HeartbeatRequest),
    ("MasterWorker.ReportTaskStatus", 1, mw.TaskStatusReport),
    ("MasterAgent.WatchSchedulingWork", 2, apb.WatchRequest),
    ("MasterAgent.SubmitPlacements", 2, apb.PlacementBatch),
]

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases on every CI run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


def fuzz(name: str, handler, request_cls) -> None:
    @FUZZ
    @given(request=requests(request_cls, templates().get(name)))
    def run(request):
        check(name, handler, request)

    run()


@pytest.mark.parametrize(
    "name, which, request_cls", MASTER_TARGETS, ids=[t[0] for t in MASTER_TARGETS]
)
def test_master_servicers_survive_hostile_messages(master, name, which, request_cls):
    servicer = _servicers(master)[which]
    fuzz(name, getattr(servicer, name.split(".")[1]), request_cls)


class FakeNode:
    """The worker servicer's view of its node: accepts, finds nothing, has no logs."""

    def assign(self, task_id, attempt, spec):
        return True, "accepted"

    def cancel(self, task_id, attempt, reason=""):
        return False

    def logs(self, task_id, attempt, follow, tail):
        return LogStream(text=f"log of {task_id}\n" * 3)


WORKER_TARGETS = [
    ("Worker.AssignTask", mw.AssignTaskRequest),
    ("Worker.AssignTasks", mw.AssignTasksRequest),
    ("Worker.CancelTask", mw.CancelTaskRequest),
    ("Worker.GetTaskLogs", mw.GetTaskLogsRequest),
]


@pytest.mark.parametrize("name, request_cls", WORKER_TARGETS, ids=[t[0] for t in WORKER_TARGETS])
def test_worker_servicer_survives_hostile_messages(name, request_cls):
    fuzz(name, getattr(WorkerServicer(FakeNode()), name.split(".")[1]), request_cls)


def test_memory_stays_bounded_under_fuzzing(master, capsys):
    """A second round of the heaviest targets: RSS may not keep growing."""
    cluster, workers, agent = _servicers(master)
    targets = [
        ("Cluster.SubmitTask", cluster.SubmitTask, cpb.SubmitTaskRequest),
        ("MasterWorker.RegisterWorker", workers.RegisterWorker, mw.RegisterWorkerRequest),
        ("MasterWorker.ReportTaskStatus", workers.ReportTaskStatus, mw.TaskStatusReport),
        ("MasterAgent.SubmitPlacements", agent.SubmitPlacements, apb.PlacementBatch),
    ]
    gc.collect()
    before = psutil.Process().memory_info().rss
    for name, handler, cls in targets:
        fuzz(name, handler, cls)
    gc.collect()
    growth = psutil.Process().memory_info().rss - before
    total = sum(CASES.values())
    with capsys.disabled():
        print(f"\n[fuzz] {total} cases over {len(CASES)} RPCs; outcomes {dict(OUTCOMES)}")
        print(f"[fuzz] RSS growth over the last round: {growth / 1024**2:.1f} MiB")
    assert growth < MAX_RSS_GROWTH
    assert total >= EXAMPLES * 10  # the counts above are real runs, not skipped ones
    assert {"OK", "INVALID_ARGUMENT"} <= set(OUTCOMES)  # it got past validation too
