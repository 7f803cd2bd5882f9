"""Client commands: submit, status, workers, tasks, task, explain, logs, cancel, drain."""

from __future__ import annotations

import json
import sys
import time

import typer

from cloudai.convert import spec_to_pb, state_to_pb
from cloudai.errors import InvalidArgument
from cloudai.model import Resources, TaskSpec, TaskState
from cloudai.proto import client_pb2 as cpb
from cloudai.proto import common_pb2 as pb
from cloudai.validation import parse_duration, parse_pairs, parse_size, validate_spec

from . import views
from .client import Client, fail

MasterOpt = typer.Option(
    "localhost:50051",
    "--master",
    envvar="CLOUDAI_MASTER",
    help="Master address host:port (or CLOUDAI_MASTER).",
)
JsonOpt = typer.Option(False, "--json", help="Machine-readable JSON output.")


def register(app: typer.Typer) -> None:
    for fn in (submit, status, workers, tasks, task, explain, logs, cancel, drain):
        app.command(name=fn.__name__)(fn)


def _emit(as_json: bool, message, text: str) -> None:
    print(views.to_json(message) if as_json else text, flush=True)


def submit(
    image: str = typer.Argument(..., help="Container image, e.g. cloudai/sample-task:latest"),
    command: list[str] = typer.Argument(None, help="Command and arguments (after --)."),
    cpu: float = typer.Option(0.0, "--cpu", help="CPUs requested (fractions allowed)."),
    memory: str = typer.Option("0", "--memory", help="Memory requested, e.g. 512m, 2g."),
    gpu: float = typer.Option(0.0, "--gpu", help="GPUs requested; fractions below 1, e.g. 0.5."),
    env: list[str] = typer.Option(None, "--env", help="Environment variable K=V (repeatable)."),
    secret_env: list[str] = typer.Option(
        None, "--secret-env", help="Secret env K=V (kept out of listings)."
    ),
    priority: int = typer.Option(0, "--priority", help="Queue priority (higher first)."),
    timeout: str = typer.Option("0", "--timeout", help="Deadline, e.g. 30s, 10m (0 = none)."),
    retries: int = typer.Option(0, "--retries", help="Retry budget for failed attempts."),
    selector: list[str] = typer.Option(None, "--selector", help="Worker label k=v (repeatable)."),
    worker: str = typer.Option("", "--worker", help="Pin to this worker (manual override)."),
    name: str = typer.Option("", "--name", help="Task name."),
    wait: bool = typer.Option(False, "--wait", help="Wait; exit with the task's exit code."),
    follow: bool = typer.Option(False, "--follow", help="Stream the task's logs."),
    pull: bool = typer.Option(False, "--pull", help="Always pull the image first."),
    cap_add: list[str] = typer.Option(
        None, "--cap-add", help="Linux capability to add (the worker must allow it)."
    ),
    read_only: bool = typer.Option(
        False, "--read-only", help="Read-only root filesystem, with a tmpfs /tmp."
    ),
    user: str = typer.Option("", "--user", help="Run as this user, e.g. 1000:1000."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show where it would go; change nothing."
    ),
    master: str = MasterOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Submit a task. Without --worker the placement agent chooses where it runs."""
    spec = _build_spec(
        image,
        command,
        cpu,
        memory,
        gpu,
        env,
        secret_env,
        priority,
        timeout,
        retries,
        selector,
        worker,
        name,
        pull,
        hardening=(list(cap_add or []), read_only, user),
    )
    client = Client(master)
    resp = client.call("SubmitTask", cpb.SubmitTaskRequest(spec=spec_to_pb(spec), dry_run=dry_run))
    if dry_run:
        d = resp.decision
        text = (
            f"would place on {d.worker_id}: {d.summary}"
            if d.worker_id
            else f"would not place now: {d.summary or 'no worker fits'}"
            + (f"\nsmallest change: {d.hint}" if d.hint else "")
        )
        return _emit(as_json, d, text)
    if not (wait or follow):
        return _emit(as_json, resp.task, f"✓ submitted {resp.task_id}")
    if not as_json:
        print(f"✓ submitted {resp.task_id}", file=sys.stderr, flush=True)
    if follow:
        _print_logs(client, resp.task_id, follow=True)
    final = _wait_terminal(client, resp.task_id)
    _emit(as_json, final, views.task_panel(final))
    raise typer.Exit(_exit_code(final))


def _build_spec(
    image,
    command,
    cpu,
    memory,
    gpu,
    env,
    secret_env,
    priority,
    timeout,
    retries,
    selector,
    worker,
    name,
    pull,
    *,
    hardening: tuple[list[str], bool, str] = ([], False, ""),
) -> TaskSpec:
    try:
        envs = parse_pairs(env, "--env")
        secrets = parse_pairs(secret_env, "--secret-env")
        spec = TaskSpec(
            image=image,
            command=list(command or []),
            env={**envs, **secrets},
            resources=Resources(cpu=cpu, memory_bytes=parse_size(memory), gpu=gpu),
            priority=priority,
            timeout_s=parse_duration(timeout),
            max_retries=retries,
            selector=parse_pairs(selector, "--selector"),
            name=name,
            pinned_worker=worker,
            always_pull=pull,
            secret_env_keys=sorted(secrets),
            cap_add=hardening[0],
            read_only_rootfs=hardening[1],
            user=hardening[2],
        )
        return validate_spec(spec)
    except InvalidArgument as err:
        fail(str(err))


def _wait_terminal(client: Client, task_id: str) -> pb.Task:
    delay = 0.1
    while True:
        t = client.call("GetTask", cpb.GetTaskRequest(task_id=task_id))
        if views.state_name(t.state) in {s.value for s in TaskState if s.terminal}:
            return t
        time.sleep(delay)
        delay = min(delay * 1.5, 1.0)


def _exit_code(t: pb.Task) -> int:
    """As `docker run`: the task's own exit code; 125 if it never produced one."""
    if views.state_name(t.state) == "SUCCEEDED":
        return 0
    return t.exit_code if t.has_exit_code and t.exit_code != 0 else 125


def _print_logs(client: Client, task_id: str, follow: bool, tail: int = 0) -> None:
    for chunk in client.stream(
        "StreamLogs", cpb.LogsRequest(task_id=task_id, follow=follow, tail_lines=tail)
    ):
        if chunk.data:
            sys.stdout.write(chunk.data)
            sys.stdout.flush()


def status(master: str = MasterOpt, as_json: bool = JsonOpt) -> None:
    """Cluster summary: workers, capacity, tasks by state, agent."""
    s = Client(master).call("GetStatus", cpb.StatusRequest())
    _emit(as_json, s, views.status_panel(s))


def workers(master: str = MasterOpt, as_json: bool = JsonOpt) -> None:
    """List workers with capacity, allocation, live load and health."""
    resp = Client(master).call("ListWorkers", cpb.ListWorkersRequest())
    _emit(as_json, list(resp.workers), views.workers_table(list(resp.workers)))


def tasks(
    state: list[str] = typer.Option(None, "--state", help="Only tasks in this state (repeatable)."),
    limit: int = typer.Option(100, "--limit", help="At most this many (newest)."),
    worker: str = typer.Option("", "--worker", help="Only tasks on this worker."),
    master: str = MasterOpt,
    as_json: bool = JsonOpt,
) -> None:
    """List tasks, oldest first."""
    try:
        states = [state_to_pb(TaskState(s.upper())) for s in state or []]
    except ValueError:
        fail(f"unknown state in {state}; use one of {', '.join(s.value for s in TaskState)}")
    req = cpb.ListTasksRequest(states=states, limit=limit, worker_id=worker)
    resp = Client(master).call("ListTasks", req)
    _emit(as_json, list(resp.tasks), views.tasks_table(list(resp.tasks)))


def task(
    task_id: str = typer.Argument(..., help="Task id."),
    master: str = MasterOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show one task: state, attempts, exit code, reason."""
    t = Client(master).call("GetTask", cpb.GetTaskRequest(task_id=task_id))
    _emit(as_json, t, views.task_panel(t))


def explain(
    task_id: str = typer.Argument(..., help="Task id."),
    master: str = MasterOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Why a task runs where it does, or why it is still waiting."""
    resp = Client(master).call("Explain", cpb.ExplainRequest(task_id=task_id))
    _emit(as_json, resp, resp.text)


def logs(
    task_id: str = typer.Argument(..., help="Task id."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the task ends."),
    tail: int = typer.Option(0, "--tail", help="Only the last N lines."),
    master: str = MasterOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Print a task's logs (from the worker while it runs, from the store after)."""
    if not as_json:
        return _print_logs(Client(master), task_id, follow, tail)
    req = cpb.LogsRequest(task_id=task_id, follow=follow, tail_lines=tail)
    text = "".join(c.data for c in Client(master).stream("StreamLogs", req))
    print(json.dumps({"task_id": task_id, "logs": text}, indent=2))


def cancel(
    task_id: str = typer.Argument(..., help="Task id."),
    master: str = MasterOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Cancel a queued or running task (its container is killed)."""
    resp = Client(master).call("CancelTask", cpb.CancelRequest(task_id=task_id))
    _emit(as_json, resp, f"✓ {task_id}: {resp.message}")


def drain(
    worker_id: str = typer.Argument(..., help="Worker id."),
    undo: bool = typer.Option(False, "--undo", help="Accept tasks again."),
    master: str = MasterOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Stop placing tasks on a worker; its running tasks finish."""
    resp = Client(master).call("DrainWorker", cpb.DrainRequest(worker_id=worker_id, undrain=undo))
    _emit(as_json, resp.worker, f"✓ {worker_id} is {views.health_name(resp.worker.health).lower()}")
