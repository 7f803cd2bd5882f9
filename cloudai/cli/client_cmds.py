"""Client commands: submit, status, workers, tasks, task, explain, logs, cancel, drain."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from dataclasses import dataclass
from typing import NoReturn, TextIO

import grpc
import typer

from cloudai.convert import spec_to_pb, state_to_pb
from cloudai.errors import InvalidArgument
from cloudai.model import Resources, TaskSpec, TaskState
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.proto import master_agent_pb2 as mapb
from cloudai.validation import parse_duration, parse_pairs, parse_size, validate_spec

from . import views
from .client import Client, connect, fail
from .reconnect import LogFollower, Patience, notice, say

# Not a typer envvar: the address comes from the flag, then CLOUDAI_MASTER, then .env
# (ClientSettings), and is checked before any dialling (client.master_address).
MasterOpt = typer.Option(
    None,
    "--master",
    help="Master address HOST:PORT (else CLOUDAI_MASTER, then .env; localhost:50051).",
)
JsonOpt = typer.Option(False, "--json", help="Machine-readable JSON output.")
INT32_MAX = 2**31 - 1  # --limit and --tail travel as protobuf int32


def register(app: typer.Typer) -> None:
    for fn in (submit, status, workers, tasks, task, explain, logs, cancel, drain):
        app.command(name=fn.__name__)(fn)


def _emit(as_json: bool, message, text: str) -> None:
    print(views.to_json(message) if as_json else text, flush=True)


# `cloudai submit`: the task's resources, environment, placement and hardening.
CommandArg = typer.Argument(None, help="Command and arguments (after --).")
CpuOpt = typer.Option(0.0, "--cpu", help="CPUs requested (fractions allowed).")
MemoryOpt = typer.Option("0", "--memory", help="Memory requested, e.g. 512m, 2g.")
GpuOpt = typer.Option(0.0, "--gpu", help="GPUs requested; fractions below 1, e.g. 0.5.")
EnvOpt = typer.Option(None, "--env", help="Environment variable K=V (repeatable).")
SecretEnvOpt = typer.Option(None, "--secret-env", help="Secret env K=V (kept out of listings).")
PriorityOpt = typer.Option(0, "--priority", help="Queue priority (higher first).")
TimeoutOpt = typer.Option("0", "--timeout", help="Deadline, e.g. 30s, 10m (0 = none).")
RetriesOpt = typer.Option(0, "--retries", help="Retry budget for failed attempts.")
SelectorOpt = typer.Option(None, "--selector", help="Worker label k=v (repeatable).")
PinOpt = typer.Option(None, "--worker", help="Pin to this worker (manual override).")
NameOpt = typer.Option("", "--name", help="Task name.")
DEFAULT_LIST = 1000  # what the master lists for --limit 0
PENDING_NOTE_S = 10.0  # --wait / --follow: say why, once, if it waits this long for a place
WaitOpt = typer.Option(False, "--wait", help="Wait; exit with the task's exit code.")
FollowOpt = typer.Option(
    False,
    "--follow",
    help="Stream the task's logs (with --json to stderr: stdout is one JSON document).",
)
PullOpt = typer.Option(False, "--pull", help="Always pull the image first.")
CapAddOpt = typer.Option(
    None, "--cap-add", help="Linux capability to add (the worker must allow it; repeatable)."
)
ReadOnlyOpt = typer.Option(
    False, "--read-only", help="Read-only root filesystem, with a tmpfs /tmp."
)
UserOpt = typer.Option("", "--user", help="Run as this user, e.g. 1000:1000.")
DryRunOpt = typer.Option(False, "--dry-run", help="Show where it would go; change nothing.")


def submit(
    image: str = typer.Argument(..., help="Container image, e.g. cloudai/sample-task:latest"),
    command: list[str] = CommandArg,
    cpu: float = CpuOpt,
    memory: str = MemoryOpt,
    gpu: float = GpuOpt,
    env: list[str] = EnvOpt,
    secret_env: list[str] = SecretEnvOpt,
    priority: int = PriorityOpt,
    timeout: str = TimeoutOpt,
    retries: int = RetriesOpt,
    selector: list[str] = SelectorOpt,
    worker: str = PinOpt,
    name: str = NameOpt,
    wait: bool = WaitOpt,
    follow: bool = FollowOpt,
    pull: bool = PullOpt,
    cap_add: list[str] = CapAddOpt,
    read_only: bool = ReadOnlyOpt,
    user: str = UserOpt,
    dry_run: bool = DryRunOpt,
    master: str = MasterOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Submit a task. Without --worker the placement agent chooses where it runs."""
    _submit(_SubmitOptions(**locals()))  # locals(): just the options


@dataclass(frozen=True, kw_only=True)
class _SubmitOptions:
    """`cloudai submit`'s arguments and options as given (same names)."""

    image: str
    command: list[str] | None
    cpu: float
    memory: str
    gpu: float
    env: list[str] | None
    secret_env: list[str] | None
    priority: int
    timeout: str
    retries: int
    selector: list[str] | None
    worker: str | None
    name: str
    wait: bool
    follow: bool
    pull: bool
    cap_add: list[str] | None
    read_only: bool
    user: str
    dry_run: bool
    master: str | None
    as_json: bool


