"""The forwarding path's packet reader accepts, refuses and reads what aiortc's parser does."""

from __future__ import annotations

import struct

from aiortc.rtp import RtpPacket
from hypothesis import example, given, settings
from hypothesis import strategies as st

from telecircle.media.rtp_in import parse_rtp
from telecircle.media.rtp_out import ExtensionIds, OutgoingStream

from .test_rtp_out import aiortc_header_map

IDS = ExtensionIds(mid=1, abs_send_time=3, audio_level=5)


def aiortc_parse(data: bytes, ids: ExtensionIds) -> RtpPacket | None:
    try:
        return RtpPacket.parse(data, aiortc_header_map(ids))
    except (ValueError, struct.error):
        return None


def assert_same(data: bytes, ids: ExtensionIds) -> None:
    theirs = aiortc_parse(data, ids)
    ours = parse_rtp(data, ids)
    if theirs is None:
        assert ours is None
        return
    assert ours is not None
    assert (ours.marker, ours.payload_type, ours.sequence_number, ours.timestamp, ours.ssrc) == (
        theirs.marker,
        theirs.payload_type,
        theirs.sequence_number,
        theirs.timestamp,
        theirs.ssrc,
    )
    assert ours.payload == theirs.payload
    assert ours.mid == theirs.extensions.mid
    assert ours.abs_send_time == theirs.extensions.abs_send_time
    assert ours.audio_level == theirs.extensions.audio_level


element = st.tuples(st.sampled_from([0, 1, 2, 3, 4, 5, 15]), st.binary(min_size=0, max_size=18))


def one_byte_block(elements: list[tuple[int, bytes]], pad: int) -> bytes:
    body = b""
    for x_id, value in elements:
        if value:
            body += bytes(((x_id << 4) | (min(len(value), 16) - 1),)) + value[:16]
        else:
            body += b"\x00"  # a padding byte
    body += b"\x00" * pad
    return body


def two_byte_block(elements: list[tuple[int, bytes]], pad: int) -> bytes:
    body = b"".join(bytes((x_id, len(value))) + value for x_id, value in elements)
    return body + b"\x00" * pad


@st.composite
def packets(draw: st.DrawFn) -> bytes:
    """Well-formed, nearly well-formed and arbitrary packets."""
    first = draw(st.sampled_from([0x80, 0x90, 0xA0, 0xB0, 0x81, 0x92, 0x40, 0xBF]))
    header = bytes((first, draw(st.integers(0, 255)))) + draw(st.binary(min_size=10, max_size=10))
    csrcs = draw(st.binary(min_size=0, max_size=4 * (first & 0x0F) + 2))
    block = b""
    if first & 0x10:
        profile = draw(st.sampled_from([0xBEDE, 0x1000, 0x1234]))
        elements = draw(st.lists(element, max_size=5))
        pad = draw(st.integers(0, 3))
        body = (two_byte_block if profile == 0x1000 else one_byte_block)(elements, pad)
        words = draw(st.sampled_from([(len(body) + 3) // 4, len(body) // 4, 200]))
        body += b"\x00" * (-len(body) % 4)
        block = struct.pack("!HH", profile, words) + body
    payload = draw(st.binary(min_size=0, max_size=40))
    trailer = bytes((draw(st.integers(0, 60)),)) if first & 0x20 else b""
    data = header + csrcs + block + payload + trailer
    return data[: draw(st.integers(0, len(data)))] if draw(st.booleans()) else data


@settings(max_examples=600)
@given(data=packets())
@example(data=b"")
@example(data=b"\x80" * 11)
# A two-byte block whose last element has an id and no length byte (the payload follows).
@example(data=bytes((0x90, 111)) + bytes(10) + bytes((0x10, 0, 0, 1, 5, 1, 0x80, 7, 0, 1)))
def test_reads_and_refuses_as_aiortc_does(data: bytes) -> None:
    assert_same(data, IDS)


@settings(max_examples=200)
@given(data=st.binary(max_size=80))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    assert_same(data, IDS)


def test_reads_what_the_forwarding_writer_writes() -> None:
    stream = OutgoingStream(111, 0x1234_5678, "7", IDS)
    data = stream.packet(1, 65535, 2**32 - 1, 0xABCDEF, (True, 42), b"opus frame")
    packet = parse_rtp(data, IDS)
    assert packet is not None
    assert (packet.marker, packet.payload_type, packet.sequence_number) == (1, 111, 65535)
    assert (packet.timestamp, packet.ssrc, packet.mid) == (2**32 - 1, 0x1234_5678, "7")
    assert (packet.abs_send_time, packet.audio_level) == (0xABCDEF, (True, 42))
    assert packet.payload == b"opus frame"


def test_an_element_of_the_wrong_length_is_refused_where_aiortc_would_raise() -> None:
    # A two-byte block with a 2-byte audio level: aiortc raises struct.error, which its
    # receive loop does not catch; here the packet is refused.
    block = struct.pack("!HH", 0x1000, 1) + bytes((5, 2, 0x80, 0x10))
    data = bytes((0x90, 111)) + bytes(10) + block + b"payload"
    assert aiortc_parse(data, IDS) is None
    assert parse_rtp(data, IDS) is None
