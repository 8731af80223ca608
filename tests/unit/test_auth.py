"""Tokens, principals and the server's refusal to listen exposed: no gRPC, no Ray."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest

from anneal.client import Client
from anneal.errors import AnnealError
from anneal.settings import DEV_TOKEN_FILE, Settings, is_loopback
from anneal.types import LOCAL_PRINCIPAL
from cluster.server.interceptor import bearer_token
from cluster.server.principals import TokenTable, add_principal, configured_principals, dev_token, hash_token
from cluster.server.security import server_security
from tests.tls import make_certificates
from tests.unit.helpers import principal


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_token_finds_its_principal_and_nothing_else_does() -> None:
    table = TokenTable([principal("alice"), principal("bob", admin=True)])
    assert table.authenticate("token-of-alice") == principal("alice")
    assert table.authenticate("token-of-bob") == principal("bob", admin=True)
    for wrong in ("", None, "token-of-carol", "token-of-alice ", "TOKEN-OF-ALICE", "x" * 100_000):
        assert table.authenticate(wrong) is None


def test_principal_names_are_unique() -> None:
    with pytest.raises(AnnealError, match="unique"):
        TokenTable([principal("alice"), principal("alice", admin=True)])


def test_bearer_token_reads_only_the_authorization_header() -> None:
    assert bearer_token([("x-other", "Bearer nope"), ("authorization", "Bearer abc")]) == "abc"
    assert bearer_token([("authorization", "bearer abc")]) == "abc"  # the scheme is case-insensitive
    assert bearer_token([("authorization", "Basic abc")]) is None
    assert bearer_token(None) is None


def test_two_principals_cannot_share_a_token() -> None:
    twin = principal("alice").model_copy(update={"name": "bob"})
    with pytest.raises(AnnealError, match="share one token"):
        TokenTable([principal("alice"), twin])


def test_the_local_principal_is_reserved(tmp_path: Path) -> None:
    with pytest.raises(AnnealError, match="reserved"):
        add_principal(tmp_path / "tokens.json", LOCAL_PRINCIPAL)
    listed = json.dumps({"principals": [{"name": LOCAL_PRINCIPAL, "token_sha256": hash_token("t")}]})
    with pytest.raises(AnnealError, match="reserved"):
        configured_principals(Settings.load(home=tmp_path, tokens=listed))


def test_the_tokens_file_holds_hashes_only_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    alice = add_principal(path, "alice", max_concurrent_studies=2)
    admin = add_principal(path, "root", admin=True)
    text = path.read_text()
    assert alice not in text and admin not in text
    assert hash_token(alice) in text
    assert mode(path) == 0o600
    principals = configured_principals(Settings.load(home=tmp_path))
    assert [(p.name, p.admin, p.max_concurrent_studies) for p in principals] == [
        ("alice", False, 2),
        ("root", True, None),
    ]
    again = add_principal(path, "alice")  # a new token replaces the old one
    table = TokenTable(configured_principals(Settings.load(home=tmp_path)))
    assert table.authenticate(alice) is None
    assert table.authenticate(again) is not None


def test_principals_come_from_the_environment_too(tmp_path: Path) -> None:
    listed = json.dumps({"principals": [{"name": "carol", "token_sha256": hash_token("t")}]})
    principals = configured_principals(Settings.load(home=tmp_path, tokens=listed))
    assert [p.name for p in principals] == ["carol"]


def test_a_broken_tokens_file_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "tokens.json").write_text('{"principals": [{"name": "Bad Name", "token_sha256": "zz"}]}')
    with pytest.raises(AnnealError, match="tokens.json is not a valid tokens file"):
        configured_principals(Settings.load(home=tmp_path))


def test_without_tokens_a_development_token_is_made_once_and_private(tmp_path: Path) -> None:
    security = server_security(Settings.load(home=tmp_path))
    token = (tmp_path / DEV_TOKEN_FILE).read_text().strip()
    assert mode(tmp_path / DEV_TOKEN_FILE) == 0o600
    assert security.tokens.authenticate(token) == security.tokens.principals[0]
    assert security.tokens.principals[0].name == LOCAL_PRINCIPAL and security.tokens.principals[0].admin
    assert dev_token(tmp_path) == token
    assert security.credentials is None


def test_the_client_sends_the_development_token_to_loopback_only(tmp_path: Path) -> None:
    token = dev_token(tmp_path)
    client = Client.from_settings(Settings.load(home=tmp_path))
    assert client._metadata == (("authorization", f"Bearer {token}"),)
    chosen = Client.from_settings(Settings.load(home=tmp_path, token="mine"))
    assert chosen._metadata == (("authorization", "Bearer mine"),)
    remote = Client.from_settings(Settings.load(home=tmp_path, grpc_address="anneal.example.com:50051"))
    assert remote._metadata == ()


def test_the_client_sends_no_token_in_plaintext_beyond_loopback() -> None:
    with pytest.raises(AnnealError, match="refusing to send a token in plaintext"):
        Client("10.0.0.5:50051", token="t")
    Client("10.0.0.5:50051", token="t", insecure=True).close()  # said so explicitly
    Client("127.0.0.1:50051", token="t").close()


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.0.0.2:1", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        ("10.1.2.3:50051", False),
        ("anneal.example.com:443", False),
        (":50051", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def exposed(tmp_path: Path, **changes: object) -> Settings:
    return Settings.load(home=tmp_path, grpc_address="0.0.0.0:50051", **changes)


def test_an_exposed_address_needs_tls_and_configured_tokens(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path / "tls")
    tls = {"tls_cert_file": certificates.server.cert, "tls_key_file": certificates.server.key}
    tokens = json.dumps({"principals": [{"name": "alice", "token_sha256": hash_token("t")}]})
    for changes in ({}, {"tokens": tokens}, tls):
        with pytest.raises(AnnealError, match="refusing to listen on 0.0.0.0:50051"):
            server_security(exposed(tmp_path, **changes))
    assert not (tmp_path / DEV_TOKEN_FILE).exists()  # a refused server leaves nothing behind
    security = server_security(exposed(tmp_path, tokens=tokens, **tls))
    assert security.credentials is not None and not security.mutual_tls
    mutual = server_security(exposed(tmp_path, tokens=tokens, tls_ca_file=certificates.ca, **tls))
    assert mutual.mutual_tls


def test_insecure_lets_an_exposed_address_through_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="anneal.auth"):
        server_security(exposed(tmp_path, insecure=True))
    assert "without TLS and configured tokens (--insecure)" in caplog.text


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tls_cert_file": "/no/such.crt"}, "needs both"),
        ({"tls_cert_file": "/no/such.crt", "tls_key_file": "/no/such.key"}, "cannot read the TLS key"),
        ({"tls_ca_file": "/no/ca.crt"}, "mutual TLS"),
    ],
)
def test_tls_settings_that_cannot_work_are_refused(tmp_path: Path, changes: dict[str, str], message: str) -> None:
    with pytest.raises(AnnealError, match=message):
        server_security(Settings.load(home=tmp_path, **changes))


def test_ray_never_sees_the_client_token_or_the_principals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cluster.environment import child_env

    settings = Settings.load(home=tmp_path, token="secret", tokens='{"principals": []}')
    assert {"ANNEAL_TOKEN", "ANNEAL_TOKENS"}.isdisjoint(settings.to_env())
    assert settings.to_env(secrets=True)["ANNEAL_TOKEN"] == "secret"
    monkeypatch.setenv("ANNEAL_TOKEN", "inherited")
    assert "ANNEAL_TOKEN" not in child_env(settings, secrets=False)  # what `ray start` and its jobs get
    assert "secret" not in repr(settings)


def test_a_data_root_holding_anneal_home_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for root in (str(tmp_path), str(home)):
        with pytest.raises(AnnealError, match="holds ANNEAL_HOME"):
            server_security(Settings.load(home=home, data_roots=[root]))
    server_security(Settings.load(home=home))  # the default, home/data, holds no secrets
