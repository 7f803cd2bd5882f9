"""The `cloudai` command: processes (master, worker, agent, demo) and client commands."""

from __future__ import annotations

import json
import sys

import typer

from cloudai.errors import CloudAIError, InvalidArgument
from cloudai.validation import parse_pairs, parse_size

from . import client_cmds, security_cmds, sim_cmds
from .client import OVERRIDES, CliExit, fail, report_exit
from .security_cmds import (
    InsecureOpt,
    TlsCaOpt,
    TlsCertOpt,
    TlsKeyOpt,
    TlsNameOpt,
    TokenFileOpt,
)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="CloudAI: run containers on a fleet of workers, placed by an agent.\n\n"
    "Start `cloudai master`, some `cloudai worker`s and `cloudai agent`, then "
    "`cloudai submit IMAGE`. `cloudai demo` runs all of it locally.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print their figures.")
app.add_typer(bench_app, name="bench")
agent_app = typer.Typer(invoke_without_command=True, help="Run the placement agent sidecar.")
app.add_typer(agent_app, name="agent")
client_cmds.register(app)
security_cmds.register(app)
sim_cmds.register(app, agent_app)


@app.callback()
def _client_security(
    tls_ca: str = TlsCaOpt,
    tls_cert: str = TlsCertOpt,
    tls_key: str = TlsKeyOpt,
    tls_server_name: str = TlsNameOpt,
    token_file: str = TokenFileOpt,
) -> None:
    """Global options: TLS files and token for the client commands (before the command,
    e.g. `cloudai --token-file T submit IMAGE`); CLOUDAI_TLS_* / CLOUDAI_TOKEN otherwise."""
    OVERRIDES.update(
        _given(
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_server_name=tls_server_name,
            token_file=token_file,
        )
    )


@app.command()
def master(
    host: str = typer.Option(
        None,
        "--host",
        help="Address to bind (default 127.0.0.1; 0.0.0.0 needs TLS and tokens, or --insecure).",
    ),
    port: int = typer.Option(None, "--port", help="gRPC port (default 50051)."),
    db: str = typer.Option(None, "--db", help="sqlite:///PATH (default) or mongodb://..."),
    no_console: bool = typer.Option(False, "--no-console", help="Run headless, as a service."),
    heartbeat_timeout: float = typer.Option(
        None, "--heartbeat-timeout", help="Seconds before a silent worker is inactive (15)."
    ),
    agent_timeout: float = typer.Option(
        None,
        "--agent-timeout",
        help="Seconds without an agent before the master places tasks itself (3).",
    ),
    tls_ca: str = TlsCaOpt,
    tls_cert: str = TlsCertOpt,
    tls_key: str = TlsKeyOpt,
    tokens: str = typer.Option(
        None, "--tokens", help="Tokens file callers are checked against (CLOUDAI_TOKENS)."
    ),
    dispatch_token_file: str = typer.Option(
        None,
        "--dispatch-token-file",
        help="Token (role master) the master presents to workers that ask for one.",
    ),
    image_allowlist: str = typer.Option(
        None,
        "--image-allowlist",
        help="Allowed registries/prefixes, comma-separated, e.g. 127.0.0.1:5000/,cloudai/.",
    ),
    max_worker_cpu: float = typer.Option(
        None, "--max-worker-cpu", help="Largest CPU capacity a worker may register (4096)."
    ),
    max_worker_memory: str = typer.Option(
        None, "--max-worker-memory", help="Largest memory a worker may register (64t)."
    ),
    secrets_key: str = typer.Option(
        None, "--secrets-key", help="Key file for --secret-env values (beside the DB)."
    ),
    insecure: bool = InsecureOpt,
) -> None:
    """Run the master: cluster state, task queue and the `master>` console."""
    from cloudai.config import MasterSettings
    from cloudai.master.main import run_master

    try:
        kwargs = _given(
            host=host,
            port=port,
            db=db,
            heartbeat_timeout=heartbeat_timeout,
            agent_timeout=agent_timeout,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tokens=tokens,
            dispatch_token_file=dispatch_token_file,
            image_allowlist=image_allowlist,
            max_worker_cpu=max_worker_cpu,
            max_worker_memory=parse_size(max_worker_memory) if max_worker_memory else None,
            secrets_key=secrets_key,
        )
    except InvalidArgument as err:
        fail(str(err))
    if no_console:
        kwargs["console"] = False
    if insecure:
        kwargs["insecure"] = True
    raise typer.Exit(run_master(_settings(MasterSettings, kwargs)))


