"""Tokens that change while the real server runs: a server of the test's own on the session's
service, its principals in a tokens file the test edits as `anneal token` does; and the mode
of the Ray token the session's cluster was started with."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from prometheus_client import generate_latest

from anneal import Client
from anneal.errors import Unauthenticated
from anneal.settings import Settings
from cluster.local.cluster import ray_token_path
from cluster.server.authlimit import FailureLimiter
from cluster.server.main import start_server
from cluster.server.principals import add_principal, revoke_principal, tokens_path
from cluster.server.security import server_security
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration

SEEN_WITHIN_S = 5.0  # the server looks at the file once a second; the rest is slack for a busy machine
POLL_S = 0.5


@contextmanager
def server_of(stack: Stack, home: Path, limiter: FailureLimiter | None = None) -> Iterator[str]:
    """A plaintext loopback server of the session's service whose principals are those of
    `home`'s tokens file; yields its address."""
    settings = Settings.load(home=home, grpc_address="127.0.0.1:0")
    security = server_security(settings)
    server = start_server(stack.service, settings.grpc_address, security, tend_drivers=False, failure_limiter=limiter)
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        server.stop(grace_s=0)


def lists(address: str, token: str) -> bool:
    """Whether a ListStudies with `token` is answered; False when it is UNAUTHENTICATED."""
    with Client(address, token=token) as client:
        try:
            client.list_studies()
        except Unauthenticated:
            return False
    return True


def eventually(condition: Callable[[], bool]) -> float:
    """Seconds until `condition` held; fails past SEEN_WITHIN_S."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < SEEN_WITHIN_S
        time.sleep(POLL_S)
    return time.monotonic() - started


def test_a_revoked_token_is_refused_without_a_restart(stack: Stack, tmp_path: Path) -> None:
    path = tokens_path(Settings.load(home=tmp_path))
    alice = add_principal(path, "alice")
    with server_of(stack, tmp_path) as address:
        assert lists(address, alice)
        bob = add_principal(path, "bob")
        eventually(lambda: lists(address, bob))
        revoke_principal(path, "alice")
        eventually(lambda: not lists(address, alice))
        with Client(address, token=alice) as client, pytest.raises(Unauthenticated):
            client.list_studies()  # and stays refused
        assert lists(address, bob)
        renewed = add_principal(path, "bob")  # rotated: the old token stops, the new one works
        eventually(lambda: lists(address, renewed) and not lists(address, bob))
    scrape = generate_latest(stack.service.metrics.registry).decode()
    assert 'anneal_auth_failures_total{reason="invalid_token"}' in scrape


def test_a_peer_past_its_failures_is_refused_but_others_are_not(stack: Stack, tmp_path: Path) -> None:
    """Every caller here is on the server's host, which a server leaves alone by default: this
    one limits it as it would a remote address."""
    path = tokens_path(Settings.load(home=tmp_path))
    alice = add_principal(path, "alice")
    with server_of(stack, tmp_path, FailureLimiter(exempt=lambda peer: False)) as address:
        with grpc.insecure_channel(address) as channel:
            send = channel.unary_unary("/anneal.v1.AnnealService/ListStudies")
            codes = []
            for n in range(12):
                try:
                    send(b"", metadata=(("authorization", f"Bearer guess-{n}"),), timeout=10)
                except grpc.RpcError as error:
                    codes.append((error.code(), error.details()))
        assert {code for code, _ in codes} == {grpc.StatusCode.UNAUTHENTICATED}
        assert codes[-1][1] == "too many failed authentications from this address"
        assert not lists(address, alice)  # the same address, for now
    with server_of(stack, tmp_path) as address:
        for n in range(20):
            assert not lists(address, f"guess-{n}")
        assert lists(address, alice)  # by default, callers on the server's host are never held up


def test_the_clusters_ray_token_is_readable_by_its_owner_only(stack: Stack) -> None:
    path = ray_token_path(dict(os.environ))
    assert path is not None and path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
