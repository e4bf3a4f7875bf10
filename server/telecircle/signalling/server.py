"""Socket.io signalling: validate, check the sender's seat, call the room service, ack.

Per-connection ordering: python-socketio runs every event in its own task
(``async_handlers=True``); each handler takes its connection's lock before doing any
work, and asyncio locks are FIFO, so one connection's events run in arrival order while
different connections (and rooms) run concurrently.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any

import socketio
from aiohttp import web
from pydantic import BaseModel, ValidationError

from telecircle.config import Settings
from telecircle.domain.access import Action, Role, allowed
from telecircle.domain.commands import (
    ActivityCommand,
    ControlCommand,
    EndPairs,
    EndSegment,
    EndSession,
    Extend,
    ForceMedia,
    LeaveReason,
    Lock,
    MessagePairs,
    MoveToLobby,
    MuteAll,
    NeedMoment,
    NextSegment,
    QueueSegment,
    RaiseHand,
    Remove,
    ShareScreen,
    StartPairs,
    StartSegment,
    VisitPair,
)
from telecircle.domain.events import (
    Event,
    MomentChanged,
    MovedToLobby,
    PairsMessaged,
    ParticipantAdmitted,
    ParticipantLeft,
)
from telecircle.domain.ids import ConnectionId, ParticipantId, RoomCode
from telecircle.domain.model import OthersDuringSegment, Place, RoomState, SeatRole
from telecircle.domain.notes import NoteBody
from telecircle.errors import TelecircleError
from telecircle.services.clock import Clock
from telecircle.services.entry import PASS_COOKIE, SESSION_COOKIE, EntryPolicy, Principal
from telecircle.services.notes import NotesService
from telecircle.services.ports import AuditSink
from telecircle.services.rooms import RoomService
from telecircle.services.tasks import TaskOwner
from telecircle.services.turn import TurnCredentialIssuer
from telecircle.signalling import acks, transport
from telecircle.signalling import messages as m
from telecircle.signalling.packets import REFUSALS, REFUSED_EVENT, screened_packet_class
from telecircle.signalling.ratelimit import Cooldowns, MessageRate, Verdict
from telecircle.signalling.views import (
    activity_views,
    note_view,
    pairs_audience,
    participant_views,
    session_policy,
)

log = logging.getLogger(__name__)


MAX_COOKIE_HEADER = 8192
# Seconds one client's goodbye may take at shutdown before it is given up.
CLIENT_CLOSE_TIMEOUT = 2.0

# The permission each event needs ("join" depends on who joins: see _event_action).
EVENT_ACTIONS: dict[str, Action] = {
    "publish": Action.USE_OWN_MEDIA,
    "subscribe": Action.USE_OWN_MEDIA,
    "subscribe_answer": Action.USE_OWN_MEDIA,
    "set_media": Action.USE_OWN_MEDIA,
    "leave": Action.USE_OWN_MEDIA,
    "admit": Action.RUN_LOBBY,
    "admit_all": Action.RUN_LOBBY,
    "deny": Action.RUN_LOBBY,
    "force_media": Action.FACILITATE,
    "mute_all": Action.FACILITATE,
    "move_to_lobby": Action.FACILITATE,
    "lower_hand": Action.FACILITATE,
    "clear_moment": Action.FACILITATE,
    "remove": Action.FACILITATE,
    "lock": Action.FACILITATE,
    "end_session": Action.FACILITATE,
    "raise_hand": Action.USE_OWN_MEDIA,
    "need_moment": Action.USE_OWN_MEDIA,
    "share_screen": Action.FACILITATE,
    "start_pairs": Action.FACILITATE,
    "visit_pair": Action.FACILITATE,
    "message_pairs": Action.FACILITATE,
    "end_pairs": Action.FACILITATE,
    "extend": Action.FACILITATE,
    "start_segment": Action.FACILITATE,
    "queue_segment": Action.FACILITATE,
    "next_segment": Action.FACILITATE,
    "end_segment": Action.FACILITATE,
    "save_note": Action.TAKE_NOTES,
    "list_notes": Action.TAKE_NOTES,
}

# Seats ended by someone else: the connection is told why and closed.
ENDED_BY_OTHERS = {
    LeaveReason.DENIED: "You were not let into this session.",
    LeaveReason.REVOKED: "Your access to this group has ended. Please contact your therapist.",
    LeaveReason.REMOVED: "You were removed from the session.",
    LeaveReason.SEAT_MOVED: "Your invite link was opened on another device, which has "
    "your place now.",
    LeaveReason.LEFT: "You have left the session.",
    LeaveReason.CONNECTION_LOST: "You were away for too long; please join again.",
    LeaveReason.SERVER_SHUTDOWN: "The server is restarting.",
    LeaveReason.SESSION_ENDED: "The session has ended. Thank you for taking part.",
}


def event_action(event: str, principal: Principal) -> Action | None:
    if event == "join":
        return (
            Action.ENTER_AS_PATIENT
            if principal.role is Role.PATIENT
            else (Action.ENTER_AS_CLINICIAN)
        )
    return EVENT_ACTIONS.get(event)


def cookies_of(environ: dict[str, Any]) -> dict[str, str]:
    header = environ.get("HTTP_COOKIE", "")
    if not isinstance(header, str) or len(header) > MAX_COOKIE_HEADER:
        return {}
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return {}
    return {name: morsel.value for name, morsel in jar.items()}


@dataclass
class Connection:
    """One socket.io connection, who is behind it, and once joined, the seat it
    speaks for."""

    sid: ConnectionId
    principal: Principal
    rate: MessageRate
    # The cookie values it connected with: checked again at each join, and they keep a
    # clinician's sign-in fresh while the call lasts (a call is activity).
    session_secret: str | None = field(default=None, repr=False)
    pass_secret: str | None = field(default=None, repr=False)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    room_code: RoomCode | None = None
    participant_id: ParticipantId | None = None
    # Which taking of the seat this connection is (see RoomService.disconnect).
    epoch: int | None = None
    malformed: int = 0
    # Closed for abuse: its seat ends for good when the socket goes (no reconnect window).
    abusive: bool = False
    # The limits on its websocket (signalling/transport.py).
    transport: transport.TransportGuard | None = field(default=None, repr=False)


def channel(code: str) -> str:
    """The socket.io fan-out channel of a room's session (not the domain room)."""
    return f"room:{code}"


