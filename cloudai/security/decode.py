"""Requests that are not valid protobuf: INVALID_ARGUMENT, not INTERNAL.

gRPC Python decodes a request before any interceptor or handler sees it. When the
bytes are not a message of the method's type (garbage, a truncated message, a
string field with invalid UTF-8), it answers INTERNAL "Exception deserializing
request!" and logs a traceback, for every such call and before any token is
checked: any caller could flood the server's log, and a client could not tell its
own malformed request from a server bug.

`DecodeGuard` (the last, innermost interceptor) decodes instead: a request that
does not parse becomes a marker, the interceptors before it still authenticate
the call (an unauthenticated caller gets UNAUTHENTICATED, as for any call), and
then the call ends INVALID_ARGUMENT with one line naming the expected message.
Only methods with a single request are guarded (every CloudAI method); streamed
requests (server reflection) keep gRPC's own handling.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError

MAX_REASON_CHARS = 120


class Undecodable:
    """Stands for a request that did not parse; has no fields."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def _safe(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    message_type = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    name = getattr(message_type, "full_name", "") or "request message"

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as err:
            # "Error parsing message with type 'X': Wire format was corrupt" -> the cause.
            cause = str(err).rpartition(": ")[2] or "cannot parse"
            cause = " ".join(cause.split())[:MAX_REASON_CHARS]
            return Undecodable(f"malformed request: not a valid {name} ({cause})")
        except Exception:  # noqa: BLE001 - any other parse failure, same answer
            return Undecodable(f"malformed request: not a valid {name}")

    return decode


class DecodeGuard(grpc.ServerInterceptor):
    def __init__(self) -> None:
        # By method: its handler and the guarded one, built once (not at every call).
        self._guarded: dict[str, tuple[Any, Any]] = {}

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        known = self._guarded.get(method)
        if known is not None and known[0] is handler:
            return known[1]
        guarded = _guard(handler)
        self._guarded[method] = (handler, guarded)
        return guarded


def _guard(handler):
    """`handler` with a decoder that never raises, and its single-request methods
    ending INVALID_ARGUMENT on a request that did not decode."""
    kwargs = {
        "request_deserializer": _safe(handler.request_deserializer),
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        inner_uu = handler.unary_unary

        def unary_unary(request, context):
            if isinstance(request, Undecodable):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            return inner_uu(request, context)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
    if handler.unary_stream:
        inner_us = handler.unary_stream

        def unary_stream(request, context):
            if isinstance(request, Undecodable):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.message)
            yield from inner_us(request, context)

        return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
    return handler
