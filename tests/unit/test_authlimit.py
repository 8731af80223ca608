"""Failed authentications limited per peer address: the token bucket, its bounded map of
addresses, the summarised log, and the interceptor refusing an address past its limit without
hashing its token. No server: the interceptor's handlers are called as gRPC calls them."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any, NamedTuple

import grpc
import pytest

from anneal.v1 import anneal_pb2 as pb
from cluster.server import principals
from cluster.server.authlimit import FAILURE_BURST, FailureLimiter, RefusalLog, peer_key
from cluster.server.interceptor import TokenInterceptor
from cluster.server.principals import TokenTable
from tests.unit.helpers import principal

ATTACKER, ALICE_PEER = "ipv4:203.0.113.9:40001", "ipv4:198.51.100.7:50000"
LIST = "/anneal.v1.AnnealService/ListStudies"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Details(NamedTuple):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class Aborted(Exception):
    pass


class Context:
    """The part of a gRPC servicer context the interceptor uses."""

    def __init__(self, peer: str) -> None:
        self._peer = peer
        self.code: grpc.StatusCode | None = None
        self.details = ""

    def peer(self) -> str:
        return self._peer

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise Aborted(details)


def test_a_peer_has_a_burst_of_failures_then_one_a_second() -> None:
    clock = Clock()
    limiter = FailureLimiter(burst=10, refill_per_s=1.0, clock=clock)
    for _ in range(10):
        assert not limiter.blocked("a")
        limiter.failed("a")
    assert limiter.blocked("a")
    assert not limiter.blocked("b")  # every address has a bucket of its own
    clock.now += 0.5
    assert limiter.blocked("a")
    clock.now += 0.5  # one failure back
    assert not limiter.blocked("a")
    limiter.failed("a")
    assert limiter.blocked("a")
    clock.now += 60  # never more than the burst, however long it waited
    for _ in range(10):
        limiter.failed("a")
    assert limiter.blocked("a")


def test_the_map_of_peers_stays_bounded() -> None:
    clock = Clock()
    limiter = FailureLimiter(burst=10, refill_per_s=1.0, max_peers=100, clock=clock)
    for n in range(10_000):  # an attacker cycling through addresses
        limiter.failed(f"ipv4:10.0.{n // 256}.{n % 256}")
    assert len(limiter) == 100
    clock.now += 10  # every bucket has refilled: the same as none, and dropped at the next failure
    limiter.failed("ipv4:10.9.9.9")
    assert len(limiter) == 1


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ("ipv4:127.0.0.1:53211", "ipv4:127.0.0.1"),
        ("ipv6:[::1]:53211", "ipv6:::1"),
        ("ipv6:[::ffff:10.0.0.5]:53211", "ipv4:10.0.0.5"),  # an IPv4 caller of a dual-stack socket
        ("ipv6:[2001:db8:1:2:aaaa::1]:1", "ipv6:2001:db8:1:2::/64"),
        ("ipv6:[2001:db8:1:2:bbbb::9]:2", "ipv6:2001:db8:1:2::/64"),  # one host's /64 is one address
        ("unix:/tmp/anneal.sock", "unix:/tmp/anneal.sock"),
    ],
)
def test_a_peer_is_its_host_without_the_port(peer: str, key: str) -> None:
    assert peer_key(peer) == key


def test_callers_on_the_servers_own_host_are_not_limited() -> None:
    limiter = FailureLimiter(burst=1)
    for peer in ("ipv4:127.0.0.1:1", "ipv4:127.0.0.2:1", "ipv6:[::1]:1", "ipv6:[::ffff:127.0.0.1]:1", "unix:/s"):
        for _ in range(3):
            limiter.failed(peer_key(peer))
        assert not limiter.blocked(peer_key(peer))
    assert len(limiter) == 0
    limiter.failed(peer_key(ATTACKER))
    assert limiter.blocked(peer_key(ATTACKER))


def test_refusals_are_logged_as_a_summary_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    refusals = RefusalLog(interval_s=60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="anneal.auth"):
        for n in range(1000):
            refusals.refused(f"ipv4:10.0.0.{n % 5}", "invalid_token")
        clock.now += 60
        refusals.refused("ipv4:10.0.0.9", "rate_limited")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0] == "refused 1 unauthenticated calls (1 invalid_token) from ipv4:10.0.0.0"
    assert lines[1] == (
        "refused 1000 unauthenticated calls in the last 60 s (999 invalid_token, 1 rate_limited) "
        "from ipv4:10.0.0.0, ipv4:10.0.0.1, ipv4:10.0.0.2 and 3 more"
    )


def handler_of(interceptor: TokenInterceptor, token: str | None, parsed: list[Any]) -> Callable[..., Any]:
    """What the interceptor makes of ListStudies for a call with `token`; the method records
    the requests it gets, and the parser the bytes it parses."""

    def parse(data: bytes) -> pb.ListStudiesRequest:
        parsed.append(data)
        return pb.ListStudiesRequest.FromString(data)

    def list_studies(request: pb.ListStudiesRequest, context: Any) -> str:
        return context.principal.name

    method = grpc.unary_unary_rpc_method_handler(list_studies, request_deserializer=parse)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    handler = interceptor.intercept_service(lambda details: method, Details(LIST, metadata))
    assert handler.request_deserializer is None  # the request is parsed once its caller is known
    unary: Callable[..., Any] = handler.unary_unary
    return unary


def call(interceptor: TokenInterceptor, token: str | None, peer: str, parsed: list[Any] | None = None) -> str:
    """The principal's name, or the status code the call was refused with."""
    context = Context(peer)
    try:
        return str(handler_of(interceptor, token, [] if parsed is None else parsed)(b"", context))
    except Aborted:
        assert context.code is not None
        return context.code.name


