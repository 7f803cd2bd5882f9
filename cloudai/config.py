"""Settings for every process, read by pydantic-settings.

Precedence: command-line flags (passed as init kwargs), then environment variables
`CLOUDAI_*`, then the `.env` file in the working directory. The seed's
`MONGODB_USERNAME` and `MONGODB_PASSWORD` keep working.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_COMMON = SettingsConfigDict(
    env_prefix="CLOUDAI_",
    env_file=".env",
    env_file_encoding="utf-8",
    extra="ignore",
    populate_by_name=True,
)


def data_dir() -> Path:
    """Where the master keeps its embedded database by default."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cloudai"


def _split_list(value: object) -> object:
    """CLOUDAI_X=a,b,c (or a JSON list) -> ['a', 'b', 'c']."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [v.strip() for v in text.split(",") if v.strip()]
    return value


CommaList = Annotated[list[str], NoDecode]


class TransportSettings(BaseSettings):
    """TLS files and the bearer token a process presents (docs/security.md)."""

    model_config = _COMMON

    # Mutual TLS: the cluster CA, and this process's certificate and key (PEM files).
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    # Client side: the name the server's certificate must carry, when it is not the
    # host part of the address dialled.
    tls_server_name: str = ""
    # The token this process presents (CLOUDAI_TOKEN), or a file holding it.
    token: SecretStr | None = None
    token_file: str = ""
    # Serve on a non-loopback address without TLS (and tokens): a loud warning.
    insecure: bool = False


class MasterSettings(TransportSettings):
    model_config = _COMMON

    # Loopback by default: serving the network needs --host 0.0.0.0 plus TLS and
    # tokens (or --insecure).
    host: str = "127.0.0.1"
    port: int = 50051
    db: str = ""
    heartbeat_timeout: float = Field(15.0, gt=0)
    # Time after which, with no word from an agent, the master places tasks itself.
    agent_timeout: float = Field(3.0, gt=0)
    # How often the master samples a worker's telemetry into the store.
    telemetry_sample_s: float = Field(60.0, gt=0)
    # Telemetry samples older than this are deleted (the sweeper trims them hourly).
    telemetry_retention_s: float = Field(86400.0, gt=0)
    # Finished tasks (with their results, logs and placement decisions) that ended
    # longer ago than this are deleted (the sweeper, hourly); 0 keeps them for ever.
    task_retention_s: float = Field(30 * 86400.0, ge=0)
    # A task that took down this many workers in a row is quarantined as poison.
    max_worker_losses: int = Field(3, ge=1)
    # Engine trouble (pull_failed, docker_error) is retried this many times, with
    # backoff, without spending the task's own retry budget.
    max_transient_retries: int = Field(3, ge=0)
    console: bool = True
    mongodb_username: str | None = Field(
        None, validation_alias=AliasChoices("CLOUDAI_MONGODB_USERNAME", "MONGODB_USERNAME")
    )
    mongodb_password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("CLOUDAI_MONGODB_PASSWORD", "MONGODB_PASSWORD")
    )

    # Security (docs/security.md). The hashed tokens file that callers are checked
    # against; empty = no tokens (allowed on loopback or with --insecure only).
    tokens: str = ""
    # Registries / repository prefixes tasks may use (comma-separated); empty = any.
    image_allowlist: CommaList = Field(default_factory=list)
    # The largest capacity a worker may advertise when it registers.
    max_worker_cpu: float = Field(4096.0, gt=0)
    max_worker_memory: int = Field(64 * 1024**4, gt=0)
    max_worker_gpu: float = Field(1024.0, ge=0)
    # Key that encrypts --secret-env values at rest (default: beside the SQLite file).
    secrets_key: str = ""
    # The token (role master) the master presents to workers that require one. Not
    # CLOUDAI_TOKEN: an admin's token in the master's shell must never reach workers.
    dispatch_token_file: str = ""

    _split = field_validator("image_allowlist", mode="before")(_split_list)

    def db_url(self) -> str:
        return self.db or f"sqlite:///{data_dir() / 'master.db'}"


class WorkerSettings(TransportSettings):
    model_config = _COMMON

    id: str = "worker-1"
    ip: str = "localhost"
    master: str = "localhost:50051"
    port: int = 50052
    heartbeat_interval: float = Field(5.0, gt=0)
    labels: dict[str, str] = Field(default_factory=dict)
    # Caps on advertised capacity (0 = the machine's real capacity).
    cpu: float = Field(0.0, ge=0, allow_inf_nan=False)
    memory: int = Field(0, ge=0)
    gpu: float = Field(0.0, ge=0, allow_inf_nan=False)
    pids_limit: int = Field(512, ge=16)
    default_memory: int = 512 * 1024**2
    default_cpu: float = 1.0
    # How long a running container is supervised through a Docker engine outage
    # (restart), or an engine that accepts connections and answers nothing (hung),
    # before its attempt is reported failed with reason docker_error.
    engine_grace_s: float = Field(60.0, gt=0)
    # Security (docs/security.md). Address to bind; default: --ip's address when it
    # is loopback, 0.0.0.0 with TLS (or --insecure).
    bind: str = ""
    # The certificate name (CN) the master's client certificate must carry.
    master_name: str = "master"
    # Optional: a tokens file with role-master tokens the master must present.
    tokens: str = ""
    # Task containers: Linux capabilities tasks may add back (all are dropped), the
    # Docker network they join (none, bridge or a named network; never host), the
    # default user ("" = the image's) and a read-only root filesystem for all tasks.
    allowed_caps: CommaList = Field(default_factory=list)
    network_mode: str = "bridge"
    default_user: str = ""
    read_only_rootfs: bool = False

    _split = field_validator("allowed_caps", mode="before")(_split_list)

    @field_validator("network_mode")
    @classmethod
    def _network(cls, value: str) -> str:
        v = value.strip()
        if not v or v == "host" or v.startswith("container:"):
            raise ValueError(f"network mode {value!r} is not allowed: use none, bridge or a name")
        return v


class AgentSettings(TransportSettings):
    model_config = _COMMON

    master: str = "localhost:50051"
    policy: str = "default"
    profile: str = ""
    model: str = ""
    agent_id: str = "agent-1"
    # Shadow mode: a candidate policy whose decisions are only logged and compared.
    shadow: str = ""
    # The learned policy packs memory by its prediction plus this margin instead of
    # the request. Off by default: the master checks commits against requests.
    pack_predicted_memory: bool = False
    memory_margin: float = Field(0.2, ge=0)


class ClientSettings(TransportSettings):
    model_config = _COMMON

    master: str = "localhost:50051"
    timeout: float = 10.0
    # Seconds `submit --wait/--follow` and `logs --follow` wait out a master that went
    # away (restarted) before they give up with exit 2; 0 gives up at once.
    reconnect: float = Field(60.0, ge=0, allow_inf_nan=False)
