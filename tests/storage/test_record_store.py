"""The session record's queries on SQLite and PostgreSQL: one session's facts (seats
and whose they are, attendance, timeline, consents) and a room's list of sessions."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from telecircle.crypto.tokens import new_invite_id
from telecircle.domain.access import Role
from telecircle.domain.commands import LeaveReason
from telecircle.domain.events import (
    Event,
    MovedToLobby,
    ParticipantAdmitted,
    ParticipantJoined,
    ParticipantKnocked,
    ParticipantLeft,
)
from telecircle.domain.ids import ParticipantId, RoomId, SessionId, new_room_code
from telecircle.storage import accounts_store, invites_store, org_store, record_store, stores
from telecircle.storage.database import Database
from telecircle.storage.invites_store import InviteKind
from telecircle.storage.tables import ParticipantRow

T0 = 1_700_000_000.25
DAY = 86_400.0
DOC, ANN, BO = ParticipantId("p_doc"), ParticipantId("p_ann"), ParticipantId("p_bo")


async def _link_seat(
    db: Database, pid: ParticipantId, *, user_id: str | None = None, pass_id: str | None = None
) -> None:
    """Record whose seat it is, as the room service does when a seat is taken."""
    async with db.write() as conn:
        await conn.execute(
            update(ParticipantRow)
            .where(ParticipantRow.id == pid)
            .values(user_id=user_id, pass_id=pass_id)
        )


async def _invite(
    db: Database, room_id: RoomId, therapist_id: str, kind: InviteKind = "personal"
) -> str:
    invite = await invites_store.create_invite(
        db,
        invite_id=new_invite_id(),
        room_id=room_id,
        kind=kind,
        patient_name="Ann" if kind == "personal" else None,
        created_by=therapist_id,
        scheduled_session_id=None,
        now=T0 - 100,
        expires_at=T0 + DAY,
    )
    return invite.id


async def _pass_with_consent(
    db: Database,
    room_id: RoomId,
    therapist_id: str,
    pass_hash: str,
    *versions: int,
    invite_id: str | None = None,
    at: float = T0 - 90,
) -> str:
    """Redeem an invite (a new personal one unless given) as ``pass_hash`` and record
    its consents; returns the invite's id."""
    invite_id = invite_id or await _invite(db, room_id, therapist_id)
    await invites_store.redeem_invite(db, invite_id, pass_hash, at)
    for offset, version in enumerate(versions):
        await invites_store.record_consent(db, pass_hash, version, offset == 0, at + 10 + offset)
    return invite_id


async def test_unknown_sessions_have_no_facts(database: Database) -> None:
    assert await record_store.session_facts(database, "s_nobody") is None
    assert await record_store.session_room(database, "s_nobody") is None


