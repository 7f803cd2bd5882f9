"""The `cloudai` command: processes (master, worker, agent, demo) and client commands."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass

import typer

from cloudai.errors import CloudAIError, InvalidArgument
from cloudai.validation import parse_address, parse_pairs, parse_size

from . import client_cmds, security_cmds, sim_cmds
from .client import OVERRIDES, CliExit, click_errors, fail, report_exit, report_usage
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


def _print_version(given: bool) -> None:
    if given:
        from cloudai import __version__

        print(f"cloudai {__version__}")
        raise typer.Exit()


@app.callback()
def _client_security(
    tls_ca: str = TlsCaOpt,
    tls_cert: str = TlsCertOpt,
    tls_key: str = TlsKeyOpt,
    tls_server_name: str = TlsNameOpt,
    token_file: str = TokenFileOpt,
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version."
    ),
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


# `cloudai master`: its own options (the TLS ones are shared, from security_cmds).
HostOpt = typer.Option(
    None,
    "--host",
    help="Address to bind (default 127.0.0.1; 0.0.0.0 needs TLS and tokens, or --insecure).",
)
MasterPortOpt = typer.Option(
    None, "--port", help="gRPC port, 1-65535 (default 50051; 0 picks a free one)."
)
DbOpt = typer.Option(None, "--db", help="sqlite:///PATH (default) or mongodb://...")
NoConsoleOpt = typer.Option(False, "--no-console", help="Run headless, as a service.")
HeartbeatTimeoutOpt = typer.Option(
    None, "--heartbeat-timeout", help="Seconds before a silent worker is inactive (15)."
)
AgentTimeoutOpt = typer.Option(
    None,
    "--agent-timeout",
    help="Seconds without an agent before the master places tasks itself (3).",
)
MasterTokensOpt = typer.Option(
    None, "--tokens", help="Tokens file callers are checked against (CLOUDAI_TOKENS)."
)
DispatchTokenFileOpt = typer.Option(
    None,
    "--dispatch-token-file",
    help="Token (role master) the master presents to workers that ask for one.",
)
ImageAllowlistOpt = typer.Option(
    None,
    "--image-allowlist",
    help="Allowed registries/prefixes, comma-separated, e.g. 127.0.0.1:5000/,cloudai/.",
)
MaxWorkerCpuOpt = typer.Option(
    None, "--max-worker-cpu", help="Largest CPU capacity a worker may register (4096)."
)
MaxWorkerMemoryOpt = typer.Option(
    None, "--max-worker-memory", help="Largest memory a worker may register (64t)."
)
SecretsKeyOpt = typer.Option(
    None, "--secrets-key", help="Key file for --secret-env values (beside the DB)."
)


@app.command()
def master(
    host: str = HostOpt,
    port: int = MasterPortOpt,
    db: str = DbOpt,
    no_console: bool = NoConsoleOpt,
    heartbeat_timeout: float = HeartbeatTimeoutOpt,
    agent_timeout: float = AgentTimeoutOpt,
    tls_ca: str = TlsCaOpt,
    tls_cert: str = TlsCertOpt,
    tls_key: str = TlsKeyOpt,
    tokens: str = MasterTokensOpt,
    dispatch_token_file: str = DispatchTokenFileOpt,
    image_allowlist: str = ImageAllowlistOpt,
    max_worker_cpu: float = MaxWorkerCpuOpt,
    max_worker_memory: str = MaxWorkerMemoryOpt,
    secrets_key: str = SecretsKeyOpt,
    insecure: bool = InsecureOpt,
) -> None:
    """Run the master: cluster state, task queue and the `master>` console."""
    raise typer.Exit(_run_master(_MasterOptions(**locals())))  # locals(): just the options


@dataclass(frozen=True, kw_only=True)
class _MasterOptions:
    """`cloudai master`'s options as given (None: not given; same names as the flags)."""

    host: str | None
    port: int | None
    db: str | None
    no_console: bool
    heartbeat_timeout: float | None
    agent_timeout: float | None
    tls_ca: str | None
    tls_cert: str | None
    tls_key: str | None
    tokens: str | None
    dispatch_token_file: str | None
    image_allowlist: str | None
    max_worker_cpu: float | None
    max_worker_memory: str | None
    secrets_key: str | None
    insecure: bool


def _run_master(opts: _MasterOptions) -> int:
    """Run the master with the settings the options (then CLOUDAI_*, .env) give."""
    from cloudai.config import MasterSettings
    from cloudai.master.main import run_master

    return run_master(_settings(MasterSettings, _master_kwargs(opts)))


def _master_kwargs(o: _MasterOptions) -> dict[str, object]:
    """MasterSettings arguments from the options given; a bad size is one line, exit 1."""
    try:
        kwargs = _given(
            host=o.host,
            port=o.port,
            db=o.db,
            heartbeat_timeout=o.heartbeat_timeout,
            agent_timeout=o.agent_timeout,
            tls_ca=o.tls_ca,
            tls_cert=o.tls_cert,
            tls_key=o.tls_key,
            tokens=o.tokens,
            dispatch_token_file=o.dispatch_token_file,
            image_allowlist=o.image_allowlist,
            max_worker_cpu=o.max_worker_cpu,
            max_worker_memory=parse_size(o.max_worker_memory) if o.max_worker_memory else None,
            secrets_key=o.secrets_key,
        )
    except InvalidArgument as err:
        fail(str(err))
    if o.no_console:
        kwargs["console"] = False
    if o.insecure:
        kwargs["insecure"] = True
    return kwargs


