"""The server-side gate: who is calling, and may they call this method?

`AuthInterceptor` runs before every handler:

1. The peer's certificate (mutual TLS) must carry an allowed name, if the server
   restricts peers (a worker accepts only the master's certificate).
2. The bearer token (`authorization: Bearer <token>`) must be valid and unrevoked:
   UNAUTHENTICATED otherwise. Health checks need no token.
3. The token's role must be allowed for the method (the rules tables below):
   PERMISSION_DENIED otherwise.
4. A rule's scope check sees the request: a worker may speak only for its own id,
   and its certificate, if any, must name that same worker.

The caller's identity is then available to the handler via `current_identity()`,
which servicers use for object-level checks (who owns a task, who may pin one).
Without a tokens file every caller is `ANONYMOUS` (acts as admin): that is the
loopback development mode, which the master refuses on any other address.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from cloudai.errors import CloudAIError
from cloudai.rpc import TOKENS_UNCHECKABLE

from .tokens import ANONYMOUS, Identity, Role, TokenStore

log = logging.getLogger("cloudai.security")

_current: contextvars.ContextVar[Identity] = contextvars.ContextVar("cloudai_identity")


@dataclass(frozen=True, slots=True)
class Peer:
    """The caller's certificate, as the TLS handshake verified it ("" / empty without TLS)."""

    cn: str = ""
    sans: frozenset[str] = frozenset()


Scope = Callable[[Any, Identity, Peer], str]  # (request, identity, peer) -> problem


def current_identity() -> Identity:
    """The identity of the caller whose RPC this thread is serving."""
    return _current.get(ANONYMOUS)


@dataclass(frozen=True, slots=True)
class Rule:
    roles: frozenset[Role]
    public: bool = False  # no token needed
    scope: Scope | None = None


def own_worker(request: Any, ident: Identity, peer: Peer) -> str:
    """A worker speaks only for itself: the request's worker_id, the token's subject
    and (with mTLS) the certificate's name must all be the same worker, and the
    address it registers must be one its certificate is valid for (the master will
    dial it and check)."""
    if ident.role != Role.WORKER:
        return ""
    worker_id = getattr(request, "worker_id", "")
    if worker_id != ident.subject:
        return f"a worker token for {ident.subject!r} cannot act for worker {worker_id[:64]!r}"
    if peer.cn and peer.cn != ident.subject:
        return f"the certificate of {peer.cn[:64]!r} does not belong to worker {ident.subject!r}"
    address = getattr(request, "address", "")
    host = address.rpartition(":")[0].strip("[]").lower()
    if peer.sans and address and host not in peer.sans:
        return (
            f"worker {ident.subject!r} registers address {address[:80]!r}, but its certificate "
            f"is valid only for {', '.join(sorted(peer.sans))}: reissue it with "
            f"`cloudai certs issue DIR {ident.subject} --host {host[:64]}`"
        )
    return ""


_ALL = frozenset(Role)
_USERS = frozenset({Role.ADMIN, Role.SUBMITTER})
_ADMIN = frozenset({Role.ADMIN})

# The master's surface. Methods not listed are denied.
MASTER_RULES: dict[str, Rule] = {
    "/cloudai.v1.Cluster/SubmitTask": Rule(_USERS),  # pinning (--worker): admin, in servicer
    # Task reads and cancels: submitters see and touch only their own tasks
    # (Master.task_for, and ListTasks filtered by owner in the store query).
    "/cloudai.v1.Cluster/GetTask": Rule(_USERS),
    "/cloudai.v1.Cluster/ListTasks": Rule(_USERS),
    "/cloudai.v1.Cluster/CancelTask": Rule(_USERS),
    "/cloudai.v1.Cluster/StreamLogs": Rule(_USERS),
    "/cloudai.v1.Cluster/Explain": Rule(_USERS),
    "/cloudai.v1.Cluster/ListWorkers": Rule(_USERS),
    "/cloudai.v1.Cluster/GetStatus": Rule(_USERS),
    "/cloudai.v1.Cluster/DrainWorker": Rule(_ADMIN),
    "/cloudai.v1.MasterWorker/*": Rule(frozenset({Role.ADMIN, Role.WORKER}), scope=own_worker),
    "/cloudai.v1.MasterAgent/*": Rule(frozenset({Role.ADMIN, Role.AGENT})),
    "/grpc.health.v1.Health/*": Rule(_ALL, public=True),
    "/grpc.reflection.v1alpha.ServerReflection/*": Rule(_ALL),
}

# A worker's surface: only the master calls it.
WORKER_RULES: dict[str, Rule] = {
    "/cloudai.v1.Worker/*": Rule(frozenset({Role.MASTER, Role.ADMIN})),
    "/grpc.health.v1.Health/*": Rule(_ALL, public=True),
    "/grpc.reflection.v1alpha.ServerReflection/*": Rule(frozenset({Role.MASTER, Role.ADMIN})),
}


