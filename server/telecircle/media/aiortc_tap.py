"""Every aiortc internal the SFU touches, in one place (aiortc is pinned to 1.16.0).

Publisher side: a receiver's decoder is neutralised (its frames are discarded, never
decoded) and each incoming RTP packet is handed to the SFU before aiortc's own handler
runs (which keeps NACK generation, REMB and receiver reports towards the publisher).

Subscriber side: each slot's sender carries a :class:`SilentTrack`, so aiortc's own RTP
loop sends nothing; the SFU protects rewritten packets with the sender's DTLS transport's
SRTP session and hands them straight to the nominated pair's socket (no await, no task:
the forwarding hot path), and takes the sender's RTCP (NACK, PLI, FIR) for itself.

tests/media/test_aiortc_seams.py checks that every name below still exists.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from aioice.ice import StunProtocol
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpPsfbPacket,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtpPacket,
    unpack_remb_fci,
)

from telecircle.media.rtp_out import ExtensionIds, OutgoingStream

RECEIVER_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
RECEIVER_RTP_HANDLER = "_handle_rtp_packet"
RECEIVER_SEND_PLI = "_send_rtcp_pli"
RECEIVER_SEND_NACK = "_send_rtcp_nack"
SENDER_RTCP_HANDLER = "_handle_rtcp_packet"
SENDER_SSRC = "_ssrc"
# Sender report fields: kept current so the subscriber can sync audio and video.
SENDER_NTP_TIMESTAMP = "_RTCRtpSender__ntp_timestamp"
SENDER_RTP_TIMESTAMP = "_RTCRtpSender__rtp_timestamp"
SENDER_PACKET_COUNT = "_RTCRtpSender__packet_count"
SENDER_OCTET_COUNT = "_RTCRtpSender__octet_count"
# The fast send path: the DTLS transport's state and outgoing SRTP session, the ICE
# transport's aioice connection and its nominated pairs (component 1 carries everything).
DTLS_STATE = "_state"
DTLS_TX_SRTP = "_tx_srtp"
ICE_CONNECTION = "_connection"
ICE_NOMINATED = "_nominated"

RECEIVER_NAMES = (
    RECEIVER_DECODER_QUEUE,
    RECEIVER_RTP_HANDLER,
    RECEIVER_SEND_PLI,
    RECEIVER_SEND_NACK,
)
SENDER_NAMES = (
    SENDER_RTCP_HANDLER,
    SENDER_SSRC,
    SENDER_NTP_TIMESTAMP,
    SENDER_RTP_TIMESTAMP,
    SENDER_PACKET_COUNT,
    SENDER_OCTET_COUNT,
)

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

PacketSink = Callable[[RtpPacket], Awaitable[None]]
NackSink = Callable[[list[int]], Awaitable[None]]


class DiscardingDecoderQueue:
    """Stands in for a receiver's decoder queue: frames are dropped, never decoded.

    aiortc's decoder thread blocks in :meth:`get` until the receiver stops (it puts
    ``None``), then exits; no frame ever reaches it.
    """

    def __init__(self) -> None:
        self._stopped = threading.Event()

    def put(self, item: object) -> None:
        if item is None:
            self._stopped.set()

    def get(self) -> None:
        self._stopped.wait()


def neutralise_decoder(receiver: RTCRtpReceiver) -> None:
    """Replace the decoder queue; call before ``receive()`` starts the decoder thread."""
    setattr(receiver, RECEIVER_DECODER_QUEUE, DiscardingDecoderQueue())


def tap_rtp(receiver: RTCRtpReceiver, before: PacketSink) -> None:
    """Run ``before(packet)`` for each RTP packet the receiver gets, then aiortc's handler."""
    original = receiver._handle_rtp_packet

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        await before(packet)
        await original(packet, arrival_time_ms=arrival_time_ms)

    any_receiver: Any = receiver
    any_receiver._handle_rtp_packet = handle


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """Ask the publisher of ``media_ssrc`` for a keyframe (RTCP PLI)."""
    await receiver._send_rtcp_pli(media_ssrc)


async def send_nack(receiver: RTCRtpReceiver, media_ssrc: int, lost: list[int]) -> None:
    """Ask the publisher of ``media_ssrc`` to send the ``lost`` packets again (RTCP NACK).

    aiortc 1.16's NACK packer (``RtcpRtpfbPacket.__bytes__``) needs the numbers in
    ascending numeric order (its own receiver sends ``sorted(missing)``): a list that
    crosses the 65535 → 0 wrap in arrival order gives it a negative shift, and the
    ValueError would end the publisher's DTLS receive loop.
    """
    await receiver._send_rtcp_nack(media_ssrc, sorted(lost))