# `cloudai worker`: its own options (the TLS and token ones are shared, from security_cmds).
WorkerIdOpt = typer.Option(None, "--id", help="Worker id (default worker-1).")
WorkerIpOpt = typer.Option(
    None, "--ip", help="Address the master uses to reach this worker (localhost)."
)
WorkerMasterOpt = typer.Option(None, "--master", help="Master address (localhost:50051).")
WorkerPortOpt = typer.Option(
    None, "--port", help="This worker's gRPC port, 1-65535 (50052; 0 picks a free one)."
)
LabelOpt = typer.Option(None, "--label", help="Label k=v (repeatable).")
CpuOpt = typer.Option(None, "--cpu", help="Advertise at most this many CPUs (0: all).")
GpuOpt = typer.Option(None, "--gpu", help="Advertise at most this many GPUs (0: all).")
MemoryOpt = typer.Option(
    None, "--memory", help="Advertise at most this much memory, e.g. 4g (0: all)."
)
HeartbeatIntervalOpt = typer.Option(
    None, "--heartbeat-interval", help="Seconds between heartbeats (5)."
)
WorkerTokensOpt = typer.Option(
    None, "--tokens", help="Optional tokens file: the master must present a master token."
)
MasterNameOpt = typer.Option(
    None, "--master-name", help="Certificate name (CN) the master must have (master)."
)
AllowedCapOpt = typer.Option(
    None,
    "--allowed-cap",
    help="Capability tasks may add back, e.g. NET_BIND_SERVICE (repeatable).",
)
NetworkOpt = typer.Option(
    None, "--network", help="Docker network for tasks: none, bridge or a name (bridge)."
)
UserOpt = typer.Option(None, "--user", help="Default user for tasks, e.g. 65534:65534.")
ReadOnlyOpt = typer.Option(
    False, "--read-only", help="Read-only root filesystem for every task (tmpfs /tmp)."
)
BindOpt = typer.Option(
    None, "--bind", help="Address to bind (default: --ip if loopback, else 0.0.0.0)."
)


@app.command()
def worker(
    id: str = WorkerIdOpt,
    ip: str = WorkerIpOpt,
    master: str = WorkerMasterOpt,
    port: int = WorkerPortOpt,
    label: list[str] = LabelOpt,
    cpu: float = CpuOpt,
    memory: str = MemoryOpt,
    gpu: float = GpuOpt,
    heartbeat_interval: float = HeartbeatIntervalOpt,
    tls_ca: str = TlsCaOpt,
    tls_cert: str = TlsCertOpt,
    tls_key: str = TlsKeyOpt,
    tls_server_name: str = TlsNameOpt,
    token_file: str = TokenFileOpt,
    tokens: str = WorkerTokensOpt,
    master_name: str = MasterNameOpt,
    allowed_cap: list[str] = AllowedCapOpt,
    network: str = NetworkOpt,
    user: str = UserOpt,
    read_only: bool = ReadOnlyOpt,
    bind: str = BindOpt,
    insecure: bool = InsecureOpt,
) -> None:
    """Run a worker: register, heartbeat, and run assigned tasks in Docker."""
    raise typer.Exit(_run_worker(_WorkerOptions(**locals())))  # locals(): just the options


@dataclass(frozen=True, kw_only=True)
class _WorkerOptions:
    """`cloudai worker`'s options as given (None: not given; same names as the flags)."""

    id: str | None
    ip: str | None
    master: str | None
    port: int | None
    label: list[str] | None
    cpu: float | None
    memory: str | None
    gpu: float | None
    heartbeat_interval: float | None
    tls_ca: str | None
    tls_cert: str | None
    tls_key: str | None
    tls_server_name: str | None
    token_file: str | None
    tokens: str | None
    master_name: str | None
    allowed_cap: list[str] | None
    network: str | None
    user: str | None
    read_only: bool
    bind: str | None
    insecure: bool


def _run_worker(opts: _WorkerOptions) -> int:
    """Run a worker with the settings the options (then CLOUDAI_*, .env) give."""
    from cloudai.config import WorkerSettings
    from cloudai.worker.main import run_worker

    settings = _settings(WorkerSettings, _worker_kwargs(opts))
    return run_worker(_with_master(settings, opts.master))


