"""The video packets a publisher's stream is missing at the SFU, asked for at once and
again until they come (or a keyframe makes them moot).

The SFU's publisher connections bypass aiortc's receive path (aiortc_tap.take_rtp), so
this is the only NACK logic they have. aiortc 1.16's own (``NackGenerator``) was not
enough anyway: it sends a NACK only when a *new* gap appears in the sequence numbers.
A packet whose NACK or retransmission is lost as well is asked for again only when some
later packet is lost; on a path whose loss comes in bursts, the last losses of a burst
are never asked for again. The SFU is the only receiver of a publisher's stream, so such a packet
is then missing for every subscriber: an aiortc-based receiver holds every later frame
in its jitter buffer waiting for it (until 512 packets have passed), a browser freezes
the picture until it gives up and asks for a keyframe itself (seconds).

:class:`LostPackets` keeps each missing sequence number and says when to ask for it
again (every ``retry_interval``, up to ``max_tries`` times); a packet still missing after
that is given up, and the caller asks the publisher for a keyframe instead. A keyframe
seen from the publisher makes every older missing packet moot. Pure bookkeeping: the
caller passes the time and sends the NACKs.
"""

from __future__ import annotations

from dataclasses import dataclass

SEQ_MOD = 1 << 16
HALF_SEQ = 1 << 15


def seq_newer(a: int, b: int) -> bool:
    """True if sequence number ``a`` comes after ``b`` (modulo 2**16)."""
    return a != b and ((a - b) % SEQ_MOD) < HALF_SEQ


@dataclass(frozen=True, slots=True)
class NackPolicy:
    """How the SFU asks a publisher again for lost video packets: every
    ``retry_interval`` seconds, ``max_tries`` times in all (the first NACK, sent as soon
    as the gap is seen, included), then a keyframe instead; at most ``max_missing``
    packets tracked per stream (a longer gap is recovered by a keyframe at once)."""

    retry_interval: float = 0.15
    max_tries: int = 10
    max_missing: int = 256

    def tracker(self) -> LostPackets:
        return LostPackets(self.retry_interval, self.max_tries, self.max_missing)


DEFAULT_NACK_POLICY = NackPolicy()


@dataclass(slots=True)
class _Missing:
    asked_at: float
    tries: int


class LostPackets:
    """Missing sequence numbers of one incoming RTP stream (one SSRC at a time).

    ``max_missing`` bounds the bookkeeping: a jump larger than that (a burst that long,
    or a publisher that restarted its numbering) is not asked for packet by packet;
    :meth:`received` reports it so the caller asks for a keyframe.
    """

    def __init__(self, retry_interval: float, max_tries: int, max_missing: int) -> None:
        self.retry_interval = retry_interval
        self.max_tries = max_tries
        self.max_missing = max_missing
        self._ssrc: int | None = None
        self._highest = 0
        self._missing: dict[int, _Missing] = {}
        self._next_due = float("inf")
        self.asked_again = 0  # NACKed sequence numbers, after the first time
        self.given_up = 0

    @property
    def missing(self) -> list[int]:
        return list(self._missing)

    def received(self, ssrc: int, seq: int, now: float) -> bool:
        """Note a packet; True if it reveals a gap too large to ask for packet by packet.

        The packets of a new gap are due at once (the next :meth:`due`).
        """
        if ssrc != self._ssrc:
            self._ssrc, self._highest = ssrc, seq
            self._forget_all()
            return False
        highest = self._highest
        if not seq_newer(seq, highest):
            self._missing.pop(seq, None)  # a retransmission (or a late packet)
            return False
        self._highest = seq
        gap = (seq - highest - 1) % SEQ_MOD
        if gap == 0:
            return False
        if gap + len(self._missing) > self.max_missing:
            self._forget_all()
            return True
        never_asked = now - self.retry_interval
        for offset in range(1, gap + 1):
            self._missing[(highest + offset) % SEQ_MOD] = _Missing(never_asked, 0)
        self._next_due = min(self._next_due, now)
        return False

    def keyframe(self, seq: int) -> None:
        """A keyframe arrived at ``seq``: nothing before it is needed any more."""
        for lost in [s for s in self._missing if seq_newer(seq, s)]:
            del self._missing[lost]

    def due(self, now: float) -> tuple[list[int], bool]:
        """The sequence numbers to ask for again now, and whether any was given up (then
        ask for a keyframe)."""
        if now < self._next_due:
            return [], False
        again: list[int] = []
        gave_up = False
        next_due = float("inf")
        for seq, entry in list(self._missing.items()):
            if now - entry.asked_at >= self.retry_interval:
                if entry.tries >= self.max_tries:
                    del self._missing[seq]
                    self.given_up += 1
                    gave_up = True
                    continue
                if entry.tries:
                    self.asked_again += 1
                entry.asked_at = now
                entry.tries += 1
                again.append(seq)
            next_due = min(next_due, entry.asked_at + self.retry_interval)
        self._next_due = next_due
        return again, gave_up

    def _forget_all(self) -> None:
        self._missing.clear()
        self._next_due = float("inf")