@pytest.fixture
def digests(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every token hashed, in order."""
    hashed: list[str] = []
    real = principals.token_digest

    def counted(token: str) -> bytes:
        hashed.append(token)
        return real(token)

    monkeypatch.setattr(principals, "token_digest", counted)
    return hashed


def test_past_its_limit_a_peer_is_refused_without_its_token_being_hashed(digests: list[str]) -> None:
    clock = Clock()
    refused: Counter[str] = Counter()
    tokens = TokenTable([principal("alice")])
    interceptor = TokenInterceptor(tokens, FailureLimiter(clock=clock), refused=lambda reason: refused.update([reason]))
    digests.clear()  # the table's own
    for n in range(FAILURE_BURST):
        assert call(interceptor, f"guess-{n}", ATTACKER) == "UNAUTHENTICATED"
    assert len(digests) == FAILURE_BURST
    parsed: list[Any] = []
    for _ in range(100):
        assert call(interceptor, "token-of-alice", ATTACKER, parsed) == "UNAUTHENTICATED"  # even a right one
    assert len(digests) == FAILURE_BURST and parsed == []  # neither hashed nor parsed
    assert call(interceptor, "token-of-alice", ALICE_PEER, parsed) == "alice"  # another address is not held up
    assert call(interceptor, "token-of-alice", "ipv4:198.51.100.7:50001") == "alice"
    assert parsed == [b""]
    assert refused == {"invalid_token": FAILURE_BURST, "rate_limited": 100}
    clock.now += 1.0
    assert call(interceptor, "token-of-alice", ATTACKER) == "alice"  # one try back a second later


def test_a_call_without_a_token_counts_as_a_failure(digests: list[str]) -> None:
    refused: Counter[str] = Counter()
    interceptor = TokenInterceptor(TokenTable([principal("alice")]), refused=lambda reason: refused.update([reason]))
    for _ in range(FAILURE_BURST + 1):
        call(interceptor, None, ATTACKER)
    assert refused == {"missing_token": FAILURE_BURST, "rate_limited": 1}


def test_a_refused_call_says_why() -> None:
    interceptor = TokenInterceptor(TokenTable([principal("alice")]), FailureLimiter(burst=1))
    first, second = Context(ATTACKER), Context(ATTACKER)
    for context in (first, second):
        with pytest.raises(Aborted):
            handler_of(interceptor, "wrong", [])(b"", context)
    assert (first.code, first.details) == (grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")
    assert second.details == "too many failed authentications from this address"


def test_undecodable_bytes_of_a_known_caller_are_invalid_argument() -> None:
    interceptor = TokenInterceptor(TokenTable([principal("alice")]))
    context = Context(ALICE_PEER)
    with pytest.raises(Aborted):
        handler_of(interceptor, "token-of-alice", [])(b"\xff\xff\xff", context)
    assert context.code is grpc.StatusCode.INVALID_ARGUMENT
