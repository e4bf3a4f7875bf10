"""Just enough of the VP8 RTP payload descriptor (RFC 7741) to forward without decoding."""

from __future__ import annotations

from typing import NamedTuple


class Vp8Info(NamedTuple):
    """Where the rewritable fields of one VP8 RTP payload are.

    ``picture_id_pos`` is -1 when absent; ``picture_id_bits`` is 7 or 15. ``tl0_pos`` is
    the offset of TL0PICIDX or -1. ``keyframe`` is true on the first packet of a keyframe.
    """

    picture_id_pos: int
    picture_id_bits: int
    tl0_pos: int
    keyframe: bool


NO_INFO = Vp8Info(-1, 0, -1, False)


def parse_vp8(payload: bytes) -> Vp8Info | None:
    """Parse the payload descriptor; ``None`` if the payload is malformed (drop it)."""
    size = len(payload)
    if size < 1:
        return None
    first = payload[0]
    start = first & 0x10
    partition = first & 0x07
    pos = 1
    picture_id_pos = -1
    picture_id_bits = 0
    tl0_pos = -1
    if first & 0x80:
        if size < 2:
            return None
        ext = payload[1]
        pos = 2
        if ext & 0x80:  # I: picture id
            if pos >= size:
                return None
            picture_id_pos = pos
            if payload[pos] & 0x80:
                picture_id_bits = 15
                pos += 2
            else:
                picture_id_bits = 7
                pos += 1
        if ext & 0x40:  # L: TL0PICIDX
            tl0_pos = pos
            pos += 1
        if ext & 0x30:  # T or K: TID/Y/KEYIDX
            pos += 1
    if pos > size:
        return None
    # The VP8 payload header's P bit (bit 0 of its first byte) is 0 on keyframes.
    keyframe = bool(start) and partition == 0 and pos < size and not payload[pos] & 0x01
    return Vp8Info(picture_id_pos, picture_id_bits, tl0_pos, keyframe)


def rewrite_vp8(payload: bytes, info: Vp8Info, picture_id: int, tl0: int) -> bytes:
    """Return ``payload`` with picture id and TL0PICIDX replaced (same length)."""
    data = bytearray(payload)
    if info.picture_id_bits == 15:
        data[info.picture_id_pos] = 0x80 | ((picture_id >> 8) & 0x7F)
        data[info.picture_id_pos + 1] = picture_id & 0xFF
    elif info.picture_id_bits == 7:
        data[info.picture_id_pos] = picture_id & 0x7F
    if info.tl0_pos >= 0:
        data[info.tl0_pos] = tl0 & 0xFF
    return bytes(data)


def read_picture_id(payload: bytes, info: Vp8Info) -> int:
    if info.picture_id_bits == 15:
        return ((payload[info.picture_id_pos] & 0x7F) << 8) | payload[info.picture_id_pos + 1]
    if info.picture_id_bits == 7:
        return payload[info.picture_id_pos] & 0x7F
    return -1
