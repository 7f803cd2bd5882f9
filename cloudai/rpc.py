"""gRPC plumbing shared by every process: building servers and channels.

Building a server is split from running it, so tests can bind port 0 in-process.
Every server and channel is built here, with or without TLS: `Tls` carries the PEM
files (mutual TLS: a server always requires a client certificate signed by the CA),
and a channel given a token sends it on every call as `authorization: Bearer ...`.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, NoReturn

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cloudai.errors import CloudAIError

# Messages are bounded: a log tail is 64 KiB, a scheduling batch can be large.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # gRPC's default reconnect backoff grows to 120 s; a worker or agent must find a
    # restarted master within seconds.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
# What a server accepts in one request: the largest legitimate one (an agent's
# placement batch) is a few MiB. A bigger one ends RESOURCE_EXHAUSTED unread.
MAX_REQUEST_BYTES = 16 * 1024 * 1024
_SERVER_OPTIONS = [
    *(o for o in _OPTIONS if o[0] != "grpc.max_receive_message_length"),
    ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
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

    def channel(self, target: str) -> grpc.Channel:
        return channel(target, tls=self.tls, token=self.token)


PLAINTEXT = Transport()


def build_server(
    address: str,
    register: Iterable[Callable[[grpc.Server], None]],
    service_names: Iterable[str],
    *,
    max_workers: int = 32,
    tls: Tls | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Create a server with our services, health checking and reflection; return
    (server, bound_port, health_servicer). The server is not started. With `tls`
    it serves mutual TLS only: a client without a certificate from the CA fails
    the handshake."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        options=_SERVER_OPTIONS,
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
    if tls is None:
        port = server.add_insecure_port(address)
    else:
        creds = grpc.ssl_server_credentials(
            [(tls.key, tls.cert)], root_certificates=tls.ca, require_client_auth=True
        )
        port = server.add_secure_port(address, creds)
    if port == 0:
        raise CloudAIError(f"cannot bind {address}: address in use or not available")
    return server, port, health_servicer


def channel(target: str, *, tls: Tls | None = None, token: str = "") -> grpc.Channel:
    """A channel to `target`; TLS checks the server's certificate against the CA and
    its name against the target's host (or `tls.server_name`)."""
    if tls is None:
        ch = grpc.insecure_channel(target, options=_OPTIONS)
    else:
        creds = grpc.ssl_channel_credentials(
            root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
        )
        options = list(_OPTIONS)
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


def abort(context: grpc.ServicerContext, err: CloudAIError) -> NoReturn:
    """Leave a servicer with the error's status code and its message."""
    context.abort(err.code, str(err))
    raise AssertionError("unreachable: context.abort raises")


def describe_rpc_error(err: grpc.RpcError, target: str) -> str:
    """One line for a user: what failed and what to do."""
    code = err.code() if hasattr(err, "code") else None
    detail = err.details() if hasattr(err, "details") else str(err)
    if code == grpc.StatusCode.UNAVAILABLE and _looks_like_tls(detail or ""):
        return (
            f"TLS handshake with the CloudAI master at {target} failed: check --tls-ca, "
            "--tls-cert and --tls-key (CLOUDAI_TLS_*), and that the master's certificate "
            "names the host you dial"
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


def _looks_like_tls(detail: str) -> bool:
    d = detail.lower()
    return any(w in d for w in ("ssl", "tls", "handshake", "certificate"))
