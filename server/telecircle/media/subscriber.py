"""A subscriber: one participant's subscribe peer connection, its slots and its send queue."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiortc import RTCSessionDescription
from aiortc.rtp import AnyRtcpPacket

from telecircle.domain.bandwidth import BandwidthPolicy, Report, Video, VideoBudget
from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import TrackKind, TrackRef
from telecircle.media import aiortc_tap
from telecircle.media.connection import Connection, codec_preferences
from telecircle.media.publisher import Publisher
from telecircle.media.rewrite import PictureIdRewriter, StreamRewriter
from telecircle.media.rtp_in import IncomingPacket
from telecircle.media.slots import SlotTable
from telecircle.media.vp8 import Vp8Info

logger = logging.getLogger(__name__)

AUDIO_CLOCK = 48_000
VIDEO_CLOCK = 90_000
# What one packet counts as when the packet limit on a subscriber's unsent packets
# becomes the byte limit on its socket's buffer.
PACKET_BYTES = 1200

VideoPausedCallback = Callable[[ParticipantId, frozenset[ParticipantId]], None]
# A sent packet as the NACK history keeps it: sequence number, marker, timestamp,
# abs-send-time and payload (what OutgoingStream.packet needs to write it again).
HistoryEntry = tuple[int, int, int, int, bytes]


class TrackSlot:
    """One sendonly transceiver of a slot: what feeds it and how its stream is rewritten.
    ``kind`` is the kind of track it carries (a screen is carried as video)."""

    def __init__(self, kind: TrackKind, index: int, history_size: int) -> None:
        self.kind = kind
        self.is_video = kind is not TrackKind.AUDIO
        self.index = index
        self.tap: aiortc_tap.SlotSenderTap | None = None
        self.publisher: ParticipantId | None = None
        self.active = False
        # Paused for this subscriber's weak connection (see domain/bandwidth.py).
        self.held = False
        self.waiting_keyframe = self.is_video
        self.rewriter = StreamRewriter(VIDEO_CLOCK if self.is_video else AUDIO_CLOCK)
        self.pictures = PictureIdRewriter()
        # Video only (no one NACKs audio: no audio codec here negotiates it). Each entry
        # keeps what rebuilds the packet, its payload shared with the other subscribers'
        # histories, not the packet: a ninth of the memory in a room of ten.
        self.history: list[HistoryEntry | None] = [None] * (history_size if self.is_video else 0)

    def resync(self, *, same_source: bool = False) -> None:
        """Restart from the next packet (audio) or the next keyframe (video)."""
        self.rewriter.rebase(keep_timestamps=same_source)
        if self.is_video:
            self.waiting_keyframe = True
            self.pictures.rebase()


class Subscriber:
    """Sends the media of up to ``slot_count`` publishers to one participant, and the
    one shared screen the participant may see (on its own m-line, after the slots).

    Each packet is rewritten, protected and handed to the subscriber's socket within
    :meth:`offer` (synchronous, from publishers' receive paths): no queue hop, no task.
    A socket that already holds ``queue_capacity`` packets' worth of unsent bytes drops
    the packet; a dropped video packet makes its slot wait for the next keyframe.

    The subscriber's RTCP (REMB estimates, receiver reports) feeds its video budget:
    videos its connection cannot carry are paused for it alone (audio continues) and
    come back with a keyframe; ``on_video_paused(pid, publishers)`` reports each change.
    """

    def __init__(
        self,
        pid: ParticipantId,
        connection: Connection,
        slot_count: int,
        queue_capacity: int,
        history_size: int,
        request_keyframe: Callable[[ParticipantId, TrackKind], None],
        publisher_of: Callable[[ParticipantId], Publisher | None],
        bandwidth: BandwidthPolicy,
        on_video_paused: VideoPausedCallback,
    ) -> None:
        self.pid = pid
        self.connection = connection
        self.table = SlotTable(slot_count)
        self.reported = False
        self.slots = [
            (
                TrackSlot(TrackKind.AUDIO, i, history_size),
                TrackSlot(TrackKind.VIDEO, i, history_size),
            )
            for i in range(slot_count)
        ]
        self.screen = TrackSlot(TrackKind.SCREEN, slot_count, history_size)
        self._buffer_limit = queue_capacity * PACKET_BYTES
        self._request_keyframe = request_keyframe
        self._publisher_of = publisher_of
        self._on_video_paused = on_video_paused
        self.budget = VideoBudget(bandwidth)
        # One RTCP packet reaches every sender it names: it counts once.
        self._last_feedback: AnyRtcpPacket | None = None
        self._loop = asyncio.get_running_loop()
        self.dropped = 0
        self.sent = 0
        self._failed_once = False

    async def negotiate(self) -> str:
        """Create the slots' transceivers and return the offer SDP."""
        pc = self.connection.pc
        for track_slot in [*(s for pair in self.slots for s in pair), self.screen]:
            kind = "video" if track_slot.is_video else "audio"
            transceiver = pc.addTransceiver(aiortc_tap.SilentTrack(kind), direction="sendonly")
            transceiver.setCodecPreferences(codec_preferences(kind))
            track_slot.tap = aiortc_tap.SlotSenderTap(
                transceiver.sender,
                on_started=self._started_callback(track_slot),
                on_nack=self._nack_callback(track_slot),
                on_keyframe_request=self._pli_callback(track_slot),
                on_feedback=self._feedback,
                buffer_limit=self._buffer_limit,
            )
        offer = await pc.createOffer()
        await pc.setLocalDescription(offer)
        return str(pc.localDescription.sdp)

    def screen_mid(self) -> str:
        return str(self.connection.pc.getTransceivers()[2 * len(self.slots)].mid)

    def mids(self) -> list[tuple[int, str, str]]:
        """(index, audio mid, video mid) per slot, from the negotiated transceivers."""
        transceivers = self.connection.pc.getTransceivers()
        return [
            (i, str(transceivers[2 * i].mid), str(transceivers[2 * i + 1].mid))
            for i in range(len(self.slots))
        ]

    async def accept_answer(self, answer_sdp: str) -> None:
        await self.connection.pc.setRemoteDescription(
            RTCSessionDescription(sdp=answer_sdp, type="answer")
        )

    async def close(self) -> None:
        """Close the peer connection. Idempotent."""
        await self.connection.close()

    # ---- routing (called by the room) -------------------------------------------------

    def assign(self, index: int, publisher: ParticipantId | None, audio: bool, video: bool) -> None:
        """Set who feeds slot ``index`` and which of its kinds this subscriber may receive."""
        for track_slot, active in zip(self.slots[index], (audio, video), strict=True):
            changed = track_slot.publisher != publisher
            resumed = active and not track_slot.active
            track_slot.publisher = publisher
            track_slot.active = active
            if track_slot.is_video:
                track_slot.held = publisher is not None and publisher in self.budget.paused
            if changed or resumed:
                track_slot.resync(same_source=not changed)
                # Ask for a keyframe only once this slot can send: a keyframe that arrives
                # before the connection is up is dropped, and publishers answer requests
                # at most about once a second, so an early request delays the picture.
                # Slots that are not ready yet ask when their sender starts.
                ready = track_slot.tap is not None and track_slot.tap.ready
                if ready and active and track_slot.is_video and publisher:
                    self._request_keyframe(publisher, track_slot.kind)

    def assign_screen(self, publisher: ParticipantId | None) -> None:
        """Set whose shared screen this subscriber receives (None: nobody's)."""
        screen = self.screen
        if screen.publisher == publisher:
            return
        screen.publisher = publisher
        screen.active = publisher is not None
        screen.resync()
        if publisher is not None and screen.tap is not None and screen.tap.ready:
            self._request_keyframe(publisher, TrackKind.SCREEN)

    def publisher_restarted(self, publisher: ParticipantId) -> None:
        """The publisher has a new connection: new SSRC and numbering, so start over."""
        if self.screen.publisher == publisher:
            self.screen.resync()
        index = self.table.index_of(publisher)
        if index is None:
            return
        for track_slot in self.slots[index]:
            track_slot.resync()

    def offer(
        self,
        publisher: ParticipantId,
        ref: TrackRef,
        packet: IncomingPacket,
        info: Vp8Info | None,
        now: float,
        abs_time: int,
    ) -> None:
        """Send a packet of ``publisher`` to this subscriber now, or drop it. Never blocks.
        The room calls it for the members of ``ref``'s audience only, with the wall-clock
        time of sending and its abs-send-time value (the same for the whole audience)."""
        if ref.kind is TrackKind.SCREEN:
            track_slot = self.screen
            if track_slot.publisher != publisher:
                return
        else:
            index = self.table.index_of(publisher)
            if index is None:
                return
            track_slot = self.slots[index][1 if info is not None else 0]
        tap = track_slot.tap
        if not track_slot.active or track_slot.held or tap is None or tap.stream is None:
            return
        try:
            sent = self._send(track_slot, tap, publisher, packet, info, now, abs_time)
        except ConnectionError:
            # The path is gone; the connection watcher reports it.
            self.dropped += 1
            return
        except Exception:
            # An exception here would end the publisher's receive loop: drop, log once.
            self.dropped += 1
            if not self._failed_once:
                self._failed_once = True
                logger.exception("media.send_failed subscriber=%s", self.pid)
            return
        if sent is False:
            self.dropped += 1
            if info is not None:
                if not track_slot.waiting_keyframe:
                    track_slot.resync(same_source=True)
                    self._request_keyframe(publisher, track_slot.kind)
                elif info.keyframe:
                    # The keyframe we waited for is lost.
                    self._request_keyframe(publisher, track_slot.kind)

    # ---- aiortc callbacks -------------------------------------------------------------

    def _started_callback(self, track_slot: TrackSlot) -> Callable[[], None]:
        def started() -> None:
            track_slot.resync()
            if track_slot.is_video and track_slot.publisher is not None:
                self._request_keyframe(track_slot.publisher, track_slot.kind)

        return started

    def _nack_callback(self, track_slot: TrackSlot) -> aiortc_tap.NackSink:
        async def nack(lost: list[int]) -> None:
            tap = track_slot.tap
            if tap is None:
                return
            history, stream = track_slot.history, tap.stream
            if not history or stream is None:
                return
            for seq in lost:
                entry = history[seq % len(history)]
                if entry is not None and entry[0] == seq:
                    _, marker, timestamp, abs_time, payload = entry
                    try:
                        tap.resend(stream.packet(marker, seq, timestamp, abs_time, None, payload))
                    except ConnectionError:
                        return

        return nack

    def _pli_callback(self, track_slot: TrackSlot) -> Callable[[], None]:
        def pli() -> None:
            if track_slot.publisher is not None and track_slot.active:
                self._request_keyframe(track_slot.publisher, track_slot.kind)

        return pli

    # ---- weak connections ---------------------------------------------------------------

    def _feedback(self, packet: AnyRtcpPacket) -> None:
        if packet is self._last_feedback:
            return
        self._last_feedback = packet
        feedback = aiortc_tap.read_feedback(packet)
        if feedback is None:
            return
        now = self._loop.time()
        videos, audio = self._sent(now)
        report = Report(now, videos, audio, feedback.estimate, feedback.loss, feedback.streams)
        if self.budget.update(report):
            self._hold_videos()

    def _sent(self, now: float) -> tuple[list[Video], float]:
        """The videos meant for this subscriber, the one who spoke last first, with their
        rates; and the rate of the audio sent to it."""
        spoken: list[tuple[float, Video]] = []
        audio = 0.0
        for audio_slot, video_slot in self.slots:
            owner = video_slot.publisher
            publisher = self._publisher_of(owner) if owner is not None else None
            if owner is None or publisher is None:
                continue
            if audio_slot.active:
                audio += publisher.rates[TrackKind.AUDIO].bits_per_second(now)
            if video_slot.active:
                rate = publisher.rates[TrackKind.VIDEO].bits_per_second(now)
                spoken.append((publisher.last_spoke, Video(owner, rate)))
        spoken.sort(key=lambda entry: entry[0], reverse=True)
        return [video for _, video in spoken], audio

    def _hold_videos(self) -> None:
        paused = self.budget.paused
        for _, video_slot in self.slots:
            held = video_slot.publisher is not None and video_slot.publisher in paused
            if held == video_slot.held:
                continue
            video_slot.held = held
            if not held and video_slot.publisher is not None:
                video_slot.resync(same_source=True)
                if video_slot.active and video_slot.tap is not None and video_slot.tap.ready:
                    self._request_keyframe(video_slot.publisher, video_slot.kind)
        loss, estimate, sending = self.budget.last_figures
        logger.info(
            "media.weak_video subscriber=%s paused=%d why=%s loss=%s estimate=%s sending=%d",
            self.pid,
            len(paused),
            self.budget.last_change,
            "-" if loss is None else f"{loss:.2f}",
            "-" if estimate is None else f"{estimate:.0f}",
            sending,
        )
        self._on_video_paused(self.pid, paused)

    # ---- sending ----------------------------------------------------------------------

    def _send(
        self,
        track_slot: TrackSlot,
        tap: aiortc_tap.SlotSenderTap,
        publisher: ParticipantId,
        packet: IncomingPacket,
        info: Vp8Info | None,
        now: float,
        abs_time: int,
    ) -> bool | None:
        """True: sent; False: the socket's buffer is full (dropped); None: not for this
        slot now (waiting for a keyframe, or a packet from before a switch)."""
        stream = tap.stream
        if stream is None:
            return None
        payload = packet.payload
        if info is not None:
            if track_slot.waiting_keyframe:
                if not info.keyframe:
                    # Keep asking (the publisher rate-limits): the first request or its
                    # keyframe may have been lost.
                    self._request_keyframe(publisher, track_slot.kind)
                    return None
                track_slot.waiting_keyframe = False
            payload = track_slot.pictures.map(payload, info)
        mapped = track_slot.rewriter.map(packet.sequence_number, packet.timestamp, now)
        if mapped is None:
            return None
        seq, timestamp = mapped
        data = stream.packet(
            packet.marker,
            seq,
            timestamp,
            abs_time,
            packet.audio_level,
            payload,
        )
        history = track_slot.history
        if history:
            history[seq % len(history)] = (seq, packet.marker, timestamp, abs_time, payload)
        if not tap.send_now(data, timestamp, len(payload), now):
            return False
        self.sent += 1
        return True
