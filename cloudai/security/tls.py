"""Loading a process's TLS files and token from its settings, and the loopback rule.

Secure by default, except on loopback: a server that listens on anything but a
loopback address needs TLS (and, for the master, tokens) unless the operator says
`--insecure`, which prints a loud warning.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pydantic import SecretStr

from cloudai.errors import ConfigError
from cloudai.rpc import Tls, Transport

from .certs import common_name, serves
from .tokens import read_token

INSECURE_BANNER = (
    "WARNING: --insecure: {what} serves on {host} WITHOUT {missing}. Anyone who can "
    "reach this port can {can}. Use only on a trusted, isolated network."
)


class TransportSettings(Protocol):
    tls_ca: str
    tls_cert: str
    tls_key: str
    tls_server_name: str
    token: SecretStr | None
    token_file: str


def load_tls(ca: str, cert: str, key: str, server_name: str = "") -> Tls | None:
    """None when no TLS file is configured; ConfigError when only some are, or when a
    file is unreadable, not PEM, or its certificate has expired."""
    given = {"--tls-ca": ca, "--tls-cert": cert, "--tls-key": key}
    if not any(given.values()):
        return None
    missing = [flag for flag, path in given.items() if not path]
    if missing:
        raise ConfigError(
            f"TLS needs --tls-ca, --tls-cert and --tls-key together; missing {', '.join(missing)} "
            "(or CLOUDAI_TLS_CA / CLOUDAI_TLS_CERT / CLOUDAI_TLS_KEY)"
        )
    ca_pem, cert_pem, key_pem = (_read(flag, path) for flag, path in given.items())
    _certificate("--tls-ca", ca, ca_pem)
    own = _certificate("--tls-cert", cert, cert_pem)
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as err:
        # Deliberately not the parser's message: it could quote key material.
        raise ConfigError(f"--tls-key {key} is not an unencrypted PEM private key") from err
    # Checked here, before any socket: gRPC would log C-core lines and fail the bind
    # (a server) or every handshake (a client) without naming the cause.
    if _spki(private.public_key()) != _spki(own.public_key()):
        raise ConfigError(
            f"--tls-key {key} does not match --tls-cert {cert}: use the key issued with "
            "that certificate"
        )
    return Tls(ca=ca_pem, cert=cert_pem, key=key_pem, server_name=server_name)


def require_server_cert(tls: Tls | None, path: str, what: str) -> None:
    """ConfigError when a server is given a certificate for clients only (an agent's or
    a user's, from `certs init`): TLS would refuse it in every handshake."""
    if tls is None or serves(x509.load_pem_x509_certificate(tls.cert)):
        return
    name = common_name(tls.cert)
    raise ConfigError(
        f"--tls-cert {path} is a client certificate ({name!r}, for clients only): "
        f"{what} needs its own certificate, e.g. `cloudai certs issue DIR NAME`"
    )


def _certificate(flag: str, path: str, pem: bytes) -> x509.Certificate:
    """The PEM certificate in `pem` (the first one of a bundle), still valid."""
    try:
        parsed = x509.load_pem_x509_certificate(pem)
    except ValueError as err:
        raise ConfigError(f"{flag} {path} is not a PEM certificate") from err
    if parsed.not_valid_after_utc < dt.datetime.now(dt.UTC):
        raise ConfigError(
            f"{flag} {path} expired on {parsed.not_valid_after_utc:%Y-%m-%d}: "
            "issue a new one (`cloudai certs issue`)"
        )
    return parsed


def _spki(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def transport_for(settings: TransportSettings) -> Transport:
    """The TLS files and the token a process presents, from its settings."""
    tls = load_tls(settings.tls_ca, settings.tls_cert, settings.tls_key, settings.tls_server_name)
    token = settings.token.get_secret_value() if settings.token else ""
    return Transport(tls=tls, token=read_token(token, settings.token_file))


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost. 0.0.0.0, :: and any other name are not."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _read(flag: str, path: str) -> bytes:
    try:
        return Path(path).expanduser().read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {flag} {path}: {err.strerror}") from err
