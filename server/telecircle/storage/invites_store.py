"""The invites store: invite links, the patient passes they are redeemed for, and the
consent ledger.

A personal invite has one seat: each redemption bumps the invite's ``generation`` and
issues a pass of that generation, revoking every older pass of the invite, so only the
newest pass is valid. A group invite issues an independent pass (generation 0) per
redemption, up to :data:`MAX_GROUP_PASSES`. A pass lasts as long as its invite.

Each function is one transaction: it either does all of its work or raises a
:class:`~telecircle.storage.errors.StorageError` and does none. Times in and out are
UNIX epoch seconds. Records are frozen dataclasses of plain values. Error messages carry
ids only, never names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal, cast

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from telecircle.storage.codec import from_utc, to_utc
from telecircle.storage.database import Database
from telecircle.storage.errors import RoomNotFound, StorageError
from telecircle.storage.tables import (
    AgreementVersionRow,
    ConsentRow,
    InviteRow,
    PatientPassRow,
    RoomRow,
    ScheduledSessionRow,
)

InviteKind = Literal["personal", "group"]

# Most passes one group link may ever issue.
MAX_GROUP_PASSES = 50


# ----------------------------------------------------------------------------- errors


class InviteRefusal(StorageError):
    """An invite cannot be redeemed; ``reason`` is a stable code."""

    reason: ClassVar[str] = "invite_refused"


class UnknownInvite(InviteRefusal):
    """No invite has the given id."""

    reason = "invite_unknown"


class RevokedInvite(InviteRefusal):
    """The invite was revoked."""

    reason = "invite_revoked"


class ExpiredInvite(InviteRefusal):
    """The invite's expiry time has passed."""

    reason = "invite_expired"


class ExhaustedInvite(InviteRefusal):
    """The group invite has issued :data:`MAX_GROUP_PASSES` passes already."""

    reason = "invite_exhausted"


class ScheduledSessionMismatch(StorageError):
    """The scheduled session does not exist, belongs to another room, or is cancelled."""


class PassUnavailable(StorageError):
    """No pass has the given id, or it (or its invite) is revoked or expired."""


class UnknownAgreementVersion(StorageError):
    """No confidentiality agreement has the given version."""


# ---------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class InviteRecord:
    """An invite link. ``patient_name`` is set for personal invites only; ``generation``
    counts a personal invite's redemptions (always 0 for a group invite)."""

    id: str
    room_id: str
    scheduled_session_id: str | None
    kind: InviteKind
    patient_name: str | None
    created_by: str
    created_at: float
    expires_at: float
    revoked_at: float | None
    generation: int


@dataclass(frozen=True, slots=True)
class InviteListing:
    """An invite with the number of its passes that are live (unrevoked, unexpired)."""

    invite: InviteRecord
    live_passes: int


@dataclass(frozen=True, slots=True)
class PassRecord:
    """A redeemed invite, what a patient's cookie stands for. ``id`` is the SHA-256 of
    the cookie secret.

    As read by :func:`get_pass`, ``revoked_at`` and ``expires_at`` already take the
    invite into account: a pass is revoked when it or its invite is, and expires no
    later than its invite.
    """

    id: str
    invite_id: str
    room_id: str
    generation: int
    display_name: str | None
    created_at: float
    expires_at: float
    revoked_at: float | None
    invite_kind: InviteKind
    patient_name: str | None

    def valid_at(self, now: float) -> bool:
        """Whether the pass admits its holder at ``now``."""
        return self.revoked_at is None and now < self.expires_at


@dataclass(frozen=True, slots=True)
class Redeemed:
    """The outcome of a redemption: the new pass, and the passes it superseded (for a
    personal invite: the previous seat, now revoked; always empty for a group invite)."""

    pass_record: PassRecord
    superseded_pass_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    """One consent ledger entry. ``recording_consent`` is None when the room did not
    ask; ``display_name`` is the pass's current name."""

    id: int
    pass_id: str
    room_id: str
    agreement_version: int
    recording_consent: bool | None
    accepted_at: float
    display_name: str | None


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """What an invite's expiry depends on: a scheduled session's room, start and length."""

    id: str
    room_id: str
    starts_at: float
    planned_minutes: int
    cancelled_at: float | None

    @property
    def planned_end(self) -> float:
        return self.starts_at + self.planned_minutes * 60.0


# ---------------------------------------------------------------------------- invites


