"""The signalling protocol: the one schema source for server and webclient.

Client -> server events are answered by an ack ``{"ok": true, "data": ...}`` or
``{"ok": false, "error": {"code": ..., "message": ...}}``. Server -> client events carry
the models below. ``python -m telecircle.signalling.schema`` writes the JSON Schema the
webclient's TypeScript types are generated from.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Room for a subscribe answer in the largest room the server allows (16 people: 15
# receive slots, 30 m-lines, even with aiortc's three fingerprints per m-line); a test
# negotiates at that size.
MAX_SDP_CHARS = 60_000


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ---- client -> server -------------------------------------------------------------


class JoinRequest(Message):
    """Enter the room named by its code, as whoever the connection's cookies say.

    Sent again after a reconnect: someone whose seat is still held returns to it."""

    room_code: str = Field(min_length=1, max_length=64)


class PublishRequest(Message):
    """The client's offer for its publish connection (sendonly audio + video)."""

    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS)


class SubscribeRequest(Message):
    """Ask the server to offer the subscribe connection."""


class SubscribeAnswer(Message):
    """The client's answer to the server's subscribe offer."""

    sdp: str = Field(min_length=1, max_length=MAX_SDP_CHARS)


class SetMediaRequest(Message):
    """Turn the client's own microphone and/or camera on or off."""

    audio_on: bool | None = None
    video_on: bool | None = None


class LeaveRequest(Message):
    """Leave the room for good."""


class AdmitRequest(Message):
    """Clinicians: let a waiting patient in."""

    participant_id: str = Field(min_length=1, max_length=64)


class AdmitAllRequest(Message):
    """Clinicians: let everyone waiting in, in order of arrival, while seats last."""


class DenyRequest(Message):
    """Clinicians: turn a waiting patient away, optionally with a message to them."""

    participant_id: str = Field(min_length=1, max_length=64)
    message: str = Field("", max_length=500)


class ForceMediaRequest(Message):
    """Clinicians: turn a participant's microphone and/or camera off (true) or let
    them turn it back on (false); a missing field leaves it as it is."""

    participant_id: str = Field(min_length=1, max_length=64)
    audio_off: bool | None = None
    video_off: bool | None = None


class MuteAllRequest(Message):
    """Clinicians: mute every patient."""


class ParticipantRequest(Message):
    """Clinicians: act on one participant (move_to_lobby, lower_hand, clear_moment)."""

    participant_id: str = Field(min_length=1, max_length=64)


class RemoveRequest(Message):
    """Clinicians: remove a patient from the session; ``revoke`` also withdraws the
    link they came in with (they cannot come back with it)."""

    participant_id: str = Field(min_length=1, max_length=64)
    revoke: bool = False


class LockRequest(Message):
    """Clinicians: lock (nobody more is admitted) or unlock the session."""

    locked: bool


class EndSessionRequest(Message):
    """Clinicians: end the session for everyone."""


class RaiseHandRequest(Message):
    """Raise or lower your own hand."""

    raised: bool


class NeedMomentRequest(Message):
    """Tell the clinicians (only them) that you need a moment, or that you are fine."""

    needed: bool


class ShareScreenRequest(Message):
    """Clinicians: start or stop sharing your screen. Send the screen on the third m-line
    of your publish connection (a second video, offered from the start) and then this;
    stop sending it after ``on: false``. One person shares at a time."""

    on: bool


class StartPairsRequest(Message):
    """Clinicians: start pair work for ``duration_seconds``. ``groups`` lists the pairs
    (a trio where the number is odd) by participant id; without it, the server makes
    pairs of every patient in the session at random."""

    duration_seconds: int = Field(ge=1, le=86_400)
    groups: list[list[str]] | None = Field(None, max_length=32)


class VisitPairRequest(Message):
    """Clinicians: join pair ``group`` (0-based), or go back to the plenary (null)."""

    group: int | None = Field(ge=0, le=63)


class MessagePairsRequest(Message):
    """Clinicians: a short message to every pair (the room's limit applies)."""

    text: str = Field(min_length=1, max_length=2_000)


