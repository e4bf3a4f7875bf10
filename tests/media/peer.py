"""A synthetic WebRTC participant for media tests: real aiortc peer connections.

It publishes pre-encoded VP8 (a solid colour per participant) and Opus, generated once
and replayed as ``av.Packet`` (aiortc only packetises them), paced in real time. Its
subscribe side answers the server's offer and counts RTP packets per mid; a peer built
with ``decode=True`` also decodes video to tell whose picture each mid shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtp import RtpPacket

from telecircle.domain.ids import ParticipantId
from telecircle.media import aiortc_tap
from telecircle.media.connection import new_peer_connection
from telecircle.media.room import MediaRoom
from telecircle.media.vp8 import parse_vp8, read_picture_id

WIDTH, HEIGHT = 160, 120
FPS = 10
AUDIO_FRAME = 2880  # 60 ms Opus frames: fewer packets, same code paths
PALETTE: list[tuple[int, int, int]] = [
    (220, 30, 30),
    (30, 200, 30),
    (30, 30, 220),
    (220, 220, 30),
    (220, 30, 220),
    (30, 220, 220),
    (240, 240, 240),
    (20, 20, 20),
    (240, 140, 20),
    (120, 60, 200),
]
VIDEO_TIME_BASE = fractions.Fraction(1, 90_000)
AUDIO_TIME_BASE = fractions.Fraction(1, 48_000)


@dataclass(frozen=True)
class EncodedMedia:
    """Pre-encoded media of one colour: ``video[0]`` is a keyframe."""

    colour: int
    video: tuple[bytes, ...]
    audio: tuple[bytes, ...]


def encode_media(
    colour: int, frames: int = 30, noise: int = 0, bit_rate: int = 100_000
) -> EncodedMedia:
    """``frames`` of one colour (VP8) and a tone (Opus). ``noise`` (0-100) scatters each
    pixel around the colour, different in every frame, so that the video takes about
    ``bit_rate`` (a flat colour costs next to nothing whatever is asked)."""
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    ctx.time_base = fractions.Fraction(1, FPS)
    ctx.framerate = fractions.Fraction(FPS)
    ctx.bit_rate = bit_rate
    ctx.gop_size = 1000
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    image = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    image[:] = PALETTE[colour]
    rng = np.random.default_rng(colour)
    video: list[bytes] = []
    for i in range(frames):
        picture = image
        if noise:
            scatter = rng.integers(-noise, noise + 1, size=image.shape)
            picture = np.clip(image.astype(np.int16) + scatter, 0, 255).astype(np.uint8)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        video.extend(bytes(p) for p in ctx.encode(frame))
    video.extend(bytes(p) for p in ctx.encode(None))

    actx = av.CodecContext.create("libopus", "w")
    actx.sample_rate, actx.layout, actx.format = 48_000, "mono", "s16"
    actx.bit_rate = 24_000
    actx.options = {"frame_duration": "60"}
    tone = (np.sin(np.arange(960) * (colour + 1) / 20) * 3000).astype(np.int16).reshape(1, -1)
    audio: list[bytes] = []
    for i in range(30):
        aframe = av.AudioFrame.from_ndarray(tone, format="s16", layout="mono")
        aframe.sample_rate = 48_000
        aframe.pts = i * 960
        audio.extend(bytes(p) for p in actx.encode(aframe))
    return EncodedMedia(colour, tuple(video), tuple(audio))


class ReplayTrack(MediaStreamTrack):
    """Replays encoded packets in real time; a keyframe request restarts the video loop."""

    def __init__(self, kind: str, packets: tuple[bytes, ...]) -> None:
        super().__init__()
        self.kind = kind
        self._packets = packets
        self._index = 0
        self._count = 0
        self._start: float | None = None
        if kind == "video":
            self._step, self._tick, self._time_base = 1 / FPS, 90_000 // FPS, VIDEO_TIME_BASE
        else:
            self._step, self._tick = AUDIO_FRAME / 48_000, AUDIO_FRAME
            self._time_base = AUDIO_TIME_BASE
        self.keyframes_requested = 0

    @property
    def sent(self) -> int:
        """Packets handed to aiortc so far (one RTP packet each at these sizes)."""
        return self._count

    def request_keyframe(self) -> None:
        self.keyframes_requested += 1
        self._index = 0

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self._count * self._step - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        data = self._packets[self._index % len(self._packets)]
        if self._index + 1 >= len(self._packets):
            self._index = 1 if self.kind == "video" else 0  # loop without re-sending key
        else:
            self._index += 1
        packet = av.Packet(data)
        packet.pts = self._count * self._tick
        packet.time_base = self._time_base
        self._count += 1
        return packet


@dataclass
class Received:
    """What one peer's subscribe connection got, per mid."""

    packets: Counter[str] = field(default_factory=Counter)
    colours: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    audio_frames: Counter[str] = field(default_factory=Counter)
    keyframes: Counter[str] = field(default_factory=Counter)
    # The SSRC each mid's packets arrive with (the server's sender for that slot).
    ssrcs: dict[str, int] = field(default_factory=dict)
    # Every video packet per mid: (sequence number, timestamp, VP8 picture id, keyframe).
    video_log: dict[str, list[tuple[int, int, int, bool]]] = field(
        default_factory=lambda: defaultdict(list)
    )