def clinician_channel(code: str) -> str:
    """The fan-out channel of a room's clinicians (the lobby is shown there)."""
    return f"clinicians:{code}"


def _activity_command(
    event: str, request: m.Message, pid: ParticipantId
) -> ActivityCommand | ShareScreen | None:
    """The screen-share, pair-work or segment command a control event asks for (``pid``
    sends it)."""
    if isinstance(request, m.ShareScreenRequest):
        return ShareScreen(pid, request.on)
    if isinstance(request, m.StartPairsRequest):
        # No groups: the room service pairs everyone at random.
        groups = tuple(tuple(ParticipantId(i) for i in group) for group in request.groups or ())
        return StartPairs(pid, float(request.duration_seconds), groups)
    if isinstance(request, m.VisitPairRequest):
        return VisitPair(pid, request.group)
    if isinstance(request, m.MessagePairsRequest):
        return MessagePairs(pid, request.text)
    if isinstance(request, m.ExtendRequest):
        return Extend(pid, float(request.seconds))
    if isinstance(request, m.StartSegmentRequest):
        return StartSegment(
            pid,
            tuple(ParticipantId(i) for i in request.participant_ids),
            OthersDuringSegment(request.others),
            None if request.duration_seconds is None else float(request.duration_seconds),
        )
    if isinstance(request, m.ParticipantRequest) and event == "queue_segment":
        return QueueSegment(pid, ParticipantId(request.participant_id))
    if isinstance(request, m.ActivityRequest):
        if event == "end_pairs":
            return EndPairs(pid)
        return NextSegment(pid) if event == "next_segment" else EndSegment(pid)
    return None