class ActivityRequest(Message):
    """Clinicians: end_pairs, next_segment, end_segment (no fields)."""


class ExtendRequest(Message):
    """Clinicians: give the running pair work or segment more time."""

    seconds: int = Field(ge=1, le=86_400)


class StartSegmentRequest(Message):
    """Clinicians: work one-to-one with the first of ``participant_ids`` for
    ``duration_seconds`` (null: the default), then each of the rest in turn; the others
    wait on a hold screen or go on together in the plenary."""

    participant_ids: list[str] = Field(min_length=1, max_length=64)
    others: Literal["hold", "plenary"]
    duration_seconds: int | None = Field(None, ge=1, le=86_400)


# Notes: the server's limit (TELECIRCLE_NOTE_MAX_CHARS) is checked by the notes service;
# the schema's bound only keeps a message within the signalling size limit.
NOTE_TEXT_SCHEMA_MAX = 12_000
CLIENT_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"


class SaveNoteRequest(Message):
    """Clinicians: save a new version of one of your notes of session ``session_id``
    (autosave), a session of one of your rooms — also one that has ended, and also from
    a connection that has not joined (to save what was typed as the session ended).
    The browser makes ``note_id`` (a new note) and ``save_id`` (one per save attempt):
    a retried save with the same ``save_id`` is acknowledged again with the version it
    became, never stored twice."""

    session_id: str = Field(min_length=1, max_length=64)
    note_id: str = Field(pattern=CLIENT_ID_PATTERN)
    save_id: str = Field(pattern=CLIENT_ID_PATTERN)
    text: str = Field(max_length=NOTE_TEXT_SCHEMA_MAX)
    topic: str = Field("", max_length=200)
    participant_ids: list[str] = Field(default_factory=list, max_length=16)


class ListNotesRequest(Message):
    """Clinicians: your own notes of the session you are in (newest version of each)."""


# ---- ack payloads -----------------------------------------------------------------


class ParticipantView(Message):
    id: str
    display_name: str
    audio_on: bool
    video_on: bool
    # False while the participant's connection is gone and their seat is held.
    connected: bool
    role: Literal["clinician", "patient"]
    # Turned off by a clinician: not forwarded to anyone.
    audio_forced_off: bool
    video_forced_off: bool
    hand_raised: bool
    # Sharing their screen: it arrives on the subscribe connection's screen m-line.
    screen_on: bool


class TimerLimitsView(Message):
    """The bounds of pair work and segments (seconds), for the facilitator's forms."""

    pairs_min_seconds: float
    pairs_max_seconds: float
    segment_min_seconds: float
    segment_max_seconds: float
    segment_default_seconds: float
    warning_seconds: float
    extension_max_seconds: float
    pairs_message_max_chars: int


class SessionPolicy(Message):
    """How the session is run, as the participants need to know it."""

    patients_may_unmute: bool
    timers: TimerLimitsView


class IceServer(Message):
    """A TURN server for the browser's peer connections, with short-lived credentials
    (an entry of ``RTCConfiguration.iceServers``): usable until ``expires_at`` (seconds
    since the epoch); joining again (a reconnect) brings fresh ones."""

    urls: list[str]
    username: str
    credential: str
    expires_at: int


class JoinResult(Message):
    participant_id: str
    role: Literal["clinician", "patient"]
    # "lobby": wait for the "admitted" event before publishing or subscribing.
    place: Literal["lobby", "plenary"]
    # True when this connection took back a seat that was still held.
    returned: bool
    # How long the seat is held after a dropped connection; later, entry starts afresh.
    reconnect_grace_seconds: float
    room_name: str
    participant_limit: int
    # Everyone past the lobby (empty while you wait in the lobby).
    participants: list[ParticipantView]
    policy: SessionPolicy
    # Your own "I need a moment" (only you and the clinicians know it).
    needs_moment: bool
    # The ICE servers (TURN relays) for your publish and subscribe connections; empty
    # when the server has none configured (connect to the server's candidates directly).
    ice_servers: list[IceServer]