class SilentTrack(MediaStreamTrack):
    """A track that never yields a frame: keeps aiortc's sender loop parked, not polling."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._ended = asyncio.Event()

    async def recv(self) -> Any:
        await self._ended.wait()
        raise MediaStreamError

    def stop(self) -> None:
        self._ended.set()
        super().stop()


class SlotSenderTap:
    """The SFU's handle on one subscriber slot's sender.

    ``stream`` is set (and ``ready`` true) once aiortc has started the sender (after
    the subscriber's answer and DTLS); packets may only be sent after that.
    """

    def __init__(
        self,
        sender: RTCRtpSender,
        on_started: Callable[[], None],
        on_nack: NackSink,
        on_keyframe_request: Callable[[], None],
        on_feedback: Callable[[AnyRtcpPacket], None],
        buffer_limit: int,
    ) -> None:
        self.sender = sender
        self.buffer_limit = buffer_limit
        self.ssrc: int = sender._ssrc
        self.stream: OutgoingStream | None = None
        self._any: Any = sender
        original_send = sender.send
        original_rtcp = sender._handle_rtcp_packet

        async def send(parameters: RTCRtpSendParameters) -> None:
            await original_send(parameters)
            self.stream = OutgoingStream(
                int(parameters.codecs[0].payloadType or 0),
                self.ssrc,
                str(parameters.muxId),
                extension_ids(parameters),
            )
            on_started()

        async def handle_rtcp(packet: AnyRtcpPacket) -> None:
            if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                await on_nack(list(packet.lost))
            elif isinstance(packet, RtcpPsfbPacket):
                # PLI/FIR are relayed to the publisher; REMB (APP) is the receiver's
                # bandwidth estimate, which aiortc would feed to nothing (no encoder).
                if packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR):
                    on_keyframe_request()
                elif packet.fmt == RTCP_PSFB_APP:
                    on_feedback(packet)
            else:
                if isinstance(packet, RtcpRrPacket):
                    on_feedback(packet)
                await original_rtcp(packet)

        sender_any: Any = sender
        sender_any.send = send
        sender_any._handle_rtcp_packet = handle_rtcp

    @property
    def ready(self) -> bool:
        return self.stream is not None

    def send_now(self, data: bytes, rtp_timestamp: int, payload_bytes: int, now: float) -> bool:
        """Protect one serialized packet and hand it to the socket at once; False if the
        socket already holds more than ``buffer_limit`` bytes unsent (then nothing is
        sent: a subscriber that cannot keep up loses its own packets). ``now`` is the
        wall-clock time of sending (for the sender report). Raises ConnectionError if
        the path is not up."""
        sent = send_rtp_now(self.sender.transport, data, self.buffer_limit)
        if sent:
            sender = self._any
            # Same bookkeeping aiortc's own RTP loop does, for its sender reports.
            setattr(sender, SENDER_NTP_TIMESTAMP, int((now + NTP_EPOCH_OFFSET) * (1 << 32)))
            setattr(sender, SENDER_RTP_TIMESTAMP, rtp_timestamp)
            setattr(sender, SENDER_PACKET_COUNT, getattr(sender, SENDER_PACKET_COUNT) + 1)
            setattr(sender, SENDER_OCTET_COUNT, getattr(sender, SENDER_OCTET_COUNT) + payload_bytes)
        return sent

    def resend(self, data: bytes) -> bool:
        """Send a packet again (NACK answer); no sender-report bookkeeping."""
        return send_rtp_now(self.sender.transport, data, self.buffer_limit)


class Feedback(NamedTuple):
    """What one RTCP packet from a subscriber says about its connection: a REMB's
    estimate (bits per second), or a receiver report's mean fraction lost over its
    streams; None for what the packet does not say. ``streams``: the SSRCs covered."""

    estimate: float | None
    streams: tuple[int, ...]
    loss: float | None


def read_feedback(packet: AnyRtcpPacket) -> Feedback | None:
    """The feedback in a REMB or a receiver report; None for other packets (and for a
    REMB that does not parse)."""
    if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
        try:
            bitrate, ssrcs = unpack_remb_fci(packet.fci)
        except ValueError:
            return None
        return Feedback(float(bitrate), tuple(sorted(ssrcs)), None)
    if isinstance(packet, RtcpRrPacket) and packet.reports:
        lost = sum(report.fraction_lost for report in packet.reports)
        streams = tuple(sorted(report.ssrc for report in packet.reports))
        return Feedback(None, streams, lost / (256 * len(packet.reports)))
    return None


def extension_ids(parameters: RTCRtpSendParameters) -> ExtensionIds:
    """The header extension ids the subscriber's answer negotiated for this sender."""
    ids = {ext.uri: ext.id for ext in parameters.headerExtensions}
    return ExtensionIds(
        mid=ids.get(MID_URI, 0),
        abs_send_time=ids.get(ABS_SEND_TIME_URI, 0),
        audio_level=ids.get(AUDIO_LEVEL_URI, 0),
    )


def send_rtp_now(dtls: RTCDtlsTransport, data: bytes, buffer_limit: int) -> bool:
    """What aiortc's ``RTCDtlsTransport._send_rtp`` does for an RTP packet (SRTP
    protect, then aioice's ``send_data`` on the nominated pair), without its awaits:
    the server's own candidates are host candidates (it uses no TURN), whose protocol
    sends with one ``sendto``. False, and nothing sent, while the socket holds more
    than ``buffer_limit`` bytes unsent (asyncio keeps what the kernel refuses).
    Raises ConnectionError if the path is not up."""
    if getattr(dtls, DTLS_STATE) is not DtlsState.CONNECTED:
        raise ConnectionError("not connected")
    pair = getattr(getattr(dtls.transport, ICE_CONNECTION), ICE_NOMINATED).get(1)
    if pair is None:
        raise ConnectionError("no nominated pair")
    protocol = pair.protocol
    if type(protocol) is not StunProtocol:
        raise ConnectionError("a relayed server candidate is not supported")
    # asyncio's datagram transports have get_write_buffer_size; typeshed's base lacks it.
    transport: Any = protocol.transport
    if transport is None or transport.is_closing():
        raise ConnectionError("socket closed")
    if transport.get_write_buffer_size() > buffer_limit:
        return False
    transport.sendto(getattr(dtls, DTLS_TX_SRTP).protect(data), pair.remote_addr)
    return True


def abs_send_time(now: float) -> int:
    """The abs-send-time header extension value (6.18 fixed point NTP seconds) for ``now``."""
    return int((now + NTP_EPOCH_OFFSET) * (1 << 18)) & 0xFFFFFF
