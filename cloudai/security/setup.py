"""What a master or a worker needs from its security settings, checked at start.

`for_master` and `for_worker` load the TLS files and tokens, apply the loopback
rule (secure by default, except on loopback) and build the server interceptors.
A bad or missing file is a ConfigError with one clear line, before anything binds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from cloudai.config import MasterSettings, WorkerSettings
from cloudai.errors import ConfigError, InvalidArgument
from cloudai.rpc import Transport
from cloudai.validation import normalize_caps, validate_user

from .decode import DecodeGuard
from .images import ImagePolicy
from .interceptor import MASTER_RULES, WORKER_RULES, AuthInterceptor
from .secrets import SecretBox, key_path_for
from .tls import INSECURE_BANNER, is_loopback, load_tls, require_server_cert, transport_for
from .tokens import TokenStore, read_token

log = logging.getLogger("cloudai.security")


@dataclass(slots=True)
class ServerSecurity:
    """A server's TLS (in `transport`, also used for the calls it makes), its token
    checks, and a one-line description for the startup banner."""

    transport: Transport
    tokens: TokenStore | None = None
    interceptors: list[grpc.ServerInterceptor] = field(default_factory=list)
    images: ImagePolicy = field(default_factory=lambda: ImagePolicy([]))

    @property
    def summary(self) -> str:
        parts = ["mTLS" if self.transport.tls else "plaintext"]
        parts.append("tokens" if self.tokens else "no tokens")
        return ", ".join(parts)


def for_master(settings: MasterSettings, warn: Callable[[str], None]) -> ServerSecurity:
    tls = load_tls(settings.tls_ca, settings.tls_cert, settings.tls_key)
    require_server_cert(tls, settings.tls_cert, "the master")
    # Only the dedicated setting: CLOUDAI_TOKEN may hold an admin token for the CLI.
    transport = Transport(tls=tls, token=read_token("", settings.dispatch_token_file))
    tokens = _tokens(settings.tokens)
    exposed = not is_loopback(settings.host)
    missing = [name for name, ok in (("TLS", transport.tls), ("tokens", tokens)) if not ok]
    if exposed and missing:
        if not settings.insecure:
            raise ConfigError(
                f"refusing to serve on {settings.host} without {' and '.join(missing)}: "
                "anyone who can reach it could run containers on every worker. Give "
                "--tls-ca/--tls-cert/--tls-key and --tokens (see docs/security.md), bind "
                "--host 127.0.0.1, or pass --insecure on a trusted network"
            )
        warn(
            INSECURE_BANNER.format(
                what="the master",
                host=settings.host,
                missing=" and ".join(missing),
                can="submit tasks and run containers on every worker",
            )
        )
    interceptors: list[grpc.ServerInterceptor] = []
    if tokens is not None:
        interceptors.append(AuthInterceptor(MASTER_RULES, tokens=tokens))
    interceptors.append(DecodeGuard())  # last: callers are authenticated first
    return ServerSecurity(
        transport, tokens, interceptors, ImagePolicy(list(settings.image_allowlist))
    )


def for_worker(settings: WorkerSettings, warn: Callable[[str], None]) -> tuple[ServerSecurity, str]:
    """The worker's security and the address its server binds."""
    try:
        normalize_caps(list(settings.allowed_caps), "--allowed-cap")
        validate_user(settings.default_user)
    except InvalidArgument as err:
        raise ConfigError(str(err)) from err
    transport = transport_for(settings)
    require_server_cert(transport.tls, settings.tls_cert, f"worker {settings.id}")
    tokens = _tokens(settings.tokens)
    bind = settings.bind or _default_bind(settings.ip)
    if not is_loopback(bind) and transport.tls is None:
        if not settings.insecure:
            raise ConfigError(
                f"refusing to serve on {bind} (--ip {settings.ip}) without TLS: anyone who "
                "can reach it could run containers here. Give --tls-ca/--tls-cert/--tls-key "
                "(see docs/security.md), use a loopback --ip, or pass --insecure on a "
                "trusted network"
            )
        warn(
            INSECURE_BANNER.format(
                what=f"worker {settings.id}",
                host=bind,
                missing="TLS",
                can="start containers on this machine",
            )
        )
    interceptors: list[grpc.ServerInterceptor] = []
    if transport.tls is not None or tokens is not None:
        peers = frozenset({settings.master_name}) if transport.tls is not None else None
        interceptors.append(AuthInterceptor(WORKER_RULES, tokens=tokens, peer_names=peers))
    interceptors.append(DecodeGuard())  # last: callers are authenticated first
    return ServerSecurity(transport, tokens, interceptors), bind


def secret_box(store_url: str, settings: MasterSettings, data_dir: Path) -> SecretBox:
    path = key_path_for(store_url, settings.secrets_key, data_dir)
    return SecretBox.from_file(path) if path else SecretBox.ephemeral()


def _default_bind(ip: str) -> str:
    """Loopback --ip: bind just that. Otherwise all interfaces (TLS or --insecure)."""
    return ip.strip("[]") if is_loopback(ip) else "0.0.0.0"


def _tokens(path: str) -> TokenStore | None:
    if not path:
        return None
    store = TokenStore(path)
    if not store.path.exists():
        raise ConfigError(
            f"tokens file {path} does not exist: create tokens with "
            f"`cloudai token create --role ROLE --file {path}`"
        )
    store.entries()  # unreadable or malformed: fail now, not on the first call
    return store
