"""The organisation's settings, the agreement's versions, who runs which room, and the
schedule of planned sessions.

Same rules as :mod:`telecircle.storage.stores`: one transaction per function, plain
frozen records out, times as UNIX epoch seconds.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from telecircle.domain.ids import RoomId
from telecircle.storage.codec import from_utc, to_utc
from telecircle.storage.database import Database
from telecircle.storage.errors import StorageError
from telecircle.storage.stores import RoomRecord, room_from_row
from telecircle.storage.tables import (
    AgreementVersionRow,
    OrgSettingsRow,
    RoomClinicianRow,
    RoomRow,
    ScheduledSessionRow,
)

ORG_ROW_ID = 1
DEFAULT_NOTES_RETENTION_DAYS = 365
# How many times adding an agreement version retries after losing a race for a number.
AGREEMENT_RETRIES = 5


class ScheduledSessionNotFound(StorageError):
    """No scheduled session has the given id (in that room)."""


@dataclass(frozen=True, slots=True)
class OrgSettings:
    max_participants: int
    require_totp: bool
    recording_consent_required: bool
    notes_retention_days: int


@dataclass(frozen=True, slots=True)
class AgreementVersion:
    version: int
    text: str
    created_at: float
    created_by: str | None


@dataclass(frozen=True, slots=True)
class ScheduledSession:
    id: str
    room_id: RoomId
    starts_at: float
    planned_minutes: int
    created_by: str
    cancelled_at: float | None

    @property
    def ends_at(self) -> float:
        return self.starts_at + self.planned_minutes * 60


# -------------------------------------------------------------- organisation settings


async def get_org_settings(db: Database, *, default_max_participants: int) -> OrgSettings:
    """The stored settings, or the defaults when an administrator never saved any."""
    async with db.read() as conn:
        row = (
            await conn.execute(select(OrgSettingsRow).where(OrgSettingsRow.id == ORG_ROW_ID))
        ).one_or_none()
    if row is None:
        return OrgSettings(
            max_participants=default_max_participants,
            require_totp=False,
            recording_consent_required=False,
            notes_retention_days=DEFAULT_NOTES_RETENTION_DAYS,
        )
    return OrgSettings(
        max_participants=row.max_participants,
        require_totp=row.require_totp,
        recording_consent_required=row.recording_consent_required,
        notes_retention_days=row.notes_retention_days,
    )


async def save_org_settings(db: Database, settings: OrgSettings, now: float) -> None:
    values = {
        "max_participants": settings.max_participants,
        "require_totp": settings.require_totp,
        "recording_consent_required": settings.recording_consent_required,
        "notes_retention_days": settings.notes_retention_days,
        "updated_at": to_utc(now),
    }
    async with db.write() as conn:
        result = await conn.execute(
            update(OrgSettingsRow).where(OrgSettingsRow.id == ORG_ROW_ID).values(**values)
        )
        if result.rowcount == 0:
            await conn.execute(insert(OrgSettingsRow).values(id=ORG_ROW_ID, **values))


# ------------------------------------------------------------------------ agreement


async def current_agreement(db: Database) -> AgreementVersion | None:
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(AgreementVersionRow).order_by(AgreementVersionRow.version.desc()).limit(1)
            )
        ).one_or_none()
    return None if row is None else _agreement(row)


async def get_agreement(db: Database, version: int) -> AgreementVersion | None:
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(AgreementVersionRow).where(AgreementVersionRow.version == version)
            )
        ).one_or_none()
    return None if row is None else _agreement(row)


async def list_agreements(db: Database) -> list[AgreementVersion]:
    """Every version, newest first."""
    async with db.read() as conn:
        rows = await conn.execute(
            select(AgreementVersionRow).order_by(AgreementVersionRow.version.desc())
        )
        return [_agreement(row) for row in rows]


async def add_agreement_version(
    db: Database, text: str, created_by: str | None, now: float
) -> AgreementVersion:
    """Store ``text`` as the next version (1, 2, 3…). Versions are never edited."""
    for _ in range(AGREEMENT_RETRIES):
        try:
            async with db.write() as conn:
                latest = (
                    await conn.execute(select(func.max(AgreementVersionRow.version)))
                ).scalar_one()
                version = (latest or 0) + 1
                await conn.execute(
                    insert(AgreementVersionRow).values(
                        version=version, text=text, created_at=to_utc(now), created_by=created_by
                    )
                )
            return AgreementVersion(version, text, from_utc(to_utc(now)), created_by)
        except IntegrityError:
            continue  # another writer took that number: take the next one
    raise StorageError("could not number the agreement version")


def _agreement(row: Any) -> AgreementVersion:
    return AgreementVersion(row.version, row.text, from_utc(row.created_at), row.created_by)


# -------------------------------------------------------------------- room clinicians


async def assign_clinician(db: Database, room_id: RoomId, user_id: str, room_role: str) -> None:
    """Make ``user_id`` the room's ``owner`` or a ``co_facilitator`` (replacing any role)."""
    async with db.write() as conn:
        await conn.execute(
            delete(RoomClinicianRow).where(
                RoomClinicianRow.room_id == room_id, RoomClinicianRow.user_id == user_id
            )
        )
        await conn.execute(
            insert(RoomClinicianRow).values(room_id=room_id, user_id=user_id, room_role=room_role)
        )