class SignallingServer:
    """Adapter between socket.io connections and the room service; also the room observer."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self._settings = settings
        self._clock = clock
        self._connections: dict[ConnectionId, Connection] = {}
        self._sid_by_participant: dict[ParticipantId, ConnectionId] = {}
        self._rooms: RoomService | None = None
        self._entry: EntryPolicy | None = None
        self._audit: AuditSink | None = None
        self._notes: NotesService | None = None
        # A clinician's message to a patient they deny, until the denial goes out.
        self._deny_messages: dict[ParticipantId, str] = {}
        # Clinicians ending the session for all, until their request is answered.
        self._ending: set[ParticipantId] = set()
        # People closed for abuse, who may not connect again for a while.
        self._cooldowns = Cooldowns(settings.abuse_cooldown, clock)
        # Short-lived TURN credentials for each seat (None: no TURN configured).
        self._turn = TurnCredentialIssuer.from_settings(settings, clock)
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
            serializer=screened_packet_class(settings.max_message_depth),
            logger=False,
            engineio_logger=False,
        )
        transport.install(
            self.sio.eio,
            transport.TransportLimits(
                frames_per_second=settings.socket_frames_per_second,
                frame_burst=settings.socket_frame_burst,
                connect_timeout=settings.socket_connect_timeout,
            ),
            clock,
        )
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("*", self._on_event)

    def attach(self, app: web.Application) -> None:
        """Add the socket.io endpoint to ``app`` (before it starts)."""
        self.sio.attach(app, socketio_path="socket.io")

    def attach_services(
        self, rooms: RoomService, entry: EntryPolicy, audit: AuditSink, notes: NotesService
    ) -> None:
        """Connect the services once they exist (at application start-up)."""
        self._rooms = rooms
        self._entry = entry
        self._audit = audit
        self._notes = notes
        self._tasks.spawn(self._keep_sign_ins_fresh(), "sign-in-refresh")

    async def _keep_sign_ins_fresh(self) -> None:
        """A clinician in a call makes no page requests; their seat counts as activity,
        so their sign-in does not idle out mid-session (and a reconnect can still join).
        A connection whose sign-in or pass has ended meanwhile is closed."""
        interval = min(60.0, max(5.0, self._settings.login_idle_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            for connection in list(self._connections.values()):
                if connection.participant_id is None or self._entry is None:
                    continue
                try:
                    principal = await self._entry.resolve(
                        connection.session_secret, connection.pass_secret
                    )
                    if principal is None:
                        await self._end_connection(connection, "signed_out")
                except Exception:
                    log.exception("sign-in refresh failed", extra={"sid": connection.sid})

    async def end_connections(
        self, key: str, reason: str, session_secret: str | None = None
    ) -> None:
        """Close every connection of the person ``key`` (only those with that sign-in
        secret, if given), ending their seats: after a sign-out or a password reset."""
        for connection in list(self._connections.values()):
            if connection.principal.key != key:
                continue
            if session_secret is not None and connection.session_secret != session_secret:
                continue
            await self._end_connection(connection, reason)

    async def _end_connection(self, connection: Connection, reason: str) -> None:
        """Tell the connection why, end its seat, close it."""
        closed = m.ClosedEvent(reason=reason, message="You have been signed out.")
        await self.sio.emit("closed", closed.model_dump(mode="json"), to=connection.sid)
        self._connections.pop(connection.sid, None)
        async with connection.lock:
            await self._release_seat(connection, LeaveReason.LEFT)
        self._tasks.spawn(self._disconnect_after_ack(connection.sid), "signed-out")

    def connection_count(self) -> int:
        return len(self._connections)

    # ---- socket.io handlers ------------------------------------------------------

    async def _on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        guard = transport.guard_of(environ)
        if guard is None:
            # Fail closed: a websocket engine.io built without the guard has no limits.
            log.error("socket.io connection without a transport guard", extra={"sid": sid})
            return False
        try:
            connection = await self._admit_connection(ConnectionId(sid), environ)
        except BaseException:
            guard.ended()
            raise
        if connection is None:
            guard.ended()
            return False
        connection.transport = guard
        self._connections[connection.sid] = connection
        guard.connected(functools.partial(self._transport_closed, connection))
        return True

    async def _admit_connection(
        self, sid: ConnectionId, environ: dict[str, Any]
    ) -> Connection | None:
        """The connection of whoever the cookies say, None when shutting down (or not
        started); refuses (ConnectionRefusedError) anyone else."""
        if self._closed or self._entry is None:
            return None
        cookies = cookies_of(environ)
        session_secret, pass_secret = cookies.get(SESSION_COOKIE), cookies.get(PASS_COOKIE)
        principal = await self._entry.resolve(session_secret, pass_secret)
        if principal is None:
            # Reaches the client as connect_error {message, data: {code}}.
            raise socketio.exceptions.ConnectionRefusedError(
                "Please open your invite link or sign in.", {"code": "not_signed_in"}
            )
        if self._cooldowns.cooling(principal.key):
            # Closed for abuse a moment ago: coming straight back would refill its
            # allowance (and cost a join) each time.
            raise socketio.exceptions.ConnectionRefusedError(
                "Too many messages. Please wait a moment, then join again.",
                {"code": acks.RATE_LIMITED},
            )
        settings = self._settings
        return Connection(
            sid=sid,
            principal=principal,
            session_secret=session_secret,
            pass_secret=pass_secret,
            rate=MessageRate(
                settings.messages_per_second,
                settings.message_burst,
                settings.rate_limit_strikes,
                self._clock,
            ),
        )

    def _transport_closed(self, connection: Connection, reason: str) -> None:
        """The transport guard is closing the connection's websocket (a frame flood, a
        frame that is no packet): its seat ends for good when the socket goes, like any
        abuser's."""
        self._abused(connection, reason, None)

    async def _on_disconnect(self, sid: str, reason: Any = None) -> None:
        """A socket closed. A client that said goodbye at the socket.io level (a
        ``disconnect()`` call, which the webclient makes only on Leave) has left; any
        other drop — a network change, a reload, a closed tab, a crash — holds the seat
        for the reconnect window."""
        guard = transport.guard_of(self.sio.get_environ(sid))
        if guard is not None:
            guard.ended()  # the websocket may not stay behind without its connection
        connection = self._connections.pop(ConnectionId(sid), None)
        if connection is None:
            return
        on_purpose = reason == self.sio.reason.CLIENT_DISCONNECT
        leaving = LeaveReason.REMOVED if connection.abusive else None
        async with connection.lock:
            await self._release_seat(connection, LeaveReason.LEFT if on_purpose else leaving)

    async def _on_event(self, event: str, sid: str, *args: Any) -> dict[str, Any]:
        connection = self._connections.get(ConnectionId(sid))
        if connection is None or connection.abusive:
            return acks.error(acks.NOT_JOINED, "This connection is closed.")
        verdict = connection.rate.check()
        if verdict is not Verdict.ACCEPT:
            if verdict is Verdict.DISCONNECT:
                self._drop(connection, "rate_limited", event)
            return acks.error(acks.RATE_LIMITED, "Too many messages; slow down.")
        request = self._parse(connection, event, args)
        if isinstance(request, dict):
            return request
        action = event_action(event, connection.principal)
        if action is None or not allowed(connection.principal.role, action):
            return acks.error(acks.NOT_ALLOWED, "You are not allowed to do that.")
        async with connection.lock:
            if connection.abusive:
                # Dropped while this waited its turn: an abuser's backlog is not worked off.
                return acks.error(acks.NOT_JOINED, "This connection is closed.")
            try:
                return await self._dispatch(connection, event, request)
            except TelecircleError as exc:
                return acks.error(exc.code, exc.message)
            except Exception:
                log.exception("signalling handler failed", extra={"event": event, "sid": sid})
                return acks.error(acks.INTERNAL_ERROR, "Something went wrong on the server.")

    def _parse(
        self, connection: Connection, event: str, args: Sequence[Any]
    ) -> m.Message | dict[str, Any]:
        """The validated request, or an error ack (counting malformed messages)."""
        if event == REFUSED_EVENT:
            # A packet the packet screen refused (binary, too deep, not JSON, ...).
            why = args[0] if args and isinstance(args[0], str) else ""
            message = REFUSALS.get(why, "Invalid message.")
            return self._malformed(connection, event, acks.INVALID_MESSAGE, message)
        model = m.CLIENT_EVENTS.get(event)
        if model is None:
            return self._malformed(connection, event, acks.UNKNOWN_EVENT, "Unknown event.")
        if len(args) > 1 or (args and not isinstance(args[0], dict)):
            return self._malformed(
                connection, event, acks.INVALID_MESSAGE, "The message must be one JSON object."
            )
        payload: dict[str, Any] = args[0] if args else {}
        try:
            # UTF-8 bytes, as on the wire (not ASCII escapes, which would count a
            # character of a note in Greek as six bytes).
            size = len(
                json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode(
                    "utf-8", "surrogatepass"
                )
            )
        except (TypeError, ValueError):
            return self._malformed(connection, event, acks.INVALID_MESSAGE, "Not JSON data.")
        if size > self._settings.max_message_bytes:
            return self._malformed(
                connection,
                event,
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
            return self._malformed(
                connection, event, acks.INVALID_MESSAGE, f"Invalid {event} message ({problems})."
            )

    def _malformed(
        self, connection: Connection, event: str, code: str, message: str
    ) -> dict[str, Any]:
        connection.malformed += 1
        if connection.malformed >= self._settings.malformed_message_limit:
            self._drop(connection, "malformed_messages", event)
        return acks.error(code, message)

    def _drop(self, connection: Connection, reason: str, event: str) -> None:
        """Close an abusive connection: its seat ends for good, and its socket goes once
        the ack that says why has gone out. Once per connection."""
        if self._abused(connection, reason, event):
            self._tasks.spawn(self._remove_and_disconnect(connection), "drop")

    def _abused(self, connection: Connection, reason: str, event: str | None) -> bool:
        """Mark the connection abusive, log why, and refuse its person's connections for
        ``abuse_cooldown`` seconds. False if it was marked already."""
        if connection.abusive:
            return False
        connection.abusive = True
        if connection.transport is not None:
            # Whatever else it sends closes its websocket, unread.
            connection.transport.ended()
        self._cooldowns.start(connection.principal.key)
        # Ids and event names only; an event name the protocol does not know is the
        # client's own text, so it is not repeated.
        if event == REFUSED_EVENT:
            event = "refused_packet"
        elif event is not None and event not in m.CLIENT_EVENTS:
            event = "unknown"
        log.warning(
            "closing abusive connection",
            extra={
                "sid": connection.sid,
                "reason": reason,
                "event": event,
                "room": connection.room_code,
                "participant": connection.participant_id,
            },
        )
        return True

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
        if isinstance(request, m.JoinRequest):
            return await self._join(connection, request, rooms)
        if isinstance(request, m.SaveNoteRequest):
            # Also without a seat: what was typed as the session ended is saved after it.
            return await self._save_note(connection, request)
        code, pid = connection.room_code, connection.participant_id
        if code is None or pid is None:
            return acks.error(acks.NOT_JOINED, "Join a room first.")
        if isinstance(request, m.PublishRequest):
            return acks.ok(m.SdpResult(sdp=await rooms.publish(code, pid, request.sdp)))
        if isinstance(request, m.SubscribeRequest):
            sdp, slots, screen_mid = await rooms.subscribe(code, pid)
            mids = [
                m.SlotMids(index=s.index, audio_mid=s.audio_mid, video_mid=s.video_mid)
                for s in slots
            ]
            return acks.ok(m.SubscribeOffer(sdp=sdp, slots=mids, screen_mid=screen_mid))
        if isinstance(request, m.SubscribeAnswer):
            await rooms.accept_subscribe_answer(code, pid, request.sdp)
            return acks.ok(m.Empty())
        if isinstance(request, m.SetMediaRequest):
            await rooms.set_own_media(code, pid, request.audio_on, request.video_on)
            return acks.ok(m.Empty())
        if isinstance(request, m.LeaveRequest):
            await self._release_seat(connection, LeaveReason.LEFT)
            return acks.ok(m.Empty())
        if isinstance(request, m.AdmitRequest):
            await rooms.admit(code, pid, ParticipantId(request.participant_id))
            await self._record(connection, "admitted", request.participant_id, code)
            return acks.ok(m.Empty())
        if isinstance(request, m.AdmitAllRequest):
            admitted = await rooms.admit_all(code, pid)
            await self._record(connection, "admitted", None, code, count=admitted)
            return acks.ok(m.AdmitAllResult(admitted=admitted))
        if isinstance(request, m.ListNotesRequest):
            return await self._list_notes(connection, rooms)
        control = self._control_command(event, request, pid)
        if control is not None:
            return await self._control(connection, event, request, control, rooms)
        if isinstance(request, m.DenyRequest):
            denied = ParticipantId(request.participant_id)
            self._deny_messages[denied] = " ".join(request.message.split())
            try:
                await rooms.deny(code, pid, denied)
            finally:
                self._deny_messages.pop(denied, None)
            await self._record(connection, "denied", request.participant_id, code)
            return acks.ok(m.Empty())
        return acks.error(acks.UNKNOWN_EVENT, "Unknown event.")  # pragma: no cover

    async def _save_note(
        self, connection: Connection, request: m.SaveNoteRequest
    ) -> dict[str, Any]:
        """Save a version of a clinician's own note into a session of a room they are a
        clinician of (the notes service checks it): the one they are in, or — with or
        without a seat — an earlier one, whose drafts the browser still holds."""
        notes, author = self._notes, connection.principal.user_id
        if notes is None or author is None:
            return acks.error(acks.NOT_ALLOWED, "You are not allowed to do that.")
        saved = await notes.save(
            author_id=author,
            session_id=request.session_id,
            note_id=request.note_id,
            save_id=request.save_id,
            body=NoteBody(request.text, request.topic, tuple(request.participant_ids)),
        )
        return acks.ok(
            m.NoteSaved(note_id=saved.note_id, version=saved.version, saved_at=saved.saved_at)
        )

    async def _list_notes(self, connection: Connection, rooms: RoomService) -> dict[str, Any]:
        """The clinician's own notes of the session they are in (newest of each)."""
        notes, author = self._notes, connection.principal.user_id
        live = rooms.live_room(connection.room_code) if connection.room_code else None
        if notes is None or author is None or live is None:
            return acks.error(acks.NOT_ALLOWED, "You are not allowed to do that.")
        panel = await notes.own_notes(author, live.state.session_id)
        return acks.ok(
            m.NotesResult(
                session_id=live.state.session_id,
                session_started_at=panel.session_started_at,
                server_time=self._clock.now(),
                max_chars=notes.limits.max_chars,
                max_versions=notes.limits.max_versions,
                notes=[note_view(note) for note in panel.notes],
            )
        )

    async def _join(
        self, connection: Connection, request: m.JoinRequest, rooms: RoomService
    ) -> dict[str, Any]:
        """Enter the room as the connection's principal: a new seat, or back into the
        one still held for them (a reconnect or another device)."""
        if connection.participant_id is not None:
            return acks.error(acks.ALREADY_JOINED, "This connection already has a seat.")
        if self._entry is None:  # pragma: no cover - connect refuses before start-up
            return acks.error(acks.INTERNAL_ERROR, "The server is not ready.")
        code = RoomCode(request.room_code)
        # Checked again: the account may have been disabled, the invite withdrawn or
        # replaced on another device since the socket connected.
        principal = await self._entry.resolve(connection.session_secret, connection.pass_secret)
        if principal is None:
            return acks.error(
                acks.NOT_ALLOWED, "Your sign-in or invite is no longer valid. Please open it again."
            )
        connection.principal = principal
        entrant = await self._entry.entrant(
            principal, code, seat_held=rooms.holds_seat(code, principal.key, principal.credential)
        )
        # Clinicians enter the fan-out channels first so no change after the seat is
        # missed; a patient hears nothing of the session until admitted (the ack of a
        # returning patient carries the roster, and the channel follows at once).
        channels = []
        if entrant.role is SeatRole.CLINICIAN:
            channels = [channel(code), clinician_channel(code)]
        for name in channels:
            await self.sio.enter_room(connection.sid, name)
        try:
            outcome = await rooms.enter(code, entrant)
        except BaseException:
            for name in channels:
                await self.sio.leave_room(connection.sid, name)
            raise
        pid = outcome.participant.id
        # Map the seat to this connection before anything else can yield, so an admit,
        # a denial or a withdrawal that lands from here on reaches this connection.
        previous = self._sid_by_participant.get(pid)
        connection.room_code = code
        connection.participant_id = pid
        connection.epoch = outcome.epoch
        self._sid_by_participant[pid] = connection.sid
        try:
            if previous is not None and previous != connection.sid:
                await self._seat_moved(previous)
            if await self._entry.resolve(connection.session_secret, connection.pass_secret) is None:
                # Disabled or withdrawn while the seat was being taken: it ends at once.
                await self._release_seat(connection, LeaveReason.REVOKED)
                return acks.error(acks.NOT_ALLOWED, "Your sign-in or invite is no longer valid.")
            live = rooms.live_room(code)
            participant = live.state.find(pid) if live is not None else None
            if live is None or participant is None or connection.participant_id != pid:
                # Ended meanwhile (denied, withdrawn, moved): the connection was told.
                return acks.error(acks.NOT_JOINED, "Your place in this session has ended.")
            waiting = participant.place is Place.LOBBY
            if not waiting and not channels:
                await self.sio.enter_room(connection.sid, channel(code))
        except BaseException:
            # Never leave a seat nobody holds: it would count against the limit forever.
            await self._release_seat(connection, LeaveReason.LEFT)
            raise
        log.info(
            "returned" if outcome.returned else ("knocked" if waiting else "joined"),
            extra={"room": code, "participant": pid},
        )
        if entrant.role is SeatRole.CLINICIAN:
            self._emit_soon("lobby", self._lobby_view(code, live.state), connection.sid)
        if not waiting:
            self._emit_activity_soon(pid, live.state, connection.sid)
        return acks.ok(
            m.JoinResult(
                participant_id=pid,
                role="clinician" if entrant.role is SeatRole.CLINICIAN else "patient",
                place="lobby" if waiting else "plenary",
                returned=outcome.returned,
                reconnect_grace_seconds=self._settings.reconnect_grace,
                room_name=outcome.room.name,
                participant_limit=live.state.participant_limit,
                participants=[] if waiting else participant_views(live.state),
                policy=session_policy(live.state),
                needs_moment=participant.needs_moment_since is not None,
                ice_servers=self._ice_servers(pid),
            )
        )

    def _ice_servers(self, pid: ParticipantId) -> list[m.IceServer]:
        """TURN servers with fresh credentials naming ``pid`` (none without TURN)."""
        if self._turn is None:
            return []
        issued = self._turn.issue(pid)
        return [
            m.IceServer(
                urls=list(issued.urls),
                username=issued.username,
                credential=issued.password,
                expires_at=issued.expires_at,
            )
        ]

    @staticmethod
    def _control_command(
        event: str, request: m.Message, pid: ParticipantId
    ) -> ControlCommand | None:
        """The domain command a control event asks for (``pid`` sends it)."""
        if isinstance(request, m.ForceMediaRequest):
            target = ParticipantId(request.participant_id)
            return ForceMedia(target, pid, request.audio_off, request.video_off)
        if isinstance(request, m.MuteAllRequest):
            return MuteAll(pid)
        activity = _activity_command(event, request, pid)
        if activity is not None:
            return activity
        if isinstance(request, m.ParticipantRequest):
            target = ParticipantId(request.participant_id)
            if event == "move_to_lobby":
                return MoveToLobby(target, pid)
            if event == "lower_hand":
                return RaiseHand(target, False, by=pid)
            return NeedMoment(target, False, by=pid)
        if isinstance(request, m.RemoveRequest):
            return Remove(ParticipantId(request.participant_id), pid)
        if isinstance(request, m.LockRequest):
            return Lock(pid, request.locked)
        if isinstance(request, m.EndSessionRequest):
            return EndSession(pid)
        if isinstance(request, m.RaiseHandRequest):
            return RaiseHand(pid, request.raised)
        if isinstance(request, m.NeedMomentRequest):
            return NeedMoment(pid, request.needed)
        return None

    async def _control(
        self,
        connection: Connection,
        event: str,
        request: m.Message,
        command: ControlCommand,
        rooms: RoomService,
    ) -> dict[str, Any]:
        code, pid = connection.room_code, connection.participant_id
        if code is None or pid is None:  # pragma: no cover - the caller checked
            return acks.error(acks.NOT_JOINED, "Join a room first.")
        # The seat key of someone removed is gone once the seat ends: take it first.
        target = getattr(request, "participant_id", None)
        key = rooms.seat_key(code, ParticipantId(target)) if target is not None else None
        revoke = isinstance(request, m.RemoveRequest) and request.revoke
        if revoke and not allowed(connection.principal.role, Action.MANAGE_INVITES):
            return acks.error(
                acks.NOT_ALLOWED, "Only the group's therapist can withdraw a patient's link."
            )
        if isinstance(command, EndSession):
            # The ender's seat ends with everyone's; their notice follows this ack.
            self._ending.add(pid)
        try:
            if revoke and key is not None:

                async def remove() -> None:
                    await rooms.control(code, pid, command)

                await self._withdraw_and_remove(key, connection, remove)
            else:
                await rooms.control(code, pid, command)
        finally:
            self._ending.discard(pid)
            if isinstance(command, EndSession) and connection.participant_id is None:
                closed = m.ClosedEvent(
                    reason=LeaveReason.SESSION_ENDED.value,
                    message=ENDED_BY_OTHERS[LeaveReason.SESSION_ENDED],
                )
                self._tasks.spawn(self._close_after_ack(connection.sid, closed), "ended")
        # The patients' own signals are on the session's timeline, not in the audit log;
        # and who needed a moment is not for the audit log's readers (no target).
        if event not in ("raise_hand", "need_moment"):
            audited = None if event == "clear_moment" else target
            await self._record(connection, event, audited, code)
        return acks.ok(m.Empty())

    async def _withdraw_and_remove(
        self, key: str, connection: Connection, removal: Callable[[], Awaitable[None]]
    ) -> None:
        """Withdraw the link a removed patient came in with (a group link's pass only),
        then remove them: a reload between the two already finds the link withdrawn,
        and the seat still ends as "removed" (not "link withdrawn"). Should the
        withdrawal fail, the removal happens all the same and the error is raised."""
        removed = False

        async def remove() -> None:
            nonlocal removed
            removed = True
            await removal()

        try:
            if self._entry is not None:
                await self._entry.withdraw(
                    key, connection.principal.user_id, before_listeners=remove
                )
        finally:
            if not removed:
                await removal()

    async def _record(
        self,
        connection: Connection,
        action: str,
        target: str | None,
        code: RoomCode,
        count: int | None = None,
    ) -> None:
        if self._audit is None:
            return
        details: dict[str, str | int | float | bool | None] = {"room": code}
        if count is not None:
            details["count"] = count
        try:
            await self._audit.record(
                action, actor=connection.principal.user_id, target=target, details=details
            )
        except Exception:
            log.exception("audit entry not written", extra={"action": action})

    def _lobby_view(self, code: RoomCode, state: RoomState) -> m.LobbyEvent:
        waiting = []
        for p in state.waiting():
            key = self._rooms.seat_key(code, p.id) if self._rooms is not None else None
            check_in = self._entry.check_in(key) if self._entry and key else None
            waiting.append(
                m.WaitingView(
                    id=p.id,
                    display_name=p.display_name,
                    waiting_since=p.joined_at,
                    connected=not p.away,
                    location=None if check_in is None else check_in.location,
                    emergency_contact=None if check_in is None else check_in.emergency_contact,
                )
            )
        return m.LobbyEvent(
            waiting=waiting,
            hands=[p.id for p in state.hands()],
            moments=[
                m.MomentView(id=p.id, since=p.needs_moment_since)
                for p in state.participants
                if p.needs_moment_since is not None
            ],
            locked=state.locked,
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
            await self._rooms.disconnect(code, pid, connection.epoch)
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
        await self.sio.leave_room(connection.sid, clinician_channel(code))
        return None if pid is None else (code, pid)

    # ---- outbound: room observer and media callbacks --------------------------------

    async def room_changed(self, room_code: str, state: RoomState, events: Sequence[Event]) -> None:
        code = RoomCode(room_code)
        for event in events:
            if isinstance(event, ParticipantAdmitted):
                await self._admitted(code, event.participant_id, state)
            elif isinstance(event, MovedToLobby):
                await self._moved_to_lobby(code, event.participant_id)
            elif isinstance(event, MomentChanged):
                await self._tell(event.participant_id, "moment", m.MomentEvent(needed=event.needed))
            elif isinstance(event, PairsMessaged):
                await self._message_pairs(state, event)
            elif isinstance(event, ParticipantLeft):
                if event.reason is not LeaveReason.SEAT_MOVED:  # the new device's, now
                    self._forget_check_in(code, event.participant_id)
                await self._ended_by_others(event.participant_id, event.reason)
        # A moment is private: a change of nothing else sends the room nothing at all
        # (not even an unchanged roster, whose timing would give it away).
        if not all(isinstance(event, MomentChanged) for event in events):
            roster = m.RosterEvent(participants=participant_views(state))
            await self.sio.emit("roster", roster.model_dump(mode="json"), to=channel(code))
            await self._send_activity(state)
        lobby = self._lobby_view(code, state)
        await self.sio.emit("lobby", lobby.model_dump(mode="json"), to=clinician_channel(code))

    async def _send_activity(self, state: RoomState) -> None:
        """Each participant's place and countdown (and the clinicians' overview)."""
        for pid, view in activity_views(state, self._clock.now()).items():
            await self._tell(pid, "activity", view)

    def _emit_activity_soon(self, pid: ParticipantId, state: RoomState, sid: ConnectionId) -> None:
        view = activity_views(state, self._clock.now()).get(pid)
        if view is not None:
            self._emit_soon("activity", view, sid)

    async def _message_pairs(self, state: RoomState, event: PairsMessaged) -> None:
        sender = state.find(event.by)
        message = m.PairsMessageEvent(
            text=event.text, from_name="" if sender is None else sender.display_name
        )
        for pid in pairs_audience(state):
            await self._tell(pid, "pairs_message", message)

    async def _admitted(self, code: RoomCode, pid: ParticipantId, state: RoomState) -> None:
        sid = self._sid_by_participant.get(pid)
        if sid is None:
            return  # away: they get the session on their next join
        await self.sio.enter_room(sid, channel(code))
        event = m.AdmittedEvent(participants=participant_views(state))
        await self.sio.emit("admitted", event.model_dump(mode="json"), to=sid)

    def _forget_check_in(self, code: RoomCode, pid: ParticipantId) -> None:
        key = self._rooms.seat_key(code, pid) if self._rooms is not None else None
        if key is not None and self._entry is not None:
            self._entry.forget_check_in(key)

    async def _tell(self, pid: ParticipantId, name: str, event: BaseModel) -> None:
        """Send ``event`` to that participant's connection alone, if they have one."""
        sid = self._sid_by_participant.get(pid)
        if sid is not None:
            await self.sio.emit(name, event.model_dump(mode="json"), to=sid)

    async def _moved_to_lobby(self, code: RoomCode, pid: ParticipantId) -> None:
        sid = self._sid_by_participant.get(pid)
        if sid is None:
            return  # away: their next join finds them in the lobby
        await self.sio.leave_room(sid, channel(code))
        await self.sio.emit("moved_to_lobby", m.MovedToLobbyEvent().model_dump(), to=sid)

    async def _ended_by_others(self, pid: ParticipantId, reason: LeaveReason) -> None:
        """A seat ended while a connection still held it (its own leave unmaps it
        first): tell that connection why, take it off the room's channels, close it."""
        sid = self._sid_by_participant.pop(pid, None)
        connection = self._connections.get(sid) if sid is not None else None
        if sid is None or connection is None:
            return
        await self._unmap(connection)
        if pid in self._ending:
            return  # the connection that asked for this is told after its ack
        message = self._deny_messages.get(pid) or ENDED_BY_OTHERS[reason]
        closed = m.ClosedEvent(reason=reason.value, message=message)
        await self.sio.emit("closed", closed.model_dump(mode="json"), to=sid)
        self._tasks.spawn(self._disconnect_after_ack(sid), "ended-by-others")

    async def _close_after_ack(self, sid: ConnectionId, closed: m.ClosedEvent) -> None:
        # Give the ack of the request that caused this a moment to go out first.
        await asyncio.sleep(0.05)
        await self.sio.emit("closed", closed.model_dump(mode="json"), to=sid)
        await self._disconnect_after_ack(sid)

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

    def video_paused(self, pid: ParticipantId, publishers: frozenset[ParticipantId]) -> None:
        """The videos paused for pid's weak connection changed (a media callback)."""
        sid = self._sid_by_participant.get(pid)
        if sid is None:
            return
        event = m.VideoPausedEvent(participant_ids=sorted(publishers))
        self._emit_soon("video_paused", event, sid)

    async def _drop_transport(self, sid: ConnectionId) -> None:
        # An engine.io close without a socket.io disconnect: the client sees a transport
        # close (not "io server disconnect"), so socket.io's reconnection applies.
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        if eio_sid is not None:
            await self.sio.eio.disconnect(eio_sid)

    async def _close_client(self, sid: ConnectionId, *, restarting: bool) -> None:
        connection = self._connections.get(sid)
        guard = connection.transport if connection is not None else None
        try:
            if restarting:
                await self._drop_transport(sid)
                return
            closed = m.ClosedEvent(reason="server_shutdown", message="The server is restarting.")
            await self.sio.emit("closed", closed.model_dump(mode="json"), to=sid)
            await self.sio.disconnect(sid)
        finally:
            # Engine.io's goodbye leaves the websocket open until the client closes it
            # (aiohttp then waits the whole shutdown timeout for it): end it here.
            if guard is not None:
                guard.hang_up()

    def _emit_soon(self, name: str, event: BaseModel, sid: ConnectionId) -> None:
        # Called from synchronous media callbacks: schedule the emit. Emits to one sid are
        # queued in order by the engine, so ordering between two slot updates is kept.
        self._tasks.spawn(self.sio.emit(name, event.model_dump(mode="json"), to=sid), "emit")

    async def close(self, *, restarting: bool = False) -> None:
        """Disconnect every client. Idempotent. ``restarting``: the sessions resume in
        the next process, so the connections are dropped as by the network (clients
        reconnect by themselves and take their seats back); otherwise each client is
        told the server is going away."""
        if self._closed:
            return
        self._closed = True
        for sid in list(self._connections):
            # python-engineio 4.15's socket close waits for the socket's send queue to
            # drain, for ever if its writer has already stopped (a client cut mid-flood):
            # one such client must not hold up the shutdown of the whole server.
            try:
                async with asyncio.timeout(CLIENT_CLOSE_TIMEOUT):
                    await self._close_client(sid, restarting=restarting)
            except TimeoutError:
                log.warning("client close timed out", extra={"sid": sid})
        await self._tasks.close()
        await self.sio.shutdown()
