"""The session record: what a room's clinicians read during and after a session.

:class:`SessionRecords` assembles a :class:`SessionRecord` for one session and one
signed-in clinician of its room: attendance (intervals, minutes, who never got in, who
was turned away), the timeline in words with the notes the reader may read interleaved
at their times, each patient's consent, and a billing summary of suggestions. Every
view is written to the audit log (ids only). Times are shown since the session's start
and on the clock of the configured time zone.

Attendance, consent and billing count people, not seats: someone who left and came
back, whose connection was lost past the reconnect window, or who opened their link on
another device has several seats (participant ids) in the session, grouped by the
seat's person key (see :mod:`telecircle.storage.record_store`). Such a person is one
attendee, one consent line and one billing line, with the intervals of all their seats;
the lobby's outsiders (never admitted, turned away, removed) are told per seat.

A note's newest version is shown in full and its earlier versions newest first; on the
page at most :data:`EARLIER_VERSIONS_SHOWN` of them (autosave makes hundreds), while an
export holds every version.

Notes come through :class:`NoteReader` (the notes service), which decides which notes
the reader may see; a version it could not decrypt, or whose key retention destroyed,
is shown as such and never as empty text.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Protocol, get_args
from zoneinfo import ZoneInfo

from telecircle.domain.access import CLINICIAN_ROLES, Role
from telecircle.domain.commands import LeaveReason
from telecircle.domain.events import Event
from telecircle.domain.ids import ParticipantId, RoomId
from telecircle.domain.notes import Note, NoteVersion, Unreadable
from telecircle.domain.session_summary import (
    MIN_BILLABLE_MINUTES,
    SUGGESTED_CODES,
    BillingCode,
    Happening,
    Interval,
    attended_seconds,
    billing_suggestion,
    covered_seconds,
    duration_label,
    elapsed_label,
    narrate,
    seat_history,
    whole_minutes,
)
from telecircle.errors import TelecircleError
from telecircle.services.audit import AuditAction
from telecircle.services.clock import Clock
from telecircle.services.ports import AuditSink
from telecircle.storage import org_store, record_store, stores
from telecircle.storage.accounts_store import UserRecord
from telecircle.storage.database import Database
from telecircle.storage.record_store import PassConsent, SeatRecord, SessionFacts
from telecircle.storage.stores import AttendanceRecord

log = logging.getLogger(__name__)

UNKNOWN_PERSON = "someone"
# The most earlier versions of one note the record page shows (newest first); the rest
# are counted, and the JSON export holds them all.
EARLIER_VERSIONS_SHOWN = 50
CLINICIAN = "clinician"
PATIENT = "patient"
# Event kinds this server can read (a newer server may add kinds: an unknown one is left
# out of the record rather than failing it).
KNOWN_KINDS = frozenset(event_type.kind for event_type in get_args(Event))
RECORDING_WORDS: Mapping[bool | None, str] = MappingProxyType(
    {None: "not asked", True: "consented to recording", False: "declined recording"}
)
# Why an attendance interval ended, in a few words.
LEAVE_REASONS: Mapping[LeaveReason, str] = MappingProxyType(
    {
        LeaveReason.LEFT: "left",
        LeaveReason.CONNECTION_LOST: "connection lost",
        LeaveReason.SERVER_SHUTDOWN: "server shut down",
        LeaveReason.REMOVED: "removed",
        LeaveReason.REVOKED: "access withdrawn",
        LeaveReason.SEAT_MOVED: "joined from another device",
        LeaveReason.SESSION_ENDED: "session ended",
        LeaveReason.MOVED_TO_LOBBY: "moved to the lobby",
        LeaveReason.DENIED: "turned away",
    }
)


class RecordNotFound(TelecircleError):
    """No such session or room, or not one of the reader's rooms (the two look alike)."""

    code = "not_found"
    http_status = 404


class NoteReader(Protocol):
    """The notes of a session that ``reader`` may read, each with its versions.

    Implemented by the notes service, which applies who-may-read (domain.notes.may_read)
    and audits the read. A version it cannot decrypt has ``body`` None and says why."""

    async def notes_for_record(self, reader: UserRecord, session_id: str) -> Sequence[Note]: ...


# ---------------------------------------------------------------------- view model


@dataclass(frozen=True, slots=True)
class Moment:
    """A time on the record: since the session started, and on the local clock."""

    at: float
    elapsed: str
    clock: str


@dataclass(frozen=True, slots=True)
class AttendanceSpan:
    joined: Moment
    left: Moment | None  # None: present now
    left_because: str


