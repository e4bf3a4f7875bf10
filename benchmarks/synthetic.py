"""Synthetic participants for the benchmarks: pre-encoded media, replay, stamping, counting.

Media is encoded once (PyAV libvpx / libopus) and replayed in real time by
:mod:`benchmarks.raw_rtp` (aiortc sets the connections up; the RTP is written, protected
and counted by hand, so the generator costs far less than the server). Every RTP packet a
publisher sends is stamped with its send time, keyed by the last 12 bytes of its payload
(an SFU rewrites SSRC, sequence number, timestamp and the VP8 descriptor at the front,
never the payload tail); receivers count packets per kind without depacketising or
decoding and look the stamp up.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCPeerConnection
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.sdp import SessionDescription

from benchmarks.raw_rtp import (
    RawPublisher,
    RawSource,
    RawStream,
    negotiated,
    payload_start,
    split_vp8,
    tap_subscriber,
)
from telecircle.media.aiortc_tap import SilentTrack

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
    """A participant's sendonly audio+video connection and the sources it replays.

    :func:`start_sending` starts its :class:`RawPublisher` once the answer is applied;
    :meth:`close` stops that and closes the connection."""

    pc: RTCPeerConnection
    audio: RawSource
    video: RawSource
    stop_at: float
    publisher: RawPublisher | None = None

    async def close(self) -> None:
        if self.publisher is not None:
            await self.publisher.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await self.pc.close()


async def make_publication(media: EncodedMedia, stop_at: float) -> Publication:
    """A sendonly audio+video peer connection with its local offer set; its tracks
    never yield (aiortc packetises nothing: the raw publisher sends). A keyframe request
    (PLI/FIR) to the video sender restarts the video at its first keyframe."""
    pc = new_pc()
    audio = RawSource(tuple((frame,) for frame in media.audio))
    video = RawSource(tuple(split_vp8(frame) for frame in media.video))
    for kind in ("audio", "video"):
        transceiver = pc.addTransceiver(SilentTrack(kind), direction="sendonly")
        transceiver.setCodecPreferences(codec_only(kind))
        if kind == "video":
            sender: Any = transceiver.sender
            sender._send_keyframe = video.request_keyframe  # answer PLI without an encoder
    await pc.setLocalDescription(await pc.createOffer())
    return Publication(pc, audio, video, stop_at)


def start_sending(publication: Publication, owner: str, ledger: Ledger) -> None:
    """Start sending once the answer is applied; each packet's send time is recorded
    by its payload tail (an SFU rewrites the front of a packet, never its tail)."""
    pc = publication.pc
    setups = negotiated(pc.remoteDescription.sdp)
    streams: dict[str, RawStream] = {}
    dtls = None
    for transceiver in pc.getTransceivers():
        setup = setups[str(transceiver.mid)]
        audio = transceiver.kind == "audio"
        streams[transceiver.kind] = RawStream(
            setup, transceiver.sender._ssrc, AUDIO_FRAME if audio else 90_000 // FPS, audio
        )
        dtls = transceiver.sender.transport
    stamps = ledger.stamps.setdefault(owner, {})
    sent = ledger.sent

    def on_sent(kind: str, data: bytes) -> None:
        stamps[data[-TAIL:]] = time.perf_counter()
        sent[kind] += 1

    publication.publisher = RawPublisher(
        dtls,
        (streams["audio"], publication.audio),
        (streams["video"], publication.video),
        on_sent,
        publication.stop_at,
    )
    publication.publisher.start()


@dataclass
class FirstPackets:
    """When a subscriber saw its first packet of any kind and its first video keyframe."""

    any: float | None = None
    keyframe: float | None = None
    from_owners: set[str] = field(default_factory=set)
    keyframe_by_owner: dict[str, float] = field(default_factory=dict)


PacketNote = Callable[[str, str, bytes, float], None]  # mid, kind, unprotected packet, time


def count_subscriber(
    pc: RTCPeerConnection,
    owner_of_mid: dict[str, str],
    ledger: Ledger,
    first: FirstPackets,
    also: PacketNote | None = None,
) -> None:
    """Count every RTP packet the subscribe connection ``pc`` receives, by the kind and
    owner of its mid, and look its send stamp up; never depacketise. ``also`` sees each
    packet after it is counted. Call after the local answer is set."""
    received, unmatched, stamps = ledger.received, ledger.unmatched, ledger.stamps

    def counter(mid: str, kind: str) -> Callable[[bytes, float], None]:
        is_video = kind == "video"
        delays = ledger.delays[kind]

        def count(plain: bytes, now: float) -> None:
            received[kind] += 1
            if is_video and plain[1] & 0x80:
                ledger.video_frames += 1
            if first.any is None:
                first.any = now
            owner = owner_of_mid.get(mid)
            looking = first.keyframe is None or owner not in first.keyframe_by_owner
            if is_video and looking and vp8_keyframe_start(plain[payload_start(plain) :]):
                if first.keyframe is None:
                    first.keyframe = now
                if owner is not None:
                    first.keyframe_by_owner.setdefault(owner, now)
            if owner is not None:
                if len(first.from_owners) < 64:
                    first.from_owners.add(owner)
                if ledger.measuring:
                    sent_at = stamps.get(owner, {}).get(plain[-TAIL:])
                    if sent_at is None:
                        unmatched[kind] += 1
                    else:
                        delays.append(now - sent_at)
            if also is not None:
                also(mid, kind, plain, now)

        return count

    counters = {}
    dtls = None
    for media in SessionDescription.parse(pc.remoteDescription.sdp).media:
        if media.rtp.muxId is None:
            continue
        count = counter(media.rtp.muxId, media.kind)
        for ssrc in media.ssrc:
            counters[ssrc.ssrc] = count
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
    if dtls is None:
        raise ValueError("the subscribe connection has no transceivers")
    tap_subscriber(dtls, counters)
