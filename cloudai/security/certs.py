"""A small private PKI for a CloudAI cluster, built with the `cryptography` package.

`init_pki(DIR, ...)` writes a CA and one certificate per identity:

    DIR/ca.crt  DIR/ca.key                 the cluster's CA (keep ca.key offline)
    DIR/master.crt  DIR/master.key         the master (server, and client to workers)
    DIR/<worker-id>.crt  .key              one per worker (server to the master, and client)
    DIR/agent.crt  DIR/agent.key           the placement agent (client only)
    DIR/<client>.crt  .key                 CLI users, e.g. admin (client only)

The agent's and the clients' certificates are for clients only (extended key usage
clientAuth): TLS refuses them as a server's, so a user holding one cannot pose as
the master (and collect the tokens its callers present) or as a worker (and receive
tasks with their secrets) on an address its names cover, such as localhost.

Every leaf certificate carries its identity as the subject CN, which the servers
check (a worker accepts calls only from the master's CN; a worker token must come
with that worker's certificate). Server names (SANs) always include localhost and
127.0.0.1; add the addresses clients dial with `--host` (master) and per worker
(`--worker ID=HOST,...`): a worker's `--ip` must be one of its SANs, because the
master checks it.

Keys are written with mode 0600, certificates 0644, the folder 0700.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cloudai.errors import ConfigError, InvalidArgument

CA_NAME = "ca"
MASTER_NAME = "master"
AGENT_NAME = "agent"
DEFAULT_DAYS = 825  # the longest leaf lifetime browsers accept; renew before then
CA_DAYS = 3650
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_LOOPBACK_SANS = ("localhost", "127.0.0.1", "::1")


@dataclass(slots=True)
class Issued:
    name: str
    cert: Path
    key: Path
    sans: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Authority:
    """The CA's certificate and private key, loaded or freshly made."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, common_name: str = "CloudAI cluster CA", days: int = CA_DAYS) -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, directory: Path) -> Authority:
        cert_path, key_path = directory / f"{CA_NAME}.crt", directory / f"{CA_NAME}.key"
        try:
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except (OSError, ValueError) as err:
            raise ConfigError(f"cannot load the CA from {directory}: {err}") from err
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{key_path} is not an EC private key")
        return cls(cert, key)

    def issue(
        self,
        name: str,
        sans: list[str],
        *,
        days: int = DEFAULT_DAYS,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        client_only: bool = False,
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A leaf certificate for `name` (the CN), usable as server and as client, or
        as client only. `not_before` / `not_after` override the validity (tests make
        expired ones)."""
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if not client_only:
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        key = ec.generate_private_key(ec.SECP256R1())
        start = not_before or _now() - dt.timedelta(minutes=5)
        end = not_after or _now() + dt.timedelta(days=days)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), False
            )
        )
        if sans:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([_general_name(s) for s in sans]), critical=False
            )
        return builder.sign(self.key, hashes.SHA256()), key


def init_pki(
    directory: str | Path,
    *,
    hosts: list[str] | None = None,
    workers: dict[str, list[str]] | None = None,
    agents: list[str] | None = None,
    clients: list[str] | None = None,
    days: int = DEFAULT_DAYS,
    force: bool = False,
) -> list[Issued]:
    """Create the CA and the certificates of a cluster in `directory`.

    hosts: extra master SANs; workers: worker id -> extra SANs (its --ip);
    agents / clients: names of client certificates (default ["agent"] / ["admin"]).
    Every name, host and the validity are checked before anything is written, so a
    typo leaves no half-made CA behind. Refuses to overwrite an existing CA unless
    `force`."""
    root = Path(directory)
    plan = [(MASTER_NAME, hosts or [])]
    plan += list((workers or {}).items())  # issue() adds each worker's own id
    servers = len(plan)  # the master and the workers serve; the rest are clients only
    plan += [(n, []) for n in (agents if agents is not None else [AGENT_NAME])]
    plan += [(n, []) for n in (clients if clients is not None else ["admin"])]
    _check_plan(plan, days)
    if (root / f"{CA_NAME}.key").exists() and not force:
        raise ConfigError(
            f"{root} already holds a CA; use `cloudai certs issue` to add certificates "
            "or --force to start over"
        )
    with _writing(root):
        _make_private_dir(root)
        ca = Authority.create()
        _write(root / f"{CA_NAME}.crt", _cert_pem(ca.cert), 0o644)
        _write(root / f"{CA_NAME}.key", _key_pem(ca.key), 0o600)
        issued = [Issued(CA_NAME, root / f"{CA_NAME}.crt", root / f"{CA_NAME}.key")]
        issued += [
            issue(root, name, sans, days=days, ca=ca, client_only=i >= servers)
            for i, (name, sans) in enumerate(plan)
        ]
    return issued


def issue(
    directory: str | Path,
    name: str,
    hosts: list[str],
    *,
    days: int = DEFAULT_DAYS,
    ca: Authority | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    client_only: bool | None = None,
) -> Issued:
    """Issue (or replace) DIR/NAME.crt and DIR/NAME.key, signed by DIR's CA. Its
    names: the loopback ones, NAME itself when it is a host name (a worker's id), and
    `hosts`. `client_only`: None keeps the usage of the certificate it replaces (a
    renewed client stays a client), and is server and client for a new name.
    `not_before` / `not_after` override the validity (tests make expired ones)."""
    sans = _check_leaf(name, [*([name] if is_host_name(name) else []), *hosts])
    if not_after is None:
        _check_days(days)
    root = Path(directory)
    ca = ca or Authority.load(root)
    if client_only is None:
        client_only = is_client_only(root / f"{name}.crt")
    cert, key = ca.issue(
        name, sans, days=days, not_before=not_before, not_after=not_after, client_only=client_only
    )
    with _writing(root):
        _write(root / f"{name}.crt", _cert_pem(cert), 0o644)
        _write(root / f"{name}.key", _key_pem(key), 0o600)
    return Issued(name, root / f"{name}.crt", root / f"{name}.key", sans)


def _check_plan(plan: list[tuple[str, list[str]]], days: int) -> None:
    """InvalidArgument for a bad validity, name or host, or a name given twice (the
    second certificate would silently replace the first, e.g. a worker's the master's)."""
    _check_days(days)
    seen: set[str] = set()
    for name, hosts in plan:
        _check_leaf(name, hosts)
        if name in seen:
            raise InvalidArgument(
                f"certificate name {name!r} is given twice: every master, worker, agent "
                "and client needs its own name"
            )
        seen.add(name)


def _check_leaf(name: str, hosts: list[str]) -> list[str]:
    """The SANs of a leaf certificate for `name`; InvalidArgument if anything is bad."""
    if not _NAME_RE.match(name) or name == CA_NAME:
        raise InvalidArgument(
            f"invalid certificate name {name!r}: 1-63 letters, digits, '.', '_', '-' (not 'ca')"
        )
    sans = _dedupe([*_LOOPBACK_SANS, *(h for h in hosts if h)])
    for san in sans:
        _general_name(san)
    return sans


def _check_days(days: int) -> None:
    if days < 1:
        raise InvalidArgument(f"--days must be at least 1, not {days}")


def _make_private_dir(root: Path) -> None:
    """Create the folder mode 0700. An existing folder is tightened only if empty: one
    that already holds other files (`certs init .`) keeps its mode; the keys are 0600."""
    if root.is_dir() and any(root.iterdir()):
        return
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o700)


@contextmanager
def _writing(root: Path) -> Iterator[None]:
    try:
        yield
    except OSError as err:
        where = f": {err.filename}" if err.filename and str(err.filename) != str(root) else ""
        raise ConfigError(f"cannot write certificates to {root}{where}: {err.strerror}") from err


def is_client_only(path: Path) -> bool:
    """Whether the certificate at `path` is for clients only (its extended key usage
    lacks serverAuth); False when there is none, or it cannot be read."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return False
    return not serves(cert)


def serves(cert: x509.Certificate) -> bool:
    """Whether TLS accepts `cert` as a server's: no extended key usage, or serverAuth."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ExtendedKeyUsageOID.SERVER_AUTH in usage


def common_name(cert_pem: bytes) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem)
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def parse_worker_arg(text: str) -> tuple[str, list[str]]:
    """'worker-1=10.0.0.5,w1.example' -> ('worker-1', ['10.0.0.5', 'w1.example'])."""
    worker_id, _, hosts = text.partition("=")
    return worker_id.strip(), [h.strip() for h in hosts.split(",") if h.strip()]


_HOST_RE = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
)


def is_host_name(text: str) -> bool:
    """Whether `text` is a DNS host name (a worker id that `issue` adds to its names)."""
    return bool(_HOST_RE.fullmatch(text))


def _general_name(text: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    if not is_host_name(text):
        raise InvalidArgument(f"invalid host name for a certificate: {text!r}")
    return x509.DNSName(text.lower())


def _dedupe(items: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Created with its final mode, so a key is never readable by others, not even briefly."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
