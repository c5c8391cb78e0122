"""The per-token token bucket of the HTTP transport, on a fixed clock."""

from __future__ import annotations

import pytest

from order3_mcp.http_server.rate_limit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_wait_for_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)

    assert [limiter.check(1) for _ in range(3)] == [0, 0, 0]
    assert limiter.check(1) == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.check(1) == 0
    assert limiter.check(1) == pytest.approx(0.5)


def test_tokens_have_separate_buckets() -> None:
    limiter = RateLimiter(rate=1, burst=1, clock=Clock())

    assert limiter.check(1) == 0
    assert limiter.check(2) == 0
    assert limiter.check(1) == pytest.approx(1.0)


def test_refill_stops_at_burst() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=2, clock=clock)
    limiter.check(1)
    clock.now += 60

    assert [limiter.check(1) for _ in range(3)] == [0, 0, pytest.approx(0.1)]


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_limiter_rejects_non_positive_settings(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        RateLimiter(rate=rate, burst=burst)
