"""A publisher: one participant's publish peer connection and its incoming tracks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiortc import RTCSessionDescription
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from telecircle.domain.bandwidth import RateMeter
from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import TrackKind, TrackRef
from telecircle.media import aiortc_tap
from telecircle.media.connection import Connection, codec_preferences
from telecircle.media.lost_packets import DEFAULT_NACK_POLICY, NackPolicy
from telecircle.media.vp8 import Vp8Info, parse_vp8

logger = logging.getLogger(__name__)

Forward = Callable[["Publisher", TrackKind, RtpPacket, Vp8Info | None], None]
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
        self.receiver: RTCRtpReceiver | None = None
        self.ssrc: int | None = None
        self.lost = nack.tracker()

    async def ask_again(self, now: float) -> None:
        """NACK the lost packets that are due again; ask for a keyframe for any given up."""
        again, gave_up = self.lost.due(now)
        if gave_up:
            self.pending = True
        receiver, ssrc = self.receiver, self.ssrc
        if again and receiver is not None and ssrc is not None:
            with contextlib.suppress(ConnectionError):
                await aiortc_tap.send_nack(receiver, ssrc, again)

    async def flush(self, now: float) -> None:
        if now < self.next_request:
            return
        receiver, ssrc = self.receiver, self.ssrc
        if receiver is None or ssrc is None:
            return
        self.pending = False
        self.next_request = now + self.interval
        with contextlib.suppress(ConnectionError):
            await aiortc_tap.send_pli(receiver, ssrc)


class Publisher:
    """Receives one participant's audio, video and (for clinicians) shared screen, and
    hands each packet to ``forward``.

    ``forward`` is called synchronously for every RTP packet of the negotiated codec, before
    aiortc's own receive path. The first audio m-line is the microphone, the first video
    m-line the camera and the second video m-line the shared screen; others are ignored.
    Keyframe requests are kept per video stream (see KeyframeSource), and so are lost
    video packets, asked for again until they come (see lost_packets.py).
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
        for transceiver in pc.getTransceivers():
            receiver = transceiver.receiver
            aiortc_tap.neutralise_decoder(receiver)
            unused = free.get(transceiver.kind, [])
            if not unused or not transceiver._codecs:
                continue  # m-lines past the known ones are not forwarded
            track_kind = unused.pop(0)
            payload_type = int(transceiver._codecs[0].payloadType or 0)
            if track_kind is TrackKind.AUDIO:
                aiortc_tap.tap_rtp(receiver, self._audio_tap(payload_type))
            else:
                self._keyframes[track_kind].receiver = receiver
                aiortc_tap.tap_rtp(receiver, self._video_tap(track_kind, payload_type))
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return str(pc.localDescription.sdp)

    def _audio_tap(self, payload_type: int) -> aiortc_tap.PacketSink:
        rate = self.rates[TrackKind.AUDIO]

        async def tap(packet: RtpPacket) -> None:
            if packet.payload_type == payload_type:
                now = self._loop.time()
                rate.add(len(packet.payload) + PACKET_OVERHEAD, now)
                level = packet.extensions.audio_level
                if level is not None and level[1] <= SPEAKING_LEVEL:
                    self.last_spoke = now
                self._safe_forward(TrackKind.AUDIO, packet, None)
            await self._flush_keyframe_requests()

        return tap

    def _video_tap(self, kind: TrackKind, payload_type: int) -> aiortc_tap.PacketSink:
        keyframes = self._keyframes[kind]
        rate = self.rates[kind]

        async def tap(packet: RtpPacket) -> None:
            if packet.payload_type == payload_type:
                keyframes.ssrc = packet.ssrc
                seq = packet.sequence_number
                now = self._loop.time()
                rate.add(len(packet.payload) + PACKET_OVERHEAD, now)
                if keyframes.lost.received(packet.ssrc, seq, now):
                    keyframes.pending = True  # too much lost to ask for packet by packet
                info = parse_vp8(packet.payload)
                if info is not None:
                    if info.keyframe:
                        keyframes.pending = False
                        keyframes.lost.keyframe(seq)
                    self._safe_forward(kind, packet, info)
            await self._flush_keyframe_requests()

        return tap

    def _safe_forward(self, kind: TrackKind, packet: RtpPacket, info: Vp8Info | None) -> None:
        # An exception here would end aiortc's DTLS receive loop: the path would die.
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

    async def _flush_keyframe_requests(self) -> None:
        # Runs inside aiortc's DTLS receive loop too: an exception would end the path.
        now = self._loop.time()
        try:
            for source in self._keyframes.values():
                await source.ask_again(now)
                if source.pending:
                    await source.flush(now)
        except Exception:
            if not self._failed_once:
                self._failed_once = True
                logger.exception("media.feedback_failed publisher=%s", self.pid)
