"""Every aiortc internal the SFU touches, in one place (aiortc is pinned to 1.16.0).

Publisher side: each SRTP packet is taken off the connection as its datagram arrives
(:func:`take_rtp`), unprotected with the DTLS transport's own SRTP session and handed to
the SFU synchronously: no aioice queue, no DTLS task, no ``RtpPacket``, and none of
aiortc's receive path (jitter buffer, depacketiser, decoder queue: the SFU decodes
nothing). What that path fed for the publisher's sake is kept by :class:`ReceiverPath`:
the statistics of aiortc's receiver reports and its REMB estimator; NACK and PLI are the
SFU's own (lost_packets.py, publisher.py) and are sent the same synchronous way. The
receivers' decoders are neutralised (their thread waits, never decodes).

Subscriber side: each slot's sender carries a :class:`SilentTrack`, so aiortc's own RTP
loop sends nothing; the SFU protects rewritten packets with the sender's DTLS transport's
SRTP session and hands them straight to the nominated pair's socket (no await, no task:
the forwarding hot path), and takes the sender's RTCP (NACK, PLI, FIR) for itself.

tests/media/test_aiortc_seams.py checks that every name below still exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

import pylibsrtp
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpparameters import RTCRtpSendParameters
from aiortc.rtcrtpreceiver import RTCRtpReceiver, StreamStatistics
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
    is_rtcp,
    pack_remb_fci,
    unpack_remb_fci,
)

from telecircle.media.datagram_guard import could_be_media
from telecircle.media.rtp_in import IncomingPacket
from telecircle.media.rtp_out import ExtensionIds, OutgoingStream
from telecircle.media.send_path import (
    ICE_CONNECTION,
    SendPath,
    send_rtcp_now,
    send_rtp_now,
)

RECEIVER_DECODER_QUEUE = "_RTCRtpReceiver__decoder_queue"
RECEIVER_RTP_HANDLER = "_handle_rtp_packet"
RECEIVER_SEND_PLI = "_send_rtcp_pli"
RECEIVER_SEND_NACK = "_send_rtcp_nack"
# What aiortc's receiver keeps for its RTCP: per-SSRC statistics (receiver reports), the
# REMB estimator (None without abs-send-time), and the SSRC its RTCP is sent from.
RECEIVER_REMOTE_STREAMS = "_RTCRtpReceiver__remote_streams"
RECEIVER_BITRATE_ESTIMATOR = "_RTCRtpReceiver__remote_bitrate_estimator"
RECEIVER_RTCP_SSRC = "_RTCRtpReceiver__rtcp_ssrc"
SENDER_RTCP_HANDLER = "_handle_rtcp_packet"
SENDER_SSRC = "_ssrc"
# Sender report fields: kept current so the subscriber can sync audio and video.
SENDER_NTP_TIMESTAMP = "_RTCRtpSender__ntp_timestamp"
SENDER_RTP_TIMESTAMP = "_RTCRtpSender__rtp_timestamp"
SENDER_PACKET_COUNT = "_RTCRtpSender__packet_count"
SENDER_OCTET_COUNT = "_RTCRtpSender__octet_count"
# The fast receive path: the incoming SRTP session, aiortc's RTP router (which receiver
# an SSRC or mid belongs to), the DTLS transport's handler for unprotected RTP, and the
# aioice connection's entry for datagrams that are not STUN.
DTLS_RX_SRTP = "_rx_srtp"
DTLS_ROUTER = "_rtp_router"
DTLS_HANDLE_RTP = "_handle_rtp_data"
ICE_DATA_RECEIVED = "data_received"
# SSRCs one publisher connection may bring (an audio, a camera and a screen stream);
# packets of others are dropped.
MAX_INCOMING_SSRCS = 8

RECEIVER_NAMES = (
    RECEIVER_DECODER_QUEUE,
    RECEIVER_RTP_HANDLER,
    RECEIVER_SEND_PLI,
    RECEIVER_SEND_NACK,
    RECEIVER_REMOTE_STREAMS,
    RECEIVER_BITRATE_ESTIMATOR,
    RECEIVER_RTCP_SSRC,
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
# How often (seconds) a slot's sender-report figures are brought up to date.
SENDER_REPORT_REFRESH = 0.1
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
    """Ask the publisher of ``media_ssrc`` for a keyframe through aiortc (RTCP PLI)."""
    await receiver._send_rtcp_pli(media_ssrc)


def nack_packet(rtcp_ssrc: int, media_ssrc: int, lost: list[int]) -> bytes:
    """An RTCP NACK asking for the ``lost`` packets of ``media_ssrc`` again.

    aiortc 1.16's NACK packer (``RtcpRtpfbPacket.__bytes__``) needs the numbers in
    ascending numeric order (its own receiver sends ``sorted(missing)``): a list that
    crosses the 65535 → 0 wrap in arrival order gives it a negative shift (ValueError).
    """
    return bytes(
        RtcpRtpfbPacket(
            fmt=RTCP_RTPFB_NACK, ssrc=rtcp_ssrc, media_ssrc=media_ssrc, lost=sorted(lost)
        )
    )


RtpHandler = Callable[[bytes], None]


def take_rtp(dtls: RTCDtlsTransport, handle: RtpHandler) -> None:
    """From now on give every RTP packet (not RTCP) that reaches ``dtls`` to
    ``handle(plain)``, unprotected, synchronously as its datagram arrives, instead of to
    aiortc's receivers. DTLS records and SRTCP take aiortc's path as before, and so do
    packets that arrive before DTLS is up (aiortc drops those).

    The datagram has passed ice_policy's gate (from the nominated pair only); the same
    length bounds as its filter apply here (:func:`could_be_media`: pylibsrtp's buffer
    holds 1500 bytes). ``handle`` must not raise: it runs in the event loop's read callback.
    """
    connection: Any = getattr(dtls.transport, ICE_CONNECTION)
    deliver = getattr(type(connection), ICE_DATA_RECEIVED)  # ice_policy's filter, if installed

    def data_received(data: bytes, component: int) -> None:
        if data and 127 < data[0] < 192 and not is_rtcp(data):
            srtp = getattr(dtls, DTLS_RX_SRTP)
            if srtp is not None:
                if not could_be_media(data):
                    return
                try:
                    plain = srtp.unprotect(data)
                except pylibsrtp.Error:
                    return  # not from the peer, a replay, or damaged
                handle(plain)
                return
        deliver(connection, data, component)

    async def handle_rtp_data(data: bytes, arrival_time_ms: int) -> None:
        # What was queued before the switch still reaches the same handler.
        handle(data)

    setattr(connection, ICE_DATA_RECEIVED, data_received)
    setattr(dtls, DTLS_HANDLE_RTP, handle_rtp_data)


def route_rtp(dtls: RTCDtlsTransport, packet: IncomingPacket) -> RTCRtpReceiver | None:
    """The receiver an incoming packet belongs to, as aiortc's router finds it: by SSRC,
    else by the mid extension (then the SSRC is learned, as aiortc does, up to
    :data:`MAX_INCOMING_SSRCS`)."""
    router = getattr(dtls, DTLS_ROUTER)
    receiver: Any = router.ssrc_table.get(packet.ssrc)
    if receiver is None and packet.mid is not None:
        receiver = router.mid_table.get(packet.mid)
        if receiver is not None and len(router.ssrc_table) < MAX_INCOMING_SSRCS:
            router.ssrc_table[packet.ssrc] = receiver
    return receiver if isinstance(receiver, RTCRtpReceiver) else None


class ReceiverPath:
    """What aiortc's receive path did for one publisher track's sake, done from the fast
    path: the statistics its receiver reports are made of, its REMB estimate (sent
    when it changes), and PLI and NACK sent at once (no await). Sending never raises:
    a path that is down is the connection watcher's business."""

    def __init__(self, receiver: RTCRtpReceiver, dtls: RTCDtlsTransport, clock_rate: int) -> None:
        self._receiver = receiver
        self._dtls = dtls
        self._clock_rate = clock_rate
        self._streams: dict[int, StreamStatistics] = getattr(receiver, RECEIVER_REMOTE_STREAMS)
        self._estimator: Any = getattr(receiver, RECEIVER_BITRATE_ESTIMATOR)

    def received(self, packet: IncomingPacket, arrival_ms: int) -> None:
        """Count one packet as aiortc's receiver does (``arrival_ms``: any monotonic clock
        in ms, the estimator compares arrivals only with each other)."""
        stream = self._streams.get(packet.ssrc)
        if stream is None:
            if len(self._streams) >= MAX_INCOMING_SSRCS:
                return
            stream = self._streams[packet.ssrc] = StreamStatistics(self._clock_rate)
        stream.add(packet)  # type: ignore[arg-type]  # reads sequence_number and timestamp
        if self._estimator is None or packet.abs_send_time is None:
            return
        remb = self._estimator.add(
            abs_send_time=packet.abs_send_time,
            arrival_time_ms=arrival_ms,
            payload_size=len(packet.payload),
            ssrc=packet.ssrc,
        )
        rtcp_ssrc = getattr(self._receiver, RECEIVER_RTCP_SSRC)
        if remb is not None and rtcp_ssrc is not None:
            fci = pack_remb_fci(*remb)
            self._send(
                bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=fci))
            )

    def send_pli(self, media_ssrc: int) -> None:
        rtcp_ssrc = getattr(self._receiver, RECEIVER_RTCP_SSRC)
        if rtcp_ssrc is not None:
            self._send(
                bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=rtcp_ssrc, media_ssrc=media_ssrc))
            )

    def send_nack(self, media_ssrc: int, lost: list[int]) -> None:
        rtcp_ssrc = getattr(self._receiver, RECEIVER_RTCP_SSRC)
        if rtcp_ssrc is not None and lost:
            self._send(nack_packet(rtcp_ssrc, media_ssrc, lost))

    def _send(self, data: bytes) -> None:
        with contextlib.suppress(ConnectionError):
            send_rtcp_now(self._dtls, data)


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
    ``packets_sent`` and ``octets_sent`` count what :meth:`send_now` sent (payload
    bytes; resends not counted).
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
        self.packets_sent = 0
        self.octets_sent = 0
        self._report_due = 0.0
        self._dtls = sender.transport
        self._path: SendPath | None = None
        self._any: Any = sender
        original_send = sender.send
        original_rtcp = sender._handle_rtcp_packet

        async def send(parameters: RTCRtpSendParameters) -> None:
            await original_send(parameters)
            self._dtls = sender.transport  # bundled by now: it stays this one
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
        path = self._path
        if path is None or not path.current():
            path = self._path = SendPath(self._dtls)
        sent = path.send_rtp(data, self.buffer_limit)
        if sent:
            self.packets_sent += 1
            self.octets_sent += payload_bytes
            if now >= self._report_due:
                self._report_due = now + SENDER_REPORT_REFRESH
                self._refresh_report(now, rtp_timestamp)
        return sent

    def _refresh_report(self, now: float, rtp_timestamp: int) -> None:
        """What aiortc's own RTP loop keeps for its sender reports, as of this packet:
        the NTP and RTP times of one instant (how receivers line audio up with video)
        and the counts so far. Kept every SENDER_REPORT_REFRESH seconds rather than per
        packet: reports go out about once a second, and a pair a little older maps the
        clocks as well."""
        sender = self._any
        setattr(sender, SENDER_NTP_TIMESTAMP, int((now + NTP_EPOCH_OFFSET) * (1 << 32)))
        setattr(sender, SENDER_RTP_TIMESTAMP, rtp_timestamp)
        setattr(sender, SENDER_PACKET_COUNT, self.packets_sent)
        setattr(sender, SENDER_OCTET_COUNT, self.octets_sent)

    def resend(self, data: bytes) -> bool:
        """Send a packet again (NACK answer); not counted."""
        return send_rtp_now(self._dtls, data, self.buffer_limit)


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


def abs_send_time(now: float) -> int:
    """The abs-send-time header extension value (6.18 fixed point NTP seconds) for ``now``."""
    return int((now + NTP_EPOCH_OFFSET) * (1 << 18)) & 0xFFFFFF