async def session_plan(db: Database, scheduled_session_id: str) -> SessionPlan | None:
    """The scheduled session's plan, or None if there is no such session."""
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(ScheduledSessionRow).where(ScheduledSessionRow.id == scheduled_session_id)
            )
        ).one_or_none()
    if row is None:
        return None
    return SessionPlan(
        id=row.id,
        room_id=row.room_id,
        starts_at=from_utc(row.starts_at),
        planned_minutes=row.planned_minutes,
        cancelled_at=None if row.cancelled_at is None else from_utc(row.cancelled_at),
    )


async def create_invite(
    db: Database,
    *,
    invite_id: str,
    room_id: str,
    kind: InviteKind,
    patient_name: str | None,
    created_by: str,
    scheduled_session_id: str | None,
    now: float,
    expires_at: float,
) -> InviteRecord:
    """Store a new, unredeemed invite.

    Raises :class:`RoomNotFound` for an unknown room, :class:`ScheduledSessionMismatch`
    if the scheduled session is unknown, of another room or cancelled, and ValueError
    if ``patient_name`` is missing for a personal invite or given for a group invite.
    """
    if (kind == "personal") != (patient_name is not None):
        raise ValueError("a personal invite needs a patient name; a group invite has none")
    async with db.write() as conn:
        room = await conn.execute(select(RoomRow.id).where(RoomRow.id == room_id))
        if room.one_or_none() is None:
            raise RoomNotFound(f"no room {room_id}")
        if scheduled_session_id is not None:
            planned = (
                await conn.execute(
                    select(ScheduledSessionRow.room_id, ScheduledSessionRow.cancelled_at).where(
                        ScheduledSessionRow.id == scheduled_session_id
                    )
                )
            ).one_or_none()
            if planned is None or planned.room_id != room_id or planned.cancelled_at is not None:
                raise ScheduledSessionMismatch(
                    f"scheduled session {scheduled_session_id} is not open for room {room_id}"
                )
        await conn.execute(
            insert(InviteRow).values(
                id=invite_id,
                room_id=room_id,
                scheduled_session_id=scheduled_session_id,
                kind=kind,
                patient_name=patient_name,
                created_by=created_by,
                created_at=to_utc(now),
                expires_at=to_utc(expires_at),
                generation=0,
            )
        )
    return InviteRecord(
        id=invite_id,
        room_id=room_id,
        scheduled_session_id=scheduled_session_id,
        kind=kind,
        patient_name=patient_name,
        created_by=created_by,
        created_at=from_utc(to_utc(now)),
        expires_at=from_utc(to_utc(expires_at)),
        revoked_at=None,
        generation=0,
    )


async def get_invite(db: Database, invite_id: str) -> InviteRecord | None:
    async with db.read() as conn:
        row = (await conn.execute(select(InviteRow).where(InviteRow.id == invite_id))).one_or_none()
    return None if row is None else _invite(row)


async def list_invites(db: Database, room_id: str, now: float) -> list[InviteListing]:
    """The room's invites, newest first, each with its count of passes live at ``now``."""
    live = (
        select(PatientPassRow.invite_id, func.count().label("live"))
        .where(PatientPassRow.revoked_at.is_(None), PatientPassRow.expires_at > to_utc(now))
        .group_by(PatientPassRow.invite_id)
        .subquery()
    )
    query = (
        select(InviteRow, func.coalesce(live.c.live, 0).label("live_passes"))
        .outerjoin(live, live.c.invite_id == InviteRow.id)
        .where(InviteRow.room_id == room_id)
        .order_by(InviteRow.created_at.desc(), InviteRow.id.desc())
    )
    async with db.read() as conn:
        rows = await conn.execute(query)
        return [InviteListing(_invite(row), int(row.live_passes)) for row in rows]


async def revoke_invite(db: Database, invite_id: str, now: float) -> list[str]:
    """Revoke the invite and every pass it issued; the ids of the passes this revoked.

    Idempotent: revoking a revoked invite keeps its first revocation time and returns
    no pass ids. Raises :class:`UnknownInvite` for an unknown invite.
    """
    async with db.write() as conn:
        invite = await _lock_invite(conn, invite_id)
        if invite is None:
            raise UnknownInvite(f"no invite {invite_id}")
        if invite.revoked_at is None:
            await conn.execute(
                update(InviteRow).where(InviteRow.id == invite_id).values(revoked_at=to_utc(now))
            )
        return await _revoke_passes(conn, PatientPassRow.invite_id == invite_id, now)


