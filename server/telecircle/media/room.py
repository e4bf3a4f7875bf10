"""A media room: the publishers and subscribers of one live session, and the routing.

:class:`MediaRoom` implements the ``MediaRouting`` port of telecircle.services.ports; its
class docstring states the contract.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any

from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import TrackKind, TrackRef
from telecircle.media import aiortc_tap
from telecircle.media.connection import Connection, new_peer_connection
from telecircle.media.errors import MediaError
from telecircle.media.publisher import Publisher
from telecircle.media.rtp_in import IncomingPacket
from telecircle.media.sdp_check import (
    CandidatePolicy,
    check_publish_offer,
    check_subscribe_answer,
)
from telecircle.media.settings import MediaSettings
from telecircle.media.subscriber import Subscriber, VideoPausedCallback
from telecircle.media.vp8 import Vp8Info
from telecircle.services.ports import ReceiveSlot

logger = logging.getLogger(__name__)

SlotsCallback = Callable[[ParticipantId, list[tuple[int, ParticipantId | None]]], None]
PathLostCallback = Callable[[ParticipantId], None]
EMPTY: frozenset[ParticipantId] = frozenset()


def _ignore_video_paused(pid: ParticipantId, publishers: frozenset[ParticipantId]) -> None:
    """For rooms whose owner shows nobody which videos are paused."""


class MediaRoom:
    """Forwards each publisher's packets to the subscribers in the track's audience.

    Contract (the ``MediaRouting`` port of telecircle.services.ports):

    - Overlap: the caller serialises the calls for one participant (:meth:`publish`,
      :meth:`subscribe`, :meth:`accept_subscribe_answer`, :meth:`remove` of one pid never
      overlap); calls for different participants may overlap freely. :meth:`set_audiences`
      is synchronous and may be called at any time. :meth:`close` may overlap with
      anything: a call still negotiating then fails with ``media_closed``, one already
      past negotiation completes, and close() closes every connection either made; a
      second :meth:`close` waits for the first to finish.
    - Idempotence: :meth:`remove` of an unknown or removed pid does nothing; :meth:`close`
      is idempotent; :meth:`set_audiences` on a closed room is ignored. Neither
      :meth:`remove` nor :meth:`close` raises MediaError.
    - Errors: refusals raise :class:`~telecircle.media.errors.MediaError` (a
      TelecircleError) with one of the codes ``invalid_sdp``, ``invalid_request``,
      ``not_subscribed``, ``negotiation_timeout``, ``media_closed`` (see each method), and
      leave no half-open peer connection behind. A room never reopens once closed: the
      Sfu hands out a new room for the same key instead.

    Slot reports: ``on_slots(pid, assignments)`` is called for a subscriber first at the
    end of :meth:`accept_subscribe_answer` (its connection exists, the client can map
    mids), then after every :meth:`set_audiences` that changes its assignment. It is never
    called from :meth:`subscribe`. ``on_path_lost(pid)`` is called once per peer connection
    that fails or closes without :meth:`remove`/:meth:`close`/replacement; that connection
    is then closed and forgotten by the room. ``on_video_paused(pid, publishers)`` is
    called whenever the videos paused for pid's weak connection change (see
    domain/bandwidth.py). Callbacks must not raise.

    Background work (closing lost connections) runs in tasks the room owns: their
    failures are logged, and :meth:`close` waits for them (bounded).
    """

    def __init__(
        self,
        key: str,
        settings: MediaSettings,
        on_slots: SlotsCallback,
        on_path_lost: PathLostCallback,
        on_closed: Callable[[MediaRoom], None],
        on_video_paused: VideoPausedCallback | None = None,
    ) -> None:
        self.key = key
        self._settings = settings
        self._candidates = CandidatePolicy(
            settings.ice_host_addresses, settings.max_candidates_per_mline
        )
        self._on_slots = on_slots
        self._on_path_lost = on_path_lost
        self._on_closed = on_closed
        self._on_video_paused = on_video_paused or _ignore_video_paused
        self._audiences: dict[TrackRef, frozenset[ParticipantId]] = {}
        self._publishers: dict[ParticipantId, Publisher] = {}
        self._subscribers: dict[ParticipantId, Subscriber] = {}
        self._connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._close_done = asyncio.Event()

    @property
    def closed(self) -> bool:
        """True from the moment :meth:`close` starts: the room accepts no new work."""
        return self._closed

    # ---- publishing -------------------------------------------------------------------

    async def publish(self, pid: ParticipantId, offer_sdp: str) -> str:
        """Answer the client's publish offer; replaces pid's previous publish connection.

        Raises MediaError ``invalid_sdp`` (offer refused), ``negotiation_timeout`` or
        ``media_closed``; pid's previous publish connection is then left as it was.
        """
        self._check_open()
        offer = check_publish_offer(offer_sdp, self._settings.max_publish_mlines, self._candidates)
        self._note_dropped(pid, "publish", offer.dropped)
        connection = self._new_connection(pid, "publish")
        publisher = Publisher(
            pid,
            connection,
            self._forward,
            self._settings.keyframe_request_interval,
            self._settings.nack,
        )
        answer = await self._negotiate(
            connection, publisher.negotiate(offer.sdp, offer.kinds), pid, "publish"
        )
        old = self._publishers.get(pid)
        self._publishers[pid] = publisher
        for subscriber in self._subscribers.values():
            subscriber.publisher_restarted(pid)
        publisher.request_keyframe()
        if old is not None:
            await self._close_connection(old.connection)
        logger.info("media.published room=%s pid=%s", self.key, pid)
        return answer

    def _forward(
        self, publisher: Publisher, kind: TrackKind, packet: IncomingPacket, info: Vp8Info | None
    ) -> None:
        # The hot path: one dict lookup for the audience, one per audience member.
        if self._publishers.get(publisher.pid) is not publisher:
            return  # a replaced connection still delivering its last packets
        ref = publisher.refs[kind]
        audience = self._audiences.get(ref)
        if not audience:
            return
        subscribers = self._subscribers
        now = time.time()  # the send time, for the sender reports and abs-send-time
        abs_time = aiortc_tap.abs_send_time(now)
        for member in audience:
            subscriber = subscribers.get(member)
            if subscriber is not None:
                subscriber.offer(publisher.pid, ref, packet, info, now, abs_time)

    # ---- subscribing ------------------------------------------------------------------

    async def subscribe(
        self, pid: ParticipantId, slot_count: int
    ) -> tuple[str, list[ReceiveSlot], str]:
        """Offer pid a subscribe connection with ``slot_count`` slots; replaces the old one.

        Raises MediaError ``invalid_request`` (slot count out of range), ``invalid_sdp``,
        ``negotiation_timeout`` or ``media_closed``.
        """
        self._check_open()
        if not 1 <= slot_count <= self._settings.max_slots:
            raise MediaError("invalid_request", "The number of receive slots is out of range.")
        connection = self._new_connection(pid, "subscribe")
        subscriber = Subscriber(
            pid,
            connection,
            slot_count,
            self._settings.subscriber_queue_packets,
            self._settings.history_packets,
            request_keyframe=self._request_keyframe,
            publisher_of=self._publishers.get,
            bandwidth=self._settings.bandwidth,
            on_video_paused=self._on_video_paused,
        )
        offer = await self._negotiate(connection, subscriber.negotiate(), pid, "subscribe")
        mids = [ReceiveSlot(index=i, audio_mid=a, video_mid=v) for i, a, v in subscriber.mids()]
        screen_mid = subscriber.screen_mid()
        old = self._subscribers.get(pid)
        self._subscribers[pid] = subscriber
        self._route(subscriber)
        if old is not None:
            await self._close_subscriber(old)
        return offer, mids, screen_mid

    async def accept_subscribe_answer(self, pid: ParticipantId, answer_sdp: str) -> None:
        """Apply the client's answer; on a bad answer the subscribe connection is closed.

        Raises MediaError ``not_subscribed`` (no offer waiting, or already answered),
        ``invalid_sdp``, ``negotiation_timeout`` or ``media_closed``; on any of the last
        three pid has no subscribe connection any more (subscribe again).
        """
        self._check_open()
        subscriber = self._subscribers.get(pid)
        if subscriber is None or subscriber.reported:
            raise MediaError("not_subscribed", "There is no subscribe offer waiting for an answer.")
        try:
            answer = check_subscribe_answer(
                answer_sdp, 2 * len(subscriber.slots) + 1, self._candidates
            )
            self._note_dropped(pid, "subscribe", answer.dropped)
            await self._negotiate(
                subscriber.connection, subscriber.accept_answer(answer.sdp), pid, "subscribe"
            )
        except MediaError:
            if self._subscribers.get(pid) is subscriber:
                del self._subscribers[pid]
            await self._close_subscriber(subscriber)
            raise
        subscriber.reported = True
        self._on_slots(pid, subscriber.table.assignments())

    # ---- routing ----------------------------------------------------------------------

    def set_audiences(self, audiences: Mapping[TrackRef, frozenset[ParticipantId]]) -> None:
        """Replace the complete routing of the room (who may receive each track)."""
        if self._closed:
            return
        self._audiences = dict(audiences)
        for subscriber in self._subscribers.values():
            self._route(subscriber)

    def audience(self, ref: TrackRef) -> frozenset[ParticipantId]:
        """Who the room forwards ``ref`` to now (the routing last set)."""
        return self._audiences.get(ref, EMPTY)

    def _route(self, subscriber: Subscriber) -> None:
        pid = subscriber.pid
        wanted = {
            ref.owner
            for ref, members in self._audiences.items()
            if pid in members and ref.owner != pid
        }
        changed, overflow = subscriber.table.update(wanted)
        if overflow:
            logger.warning(
                "media.slots_exhausted room=%s subscriber=%s unplaced=%s",
                self.key,
                pid,
                ",".join(overflow),
            )
        for index, owner in subscriber.table.assignments():
            audio = video = False
            if owner is not None:
                audio = pid in self._audiences.get(TrackRef(owner, TrackKind.AUDIO), EMPTY)
                video = pid in self._audiences.get(TrackRef(owner, TrackKind.VIDEO), EMPTY)
            subscriber.assign(index, owner, audio, video)
        # The screen a subscriber may see (one sharer at a time; the lowest id if ever
        # more than one reached this subscriber).
        sharers = sorted(
            ref.owner
            for ref, members in self._audiences.items()
            if ref.kind is TrackKind.SCREEN and pid in members
        )
        subscriber.assign_screen(sharers[0] if sharers else None)
        if changed and subscriber.reported:
            self._on_slots(pid, subscriber.table.assignments())

    def _request_keyframe(self, publisher: ParticipantId, kind: TrackKind) -> None:
        target = self._publishers.get(publisher)
        if target is not None:
            target.request_keyframe(kind)

    # ---- lifecycle --------------------------------------------------------------------

    async def remove(self, pid: ParticipantId) -> None:
        """Close pid's connections and forget it. Its slots elsewhere follow the audiences.

        Idempotent; an unknown pid is ignored. Never reports pid's path lost.
        """
        publisher = self._publishers.pop(pid, None)
        subscriber = self._subscribers.pop(pid, None)
        if publisher is not None:
            await self._close_connection(publisher.connection)
        if subscriber is not None:
            await self._close_subscriber(subscriber)

    async def close(self) -> None:
        """Close every connection and task of the room.

        Idempotent: a call while another is in progress waits for that one to finish.
        The room is marked closed at once (calls in progress fail with ``media_closed``).
        """
        if self._closed:
            await self._close_done.wait()
            return
        self._closed = True
        try:
            await self._stop_tasks()
            for pid in list(self._publishers.keys() | self._subscribers.keys()):
                await self.remove(pid)
            for connection in list(self._connections):
                await self._close_connection(connection)
        finally:
            self._audiences = {}
            self._close_done.set()
            self._on_closed(self)
        logger.info("media.room_closed room=%s", self.key)

    async def _stop_tasks(self) -> None:
        if not self._tasks:
            return
        # Each of these closes one lost connection and is itself bounded by close_timeout.
        _, pending = await asyncio.wait(set(self._tasks), timeout=2 * self._settings.close_timeout)
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, stuck = await asyncio.wait(pending, timeout=self._settings.close_timeout)
        if stuck:
            logger.warning("media.tasks_stuck room=%s count=%d", self.key, len(stuck))

    def counts(self) -> tuple[int, int, int, int, int]:
        """(peer connections, publishers, subscribers, send paths, tasks) for leak checks."""
        return (
            len(self._connections),
            len(self._publishers),
            len(self._subscribers),
            len(self._subscribers),
            len(self._tasks),
        )

    # ---- helpers ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise MediaError("media_closed", "The media room is closed.")

    def _new_connection(self, pid: ParticipantId, role: str) -> Connection:
        holder: list[Connection] = []
        connection = Connection(
            new_peer_connection(),
            on_lost=lambda: self._path_lost(pid, role, holder[0]),
            close_timeout=self._settings.close_timeout,
            connect_timeout=self._settings.connect_timeout,
        )
        holder.append(connection)
        self._connections.add(connection)
        return connection

    def _note_dropped(self, pid: ParticipantId, role: str, dropped: int) -> None:
        if dropped:
            logger.info(
                "media.candidates_dropped room=%s pid=%s role=%s count=%d",
                self.key,
                pid,
                role,
                dropped,
            )

    async def _negotiate(
        self,
        connection: Connection,
        step: Awaitable[str] | Awaitable[None],
        pid: ParticipantId,
        role: str,
    ) -> str:
        """Run one offer/answer step; on any failure close the connection, raise MediaError.

        Cancelled (the caller's task), the connection is closed by a task the room owns
        and the cancellation goes on: the connection never outlives its negotiation.
        """
        try:
            async with asyncio.timeout(self._settings.negotiation_timeout):
                result = await step
        except asyncio.CancelledError:
            self._spawn(self._close_connection(connection), pid, role)
            raise
        except MediaError:
            await self._close_connection(connection)
            raise
        except TimeoutError:
            await self._close_connection(connection)
            if self._closed:
                raise MediaError("media_closed", "The media room is closed.") from None
            raise MediaError("negotiation_timeout", "Media negotiation took too long.") from None
        except Exception as exc:
            await self._close_connection(connection)
            if self._closed:  # the room closed the connection under this negotiation
                raise MediaError("media_closed", "The media room is closed.") from None
            raise MediaError("invalid_sdp", "The session description was refused.") from exc
        if self._closed:
            await self._close_connection(connection)
            raise MediaError("media_closed", "The media room is closed.")
        connection.negotiated()
        return result or ""

    async def _close_connection(self, connection: Connection) -> None:
        await connection.close()
        self._connections.discard(connection)

    def _path_lost(self, pid: ParticipantId, role: str, connection: Connection) -> None:
        if self._closed or connection.closing:
            return
        logger.info("media.path_lost room=%s pid=%s role=%s", self.key, pid, role)
        publisher = self._publishers.get(pid)
        if publisher is not None and publisher.connection is connection:
            del self._publishers[pid]
        subscriber = self._subscribers.get(pid)
        if subscriber is not None and subscriber.connection is connection:
            del self._subscribers[pid]
            self._spawn(self._close_subscriber(subscriber), pid, role)
        else:
            self._spawn(self._close_connection(connection), pid, role)
        self._on_path_lost(pid)

    async def _close_subscriber(self, subscriber: Subscriber) -> None:
        """Stop the subscriber (drain task, queue, peer connection) and forget its connection."""
        await subscriber.close()
        self._connections.discard(subscriber.connection)

    def _spawn(self, coro: Coroutine[Any, Any, None], pid: ParticipantId, role: str) -> None:
        """Run ``coro`` in a task the room owns: a failure is logged (ids only), and
        :meth:`close` waits for the task (bounded) or cancels it."""

        async def run() -> None:
            try:
                await coro
            except Exception as exc:
                # Exception messages may carry addresses: ids and the type only; the
                # traceback at debug level.
                logger.error(
                    "media.task_failed room=%s pid=%s role=%s error=%s",
                    self.key,
                    pid,
                    role,
                    type(exc).__name__,
                )
                logger.debug("media.task_failed traceback", exc_info=True)

        task = asyncio.get_running_loop().create_task(
            run(), name=f"media-room-{self.key}-{role}-{pid}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
