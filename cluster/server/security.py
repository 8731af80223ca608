"""How the server checks its callers, from settings: the token table (following the tokens file
while the server runs), TLS credentials, and the refusal to listen beyond loopback unprotected."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

from anneal.errors import ConfigurationError
from anneal.settings import DEV_TOKEN_FILE, Settings, is_loopback
from anneal.tls import read_pem
from anneal.types import LOCAL_PRINCIPAL
from cluster.server.livetokens import LiveTokenTable
from cluster.server.principals import Principal, TokenTable, dev_token, hash_token

log = logging.getLogger("anneal.auth")


@dataclass(frozen=True)
class ServerSecurity:
    """What the server needs to check its callers: the token table and, for TLS, credentials."""

    tokens: TokenTable | LiveTokenTable
    credentials: grpc.ServerCredentials | None
    mutual_tls: bool = False


def server_security(settings: Settings) -> ServerSecurity:
    """The server's tokens (following the tokens file while it runs) and TLS from settings. With
    no principals configured, a development token for the admin `local`, and no file followed:
    such a server keeps to its development token until restarted. Refuses a non-loopback
    address unless TLS and configured tokens are on, or `insecure` says otherwise."""
    live = LiveTokenTable(settings)
    configured = live.principals
    check_data_roots(settings)
    credentials = server_credentials(settings)
    exposed = not is_loopback(settings.grpc_address)
    if exposed and (credentials is None or not configured):
        if not settings.insecure:
            raise ConfigurationError(
                f"refusing to listen on {settings.grpc_address}, which is not loopback, without TLS "
                "(tls_cert_file, tls_key_file) and configured tokens (tokens_file or tokens); "
                "pass --insecure to do it anyway"
            )
        log.warning("listening on %s without TLS and configured tokens (--insecure)", settings.grpc_address)
    mutual_tls = bool(settings.tls_ca_file)
    if configured:
        return ServerSecurity(live, credentials, mutual_tls)
    token = dev_token(settings.home)
    local = Principal(name=LOCAL_PRINCIPAL, token_sha256=hash_token(token), admin=True)
    log.info("no tokens configured: the development token is in %s", settings.home / DEV_TOKEN_FILE)
    return ServerSecurity(TokenTable([local]), credentials, mutual_tls)


def check_data_roots(settings: Settings) -> None:
    """A data root that holds ANNEAL_HOME would let a spec read the tokens file and the stores."""
    home = settings.home.resolve()
    for root in settings.data_roots:
        if root and home.is_relative_to(Path(root).resolve()):
            raise ConfigurationError(f"the data root {root} holds ANNEAL_HOME ({home}); name a directory of data only")


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not settings.tls_cert_file and not settings.tls_key_file:
        if settings.tls_ca_file:
            raise ConfigurationError("tls_ca_file (mutual TLS) needs tls_cert_file and tls_key_file too")
        return None
    if not (settings.tls_cert_file and settings.tls_key_file):
        raise ConfigurationError("TLS needs both tls_cert_file and tls_key_file")
    pair = (read_pem(settings.tls_key_file, "TLS key"), read_pem(settings.tls_cert_file, "TLS certificate"))
    client_ca = read_pem(settings.tls_ca_file, "client CA") if settings.tls_ca_file else None
    # Without require_client_auth, gRPC would skip the client check silently.
    return grpc.ssl_server_credentials([pair], root_certificates=client_ca, require_client_auth=client_ca is not None)
