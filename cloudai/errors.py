"""One error hierarchy for CloudAI, and its single mapping to gRPC status codes.

Third-party errors (docker, pymongo, grpc) are translated into these at the
boundary where they occur; servicers abort with `grpc_status(err)`.
An *expected* "no" (a task that does not fit, a stale report) is a value with a
reason, not an exception.
"""

from __future__ import annotations

import grpc


class CloudAIError(Exception):
    """Base class of every error CloudAI raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(CloudAIError):
    """A request field is malformed or out of bounds."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(CloudAIError):
    """The named task, worker or attempt does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class Conflict(CloudAIError):
    """The object is not in a state that allows the operation (e.g. cancel a finished task)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(CloudAIError):
    """A size or rate limit was exceeded."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(CloudAIError):
    """A peer (master, worker, Docker engine, database) cannot be reached."""

    code = grpc.StatusCode.UNAVAILABLE


class StoreError(CloudAIError):
    """The state store failed (I/O, database outage)."""

    code = grpc.StatusCode.UNAVAILABLE


class ConfigError(CloudAIError):
    """Settings are inconsistent or missing."""

    code = grpc.StatusCode.FAILED_PRECONDITION


def grpc_status(err: CloudAIError) -> grpc.StatusCode:
    return err.code


class Unauthenticated(CloudAIError):
    """No credentials, or credentials that are wrong, unknown or revoked."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(CloudAIError):
    """The caller is known, but its role does not allow the operation."""

    code = grpc.StatusCode.PERMISSION_DENIED
