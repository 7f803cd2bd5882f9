"""Settings for every process, read by pydantic-settings.

Precedence: command-line flags (passed as init kwargs), then environment variables
`CLOUDAI_*`, then the `.env` file in the working directory. The seed's
`MONGODB_USERNAME` and `MONGODB_PASSWORD` keep working.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

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


class MasterSettings(BaseSettings):
    model_config = _COMMON

    host: str = "0.0.0.0"
    port: int = 50051
    db: str = ""
    heartbeat_timeout: float = Field(15.0, gt=0)
    # Time after which, with no word from an agent, the master places tasks itself.
    agent_timeout: float = Field(3.0, gt=0)
    # How often the master samples a worker's telemetry into the store.
    telemetry_sample_s: float = Field(60.0, gt=0)
    # A task that took down this many workers in a row is quarantined as poison.
    max_worker_losses: int = Field(3, ge=1)
    console: bool = True
    mongodb_username: str | None = Field(
        None, validation_alias=AliasChoices("CLOUDAI_MONGODB_USERNAME", "MONGODB_USERNAME")
    )
    mongodb_password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("CLOUDAI_MONGODB_PASSWORD", "MONGODB_PASSWORD")
    )

    def db_url(self) -> str:
        return self.db or f"sqlite:///{data_dir() / 'master.db'}"


class WorkerSettings(BaseSettings):
    model_config = _COMMON

    id: str = "worker-1"
    ip: str = "localhost"
    master: str = "localhost:50051"
    port: int = 50052
    heartbeat_interval: float = Field(5.0, gt=0)
    labels: dict[str, str] = Field(default_factory=dict)
    # Caps on advertised capacity (0 = the machine's real capacity).
    cpu: float = 0.0
    memory: int = 0
    gpu: float = 0.0
    pids_limit: int = Field(512, ge=16)
    default_memory: int = 512 * 1024**2
    default_cpu: float = 1.0


class AgentSettings(BaseSettings):
    model_config = _COMMON

    master: str = "localhost:50051"
    policy: str = "default"
    profile: str = ""
    model: str = ""
    agent_id: str = "agent-1"


class ClientSettings(BaseSettings):
    model_config = _COMMON

    master: str = "localhost:50051"
    timeout: float = 10.0
