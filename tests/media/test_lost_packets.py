"""The SFU asks a publisher again for a lost video packet until it comes.

aiortc 1.16's receiver NACKs a gap once, when it appears; if that NACK or the
retransmission is lost too and nothing else is lost afterwards, it never asks again
and every subscriber waits for the packet. media/lost_packets.py keeps asking.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any

import pytest
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RTCP_RTPFB_NACK, RtcpRtpfbPacket, is_rtcp

from telecircle.config import ConfigError, load_settings
from telecircle.domain.model import TrackKind
from telecircle.media import aiortc_tap
from telecircle.media.lost_packets import LostPackets, NackPolicy
from telecircle.media.room import MediaRoom
from telecircle.media.settings import MediaSettings

from .conftest import RoomEvents, watching
from .peer import EncodedMedia, SyntheticPeer, wait_until

RETRY = 0.15


def lost(tries: int = 3, max_missing: int = 64) -> LostPackets:
    return LostPackets(retry_interval=RETRY, max_tries=tries, max_missing=max_missing)


def test_a_gap_is_asked_for_again_until_it_comes() -> None:
    packets = lost()
    for seq in (10, 11, 14):
        assert not packets.received(1, seq, now=0.0)
    assert packets.missing == [12, 13]
    # A new gap is asked for at once, then not again before the interval.
    assert packets.due(0.0) == ([12, 13], False)
    assert packets.asked_again == 0
    assert packets.due(0.1) == ([], False)
    assert packets.due(0.2) == ([12, 13], False)
    packets.received(1, 12, now=0.25)  # the retransmission
    assert packets.missing == [13]
    assert packets.due(0.3) == ([], False)
    assert packets.due(0.36) == ([13], False)
    assert packets.asked_again == 3


def test_a_packet_is_given_up_after_the_last_try() -> None:
    packets = lost(tries=2)
    packets.received(1, 100, now=0.0)
    packets.received(1, 102, now=0.0)
    assert packets.due(0.0) == ([101], False)  # first try, at once
    assert packets.due(0.2) == ([101], False)  # second try
    assert packets.due(0.3) == ([], False)
    assert packets.due(0.4) == ([], True)  # given up: ask for a keyframe
    assert packets.missing == []
    assert packets.given_up == 1


def test_a_keyframe_makes_older_losses_moot() -> None:
    packets = lost()
    for seq in (1, 3, 6, 5):
        packets.received(1, seq, now=0.0)
    assert packets.missing == [2, 4]
    packets.keyframe(5)  # the late packet 5 starts a keyframe
    assert packets.missing == []


def test_sequence_numbers_wrap() -> None:
    packets = lost()
    packets.received(1, 65534, now=0.0)
    packets.received(1, 1, now=0.0)
    assert packets.missing == [65535, 0]


def test_a_nack_across_the_wrap_is_sent_in_an_order_aiortc_can_pack() -> None:
    """aiortc 1.16's NACK packer needs ascending numbers; the lost packets of a gap that
    crosses 65535 → 0 are due in arrival order (65534, 65535, 0, 1)."""
    packets = lost()
    packets.received(1, 65533, now=0.0)
    packets.received(1, 2, now=0.0)
    due, _ = packets.due(1.0)
    assert due == [65534, 65535, 0, 1]
    with pytest.raises(ValueError):  # what the packer does with them as they come
        bytes(RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=2, lost=due))

    sent = aiortc_tap.nack_packet(1, 2, due)
    packet = RtcpRtpfbPacket.parse(sent[4:], RTCP_RTPFB_NACK)  # the RTCP header off
    assert sorted(packet.lost) == sorted(due)


def test_a_long_gap_or_a_new_stream_is_not_asked_for_packet_by_packet() -> None:
    packets = lost(max_missing=8)
    packets.received(1, 0, now=0.0)
    assert packets.received(1, 20, now=0.0)  # 19 missing: ask for a keyframe instead
    assert packets.missing == []
    packets.received(1, 22, now=0.0)
    assert packets.missing == [21]
    assert not packets.received(2, 5000, now=0.0)  # another SSRC: start over
    assert packets.missing == []
    assert packets.due(10.0) == ([], False)


def test_the_nack_seam_is_still_there() -> None:
    """aiortc 1.16's receiver sends a NACK with _send_rtcp_nack(media_ssrc, lost)."""
    assert aiortc_tap.RECEIVER_SEND_NACK in aiortc_tap.RECEIVER_NAMES
    assert list(inspect.signature(RTCRtpReceiver._send_rtcp_nack).parameters) == [
        "self",
        "media_ssrc",
        "lost",
    ]