@dataclass(frozen=True, slots=True)
class Attendee:
    """Someone who was in the session (not only in the lobby), over all their seats:
    ``participant_id`` is their first seat's (the person's id on the record),
    ``participant_ids`` all their seats' in the order taken; ``name`` is the one given
    for the latest seat; ``spans`` are every seat's intervals in time order."""

    participant_id: str
    participant_ids: tuple[str, ...]
    name: str
    role: str
    spans: tuple[AttendanceSpan, ...]
    minutes: int
    away_minutes: int
    present_now: bool


@dataclass(frozen=True, slots=True)
class Outsider:
    """Someone who never got in, or was turned away: what happened, and when."""

    participant_id: str
    name: str
    when: Moment
    what: str


@dataclass(frozen=True, slots=True)
class NoteVersionView:
    version: int
    saved: Moment
    text: str | None  # None: unreadable, see ``unreadable``
    topic: str
    tagged: tuple[str, ...]
    unreadable: str | None


@dataclass(frozen=True, slots=True)
class NoteView:
    """A note: ``versions`` newest first (the latest, then earlier ones: on the page at
    most :data:`EARLIER_VERSIONS_SHOWN` of those), ``older_not_shown`` how many older
    versions were left off (none in an export)."""

    note_id: str
    author: str
    versions: tuple[NoteVersionView, ...]
    older_not_shown: int = 0

    @property
    def latest(self) -> NoteVersionView | None:
        return self.versions[0] if self.versions else None

    @property
    def earlier(self) -> tuple[NoteVersionView, ...]:
        return self.versions[1:]

    @property
    def earlier_count(self) -> int:
        """Every earlier version, shown or not."""
        return max(0, len(self.versions) - 1) + self.older_not_shown


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    when: Moment
    kind: str
    text: str
    minor: bool = False
    note: NoteView | None = None


@dataclass(frozen=True, slots=True)
class ConsentLine:
    participant_id: str  # the person's first seat, as on their Attendee
    name: str
    agreement_version: int | None  # None: no consent found for their seats' passes
    accepted: str
    recording: str


@dataclass(frozen=True, slots=True)
class BillingLine:
    participant_id: str  # the person's first seat, as on their Attendee
    name: str
    minutes: int
    too_short: bool


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """Everything the record page shows, as display-ready values."""

    session_id: str
    room_id: str
    room_name: str
    is_open: bool
    started_at: float
    ended_at: float | None
    started: str
    ended: str | None
    duration: str
    time_zone: str
    attendees: tuple[Attendee, ...]
    never_admitted: tuple[Outsider, ...]
    denied: tuple[Outsider, ...]
    removed: tuple[Outsider, ...]
    timeline: tuple[TimelineEntry, ...]
    notes_available: bool
    note_count: int
    consents: tuple[ConsentLine, ...]
    billing: tuple[BillingLine, ...]
    billing_codes: tuple[BillingCode, ...]
    min_billable_minutes: int


@dataclass(frozen=True, slots=True)
class SessionListItem:
    session_id: str
    date: str
    started: str
    duration: str
    attended: int
    is_open: bool


@dataclass(frozen=True, slots=True)
class RoomSessions:
    room_id: str
    room_name: str
    sessions: tuple[SessionListItem, ...]
    time_zone: str


# ---------------------------------------------------------------------------- service