def _worker_kwargs(o: _WorkerOptions) -> dict[str, object]:
    """WorkerSettings arguments from the options given; a bad size or label: exit 1."""
    try:
        kwargs = _given(
            id=o.id,
            ip=o.ip,
            master=o.master,
            port=o.port,
            cpu=_capacity_cap("--cpu", o.cpu),
            gpu=_capacity_cap("--gpu", o.gpu),
            heartbeat_interval=o.heartbeat_interval,
            memory=parse_size(o.memory) if o.memory else None,
            tls_ca=o.tls_ca,
            tls_cert=o.tls_cert,
            tls_key=o.tls_key,
            tls_server_name=o.tls_server_name,
            token_file=o.token_file,
            tokens=o.tokens,
            master_name=o.master_name,
            allowed_caps=list(o.allowed_cap) if o.allowed_cap else None,
            network_mode=o.network,
            default_user=o.user,
            bind=o.bind,
        )
        if o.label:
            kwargs["labels"] = parse_pairs(o.label, "--label")
    except InvalidArgument as err:
        fail(str(err))
    if o.read_only:
        kwargs["read_only_rootfs"] = True
    if o.insecure:
        kwargs["insecure"] = True
    return kwargs


def _capacity_cap(flag: str, value: float | None) -> float | None:
    """--cpu / --gpu: a cap on what the worker advertises; 0 means all the machine has."""
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise InvalidArgument(
            f"invalid {flag} {value:g}: use a number >= 0 (0 advertises all the machine has)"
        )
    return value


def _with_master(settings, flag: str | None):
    """The settings with their master address checked and completed (HOST ->
    HOST:50051), as the client commands do; a malformed one is one line, exit 1."""
    source = "" if flag is not None else " (from CLOUDAI_MASTER or .env)"
    try:
        address = parse_address(settings.master, source=source)
    except InvalidArgument as err:
        fail(str(err))
    return settings.model_copy(update={"master": address})


@agent_app.callback()
def agent(
    ctx: typer.Context,
    master: str = typer.Option(None, "--master", help="Master address (localhost:50051)."),
    policy: str = typer.Option(
        None,
        "--policy",
        help="Policy / built-in profile: default, binpack, spread, tetris, learned; "
        "or a profile file (JSON or TOML).",
    ),
    shadow: str = typer.Option(
        None,
        "--shadow",
        help="Also run this policy in shadow: log where it disagrees (a --policy name "
        "or profile file, or firstfit, bestfit, random, roundrobin, fgd).",
    ),
    profile: str = typer.Option(
        None,
        "--profile",
        help="Path to a profile file (JSON or TOML): the policy, instead of --policy.",
    ),
    model: str = typer.Option(
        None,
        "--model",
        help="Learned model file for --policy learned or --shadow learned (default: the "
        "shipped model); `cloudai agent train` writes one with predictors.",
    ),
    agent_id: str = typer.Option(None, "--id", help="Agent id (agent-1)."),
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
    settings = _with_master(_settings(AgentSettings, kwargs), master)
    raise typer.Exit(run_agent(settings))


@app.command()
def demo(
    workers: int = typer.Option(2, "--workers", min=1, help="How many local workers."),
    image: str = typer.Option("cloudai/sample-task:latest", "--image", help="Image to run."),
    keep: bool = typer.Option(False, "--keep", help="Keep the cluster's data folder."),
) -> None:
    """Start a local master, workers and agent; run the sample task; shut down."""
    from .demo import run_demo

    raise typer.Exit(run_demo(workers=workers, image=image, keep=keep))


@bench_app.command("placement")
def bench_placement(
    workers: int = typer.Option(1000, "--workers", min=1, help="Workers of the random cluster."),
    tasks: int = typer.Option(10000, "--tasks", min=1, help="Queued tasks to place, one batch."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seeds the cluster and the tasks."),
    profile: str = typer.Option(
        "default", "--profile", help="A built-in profile name or a profile file (JSON or TOML)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the figures as JSON."),
) -> None:
    """Decisions per second of the placement core, in one process.

    One batch of --tasks random tasks is placed on a random cluster of --workers
    workers."""
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
    from pydantic_settings import SettingsError

    try:
        return cls(**kwargs)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        given = first.get("input")
        value = f" {given!r}" if isinstance(given, str | int | float) else ""
        fail(f"invalid {where}{value}: {first.get('msg', 'bad value')}")
    except SettingsError as err:  # a mapping that is not JSON, e.g. CLOUDAI_LABELS=zone=a
        fail(f'{err}: give it as JSON, e.g. CLOUDAI_LABELS=\'{{"zone": "a"}}\'')


def _given(**kwargs: object) -> dict[str, object]:
    """Only the flags the user gave: the rest comes from CLOUDAI_* and .env."""
    return {k: v for k, v in kwargs.items() if v is not None}


def main() -> None:
    """Entry point: one clear line on stderr for expected failures, never a traceback.
    Usage errors are bad input too (exit 1): exit 2 means the master is unreachable."""
    try:
        code = app(prog_name="cloudai", standalone_mode=False)
    except CliExit as err:
        sys.exit(report_exit(err))
    except CloudAIError as err:
        print(f"cloudai: {err}", file=sys.stderr)
        sys.exit(1)
    except click_errors.ClickException as err:
        sys.exit(report_usage(err))
    except typer.Abort:
        print("cloudai: aborted", file=sys.stderr)
        sys.exit(1)
    # Not standalone: typer.Exit(n) (and --help: 0) come back as the return value.
    sys.exit(code if isinstance(code, int) else 0)