async def test_session_facts_hold_seats_attendance_timeline_and_consents(
    database: Database,
) -> None:
    therapist = await accounts_store.create_user(
        database, username="doc", display_name="Dr Lee", role=Role.THERAPIST, now=T0
    )
    room = await stores.create_room(database, "Tuesday group", 8, new_room_code(), now=T0)
    await org_store.add_agreement_version(database, "Be kind.", None, T0 - 500)
    await org_store.add_agreement_version(database, "Be kind, again.", None, T0 - 400)
    session = await stores.open_session(database, room.id, T0)
    events: list[Event] = [
        ParticipantJoined(DOC, "Dr Lee", T0),
        ParticipantKnocked(ANN, "Ann", T0 + 10),
        ParticipantKnocked(BO, "Bo", T0 + 11),
        ParticipantAdmitted(ANN, DOC, T0 + 20),
        MovedToLobby(ANN, DOC, T0 + 100),
        ParticipantAdmitted(ANN, DOC, T0 + 200),
        ParticipantLeft(BO, LeaveReason.LEFT, T0 + 300),
    ]
    await stores.record_events(database, session.id, events)
    ann_invite = await _pass_with_consent(database, room.id, therapist.id, "a" * 64, 1, 2)
    await _pass_with_consent(database, room.id, therapist.id, "b" * 64, 2)
    await _link_seat(database, DOC, user_id=therapist.id)
    await _link_seat(database, ANN, pass_id="a" * 64)

    assert await record_store.session_room(database, session.id) == room.id
    facts = await record_store.session_facts(database, session.id)
    assert facts is not None
    assert (facts.room_id, facts.room_name, facts.status) == (room.id, "Tuesday group", "open")
    assert facts.started_at == pytest.approx(T0) and facts.ended_at is None
    assert [
        (s.participant_id, s.display_name, s.user_id, s.pass_id, s.person_key) for s in facts.seats
    ] == [
        (DOC, "Dr Lee", therapist.id, None, f"user:{therapist.id}"),
        (ANN, "Ann", None, "a" * 64, f"invite:{ann_invite}"),
        (BO, "Bo", None, None, BO),  # no owner recorded: the seat is its own person
    ]
    assert facts.seats[2].left_at == pytest.approx(T0 + 300)
    assert [
        (a.participant_id, a.joined_at - T0, a.left_at, a.leave_reason) for a in facts.attendance
    ] == [
        (DOC, pytest.approx(0), None, None),
        (ANN, pytest.approx(20), pytest.approx(T0 + 100), LeaveReason.MOVED_TO_LOBBY),
        (ANN, pytest.approx(200), None, None),
    ]
    assert [e.seq for e in facts.events] == list(range(1, len(events) + 1))
    assert [e.to_event() for e in facts.events] == events
    # Ann's pass consented twice (agreement 1, then 2); Bo's seat is not linked to a pass,
    # and the other pass took no seat in this session.
    assert [(c.pass_id, c.agreement_version, c.recording_consent) for c in facts.consents] == [
        ("a" * 64, 1, True),
        ("a" * 64, 2, False),
    ]


async def test_one_persons_seats_share_a_person_key(database: Database) -> None:
    """A clinician's seats share their account; a personal invite's passes (one per
    device) are one person; each pass of a group invite is a person of its own."""
    therapist = await accounts_store.create_user(
        database, username="doc", display_name="Dr Lee", role=Role.THERAPIST, now=T0
    )
    room = await stores.create_room(database, "Tuesday group", 8, new_room_code(), now=T0)
    await org_store.add_agreement_version(database, "Be kind.", None, T0 - 500)
    session = await stores.open_session(database, room.id, T0)
    seats = [ParticipantId(f"p_{n}") for n in range(8)]
    doc_1, doc_2, ann_phone, ann_laptop, ann_again, bo, cy, old = seats
    await stores.record_events(
        database,
        session.id,
        [
            ParticipantJoined(doc_1, "Dr Lee", T0),
            ParticipantLeft(doc_1, LeaveReason.CONNECTION_LOST, T0 + 100),
            ParticipantJoined(doc_2, "Dr Lee", T0 + 110),
            *(ParticipantKnocked(pid, "Patient", T0 + 120 + n) for n, pid in enumerate(seats[2:])),
            *(ParticipantAdmitted(pid, doc_2, T0 + 140 + n) for n, pid in enumerate(seats[2:])),
        ],
    )
    ann = await _pass_with_consent(database, room.id, therapist.id, "a" * 64, 1)
    await _pass_with_consent(database, room.id, therapist.id, "c" * 64, 1, invite_id=ann, at=T0)
    group = await _invite(database, room.id, therapist.id, "group")
    for pass_hash in ("b" * 64, "d" * 64):
        await _pass_with_consent(database, room.id, therapist.id, pass_hash, 1, invite_id=group)
    owners = {
        doc_1: (therapist.id, None),
        doc_2: (therapist.id, None),
        ann_phone: (None, "a" * 64),
        ann_laptop: (None, "c" * 64),
        ann_again: (None, "c" * 64),
        bo: (None, "b" * 64),
        cy: (None, "d" * 64),
    }
    for pid, (user_id, pass_id) in owners.items():
        await _link_seat(database, pid, user_id=user_id, pass_id=pass_id)

    facts = await record_store.session_facts(database, session.id)
    assert facts is not None
    keys = {seat.participant_id: seat.person_key for seat in facts.seats}
    assert keys == {
        doc_1: f"user:{therapist.id}",
        doc_2: f"user:{therapist.id}",
        ann_phone: f"invite:{ann}",
        ann_laptop: f"invite:{ann}",
        ann_again: f"invite:{ann}",
        bo: "pass:" + "b" * 64,
        cy: "pass:" + "d" * 64,
        old: old,
    }
    # Each pass's consent once, however many seats were taken with it.
    assert sorted(c.pass_id for c in facts.consents) == sorted(p * 64 for p in ("a", "c", "b", "d"))
    # The list counts people: Dr Lee, Ann, Bo, Cy and the unowned seat.
    [listed] = await record_store.room_sessions(database, room.id)
    assert listed.attended == 5


