"""A publisher: one participant's publish peer connection and its incoming tracks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiortc import RTCSessionDescription
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcrtpreceiver import RTCRtpReceiver

from telecircle.domain.bandwidth import RateMeter
from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import TrackKind, TrackRef
from telecircle.media import aiortc_tap
from telecircle.media.connection import Connection, codec_preferences
from telecircle.media.lost_packets import DEFAULT_NACK_POLICY, NackPolicy
from telecircle.media.rtp_in import IncomingPacket, parse_rtp
from telecircle.media.rtp_out import ExtensionIds
from telecircle.media.vp8 import Vp8Info, parse_vp8

logger = logging.getLogger(__name__)

Forward = Callable[["Publisher", TrackKind, IncomingPacket, Vp8Info | None], None]
# One incoming packet of one track, and the time it arrived (the event loop's clock).
Route = Callable[[IncomingPacket, float], None]
# An audio level (RFC 6464, -dBov) at least this loud counts as speaking.
SPEAKING_LEVEL = 50
# Bytes each forwarded packet carries besides its payload (RTP header, extensions, SRTP
# tag), counted in a stream's rate as receivers' estimates count them.
PACKET_OVERHEAD = 40


class KeyframeSource:
    """One incoming video stream's keyframe requests: coalesced and rate-limited to one
    per ``interval`` seconds; a keyframe seen from the publisher satisfies pending ones.
    Its lost packets too, asked for again as ``nack`` says (see lost_packets.py)."""

    def __init__(self, interval: float, nack: NackPolicy) -> None:
        self.interval = interval
        self.pending = False
        self.next_request = 0.0
        self.path: aiortc_tap.ReceiverPath | None = None
        self.ssrc: int | None = None
        self.lost = nack.tracker()

    def ask_again(self, now: float) -> None:
        """NACK the lost packets that are due again; ask for a keyframe for any given up."""
        again, gave_up = self.lost.due(now)
        if gave_up:
            self.pending = True
        path, ssrc = self.path, self.ssrc
        if again and path is not None and ssrc is not None:
            path.send_nack(ssrc, again)

    def flush(self, now: float) -> None:
        if now < self.next_request:
            return
        path, ssrc = self.path, self.ssrc
        if path is None or ssrc is None:
            return
        self.pending = False
        self.next_request = now + self.interval
        path.send_pli(ssrc)


class Publisher:
    """Receives one participant's audio, video and (for clinicians) shared screen, and
    hands each packet to ``forward``.

    ``forward`` is called synchronously for every RTP packet of the negotiated codec, as
    its datagram arrives (aiortc_tap.take_rtp: no queue, no task; aiortc's own receive
    path does not run, ReceiverPath keeps its receiver reports and REMB). The first
    audio m-line is the microphone, the first video m-line the camera and the second
    video m-line the shared screen; others are ignored. Keyframe requests are kept per
    video stream (see KeyframeSource), and so are lost video packets, asked for again
    until they come (see lost_packets.py).
    """

    def __init__(
        self,
        pid: ParticipantId,
        connection: Connection,
        forward: Forward,
        keyframe_interval: float,
        nack: NackPolicy = DEFAULT_NACK_POLICY,
    ) -> None:
        self.pid = pid
        self.connection = connection
        self.refs = {kind: TrackRef(pid, kind) for kind in TrackKind}
        self._forward = forward
        self._keyframes = {
            TrackKind.VIDEO: KeyframeSource(keyframe_interval, nack),
            TrackKind.SCREEN: KeyframeSource(keyframe_interval, nack),
        }
        self._loop = asyncio.get_running_loop()
        self._failed_once = False
        # What each track brings in (for weak receivers' video budgets), and when this
        # participant last spoke (whose video a weak receiver keeps longest).
        self.rates = {kind: RateMeter() for kind in TrackKind}
        self.last_spoke = float("-inf")
        self._routes: dict[RTCRtpReceiver, Route] = {}

    async def negotiate(self, offer_sdp: str, kinds: list[str]) -> str:
        """Apply the client's offer (already validated) and return the answer SDP."""
        pc = self.connection.pc
        for kind in kinds:
            transceiver = pc.addTransceiver(kind, direction="recvonly")
            transceiver.setCodecPreferences(codec_preferences(kind))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        # setRemoteDescription created the receivers and scheduled (not yet run) the task
        # that starts them: the decoder is replaced before its thread can start.
        free = {"audio": [TrackKind.AUDIO], "video": [TrackKind.VIDEO, TrackKind.SCREEN]}
        ids: dict[str, int] = {}
        transports: dict[int, RTCDtlsTransport] = {}
        for transceiver in pc.getTransceivers():
            receiver = transceiver.receiver
            aiortc_tap.neutralise_decoder(receiver)
            unused = free.get(transceiver.kind, [])
            if not unused or not transceiver._codecs:
                continue  # m-lines past the known ones are not forwarded
            track_kind = unused.pop(0)
            codec = transceiver._codecs[0]
            payload_type = int(codec.payloadType or 0)
            path = aiortc_tap.ReceiverPath(receiver, receiver.transport, int(codec.clockRate))
            if track_kind is TrackKind.AUDIO:
                self._routes[receiver] = self._audio_route(path, payload_type)
            else:
                self._keyframes[track_kind].path = path
                self._routes[receiver] = self._video_route(track_kind, path, payload_type)
            transports[id(receiver.transport)] = receiver.transport
            ids.update((ext.uri, ext.id) for ext in transceiver._headerExtensions)
        extension_ids = ExtensionIds(
            mid=ids.get(aiortc_tap.MID_URI, 0),
            abs_send_time=ids.get(aiortc_tap.ABS_SEND_TIME_URI, 0),
            audio_level=ids.get(aiortc_tap.AUDIO_LEVEL_URI, 0),
        )
        for dtls in transports.values():  # one, bundled, from browsers
            aiortc_tap.take_rtp(dtls, self._receive(dtls, extension_ids))
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return str(pc.localDescription.sdp)

    def _receive(self, dtls: RTCDtlsTransport, ids: ExtensionIds) -> aiortc_tap.RtpHandler:
        routes, loop = self._routes, self._loop

        def receive(plain: bytes) -> None:
            # Runs in the event loop's read callback: an exception would only be logged
            # there for every packet, so it is caught and logged once here.
            try:
                packet = parse_rtp(plain, ids)
                if packet is None:
                    return
                receiver = aiortc_tap.route_rtp(dtls, packet)
                route = routes.get(receiver) if receiver is not None else None
                if route is not None:
                    route(packet, loop.time())
            except Exception:
                if not self._failed_once:
                    self._failed_once = True
                    logger.exception("media.receive_failed publisher=%s", self.pid)

        return receive

    def _audio_route(self, path: aiortc_tap.ReceiverPath, payload_type: int) -> Route:
        rate = self.rates[TrackKind.AUDIO]

        def route(packet: IncomingPacket, now: float) -> None:
            path.received(packet, int(now * 1000))
            if packet.payload_type == payload_type:
                rate.add(len(packet.payload) + PACKET_OVERHEAD, now)
                level = packet.audio_level
                if level is not None and level[1] <= SPEAKING_LEVEL:
                    self.last_spoke = now
                self._safe_forward(TrackKind.AUDIO, packet, None)
            self._flush_keyframe_requests(now)

        return route

    def _video_route(
        self, kind: TrackKind, path: aiortc_tap.ReceiverPath, payload_type: int
    ) -> Route:
        keyframes = self._keyframes[kind]
        rate = self.rates[kind]

        def route(packet: IncomingPacket, now: float) -> None:
            path.received(packet, int(now * 1000))
            if packet.payload_type == payload_type:
                keyframes.ssrc = packet.ssrc
                seq = packet.sequence_number
                rate.add(len(packet.payload) + PACKET_OVERHEAD, now)
                if keyframes.lost.received(packet.ssrc, seq, now):
                    keyframes.pending = True  # too much lost to ask for packet by packet
                info = parse_vp8(packet.payload)
                if info is not None:
                    if info.keyframe:
                        keyframes.pending = False
                        keyframes.lost.keyframe(seq)
                    self._safe_forward(kind, packet, info)
            self._flush_keyframe_requests(now)

        return route

    def _safe_forward(self, kind: TrackKind, packet: IncomingPacket, info: Vp8Info | None) -> None:
        # One subscriber's failure must not stop the others' packets: logged once.
        try:
            self._forward(self, kind, packet, info)
        except Exception:
            if not self._failed_once:
                self._failed_once = True
                logger.exception("media.forward_failed publisher=%s", self.pid)

    def request_keyframe(self, kind: TrackKind = TrackKind.VIDEO) -> None:
        """Ask for a keyframe of the camera (or the screen) soon (sent from the receive
        path, rate-limited)."""
        source = self._keyframes.get(kind)
        if source is not None:
            source.pending = True

    def _flush_keyframe_requests(self, now: float) -> None:
        for source in self._keyframes.values():
            source.ask_again(now)
            if source.pending:
                source.flush(now)
