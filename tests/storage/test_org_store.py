"""Organisation settings, agreement versions, room clinicians and the schedule."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import insert

from telecircle.domain.ids import new_room_code
from telecircle.storage import org_store, stores
from telecircle.storage.codec import to_utc
from telecircle.storage.database import Database
from telecircle.storage.tables import UserRow

NOW = 1_800_000_000.0


async def _user(db: Database, user_id: str, role: str = "therapist") -> str:
    async with db.write() as conn:
        await conn.execute(
            insert(UserRow).values(
                id=user_id,
                username=user_id,
                display_name="Clinician",
                role=role,
                created_at=to_utc(NOW),
            )
        )
    return user_id


async def test_settings_default_until_saved_then_persist(database: Database) -> None:
    defaults = await org_store.get_org_settings(database, default_max_participants=10)
    assert defaults.max_participants == 10 and not defaults.require_totp
    changed = org_store.OrgSettings(
        max_participants=8,
        require_totp=True,
        recording_consent_required=True,
        notes_retention_days=90,
    )
    await org_store.save_org_settings(database, changed, NOW)
    assert await org_store.get_org_settings(database, default_max_participants=10) == changed
    again = org_store.OrgSettings(6, False, False, 30)
    await org_store.save_org_settings(database, again, NOW + 1)
    assert await org_store.get_org_settings(database, default_max_participants=10) == again


async def test_agreement_edits_add_versions_and_keep_old_ones(database: Database) -> None:
    assert await org_store.current_agreement(database) is None
    first = await org_store.add_agreement_version(database, "Keep it in the room.", None, NOW)
    second = await org_store.add_agreement_version(database, "Version two.", "u_admin", NOW)
    assert (first.version, second.version) == (1, 2)
    assert await org_store.current_agreement(database) == second
    old = await org_store.get_agreement(database, 1)
    assert old is not None and old.text == "Keep it in the room."
    assert [a.version for a in await org_store.list_agreements(database)] == [2, 1]


async def test_concurrent_agreement_edits_get_distinct_versions(database: Database) -> None:
    added = await asyncio.gather(
        *(org_store.add_agreement_version(database, f"text {i}", None, NOW) for i in range(5))
    )
    assert sorted(a.version for a in added) == [1, 2, 3, 4, 5]


async def test_room_clinicians_and_overrides(database: Database) -> None:
    room = await stores.create_room(database, "Tuesday group", 8, new_room_code(), now=NOW)
    owner = await _user(database, "u_owner")
    helper = await _user(database, "u_cofac", "co_facilitator")
    await org_store.assign_clinician(database, room.id, owner, "owner")
    await org_store.assign_clinician(database, room.id, helper, "co_facilitator")
    assert await org_store.room_role_of(database, room.id, owner) == "owner"
    assert await org_store.room_role_of(database, room.id, "u_nobody") is None
    [(listed, role)] = await org_store.rooms_of_clinician(database, helper)
    assert listed.id == room.id and role == "co_facilitator"
    await org_store.unassign_clinician(database, room.id, helper)
    assert await org_store.rooms_of_clinician(database, helper) == []
    updated = await stores.update_room(
        database,
        room.id,
        name="Tuesday group",
        participant_limit=6,
        recording_consent_required=True,
        notes_retention_days=None,
    )
    assert updated.participant_limit == 6 and updated.recording_consent_required is True
    assert (await stores.get_room(database, room.id)) == updated


async def test_schedule_lists_sessions_not_yet_ended(database: Database) -> None:
    room = await stores.create_room(database, "Group", 8, new_room_code(), now=NOW)
    owner = await _user(database, "u_owner")
    past = await org_store.schedule_session(
        database, room.id, starts_at=NOW - 4 * 3600, planned_minutes=90, created_by=owner, now=NOW
    )
    running = await org_store.schedule_session(
        database, room.id, starts_at=NOW - 1800, planned_minutes=60, created_by=owner, now=NOW
    )
    later = await org_store.schedule_session(
        database, room.id, starts_at=NOW + 86400, planned_minutes=180, created_by=owner, now=NOW
    )
    listed = await org_store.scheduled_sessions(database, [room.id], ending_after=NOW)
    assert [s.id for s in listed] == [running.id, later.id]
    assert past.id not in {s.id for s in listed}
    await org_store.cancel_scheduled_session(database, room.id, later.id, NOW)
    listed = await org_store.scheduled_sessions(database, [room.id], ending_after=NOW)
    assert [s.id for s in listed] == [running.id]
    with pytest.raises(org_store.ScheduledSessionNotFound):
        await org_store.cancel_scheduled_session(database, room.id, later.id, NOW)
    with pytest.raises(ValueError):
        await org_store.schedule_session(
            database, room.id, starts_at=NOW, planned_minutes=45, created_by=owner, now=NOW
        )
