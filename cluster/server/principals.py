"""Who may call the server: principals, their bearer tokens and the tokens file.

A principal is a name, a role (admin or not) and quotas. Its token is stored only as a
SHA-256 digest (tokens are 32 random bytes, so a fast hash is enough; no password
stretching is needed) and a presented token is compared with every digest in constant
time (`TokenTable`). TLS is `cluster.server.security`'s, the check of each call
`cluster.server.interceptor`'s.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from anneal.errors import ConfigurationError, InvalidArgument, NotFound
from anneal.settings import DEV_TOKEN_FILE, Settings
from anneal.spec import NAME_PATTERN
from anneal.types import LOCAL_PRINCIPAL
from cluster.server.privatefile import tighten, write_private

log = logging.getLogger("anneal.auth")

LOCAL_IS_RESERVED = f"{LOCAL_PRINCIPAL!r} is reserved: it owns the studies `anneal run` starts"
TOKENS_FILE = "tokens.json"
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
            raise ConfigurationError(f"principal names must be unique; got {sorted(names)}")
        if len({p.token_sha256 for p in self.principals}) != len(names):
            raise ConfigurationError("two principals share one token; give each its own")
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
        tighten(path, "the tokens file")
        try:
            sources.append((str(path), path.read_text()))
        except OSError as error:
            raise ConfigurationError(f"cannot read the tokens file {path}: {error.strerror}") from None
    if settings.tokens:
        sources.append(("ANNEAL_TOKENS", settings.tokens))
    principals: list[Principal] = []
    for where, text in sources:
        try:
            principals += TokensFile.model_validate(json.loads(text)).principals
        except (ValueError, ValidationError) as error:
            raise ConfigurationError(f"{where} is not a valid tokens file: {error}") from None
    return principals


def dev_token(home: Path) -> str:
    """The development token under `home` (mode 0600), made on first use."""
    path = home / DEV_TOKEN_FILE
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        tighten(path, "the development token")
        return path.read_text().strip()
    token = new_token()
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def add_principal(path: Path, name: str, *, admin: bool = False, **quotas: int | None) -> str:
    """Adds (or replaces) `name` in the tokens file with a new token; returns the token, which
    is not stored anywhere."""
    if name == LOCAL_PRINCIPAL:  # refused before the file is read: a TokensFile would refuse it too
        raise InvalidArgument.field("name", LOCAL_IS_RESERVED)
    token = new_token()
    principal = Principal(name=name, token_sha256=hash_token(token), admin=admin, **quotas)
    kept = [p for p in _read_tokens_file(path).principals if p.name != name]
    write_private(path, TokensFile(principals=[*kept, principal]).model_dump_json(indent=2))
    return token


def revoke_principal(path: Path, name: str) -> None:
    """Removes `name` and its token from the tokens file; a running server refuses the token
    from its next look at the file on (`cluster.server.livetokens`)."""
    current = _read_tokens_file(path).principals
    kept = [p for p in current if p.name != name]
    if len(kept) == len(current):
        raise NotFound(f"no principal {name!r} in {path}")
    write_private(path, TokensFile(principals=kept).model_dump_json(indent=2))


def _read_tokens_file(path: Path) -> TokensFile:
    return TokensFile.model_validate(json.loads(path.read_text())) if path.exists() else TokensFile()
