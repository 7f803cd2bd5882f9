"""gRPC plumbing shared by every process: building servers and channels.

Building a server is split from running it, so tests can bind port 0 in-process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent import futures
from typing import NoReturn

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


def build_server(
    address: str,
    register: Iterable[Callable[[grpc.Server], None]],
    service_names: Iterable[str],
    *,
    max_workers: int = 32,
) -> tuple[grpc.Server, int, health.HealthServicer]:
    """Create a server with our services, health checking and reflection; return
    (server, bound_port, health_servicer). The server is not started."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
        options=_OPTIONS,
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
    port = server.add_insecure_port(address)
    if port == 0:
        raise CloudAIError(f"cannot bind {address}: address in use or not available")
    return server, port, health_servicer


def channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(target, options=_OPTIONS)


def abort(context: grpc.ServicerContext, err: CloudAIError) -> NoReturn:
    """Leave a servicer with the error's status code and its message."""
    context.abort(err.code, str(err))
    raise AssertionError("unreachable: context.abort raises")


def describe_rpc_error(err: grpc.RpcError, target: str) -> str:
    """One line for a user: what failed and what to do."""
    code = err.code() if hasattr(err, "code") else None
    detail = err.details() if hasattr(err, "details") else str(err)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return (
            f"cannot reach the CloudAI master at {target}: is `cloudai master` running? "
            "(set --master or CLOUDAI_MASTER)"
        )
    name = code.name if code is not None else "ERROR"
    return f"{name.lower()}: {detail}"