def _submit(o: _SubmitOptions) -> None:
    """Check the spec (before contacting the master), submit it and report as asked."""
    spec = _build_spec(o)
    client = connect(o.master)
    req = cpb.SubmitTaskRequest(spec=spec_to_pb(spec), dry_run=o.dry_run)
    resp = client.call("SubmitTask", req)
    if o.dry_run:
        return _emit(o.as_json, resp.decision, _dry_run_text(resp.decision))
    if not (o.wait or o.follow):
        return _emit(o.as_json, resp.task, f"✓ submitted {resp.task_id}")
    _see_through(client, resp.task_id, o.follow, o.as_json)


def _dry_run_text(d: mapb.Decision) -> str:
    """Where the task would go, or why not now and (if known) the smallest fix."""
    if d.worker_id:
        return f"would place on {d.worker_id}: {d.summary}"
    hint = f"\nsmallest change: {d.hint}" if d.hint else ""
    return f"would not place now: {d.summary or 'no worker fits'}{hint}"


def _see_through(client: Client, task_id: str, follow: bool, as_json: bool) -> NoReturn:
    """--wait / --follow: (stream the logs,) wait for the end, exit with the task's code.
    A master that goes away meanwhile is waited for (reconnect.py). The task's id
    goes to stderr at once, --json or not, so that it can be cancelled meanwhile."""
    print(f"✓ submitted {task_id}", file=sys.stderr, flush=True)
    _note_if_still_pending(client, task_id, PENDING_NOTE_S)
    if follow:  # with --json the logs go to stderr: stdout is one JSON document
        LogFollower(client, task_id, 0, sys.stderr if as_json else sys.stdout).run()
    final = _wait_terminal(client, task_id)
    _emit(as_json, final, views.task_panel(final))
    raise typer.Exit(_exit_code(final))


def _note_if_still_pending(client: Client, task_id: str, after: float) -> None:
    """In the background: if the task still waits for a place `after` seconds from
    now, say once on stderr why (from its latest decision) and what would place it."""

    def check() -> None:
        try:
            resp = client.raw_call("Explain", cpb.ExplainRequest(task_id=task_id))
        except grpc.RpcError:  # the wait itself reports a master that went away
            return
        if views.state_name(resp.task.state) != "PENDING" or not resp.decisions:
            return
        d = resp.decisions[0]
        hint = f"; smallest change: {d.hint}" if d.hint else ""
        say(f"still waiting for a place after {after:.0f}s: {d.summary or 'not placed'}{hint}")

    timer = threading.Timer(after, check)
    timer.daemon = True
    timer.start()


def _build_spec(o: _SubmitOptions) -> TaskSpec:
    """The task spec the options describe, validated; a bad value is one line, exit 1."""
    try:
        envs = parse_pairs(o.env, "--env")
        secrets = parse_pairs(o.secret_env, "--secret-env")
        _check_pin_and_env(o.worker, envs, secrets)
        spec = TaskSpec(
            image=o.image,
            command=list(o.command or []),
            env={**envs, **secrets},
            resources=Resources(cpu=o.cpu, memory_bytes=parse_size(o.memory), gpu=o.gpu),
            priority=o.priority,
            timeout_s=parse_duration(o.timeout),
            max_retries=o.retries,
            selector=parse_pairs(o.selector, "--selector"),
            name=o.name,
            pinned_worker=o.worker or "",
            always_pull=o.pull,
            secret_env_keys=sorted(secrets),
            cap_add=list(o.cap_add or []),
            read_only_rootfs=o.read_only,
            user=o.user,
        )
        return validate_spec(spec)
    except InvalidArgument as err:
        fail(str(err))


def _check_pin_and_env(worker: str | None, envs: dict, secrets: dict) -> None:
    """Refuse what would be dropped without a word: an empty --worker (no pin at all,
    the task could go anywhere) and a variable given as --env and as --secret-env."""
    if worker is not None and not worker.strip():
        raise InvalidArgument("--worker is empty: name a worker, or leave --worker out")
    both = sorted(envs.keys() & secrets.keys())
    if both:
        raise InvalidArgument(f"{both[0]!r} is given both as --env and as --secret-env")


def _wait_terminal(client: Client, task_id: str) -> pb.Task:
    """The task once it ended, polled; riding out a master that goes away meanwhile."""
    patience = Patience(client)
    delay = 0.1
    while True:
        t = patience.call("GetTask", cpb.GetTaskRequest(task_id=task_id))
        if views.state_name(t.state) in {s.value for s in TaskState if s.terminal}:
            return t
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def _exit_code(t: pb.Task) -> int:
    """As `docker run`: the task's own exit code; 125 if it never produced one."""
    if views.state_name(t.state) == "SUCCEEDED":
        return 0
    return t.exit_code if t.has_exit_code and t.exit_code != 0 else 125


