"""Token bucket rate limiting for signalling connections."""

from __future__ import annotations

import enum

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


class Verdict(enum.Enum):
    ACCEPT = "accept"
    REFUSE = "refuse"  # over the rate: an error ack, the connection stays
    DISCONNECT = "disconnect"  # a sustained flood: the connection is closed


class MessageRate:
    """A connection's message allowance: a token bucket, and how many refused messages
    it is forgiven.

    Each refused message is a strike and each accepted one takes a strike away, so a
    burst now and then is only throttled, while a client that keeps sending at more
    than twice the rate gathers ``strikes`` and is disconnected. (Clearing the strikes
    on any accepted message instead would never disconnect a flood: at 1,000 messages a
    second against 20, one message in fifty gets through and starts the count again.)
    """

    def __init__(self, rate: float, burst: int, strikes: int, clock: Clock) -> None:
        self._bucket = TokenBucket(rate, burst, clock)
        self._strikes_allowed = strikes
        self.strikes = 0

    def check(self) -> Verdict:
        """Account for one more message and say what becomes of it."""
        if self._bucket.take():
            self.strikes = max(0, self.strikes - 1)
            return Verdict.ACCEPT
        self.strikes += 1
        if self.strikes >= self._strikes_allowed:
            return Verdict.DISCONNECT
        return Verdict.REFUSE


class Cooldowns:
    """People who may not connect again yet (after being closed for abuse), by key.
    Entries past their time are forgotten whenever one is added."""

    def __init__(self, seconds: float, clock: Clock) -> None:
        self._seconds = seconds
        self._clock = clock
        self._until: dict[str, float] = {}

    def start(self, key: str) -> None:
        """``key`` may not connect for the next ``seconds`` (nothing if that is 0)."""
        now = self._clock.now()
        self._until = {k: until for k, until in self._until.items() if until > now}
        if self._seconds > 0:
            self._until[key] = now + self._seconds

    def cooling(self, key: str) -> bool:
        return self._until.get(key, 0.0) > self._clock.now()
