"""gRPC plumbing shared by every process: building servers and channels.

Building a server is split from running it, so tests can bind port 0 in-process.
Every server and channel is built here, with or without TLS: `Tls` carries the PEM
files (mutual TLS: a server always requires a client certificate signed by the CA),
and a channel given a token sends it on every call as `authorization: Bearer ...`.
"""

from __future__ import annotations

import collections
import errno
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cloudai.errors import CloudAIError, ConfigError, StoreError

# Messages are bounded: a log tail is 64 KiB, a scheduling batch can be large.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# What a server accepts in one request: the largest legitimate one (an agent's
# placement batch) is a few MiB. A bigger one ends RESOURCE_EXHAUSTED unread.
MAX_REQUEST_BYTES = 16 * 1024 * 1024
# Both ends ping an idle connection this often, so that a dead peer (or a NAT that
# forgot the connection) is noticed on long silent streams: `logs --follow`, the
# agent's watch, a worker's log stream.
KEEPALIVE_MS = 20_000
KEEPALIVE_TIMEOUT_MS = 10_000


def channel_options(keepalive_ms: int = KEEPALIVE_MS) -> list[tuple[str, int]]:
    """Options of every channel: message bounds, keepalive pings, quick reconnects."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        *_keepalive(keepalive_ms),
        # gRPC's default reconnect backoff grows to 120 s; a worker or agent must find a
        # restarted master within seconds.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.min_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
        # Each channel its own connections: a new channel to a restarted peer must not
        # share the old one's connection, still waiting out its reconnect backoff.
        ("grpc.use_local_subchannel_pool", 1),
    ]


def server_options(keepalive_ms: int = KEEPALIVE_MS) -> list[tuple[str, int]]:
    """Options of every server, for channels built with the same `keepalive_ms`.

    The server accepts their keepalive pings: by default gRPC allows one ping per
    5 minutes on a connection that carries no data and answers the third early one
    with GOAWAY too_many_pings, which cut every stream silent for about a minute.
    A client that pings more than twice as often still gets that GOAWAY."""
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
        *_keepalive(keepalive_ms),
        ("grpc.http2.min_ping_interval_without_data_ms", keepalive_ms // 2),
        ("grpc.http2.max_ping_strikes", 2),
        # One listener per port. With gRPC's default SO_REUSEPORT a second master or
        # worker on a port in use would "listen" too and take half the connections.
        ("grpc.so_reuseport", 0),
    ]


def _keepalive(keepalive_ms: int) -> list[tuple[str, int]]:
    return [
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", min(KEEPALIVE_TIMEOUT_MS, keepalive_ms)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]


@dataclass(frozen=True, slots=True)
class Tls:
    """PEM bytes for mutual TLS: the CA that signs every peer, and this process's own
    certificate and key. `server_name`, on the client side, is the name the server's
    certificate must carry when it is not the host part of the target."""

    ca: bytes
    cert: bytes
    key: bytes = field(repr=False)
    server_name: str = ""


@dataclass(frozen=True, slots=True)
class Transport:
    """How a process talks gRPC: TLS or not, and the bearer token it presents."""

    tls: Tls | None = None
    token: str = field(default="", repr=False)

    def channel(self, target: str, server_name: str = "") -> grpc.Channel:
        """A channel to `target`; `server_name`, with TLS, is the name the server's
        certificate must carry instead of the target's host (a worker's id)."""
        tls = self.tls
        if tls is not None and server_name:
            tls = replace(tls, server_name=server_name)
        return channel(target, tls=tls, token=self.token)


PLAINTEXT = Transport()


def build_server(
    address: str,
    register: Iterable[Callable[[grpc.Server], None]],
    service_names: Iterable[str],
    *,
    max_workers: int = 32,
    tls: Tls | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    keepalive_ms: int = KEEPALIVE_MS,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Create a server with our services, health checking and reflection; return
    (server, bound_port, health_servicer). The server is not started. With `tls`
    it serves mutual TLS only: a client without a certificate from the CA fails
    the handshake. An address that cannot be listened on is one ConfigError line."""
    check_listen(address)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        options=server_options(keepalive_ms),
        interceptors=list(interceptors),
    )
    for add in register:
        add(server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = list(service_names)
    for name in names:
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [*names, reflection.SERVICE_NAME, health.SERVICE_NAME], server
    )
    return server, _add_port(server, address, tls), health_servicer