async def redeem_invite(
    db: Database,
    invite_id: str,
    pass_hash: str,
    now: float,
    *,
    max_group_passes: int = MAX_GROUP_PASSES,
) -> Redeemed:
    """Atomically exchange the invite for a new pass whose id is ``pass_hash``.

    Personal invite: the generation goes up by one, the new pass gets it, and every
    older live pass of the invite is revoked (returned as superseded). Group invite: an
    independent pass of generation 0. Concurrent redemptions are serialised on the
    invite (SQLite: the write lock; PostgreSQL: ``SELECT ... FOR UPDATE``), so N
    concurrent redemptions of a personal invite yield generations 1..N and one valid pass.

    Raises :class:`UnknownInvite`, :class:`RevokedInvite`, :class:`ExpiredInvite`
    (``now`` at or past its expiry) or :class:`ExhaustedInvite`.
    """
    async with db.write() as conn:
        invite = await _lock_invite(conn, invite_id)
        if invite is None:
            raise UnknownInvite(f"no invite {invite_id}")
        if invite.revoked_at is not None:
            raise RevokedInvite(f"invite {invite_id} is revoked")
        if now >= from_utc(invite.expires_at):
            raise ExpiredInvite(f"invite {invite_id} has expired")
        superseded: list[str] = []
        if invite.kind == "personal":
            generation = int(invite.generation) + 1
            await conn.execute(
                update(InviteRow).where(InviteRow.id == invite_id).values(generation=generation)
            )
            superseded = await _revoke_passes(
                conn,
                and_(
                    PatientPassRow.invite_id == invite_id,
                    PatientPassRow.generation < generation,
                ),
                now,
            )
        else:
            issued = await conn.execute(
                select(func.count())
                .select_from(PatientPassRow)
                .where(PatientPassRow.invite_id == invite_id)
            )
            if issued.scalar_one() >= max_group_passes:
                raise ExhaustedInvite(f"invite {invite_id} has issued all its passes")
            generation = 0
        await conn.execute(
            insert(PatientPassRow).values(
                id=pass_hash,
                invite_id=invite_id,
                room_id=invite.room_id,
                generation=generation,
                display_name=None,
                created_at=to_utc(now),
                expires_at=invite.expires_at,
                revoked_at=None,
            )
        )
    record = PassRecord(
        id=pass_hash,
        invite_id=invite_id,
        room_id=invite.room_id,
        generation=generation,
        display_name=None,
        created_at=from_utc(to_utc(now)),
        expires_at=from_utc(invite.expires_at),
        revoked_at=None,
        invite_kind=cast(InviteKind, invite.kind),
        patient_name=invite.patient_name,
    )
    return Redeemed(record, tuple(superseded))


# ----------------------------------------------------------------------------- passes


async def get_pass(db: Database, pass_hash: str) -> PassRecord | None:
    """The pass whose id is ``pass_hash``, seen through its invite (see
    :class:`PassRecord`), or None."""
    async with db.read() as conn:
        row = (await conn.execute(_pass_query().where(PatientPassRow.id == pass_hash))).first()
    return None if row is None else _pass(row)


async def set_pass_display_name(db: Database, pass_hash: str, display_name: str) -> None:
    """Set the name the pass's holder goes by. Raises :class:`PassUnavailable` for an
    unknown pass (revoked or expired passes may still be renamed)."""
    async with db.write() as conn:
        result = await conn.execute(
            update(PatientPassRow)
            .where(PatientPassRow.id == pass_hash)
            .values(display_name=display_name)
        )
        if result.rowcount != 1:
            raise PassUnavailable(f"no pass {pass_hash}")


# ---------------------------------------------------------------------------- consent


async def record_consent(
    db: Database,
    pass_hash: str,
    agreement_version: int,
    recording_consent: bool | None,
    now: float,
    *,
    display_name: str | None = None,
) -> ConsentRecord:
    """Append a consent ledger entry for the pass (and set its display name, if given).

    Raises :class:`PassUnavailable` unless the pass and its invite are valid at ``now``,
    and :class:`UnknownAgreementVersion` for an unknown agreement version.
    """
    async with db.write() as conn:
        row = (await conn.execute(_pass_query().where(PatientPassRow.id == pass_hash))).first()
        if row is None or not _pass(row).valid_at(now):
            raise PassUnavailable(f"pass {pass_hash} is not valid")
        version = await conn.execute(
            select(AgreementVersionRow.version).where(
                AgreementVersionRow.version == agreement_version
            )
        )
        if version.one_or_none() is None:
            raise UnknownAgreementVersion(f"no agreement version {agreement_version}")
        name = row.display_name
        if display_name is not None:
            name = display_name
            await conn.execute(
                update(PatientPassRow)
                .where(PatientPassRow.id == pass_hash)
                .values(display_name=display_name)
            )
        result = await conn.execute(
            insert(ConsentRow)
            .values(
                pass_id=pass_hash,
                room_id=row.room_id,
                agreement_version=agreement_version,
                recording_consent=recording_consent,
                accepted_at=to_utc(now),
            )
            .returning(ConsentRow.id)
        )
        consent_id = int(result.scalar_one())
    return ConsentRecord(
        id=consent_id,
        pass_id=pass_hash,
        room_id=row.room_id,
        agreement_version=agreement_version,
        recording_consent=recording_consent,
        accepted_at=from_utc(to_utc(now)),
        display_name=name,
    )