async def unassign_clinician(db: Database, room_id: RoomId, user_id: str) -> None:
    async with db.write() as conn:
        await conn.execute(
            delete(RoomClinicianRow).where(
                RoomClinicianRow.room_id == room_id, RoomClinicianRow.user_id == user_id
            )
        )


async def room_role_of(db: Database, room_id: RoomId, user_id: str) -> str | None:
    """``owner``, ``co_facilitator`` or None (not assigned to that room)."""
    async with db.read() as conn:
        role: str | None = (
            await conn.execute(
                select(RoomClinicianRow.room_role).where(
                    RoomClinicianRow.room_id == room_id, RoomClinicianRow.user_id == user_id
                )
            )
        ).scalar_one_or_none()
    return role


async def rooms_of_clinician(db: Database, user_id: str) -> list[tuple[RoomRecord, str]]:
    """The rooms a clinician is assigned to, with their role in each, by name."""
    async with db.read() as conn:
        rows = await conn.execute(
            select(RoomRow, RoomClinicianRow.room_role)
            .join(RoomClinicianRow, RoomClinicianRow.room_id == RoomRow.id)
            .where(RoomClinicianRow.user_id == user_id)
            .order_by(RoomRow.name, RoomRow.id)
        )
        return [(room_from_row(row), row.room_role) for row in rows]


async def clinicians_of_room(db: Database, room_id: RoomId) -> list[tuple[str, str]]:
    """(user id, room role) of everyone assigned to the room."""
    async with db.read() as conn:
        rows = await conn.execute(
            select(RoomClinicianRow.user_id, RoomClinicianRow.room_role).where(
                RoomClinicianRow.room_id == room_id
            )
        )
        return [(row.user_id, row.room_role) for row in rows]


# ---------------------------------------------------------------------- scheduling


async def schedule_session(
    db: Database,
    room_id: RoomId,
    *,
    starts_at: float,
    planned_minutes: int,
    created_by: str,
    now: float,
) -> ScheduledSession:
    """Plan a session of the room. ``planned_minutes`` must be 60 to 180 (ValueError)."""
    if not 60 <= planned_minutes <= 180:
        raise ValueError("planned_minutes must be between 60 and 180")
    session_id = "s_" + secrets.token_hex(8)
    async with db.write() as conn:
        await conn.execute(
            insert(ScheduledSessionRow).values(
                id=session_id,
                room_id=room_id,
                starts_at=to_utc(starts_at),
                planned_minutes=planned_minutes,
                created_by=created_by,
                created_at=to_utc(now),
            )
        )
    return ScheduledSession(
        session_id, room_id, from_utc(to_utc(starts_at)), planned_minutes, created_by, None
    )


async def get_scheduled_session(db: Database, session_id: str) -> ScheduledSession | None:
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(ScheduledSessionRow).where(ScheduledSessionRow.id == session_id)
            )
        ).one_or_none()
    return None if row is None else _scheduled(row)


async def scheduled_sessions(
    db: Database, room_ids: Sequence[RoomId], *, ending_after: float, limit: int = 200
) -> list[ScheduledSession]:
    """Uncancelled sessions of those rooms that have not ended by ``ending_after``,
    soonest first."""
    if not room_ids:
        return []
    async with db.read() as conn:
        rows = await conn.execute(
            select(ScheduledSessionRow)
            .where(
                ScheduledSessionRow.room_id.in_(room_ids),
                ScheduledSessionRow.cancelled_at.is_(None),
                # Coarse filter in SQL (sessions last at most 180 minutes), exact below.
                ScheduledSessionRow.starts_at > to_utc(ending_after - 180 * 60),
            )
            .order_by(ScheduledSessionRow.starts_at)
            .limit(limit)
        )
        sessions = [_scheduled(row) for row in rows]
    return [s for s in sessions if s.ends_at > ending_after]


async def cancel_scheduled_session(
    db: Database, room_id: RoomId, session_id: str, now: float
) -> None:
    async with db.write() as conn:
        result = await conn.execute(
            update(ScheduledSessionRow)
            .where(
                ScheduledSessionRow.id == session_id,
                ScheduledSessionRow.room_id == room_id,
                ScheduledSessionRow.cancelled_at.is_(None),
            )
            .values(cancelled_at=to_utc(now))
        )
        if result.rowcount != 1:
            raise ScheduledSessionNotFound(session_id)


def _scheduled(row: Any) -> ScheduledSession:
    return ScheduledSession(
        id=row.id,
        room_id=RoomId(row.room_id),
        starts_at=from_utc(row.starts_at),
        planned_minutes=row.planned_minutes,
        created_by=row.created_by,
        cancelled_at=None if row.cancelled_at is None else from_utc(row.cancelled_at),
    )