def _add_port(server: grpc.Server, address: str, tls: Tls | None) -> int:
    try:
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            creds = grpc.ssl_server_credentials(
                [(tls.key, tls.cert)], root_certificates=tls.ca, require_client_auth=True
            )
            port = server.add_secure_port(address, creds)
    except RuntimeError:  # taken since check_listen (gRPC has logged its own line)
        port = 0
    if port == 0:
        # load_tls checked the certificate and key; gRPC may still refuse a key type.
        also = "; or gRPC refused --tls-cert / --tls-key" if tls is not None else ""
        raise ConfigError(f"cannot listen on {address}: address in use or not available{also}")
    return port


def listen_address(host: str, port: int) -> str:
    """HOST:PORT for a server to listen on; an IPv6 host (given with or without its
    brackets) in brackets."""
    bare = host.strip().strip("[]")
    return f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"


def check_port(port: int, what: str = "--port") -> None:
    """A port is 1-65535; 0 asks the system for a free one."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"invalid {what} {port}: use 1-65535 (0 picks a free port)")


def check_listen(address: str) -> None:
    """Raise one ConfigError line unless every address that `address` resolves to can
    be listened on. gRPC would log a C-core error and raise a bare RuntimeError, or,
    for a name with several addresses (localhost: ::1 and 127.0.0.1), quietly listen
    on the free ones only."""
    host, _, port_text = address.rpartition(":")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(f"cannot listen on {address}: expected HOST:PORT") from None
    check_port(port)
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host.strip("[]") or None, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise ConfigError(f"cannot listen on {address}: unknown host") from None
    failures = [_bind_errno(family, sockaddr) for family, _, _, _, sockaddr in infos]
    if errno.EADDRINUSE in failures:
        raise ConfigError(f"cannot listen on {address}: address in use")
    if failures and all(failures):
        raise ConfigError(f"cannot listen on {address}: {_bind_problem(failures[0])}")


def _bind_errno(family: int, sockaddr: Any) -> int:
    """0 if a listener could bind `sockaddr` now, else the errno. Like gRPC's own
    listeners the probe sets SO_REUSEADDR: connections left by a process that just
    ended (TIME_WAIT) do not count, only a live listener does."""
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(sockaddr)
    except OSError as err:
        return err.errno or -1
    return 0


def _bind_problem(err: int) -> str:
    known = {
        errno.EADDRNOTAVAIL: "address not available on this machine",
        errno.EACCES: "permission denied",
    }
    return known.get(err) or os.strerror(err).lower()


def channel(
    target: str, *, tls: Tls | None = None, token: str = "", keepalive_ms: int = KEEPALIVE_MS
) -> grpc.Channel:
    """A channel to `target`; TLS checks the server's certificate against the CA and
    its name against the target's host (or `tls.server_name`)."""
    if tls is None:
        ch = grpc.insecure_channel(target, options=channel_options(keepalive_ms))
    else:
        creds = grpc.ssl_channel_credentials(
            root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
        )
        options = channel_options(keepalive_ms)
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        ch = grpc.secure_channel(target, creds, options=options)
    return grpc.intercept_channel(ch, _BearerToken(token)) if token else ch


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` to every call on the channel."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _details(self, d: Any) -> _CallDetails:
        metadata = [*(d.metadata or ()), self._header]
        return _CallDetails(
            d.method,
            d.timeout,
            metadata,
            d.credentials,
            getattr(d, "wait_for_ready", None),
            getattr(d, "compression", None),
        )

    def intercept_unary_unary(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):
        return continuation(self._details(client_call_details), request)

    def intercept_stream_unary(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)

    def intercept_stream_stream(self, continuation, client_call_details, request_iterator):
        return continuation(self._details(client_call_details), request_iterator)


# Trailing metadata naming a master-side failure whose status code clients would
# otherwise read as a transport error: UNAVAILABLE from a failing store.
ERROR_KIND_KEY = "cloudai-error"
STORE_FAILED = "store"


def abort(context: grpc.ServicerContext, err: CloudAIError) -> NoReturn:
    """Leave a servicer with the error's status code and its message. A store failure
    is UNAVAILABLE (retry later) like a lost connection, so it is also marked in the
    trailing metadata: clients can then say the master answered but its store failed."""
    if isinstance(err, StoreError):
        context.set_trailing_metadata(((ERROR_KIND_KEY, STORE_FAILED),))
    context.abort(err.code, str(err))
    raise AssertionError("unreachable: context.abort raises")


# The master's answer (UNAVAILABLE) when it cannot read its tokens file: it refuses
# every call until the file is back, and clients must not call it unreachable.
TOKENS_UNCHECKABLE = (
    "the master cannot check tokens now: its tokens file is missing or damaged "
    "(see the master's log)"
)


def store_failed(err: grpc.RpcError) -> bool:
    """The master answered this call, but its store failed (see abort)."""
    try:
        meta = err.trailing_metadata() or ()
    except Exception:  # noqa: BLE001 - not a call error: no metadata
        return False
    return any(k == ERROR_KIND_KEY and v == STORE_FAILED for k, v in meta)


def describe_rpc_error(err: grpc.RpcError, target: str) -> str:
    """One line for a user: what failed and what to do."""
    code = err.code() if hasattr(err, "code") else None
    detail = err.details() if hasattr(err, "details") else str(err)
    if store_failed(err):
        return f"the CloudAI master at {target} cannot use its store (try again later): {detail}"
    if code == grpc.StatusCode.UNAVAILABLE and _looks_like_tls(detail or ""):
        if _plaintext_peer(detail or ""):
            return (
                f"TLS handshake with the CloudAI master at {target} failed: it did not answer "
                "in TLS, so it may be serving plaintext (started without --tls-*): drop "
                "--tls-ca, --tls-cert and --tls-key (CLOUDAI_TLS_*) or start it with TLS"
            )
        return (
            f"TLS handshake with the CloudAI master at {target} failed: check --tls-ca, "
            "--tls-cert and --tls-key (CLOUDAI_TLS_*), that the master's certificate "
            "names the host you dial, and that the master serves TLS at all"
        )
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        # A TLS server closes a plaintext connection at once.
        hint = (
            "; a TLS master closes connections that lack a certificate it accepts: "
            "check --tls-ca, --tls-cert and --tls-key"
            if "socket closed" in (detail or "").lower()
            else ""
        )
        return (
            f"cannot reach the CloudAI master at {target}: is `cloudai master` running? "
            f"(set --master or CLOUDAI_MASTER{hint})"
        )
    name = code.name if code is not None else "ERROR"
    return f"{name.lower()}: {detail}"


def tls_failed(err: grpc.RpcError) -> bool:
    """The call failed in the TLS handshake (a certificate, CA or plaintext mismatch):
    a setup mistake, which retrying does not mend."""
    code = err.code() if hasattr(err, "code") else None
    detail = err.details() if hasattr(err, "details") else str(err)
    return code == grpc.StatusCode.UNAVAILABLE and _looks_like_tls(detail or "")


def _looks_like_tls(detail: str) -> bool:
    d = detail.lower()
    return any(w in d for w in ("ssl", "tls", "handshake", "certificate"))


def _plaintext_peer(detail: str) -> bool:
    """The peer answered the TLS hello with something that is not TLS (HTTP/2 in the
    clear): BoringSSL reports WRONG_VERSION_NUMBER, OpenSSL some record-layer errors."""
    d = detail.lower()
    return any(w in d for w in ("wrong_version_number", "packet_length_too_long", "http_request"))
