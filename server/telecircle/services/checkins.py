"""Where each patient is right now and whom to call in an emergency, as told on the
pre-join page at every session (telehealth practice).

Kept in memory only, for the clinicians of the patient's room, keyed by the patient's
seat key (see services/entry.py); never written to the database or the logs. Bounded:
the oldest check-ins are dropped beyond ``capacity``, and each expires after ``ttl``
seconds.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from telecircle.services.clock import Clock

LOCATION_MAX = 200
CONTACT_MAX = 200


@dataclass(frozen=True, slots=True)
class CheckIn:
    location: str
    emergency_contact: str
    at: float


class CheckIns:
    def __init__(self, clock: Clock, *, ttl: float = 12 * 3600, capacity: int = 10_000) -> None:
        self._clock = clock
        self._ttl = ttl
        self._capacity = capacity
        self._by_key: OrderedDict[str, CheckIn] = OrderedDict()

    def record(self, key: str, location: str, emergency_contact: str) -> CheckIn:
        now = self._clock.now()
        self._prune(now)
        check_in = CheckIn(location, emergency_contact, now)
        self._by_key.pop(key, None)
        self._by_key[key] = check_in
        while len(self._by_key) > self._capacity:
            self._by_key.popitem(last=False)
        return check_in

    def get(self, key: str) -> CheckIn | None:
        check_in = self._by_key.get(key)
        if check_in is None:
            return None
        if self._clock.now() - check_in.at > self._ttl:
            del self._by_key[key]
            return None
        return check_in

    def forget(self, key: str) -> None:
        self._by_key.pop(key, None)

    def _prune(self, now: float) -> None:
        # Oldest first (insertion order is recording order): stop at the first fresh one.
        while self._by_key:
            key, oldest = next(iter(self._by_key.items()))
            if now - oldest.at <= self._ttl:
                return
            del self._by_key[key]
