"""Counting failed attempts (sign-ins, second-factor codes) per key, in memory.

A key names what is limited, e.g. ``"addr:192.0.2.7"`` or ``"user:alice"``. The window
slides: a key is limited while ``limit`` failures lie within the last ``window``
seconds, until the oldest of them leaves the window. Memory is bounded: at most
``limit`` timestamps per key and ``max_keys`` keys; past that the least recently
failed key is forgotten (expired keys first).

Counts are per process and lost on restart, which suits a single-process server.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from telecircle.services.clock import Clock


class AttemptLimiter:
    """Sliding-window failure counter. Pure in-memory; time comes from ``clock``."""

    def __init__(self, limit: int, window: float, clock: Clock, max_keys: int = 10_000) -> None:
        if limit < 1 or window <= 0 or max_keys < 1:
            raise ValueError("limit, window and max_keys must be positive")
        self._limit = limit
        self._window = window
        self._clock = clock
        self._max_keys = max_keys
        # Least recently failed first; each deque holds at most ``limit`` times, oldest first.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    @property
    def limit(self) -> int:
        return self._limit

    @property
    def window(self) -> float:
        return self._window

    def __len__(self) -> int:
        """How many keys are remembered."""
        return len(self._failures)

    def retry_after(self, key: str) -> float | None:
        """None if ``key`` may try now; else the seconds (> 0) until it may."""
        times = self._live(key)
        if times is None or len(times) < self._limit:
            return None
        return times[0] + self._window - self._clock.now()

    def record_failure(self, key: str) -> None:
        """Count one failure for ``key`` at the clock's current time."""
        now = self._clock.now()
        times = self._live(key)
        if times is None:
            self._failures[key] = deque((now,), maxlen=self._limit)
            self._evict()
            return
        times.append(now)
        self._failures.move_to_end(key)

    def reset(self, key: str) -> None:
        """Forget every failure of ``key``."""
        self._failures.pop(key, None)

    def _live(self, key: str) -> deque[float] | None:
        """The key's failures within the window (older ones dropped), or None."""
        times = self._failures.get(key)
        if times is None:
            return None
        horizon = self._clock.now() - self._window
        while times and times[0] <= horizon:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def _evict(self) -> None:
        if len(self._failures) <= self._max_keys:
            return
        horizon = self._clock.now() - self._window
        # Keys whose newest failure has left the window hold nothing worth keeping.
        expired = [key for key, times in self._failures.items() if times[-1] <= horizon]
        for key in expired:
            del self._failures[key]
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)
