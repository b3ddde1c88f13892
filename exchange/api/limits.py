"""Token-bucket rate limits: per client IP, per account, and per IP for logins.

Owns the arithmetic of a bucket (``rate`` tokens a second, at most ``burst`` saved)
and a bounded table of buckets by key. The clock is injected. Buckets live in one
Serve replica: with N replicas a client that is spread over all of them gets up to
N times the nominal rate (the app divides nominal rates by its replica count).

Must never block, sleep or do I/O.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBuckets:
    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000):
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}      # key -> (tokens, at)

    def take(self, key: str, cost: float = 1.0, rate: float | None = None,
             burst: float | None = None) -> float:
        """Takes ``cost`` tokens: 0.0 if allowed, else the seconds until it would be."""
        rate = self.rate if rate is None else rate
        burst = self.burst if burst is None else burst
        now = self.clock()
        tokens, at = self._buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - at) * rate)
        if tokens >= cost:
            self._store(key, tokens - cost, now)
            return 0.0
        self._store(key, tokens, now)
        return (cost - tokens) / rate if rate > 0 else float("inf")

    def _store(self, key: str, tokens: float, now: float) -> None:
        buckets = self._buckets
        if key not in buckets and len(buckets) >= self.max_keys:
            self._prune(now)
        buckets[key] = (tokens, now)

    def _prune(self, now: float) -> None:
        """Drops buckets that have refilled (they hold nothing a new bucket would not)."""
        full = [k for k, (tokens, at) in self._buckets.items()
                if tokens + (now - at) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) >= self.max_keys:          # under attack: forget the oldest half
            for k in list(self._buckets)[: self.max_keys // 2]:
                del self._buckets[k]
