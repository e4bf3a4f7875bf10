"""The invites store on SQLite and PostgreSQL: invites, passes, the consent ledger."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

import pytest
from sqlalchemy import insert, update

from telecircle.crypto.tokens import new_invite_id, secret_hash
from telecircle.storage import invites_store as store
from telecircle.storage.codec import to_utc
from telecircle.storage.database import Database
from telecircle.storage.errors import RoomNotFound
from telecircle.storage.tables import (
    AgreementVersionRow,
    RoomRow,
    ScheduledSessionRow,
    UserRow,
)

T0 = 1_700_000_000.25
DAY = 86_400.0


@dataclass(frozen=True)
class World:
    room_id: str
    other_room_id: str
    therapist_id: str
    scheduled_id: str


async def _world(db: Database) -> World:
    async with db.write() as conn:
        await conn.execute(
            insert(UserRow).values(
                id="u_ther",
                username="ther",
                display_name="Dr T",
                role="therapist",
                created_at=to_utc(T0),
            )
        )
        for room_id, code in (("r_one", "code-one"), ("r_two", "code-two")):
            await conn.execute(
                insert(RoomRow).values(
                    id=room_id,
                    code=code,
                    name="Group",
                    participant_limit=8,
                    created_at=to_utc(T0),
                )
            )
        await conn.execute(
            insert(ScheduledSessionRow).values(
                id="ss_one",
                room_id="r_one",
                starts_at=to_utc(T0 + 3600),
                planned_minutes=90,
                created_by="u_ther",
                created_at=to_utc(T0),
            )
        )
        for version in (1, 2):
            await conn.execute(
                insert(AgreementVersionRow).values(
                    version=version, text=f"Agreement v{version}", created_at=to_utc(T0)
                )
            )
    return World("r_one", "r_two", "u_ther", "ss_one")


async def _invite(
    db: Database,
    world: World,
    kind: store.InviteKind = "personal",
    *,
    now: float = T0,
    expires_at: float = T0 + DAY,
) -> store.InviteRecord:
    return await store.create_invite(
        db,
        invite_id=new_invite_id(),
        room_id=world.room_id,
        kind=kind,
        patient_name="Pat Example" if kind == "personal" else None,
        created_by=world.therapist_id,
        scheduled_session_id=None,
        now=now,
        expires_at=expires_at,
    )


def _hash() -> str:
    return secret_hash(secrets.token_urlsafe(32))


async def test_invites_round_trip(database: Database) -> None:
    world = await _world(database)
    invite = await store.create_invite(
        database,
        invite_id="i_abc",
        room_id=world.room_id,
        kind="personal",
        patient_name="Pat Example",
        created_by=world.therapist_id,
        scheduled_session_id=world.scheduled_id,
        now=T0,
        expires_at=T0 + DAY,
    )
    assert invite.generation == 0 and invite.revoked_at is None
    assert invite.created_at == pytest.approx(T0)
    assert await store.get_invite(database, "i_abc") == invite
    assert await store.get_invite(database, "i_missing") is None


async def test_creating_checks_room_session_and_kind(database: Database) -> None:
    world = await _world(database)

    async def create(room_id: str, kind: store.InviteKind, session: str | None) -> None:
        await store.create_invite(
            database,
            invite_id=new_invite_id(),
            room_id=room_id,
            kind=kind,
            patient_name=None,
            created_by=world.therapist_id,
            scheduled_session_id=session,
            now=T0,
            expires_at=T0 + DAY,
        )

    with pytest.raises(RoomNotFound):
        await create("r_nowhere", "group", None)
    with pytest.raises(store.ScheduledSessionMismatch):
        await create(world.other_room_id, "group", world.scheduled_id)
    with pytest.raises(store.ScheduledSessionMismatch):
        await create(world.room_id, "group", "ss_missing")
    with pytest.raises(ValueError):
        await create(world.room_id, "personal", None)
    assert await store.list_invites(database, world.room_id, T0) == []


async def test_a_cancelled_session_takes_no_invites(database: Database) -> None:
    world = await _world(database)
    async with database.write() as conn:
        await conn.execute(
            update(ScheduledSessionRow)
            .where(ScheduledSessionRow.id == world.scheduled_id)
            .values(cancelled_at=to_utc(T0))
        )
    plan = await store.session_plan(database, world.scheduled_id)
    assert plan is not None and plan.cancelled_at == pytest.approx(T0)
    with pytest.raises(store.ScheduledSessionMismatch):
        await store.create_invite(
            database,
            invite_id=new_invite_id(),
            room_id=world.room_id,
            kind="group",
            patient_name=None,
            created_by=world.therapist_id,
            scheduled_session_id=world.scheduled_id,
            now=T0,
            expires_at=T0 + DAY,
        )


async def test_session_plan_is_read_back(database: Database) -> None:
    world = await _world(database)
    plan = await store.session_plan(database, world.scheduled_id)
    assert plan is not None
    assert plan.room_id == world.room_id
    assert plan.planned_end == pytest.approx(T0 + 3600 + 90 * 60)
    assert plan.cancelled_at is None
    assert await store.session_plan(database, "ss_missing") is None


async def test_list_is_newest_first_with_live_pass_counts(database: Database) -> None:
    world = await _world(database)
    old = await _invite(database, world, "group", now=T0)
    new = await _invite(database, world, "personal", now=T0 + 10)
    for _ in range(3):
        await store.redeem_invite(database, old.id, _hash(), T0 + 20)
    await store.redeem_invite(database, new.id, _hash(), T0 + 20)
    await store.redeem_invite(database, new.id, _hash(), T0 + 21)
    listing = await store.list_invites(database, world.room_id, T0 + 30)
    assert [(item.invite.id, item.live_passes) for item in listing] == [(new.id, 1), (old.id, 3)]
    assert listing[0].invite.generation == 2
    # Past the expiry nothing is live.
    later = await store.list_invites(database, world.room_id, T0 + 2 * DAY)
    assert [item.live_passes for item in later] == [0, 0]
    assert await store.list_invites(database, world.other_room_id, T0) == []


async def test_personal_redemption_moves_the_seat(database: Database) -> None:
    world = await _world(database)
    invite = await _invite(database, world)
    first_hash, second_hash = _hash(), _hash()
    first = await store.redeem_invite(database, invite.id, first_hash, T0 + 1)
    assert first.superseded_pass_ids == ()
    assert first.pass_record.generation == 1
    assert first.pass_record.patient_name == "Pat Example"
    assert first.pass_record.invite_kind == "personal"
    assert first.pass_record.expires_at == pytest.approx(invite.expires_at)
    assert await store.get_pass(database, first_hash) == first.pass_record

    second = await store.redeem_invite(database, invite.id, second_hash, T0 + 2)
    assert second.superseded_pass_ids == (first_hash,)
    assert second.pass_record.generation == 2
    old = await store.get_pass(database, first_hash)
    assert old is not None and old.revoked_at == pytest.approx(T0 + 2)
    assert not old.valid_at(T0 + 3)
    current = await store.get_pass(database, second_hash)
    assert current is not None and current.valid_at(T0 + 3)


async def test_fifty_concurrent_personal_redemptions_leave_one_seat(database: Database) -> None:
    world = await _world(database)
    invite = await _invite(database, world)
    hashes = [_hash() for _ in range(50)]
    results = await asyncio.gather(
        *(store.redeem_invite(database, invite.id, h, T0 + 1) for h in hashes)
    )
    generations = sorted(r.pass_record.generation for r in results)
    assert generations == list(range(1, 51))
    passes = [await store.get_pass(database, h) for h in hashes]
    valid = [p for p in passes if p is not None and p.valid_at(T0 + 2)]
    assert len(valid) == 1
    assert valid[0].generation == 50
    stored = await store.get_invite(database, invite.id)
    assert stored is not None and stored.generation == 50
    superseded = [pid for r in results for pid in r.superseded_pass_ids]
    assert sorted(superseded) == sorted(h for h in hashes if h != valid[0].id)
    listing = await store.list_invites(database, world.room_id, T0 + 2)
    assert listing[0].live_passes == 1


async def test_group_redemptions_are_independent_up_to_the_cap(database: Database) -> None:
    world = await _world(database)
    invite = await _invite(database, world, "group")
    hashes = [_hash() for _ in range(store.MAX_GROUP_PASSES)]
    results = await asyncio.gather(
        *(store.redeem_invite(database, invite.id, h, T0 + 1) for h in hashes)
    )
    assert all(r.pass_record.generation == 0 for r in results)
    assert all(r.superseded_pass_ids == () for r in results)
    assert all(r.pass_record.patient_name is None for r in results)
    with pytest.raises(store.ExhaustedInvite):
        await store.redeem_invite(database, invite.id, _hash(), T0 + 2)
    for h in hashes:
        found = await store.get_pass(database, h)
        assert found is not None and found.valid_at(T0 + 3)


async def test_refusals_unknown_revoked_expired(database: Database) -> None:
    world = await _world(database)
    with pytest.raises(store.UnknownInvite):
        await store.redeem_invite(database, "i_missing", _hash(), T0)
    expiring = await _invite(database, world, expires_at=T0 + 100)
    with pytest.raises(store.ExpiredInvite):
        await store.redeem_invite(database, expiring.id, _hash(), T0 + 100)
    revoked = await _invite(database, world)
    await store.revoke_invite(database, revoked.id, T0 + 5)
    with pytest.raises(store.RevokedInvite):
        await store.redeem_invite(database, revoked.id, _hash(), T0 + 6)
    # A refused redemption changes nothing.
    for invite_id in (expiring.id, revoked.id):
        stored = await store.get_invite(database, invite_id)
        assert stored is not None and stored.generation == 0
    assert sum(i.live_passes for i in await store.list_invites(database, world.room_id, T0)) == 0


async def test_revoking_revokes_every_pass_once(database: Database) -> None:
    world = await _world(database)
    invite = await _invite(database, world, "group")
    hashes = [_hash() for _ in range(3)]
    for h in hashes:
        await store.redeem_invite(database, invite.id, h, T0 + 1)
    assert await store.revoke_invite(database, invite.id, T0 + 5) == sorted(hashes)
    assert await store.revoke_invite(database, invite.id, T0 + 9) == []
    stored = await store.get_invite(database, invite.id)
    assert stored is not None and stored.revoked_at == pytest.approx(T0 + 5)
    for h in hashes:
        found = await store.get_pass(database, h)
        assert found is not None and not found.valid_at(T0 + 6)
    with pytest.raises(store.UnknownInvite):
        await store.revoke_invite(database, "i_missing", T0)


async def test_a_pass_never_outlives_its_invite(database: Database) -> None:
    world = await _world(database)
    invite = await _invite(database, world, expires_at=T0 + 100)
    redeemed = await store.redeem_invite(database, invite.id, _hash(), T0 + 1)
    found = await store.get_pass(database, redeemed.pass_record.id)
    assert found is not None
    assert found.valid_at(T0 + 99)
    assert not found.valid_at(T0 + 100)
    assert await store.get_pass(database, _hash()) is None


async def test_consent_ledger_keeps_each_version(database: Database) -> None:
    world = await _world(database)
    ana = await store.redeem_invite(database, (await _invite(database, world)).id, _hash(), T0)
    ben = await store.redeem_invite(database, (await _invite(database, world)).id, _hash(), T0)
    ana_id, ben_id = ana.pass_record.id, ben.pass_record.id
    first = await store.record_consent(database, ana_id, 1, None, T0 + 1, display_name="Ana")
    await store.record_consent(database, ben_id, 2, True, T0 + 2, display_name="Ben")
    await store.record_consent(database, ana_id, 2, False, T0 + 3)
    assert first.agreement_version == 1 and first.display_name == "Ana"
    assert first.room_id == world.room_id
    found = await store.get_pass(database, ana_id)
    assert found is not None and found.display_name == "Ana"

    ledger = await store.list_consents(database, world.room_id)
    assert [
        (c.pass_id, c.display_name, c.agreement_version, c.recording_consent) for c in ledger
    ] == [
        (ana_id, "Ana", 1, None),
        (ben_id, "Ben", 2, True),
        (ana_id, "Ana", 2, False),
    ]
    assert [c.agreement_version for c in await store.consents_of_pass(database, ana_id)] == [1, 2]
    assert ledger[0] == first
    assert await store.list_consents(database, world.other_room_id) == []


async def test_consent_needs_a_valid_pass_and_a_known_version(database: Database) -> None:
    world = await _world(database)
    invite = await _invite(database, world)
    redeemed = await store.redeem_invite(database, invite.id, _hash(), T0)
    pass_id = redeemed.pass_record.id
    with pytest.raises(store.UnknownAgreementVersion):
        await store.record_consent(database, pass_id, 9, None, T0 + 1, display_name="Ana")
    with pytest.raises(store.PassUnavailable):
        await store.record_consent(database, _hash(), 1, None, T0 + 1)
    with pytest.raises(store.PassUnavailable):
        await store.record_consent(database, pass_id, 1, None, T0 + 2 * DAY)
    await store.redeem_invite(database, invite.id, _hash(), T0 + 2)  # moves the seat
    with pytest.raises(store.PassUnavailable):
        await store.record_consent(database, pass_id, 1, None, T0 + 3, display_name="Ana")
    # Nothing of the refused attempts was kept, not even the name.
    found = await store.get_pass(database, pass_id)
    assert found is not None and found.display_name is None
    assert await store.consents_of_pass(database, pass_id) == []


async def test_set_pass_display_name(database: Database) -> None:
    world = await _world(database)
    invite = await _invite(database, world)
    redeemed = await store.redeem_invite(database, invite.id, _hash(), T0)
    await store.set_pass_display_name(database, redeemed.pass_record.id, "Ana")
    found = await store.get_pass(database, redeemed.pass_record.id)
    assert found is not None and found.display_name == "Ana"
    with pytest.raises(store.PassUnavailable):
        await store.set_pass_display_name(database, _hash(), "Ana")
