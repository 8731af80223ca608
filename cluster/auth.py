"""Who may call the server: principals, their bearer tokens, TLS, and the interceptor that checks them.

A principal is a name, a role (admin or not) and quotas. Its token is stored only as a
SHA-256 digest (tokens are 32 random bytes, so a fast hash is enough; no password
stretching is needed) and a presented token is compared with every digest in constant
time. Only the health service answers without a token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from anneal.client import DEV_TOKEN_FILE, read_pem
from anneal.errors import AnnealError, Unauthenticated
from anneal.settings import Settings, is_loopback
from anneal.spec import NAME_PATTERN

log = logging.getLogger("anneal.auth")

LOCAL_PRINCIPAL = "local"  # the admin of a development server, and the owner of `anneal run` studies
LOCAL_IS_RESERVED = f"{LOCAL_PRINCIPAL!r} is reserved: it owns the studies `anneal run` starts"
TOKENS_FILE = "tokens.json"
OPEN_SERVICE_PREFIX = "/grpc.health.v1.Health/"
MAX_TOKEN_CHARS = 512


class Principal(BaseModel):
    """One caller identity, as the tokens file lists it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN, description="Owner name of what the principal creates.")
    token_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="Hex SHA-256 of the bearer token.")
    admin: bool = Field(False, description="Sees and acts on every principal's studies and deployments.")
    max_concurrent_studies: int | None = Field(None, ge=0, description="Own quota; unset takes the server's.")
    max_concurrent_trials: int | None = Field(None, ge=0, description="Own quota; unset takes the server's.")

    def sees(self, owner: str) -> bool:
        return self.admin or owner == self.name


class TokensFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    principals: list[Principal] = Field(default_factory=list)

    @field_validator("principals")
    @classmethod
    def _local_is_reserved(cls, principals: list[Principal]) -> list[Principal]:
        if any(p.name == LOCAL_PRINCIPAL for p in principals):
            raise ValueError(LOCAL_IS_RESERVED)
        return principals


def token_digest(token: str) -> bytes:
    """SHA-256 of a token; any text a header could carry hashes, it then matches nothing."""
    return hashlib.sha256(token.encode(errors="surrogateescape")).digest()


def hash_token(token: str) -> str:
    return token_digest(token).hex()


def new_token() -> str:
    return secrets.token_urlsafe(32)


class TokenTable:
    """The principals a server accepts, by token digest."""

    def __init__(self, principals: Iterable[Principal]) -> None:
        self.principals = list(principals)
        names = [p.name for p in self.principals]
        if len(set(names)) != len(names):
            raise AnnealError(f"principal names must be unique; got {sorted(names)}")
        if len({p.token_sha256 for p in self.principals}) != len(names):
            raise AnnealError("two principals share one token; give each its own")
        self._digests = [(p, bytes.fromhex(p.token_sha256)) for p in self.principals]

    def authenticate(self, token: str | None) -> Principal | None:
        """The principal whose token this is; every digest is compared, each in constant time."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        digest = token_digest(token)
        found = None
        for principal, expected in self._digests:
            if hmac.compare_digest(digest, expected):
                found = principal
        return found


# ---------------------------------------------------------------- configuration


def tokens_path(settings: Settings) -> Path:
    return Path(settings.tokens_file) if settings.tokens_file else settings.home / TOKENS_FILE


def configured_principals(settings: Settings) -> list[Principal]:
    """The tokens file's principals and those of `settings.tokens`; empty when neither is set."""
    sources: list[tuple[str, str]] = []
    path = tokens_path(settings)
    if settings.tokens_file or path.exists():
        try:
            sources.append((str(path), path.read_text()))
        except OSError as error:
            raise AnnealError(f"cannot read the tokens file {path}: {error.strerror}") from None
    if settings.tokens:
        sources.append(("ANNEAL_TOKENS", settings.tokens))
    principals: list[Principal] = []
    for where, text in sources:
        try:
            principals += TokensFile.model_validate(json.loads(text)).principals
        except (ValueError, ValidationError) as error:
            raise AnnealError(f"{where} is not a valid tokens file: {error}") from None
    return principals


