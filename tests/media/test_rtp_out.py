"""The forwarding path's packet writer gives exactly the bytes aiortc's serializer gives."""

from __future__ import annotations

import pytest
from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from hypothesis import given
from hypothesis import strategies as st

from telecircle.media.aiortc_tap import ABS_SEND_TIME_URI, AUDIO_LEVEL_URI, MID_URI
from telecircle.media.rtp_out import ExtensionIds, OutgoingStream

ids_strategy = st.lists(st.integers(1, 14), min_size=3, max_size=3, unique=True).flatmap(
    lambda ids: st.tuples(*(st.sampled_from([0, i]) for i in ids))
)


def aiortc_header_map(ids: ExtensionIds) -> HeaderExtensionsMap:
    """aiortc's extension map with the ids ``ids`` names (0: not negotiated)."""
    extensions = [
        RTCRtpHeaderExtensionParameters(id=i, uri=uri)
        for i, uri in (
            (ids.mid, MID_URI),
            (ids.abs_send_time, ABS_SEND_TIME_URI),
            (ids.audio_level, AUDIO_LEVEL_URI),
        )
        if i
    ]
    header_map = HeaderExtensionsMap()
    header_map.configure(RTCRtpParameters(headerExtensions=extensions))
    return header_map


def aiortc_bytes(
    ids: ExtensionIds,
    payload_type: int,
    ssrc: int,
    mid: str,
    marker: int,
    seq: int,
    timestamp: int,
    abs_time: int,
    level: tuple[bool, int] | None,
    payload: bytes,
) -> bytes:
    header_map = aiortc_header_map(ids)
    packet = RtpPacket(
        payload_type=payload_type,
        marker=marker,
        sequence_number=seq,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=payload,
    )
    packet.extensions.mid = mid
    packet.extensions.abs_send_time = abs_time
    packet.extensions.audio_level = level
    return packet.serialize(header_map)


@given(
    ids=ids_strategy,
    payload_type=st.integers(0, 127),
    ssrc=st.integers(0, 2**32 - 1),
    mid=st.text(alphabet="0123456789abcdef", min_size=1, max_size=16),
    marker=st.integers(0, 1),
    seq=st.integers(0, 2**16 - 1),
    timestamp=st.integers(0, 2**32 - 1),
    abs_time=st.integers(0, 2**24 - 1),
    level=st.none() | st.tuples(st.booleans(), st.integers(0, 127)),
    payload=st.binary(max_size=64),
)
def test_the_same_bytes_as_aiortc(
    ids: tuple[int, int, int],
    payload_type: int,
    ssrc: int,
    mid: str,
    marker: int,
    seq: int,
    timestamp: int,
    abs_time: int,
    level: tuple[bool, int] | None,
    payload: bytes,
) -> None:
    extension_ids = ExtensionIds(*ids)
    stream = OutgoingStream(payload_type, ssrc, mid, extension_ids)
    ours = stream.packet(marker, seq, timestamp, abs_time, level, payload)
    theirs = aiortc_bytes(
        extension_ids, payload_type, ssrc, mid, marker, seq, timestamp, abs_time, level, payload
    )
    assert ours == theirs
    parsed = RtpPacket.parse(ours)
    assert (parsed.sequence_number, parsed.timestamp, parsed.ssrc) == (seq, timestamp, ssrc)
    assert parsed.payload == payload


@pytest.mark.parametrize(
    ("payload_type", "mid", "ids", "problem"),
    [
        (128, "0", ExtensionIds(mid=1), "payload type"),
        (96, "", ExtensionIds(mid=1), "mid"),
        (96, "x" * 17, ExtensionIds(mid=1), "mid"),
        (96, "0", ExtensionIds(mid=15), "ids"),
        (96, "0", ExtensionIds(abs_send_time=-1), "ids"),
    ],
)
def test_values_the_one_byte_format_cannot_carry_are_refused(
    payload_type: int, mid: str, ids: ExtensionIds, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        OutgoingStream(payload_type, 1, mid, ids)