def nearest_colour(rgb: Any) -> int:
    mean = np.asarray(rgb).reshape(-1, 3).mean(axis=0)
    distances = [float(np.sum((mean - np.array(c)) ** 2)) for c in PALETTE]
    return int(np.argmin(distances))


class SyntheticPeer:
    """One participant: a publish and a subscribe peer connection to a MediaRoom."""

    def __init__(self, pid: str, media: EncodedMedia, *, decode: bool = False) -> None:
        self.pid = ParticipantId(pid)
        self.media = media
        self.decode = decode
        self.received = Received()
        self.slot_mids: dict[int, tuple[str, str]] = {}
        self.publish_pc: RTCPeerConnection | None = None
        self.subscribe_pc: RTCPeerConnection | None = None
        self.video_track: ReplayTrack | None = None
        self.audio_track: ReplayTrack | None = None
        self.screen_track: ReplayTrack | None = None
        self.screen_mid = ""
        self._tasks: list[asyncio.Task[None]] = []

    async def publish(self, room: MediaRoom, screen: EncodedMedia | None = None) -> None:
        """Publish audio and video (and ``screen``'s video as a shared screen)."""
        pc = new_peer_connection()
        self.publish_pc = pc
        audio = ReplayTrack("audio", self.media.audio)
        video = ReplayTrack("video", self.media.video)
        self.video_track, self.audio_track = video, audio
        pc.addTransceiver(audio, direction="sendonly")
        video_sender: Any = pc.addTransceiver(video, direction="sendonly").sender
        video_sender._send_keyframe = video.request_keyframe  # answer PLI without an encoder
        if screen is not None:
            self.screen_track = ReplayTrack("video", screen.video)
            screen_sender: Any = pc.addTransceiver(self.screen_track, direction="sendonly").sender
            screen_sender._send_keyframe = self.screen_track.request_keyframe
        await pc.setLocalDescription(await pc.createOffer())
        answer = await room.publish(self.pid, pc.localDescription.sdp)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def subscribe(self, room: MediaRoom, slot_count: int) -> None:
        offer, mids, screen_mid = await room.subscribe(self.pid, slot_count)
        self.slot_mids = {m.index: (m.audio_mid, m.video_mid) for m in mids}
        self.screen_mid = screen_mid
        pc = new_peer_connection()
        self.subscribe_pc = pc
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        for transceiver in pc.getTransceivers():
            self._watch(transceiver)
        await pc.setLocalDescription(await pc.createAnswer())
        await room.accept_subscribe_answer(self.pid, pc.localDescription.sdp)

    def _watch(self, transceiver: Any) -> None:
        mid = str(transceiver.mid)
        receiver = transceiver.receiver
        received = self.received
        kind = transceiver.kind

        async def count(packet: RtpPacket) -> None:
            received.packets[mid] += 1
            received.ssrcs[mid] = packet.ssrc
            if kind != "video":
                return
            info = parse_vp8(packet.payload)
            if info is None:
                return
            if info.keyframe:
                received.keyframes[mid] += 1
            picture_id = read_picture_id(packet.payload, info)
            received.video_log[mid].append(
                (packet.sequence_number, packet.timestamp, picture_id, info.keyframe)
            )

        aiortc_tap.tap_rtp(receiver, count)
        if self.decode:
            task = asyncio.get_running_loop().create_task(self._consume(mid, kind, receiver.track))
            self._tasks.append(task)
        else:
            aiortc_tap.neutralise_decoder(receiver)

    async def _consume(self, mid: str, kind: str, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if isinstance(frame, av.VideoFrame):
                    small = frame.to_ndarray(format="rgb24")[::8, ::8]
                    self.received.colours[mid][nearest_colour(small)] += 1
                else:
                    self.received.audio_frames[mid] += 1

    def mids_of(
        self, assignments: list[tuple[int, ParticipantId | None]], owner: str
    ) -> tuple[str, str]:
        for index, pid in assignments:
            if pid == owner:
                return self.slot_mids[index]
        raise KeyError(owner)

    async def send_pli(self, mid: str) -> None:
        """Ask for a keyframe on ``mid`` as a browser would: an RTCP PLI from its receiver."""
        assert self.subscribe_pc is not None
        for transceiver in self.subscribe_pc.getTransceivers():
            if transceiver.mid == mid:
                await aiortc_tap.send_pli(transceiver.receiver, self.received.ssrcs[mid])
                return
        raise KeyError(mid)

    async def close(self) -> None:
        for pc in (self.publish_pc, self.subscribe_pc):
            if pc is not None:
                await pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def wait_until(
    predicate: Callable[[], bool], timeout: float = 20.0, step: float = 0.1
) -> None:
    """Poll ``predicate`` until true; fail the test (TimeoutError) after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(step)
