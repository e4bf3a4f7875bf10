"""Socket.io signalling: validate, check the sender's seat, call the room service, ack.

Per-connection ordering: python-socketio runs every event in its own task
(``async_handlers=True``); each handler takes its connection's lock before doing any
work, and asyncio locks are FIFO, so one connection's events run in arrival order while
different connections (and rooms) run concurrently.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import socketio
from aiohttp import web
from pydantic import BaseModel, ValidationError

from telecircle.config import Settings
from telecircle.domain.commands import LeaveReason
from telecircle.domain.events import Event
from telecircle.domain.ids import ConnectionId, ParticipantId, RoomCode
from telecircle.domain.model import RoomState
from telecircle.errors import TelecircleError
from telecircle.services.clock import Clock
from telecircle.services.rooms import RoomService
from telecircle.services.tasks import TaskOwner
from telecircle.signalling import acks
from telecircle.signalling import messages as m
from telecircle.signalling.ratelimit import TokenBucket

log = logging.getLogger(__name__)


@dataclass
class Connection:
    """One socket.io connection and, once joined, the seat it speaks for."""

    sid: ConnectionId
    bucket: TokenBucket
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    room_code: RoomCode | None = None
    participant_id: ParticipantId | None = None
    malformed: int = 0
    rate_strikes: int = 0


def participant_views(state: RoomState) -> list[m.ParticipantView]:
    return [
        m.ParticipantView(
            id=p.id,
            display_name=p.display_name,
            audio_on=p.audio_on,
            video_on=p.video_on,
            connected=not p.away,
        )
        for p in state.participants
    ]


def channel(code: str) -> str:
    """The socket.io fan-out channel of a room (not the domain room)."""
    return f"room:{code}"


class SignallingServer:
    """Adapter between socket.io connections and the room service; also the room observer."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._connections: dict[ConnectionId, Connection] = {}
        self._sid_by_participant: dict[ParticipantId, ConnectionId] = {}
        self._rooms: RoomService | None = None
        self._tasks = TaskOwner("signalling")
        self._closed = False
        self.sio = socketio.AsyncServer(
            async_mode="aiohttp",
            transports=["websocket"],
            # The engine's limit sits well above the application's, so an oversized
            # message reaches us and gets an error ack instead of a dropped socket.
            max_http_buffer_size=settings.max_message_bytes * 4,
            ping_interval=settings.socket_ping_interval,
            ping_timeout=settings.socket_ping_timeout,
            logger=False,
            engineio_logger=False,
        )
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_event)

    def attach(self, app: web.Application) -> None:
        """Add the socket.io endpoint to ``app`` (before it starts)."""
        self.sio.attach(app, socketio_path="socket.io")

    def attach_rooms(self, rooms: RoomService) -> None:
        """Connect the room service once it exists (at application start-up)."""
        self._rooms = rooms

    def connection_count(self) -> int:
        return len(self._connections)

    # ---- socket.io handlers ------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        if self._closed:
            return False  # shutting down: refuse new connections
        connection_id = ConnectionId(sid)
        self._connections[connection_id] = Connection(
            sid=connection_id,
            bucket=TokenBucket(
                self._settings.messages_per_second, self._settings.message_burst, self._clock
            ),
        )
        return True

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        """A socket closed. A client that said goodbye at the socket.io level (a
        ``disconnect()`` call) has left; any other drop — including a closing page, whose
        own leave beacon ends the seat — holds the seat for the reconnect window."""
        connection = self._connections.pop(ConnectionId(sid), None)
        if connection is None:
            return
        on_purpose = reason == self.sio.reason.CLIENT_DISCONNECT
        async with connection.lock:
            await self._release_seat(connection, LeaveReason.LEFT if on_purpose else None)

    async def _on_event(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        connection = self._connections.get(ConnectionId(sid))
        if connection is None:
            return acks.error(acks.NOT_JOINED, "This connection is closed.")
        if connection.bucket.take():
            connection.rate_strikes = 0  # only a sustained flood leads to a disconnect
        else:
            connection.rate_strikes += 1
            if connection.rate_strikes >= self._settings.rate_limit_strikes:
                await self._drop(connection, "rate_limited")
            return acks.error(acks.RATE_LIMITED, "Too many messages; slow down.")
        request = await self._parse(connection, event, args)
        if isinstance(request, dict):
            return request
        async with connection.lock:
            try:
                return await self._dispatch(connection, event, request)
            except TelecircleError as exc:
                return acks.error(exc.code, exc.message)
            except Exception:
                log.exception("signalling handler failed", extra={"event": event, "sid": sid})
                return acks.error(acks.INTERNAL_ERROR, "Something went wrong on the server.")

    async def _parse(
        self, connection: Connection, event: str, args: Sequence[Any]
    ) -> m.Message | dict[str, Any]:
        """The validated request, or an error ack (counting malformed messages)."""
        model = m.CLIENT_EVENTS.get(event)
        if model is None:
            return await self._malformed(connection, acks.UNKNOWN_EVENT, "Unknown event.")
        if len(args) > 1 or (args and not isinstance(args[0], dict)):
            return await self._malformed(
                connection, acks.INVALID_MESSAGE, "The message must be one JSON object."
            )
        payload: dict[str, Any] = args[0] if args else {}
        try:
            size = len(json.dumps(payload, separators=(",", ":")))
        except (TypeError, ValueError):
            return await self._malformed(connection, acks.INVALID_MESSAGE, "Not JSON data.")
        if size > self._settings.max_message_bytes:
            return await self._malformed(
                connection,
                acks.MESSAGE_TOO_LARGE,
                f"Messages are limited to {self._settings.max_message_bytes} bytes.",
            )
        try:
            return model.model_validate(payload)
        except ValidationError as exc:
            # Name fields and problems, never echo the input back.
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['type']}"
                for err in exc.errors(include_input=False, include_url=False)[:5]
            )
            return await self._malformed(
                connection, acks.INVALID_MESSAGE, f"Invalid {event} message ({problems})."
            )

    async def _malformed(self, connection: Connection, code: str, message: str) -> dict[str, Any]:
        connection.malformed += 1
        if connection.malformed >= self._settings.malformed_message_limit:
            await self._drop(connection, "malformed_messages")
        return acks.error(code, message)

    async def _drop(self, connection: Connection, reason: str) -> None:
        log.warning("closing abusive connection", extra={"sid": connection.sid, "reason": reason})
        # Disconnect after this ack is sent: the client learns why before the socket goes.
        self._tasks.spawn(self._remove_and_disconnect(connection), "drop")

    async def _remove_and_disconnect(self, connection: Connection) -> None:
        """An abusive connection loses its seat for good (no reconnect window), then
        its socket, once the ack that says why has gone out."""
        async with connection.lock:
            await self._release_seat(connection, LeaveReason.REMOVED)
        await self._disconnect_after_ack(connection.sid)

    async def _disconnect_after_ack(self, sid: ConnectionId) -> None:
        # Give the ack (or event) that says why a moment to go out before the socket does.
        await asyncio.sleep(0.05)
        await self.sio.disconnect(sid)

    async def _dispatch(
        self, connection: Connection, event: str, request: m.Message
    ) -> dict[str, Any]:
        rooms = self._rooms
        if rooms is None:
            return acks.error(acks.INTERNAL_ERROR, "The server is not ready.")
        if isinstance(request, m.JoinRequest | m.ResumeRequest):
            return await self._join(connection, request, rooms)
        code, pid = connection.room_code, connection.participant_id
        if code is None or pid is None:
            return acks.error(acks.NOT_JOINED, "Join a room first.")
        if isinstance(request, m.PublishRequest):
            return acks.ok(m.SdpResult(sdp=await rooms.publish(code, pid, request.sdp)))
        if isinstance(request, m.SubscribeRequest):
            sdp, slots = await rooms.subscribe(code, pid)
            mids = [
                m.SlotMids(index=s.index, audio_mid=s.audio_mid, video_mid=s.video_mid)
                for s in slots
            ]
            return acks.ok(m.SubscribeOffer(sdp=sdp, slots=mids))
        if isinstance(request, m.SubscribeAnswer):
            await rooms.accept_subscribe_answer(code, pid, request.sdp)
            return acks.ok(m.Empty())
        if isinstance(request, m.SetMediaRequest):
            await rooms.set_own_media(code, pid, request.audio_on, request.video_on)
            return acks.ok(m.Empty())
        if isinstance(request, m.LeaveRequest):
            await self._release_seat(connection, LeaveReason.LEFT)
            return acks.ok(m.Empty())
        return acks.error(acks.UNKNOWN_EVENT, "Unknown event.")  # pragma: no cover

    async def _join(
        self, connection: Connection, request: m.JoinRequest | m.ResumeRequest, rooms: RoomService
    ) -> dict[str, Any]:
        """Take a new seat (join) or a held one back (resume) for this connection."""
        if connection.participant_id is not None:
            return acks.error(acks.ALREADY_JOINED, "This connection already has a seat.")
        code = RoomCode(request.room_code)
        # Enter the fan-out channel first so no roster change after the seat is missed.
        await self.sio.enter_room(connection.sid, channel(code))
        try:
            if isinstance(request, m.ResumeRequest):
                pid = ParticipantId(request.participant_id)
                outcome = await rooms.resume(code, pid, request.resume_token)
            else:
                outcome = await rooms.join(code, request.display_name)
        except BaseException:
            await self.sio.leave_room(connection.sid, channel(code))
            raise
        pid = outcome.participant.id
        previous = self._sid_by_participant.get(pid)
        if previous is not None and previous != connection.sid:
            await self._seat_moved(previous)
        connection.room_code = code
        connection.participant_id = pid
        self._sid_by_participant[pid] = connection.sid
        event = "resumed" if isinstance(request, m.ResumeRequest) else "joined"
        log.info(event, extra={"room": code, "participant": pid})
        return acks.ok(
            m.JoinResult(
                participant_id=pid,
                resume_token=outcome.resume_token,
                reconnect_grace_seconds=self._settings.reconnect_grace,
                room_name=outcome.room.name,
                participant_limit=outcome.state.participant_limit,
                participants=participant_views(outcome.state),
            )
        )

    async def _seat_moved(self, sid: ConnectionId) -> None:
        """The seat was taken back from another connection: that one loses it and closes."""
        old = self._connections.get(sid)
        if old is None:
            return
        await self._unmap(old)
        closed = m.ClosedEvent(
            reason="seat_moved", message="You joined this room from another window or device."
        )
        await self.sio.emit("closed", closed.model_dump(mode="json"), to=sid)
        self._tasks.spawn(self._disconnect_after_ack(sid), "seat-moved")

    async def _release_seat(self, connection: Connection, reason: LeaveReason | None) -> None:
        """Unmap the connection's seat and end it (``reason``) or hold it (None: away)."""
        seat = await self._unmap(connection)
        if seat is None or self._rooms is None:
            return
        code, pid = seat
        holder = self._sid_by_participant.get(pid)
        if holder != connection.sid:
            # The seat was taken back from another connection meanwhile (a resume that
            # won the race with this socket's own disconnect): it is not ours to end.
            return
        del self._sid_by_participant[pid]
        if reason is None:
            await self._rooms.disconnect(code, pid)
            log.info("away", extra={"room": code, "participant": pid})
        else:
            await self._rooms.leave(code, pid, reason)
            log.info("left", extra={"room": code, "participant": pid, "reason": reason.value})

    async def _unmap(self, connection: Connection) -> tuple[RoomCode, ParticipantId] | None:
        """Detach the connection from its seat and its room's channel; returns the seat."""
        code, pid = connection.room_code, connection.participant_id
        connection.room_code = None
        connection.participant_id = None
        if code is None:
            return None
        await self.sio.leave_room(connection.sid, channel(code))
        return None if pid is None else (code, pid)

    # ---- outbound: room observer and media callbacks --------------------------------

    async def room_changed(self, room_code: str, state: RoomState, events: Sequence[Event]) -> None:
        roster = m.RosterEvent(participants=participant_views(state))
        await self.sio.emit("roster", roster.model_dump(mode="json"), to=channel(room_code))

    async def media_lost(self, room_code: str, pid: ParticipantId) -> None:
        sid = self._sid_by_participant.get(pid)
        if sid is not None:
            await self.sio.emit("media_lost", m.MediaLostEvent().model_dump(mode="json"), to=sid)

    def slots_changed(
        self, pid: ParticipantId, slots: list[tuple[int, ParticipantId | None]]
    ) -> None:
        sid = self._sid_by_participant.get(pid)
        if sid is None:
            return
        event = m.SlotsEvent(slots=[m.SlotAssignment(index=i, participant_id=p) for i, p in slots])
        self._emit_soon("slots", event, sid)

    def _emit_soon(self, name: str, event: BaseModel, sid: ConnectionId) -> None:
        # Called from synchronous media callbacks: schedule the emit. Emits to one sid are
        # queued in order by the engine, so ordering between two slot updates is kept.
        self._tasks.spawn(self.sio.emit(name, event.model_dump(mode="json"), to=sid), "emit")

    async def close(self) -> None:
        """Tell every client the server is going away, then disconnect them. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for sid in list(self._connections):
            closed = m.ClosedEvent(reason="server_shutdown", message="The server is restarting.")
            await self.sio.emit("closed", closed.model_dump(mode="json"), to=sid)
            await self.sio.disconnect(sid)
        await self._tasks.close()
        await self.sio.shutdown()
