"""Outgoing RTP packets as bytes, written straight from the forwarded packet's fields.

The forwarding hot path writes one packet per subscriber for every incoming packet: it
builds no ``RtpPacket`` objects and no extension lists, only one ``struct`` call and two
joins. The bytes are exactly what aiortc 1.16's ``RtpPacket.serialize`` writes for the
same fields (tests/media/test_rtp_out.py checks this against aiortc itself).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# V=2, X=1 (every packet carries at least the mid); no padding, no CSRCs.
_FIRST_BYTE = 0x90
# The RTP header followed by the one-byte extension block's profile and length.
_HEADER = struct.Struct("!BBHIIHH")
ONE_BYTE_PROFILE = 0xBEDE


@dataclass(frozen=True, slots=True)
class ExtensionIds:
    """The header extension ids a subscriber's answer negotiated; 0 where not offered."""

    mid: int = 0
    abs_send_time: int = 0
    audio_level: int = 0


class OutgoingStream:
    """Writes the packets of one outgoing stream (one SSRC, one payload type, one mid)."""

    __slots__ = ("_abs_element", "_level_id", "_mid_element", "_payload_type", "_ssrc")

    def __init__(self, payload_type: int, ssrc: int, mid: str, ids: ExtensionIds) -> None:
        if not 0 <= payload_type < 128:
            raise ValueError("payload type out of range")
        mid_bytes = mid.encode()
        if ids.mid and not 1 <= len(mid_bytes) <= 16:
            raise ValueError("a mid must be 1 to 16 bytes")
        for value in (ids.mid, ids.abs_send_time, ids.audio_level):
            if not 0 <= value <= 14:
                raise ValueError("one-byte header extension ids are 1 to 14")
        self._payload_type = payload_type
        self._ssrc = ssrc
        self._mid_element = (
            bytes(((ids.mid << 4) | (len(mid_bytes) - 1),)) + mid_bytes if ids.mid else b""
        )
        self._abs_element = bytes(((ids.abs_send_time << 4) | 2,)) if ids.abs_send_time else b""
        self._level_id = ids.audio_level << 4

    def packet(
        self,
        marker: int,
        sequence_number: int,
        timestamp: int,
        abs_send_time: int,
        audio_level: tuple[bool, int] | None,
        payload: bytes,
    ) -> bytes:
        """The packet's bytes; ``marker`` is 0 or 1, ``abs_send_time`` the 24-bit value (see
        :func:`telecircle.media.aiortc_tap.abs_send_time`)."""
        elements = self._mid_element
        if self._abs_element:
            elements += self._abs_element + (abs_send_time & 0xFFFFFF).to_bytes(3, "big")
        if audio_level is not None and self._level_id:
            level = (0x80 if audio_level[0] else 0) | (audio_level[1] & 0x7F)
            elements += bytes((self._level_id, level))
        padding = -len(elements) % 4
        if padding:
            elements += b"\x00" * padding
        words = len(elements) >> 2
        header = _HEADER.pack(
            _FIRST_BYTE if words else 0x80,
            (marker << 7) | self._payload_type,
            sequence_number,
            timestamp,
            self._ssrc,
            ONE_BYTE_PROFILE,
            words,
        )
        if not words:
            return header[:12] + payload
        return b"".join((header, elements, payload))