class SessionRecords:
    """Session records and a room's list of sessions, for the room's clinicians only."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        audit: AuditSink,
        time_zone: str,
        notes: NoteReader | None = None,
        earlier_versions_shown: int = EARLIER_VERSIONS_SHOWN,
    ) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit
        self._zone_name = time_zone
        self._zone = ZoneInfo(time_zone)
        self._notes = notes
        self._earlier_versions_shown = earlier_versions_shown

    async def _require_clinician(self, reader: UserRecord, room_id: RoomId) -> None:
        """RecordNotFound unless ``reader`` is the room's owner or co-facilitator."""
        if Role(reader.role) not in CLINICIAN_ROLES or reader.disabled:
            raise RecordNotFound("There is no such session, or it is not one of yours.")
        if await org_store.room_role_of(self._db, room_id, reader.id) is None:
            raise RecordNotFound("There is no such session, or it is not one of yours.")

    async def record(
        self,
        reader: UserRecord,
        session_id: str,
        address: str | None = None,
        *,
        export_format: str | None = None,
    ) -> SessionRecord:
        """The record of ``session_id`` for ``reader``; audited as viewed, or as exported
        in ``export_format``. A view shows a bounded number of each note's earlier
        versions; an export holds them all. Raises RecordNotFound."""
        room_id = await record_store.session_room(self._db, session_id)
        if room_id is None:
            raise RecordNotFound("There is no such session, or it is not one of yours.")
        await self._require_clinician(reader, room_id)
        facts = await record_store.session_facts(self._db, session_id)
        if facts is None:  # pragma: no cover - sessions are never deleted
            raise RecordNotFound("There is no such session, or it is not one of yours.")
        notes = (
            None if self._notes is None else await self._notes.notes_for_record(reader, session_id)
        )
        authors = await record_store.user_names(
            self._db, sorted({note.author_id for note in notes or ()})
        )
        earlier_shown = self._earlier_versions_shown if export_format is None else None
        built = _RecordBuilder(facts, self._zone, self._zone_name, self._now(facts)).build(
            notes, authors, earlier_shown
        )
        details: dict[str, str | int] = {"room": facts.room_id, "notes": built.note_count}
        if export_format is not None:
            details["format"] = export_format
        await self._audit.record(
            AuditAction.SESSION_RECORD_VIEWED
            if export_format is None
            else AuditAction.SESSION_RECORD_EXPORTED,
            actor=reader.id,
            target=session_id,
            address=address,
            details=details,
        )
        return built

    async def room_sessions(self, reader: UserRecord, room_id: str) -> RoomSessions:
        """The room's sessions, newest first. Raises RecordNotFound."""
        await self._require_clinician(reader, RoomId(room_id))
        room = await stores.get_room(self._db, RoomId(room_id))
        if room is None:  # pragma: no cover - a room with clinicians exists
            raise RecordNotFound("There is no such room, or it is not one of yours.")
        now = self._clock.now()
        items = []
        for listing in await record_store.room_sessions(self._db, room_id):
            start = datetime.fromtimestamp(listing.started_at, self._zone)
            end = now if listing.ended_at is None else listing.ended_at
            items.append(
                SessionListItem(
                    session_id=listing.session_id,
                    date=start.strftime("%a %d %b %Y"),
                    started=start.strftime("%H:%M"),
                    duration=duration_label(end - listing.started_at),
                    attended=listing.attended,
                    is_open=listing.status == "open",
                )
            )
        return RoomSessions(room.id, room.name, tuple(items), self._zone_name)

    async def open_session_id(self, reader: UserRecord, room_id: str) -> str | None:
        """The id of the room's session running now, if any. Raises RecordNotFound."""
        await self._require_clinician(reader, RoomId(room_id))
        session = await stores.get_open_session(self._db, RoomId(room_id))
        return None if session is None else session.id

    def _now(self, facts: SessionFacts) -> float:
        """Where open intervals end: now while the session runs, else its end."""
        if facts.ended_at is not None:
            return facts.ended_at
        return max(self._clock.now(), facts.started_at)


# ---------------------------------------------------------------------------- builder


