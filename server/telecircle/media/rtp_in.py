"""Incoming RTP packets read straight from their bytes (after SRTP).

The receive half of the forwarding hot path: one ``struct`` call for the fixed header and
a walk over the header extensions for the three the SFU reads (mid, abs-send-time,
audio level); no extension objects, no CSRC list. It accepts and rejects exactly what
aiortc 1.16's ``RtpPacket.parse`` does, and reads the same values
(tests/media/test_rtp_in.py checks this against aiortc itself), with one difference: an
abs-send-time or audio level element of the wrong length, where aiortc raises
``struct.error`` (which its receive loop does not catch), is refused too. A packet a
participant crafted to be malformed is refused (None), never an exception.
"""

from __future__ import annotations

import struct

from telecircle.media.rtp_out import ExtensionIds

RTP_HEADER_BYTES = 12
ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE = 0x1000
_FIXED = struct.Struct("!BBHII")


class IncomingPacket:
    """The fields of one incoming RTP packet the SFU uses. ``audio_level`` is
    (voice activity, level in -dBov) as aiortc gives it."""

    __slots__ = (
        "abs_send_time",
        "audio_level",
        "marker",
        "mid",
        "payload",
        "payload_type",
        "sequence_number",
        "ssrc",
        "timestamp",
    )

    def __init__(
        self, marker: int, payload_type: int, sequence_number: int, timestamp: int, ssrc: int
    ) -> None:
        self.marker = marker
        self.payload_type = payload_type
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.payload = b""
        self.mid: str | None = None
        self.abs_send_time: int | None = None
        self.audio_level: tuple[bool, int] | None = None


def parse_rtp(data: bytes, ids: ExtensionIds) -> IncomingPacket | None:
    """The packet in ``data``, reading the extensions ``ids`` names; None if malformed."""
    if len(data) < RTP_HEADER_BYTES:
        return None
    first, second, sequence_number, timestamp, ssrc = _FIXED.unpack_from(data)
    if first >> 6 != 2:
        return None
    pos = RTP_HEADER_BYTES + 4 * (first & 0x0F)
    if len(data) < pos:
        return None
    packet = IncomingPacket(second >> 7, second & 0x7F, sequence_number, timestamp, ssrc)
    if first & 0x10:
        if len(data) < pos + 4:
            return None
        profile = (data[pos] << 8) | data[pos + 1]
        end = pos + 4 + 4 * ((data[pos + 2] << 8) | data[pos + 3])
        if len(data) < end:
            return None
        if not _read_extensions(packet, data, pos + 4, end, profile, ids):
            return None
        pos = end
    if first & 0x20:
        padding = data[-1]
        if not padding or padding > len(data) - pos:
            return None
        packet.payload = data[pos:-padding]
    else:
        packet.payload = data[pos:]
    return packet


def _read_extensions(
    packet: IncomingPacket, data: bytes, pos: int, end: int, profile: int, ids: ExtensionIds
) -> bool:
    """Fill in the extensions ``ids`` names; False where aiortc would refuse the block.
    Later elements with the same id win, as in aiortc."""
    if profile == ONE_BYTE_PROFILE:
        two_byte = False
    elif profile == TWO_BYTE_PROFILE:
        two_byte = True
    else:
        return True  # another profile: aiortc reads no extension from it
    while pos < end:
        if data[pos] == 0:  # padding
            pos += 1
            continue
        if two_byte:
            if end < pos + 2:
                return False
            x_id, length = data[pos], data[pos + 1]
            pos += 2
        else:
            x_id, length = data[pos] >> 4, (data[pos] & 0x0F) + 1
            pos += 1
        if end < pos + length:
            return False
        if x_id == 0:
            pass  # aiortc keeps no element with id 0 (and never matches it)
        elif x_id == ids.mid:
            try:
                packet.mid = data[pos : pos + length].decode()
            except UnicodeDecodeError:
                return False
        elif x_id == ids.abs_send_time:
            if length != 3:
                return False  # aiortc's unpack of the 24-bit value fails otherwise
            packet.abs_send_time = (data[pos] << 16) | (data[pos + 1] << 8) | data[pos + 2]
        elif x_id == ids.audio_level:
            if length != 1:
                return False  # likewise for the one-byte level
            level = data[pos]
            packet.audio_level = (level & 0x80 == 0x80, level & 0x7F)
        pos += length
    return True
