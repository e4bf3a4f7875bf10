"""AttemptLimiter: sliding window per key, bounded memory. Fake clock only."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from telecircle.services.ratelimit import AttemptLimiter


@dataclass
class FakeClock:
    t: float = 1000.0

    def now(self) -> float:
        return self.t


def test_allows_until_the_limit_then_says_how_long_to_wait() -> None:
    clock = FakeClock()
    limiter = AttemptLimiter(3, 60.0, clock)
    for _ in range(3):
        assert limiter.retry_after("addr:a") is None
        limiter.record_failure("addr:a")
        clock.t += 10
    # Failures at 1000, 1010, 1020; now 1030: the oldest leaves the window at 1060.
    assert limiter.retry_after("addr:a") == pytest.approx(30.0)
    assert limiter.retry_after("addr:b") is None


def test_window_slides() -> None:
    clock = FakeClock()
    limiter = AttemptLimiter(2, 60.0, clock)
    limiter.record_failure("k")
    clock.t += 50
    limiter.record_failure("k")
    assert limiter.retry_after("k") == pytest.approx(10.0)
    clock.t += 10  # the first failure leaves the window
    assert limiter.retry_after("k") is None
    limiter.record_failure("k")
    assert limiter.retry_after("k") == pytest.approx(50.0)


def test_reset_forgets_a_key() -> None:
    clock = FakeClock()
    limiter = AttemptLimiter(1, 60.0, clock)
    limiter.record_failure("k")
    assert limiter.retry_after("k") is not None
    limiter.reset("k")
    assert limiter.retry_after("k") is None
    limiter.reset("never seen")


def test_memory_is_bounded_per_key_and_in_keys() -> None:
    clock = FakeClock()
    limiter = AttemptLimiter(3, 60.0, clock, max_keys=100)
    for _ in range(1000):
        limiter.record_failure("busy key")
    assert limiter.retry_after("busy key") is not None
    for i in range(1000):
        clock.t += 0.001
        limiter.record_failure(f"user:{i}")
    assert len(limiter) == 100
    # The least recently failed keys went first; the newest are kept.
    assert limiter.retry_after("user:999") is None  # one failure, under the limit
    limiter.record_failure("user:999")
    limiter.record_failure("user:999")
    assert limiter.retry_after("user:999") is not None


def test_expired_keys_are_evicted_before_live_ones() -> None:
    clock = FakeClock()
    limiter = AttemptLimiter(1, 60.0, clock, max_keys=3)
    limiter.record_failure("live")  # at 1000
    clock.t += 30
    limiter.record_failure("old1")
    limiter.record_failure("old2")
    clock.t += 31  # "live" expired at 1060; "old1" and "old2" are still live
    limiter.record_failure("live")  # failed again: most recent now
    clock.t += 30  # now 1091: old1 and old2 (1030) have expired
    limiter.record_failure("new")
    assert len(limiter) == 2
    assert limiter.retry_after("live") is not None
    assert limiter.retry_after("new") is not None


def test_refuses_nonsense_configuration() -> None:
    with pytest.raises(ValueError):
        AttemptLimiter(0, 60.0, FakeClock())
    with pytest.raises(ValueError):
        AttemptLimiter(1, 0.0, FakeClock())
    with pytest.raises(ValueError):
        AttemptLimiter(1, 1.0, FakeClock(), max_keys=0)