class SdpResult(Message):
    sdp: str


class SlotMids(Message):
    """One receive slot of the subscribe connection: the m-line mids that carry it."""

    index: int
    audio_mid: str
    video_mid: str


class SubscribeOffer(Message):
    sdp: str
    slots: list[SlotMids]
    # The m-line that carries a shared screen (from whoever shares it, if you may see it).
    screen_mid: str


class Empty(Message):
    pass


class ErrorBody(Message):
    code: str
    message: str


class ErrorAck(Message):
    ok: Literal[False] = False
    error: ErrorBody


class NoteSaved(Message):
    """A save was stored durably as ``version`` of ``note_id``."""

    note_id: str
    version: int
    saved_at: float


class NoteView(Message):
    """The newest version of one of your notes. ``unreadable`` says why its text cannot
    be shown (``decryption_failed``, or ``destroyed`` by retention): never an empty note."""

    note_id: str
    version: int
    created_at: float
    saved_at: float
    text: str | None
    topic: str | None
    participant_ids: list[str]
    unreadable: Literal["decryption_failed", "destroyed"] | None


class NotesResult(Message):
    """Your notes of the session you are in, and what the notes panel needs to know."""

    session_id: str
    # Seconds since the epoch: "mark this moment" stamps server_time - session_started_at
    # plus the time since this answer arrived.
    session_started_at: float
    server_time: float
    max_chars: int
    max_versions: int
    notes: list[NoteView]


# ---- server -> client -------------------------------------------------------------


class RosterEvent(Message):
    """Event ``roster``: everyone in the room now (sent to all on every change)."""

    participants: list[ParticipantView]


class SlotAssignment(Message):
    index: int
    participant_id: str | None


class SlotsEvent(Message):
    """Event ``slots``: which participant feeds each of this client's receive slots."""

    slots: list[SlotAssignment]


class VideoPausedEvent(Message):
    """Event ``video_paused``: whose video the server has paused for this client because
    its connection cannot carry it (audio continues; each comes back by itself when the
    connection recovers). Sent whenever the set changes; empty: nobody's."""

    participant_ids: list[str]


class WaitingView(Message):
    """Someone in the lobby, as the clinicians see them (location and emergency
    contact are for clinicians only)."""

    id: str
    display_name: str
    waiting_since: float
    connected: bool
    location: str | None
    emergency_contact: str | None


class MomentView(Message):
    id: str
    since: float


class LobbyEvent(Message):
    """Event ``lobby`` (clinicians only): who is waiting now, in order of arrival; the
    raised hands in order of raising; who needs a moment; whether the session is
    locked."""

    waiting: list[WaitingView]
    hands: list[str]
    moments: list[MomentView]
    locked: bool


class MomentEvent(Message):
    """Event ``moment`` (to that participant only): your "I need a moment" is now
    ``needed`` (a clinician may have cleared it)."""

    needed: bool


class MovedToLobbyEvent(Message):
    """Event ``moved_to_lobby``: a clinician sent you back to the waiting room; close
    your media connections and wait for ``admitted``."""


class AdmittedEvent(Message):
    """Event ``admitted``: you are in the session now; publish and subscribe."""

    participants: list[ParticipantView]


class AdmitAllResult(Message):
    admitted: int


class MediaLostEvent(Message):
    """Event ``media_lost``: a peer connection of yours died; publish and subscribe again."""


class TimerView(Message):
    """The countdown of the running activity. ``remaining_seconds`` is measured when the
    event is sent (count down from receipt: clocks differ); ``warned`` turns true at the
    warning before the end."""

    activity: Literal["pairs", "segment"]
    remaining_seconds: float
    warned: bool


class PlaceView(Message):
    """Where someone is: ``pair`` is the group number (0-based) while in a pair."""

    spot: Literal["lobby", "plenary", "pair", "segment", "hold"]
    pair: int | None


class VisitView(Message):
    clinician_id: str
    group: int


class SegmentView(Message):
    clinician_id: str
    participant_id: str
    others: Literal["hold", "plenary"]
    queue: list[str]
    done: list[str]