@app.command()
def worker(
    id: str = typer.Option(None, "--id", help="Worker id (default worker-1)."),
    ip: str = typer.Option(
        None, "--ip", help="Address the master uses to reach this worker (localhost)."
    ),
    master: str = typer.Option(None, "--master", help="Master address (localhost:50051)."),
    port: int = typer.Option(None, "--port", help="This worker's gRPC port (50052)."),
    label: list[str] = typer.Option(None, "--label", help="Label k=v (repeatable)."),
    cpu: float = typer.Option(None, "--cpu", help="Advertise at most this many CPUs."),
    memory: str = typer.Option(
        None, "--memory", help="Advertise at most this much memory, e.g. 4g."
    ),
    heartbeat_interval: float = typer.Option(
        None, "--heartbeat-interval", help="Seconds between heartbeats (5)."
    ),
    tls_ca: str = TlsCaOpt,
    tls_cert: str = TlsCertOpt,
    tls_key: str = TlsKeyOpt,
    tls_server_name: str = TlsNameOpt,
    token_file: str = TokenFileOpt,
    tokens: str = typer.Option(
        None, "--tokens", help="Optional tokens file: the master must present a master token."
    ),
    master_name: str = typer.Option(
        None, "--master-name", help="Certificate name (CN) the master must have (master)."
    ),
    allowed_cap: list[str] = typer.Option(
        None, "--allowed-cap", help="Capability tasks may add back, e.g. NET_BIND_SERVICE."
    ),
    network: str = typer.Option(
        None, "--network", help="Docker network for tasks: none, bridge or a name (bridge)."
    ),
    user: str = typer.Option(None, "--user", help="Default user for tasks, e.g. 65534:65534."),
    read_only: bool = typer.Option(
        False, "--read-only", help="Read-only root filesystem for every task (tmpfs /tmp)."
    ),
    bind: str = typer.Option(
        None, "--bind", help="Address to bind (default: --ip if loopback, else 0.0.0.0)."
    ),
    insecure: bool = InsecureOpt,
) -> None:
    """Run a worker: register, heartbeat, and run assigned tasks in Docker."""
    from cloudai.config import WorkerSettings
    from cloudai.worker.main import run_worker

    try:
        kwargs = _given(
            id=id,
            ip=ip,
            master=master,
            port=port,
            cpu=cpu,
            heartbeat_interval=heartbeat_interval,
            memory=parse_size(memory) if memory else None,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_server_name=tls_server_name,
            token_file=token_file,
            tokens=tokens,
            master_name=master_name,
            allowed_caps=list(allowed_cap) if allowed_cap else None,
            network_mode=network,
            default_user=user,
            bind=bind,
        )
        if label:
            kwargs["labels"] = parse_pairs(label, "--label")
    except InvalidArgument as err:
        fail(str(err))
    if read_only:
        kwargs["read_only_rootfs"] = True
    if insecure:
        kwargs["insecure"] = True
    raise typer.Exit(run_worker(_settings(WorkerSettings, kwargs)))


@agent_app.callback()
def agent(
    ctx: typer.Context,
    master: str = typer.Option(None, "--master", help="Master address (localhost:50051)."),
    policy: str = typer.Option(
        None,
        "--policy",
        help="Policy / built-in profile: default, binpack, spread, tetris, learned.",
    ),
    shadow: str = typer.Option(
        None, "--shadow", help="Also run this policy in shadow: log where it disagrees."
    ),
    profile: str = typer.Option(None, "--profile", help="Path to a profile file (JSON)."),
    model: str = typer.Option(None, "--model", help="Path to a learned model file."),
    agent_id: str = typer.Option(None, "--id", help="Agent id."),
    tls_ca: str = TlsCaOpt,
    tls_cert: str = TlsCertOpt,
    tls_key: str = TlsKeyOpt,
    tls_server_name: str = TlsNameOpt,
    token_file: str = TokenFileOpt,
) -> None:
    """Run the placement agent sidecar (`cloudai agent train` retrains predictors)."""
    if ctx.invoked_subcommand:
        return
    from cloudai.agent.sidecar import run_agent
    from cloudai.config import AgentSettings

    kwargs = _given(
        master=master,
        policy=policy,
        profile=profile,
        model=model,
        shadow=shadow,
        agent_id=agent_id,
        tls_ca=tls_ca,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_server_name=tls_server_name,
        token_file=token_file,
    )
    raise typer.Exit(run_agent(_settings(AgentSettings, kwargs)))


@app.command()
def demo(
    workers: int = typer.Option(2, "--workers", help="How many local workers."),
    image: str = typer.Option("cloudai/sample-task:latest", "--image", help="Image to run."),
    keep: bool = typer.Option(False, "--keep", help="Keep the cluster's data folder."),
) -> None:
    """Start a local master, workers and agent; run the sample task; shut down."""
    from .demo import run_demo

    raise typer.Exit(run_demo(workers=workers, image=image, keep=keep))


@bench_app.command("placement")
def bench_placement(
    workers: int = typer.Option(1000, "--workers"),
    tasks: int = typer.Option(10000, "--tasks"),
    seed: int = typer.Option(0, "--seed"),
    profile: str = typer.Option("default", "--profile"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Decisions per second of the placement core, in one process."""
    from cloudai.agent.bench import bench_placement as run

    result = run(workers=workers, tasks=tasks, seed=seed, profile=profile)
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:>16}: {v}")


def _settings(cls, kwargs: dict[str, object]):
    """Settings from flags, CLOUDAI_* and .env; a bad value is one line, exit 1."""
    from pydantic import ValidationError

    try:
        return cls(**kwargs)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        fail(f"invalid {where}: {first.get('msg', 'bad value')}")


def _given(**kwargs: object) -> dict[str, object]:
    """Only the flags the user gave: the rest comes from CLOUDAI_* and .env."""
    return {k: v for k, v in kwargs.items() if v is not None}


def main() -> None:
    """Entry point: one clear line on stderr for expected failures, never a traceback."""
    try:
        app()
    except CliExit as err:
        sys.exit(report_exit(err))
    except CloudAIError as err:
        print(f"cloudai: {err}", file=sys.stderr)
        sys.exit(1)