def _print_logs(client: Client, task_id: str, follow: bool, tail: int, out: TextIO) -> None:
    """The task's logs; followed, until the task ends, across master restarts."""
    if follow:
        return LogFollower(client, task_id, tail, out).run()
    req = cpb.LogsRequest(task_id=task_id, follow=False, tail_lines=tail)
    for chunk in client.stream("StreamLogs", req):
        if chunk.data:
            out.write(chunk.data)
            out.flush()
        notice(chunk)


def _in_range(flag: str, value: int, low: int = 0, high: int = INT32_MAX) -> int:
    if not low <= value <= high:
        fail(f"{flag} must be between {low} and {high}")
    return value


def _states(given: list[str] | None) -> list[int]:
    """--state values: `succeeded`, `SUCCEEDED` or `TASK_STATE_SUCCEEDED` (as --json prints)."""
    states = []
    for text in given or []:
        name = text.strip().upper().removeprefix("TASK_STATE_")
        if name not in TaskState.__members__:
            known = ", ".join(s.value.lower() for s in TaskState)
            fail(f"unknown state {text[:40]!r}: use one of {known}")
        states.append(state_to_pb(TaskState(name)))
    return states


def status(master: str = MasterOpt, as_json: bool = JsonOpt) -> None:
    """Cluster summary: workers, capacity, tasks by state, agent."""
    s = connect(master).call("GetStatus", cpb.StatusRequest())
    _emit(as_json, s, views.status_panel(s))


def workers(master: str = MasterOpt, as_json: bool = JsonOpt) -> None:
    """List workers with capacity, allocation, live load and health."""
    resp = connect(master).call("ListWorkers", cpb.ListWorkersRequest())
    _emit(as_json, list(resp.workers), views.workers_table(list(resp.workers)))


def tasks(
    state: list[str] = typer.Option(
        None, "--state", help="Only tasks in this state, e.g. running (repeatable)."
    ),
    limit: int = typer.Option(100, "--limit", help="At most this many (newest); 0: 1,000."),
    worker: str = typer.Option("", "--worker", help="Only tasks on this worker."),
    master: str = MasterOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List tasks, oldest first: the newest --limit of them.

    The table says when there are more."""
    asked = _in_range("--limit", limit) or DEFAULT_LIST
    # One more than asked tells whether there are more (the master caps at MAX_LIST).
    req = cpb.ListTasksRequest(
        states=_states(state), limit=min(asked + 1, INT32_MAX), worker_id=worker
    )
    got = list(connect(master).call("ListTasks", req).tasks)
    shown = got[-asked:]  # the newest `asked`, oldest first
    more = f"\n(the newest {asked} shown: there are more; --limit N shows more)"
    _emit(as_json, shown, views.tasks_table(shown) + (more if len(got) > asked else ""))


def task(
    task_id: str = typer.Argument(..., help="Task id."),
    master: str = MasterOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show one task: state, attempts, exit code, reason."""
    t = connect(master).call("GetTask", cpb.GetTaskRequest(task_id=task_id))
    _emit(as_json, t, views.task_panel(t))


def explain(
    task_id: str = typer.Argument(..., help="Task id."),
    master: str = MasterOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Why a task runs where it does, or why it is still waiting."""
    resp = connect(master).call("Explain", cpb.ExplainRequest(task_id=task_id))
    _emit(as_json, resp, resp.text)


def logs(
    task_id: str = typer.Argument(..., help="Task id."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the task ends."),
    tail: int = typer.Option(0, "--tail", help="Only the last N lines (0: all)."),
    master: str = MasterOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Print a task's logs (from the worker while it runs, from the store after).

    --follow lasts until the task ends, across retries and lost workers (a note on
    stderr says when an attempt ended), and rides out a master restart."""
    tail = _in_range("--tail", tail)
    if not as_json:
        return _print_logs(connect(master), task_id, follow, tail, sys.stdout)
    text = io.StringIO()
    _print_logs(connect(master), task_id, follow, tail, text)
    print(json.dumps({"task_id": task_id, "logs": text.getvalue()}, indent=2))


def cancel(
    task_id: str = typer.Argument(..., help="Task id."),
    master: str = MasterOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Cancel a queued or running task (its container is killed)."""
    resp = connect(master).call("CancelTask", cpb.CancelRequest(task_id=task_id))
    _emit(as_json, resp, f"✓ {task_id}: {resp.message}")


def drain(
    worker_id: str = typer.Argument(..., help="Worker id."),
    undo: bool = typer.Option(False, "--undo", help="Accept tasks again."),
    master: str = MasterOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Stop placing tasks on a worker; its running tasks finish."""
    resp = connect(master).call("DrainWorker", cpb.DrainRequest(worker_id=worker_id, undrain=undo))
    _emit(as_json, resp.worker, drain_text(worker_id, resp.worker.health, undo))


def drain_text(worker_id: str, health: int, undo: bool) -> str:
    """What a drain did. An inactive worker stays inactive: the drain (or its undo) is
    what it will be when it registers again, which this master remembers in memory."""
    if health != pb.WORKER_HEALTH_INACTIVE:
        return f"✓ {worker_id} is {views.health_name(health).lower()}"
    then = "accept tasks" if undo else "be draining"
    return (
        f"✓ {worker_id} is inactive: it will {then} when it registers again "
        "(until this master restarts)"
    )
