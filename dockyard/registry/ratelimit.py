"""Rate limits for credentials: failed logins and token requests, per user and per address.

Each key (``addr:192.0.2.7``, ``user:alice``) has a token bucket: ``burst`` events at once,
refilled at ``per_minute``. Memory is bounded: at most ``max_keys`` buckets are kept, and the one
touched longest ago goes first. A key that is evicted starts again with a full bucket, so an
attacker who sprays more than ``max_keys`` addresses gains at most ``burst`` tries per address,
which the per-user bucket still caps.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

import attrs


@attrs.define
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets keyed by strings; thread-safe, bounded in memory."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.rate = per_minute / 60.0
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def minutely(cls, count: int) -> RateLimiter:
        """``count`` events a minute, a whole minute's worth of them at once."""
        return cls(per_minute=count, burst=count)

    def _refilled(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(float(self.burst), now)
            self._buckets[key] = bucket
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            self._buckets.move_to_end(key)
        return bucket

    def exhausted(self, keys: Iterable[str]) -> bool:
        """Whether any of ``keys`` has no event left now (nothing is consumed)."""
        with self._lock:
            now = self.clock()
            return any(self._refilled(key, now).tokens < 1 for key in keys if key)

    def take(self, keys: Iterable[str]) -> bool:
        """Consume one event from each of ``keys``; ``False`` (nothing consumed) if any is out."""
        with self._lock:
            now = self.clock()
            buckets = [self._refilled(key, now) for key in keys if key]
            if any(bucket.tokens < 1 for bucket in buckets):
                return False
            for bucket in buckets:
                bucket.tokens -= 1
            return True

    def retry_after(self) -> int:
        """Whole seconds until an exhausted bucket has one event again."""
        return max(1, int(1 / self.rate + 0.999))

    def __len__(self) -> int:
        return len(self._buckets)


def limit_keys(address: str = "", subject: str = "") -> tuple[str, ...]:
    """The keys one request counts against: its address and the user it named, when known."""
    keys = (address and f"addr:{address}", subject and f"user:{subject}")
    return tuple(key for key in keys if key)
