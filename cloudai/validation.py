"""Validation and parsing of user input: image references, sizes, durations, K=V pairs.

Every function raises cloudai.errors.InvalidArgument with a message that says what is
wrong and what a right value looks like.
"""

from __future__ import annotations

import ipaddress
import re

from cloudai.errors import InvalidArgument
from cloudai.model import Resources, TaskSpec

# Docker's reference grammar (distribution/reference), simplified but strict:
#   [registry[:port]/]path[:tag][@digest]
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_RE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    rf"(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?$"
)
MAX_IMAGE_LEN = 255
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
LABEL_KEY_RE = re.compile(r"^(?:[a-z0-9.-]{1,253}/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$")
LABEL_VALUE_RE = re.compile(r"^(?:[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$")

MAX_CPU = 1024.0
MAX_GPU = 64.0
MAX_MEMORY = 16 * 1024**4  # 16 TiB
# Docker refuses a memory limit below 6 MiB ("Minimum memory limit allowed is 6MB");
# 0 means no request (the worker's default).
MIN_MEMORY = 6 * 1024**2
MAX_ENV_VALUE = 32 * 1024
MAX_ENV_VARS = 256
MAX_COMMAND_ARGS = 1024
MAX_COMMAND_BYTES = 128 * 1024
MAX_TIMEOUT_S = 30 * 24 * 3600
MAX_RETRIES = 100
MAX_PRIORITY = 1000
MAX_NAME = 128
MAX_OWNER = 128
# Linux capabilities (capabilities(7)) a task may ask to add back; "ALL" never.
CAPABILITIES = frozenset(
    {
        "AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "BPF", "CHECKPOINT_RESTORE",
        "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER",
        "KILL", "LEASE", "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN",
        "NET_BIND_SERVICE", "NET_BROADCAST", "NET_RAW", "PERFMON", "SETFCAP", "SETGID", "SETPCAP",
        "SETUID", "SYSLOG", "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE",
        "SYS_PACCT", "SYS_PTRACE", "SYS_RAWIO", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG",
        "WAKE_ALARM",
    }
)  # fmt: skip
# A user as Docker takes it: name or uid, optionally :group or :gid.
USER_RE = re.compile(
    r"^(?:[a-z_][a-z0-9_-]{0,31}|[0-9]{1,10})(?::(?:[a-z_][a-z0-9_-]{0,31}|[0-9]{1,10}))?$"
)
# One-line text also refuses C1 controls (terminal escapes too) and the bidirectional
# overrides, which reorder what follows them on an operator's screen.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_CONTROL_BUT_LINES_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "kb": 1000, "ki": 1024, "kib": 1024,
    "m": 1024**2, "mb": 1000**2, "mi": 1024**2, "mib": 1024**2,
    "g": 1024**3, "gb": 1000**3, "gi": 1024**3, "gib": 1024**3,
    "t": 1024**4, "tb": 1000**4, "ti": 1024**4, "tib": 1024**4,
}  # fmt: skip
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def validate_image(ref: str) -> str:
    ref = (ref or "").strip()
    if not ref:
        raise InvalidArgument("image reference is empty")
    if len(ref) > MAX_IMAGE_LEN:
        raise InvalidArgument(f"image reference is longer than {MAX_IMAGE_LEN} characters")
    if not IMAGE_RE.match(ref):
        raise InvalidArgument(
            f"invalid image reference {ref!r}: expected [registry[:port]/]name[:tag][@digest], "
            "lower-case name, e.g. cloudai/sample-task:latest"
        )
    return ref


