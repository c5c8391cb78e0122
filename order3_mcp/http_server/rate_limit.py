"""Per-token request rate limits: one token bucket per token id."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_RATE = 20.0
DEFAULT_BURST = 40
# Buckets kept at once. Beyond this the least recently used one is dropped, so
# that token starts again with a full bucket.
MAX_BUCKETS = 10_000


@dataclass
class TokenBucket:
    """Up to `burst` requests at once, refilled at `rate` requests per second."""

    rate: float
    burst: float
    level: float
    updated: float

    def take(self, now: float) -> float:
        """Take one request from the bucket and return 0, or return the seconds until one is available."""
        self.level = min(self.burst, self.level + (now - self.updated) * self.rate)
        self.updated = now
        if self.level >= 1:
            self.level -= 1
            return 0.0
        return (1 - self.level) / self.rate


class RateLimiter:
    """Token buckets keyed by token id, all with the same rate and burst."""

    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be a positive number of requests per second, not {rate!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1 request, not {burst!r}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[int, TokenBucket] = OrderedDict()

    def check(self, token_id: int) -> float:
        """Count one request for `token_id`; return 0 if it may proceed, else the seconds to wait."""
        now = self._clock()
        bucket = self._buckets.get(token_id)
        if bucket is None:
            bucket = TokenBucket(rate=self.rate, burst=self.burst, level=self.burst, updated=now)
            self._buckets[token_id] = bucket
            if len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(token_id)
        return bucket.take(now)
