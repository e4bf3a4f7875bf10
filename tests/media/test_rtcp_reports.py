"""The RTCP reports the SFU owes each side, with aiortc's receive path bypassed.

Towards a publisher: receiver reports for each of its streams and a REMB estimate, as
aiortc's receiver sent them (browsers' send-side bandwidth estimation lives on them).
Towards a subscriber: sender reports whose NTP and RTP times belong to a packet it
received (receivers line audio up with video with them) and whose counts match what
was sent.
"""

from __future__ import annotations

import time
from typing import Any

from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtcpRrPacket, RtcpSrPacket, unpack_remb_fci

from telecircle.media.aiortc_tap import NTP_EPOCH_OFFSET
from telecircle.media.room import MediaRoom

from .conftest import RoomEvents, watching
from .peer import EncodedMedia, SyntheticPeer, wait_until


def record_rtcp(target: Any, packets: list[tuple[float, Any]]) -> None:
    """Keep every RTCP packet ``target`` (an aiortc sender or receiver) handles."""
    handle = target._handle_rtcp_packet

    async def record(packet: Any) -> None:
        packets.append((time.time(), packet))
        await handle(packet)

    target._handle_rtcp_packet = record


async def test_a_publisher_gets_receiver_reports_and_an_estimate(
    room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    publisher = SyntheticPeer("pub", media_library[0])
    viewer = SyntheticPeer("viewer", media_library[1])
    try:
        assert publisher.publish_pc is None
        await watching(room, events, publisher, viewer)
        assert publisher.publish_pc is not None
        video = next(t for t in publisher.publish_pc.getTransceivers() if t.kind == "video")
        ssrc = video.sender._ssrc
        rtcp: list[tuple[float, Any]] = []
        record_rtcp(video.sender, rtcp)

        def reports() -> list[Any]:
            return [
                block
                for _, packet in rtcp
                if isinstance(packet, RtcpRrPacket)
                for block in packet.reports
                if block.ssrc == ssrc
            ]

        def estimates() -> list[tuple[int, list[int]]]:
            return [
                unpack_remb_fci(packet.fci)
                for _, packet in rtcp
                if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP
            ]

        await wait_until(lambda: len(reports()) >= 2 and bool(estimates()), timeout=10)
        first, last = reports()[0], reports()[-1]
        # The highest sequence number received moves on with the stream; nothing is lost
        # on loopback.
        assert last.highest_sequence > first.highest_sequence
        assert last.packets_lost == 0
        bitrate, ssrcs = estimates()[-1]
        assert ssrc in ssrcs and bitrate > 0
    finally:
        await publisher.close()
        await viewer.close()
        await room.close()


async def test_a_subscriber_gets_sender_reports_of_what_it_received(
    room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    publisher = SyntheticPeer("pub", media_library[2])
    viewer = SyntheticPeer("viewer", media_library[3])
    try:
        mid = await watching(room, events, publisher, viewer)
        assert viewer.subscribe_pc is not None
        receiver = next(t.receiver for t in viewer.subscribe_pc.getTransceivers() if t.mid == mid)
        rtcp: list[tuple[float, Any]] = []
        record_rtcp(receiver, rtcp)
        slot_ssrc = viewer.received.ssrcs[mid]

        def sender_reports() -> list[tuple[float, RtcpSrPacket]]:
            return [
                (at, packet)
                for at, packet in rtcp
                if isinstance(packet, RtcpSrPacket) and packet.ssrc == slot_ssrc
            ]

        await wait_until(lambda: len(sender_reports()) >= 2, timeout=10)
        received_timestamps = {entry[1] for entry in viewer.received.video_log[mid]}
        for at, report in sender_reports():
            info = report.sender_info
            # The RTP time is that of a packet the viewer got, the NTP time when it was
            # sent: at most the refresh interval (and the report interval) before now.
            assert info.rtp_timestamp in received_timestamps
            sent_at = info.ntp_timestamp / (1 << 32) - NTP_EPOCH_OFFSET
            assert at - 2.0 <= sent_at <= at
            assert 0 < info.packet_count <= viewer.received.packets[mid]
            assert info.octet_count > info.packet_count  # payload bytes, not packets
        counts = [report.sender_info.packet_count for _, report in sender_reports()]
        assert counts == sorted(counts) and counts[-1] > counts[0]
    finally:
        await publisher.close()
        await viewer.close()
        await room.close()


def drop_once(pc: Any, ssrc: int, seq: int) -> list[bytes]:
    """Drop the datagram carrying RTP ``seq`` of ``ssrc`` the first time it reaches
    ``pc`` (SRTP leaves the header readable); returns every datagram with that
    sequence number that arrived, the dropped one first."""
    seen: list[bytes] = []
    dtls = pc.getTransceivers()[0].receiver.transport
    for protocol in dtls.transport._connection._protocols:
        original = protocol.datagram_received

        def received(data: bytes, addr: Any, original: Any = original) -> None:
            if (
                len(data) >= 12
                and 127 < data[0] < 192
                and int.from_bytes(data[8:12], "big") == ssrc
                and int.from_bytes(data[2:4], "big") == seq
            ):
                seen.append(data)
                if len(seen) == 1:
                    return
            original(data, addr)

        protocol.datagram_received = received
    return seen


async def test_a_subscriber_nack_is_answered_with_the_same_packet(
    room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    """The slot's history keeps what rebuilds each sent packet (its payload shared with
    the other subscribers): the answer to a NACK is the packet as first sent."""
    publisher = SyntheticPeer("pub", media_library[4])
    viewer = SyntheticPeer("viewer", media_library[5])
    try:
        mid = await watching(room, events, publisher, viewer)
        assert viewer.subscribe_pc is not None
        receiver = next(t.receiver for t in viewer.subscribe_pc.getTransceivers() if t.mid == mid)
        slot_ssrc = viewer.received.ssrcs[mid]
        log = viewer.received.video_log[mid]
        target = (log[-1][0] + 10) & 0xFFFF
        seen = drop_once(viewer.subscribe_pc, slot_ssrc, target)
        await wait_until(lambda: bool(seen) and log[-1][0] != target)
        assert target not in [entry[0] for entry in log]
        await receiver._send_rtcp_nack(slot_ssrc, [target])
        await wait_until(lambda: target in [entry[0] for entry in log], timeout=5)
        # Byte for byte the packet first sent: SRTP with the same key and index gives
        # the same datagram for the same packet. (The viewer's aiortc receiver may have
        # NACKed the gap by itself too: each answer is the same.)
        assert len(seen) >= 2 and all(again == seen[0] for again in seen[1:])
    finally:
        await publisher.close()
        await viewer.close()
        await room.close()