def drop_sends_of_one_video_packet(peer: SyntheticPeer, times: int) -> list[int]:
    """Arm the publisher's transport to drop the next video packet the first ``times``
    times it is sent (as a lossy path would); returns [its sequence number] once chosen."""
    assert peer.publish_pc is not None
    video = next(t for t in peer.publish_pc.getTransceivers() if t.kind == "video")
    sender: Any = video.sender
    transport: Any = sender.transport
    send_rtp = transport._send_rtp
    chosen: list[int] = []
    drops = [0]

    async def lossy_send(data: bytes) -> None:
        if not is_rtcp(data):
            ssrc = int.from_bytes(data[8:12], "big")
            seq = int.from_bytes(data[2:4], "big")
            if ssrc == sender._ssrc:
                if not chosen:
                    chosen.append(seq)
                if seq == chosen[0] and drops[0] < times:
                    drops[0] += 1
                    return
        await send_rtp(data)

    transport._send_rtp = lossy_send
    return chosen


def count_nacks(peer: SyntheticPeer, nacked: list[int]) -> None:
    assert peer.publish_pc is not None
    video = next(t for t in peer.publish_pc.getTransceivers() if t.kind == "video")
    sender: Any = video.sender
    handle = sender._handle_rtcp_packet

    async def handle_rtcp(packet: Any) -> None:
        if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
            nacked.extend(packet.lost)
        await handle(packet)

    sender._handle_rtcp_packet = handle_rtcp


async def test_the_sfu_asks_again_when_a_retransmission_is_lost(
    room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    publisher = SyntheticPeer("pub", media_library[0])
    viewer = SyntheticPeer("viewer", media_library[1])
    try:
        mid = await watching(room, events, publisher, viewer)
        nacked: list[int] = []
        count_nacks(publisher, nacked)
        chosen = drop_sends_of_one_video_packet(publisher, times=2)
        # Nothing else is lost on loopback: only the SFU's own retry can bring it back.
        await wait_until(lambda: bool(chosen) and nacked.count(chosen[0]) >= 2, timeout=10)
        bookkeeping = room._publishers[publisher.pid]._keyframes[TrackKind.VIDEO].lost
        await wait_until(lambda: chosen[0] not in bookkeeping.missing, timeout=5)
        assert bookkeeping.asked_again >= 1
        assert bookkeeping.given_up == 0
        # The viewer got the packet too: its stream has no hole.
        await asyncio.sleep(0.3)
        seqs = sorted({entry[0] for entry in viewer.received.video_log[mid]})
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    finally:
        await publisher.close()
        await viewer.close()
        await room.close()


async def test_a_packet_that_never_comes_is_given_up_for_a_keyframe(
    room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    publisher = SyntheticPeer("pub", media_library[2])
    viewer = SyntheticPeer("viewer", media_library[3])
    try:
        await watching(room, events, publisher, viewer)
        assert publisher.video_track is not None
        keyframes_before = publisher.video_track.keyframes_requested
        nacked: list[int] = []
        count_nacks(publisher, nacked)
        chosen = drop_sends_of_one_video_packet(publisher, times=1_000_000)
        bookkeeping = room._publishers[publisher.pid]._keyframes[TrackKind.VIDEO].lost
        await wait_until(lambda: bookkeeping.given_up == 1, timeout=10)
        # Asked for at once, then again up to the last try: then a keyframe.
        assert nacked.count(chosen[0]) >= NackPolicy().max_tries
        await wait_until(lambda: publisher.video_track.keyframes_requested > keyframes_before)
    finally:
        await publisher.close()
        await viewer.close()
        await room.close()


def test_the_nack_policy_comes_from_the_settings(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path, nack_retry_interval=0.3, nack_max_tries=4, nack_max_missing=64
    )
    assert MediaSettings.from_settings(settings).nack == NackPolicy(0.3, 4, 64)
    with pytest.raises(ConfigError):
        load_settings(data_dir=tmp_path, nack_max_tries=0)
