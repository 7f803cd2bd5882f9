"""A small client for the master's Cluster API, with the CLI's error contract:
an unreachable master gives one line on stderr and exit status 2, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc

from cloudai import rpc
from cloudai.errors import CloudAIError
from cloudai.proto import client_pb2_grpc as cpb_grpc

T = TypeVar("T")
EXIT_UNREACHABLE = 2
EXIT_ERROR = 1


class CliExit(Exception):
    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    raise CliExit(code, message)


# Set by the global options (`cloudai --tls-ca ... --token-file ... submit ...`);
# otherwise CLOUDAI_TLS_CA / CLOUDAI_TLS_CERT / CLOUDAI_TLS_KEY / CLOUDAI_TOKEN[_FILE].
OVERRIDES: dict[str, str] = {}


def client_transport() -> rpc.Transport:
    """The TLS files and token of this CLI user, from the global options or settings."""
    from cloudai.config import ClientSettings
    from cloudai.security.tls import transport_for

    try:
        return transport_for(ClientSettings(**OVERRIDES))  # type: ignore[arg-type]
    except CloudAIError as err:
        fail(str(err))


class Client:
    def __init__(
        self, target: str, timeout: float = 10.0, *, transport: rpc.Transport | None = None
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.channel = (transport or client_transport()).channel(target)
        self.stub = cpb_grpc.ClusterStub(self.channel)

    def call(self, method: str, request: Any, *, timeout: float | None = None) -> Any:
        fn: Callable[..., Any] = getattr(self.stub, method)
        try:
            return fn(request, timeout=timeout or self.timeout, wait_for_ready=False)
        except grpc.RpcError as err:
            self._fail(err)

    def stream(self, method: str, request: Any) -> Any:
        fn: Callable[..., Any] = getattr(self.stub, method)
        try:
            yield from fn(request)
        except grpc.RpcError as err:
            self._fail(err)

    def _fail(self, err: grpc.RpcError) -> NoReturn:
        code = err.code() if hasattr(err, "code") else None
        unreachable = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        fail(
            rpc.describe_rpc_error(err, self.target),
            EXIT_UNREACHABLE if unreachable else EXIT_ERROR,
        )

    def close(self) -> None:
        self.channel.close()


def report_exit(err: CliExit) -> int:
    if err.message:
        print(f"cloudai: {err.message}", file=sys.stderr)
    return err.code
