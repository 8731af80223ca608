"""Failed authentications, limited per peer address, and logged in summaries.

Tokens are 256-bit, so guessing one is hopeless anyway; the limit is there so that a client
hammering the server with wrong tokens costs it neither CPU nor a flood of log lines. Each
address has a token bucket of failures: `FAILURE_BURST` failures at once, then one more per
`1 / FAILURE_REFILL_PER_S` seconds. Ten lets a misconfigured client and its retries (or
several tools started with a stale token) fail visibly without being locked out, and one a
second lets a corrected token through within seconds; an address past it is refused before
its token is hashed. An address is a host (a client's port changes with every connection),
and an IPv6 one its /64 network, the block a single host is usually given. Callers on the
server's own host are not limited (`is_local`): they all share one address.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("anneal.auth")

FAILURE_BURST = 10
FAILURE_REFILL_PER_S = 1.0
# Buckets kept at most: an attacker cycling through addresses evicts the least recently
# failed ones (which then start full again) instead of growing the map without bound.
MAX_PEERS = 10_000
# At most one summary line of refused calls per this many seconds.
REFUSAL_LOG_INTERVAL_S = 60.0
IPV6_NETWORK_BITS = 64
# Why a call was refused: the label of the failures counter and the words of the log's summary.
NO_TOKEN, WRONG_TOKEN, TOO_MANY_FAILURES = "missing_token", "invalid_token", "rate_limited"
REFUSALS = (NO_TOKEN, WRONG_TOKEN, TOO_MANY_FAILURES)

Clock = Callable[[], float]


def peer_key(peer: str) -> str:
    """The address a gRPC peer string (`ipv4:10.0.0.5:53211`, `ipv6:[2001:db8::1]:53211`,
    `unix:/path`) is limited by: its host without the port, an IPv6 host's /64 network (an
    IPv4 host that a dual-stack socket shows as IPv6, its IPv4 address)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return f"ipv4:{rest.rpartition(':')[0]}"
    if kind != "ipv6":
        return peer
    host = rest.rpartition(":")[0].strip("[]").partition("%")[0]
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        return f"ipv6:{host}"
    if address.ipv4_mapped is not None:
        return f"ipv4:{address.ipv4_mapped}"
    if address.is_loopback:
        return f"ipv6:{address}"
    return f"ipv6:{ipaddress.IPv6Network((address, IPV6_NETWORK_BITS), strict=False)}"


def is_local(key: str) -> bool:
    """Whether a peer (as `peer_key` gives it) is on the server's own host: loopback, or a Unix socket."""
    kind, _, host = key.partition(":")
    if kind == "unix" or kind == "unix-abstract":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class _Bucket:
    failures_left: float
    updated: float


class FailureLimiter:
    """A token bucket of failed authentications per peer address; thread-safe. Peers that
    `exempt` names are never limited: by default those on the server's own host, which every
    local tool shares (one script with a stale token would shut the others out) and whose users
    reach Ray and Serve directly anyway."""

    def __init__(
        self,
        burst: int = FAILURE_BURST,
        refill_per_s: float = FAILURE_REFILL_PER_S,
        max_peers: int = MAX_PEERS,
        clock: Clock = time.monotonic,
        exempt: Callable[[str], bool] = is_local,
    ) -> None:
        self.exempt = exempt
        self.burst = burst
        self.refill_per_s = refill_per_s
        self.max_peers = max_peers
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()  # least recently failed first
        # A bucket untouched this long is full again, the same as no bucket.
        self._refilled_after_s = burst / refill_per_s

    def blocked(self, peer: str) -> bool:
        """Whether `peer` has used up its failures: its calls are refused unchecked."""
        if peer not in self._buckets:  # the common case, every legitimate caller: no lock
            return False
        with self._lock:
            bucket = self._buckets.get(peer)
            return bucket is not None and self._refill(bucket) < 1.0

    def failed(self, peer: str) -> None:
        """Takes one failure from `peer`'s bucket."""
        if self.exempt(peer):
            return
        with self._lock:
            now = self._clock()
            bucket = self._buckets.pop(peer, None) or _Bucket(float(self.burst), now)
            bucket.failures_left = max(0.0, self._refill(bucket) - 1.0)
            self._buckets[peer] = bucket  # to the end: the most recently failed
            self._evict(now)

    def __len__(self) -> int:
        return len(self._buckets)

    def _refill(self, bucket: _Bucket) -> float:
        now = self._clock()
        bucket.failures_left = min(float(self.burst), bucket.failures_left + (now - bucket.updated) * self.refill_per_s)
        bucket.updated = now
        return bucket.failures_left

    def _evict(self, now: float) -> None:
        """Drops buckets that have refilled (they are the oldest, at the front), then the least
        recently failed ones past `max_peers`."""
        while self._buckets:
            oldest = next(iter(self._buckets.values()))
            if now - oldest.updated < self._refilled_after_s and len(self._buckets) <= self.max_peers:
                return
            self._buckets.popitem(last=False)


class RefusalLog:
    """Refused calls, logged as one summary line per interval rather than one line each: a
    caller can make refusals as fast as it can send calls, and each would be a log line."""

    def __init__(self, interval_s: float = REFUSAL_LOG_INTERVAL_S, clock: Clock = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._reasons: Counter[str] = Counter()
        self._peers: set[str] = set()
        self._since: float | None = None  # when the last summary was logged; None before the first

    def refused(self, peer: str, reason: str) -> None:
        with self._lock:
            self._reasons[reason] += 1
            if len(self._peers) < MAX_PEERS:
                self._peers.add(peer)
            now = self._clock()
            if self._since is not None and now - self._since < self.interval_s:
                return
            summary, self._reasons, self._peers = self._summary(now), Counter(), set()
            self._since = now
        log.warning("%s", summary)

    def _summary(self, now: float) -> str:
        counts = ", ".join(f"{count} {reason}" for reason, count in sorted(self._reasons.items()))
        window = "" if self._since is None else f" in the last {now - self._since:.0f} s"
        shown = sorted(self._peers)[:3]
        more = f" and {len(self._peers) - len(shown)} more" if len(self._peers) > len(shown) else ""
        total = sum(self._reasons.values())
        return f"refused {total} unauthenticated calls{window} ({counts}) from {', '.join(shown)}{more}"
