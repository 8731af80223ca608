"""The server interceptor: every call but the health service's needs a valid bearer token, and
reaches its handler with the caller's principal; bytes that are not a method's request answer
INVALID_ARGUMENT."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc

from anneal.errors import Unauthenticated
from cluster.server.principals import Principal, TokenTable

log = logging.getLogger("anneal.auth")

OPEN_SERVICE_PREFIX = "/grpc.health.v1.Health/"


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
    """Every method but the health service's needs `authorization: Bearer <token>`."""

    def __init__(self, tokens: TokenTable) -> None:
        self.tokens = tokens

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        if details.method.startswith(OPEN_SERVICE_PREFIX):
            return handler  # as gRPC made it: its Watch streams hold no worker thread
        principal = self.tokens.authenticate(bearer_token(details.invocation_metadata))
        if principal is None:
            log.debug("refused a call of %s: no valid bearer token", details.method)
            return _refuse(handler)
        return _parse_strictly(handler, principal)


class _Undecodable:
    """Stands for a request whose bytes are not the method's message."""


UNDECODABLE = _Undecodable()


def _parse_strictly(handler: Any, principal: Principal) -> Any:
    """The handler with the caller's principal in its context, answering INVALID_ARGUMENT for
    bytes that are not its request message (gRPC itself would answer INTERNAL)."""
    parse = handler.request_deserializer

    def tolerant(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception:
            return UNDECODABLE

    def refuse(context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request is not a valid message of this method")

    def checked(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        for request in requests:
            if request is UNDECODABLE:
                refuse(context)
            yield request

    def wrap(behaviour: Callable[[Any, Any], Any], streamed: bool) -> Callable[[Any, Any], Any]:
        def call(request: Any, context: grpc.ServicerContext) -> Any:
            if streamed:
                request = checked(request, context)
            elif request is UNDECODABLE:
                refuse(context)
            return behaviour(request, CallContext(context, principal))

        return call

    behaviours = {k: wrap(getattr(handler, k), k.startswith("stream")) for k in _BEHAVIOURS if getattr(handler, k)}
    return handler._replace(request_deserializer=tolerant if parse else None, **behaviours)


def _refuse(handler: Any) -> Any:
    """The same kind of handler, answering UNAUTHENTICATED without reading the request."""

    def deny(_: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")

    kinds = {k: deny for k in _BEHAVIOURS if getattr(handler, k)}
    return handler._replace(request_deserializer=None, **kinds)