class Denied(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class AuthInterceptor(grpc.ServerInterceptor):
    """Checks every call against `rules`. `tokens`: the tokens file (None = no token
    checks, every caller is ANONYMOUS). `peer_names`: certificate names (CN) allowed
    to call at all (None = any certificate the CA signed)."""

    def __init__(
        self,
        rules: dict[str, Rule],
        *,
        tokens: TokenStore | None = None,
        peer_names: frozenset[str] | None = None,
    ) -> None:
        self._rules = rules
        self._tokens = tokens
        self._peer_names = peer_names

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        rule = self._rules.get(method) or self._rules.get(method.rsplit("/", 1)[0] + "/*")
        metadata = handler_call_details.invocation_metadata or ()

        def check(request: Any, context: grpc.ServicerContext) -> Identity:
            try:
                return self._check(rule, method, metadata, request, context)
            except Denied as err:
                log.warning("denied %s from %s: %s", method, context.peer(), err)
                context.abort(err.code, str(err))
                raise  # unreachable: abort raises

        return _wrap(handler, check)

    def _check(
        self,
        rule: Rule | None,
        method: str,
        metadata: Any,
        request: Any,
        context: grpc.ServicerContext,
    ) -> Identity:
        peer = _peer(context)
        if self._peer_names is not None and peer.cn and peer.cn not in self._peer_names:
            raise Denied(
                grpc.StatusCode.PERMISSION_DENIED,
                f"certificate {peer.cn[:64]!r} may not call this server",
            )
        if rule is None:
            raise Denied(grpc.StatusCode.PERMISSION_DENIED, f"{method} is not allowed")
        if self._tokens is None:
            return ANONYMOUS
        if rule.public:
            return ANONYMOUS
        ident = self._authenticate(metadata)
        if ident.role not in rule.roles:
            raise Denied(
                grpc.StatusCode.PERMISSION_DENIED,
                f"role {ident.role.value} may not call {method.rsplit('/', 1)[-1]}",
            )
        problem = rule.scope(request, ident, peer) if rule.scope and request is not None else ""
        if problem:
            raise Denied(grpc.StatusCode.PERMISSION_DENIED, problem)
        return ident

    def _authenticate(self, metadata: Any) -> Identity:
        values = [v for k, v in metadata if k == "authorization"]
        if not values:
            raise Denied(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing token: present one with --token-file or CLOUDAI_TOKEN",
            )
        scheme, _, token = str(values[0]).partition(" ")
        if len(values) > 1 or scheme.lower() != "bearer":
            raise Denied(grpc.StatusCode.UNAUTHENTICATED, "malformed authorization header")
        assert self._tokens is not None
        try:
            ident = self._tokens.lookup(token.strip())
        except CloudAIError as err:  # the tokens file vanished or was corrupted
            log.error("cannot check tokens: %s", err)
            raise Denied(grpc.StatusCode.UNAVAILABLE, TOKENS_UNCHECKABLE) from err
        if ident is None:
            # The same answer for unknown and revoked: it tells an attacker nothing.
            raise Denied(grpc.StatusCode.UNAUTHENTICATED, "invalid or revoked token")
        return ident


def _peer(context: grpc.ServicerContext) -> Peer:
    try:
        auth = context.auth_context() or {}
    except Exception:  # an in-process fake context
        return Peer()
    names = auth.get("x509_common_name") or []
    sans = auth.get("x509_subject_alternative_name") or []
    return Peer(
        cn=names[0].decode(errors="replace") if names else "",
        sans=frozenset(s.decode(errors="replace").lower() for s in sans),
    )


def _wrap(handler: grpc.RpcMethodHandler, check: Callable[..., Identity]):
    """The same handler, with `check` run first and its identity set for the call."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        inner_uu = handler.unary_unary

        def unary_unary(request, context):
            token = _current.set(check(request, context))
            try:
                return inner_uu(request, context)
            finally:
                _current.reset(token)

        return grpc.unary_unary_rpc_method_handler(unary_unary, **kwargs)
    if handler.unary_stream:
        inner_us = handler.unary_stream

        def unary_stream(request, context):
            ident = check(request, context)
            recheck = lambda: check(request, context)  # noqa: E731
            yield from _iterate_as(ident, lambda: inner_us(request, context), recheck)

        return grpc.unary_stream_rpc_method_handler(unary_stream, **kwargs)
    if handler.stream_unary:
        inner_su = handler.stream_unary

        def stream_unary(request_iterator, context):
            token = _current.set(check(None, context))
            try:
                return inner_su(request_iterator, context)
            finally:
                _current.reset(token)

        return grpc.stream_unary_rpc_method_handler(stream_unary, **kwargs)
    inner_ss = handler.stream_stream

    def stream_stream(request_iterator, context):
        ident = check(None, context)
        recheck = lambda: check(None, context)  # noqa: E731
        yield from _iterate_as(ident, lambda: inner_ss(request_iterator, context), recheck)

    return grpc.stream_stream_rpc_method_handler(stream_stream, **kwargs)


def _iterate_as(
    ident: Identity, make: Callable[[], Iterator[Any]], recheck: Callable[[], Identity]
) -> Iterator[Any]:
    """Run a response generator with the caller's identity set on every step. The
    token is checked again before every message: a stream opened before its token
    was revoked (an agent's work stream, `logs --follow`) ends at its next message
    with UNAUTHENTICATED instead of serving on."""
    token = _current.set(ident)
    try:
        it = iter(make())
    finally:
        _current.reset(token)
    try:
        while True:
            token = _current.set(ident)
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                _current.reset(token)
            recheck()  # aborts the call when the token no longer passes
            yield item
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
