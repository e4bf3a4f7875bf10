"""A publisher: one participant's publish peer connection and its incoming tracks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiortc import RTCSessionDescription
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtpPacket

from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import TrackKind, TrackRef
from telecircle.media import aiortc_tap
from telecircle.media.connection import Connection, codec_preferences
from telecircle.media.vp8 import Vp8Info, parse_vp8

logger = logging.getLogger(__name__)

Forward = Callable[["Publisher", TrackKind, RtpPacket, Vp8Info | None], None]


class Publisher:
    """Receives one participant's audio and video and hands each packet to ``forward``.

    ``forward`` is called synchronously for every RTP packet of the negotiated codec, before
    aiortc's own receive path. Keyframe requests are coalesced and rate-limited to one per
    ``keyframe_interval`` seconds; a keyframe seen from the publisher satisfies pending ones.
    """

    def __init__(
        self,
        pid: ParticipantId,
        connection: Connection,
        forward: Forward,
        keyframe_interval: float,
    ) -> None:
        self.pid = pid
        self.connection = connection
        self.audio_ref = TrackRef(pid, TrackKind.AUDIO)
        self.video_ref = TrackRef(pid, TrackKind.VIDEO)
        self._forward = forward
        self._keyframe_interval = keyframe_interval
        self._keyframe_pending = False
        self._next_keyframe_request = 0.0
        self._video_receiver: RTCRtpReceiver | None = None
        self._video_ssrc: int | None = None
        self._loop = asyncio.get_running_loop()
        self._failed_once = False

    async def negotiate(self, offer_sdp: str, kinds: list[str]) -> str:
        """Apply the client's offer (already validated) and return the answer SDP."""
        pc = self.connection.pc
        for kind in kinds:
            transceiver = pc.addTransceiver(kind, direction="recvonly")
            transceiver.setCodecPreferences(codec_preferences(kind))
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        # setRemoteDescription created the receivers and scheduled (not yet run) the task
        # that starts them: the decoder is replaced before its thread can start.
        tapped: set[str] = set()
        for transceiver in pc.getTransceivers():
            receiver = transceiver.receiver
            aiortc_tap.neutralise_decoder(receiver)
            kind = transceiver.kind
            if kind in tapped or not transceiver._codecs:
                continue  # only the first m-line of each kind is forwarded
            tapped.add(kind)
            payload_type = int(transceiver._codecs[0].payloadType or 0)
            if kind == "video":
                self._video_receiver = receiver
                aiortc_tap.tap_rtp(receiver, self._video_tap(payload_type))
            else:
                aiortc_tap.tap_rtp(receiver, self._audio_tap(payload_type))
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return str(pc.localDescription.sdp)

    def _audio_tap(self, payload_type: int) -> aiortc_tap.PacketSink:
        async def tap(packet: RtpPacket) -> None:
            if packet.payload_type == payload_type:
                self._safe_forward(TrackKind.AUDIO, packet, None)
            if self._keyframe_pending:
                await self._flush_keyframe_request()

        return tap

    def _video_tap(self, payload_type: int) -> aiortc_tap.PacketSink:
        async def tap(packet: RtpPacket) -> None:
            if packet.payload_type == payload_type:
                self._video_ssrc = packet.ssrc
                info = parse_vp8(packet.payload)
                if info is not None:
                    if info.keyframe:
                        self._keyframe_pending = False
                    self._safe_forward(TrackKind.VIDEO, packet, info)
            if self._keyframe_pending:
                await self._flush_keyframe_request()

        return tap

    def _safe_forward(self, kind: TrackKind, packet: RtpPacket, info: Vp8Info | None) -> None:
        # An exception here would end aiortc's DTLS receive loop: the path would die.
        try:
            self._forward(self, kind, packet, info)
        except Exception:
            if not self._failed_once:
                self._failed_once = True
                logger.exception("media.forward_failed publisher=%s", self.pid)

    def request_keyframe(self) -> None:
        """Ask for a keyframe soon (sent from the receive path, rate-limited)."""
        self._keyframe_pending = True

    async def _flush_keyframe_request(self) -> None:
        now = self._loop.time()
        if now < self._next_keyframe_request:
            return
        receiver, ssrc = self._video_receiver, self._video_ssrc
        if receiver is None or ssrc is None:
            return
        self._keyframe_pending = False
        self._next_keyframe_request = now + self._keyframe_interval
        with contextlib.suppress(ConnectionError):
            await aiortc_tap.send_pli(receiver, ssrc)