class _RecordBuilder:
    """Turns one session's stored facts (and the reader's notes) into the view model."""

    def __init__(self, facts: SessionFacts, zone: ZoneInfo, zone_name: str, now: float) -> None:
        self._facts = facts
        self._zone = zone
        self._zone_name = zone_name
        self._now = now
        self._seats = {seat.participant_id: seat for seat in facts.seats}
        people: dict[str, list[SeatRecord]] = {}
        for seat in facts.seats:  # in the order taken
            people.setdefault(seat.person_key, []).append(seat)
        self._people = {key: tuple(seats) for key, seats in people.items()}
        self._attended = frozenset(record.participant_id for record in facts.attendance)
        self._events = [stored.to_event() for stored in facts.events if stored.kind in KNOWN_KINDS]
        self._history = seat_history(self._events)

    def _name(self, pid: ParticipantId) -> str:
        """The name given for this seat (the timeline tells each seat by its own)."""
        seat = self._seats.get(pid)
        return UNKNOWN_PERSON if seat is None else seat.display_name

    def _person_of(self, pid: ParticipantId) -> str:
        """The person key of a seat (a seat read after the seats were: its own id)."""
        seat = self._seats.get(pid)
        return pid if seat is None else seat.person_key

    def _moment(self, at: float) -> Moment:
        local = datetime.fromtimestamp(at, self._zone)
        return Moment(at, elapsed_label(at - self._facts.started_at), local.strftime("%H:%M:%S"))

    def _day_and_time(self, at: float) -> str:
        return datetime.fromtimestamp(at, self._zone).strftime("%a %d %b %Y %H:%M")

    def _role(self, seat: SeatRecord) -> str:
        history = self._history
        if seat.pass_id is not None or seat.participant_id in history.knocked:
            return PATIENT
        if seat.user_id is not None or seat.participant_id in history.joined:
            return CLINICIAN
        return PATIENT  # unknown: treated as a patient (their consent is shown as missing)

    def build(
        self, notes: Sequence[Note] | None, authors: dict[str, str], earlier_shown: int | None
    ) -> SessionRecord:
        """The record; each note with at most ``earlier_shown`` earlier versions (None:
        all of them)."""
        facts = self._facts
        attendees = self._attendees()
        end = facts.ended_at if facts.ended_at is not None else self._now
        note_views = sorted(
            ((note.created_at, self._note(note, authors, earlier_shown)) for note in notes or ()),
            key=lambda pair: pair[0],
        )
        patients = [(a, seconds) for a, seconds in attendees if a.role == PATIENT]
        return SessionRecord(
            session_id=facts.session_id,
            room_id=facts.room_id,
            room_name=facts.room_name,
            is_open=facts.status == "open",
            started_at=facts.started_at,
            ended_at=facts.ended_at,
            started=self._day_and_time(facts.started_at),
            ended=None if facts.ended_at is None else self._day_and_time(facts.ended_at),
            duration=duration_label(end - facts.started_at),
            time_zone=self._zone_name,
            attendees=tuple(attendee for attendee, _ in attendees),
            never_admitted=self._never_admitted(),
            denied=tuple(
                self._outsider(t.participant_id, t.at, f"turned away by {self._name(t.by)}")
                for t in self._history.denied
            ),
            removed=tuple(
                self._outsider(t.participant_id, t.at, f"removed by {self._name(t.by)}")
                for t in self._history.removed
            ),
            timeline=self._timeline(narrate(self._events, self._name), note_views),
            notes_available=notes is not None,
            note_count=len(note_views),
            consents=tuple(
                line for line in (self._consent(a) for a, _ in patients) if line is not None
            ),
            billing=tuple(self._billing(a, seconds) for a, seconds in patients),
            billing_codes=SUGGESTED_CODES,
            min_billable_minutes=MIN_BILLABLE_MINUTES,
        )

    # -- attendance

    def _attendees(self) -> list[tuple[Attendee, float]]:
        """Everyone with an attendance interval on any of their seats, one per person,
        in order of first joining, with the seconds they attended (time away not
        counted)."""
        by_person: dict[str, list[AttendanceRecord]] = {}
        for record in self._facts.attendance:  # in order of joining
            by_person.setdefault(self._person_of(record.participant_id), []).append(record)
        return [self._attendee(key, records) for key, records in by_person.items()]

    def _attendee(self, key: str, records: Sequence[AttendanceRecord]) -> tuple[Attendee, float]:
        seats = self._people.get(key, ())
        seat_ids = tuple(
            dict.fromkeys(
                [seat.participant_id for seat in seats] + [r.participant_id for r in records]
            )
        )
        present = [Interval(r.joined_at, r.left_at) for r in records]
        away = [span for pid in seat_ids for span in self._history.away.get(pid, ())]
        seconds = attended_seconds(present, away, self._now)
        present_time = covered_seconds(present, self._now)
        attendee = Attendee(
            participant_id=seat_ids[0],
            participant_ids=seat_ids,
            name=seats[-1].display_name if seats else UNKNOWN_PERSON,
            role=self._role(seats[-1]) if seats else PATIENT,
            spans=tuple(
                AttendanceSpan(
                    joined=self._moment(r.joined_at),
                    left=None if r.left_at is None else self._moment(r.left_at),
                    left_because=_leave_words(r.leave_reason),
                )
                for r in records
            ),
            minutes=whole_minutes(seconds),
            away_minutes=whole_minutes(present_time - seconds),
            present_now=self._facts.ended_at is None and any(r.left_at is None for r in records),
        )
        return attendee, seconds

    @staticmethod
    def _billing(attendee: Attendee, seconds: float) -> BillingLine:
        suggestion = billing_suggestion(seconds)
        return BillingLine(
            attendee.participant_id, attendee.name, suggestion.minutes, suggestion.too_short
        )

    def _outsider(self, pid: ParticipantId, at: float, what: str) -> Outsider:
        return Outsider(pid, self._name(pid), self._moment(at), what)

    def _never_admitted(self) -> tuple[Outsider, ...]:
        """Seats of patients who waited in the lobby and never got in (the denied are
        listed apart). A person who got in on another seat of theirs (before or after)
        is not listed: they were admitted, and their attendance says when."""
        history = self._history
        denied = {t.participant_id for t in history.denied}
        attended = {self._person_of(pid) for pid in self._attended}
        out = []
        for seat in self._facts.seats:
            pid = seat.participant_id
            if pid not in history.knocked or seat.person_key in attended or pid in denied:
                continue
            left = history.lobby_left_at.get(pid, seat.left_at)
            if left is None:
                out.append(self._outsider(pid, seat.first_joined_at, "waiting in the lobby now"))
            else:
                waited = duration_label(left - seat.first_joined_at)
                out.append(
                    self._outsider(pid, seat.first_joined_at, f"waited {waited}, never admitted")
                )
        return tuple(out)

    # -- consent

    def _consent(self, attendee: Attendee) -> ConsentLine | None:
        """The consent in force when the person's latest seat that got in was taken: the
        newest that any of their seats' passes gave before then (or, failing that, the
        first given after). None for a person none of whose seats is known."""
        seats = [
            self._seats[ParticipantId(p)] for p in attendee.participant_ids if p in self._seats
        ]
        if not seats:
            return None
        taken_at = max(
            (seat.first_joined_at for seat in seats if seat.participant_id in self._attended),
            default=seats[-1].first_joined_at,
        )
        passes = {seat.pass_id for seat in seats if seat.pass_id is not None}
        own = [c for c in self._facts.consents if c.pass_id in passes]
        before = [c for c in own if c.accepted_at <= taken_at]
        chosen: PassConsent | None = before[-1] if before else (own[0] if own else None)
        if chosen is None:
            return ConsentLine(attendee.participant_id, attendee.name, None, "", "")
        return ConsentLine(
            participant_id=attendee.participant_id,
            name=attendee.name,
            agreement_version=chosen.agreement_version,
            accepted=self._day_and_time(chosen.accepted_at),
            recording=RECORDING_WORDS[chosen.recording_consent],
        )

    # -- timeline and notes

    def _timeline(
        self, happenings: Sequence[Happening], notes: Sequence[tuple[float, NoteView]]
    ) -> tuple[TimelineEntry, ...]:
        """The happenings in recording order with each note placed before the first
        happening later than it (times are not re-sorted: a clock that stepped back
        must not reorder what was recorded in order)."""
        entries: list[TimelineEntry] = []
        pending = list(notes)
        for happening in happenings:
            while pending and pending[0][0] < happening.at:
                entries.append(self._note_entry(*pending.pop(0)))
            entries.append(
                TimelineEntry(
                    self._moment(happening.at), happening.kind, happening.text, happening.minor
                )
            )
        entries.extend(self._note_entry(at, note) for at, note in pending)
        return tuple(entries)

    def _note_entry(self, at: float, note: NoteView) -> TimelineEntry:
        return TimelineEntry(self._moment(at), "note", f"Note by {note.author}", note=note)

    def _note(self, note: Note, authors: dict[str, str], earlier_shown: int | None) -> NoteView:
        """The note newest version first, with at most ``earlier_shown`` earlier ones
        (None: all): only the versions shown are turned into views."""
        count = len(note.versions)
        shown = count if earlier_shown is None else min(count, 1 + max(0, earlier_shown))
        return NoteView(
            note_id=note.note_id,
            author=authors.get(note.author_id, "a clinician"),
            versions=tuple(
                self._version(v) for v in itertools.islice(reversed(note.versions), shown)
            ),
            older_not_shown=count - shown,
        )

    def _version(self, version: NoteVersion) -> NoteVersionView:
        body = version.body
        if body is None:
            return NoteVersionView(
                version.version,
                self._moment(version.saved_at),
                None,
                "",
                (),
                self._unreadable(version),
            )
        return NoteVersionView(
            version=version.version,
            saved=self._moment(version.saved_at),
            text=body.text,
            topic=body.topic,
            tagged=tuple(self._name(ParticipantId(pid)) for pid in body.participant_ids),
            unreadable=None,
        )

    def _unreadable(self, version: NoteVersion) -> str:
        """Why a version cannot be shown (a missing body with no reason given is
        reported as a decryption failure: never as an empty note)."""
        if version.unreadable is Unreadable.DESTROYED:
            if version.destroyed_at is None:
                return "Destroyed by retention"
            day = datetime.fromtimestamp(version.destroyed_at, self._zone).strftime("%d %b %Y")
            return f"Destroyed by retention on {day}"
        return "This version could not be decrypted"


def _leave_words(reason: LeaveReason | None) -> str:
    return "" if reason is None else LEAVE_REASONS.get(reason, reason.value.replace("_", " "))
