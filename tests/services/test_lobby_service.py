"""The lobby through RoomService, on SQLite and PostgreSQL, with the real SFU: admits
against the room's current limit, held seats, removals and denials, and the timeline and
attendance they leave behind. Only the clock is fake (held seats expire when the test
moves it, never by wall-clock timing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import pytest

from telecircle.domain.commands import LeaveReason
from telecircle.domain.errors import DomainError, LobbyFull, NotAllowed, NotWaiting, RoomFull
from telecircle.domain.events import Event, ParticipantLeft
from telecircle.domain.ids import ParticipantId, RoomCode, RoomId, SessionId, new_room_code
from telecircle.domain.model import Participant, Place, RoomState, SeatRole
from telecircle.media.sfu import MediaSettings, Sfu
from telecircle.services.ports import MediaRouting
from telecircle.services.rooms import Entrant, JoinOutcome, RoomService, StillWaiting
from telecircle.storage import stores
from telecircle.storage.database import Database

# The storage tests' database fixtures: these tests run on SQLite and on PostgreSQL.
from tests.storage.conftest import database, db_url, postgres_unreachable  # noqa: F401

pytestmark = pytest.mark.timeout(60)

T0 = 1_800_000_000.0
# Real seconds before the service first checks a held seat; the fake clock decides.
GRACE = 0.2


@dataclass
class FakeClock:
    at: float = T0

    def now(self) -> float:
        return self.at


@dataclass
class RecordingObserver:
    events: list[Event] = field(default_factory=list)

    async def room_changed(self, room_code: str, state: RoomState, events: Sequence[Event]) -> None:
        self.events.extend(events)

    async def media_lost(self, room_code: str, pid: ParticipantId) -> None:
        pass


@dataclass
class Lobby:
    """One room (limit 4 unless changed) run by a RoomService."""

    db: Database
    rooms: RoomService
    clock: FakeClock
    observer: RecordingObserver
    room: stores.RoomRecord

    @property
    def code(self) -> RoomCode:
        return RoomCode(self.room.code)

    async def enter(self, key: str, name: str, role: SeatRole) -> JoinOutcome:
        return await self.rooms.enter(self.code, Entrant(key, name, role))

    async def clinician(self, name: str = "Dr A") -> Participant:
        return (await self.enter(f"user:{name}", name, SeatRole.CLINICIAN)).participant

    async def patient(self, name: str) -> Participant:
        return (await self.enter(f"invite:{name}", name, SeatRole.PATIENT)).participant

    def state(self) -> RoomState:
        live = self.rooms.live_room(self.code)
        assert live is not None
        return live.state

    def place_of(self, pid: ParticipantId) -> Place | None:
        participant = self.state().find(pid)
        return None if participant is None else participant.place

    def session(self) -> SessionId:
        return self.state().session_id

    async def set_limit(self, limit: int) -> None:
        """What an owner editing the room does: the new limit is stored at once."""
        await stores.update_room(
            self.db,
            self.room.id,
            name=self.room.name,
            participant_limit=limit,
            recording_consent_required=self.room.recording_consent_required,
            notes_retention_days=self.room.notes_retention_days,
        )

    async def timeline(
        self, session: SessionId | None = None
    ) -> list[tuple[str, dict[str, object]]]:
        stored = await stores.load_timeline(self.db, session or self.session())
        return [(e.kind, dict(e.payload)) for e in stored]


@pytest.fixture
async def lobby(database: Database) -> AsyncIterator[Lobby]:  # noqa: F811 (the fixture)
    sfu = Sfu(MediaSettings())
    sfu.install()
    clock = FakeClock()
    observer = RecordingObserver()

    def media_for(code: RoomCode) -> MediaRouting:
        return sfu.room(code, on_slots=lambda *a: None, on_path_lost=lambda *a: None)

    async def limit_of(room_id: RoomId) -> int:
        room = await stores.get_room(database, room_id)
        assert room is not None
        return room.participant_limit

    rooms = RoomService(
        database, clock, media_for, observer, limit_of, reconnect_grace=GRACE, lobby_limit=3
    )
    room = await stores.create_room(database, "Group", 4, new_room_code())
    yield Lobby(database, rooms, clock, observer, room)
    await rooms.close()
    await sfu.close()


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_admit_respects_a_lowered_room_limit_without_removing_anyone(lobby: Lobby) -> None:
    doctor = await lobby.clinician()
    one, two, three = [await lobby.patient(name) for name in ("One", "Two", "Three")]
    await lobby.rooms.admit(lobby.code, doctor.id, one.id)
    assert lobby.state().seats_taken() == 2

    await lobby.set_limit(2)  # lowered while two are seated
    with pytest.raises(RoomFull):
        await lobby.rooms.admit(lobby.code, doctor.id, two.id)
    assert await lobby.rooms.admit_all(lobby.code, doctor.id) == 0
    await lobby.set_limit(1)  # below the people already seated: nobody is removed
    assert await lobby.rooms.admit_all(lobby.code, doctor.id) == 0
    assert [lobby.place_of(p.id) for p in (doctor, one, two, three)] == [
        Place.PLENARY,
        Place.PLENARY,
        Place.LOBBY,
        Place.LOBBY,
    ]
    assert "participant_left" not in [kind for kind, _ in await lobby.timeline()]

    # Raised again, even above the session's own limit (its receive slots were sized
    # by 4 when it opened): the next admits fill the session up to 4 and no further.
    await lobby.set_limit(8)
    assert await lobby.rooms.admit_all(lobby.code, doctor.id) == 2
    four = await lobby.patient("Four")
    with pytest.raises(RoomFull):
        await lobby.rooms.admit(lobby.code, doctor.id, four.id)
    assert lobby.state().participant_limit == 4
    assert lobby.state().seats_taken() == 4


async def test_concurrent_admits_never_pass_the_limit(lobby: Lobby) -> None:
    await lobby.set_limit(3)
    first, second = await lobby.clinician("Dr A"), await lobby.clinician("Dr B")
    waiting = [await lobby.patient(f"P{n}") for n in range(3)]
    results = await asyncio.gather(
        lobby.rooms.admit_all(lobby.code, first.id),
        lobby.rooms.admit_all(lobby.code, second.id),
        *(lobby.rooms.admit(lobby.code, first.id, p.id) for p in waiting),
        return_exceptions=True,
    )
    refusals = {type(r) for r in results if isinstance(r, BaseException)}
    assert refusals <= {RoomFull, NotWaiting}, results
    assert lobby.state().seats_taken() == 3
    assert len(lobby.state().waiting()) == 2
    kinds = [kind for kind, _ in await lobby.timeline()]
    assert kinds.count("participant_admitted") == 1


async def test_a_patients_held_seat_returns_to_the_same_place_without_the_lobby(
    lobby: Lobby,
) -> None:
    doctor = await lobby.clinician()
    patient = await lobby.patient("Bo")
    await lobby.rooms.admit(lobby.code, doctor.id, patient.id)
    await lobby.rooms.disconnect(lobby.code, patient.id)
    held = lobby.state().find(patient.id)
    assert held is not None and held.away

    lobby.clock.at += 5  # back within the reconnect window
    back = await lobby.enter("invite:Bo", "Bo", SeatRole.PATIENT)
    assert back.returned
    assert back.participant.id == patient.id
    assert back.participant.place is Place.PLENARY and not back.participant.away
    # Straight back in: no second knock, no admit, no leave.
    assert [kind for kind, _ in await lobby.timeline()] == [
        "participant_joined",
        "participant_knocked",
        "participant_admitted",
        "participant_away",
        "participant_back",
    ]
    attendance = await stores.load_attendance(lobby.db, lobby.session())
    assert [(a.participant_id, a.left_at) for a in attendance] == [
        (doctor.id, None),
        (patient.id, None),
    ]


async def test_a_patient_dropped_while_waiting_returns_to_the_lobby_in_their_turn(
    lobby: Lobby,
) -> None:
    await lobby.clinician()
    first, second = await lobby.patient("One"), await lobby.patient("Two")
    await lobby.rooms.disconnect(lobby.code, first.id)
    lobby.clock.at += 5
    back = await lobby.enter("invite:One", "One", SeatRole.PATIENT)
    assert (back.returned, back.participant.id, back.participant.place) == (
        True,
        first.id,
        Place.LOBBY,
    )
    assert [p.id for p in lobby.state().waiting()] == [first.id, second.id]
    with pytest.raises(StillWaiting):  # waiting still means no media
        await lobby.rooms.subscribe(lobby.code, first.id)


async def test_a_seat_not_taken_back_in_time_means_the_lobby_again(lobby: Lobby) -> None:
    doctor = await lobby.clinician()
    patient = await lobby.patient("Bo")
    await lobby.rooms.admit(lobby.code, doctor.id, patient.id)
    session = lobby.session()
    await lobby.rooms.disconnect(lobby.code, patient.id)
    lobby.clock.at += 60  # the window is long over by the service's clock
    await wait_for(lambda: lobby.state().find(patient.id) is None)

    again = await lobby.enter("invite:Bo", "Bo", SeatRole.PATIENT)
    assert not again.returned
    assert again.participant.id != patient.id
    assert again.participant.place is Place.LOBBY
    attendance = await stores.load_attendance(lobby.db, session)
    assert [(a.participant_id, a.leave_reason) for a in attendance] == [
        (doctor.id, None),
        (patient.id, LeaveReason.CONNECTION_LOST),
    ]


async def test_remove_person_ends_their_seat_with_reason_revoked(lobby: Lobby) -> None:
    doctor = await lobby.clinician()
    seated, waiting = await lobby.patient("Seated"), await lobby.patient("Waiting")
    await lobby.rooms.admit(lobby.code, doctor.id, seated.id)
    session = lobby.session()

    await lobby.rooms.remove_person("invite:Seated", LeaveReason.REVOKED)
    await lobby.rooms.remove_person("invite:Waiting", LeaveReason.REVOKED)
    await lobby.rooms.remove_person("invite:Nobody", LeaveReason.REVOKED)  # harmless

    assert [p.id for p in lobby.state().participants] == [doctor.id]
    assert lobby.rooms.seat_key(lobby.code, seated.id) is None
    left = [payload for kind, payload in await lobby.timeline() if kind == "participant_left"]
    assert left == [
        {"participant_id": seated.id, "reason": "revoked"},
        {"participant_id": waiting.id, "reason": "revoked"},
    ]
    assert ParticipantLeft(seated.id, LeaveReason.REVOKED, T0) in lobby.observer.events
    attendance = await stores.load_attendance(lobby.db, session)
    assert [(a.participant_id, a.leave_reason) for a in attendance] == [
        (doctor.id, None),
        (seated.id, LeaveReason.REVOKED),
    ]


async def test_remove_person_ends_their_seats_in_every_room(lobby: Lobby) -> None:
    other = await stores.create_room(lobby.db, "Other", 4, new_room_code())
    key = "user:shared"
    here = await lobby.enter(key, "Dr S", SeatRole.CLINICIAN)
    there = await lobby.rooms.enter(RoomCode(other.code), Entrant(key, "Dr S", SeatRole.CLINICIAN))
    await lobby.clinician("Dr Stays")
    await lobby.rooms.remove_person(key, LeaveReason.REVOKED)
    assert lobby.state().find(here.participant.id) is None
    # The other room had only them: it closed, and its session ended.
    assert lobby.rooms.live_room(RoomCode(other.code)) is None
    ended = await stores.get_session(lobby.db, there.state.session_id)
    assert ended is not None and ended.status == "ended"


async def test_deny_ends_a_lobby_seat_on_the_stored_timeline(lobby: Lobby) -> None:
    doctor = await lobby.clinician()
    denied, other = await lobby.patient("Denied"), await lobby.patient("Other")
    with pytest.raises(NotAllowed):  # patients do not run the lobby
        await lobby.rooms.deny(lobby.code, other.id, denied.id)
    await lobby.rooms.deny(lobby.code, doctor.id, denied.id)

    assert lobby.state().find(denied.id) is None
    assert lobby.rooms.seat_key(lobby.code, denied.id) is None
    timeline = await lobby.timeline()
    assert timeline[-2:] == [
        ("participant_denied", {"participant_id": denied.id, "by": doctor.id}),
        ("participant_left", {"participant_id": denied.id, "reason": "denied"}),
    ]
    with pytest.raises(NotWaiting):
        await lobby.rooms.deny(lobby.code, doctor.id, denied.id)
    await lobby.rooms.admit(lobby.code, doctor.id, other.id)
    with pytest.raises(NotWaiting):  # someone in the session is not denied
        await lobby.rooms.deny(lobby.code, doctor.id, other.id)


async def test_attendance_starts_at_admit_and_a_denied_patient_has_none(lobby: Lobby) -> None:
    doctor = await lobby.clinician()  # at T0
    lobby.clock.at = T0 + 10
    admitted = await lobby.patient("Admitted")
    lobby.clock.at = T0 + 12
    denied = await lobby.patient("Denied")
    lobby.clock.at = T0 + 25
    await lobby.rooms.admit(lobby.code, doctor.id, admitted.id)
    lobby.clock.at = T0 + 30
    await lobby.rooms.deny(lobby.code, doctor.id, denied.id)
    lobby.clock.at = T0 + 40
    await lobby.rooms.leave(lobby.code, admitted.id, LeaveReason.LEFT)

    attendance = await stores.load_attendance(lobby.db, lobby.session())
    assert [(a.participant_id, a.display_name) for a in attendance] == [
        (doctor.id, "Dr A"),
        (admitted.id, "Admitted"),
    ]
    assert attendance[0].joined_at == pytest.approx(T0)
    assert attendance[1].joined_at == pytest.approx(T0 + 25), "from admit, not knock"
    assert attendance[1].left_at == pytest.approx(T0 + 40)
    assert attendance[1].leave_reason is LeaveReason.LEFT


async def test_a_full_lobby_refuses_the_next_knock_and_keeps_no_seat(lobby: Lobby) -> None:
    await lobby.clinician()
    for n in range(3):  # the fixture's lobby limit
        await lobby.patient(f"P{n}")
    with pytest.raises(LobbyFull):
        await lobby.patient("Late")
    live = lobby.rooms.live_room(lobby.code)
    assert live is not None and "invite:Late" not in live.seat_of
    assert len(lobby.state().waiting()) == 3


async def test_a_lobby_only_session_closes_when_its_last_patient_leaves(lobby: Lobby) -> None:
    patient = await lobby.patient("Early")  # before any clinician: waits
    assert patient.place is Place.LOBBY
    session = lobby.session()
    await lobby.rooms.leave(lobby.code, patient.id, LeaveReason.LEFT)
    assert lobby.rooms.live_room(lobby.code) is None
    ended = await stores.get_session(lobby.db, session)
    assert ended is not None and ended.status == "ended"
    assert [kind for kind, _ in await lobby.timeline(session)] == [
        "participant_knocked",
        "participant_left",
    ]
    assert await stores.load_attendance(lobby.db, session) == []


async def test_refusals_are_domain_errors_with_safe_messages(lobby: Lobby) -> None:
    doctor = await lobby.clinician()
    with pytest.raises(DomainError) as refused:
        await lobby.rooms.admit(lobby.code, doctor.id, ParticipantId("p_nobody"))
    assert refused.value.code == "not_waiting" and "p_nobody" not in refused.value.message