def validate_id(kind: str, value: str) -> str:
    if not ID_RE.match(value or ""):
        raise InvalidArgument(
            f"invalid {kind} {value!r}: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def parse_size(text: str | int) -> int:
    """'512m' -> 536870912. Binary units for k/m/g/t, decimal for kb/mb/gb/tb."""
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _SIZE_UNITS:
            raise InvalidArgument(f"invalid size {text!r}: use e.g. 512m, 2g, 1.5GiB")
        size = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
        # A number too long for a float is inf: out of range, not an OverflowError.
        value = int(size) if size <= MAX_MEMORY else MAX_MEMORY + 1
    if value < 0 or value > MAX_MEMORY:
        raise InvalidArgument(f"size {_clip(text)} is out of range (0 to 16 TiB)")
    return value


def _clip(text: object, limit: int = 40) -> str:
    """repr(text), cut short: an error never echoes a whole huge argument."""
    r = repr(text)
    return r if len(r) <= limit else r[: limit - 4] + "...'"


def parse_duration(text: str | float) -> float:
    """'10m' -> 600.0; a bare number means seconds. '1h30m' is accepted."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        s = str(text).strip().lower()
        if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", s):
            seconds = float(s)
        else:
            parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)", s)
            if not parts or "".join(n + u for n, u in parts) != s:
                raise InvalidArgument(f"invalid duration {text!r}: use e.g. 30s, 10m, 1h30m")
            seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds < 0 or seconds > MAX_TIMEOUT_S:
        raise InvalidArgument(f"duration {_clip(text)} is out of range (0 to 30 days)")
    return seconds


def parse_pairs(items: list[str] | None, what: str) -> dict[str, str]:
    """['a=1', 'b=2'] -> {'a': '1', 'b': '2'}; a malformed item raises InvalidArgument."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"malformed {what} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def validate_env(env: dict[str, str]) -> None:
    if len(env) > MAX_ENV_VARS:
        raise InvalidArgument(f"too many environment variables ({len(env)} > {MAX_ENV_VARS})")
    for key, value in env.items():
        if not ENV_NAME_RE.match(key):
            raise InvalidArgument(
                f"invalid environment variable name {key!r}: use letters, digits and '_', "
                "not starting with a digit"
            )
        if len(value.encode()) > MAX_ENV_VALUE or "\x00" in value:
            raise InvalidArgument(f"environment variable {key!r} value is too long or has NUL")


def validate_labels(labels: dict[str, str], what: str = "label") -> None:
    if len(labels) > 64:
        raise InvalidArgument(f"too many {what}s ({len(labels)} > 64)")
    for key, value in labels.items():
        if not LABEL_KEY_RE.match(key):
            raise InvalidArgument(f"invalid {what} key {key!r}: use e.g. zone or gpu.model")
        if not LABEL_VALUE_RE.match(value):
            raise InvalidArgument(
                f"invalid {what} value {value!r} for {key!r}: "
                "up to 63 letters, digits, '.', '_', '-'"
            )


def validate_resources(res: Resources) -> None:
    checks = (
        ("cpu", res.cpu, MAX_CPU),
        ("memory", res.memory_bytes, MAX_MEMORY),
        ("gpu", res.gpu, MAX_GPU),
    )
    for name, value, limit in checks:
        if value != value or value < 0:  # NaN or negative
            what = "a number" if value != value else ">= 0"  # NaN is not equal to itself
            raise InvalidArgument(f"{name} request must be {what}, got {value}")
        if value > limit:
            raise InvalidArgument(f"{name} request {value} is absurd (limit {limit})")
    if res.gpu > 1 and res.gpu != int(res.gpu):
        raise InvalidArgument(f"gpu request {res.gpu}: fractions are allowed only below 1")
    if 0 < res.memory_bytes < MIN_MEMORY:
        raise InvalidArgument(
            f"memory request {format_size(res.memory_bytes)} is below Docker's minimum of "
            "6 MiB: ask for e.g. 64m, or 0 for the worker's default"
        )


def normalize_caps(caps: list[str], what: str = "cap_add") -> list[str]:
    """['net_admin', 'CAP_CHOWN'] -> ['NET_ADMIN', 'CHOWN']; unknown names and ALL raise."""
    if len(caps) > len(CAPABILITIES):
        raise InvalidArgument(f"{what}: too many capabilities ({len(caps)})")
    out: list[str] = []
    for cap in caps:
        name = cap.strip().upper().removeprefix("CAP_")
        if name not in CAPABILITIES:
            raise InvalidArgument(
                f"{what}: unknown or forbidden capability {cap[:40]!r} "
                "(name one capability, e.g. NET_BIND_SERVICE; ALL is never allowed)"
            )
        if name not in out:
            out.append(name)
    return out


def validate_user(user: str) -> str:
    if user and not USER_RE.match(user):
        raise InvalidArgument(
            f"invalid user {user[:40]!r}: use a name or uid, optionally :group or :gid, "
            "e.g. 1000:1000 or nobody"
        )
    return user


def validate_text(what: str, value: str, limit: int, *, multiline: bool = False) -> str:
    """Free text that is stored and printed: bounded, and without control characters
    (which could rewrite an operator's terminal); `multiline` allows tabs and newlines."""
    if len(value) > limit:
        raise InvalidArgument(f"{what} is longer than {limit} characters")
    if (_CONTROL_BUT_LINES_RE if multiline else _CONTROL_RE).search(value):
        raise InvalidArgument(f"{what} must not contain control characters")
    return value


def validate_spec(spec: TaskSpec) -> TaskSpec:
    """Check a whole task spec; returns it (with the image stripped) or raises InvalidArgument."""
    spec.image = validate_image(spec.image)
    validate_resources(spec.resources)
    validate_env(spec.env)
    validate_labels(spec.selector, "selector")
    if (
        len(spec.command) > MAX_COMMAND_ARGS
        or sum(len(a) for a in spec.command) > MAX_COMMAND_BYTES
    ):
        raise InvalidArgument("command is too long")
    if any("\x00" in a for a in spec.command):
        raise InvalidArgument("command arguments must not contain NUL bytes")
    if not 0 <= spec.timeout_s <= MAX_TIMEOUT_S or spec.timeout_s != spec.timeout_s:
        raise InvalidArgument("timeout must be between 0 and 30 days")
    if not 0 <= spec.max_retries <= MAX_RETRIES:
        raise InvalidArgument(f"retries must be between 0 and {MAX_RETRIES}")
    if abs(spec.priority) > MAX_PRIORITY:
        raise InvalidArgument(f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}")
    validate_text("name", spec.name, MAX_NAME)
    validate_text("owner", spec.owner, MAX_OWNER)
    if spec.pinned_worker:
        validate_id("worker id", spec.pinned_worker)
    if len(spec.secret_env_keys) > MAX_ENV_VARS:
        raise InvalidArgument(f"too many secret env keys ({len(spec.secret_env_keys)})")
    for key in spec.secret_env_keys:
        if key not in spec.env:
            raise InvalidArgument(f"secret env key {key[:128]!r} has no value in env")
    spec.cap_add = normalize_caps(spec.cap_add)
    validate_user(spec.user)
    return spec


DEFAULT_MASTER_PORT = 50051
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
HOST_RE = re.compile(rf"^{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?$")


def parse_address(
    text: str, what: str = "--master", *, source: str = "", default_port: int = DEFAULT_MASTER_PORT
) -> str:
    """'host:port' -> itself, 'host' -> 'host:50051', '[::1]:port' (IPv6 in brackets).
    Anything else raises InvalidArgument: 'bad --master address ...' (source: where from)."""
    try:
        host, port = _split_address((text or "").strip(), default_port)
    except ValueError as err:
        raise InvalidArgument(
            f"bad {what} address {text[:100]!r}{source}: {err}; "
            "use HOST:PORT, e.g. localhost:50051 or [::1]:50051"
        ) from None
    return f"{host}:{port}"


def _split_address(value: str, default_port: int) -> tuple[str, int]:
    """(host, port) of HOST[:PORT] or [IPV6][:PORT]; ValueError says what is wrong."""
    if not value:
        raise ValueError("it is empty")
    scheme, sep, _ = value.partition("://")
    if sep:
        raise ValueError(f"no scheme ({scheme[:20]}://) is taken, only the address")
    if value.startswith("["):
        inside, closed, rest = value[1:].partition("]")
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            raise ValueError(f"{inside!r} in brackets is not an IPv6 address") from None
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError("expected [IPV6]:PORT")
        host, port = f"[{inside}]", rest[1:] if rest else None
    elif value.count(":") > 1:
        raise ValueError("an IPv6 address goes in brackets")
    else:
        host, sep, port = value.partition(":")
        port = port if sep else None
        if not host:
            raise ValueError("the host is missing")
        if len(host) > 253 or not HOST_RE.match(host):
            raise ValueError(f"{host[:60]!r} is not a host name or IP address")
    if port is None:
        return host, default_port
    if not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port[:20]!r} is not a number from 1 to 65535")
    return host, int(port)


def format_size(n: int | float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
