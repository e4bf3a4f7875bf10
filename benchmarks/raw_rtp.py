"""The light side of the load generator: RTP written, protected and counted by hand.

aiortc still sets the connections up (ICE, DTLS, SDP) but carries no media: a
publisher's tracks never yield a frame, and :class:`RawPublisher` writes the RTP packets
itself (pre-split VP8 frames and Opus frames, one ``struct`` call per header), protects
them with the connection's own SRTP session and hands them to the socket
(``telecircle.media.aiortc_tap.send_rtp_now``, the SFU's own send path). A subscriber's
datagrams are taken off the socket before aioice's queue (:func:`tap_subscriber`):
unprotected, matched to their stream by SSRC and counted, never parsed into packet
objects, depacketised or decoded. STUN, DTLS and RTCP go on to aiortc as before.

This keeps the generator's cost per packet a small part of the server's, so the
server saturates first (the figures say what the generator used).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pylibsrtp
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtcdtlstransport import State as DtlsState
from aiortc.rtp import is_rtcp
from aiortc.sdp import SessionDescription

from telecircle.media.aiortc_tap import (
    ABS_SEND_TIME_URI,
    AUDIO_LEVEL_URI,
    MID_URI,
    abs_send_time,
    send_rtp_now,
)
from telecircle.media.rtp_out import ExtensionIds, OutgoingStream

PACKET_MAX = 1300  # payload bytes per packet, as aiortc's VP8 packetiser
VP8_DESCRIPTOR_BYTES = 4  # X=1, I=1, 15-bit picture id
SEND_BUFFER_LIMIT = 1 << 20  # the generator never drops its own packets
CATCH_UP_LIMIT = 0.2  # seconds behind schedule before the schedule restarts from now
KEYFRAME_RESTART_GAP = 0.3  # a keyframe request restarts the loop at most this often
AUDIO_LEVEL = (True, 30)  # voice, -30 dBov: every publisher talks


def split_vp8(frame: bytes) -> tuple[bytes, ...]:
    """A VP8 frame's packet bodies, each short enough for its 4-byte descriptor."""
    size = PACKET_MAX - VP8_DESCRIPTOR_BYTES
    return tuple(frame[pos : pos + size] for pos in range(0, len(frame), size))


def vp8_descriptor(first: bool, picture_id: int) -> bytes:
    """RFC 7741 payload descriptor with a 15-bit picture id (what aiortc writes)."""
    return bytes(
        (0x90 if first else 0x80, 0x80, 0x80 | (picture_id >> 8) & 0x7F, picture_id & 0xFF)
    )


@dataclass
class RawSource:
    """One looping sequence of frames; a keyframe request jumps back to frame 0."""

    frames: tuple[tuple[bytes, ...], ...]  # per frame: its packet bodies
    keyframe_requests: int = 0
    request_times: list[float] = field(default_factory=list)  # the first 200 requests
    index: int = 0
    _last_restart: float = -1.0

    def request_keyframe(self) -> None:
        now = time.perf_counter()
        self.keyframe_requests += 1
        if len(self.request_times) < 200:
            self.request_times.append(now)
        if now - self._last_restart >= KEYFRAME_RESTART_GAP:
            self._last_restart = now
            self.index = 0

    def next_frame(self) -> tuple[bytes, ...]:
        frame = self.frames[self.index]
        self.index = (self.index + 1) % len(self.frames)
        return frame


@dataclass(frozen=True)
class StreamSetup:
    """What the answer negotiated for one outgoing stream."""

    mid: str
    payload_type: int
    ids: ExtensionIds


def negotiated(answer_sdp: str) -> dict[str, StreamSetup]:
    """Per mid: the payload type and header extension ids of the server's answer."""
    setups = {}
    for media in SessionDescription.parse(answer_sdp).media:
        if not media.rtp.codecs or media.rtp.muxId is None:
            continue
        ids = {ext.uri: ext.id for ext in media.rtp.headerExtensions}
        setups[media.rtp.muxId] = StreamSetup(
            media.rtp.muxId,
            int(media.rtp.codecs[0].payloadType or 0),
            ExtensionIds(
                ids.get(MID_URI, 0), ids.get(ABS_SEND_TIME_URI, 0), ids.get(AUDIO_LEVEL_URI, 0)
            ),
        )
    return setups


