"""Per-slot RTP rewriting: many incoming streams, one after another, become one continuous
outgoing stream (sequence numbers, timestamps and the VP8 picture id never jump back)."""

from __future__ import annotations

import secrets

from telecircle.media.vp8 import Vp8Info, read_picture_id, rewrite_vp8

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
HALF_SEQ = 1 << 15
# How far behind the newest packet a late (reordered) packet may still be forwarded.
REORDER_WINDOW = 1 << 12


def _seq_newer(a: int, b: int) -> bool:
    """True if sequence number ``a`` comes after ``b`` (modulo 2**16)."""
    return a != b and ((a - b) % SEQ_MOD) < HALF_SEQ


class StreamRewriter:
    """Maps incoming (seq, timestamp) onto the outgoing stream of one slot.

    Call :meth:`rebase` when the incoming stream changes (new publisher, publisher
    reconnect, resume after a pause or after dropping to the next keyframe): the next
    packet then continues the outgoing numbering from where it stopped, its timestamp
    advanced by the wall-clock time elapsed.
    """

    def __init__(self, clock_rate: int) -> None:
        self._clock_rate = clock_rate
        self._pending_rebase = True
        self._keep_timestamps = False
        self._started = False
        self._seq_offset = 0
        self._ts_offset = 0
        self._last_seq = secrets.randbelow(HALF_SEQ)
        self._last_ts = secrets.randbelow(TS_MOD)
        self._last_time = 0.0
        self._newest_in = 0
        self._base_in = 0

    def rebase(self, *, keep_timestamps: bool = False) -> None:
        """Continue the numbering at the next packet.

        ``keep_timestamps`` keeps the timestamp offset: use it when the incoming stream is
        the same one resuming after a gap, so its own timing is kept exactly.
        """
        # Two rebases before the next packet keep the timestamps only if both would.
        if self._pending_rebase:
            keep_timestamps = keep_timestamps and self._keep_timestamps
        self._pending_rebase = True
        self._keep_timestamps = keep_timestamps

    def map(self, seq: int, timestamp: int, now: float) -> tuple[int, int] | None:
        """Outgoing (seq, timestamp) for an incoming packet, or ``None`` to drop it."""
        if self._pending_rebase:
            self._pending_rebase = False
            if self._started and self._keep_timestamps:
                out_ts = (timestamp + self._ts_offset) % TS_MOD
            elif self._started:
                elapsed = max(1, int((now - self._last_time) * self._clock_rate))
                out_ts = (self._last_ts + elapsed) % TS_MOD
            else:
                out_ts = self._last_ts
            self._seq_offset = (self._last_seq + 1 - seq) % SEQ_MOD
            self._ts_offset = (out_ts - timestamp) % TS_MOD
            self._newest_in = self._base_in = seq
        elif _seq_newer(seq, self._newest_in):
            self._newest_in = seq
        else:
            behind = (self._newest_in - seq) % SEQ_MOD
            if behind > REORDER_WINDOW or behind > (self._newest_in - self._base_in) % SEQ_MOD:
                # From before the rebase (or hopelessly late): its number may be taken.
                return None
        out_seq = (seq + self._seq_offset) % SEQ_MOD
        out_ts = (timestamp + self._ts_offset) % TS_MOD
        if not self._started or _seq_newer(out_seq, self._last_seq):
            self._last_seq = out_seq
            self._last_ts = out_ts
            self._last_time = now
            self._started = True
        return out_seq, out_ts


class PictureIdRewriter:
    """Keeps the VP8 picture id and TL0PICIDX of one video slot continuous across switches.

    The first incoming stream keeps its own values (no payload copy); after a
    :meth:`rebase` the next keyframe continues from the last outgoing picture id.
    """

    def __init__(self) -> None:
        self._pending_rebase = False
        self._pid_offset = 0
        self._tl0_offset = 0
        self._last_pid = -1
        self._last_tl0 = 0

    def rebase(self) -> None:
        if self._last_pid >= 0:
            self._pending_rebase = True

    def map(self, payload: bytes, info: Vp8Info) -> bytes:
        if info.picture_id_bits == 0:
            return payload
        mask = (1 << info.picture_id_bits) - 1
        in_pid = read_picture_id(payload, info)
        in_tl0 = payload[info.tl0_pos] if info.tl0_pos >= 0 else 0
        if self._pending_rebase:
            self._pending_rebase = False
            self._pid_offset = (self._last_pid + 1 - in_pid) & mask
            self._tl0_offset = (self._last_tl0 + 1 - in_tl0) & 0xFF
        out_pid = (in_pid + self._pid_offset) & mask
        out_tl0 = (in_tl0 + self._tl0_offset) & 0xFF
        self._last_pid = out_pid
        self._last_tl0 = out_tl0
        if self._pid_offset == 0 and self._tl0_offset == 0:
            return payload
        return rewrite_vp8(payload, info, out_pid, out_tl0)
