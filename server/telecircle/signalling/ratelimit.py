"""Token bucket rate limiting for signalling connections."""

from __future__ import annotations

from telecircle.services.clock import Clock


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up. ``take()`` spends one."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock.now()

    def take(self) -> bool:
        """True if a token was available (and spent), False when over the limit."""
        now = self._clock.now()
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