async def consents_of_pass(db: Database, pass_hash: str) -> list[ConsentRecord]:
    """The pass's consent ledger entries, oldest first."""
    async with db.read() as conn:
        rows = await conn.execute(_consent_query().where(ConsentRow.pass_id == pass_hash))
        return [_consent(row) for row in rows]


async def list_consents(db: Database, room_id: str) -> list[ConsentRecord]:
    """Every consent ledger entry of the room, oldest first."""
    async with db.read() as conn:
        rows = await conn.execute(_consent_query().where(ConsentRow.room_id == room_id))
        return [_consent(row) for row in rows]


# ---------------------------------------------------------------------------- helpers


async def _lock_invite(conn: AsyncConnection, invite_id: str) -> Any:
    """The invite's row, locked until the transaction ends (None if absent). SQLite
    ignores FOR UPDATE: its write transactions are already serialised."""
    return (
        await conn.execute(select(InviteRow).where(InviteRow.id == invite_id).with_for_update())
    ).one_or_none()


async def revoke_pass(db: Database, pass_id: str, now: float) -> bool:
    """Revoke one pass (a group link's patient removed); False if it was not live."""
    async with db.write() as conn:
        return bool(await _revoke_passes(conn, PatientPassRow.id == pass_id, now))


async def _revoke_passes(conn: AsyncConnection, condition: Any, now: float) -> list[str]:
    """Revoke the live passes matching ``condition``; their ids, sorted."""
    live = and_(condition, PatientPassRow.revoked_at.is_(None))
    ids = sorted((await conn.execute(select(PatientPassRow.id).where(live))).scalars())
    if ids:
        await conn.execute(
            update(PatientPassRow).where(PatientPassRow.id.in_(ids)).values(revoked_at=to_utc(now))
        )
    return ids


def _pass_query() -> Any:
    return select(
        PatientPassRow,
        InviteRow.kind.label("invite_kind"),
        InviteRow.patient_name,
        InviteRow.revoked_at.label("invite_revoked_at"),
        InviteRow.expires_at.label("invite_expires_at"),
    ).join(InviteRow, InviteRow.id == PatientPassRow.invite_id)


def _consent_query() -> Any:
    return (
        select(ConsentRow, PatientPassRow.display_name)
        .join(PatientPassRow, PatientPassRow.id == ConsentRow.pass_id)
        .order_by(ConsentRow.accepted_at, ConsentRow.id)
    )


def _invite(row: Any) -> InviteRecord:
    return InviteRecord(
        id=row.id,
        room_id=row.room_id,
        scheduled_session_id=row.scheduled_session_id,
        kind=cast(InviteKind, row.kind),
        patient_name=row.patient_name,
        created_by=row.created_by,
        created_at=from_utc(row.created_at),
        expires_at=from_utc(row.expires_at),
        revoked_at=None if row.revoked_at is None else from_utc(row.revoked_at),
        generation=int(row.generation),
    )


def _pass(row: Any) -> PassRecord:
    revoked = row.revoked_at if row.revoked_at is not None else row.invite_revoked_at
    return PassRecord(
        id=row.id,
        invite_id=row.invite_id,
        room_id=row.room_id,
        generation=int(row.generation),
        display_name=row.display_name,
        created_at=from_utc(row.created_at),
        expires_at=min(from_utc(row.expires_at), from_utc(row.invite_expires_at)),
        revoked_at=None if revoked is None else from_utc(revoked),
        invite_kind=cast(InviteKind, row.invite_kind),
        patient_name=row.patient_name,
    )


def _consent(row: Any) -> ConsentRecord:
    return ConsentRecord(
        id=int(row.id),
        pass_id=row.pass_id,
        room_id=row.room_id,
        agreement_version=int(row.agreement_version),
        recording_consent=row.recording_consent,
        accepted_at=from_utc(row.accepted_at),
        display_name=row.display_name,
    )
