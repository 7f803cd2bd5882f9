"""Bearer tokens, one role each, stored hashed.

A token is a random string shown once, when it is created. The tokens file keeps
only its SHA-256, so a stolen file grants nothing:

    {"version": 1,
     "tokens": {"<sha256 hex>": {"role": "submitter", "subject": "alice",
                                 "revoked": false, "created_at": 1700000000.0}}}

Lookups hash the presented token and compare it with `hmac.compare_digest` against
every stored hash that shares its first byte (256 buckets keep a lookup cheap with
thousands of tokens). Timing tells nothing about which entry, if any, matched: the
bucket is chosen by the caller's own hash, which the caller knows anyway.
The file is re-read when it changes on disk, so `cloudai token revoke` takes effect
on a running master at its next call, without a restart.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from cloudai.errors import ConfigError, InvalidArgument, NotFound

TOKEN_PREFIX = "cai_"
MAX_TOKEN_LEN = 256
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{16,256}$")
_SUBJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,62}$")
# How many hex digits of the hash name a token in listings and `revoke`.
ID_LEN = 12


class Role(StrEnum):
    ADMIN = "admin"  # everything, including manual assignment and draining
    SUBMITTER = "submitter"  # submit, read, and cancel its own tasks
    WORKER = "worker"  # the MasterWorker RPCs, for its own worker id only
    AGENT = "agent"  # the MasterAgent RPCs
    MASTER = "master"  # presented by the master to workers (optional; mTLS is the check)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling. `authenticated` is False when auth is off (loopback dev mode):
    then every caller acts as admin, as before tokens existed."""

    role: Role
    subject: str
    authenticated: bool = True

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    @property
    def owner_filter(self) -> str | None:
        """Whose tasks this caller may read and act on: None (everyone's) for an
        admin, and for every caller when tokens are off; else only its subject's."""
        return None if self.is_admin else self.subject


ANONYMOUS = Identity(Role.ADMIN, "", authenticated=False)


@dataclass(frozen=True, slots=True)
class TokenEntry:
    id: str
    role: Role
    subject: str
    revoked: bool
    created_at: float


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_role(text: str) -> Role:
    try:
        return Role(text.strip().lower())
    except ValueError as err:
        raise InvalidArgument(
            f"unknown role {text!r}: use one of {', '.join(r.value for r in Role)}"
        ) from err


