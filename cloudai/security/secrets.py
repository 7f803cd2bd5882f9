"""Secret env values (`--secret-env K=V`), encrypted at rest with Fernet.

The master seals a task's secret values as it accepts the task, so the store (SQLite
file, MongoDB, their backups) holds only ciphertext, `enc:v1:<fernet token>`. The
dispatcher reveals them just before it sends the task to its worker, over mTLS. No
listing, snapshot or `--json` output carries them: `task_to_pb` and the agent's
snapshots drop secret values altogether.

The key is a file (mode 0600) beside the SQLite database, or `--secrets-key PATH`.
Lose it and sealed values are gone: tasks that still need them run without them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from cloudai.errors import ConfigError
from cloudai.model import TaskSpec

log = logging.getLogger("cloudai.security")
SEALED_PREFIX = "enc:v1:"


class SecretBox:
    def __init__(self, key: bytes, path: Path | None = None) -> None:
        self._fernet = Fernet(key)
        self.path = path

    @classmethod
    def ephemeral(cls) -> SecretBox:
        """For in-memory stores: the key dies with the process, as the data does."""
        return cls(Fernet.generate_key())

    @classmethod
    def from_file(cls, path: str | Path) -> SecretBox:
        """Load the key, creating it (mode 0600) on first use."""
        p = Path(path).expanduser()
        try:
            if not p.exists():
                p.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(Fernet.generate_key())
            key = p.read_bytes().strip()
            return cls(key, p)
        except FileExistsError:
            return cls(p.read_bytes().strip(), p)  # another process made it first
        except OSError as err:
            raise ConfigError(f"cannot use the secrets key {p}: {err.strerror}") from err
        except ValueError as err:
            raise ConfigError(f"{p} is not a Fernet key (32 url-safe base64 bytes)") from err

    def seal(self, spec: TaskSpec) -> TaskSpec:
        """A copy of `spec` whose secret values are encrypted."""
        if not spec.secret_env_keys:
            return spec
        sealed = TaskSpec.from_dict(spec.to_dict())
        for key in spec.secret_env_keys:
            if key in sealed.env:
                token = self._fernet.encrypt(sealed.env[key].encode()).decode()
                sealed.env[key] = SEALED_PREFIX + token
        return sealed

    def reveal(self, spec: TaskSpec) -> TaskSpec:
        """A copy of `spec` with its secret values decrypted, for the worker. A value
        that cannot be decrypted (lost or changed key) is dropped, with an error logged
        that names the key but never a value."""
        if not spec.secret_env_keys:
            return spec
        plain = TaskSpec.from_dict(spec.to_dict())
        for key in spec.secret_env_keys:
            value = plain.env.get(key)
            if value is None or not value.startswith(SEALED_PREFIX):
                continue  # stored before sealing existed: already plaintext
            try:
                token = value.removeprefix(SEALED_PREFIX).encode()
                plain.env[key] = self._fernet.decrypt(token).decode()
            except (InvalidToken, UnicodeDecodeError):
                log.error("cannot decrypt secret env %s (secrets key changed?): dropped", key)
                del plain.env[key]
        return plain


def key_path_for(db_url: str, configured: str, fallback_dir: Path) -> Path | None:
    """Where the secrets key lives: --secrets-key, else beside the SQLite file, else
    in the data folder (MongoDB). None for an in-memory store."""
    if configured:
        return Path(configured).expanduser()
    if db_url.startswith("sqlite:///"):
        path = db_url.removeprefix("sqlite:///")
        if path in (":memory:", ""):
            return None
        return Path(path).expanduser().with_name(Path(path).name + ".secrets-key")
    if db_url.startswith("sqlite://"):
        return None
    if "://" not in db_url:  # a bare SQLite path
        return Path(db_url).expanduser().with_name(Path(db_url).name + ".secrets-key")
    return fallback_dir / "secrets.key"
