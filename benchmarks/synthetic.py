"""Synthetic participants for the benchmarks: pre-encoded media, replay, stamping, counting.

Media is encoded once (PyAV libvpx / libopus) and replayed as ``av.Packet`` in real time:
aiortc's sender only packetises it. Every RTP packet a publisher sends is stamped with
its send time, keyed by the last 12 bytes of its payload (an SFU rewrites SSRC, sequence
number, timestamp and the VP8 descriptor at the front, never the payload tail); receivers
count packets per kind without depacketising or decoding and look the stamp up.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.rtp import RtpPacket, is_rtcp

WIDTH, HEIGHT, FPS = 640, 360, 30
VIDEO_SECONDS = 4  # looped; keyframes at 0 s and 2 s
KEYFRAME_INTERVAL = 2 * FPS
AUDIO_FRAME = 960  # 20 ms at 48 kHz
AUDIO_SECONDS = 2
TAIL = 12
VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)
AUDIO_TIME_BASE = fractions.Fraction(1, 48_000)


@dataclass(frozen=True)
class EncodedMedia:
    """Pre-encoded media: ``video[0]`` is a keyframe, ``keyframes`` lists the others."""

    video: tuple[bytes, ...]
    video_keyframes: tuple[int, ...]
    audio: tuple[bytes, ...]

    @property
    def video_kbps(self) -> float:
        return sum(len(f) for f in self.video) * 8 / (len(self.video) / FPS) / 1000

    @property
    def audio_kbps(self) -> float:
        seconds = len(self.audio) * AUDIO_FRAME / 48_000
        return sum(len(f) for f in self.audio) * 8 / seconds / 1000


def encode_media() -> EncodedMedia:
    """A moving pattern (640x360, 30 fps, ~500 kbit/s) and 20 ms Opus frames of noise."""
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    ctx.time_base = fractions.Fraction(1, FPS)
    ctx.framerate = FPS
    ctx.bit_rate = 250_000  # libvpx overshoots on this content: ~500 kbit/s result
    ctx.gop_size = KEYFRAME_INTERVAL
    ctx.options = {
        "deadline": "realtime",
        "cpu-used": "8",
        "lag-in-frames": "0",
        "kf-min-dist": str(KEYFRAME_INTERVAL),
        "kf-max-dist": str(KEYFRAME_INTERVAL),
        "qmin": "4",
        "qmax": "63",
    }
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    video: list[bytes] = []
    keyframes: list[int] = []
    for i in range(VIDEO_SECONDS * FPS):
        image = np.empty((HEIGHT, WIDTH, 3), np.uint8)
        image[..., 0] = (128 + 100 * np.sin((xx + 4 * i) / 23.0)).astype(np.uint8)
        image[..., 1] = (128 + 100 * np.sin((yy - 3 * i) / 17.0)).astype(np.uint8)
        image[..., 2] = ((xx * yy // 97 + 7 * i) % 256).astype(np.uint8)
        image[100:140, 200 + 2 * i : 240 + 2 * i] = rng.integers(0, 255, (40, 40, 3), np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        for packet in [*ctx.encode(frame), *([] if i < VIDEO_SECONDS * FPS - 1 else ctx.encode())]:
            if packet.is_keyframe:
                keyframes.append(len(video))
            video.append(bytes(packet))
    assert keyframes and keyframes[0] == 0, "the first video frame must be a keyframe"

    actx = av.CodecContext.create("libopus", "w")
    actx.sample_rate, actx.layout, actx.format = 48_000, "mono", "s16"
    actx.bit_rate = 32_000
    actx.options = {"frame_duration": "20"}
    samples = (rng.standard_normal(48_000 * AUDIO_SECONDS) * 2500).astype(np.int16)
    audio: list[bytes] = []
    for i in range(len(samples) // AUDIO_FRAME):
        chunk = samples[i * AUDIO_FRAME : (i + 1) * AUDIO_FRAME].reshape(1, -1)
        aframe = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
        aframe.sample_rate = 48_000
        aframe.pts = i * AUDIO_FRAME
        audio.extend(bytes(p) for p in actx.encode(aframe))
    return EncodedMedia(tuple(video), tuple(keyframes), tuple(audio))


class ReplayTrack(MediaStreamTrack):
    """Replays encoded frames in real time, looping; a keyframe request jumps to frame 0.

    ``stop_at`` (loop time) bounds it: after that ``recv`` ends the track.
    """

    def __init__(self, kind: str, frames: tuple[bytes, ...], stop_at: float) -> None:
        super().__init__()
        self.kind = kind
        self._frames = frames
        self._stop_at = stop_at
        self._index = 0
        self._count = 0
        self._start: float | None = None
        if kind == "video":
            self._step, self._tick, self._time_base = 1 / FPS, 90_000 // FPS, VIDEO_TIME_BASE
        else:
            self._step, self._tick = AUDIO_FRAME / 48_000, AUDIO_FRAME
            self._time_base = AUDIO_TIME_BASE
        self.keyframe_requests = 0
        self.request_times: list[float] = []  # perf_counter of the first 200 PLI/FIR
        self._last_restart = -1.0

    def request_keyframe(self) -> None:
        # Answer PLI/FIR by restarting at the first keyframe (at most every 0.3 s).
        now = time.perf_counter()
        self.keyframe_requests += 1
        if len(self.request_times) < 200:
            self.request_times.append(now)
        if now - self._last_restart >= 0.3:
            self._last_restart = now
            self._index = 0

    async def recv(self) -> Any:
        loop = asyncio.get_running_loop()
        if self.readyState != "live" or loop.time() > self._stop_at:
            raise MediaStreamError
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self._count * self._step - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        data = self._frames[self._index]
        self._index = (self._index + 1) % len(self._frames)
        packet = av.Packet(data)
        packet.pts = self._count * self._tick
        packet.time_base = self._time_base
        self._count += 1
        return packet


def codec_only(kind: str) -> list[Any]:
    """Opus only (audio) or VP8 only (video), without RTX."""
    wanted = "audio/opus" if kind == "audio" else "video/vp8"
    return [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() == wanted]


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(
        RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)
    )


def browser_like_sdp(sdp: str) -> str:
    """``sdp`` with only the sha-256 DTLS fingerprint, as browsers send it.

    aiortc lists sha-256, sha-384 and sha-512 in every m-line (~500 characters each); with
    9 receive slots its answer is ~20,030 characters, over the server's 20,000 limit
    (``MAX_SDP_CHARS``). The server's DTLS check needs one supported fingerprint.
    """
    lines = sdp.split("\r\n")
    kept = [
        line
        for line in lines
        if not line.startswith(("a=fingerprint:sha-384", "a=fingerprint:sha-512"))
    ]
    return "\r\n".join(kept)


def vp8_keyframe_start(payload: bytes) -> bool:
    """True on the first packet of a VP8 keyframe (RFC 7741 descriptor, then P bit 0)."""
    if not payload:
        return False
    first = payload[0]
    if not first & 0x10 or first & 0x07:
        return False
    pos = 1
    if first & 0x80:
        if len(payload) < 2:
            return False
        ext = payload[1]
        pos = 2
        if ext & 0x80:
            pos += 2 if len(payload) > pos and payload[pos] & 0x80 else 1
        if ext & 0x40:
            pos += 1
        if ext & 0x30:
            pos += 1
    return pos < len(payload) and not payload[pos] & 0x01


@dataclass
class Ledger:
    """Everything the generator counts in one measurement (one event loop, no locks)."""

    stamps: dict[str, dict[bytes, float]] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=lambda: {"audio": 0, "video": 0})
    received: dict[str, int] = field(default_factory=lambda: {"audio": 0, "video": 0})
    delays: dict[str, list[float]] = field(default_factory=lambda: {"audio": [], "video": []})
    unmatched: dict[str, int] = field(default_factory=lambda: {"audio": 0, "video": 0})
    video_frames: int = 0  # video packets with the marker bit (last packet of a frame)
    measuring: bool = False


@dataclass
class Publication:
    pc: RTCPeerConnection
    audio: ReplayTrack
    video: ReplayTrack


async def make_publication(media: EncodedMedia, stop_at: float) -> Publication:
    """A sendonly audio+video peer connection with its local offer set.

    Call :func:`stamp_sends` after the answer is applied (bundling settles the transport).
    """
    pc = new_pc()
    audio = ReplayTrack("audio", media.audio, stop_at)
    video = ReplayTrack("video", media.video, stop_at)
    for track in (audio, video):
        transceiver = pc.addTransceiver(track, direction="sendonly")
        transceiver.setCodecPreferences(codec_only(track.kind))
        if track.kind == "video":
            sender: Any = transceiver.sender
            sender._send_keyframe = video.request_keyframe  # answer PLI without an encoder
    await pc.setLocalDescription(await pc.createOffer())
    return Publication(pc, audio, video)


def stamp_sends(publication: Publication, owner: str, ledger: Ledger) -> None:
    """Record the send time of every outgoing RTP packet by its payload tail."""
    kinds = {t.sender._ssrc: t.kind for t in publication.pc.getTransceivers()}
    stamps = ledger.stamps.setdefault(owner, {})
    sent = ledger.sent
    transports = {
        id(t.sender.transport): t.sender.transport for t in publication.pc.getTransceivers()
    }
    for transport in transports.values():
        original = transport._send_rtp

        async def send(data: bytes, original: Any = original) -> None:
            if not is_rtcp(data):
                stamps[data[-TAIL:]] = time.perf_counter()
                sent[kinds.get(int.from_bytes(data[8:12], "big"), "video")] += 1
            await original(data)

        transport._send_rtp = send


@dataclass
class FirstPackets:
    """When a subscriber saw its first packet of any kind and its first video keyframe."""

    any: float | None = None
    keyframe: float | None = None
    from_owners: set[str] = field(default_factory=set)
    keyframe_by_owner: dict[str, float] = field(default_factory=dict)


def count_receiver(
    transceiver: Any, owner_of_mid: dict[str, str], ledger: Ledger, first: FirstPackets
) -> None:
    """Replace the receiver's RTP handler: count, look up the stamp, never depacketise."""
    mid = str(transceiver.mid)
    kind = str(transceiver.kind)
    received = ledger.received
    delays = ledger.delays[kind]
    unmatched = ledger.unmatched
    stamps = ledger.stamps
    is_video = kind == "video"

    async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
        now = time.perf_counter()
        received[kind] += 1
        if is_video and packet.marker:
            ledger.video_frames += 1
        if first.any is None:
            first.any = now
        keyframe = is_video and vp8_keyframe_start(packet.payload)
        if keyframe and first.keyframe is None:
            first.keyframe = now
        owner = owner_of_mid.get(mid)
        if owner is None:
            return
        if keyframe and owner not in first.keyframe_by_owner:
            first.keyframe_by_owner[owner] = now
        if len(first.from_owners) < 64:
            first.from_owners.add(owner)
        if ledger.measuring:
            sent_at = stamps.get(owner, {}).get(packet.payload[-TAIL:])
            if sent_at is None:
                unmatched[kind] += 1
            else:
                delays.append(now - sent_at)

    transceiver.receiver._handle_rtp_packet = handle