class TokenStore:
    """The tokens file: create, revoke, list, and look up presented tokens."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._entries: dict[str, dict] = {}
        self._buckets: dict[str, list[tuple[str, dict]]] = {}

    # -- reads ----------------------------------------------------------------------
    def lookup(self, token: str) -> Identity | None:
        """The identity of a valid, unrevoked token; None for anything else."""
        if not token or len(token) > MAX_TOKEN_LEN or not _TOKEN_RE.match(token):
            return None
        digest = token_hash(token)
        self._current()
        found: dict | None = None
        for stored, entry in self._buckets.get(digest[:2], ()):
            # No early exit: every entry is compared, whether or not one matched.
            if hmac.compare_digest(stored, digest):
                found = entry
        if found is None or found.get("revoked"):
            return None
        try:
            return Identity(Role(found["role"]), str(found.get("subject", "")))
        except (KeyError, ValueError):
            return None

    def entries(self) -> list[TokenEntry]:
        return [
            TokenEntry(
                id=h[:ID_LEN],
                role=Role(e["role"]),
                subject=e.get("subject", ""),
                revoked=bool(e.get("revoked")),
                created_at=float(e.get("created_at", 0.0)),
            )
            for h, e in sorted(self._current().items(), key=lambda kv: kv[1].get("created_at", 0))
        ]

    # -- writes ---------------------------------------------------------------------
    def create(self, role: Role, subject: str = "") -> tuple[str, TokenEntry]:
        """Mint a token. Returns (the token, shown only now, and its entry)."""
        subject = subject or role.value
        if not _SUBJECT_RE.match(subject):
            raise InvalidArgument(
                f"invalid subject {subject!r}: 1-63 letters, digits, '.', '_', '@', '-'"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        digest = token_hash(token)
        with self._lock, self._file_lock():
            entries = self._read_file()
            entries[digest] = {
                "role": role.value,
                "subject": subject,
                "revoked": False,
                "created_at": time.time(),
            }
            self._write_file(entries)
        return token, TokenEntry(digest[:ID_LEN], role, subject, False, time.time())

    def revoke(self, *, token: str = "", token_id: str = "", subject: str = "") -> list[str]:
        """Revoke by the token itself, by its id (a hash prefix of >= 8 hex digits),
        or every token of a subject. Returns the ids revoked; NotFound if none match."""
        if not self.path.exists():
            raise NotFound(f"tokens file {self.path} does not exist")
        with self._lock, self._file_lock():
            entries = self._read_file()
            if token:
                keys = [k for k in entries if hmac.compare_digest(k, token_hash(token))]
            elif token_id:
                if not re.fullmatch(r"[0-9a-f]{8,64}", token_id):
                    raise InvalidArgument("a token id is 8 to 64 hex digits (see `token list`)")
                keys = [k for k in entries if k.startswith(token_id)]
                if len(keys) > 1:
                    raise InvalidArgument(f"token id {token_id} is ambiguous: give more digits")
            elif subject:
                keys = [k for k, e in entries.items() if e.get("subject") == subject]
            else:
                raise InvalidArgument(
                    "name the token to revoke: its id (as `token list` shows it), "
                    "--subject or --token-file"
                )
            if not keys:
                raise NotFound("no such token in " + str(self.path))
            for key in keys:
                entries[key]["revoked"] = True
            self._write_file(entries)
        return [k[:ID_LEN] for k in keys]

    # -- file -----------------------------------------------------------------------
    def _current(self) -> dict[str, dict]:
        """The entries, re-read only when the file changed (mtime or size)."""
        try:
            st = self.path.stat()
        except OSError as err:
            raise ConfigError(f"cannot read tokens file {self.path}: {err.strerror}") from err
        stamp = (st.st_mtime_ns, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                self._entries = self._read_file()
                buckets: dict[str, list[tuple[str, dict]]] = {}
                for digest, entry in self._entries.items():
                    buckets.setdefault(digest[:2], []).append((digest, entry))
                self._buckets = buckets
                self._stamp = stamp
            return self._entries

    def _read_file(self) -> dict[str, dict]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as err:
            raise ConfigError(f"cannot read tokens file {self.path}: {err.strerror}") from err
        try:
            data = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError as err:
            raise ConfigError(f"tokens file {self.path} is not valid JSON: {err.msg}") from err
        # Anything else is another file given by mistake: never read as "no tokens",
        # and never overwritten by `token create`.
        if not isinstance(data, dict) or (data and not isinstance(data.get("tokens"), dict)):
            raise ConfigError(
                f"{self.path} is not a CloudAI tokens file (no 'tokens' object): check --file"
            )
        tokens = data.get("tokens", {})
        for digest, entry in tokens.items():
            _check_entry(self.path, digest, entry)
        return tokens

    def _write_file(self, entries: dict[str, dict]) -> None:
        """Atomically, mode 0600: the hashes are not secrets, but the file is policy."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"version": 1, "tokens": entries}, f, indent=2, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError as err:
            tmp.unlink(missing_ok=True)
            raise ConfigError(f"cannot write tokens file {self.path}: {err.strerror}") from err

    @contextmanager
    def _file_lock(self) -> Iterator[None]:
        """Serialise read-modify-write across processes: two `token create` (or a
        create and a revoke) run at once must not drop each other's change."""
        lock = self.path.with_name(f".{self.path.name}.lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as err:
            raise ConfigError(f"cannot write tokens file {self.path}: {err.strerror}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def _check_entry(path: Path, digest: object, entry: object) -> None:
    """ConfigError naming the entry unless it is a well-formed token record."""
    where = f"tokens file {path}, entry {str(digest)[:ID_LEN]!r}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where} is not an object")
    role = entry.get("role")
    if role not in {r.value for r in Role}:
        raise ConfigError(f"{where} has an unknown role {str(role)[:32]!r}")
    created = entry.get("created_at", 0.0)
    if isinstance(created, bool) or not isinstance(created, (int, float)):
        raise ConfigError(f"{where} has a created_at that is not a number")
    subject = entry.get("subject", "")
    if not isinstance(subject, str):
        raise ConfigError(f"{where} has a subject that is not a string")
    # The subject is the caller's identity: it owns the tasks it submits. Without one,
    # a submitter would own (and read) every task stored with no owner.
    if not subject.strip():
        raise ConfigError(f"{where} has no subject: name who holds it (`token create --subject`)")


def read_token(token: str = "", token_file: str = "") -> str:
    """The token a process presents: given directly (CLOUDAI_TOKEN) or in a file
    (CLOUDAI_TOKEN_FILE, --token-file); "" when neither is set. Both at once is an
    error: which identity is meant cannot be told (one may be left in the shell)."""
    if token and token_file:
        raise ConfigError(
            "a token is given twice, by CLOUDAI_TOKEN and by a token file "
            f"({token_file}, from --token-file or CLOUDAI_TOKEN_FILE): give one"
        )
    if token:
        return _checked(token.strip(), "CLOUDAI_TOKEN")
    if not token_file:
        return ""
    try:
        text = Path(token_file).expanduser().read_text().strip()
    except (OSError, UnicodeDecodeError) as err:
        why = getattr(err, "strerror", None) or "not text"
        raise ConfigError(f"cannot read token file {token_file}: {why}") from err
    if not text:
        raise ConfigError(f"token file {token_file} is empty")
    return _checked(text, f"token file {token_file}")


def _checked(token: str, where: str) -> str:
    """The token, if gRPC metadata can carry it: one word of printable ASCII."""
    if not re.fullmatch(r"[!-~]+", token):
        raise ConfigError(
            f"{where} does not hold a token: a token is one line of printable ASCII "
            "with no spaces (as `cloudai token create` writes it)"
        )
    return token