class FacilitatorView(Message):
    """What only clinicians see: everyone's place, the pairs, visits, the segment run."""

    places: dict[str, PlaceView]
    pairs: list[list[str]]
    visits: list[VisitView]
    segment: SegmentView | None


class ActivityEvent(Message):
    """Event ``activity`` (to each participant, on every change): your own place, who
    shares it with you, and the countdown that is running; clinicians also get the
    ``facilitator`` view."""

    place: PlaceView
    # The others whose media you may receive now (your pair, your segment, the plenary).
    with_ids: list[str]
    timer: TimerView | None
    facilitator: FacilitatorView | None


class PairsMessageEvent(Message):
    """Event ``pairs_message``: a clinician's message to every pair."""

    text: str
    from_name: str


class ClosedEvent(Message):
    """Event ``closed``: the server ends this connection's seat; ``reason`` is a code
    (``seat_moved``, ``denied``, ``revoked``, ``removed``, ``signed_out``, ``left``,
    ``connection_lost``, ``server_shutdown``) and
    ``message`` says it in words (for ``denied``, the clinician's message if any)."""

    reason: str
    message: str


CLIENT_EVENTS: dict[str, type[Message]] = {
    "join": JoinRequest,
    "publish": PublishRequest,
    "subscribe": SubscribeRequest,
    "subscribe_answer": SubscribeAnswer,
    "set_media": SetMediaRequest,
    "leave": LeaveRequest,
    "admit": AdmitRequest,
    "admit_all": AdmitAllRequest,
    "deny": DenyRequest,
    "force_media": ForceMediaRequest,
    "mute_all": MuteAllRequest,
    "move_to_lobby": ParticipantRequest,
    "lower_hand": ParticipantRequest,
    "clear_moment": ParticipantRequest,
    "remove": RemoveRequest,
    "lock": LockRequest,
    "end_session": EndSessionRequest,
    "raise_hand": RaiseHandRequest,
    "need_moment": NeedMomentRequest,
    "share_screen": ShareScreenRequest,
    "start_pairs": StartPairsRequest,
    "visit_pair": VisitPairRequest,
    "message_pairs": MessagePairsRequest,
    "end_pairs": ActivityRequest,
    "extend": ExtendRequest,
    "start_segment": StartSegmentRequest,
    "queue_segment": ParticipantRequest,
    "next_segment": ActivityRequest,
    "end_segment": ActivityRequest,
    "save_note": SaveNoteRequest,
    "list_notes": ListNotesRequest,
}

SERVER_EVENTS: dict[str, type[Message]] = {
    "roster": RosterEvent,
    "slots": SlotsEvent,
    "video_paused": VideoPausedEvent,
    "media_lost": MediaLostEvent,
    "closed": ClosedEvent,
    "lobby": LobbyEvent,
    "admitted": AdmittedEvent,
    "moved_to_lobby": MovedToLobbyEvent,
    "moment": MomentEvent,
    "activity": ActivityEvent,
    "pairs_message": PairsMessageEvent,
}

ACK_DATA: dict[str, type[Message]] = {
    "join": JoinResult,
    "publish": SdpResult,
    "subscribe": SubscribeOffer,
    "subscribe_answer": Empty,
    "set_media": Empty,
    "leave": Empty,
    "admit": Empty,
    "admit_all": AdmitAllResult,
    "deny": Empty,
    "force_media": Empty,
    "mute_all": Empty,
    "move_to_lobby": Empty,
    "lower_hand": Empty,
    "clear_moment": Empty,
    "remove": Empty,
    "lock": Empty,
    "end_session": Empty,
    "raise_hand": Empty,
    "need_moment": Empty,
    "share_screen": Empty,
    "start_pairs": Empty,
    "visit_pair": Empty,
    "message_pairs": Empty,
    "end_pairs": Empty,
    "extend": Empty,
    "start_segment": Empty,
    "queue_segment": Empty,
    "next_segment": Empty,
    "end_segment": Empty,
    "save_note": NoteSaved,
    "list_notes": NotesResult,
}
