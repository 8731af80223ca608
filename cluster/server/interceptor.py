"""The server interceptor: every call but the health service's needs a valid bearer token, and
reaches its handler with the caller's principal; bytes that are not a method's request answer
INVALID_ARGUMENT.

A call is checked when its handler runs, not when gRPC looks the handler up: only then is the
caller's address known, and an address past its failed authentications (`authlimit`) is refused
before its token is hashed. A request is parsed only once its caller is known."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn, Protocol

import grpc

from anneal.errors import Unauthenticated
from cluster.server.authlimit import NO_TOKEN, TOO_MANY_FAILURES, WRONG_TOKEN, FailureLimiter, RefusalLog, peer_key
from cluster.server.principals import Principal

log = logging.getLogger("anneal.auth")

OPEN_SERVICE_PREFIX = "/grpc.health.v1.Health/"


class Authenticator(Protocol):
    """What the interceptor checks tokens against: a fixed table, or one that follows the tokens file."""

    def authenticate(self, token: str | None) -> Principal | None: ...


class CallContext:
    """A call's gRPC context, with the principal the interceptor authenticated."""

    def __init__(self, context: grpc.ServicerContext, principal: Principal) -> None:
        self._context = context
        self.principal = principal

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def principal_of(context: Any) -> Principal:
    principal = getattr(context, "principal", None)
    if not isinstance(principal, Principal):
        raise Unauthenticated("no authenticated principal")
    return principal


def bearer_token(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    """The token of the first `authorization` header; its scheme is case-insensitive (RFC 6750)."""
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


_BEHAVIOURS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


class TokenInterceptor(grpc.ServerInterceptor):
    """Every method but the health service's needs `authorization: Bearer <token>`; each refusal
    is counted (`refused(reason)`, the metrics' counter) and summarised in the log."""

    def __init__(
        self,
        tokens: Authenticator,
        limiter: FailureLimiter | None = None,
        refused: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.tokens = tokens
        self.limiter = FailureLimiter() if limiter is None else limiter
        self.refused = refused
        self.refusal_log = RefusalLog()

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        if details.method.startswith(OPEN_SERVICE_PREFIX):
            return handler  # as gRPC made it: its Watch streams hold no worker thread
        token = bearer_token(details.invocation_metadata)
        return _guarded(handler, lambda context: self.admit(token, context))

    def admit(self, token: str | None, context: grpc.ServicerContext) -> Principal:
        """The caller's principal; else the call is aborted UNAUTHENTICATED (raises)."""
        peer = peer_key(context.peer())
        if self.limiter.blocked(peer):  # refused before the token is hashed
            self._refuse(context, peer, TOO_MANY_FAILURES, "too many failed authentications from this address")
        principal = self.tokens.authenticate(token)
        if principal is None:
            self.limiter.failed(peer)
            self._refuse(context, peer, WRONG_TOKEN if token else NO_TOKEN, "missing or invalid bearer token")
        return principal

    def _refuse(self, context: grpc.ServicerContext, peer: str, reason: str, message: str) -> NoReturn:
        self.refused(reason)
        self.refusal_log.refused(peer, reason)
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        raise AssertionError("context.abort returns only by raising")


class _Undecodable:
    """Stands for a request whose bytes are not the method's message."""


UNDECODABLE = _Undecodable()


def _guarded(handler: Any, admit: Callable[[grpc.ServicerContext], Principal]) -> Any:
    """The handler, taking its request as bytes: it admits the caller first (`admit` aborts a
    refused one), then parses the request, answering INVALID_ARGUMENT for bytes that are not its
    request message (gRPC itself would answer INTERNAL), and runs with the caller's principal in
    its context."""
    parse = handler.request_deserializer or (lambda data: data)

    def tolerant(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception:
            return UNDECODABLE

    def refuse(context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid message of this method")

    def checked(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[Any]:
        for data in requests:
            request = tolerant(data)
            if request is UNDECODABLE:
                refuse(context)
            yield request

    def wrap(behaviour: Callable[[Any, Any], Any], streamed: bool) -> Callable[[Any, Any], Any]:
        def call(data: Any, context: grpc.ServicerContext) -> Any:
            principal = admit(context)
            if streamed:
                request = checked(data, context)
            else:
                request = tolerant(data)
                if request is UNDECODABLE:
                    refuse(context)
            return behaviour(request, CallContext(context, principal))

        return call

    behaviours = {k: wrap(getattr(handler, k), k.startswith("stream")) for k in _BEHAVIOURS if getattr(handler, k)}
    return handler._replace(request_deserializer=None, **behaviours)
