"""A small client for the master's Cluster API, with the CLI's error contract:
an unreachable master gives one line on stderr and exit status 2, never a traceback;
bad input, command-line usage errors included, gives one line and exit status 1."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc

from cloudai import rpc
from cloudai.errors import CloudAIError, InvalidArgument
from cloudai.proto import client_pb2_grpc as cpb_grpc
from cloudai.validation import parse_address

try:  # typer vendors click from 0.2x on; before, click is its dependency
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover
    from click import exceptions as click_errors  # type: ignore[no-redef]

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


def master_address(flag: str | None) -> tuple[str, float]:
    """The master's address and the call timeout: --master, then CLOUDAI_MASTER, then
    .env, then localhost:50051. A malformed address is one line, exit 1."""
    target, settings = _client_settings(flag)
    return target, settings.timeout


def _client_settings(flag: str | None) -> tuple[str, Any]:
    """The master's address (see master_address) and the ClientSettings."""
    from pydantic import ValidationError

    from cloudai.config import ClientSettings

    try:
        settings = ClientSettings(**({} if flag is None else {"master": flag}))
    except ValidationError as err:
        first = err.errors()[0]
        fail(f"invalid {'.'.join(map(str, first['loc']))}: {first['msg']}")
    source = "" if flag is not None else " (from CLOUDAI_MASTER or .env)"
    try:
        return parse_address(settings.master, source=source), settings
    except InvalidArgument as err:
        fail(str(err))


def connect(flag: str | None) -> Client:
    """A client for the master the user named (see master_address), with the user's
    patience for a master that goes away (CLOUDAI_RECONNECT)."""
    target, settings = _client_settings(flag)
    return Client(target, settings.timeout, reconnect=settings.reconnect)


class Client:
    """`reconnect`: seconds a wait on a submitted task rides out an unreachable master
    (see reconnect.py); 0, the default here, gives up at once."""

    def __init__(
        self,
        target: str,
        timeout: float = 10.0,
        *,
        transport: rpc.Transport | None = None,
        reconnect: float = 0.0,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.reconnect = reconnect
        self.channel = (transport or client_transport()).channel(target)
        self.stub = cpb_grpc.ClusterStub(self.channel)

    def call(self, method: str, request: Any, *, timeout: float | None = None) -> Any:
        try:
            return self.raw_call(method, request, timeout=timeout)
        except grpc.RpcError as err:
            self.fail_with(err)

    def raw_call(self, method: str, request: Any, *, timeout: float | None = None) -> Any:
        """As call, but a failure is the grpc.RpcError itself."""
        fn: Callable[..., Any] = getattr(self.stub, method)
        return fn(request, timeout=timeout or self.timeout, wait_for_ready=False)

    def stream(self, method: str, request: Any) -> Any:
        received = False
        try:
            for message in self.raw_stream(method, request):
                received = True
                yield message
        except grpc.RpcError as err:
            self.fail_with(err, streamed=received)

    def raw_stream(self, method: str, request: Any) -> Any:
        """The server stream's messages; a failure is the grpc.RpcError itself."""
        fn: Callable[..., Any] = getattr(self.stub, method)
        return fn(request)

    def fail_with(self, err: grpc.RpcError, *, streamed: bool = False) -> NoReturn:
        """One line for the failed call, exit 2 if the master is unreachable, else 1."""
        code = err.code() if hasattr(err, "code") else None
        unreachable = code in _UNREACHABLE or code == grpc.StatusCode.UNIMPLEMENTED
        fail(
            describe_error(err, self.target, streamed=streamed),
            EXIT_UNREACHABLE if unreachable else EXIT_ERROR,
        )

    def close(self) -> None:
        self.channel.close()


_UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# The master's message says it all: "no task 't-1'", not "not_found: no task 't-1'".
_SELF_EXPLAINING = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.OUT_OF_RANGE,
}


def describe_error(err: grpc.RpcError, target: str, *, streamed: bool = False) -> str:
    """One line for a failed call. `streamed`: the call had already received data, so
    the connection worked (no hint about TLS handshakes then)."""
    code = err.code() if hasattr(err, "code") else None
    raw = err.details() if hasattr(err, "details") else str(err)
    detail = " ".join((raw or "").split())
    if rpc.store_failed(err):
        return rpc.describe_rpc_error(err, target)
    if detail == rpc.TOKENS_UNCHECKABLE:
        return f"{detail} ({target})"
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return f"{target} is not a CloudAI master (it does not serve the client API)"
    if streamed and code in _UNREACHABLE:
        return (
            f"lost the connection to the CloudAI master at {target} "
            "while streaming: is `cloudai master` still running?"
        )
    if code in _SELF_EXPLAINING and detail:
        return detail
    return rpc.describe_rpc_error(err, target)


def report_exit(err: CliExit) -> int:
    if err.message:
        print(f"cloudai: {clip_words(err.message)}", file=sys.stderr)
    return err.code


# An error quoting a longer input (a 5,000-character --env name) quotes its first
# KEEP_WORD characters, as the master's errors do; paths and addresses stay whole.
LONG_WORD = 200
KEEP_WORD = 60


def clip_words(message: str) -> str:
    """The message with every overlong word (a quoted input) cut with an ellipsis,
    keeping the punctuation that ended it: the error stays a readable line."""

    def cut(m: re.Match[str]) -> str:
        word = m.group()
        end = re.search(r"\W{0,3}$", word)
        return word[:KEEP_WORD] + "…" + (end.group() if end else "")

    return re.sub(rf"\S{{{LONG_WORD + 1},}}", cut, message)


def report_usage(err: Exception) -> int:
    """A command-line usage error (unknown option or command, bad value): one line on
    stderr and exit 1, as for any bad input. A group given no command prints its help."""
    if isinstance(err, getattr(click_errors, "NoArgsIsHelpError", ())):
        print(err.format_message())  # type: ignore[attr-defined]
        return 0
    ctx = getattr(err, "ctx", None)
    see = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    print(f"cloudai: {usage_line(err)}{see}", file=sys.stderr)
    return EXIT_ERROR


def usage_line(err: Exception) -> str:
    """click's message on one line, lower-case, the bad value named when known."""
    format_message = getattr(err, "format_message", None)
    text = " ".join((format_message() if format_message else str(err)).split()).rstrip(".")
    cause, param = err.__cause__, getattr(err, "param", None)
    if param is not None and hasattr(cause, "errors"):  # typer checks types with pydantic
        first = cause.errors()[0]  # type: ignore[union-attr]
        expected = first["msg"].split(",")[0].removeprefix("Input should be ")
        flag = param.get_error_hint().replace("'", "")
        text = f"invalid value {first.get('input')!r} for {flag}: expected {expected}"
    return text[:1].lower() + text[1:]