def dev_token(home: Path) -> str:
    """The development token under `home` (mode 0600), made on first use."""
    path = home / DEV_TOKEN_FILE
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    token = new_token()
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def add_principal(path: Path, name: str, *, admin: bool = False, **quotas: int | None) -> str:
    """Adds (or replaces) `name` in the tokens file with a new token; returns the token, which
    is not stored anywhere."""
    if name == LOCAL_PRINCIPAL:
        raise AnnealError(LOCAL_IS_RESERVED)  # before the file is read: a TokensFile would refuse it too
    token = new_token()
    principal = Principal(name=name, token_sha256=hash_token(token), admin=admin, **quotas)
    current = TokensFile.model_validate(json.loads(path.read_text())) if path.exists() else TokensFile()
    kept = [p for p in current.principals if p.name != name]
    _write_private(path, TokensFile(principals=[*kept, principal]).model_dump_json(indent=2))
    return token


def _write_private(path: Path, text: str) -> None:
    """Writes the whole file or nothing, readable by its owner only."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)  # a leftover could have another mode, or be a symlink
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(partial, path)


@dataclass(frozen=True)
class ServerSecurity:
    """What the server needs to check its callers: the token table and, for TLS, credentials."""

    tokens: TokenTable
    credentials: grpc.ServerCredentials | None
    mutual_tls: bool = False


def server_security(settings: Settings) -> ServerSecurity:
    """The server's tokens and TLS from settings. With no principals configured, a development
    token for the admin `local`. Refuses a non-loopback address unless TLS and configured
    tokens are on, or `insecure` says otherwise."""
    configured = configured_principals(settings)
    check_data_roots(settings)
    credentials = server_credentials(settings)
    exposed = not is_loopback(settings.grpc_address)
    if exposed and (credentials is None or not configured):
        if not settings.insecure:
            raise AnnealError(
                f"refusing to listen on {settings.grpc_address}, which is not loopback, without TLS "
                "(tls_cert_file, tls_key_file) and configured tokens (tokens_file or tokens); "
                "pass --insecure to do it anyway"
            )
        log.warning("listening on %s without TLS and configured tokens (--insecure)", settings.grpc_address)
    principals = configured
    if not configured:
        token = dev_token(settings.home)
        principals = [Principal(name=LOCAL_PRINCIPAL, token_sha256=hash_token(token), admin=True)]
        log.info("no tokens configured: the development token is in %s", settings.home / DEV_TOKEN_FILE)
    return ServerSecurity(TokenTable(principals), credentials, mutual_tls=bool(settings.tls_ca_file))


def check_data_roots(settings: Settings) -> None:
    """A data root that holds ANNEAL_HOME would let a spec read the tokens file and the stores."""
    home = settings.home.resolve()
    for root in settings.data_roots:
        if root and home.is_relative_to(Path(root).resolve()):
            raise AnnealError(f"the data root {root} holds ANNEAL_HOME ({home}); name a directory of data only")


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not settings.tls_cert_file and not settings.tls_key_file:
        if settings.tls_ca_file:
            raise AnnealError("tls_ca_file (mutual TLS) needs tls_cert_file and tls_key_file too")
        return None
    if not (settings.tls_cert_file and settings.tls_key_file):
        raise AnnealError("TLS needs both tls_cert_file and tls_key_file")
    pair = (read_pem(settings.tls_key_file, "TLS key"), read_pem(settings.tls_cert_file, "TLS certificate"))
    client_ca = read_pem(settings.tls_ca_file, "client CA") if settings.tls_ca_file else None
    # Without require_client_auth, gRPC would skip the client check silently.
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)


# ---------------------------------------------------------------- the interceptor


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