async def test_the_rooms_sessions_newest_first_with_who_attended(database: Database) -> None:
    room = await stores.create_room(database, "Tuesday group", 8, new_room_code(), now=T0)
    other = await stores.create_room(database, "Thursday group", 8, new_room_code(), now=T0)
    first = await stores.open_session(database, room.id, T0)
    await stores.record_events(
        database,
        first.id,
        [
            ParticipantJoined(DOC, "Dr Lee", T0),
            ParticipantKnocked(ANN, "Ann", T0 + 1),
            ParticipantKnocked(BO, "Bo", T0 + 2),
            ParticipantAdmitted(ANN, DOC, T0 + 3),
            MovedToLobby(ANN, DOC, T0 + 4),
            ParticipantAdmitted(ANN, DOC, T0 + 5),  # two intervals: one person
        ],
    )  # Bo only waited: not counted
    await stores.end_session(database, first.id, T0 + 3600)
    second = await stores.open_session(database, room.id, T0 + 7 * DAY)
    elsewhere = await stores.open_session(database, other.id, T0 + DAY)

    listed = await record_store.room_sessions(database, room.id)
    assert [(s.session_id, s.status, s.attended) for s in listed] == [
        (second.id, "open", 0),
        (first.id, "ended", 2),
    ]
    assert listed[1].started_at == pytest.approx(T0)
    assert listed[1].ended_at == pytest.approx(T0 + 3600)
    assert [s.session_id for s in await record_store.room_sessions(database, other.id)] == [
        elsewhere.id
    ]
    assert await record_store.room_sessions(database, "r_nobody") == []


async def test_user_names_of_known_accounts(database: Database) -> None:
    doc = await accounts_store.create_user(
        database, username="doc", display_name="Dr Lee", role=Role.THERAPIST, now=T0
    )
    assert await record_store.user_names(database, [doc.id, "u_gone", doc.id]) == {doc.id: "Dr Lee"}
    assert await record_store.user_names(database, []) == {}


async def test_facts_of_one_session_leave_out_other_sessions(database: Database) -> None:
    room = await stores.create_room(database, "Tuesday group", 8, new_room_code(), now=T0)
    first = await stores.open_session(database, room.id, T0)
    await stores.record_events(database, first.id, [ParticipantJoined(DOC, "Dr Lee", T0)])
    await stores.end_session(database, first.id, T0 + 60)
    second = await stores.open_session(database, room.id, T0 + 120)
    other_doc = ParticipantId("p_doc2")
    await stores.record_events(
        database, second.id, [ParticipantJoined(other_doc, "Dr Lee", T0 + 120)]
    )
    facts = await record_store.session_facts(database, SessionId(second.id))
    assert facts is not None
    assert [s.participant_id for s in facts.seats] == [other_doc]
    assert [a.participant_id for a in facts.attendance] == [other_doc]
    assert [e.kind for e in facts.events] == ["participant_joined"]