class RawStream:
    """Sequence numbers and timestamps of one outgoing stream; writes its packets."""

    def __init__(self, setup: StreamSetup, ssrc: int, tick: int, audio: bool) -> None:
        self._writer = OutgoingStream(setup.payload_type, ssrc, setup.mid, setup.ids)
        self._tick = tick
        self._level = AUDIO_LEVEL if audio else None
        self.sequence = 0
        self.timestamp = 0

    def packets(self, bodies: tuple[bytes, ...], picture_id: int | None) -> list[bytes]:
        """One frame's packets (the marker on the last), then the clock moves a frame on."""
        now_abs = abs_send_time(time.time())
        out = []
        last = len(bodies) - 1
        for i, body in enumerate(bodies):
            payload = body if picture_id is None else vp8_descriptor(i == 0, picture_id) + body
            out.append(
                self._writer.packet(
                    int(i == last), self.sequence, self.timestamp, now_abs, self._level, payload
                )
            )
            self.sequence = (self.sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + self._tick) & 0xFFFFFFFF
        return out


SendStamp = Callable[[str, bytes], None]  # (kind, packet) once it is handed to the socket


class RawPublisher:
    """Sends one participant's audio and video in real time until ``stop_at`` (loop time).

    Owned by its participant: :meth:`start` makes the task, :meth:`close` cancels it.
    """

    def __init__(
        self,
        dtls: RTCDtlsTransport,
        audio: tuple[RawStream, RawSource],
        video: tuple[RawStream, RawSource],
        on_sent: SendStamp,
        stop_at: float,
    ) -> None:
        self._dtls = dtls
        self._audio, self._video = audio, video
        self._on_sent = on_sent
        self._stop_at = stop_at
        self._picture_id = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _send(self, kind: str, packets: list[bytes]) -> None:
        for data in packets:
            try:
                send_rtp_now(self._dtls, data, SEND_BUFFER_LIMIT)
            except ConnectionError:
                return
            self._on_sent(kind, data)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dtls._state is not DtlsState.CONNECTED:
            if loop.time() > self._stop_at or self._dtls._state in (
                DtlsState.CLOSED,
                DtlsState.FAILED,
            ):
                return
            await asyncio.sleep(0.01)
        audio_due = video_due = loop.time()
        audio_step, video_step = 0.020, 1 / 30
        while (now := loop.time()) < self._stop_at:
            if now - min(audio_due, video_due) > CATCH_UP_LIMIT:
                audio_due = video_due = now  # the loop was stalled: no burst to catch up
            if now >= audio_due:
                stream, source = self._audio
                self._send("audio", stream.packets(source.next_frame(), None))
                audio_due += audio_step
            if now >= video_due:
                stream, source = self._video
                self._send("video", stream.packets(source.next_frame(), self._picture_id))
                self._picture_id = (self._picture_id + 1) & 0x7FFF
                video_due += video_step
            await asyncio.sleep(max(0.0, min(audio_due, video_due) - loop.time()))


PacketCounter = Callable[[bytes, float], None]  # (unprotected packet, arrival perf_counter)


def tap_subscriber(dtls: RTCDtlsTransport, counters: dict[int, PacketCounter]) -> None:
    """Count the connection's incoming RTP by SSRC (``counters``) straight off its
    sockets, after SRTP; everything else (STUN, DTLS, RTCP) goes on to aioice and aiortc.

    Call once the subscriber's answer is set (the ICE connection's sockets exist).
    Packets from an SSRC not in ``counters`` are dropped (counted by no one)."""
    connection: Any = dtls.transport._connection
    for protocol in connection._protocols:
        original = protocol.datagram_received

        def received(data: bytes, addr: Any, original: Any = original) -> None:
            if data and 127 < data[0] < 192 and not is_rtcp(data):
                srtp = dtls._rx_srtp
                if srtp is None:
                    return
                now = time.perf_counter()
                try:
                    plain = srtp.unprotect(data)
                except pylibsrtp.Error:
                    return
                counter = counters.get(int.from_bytes(plain[8:12], "big"))
                if counter is not None:
                    counter(plain, now)
                return
            original(data, addr)

        protocol.datagram_received = received


def payload_start(plain: bytes) -> int:
    """Where the payload of an unprotected RTP packet starts (after CSRCs and extensions)."""
    pos = 12 + 4 * (plain[0] & 0x0F)
    if plain[0] & 0x10 and len(plain) >= pos + 4:
        pos += 4 + 4 * int.from_bytes(plain[pos + 2 : pos + 4], "big")
    return pos
