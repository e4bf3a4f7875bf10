"""The organisation: its settings, the confidentiality agreement, rooms, who runs them,
and the schedule. Validates what administrators and therapists ask for, applies the
room-scope rules (a clinician works only in rooms they are assigned to), and writes
every change to the audit log.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from telecircle.config import Settings
from telecircle.domain.ids import RoomId, new_room_code
from telecircle.errors import TelecircleError
from telecircle.services.clock import Clock
from telecircle.services.ports import AuditSink
from telecircle.storage import org_store, stores
from telecircle.storage.accounts_store import UserRecord
from telecircle.storage.database import Database
from telecircle.storage.org_store import AgreementVersion, OrgSettings, ScheduledSession
from telecircle.storage.stores import RoomRecord

log = logging.getLogger(__name__)

ROOM_NAME_MAX = 120
AGREEMENT_MAX_CHARS = 20_000
RETENTION_DAYS_MAX = 3650
MIN_ROOM_LIMIT = 2
DEFAULT_AGREEMENT = (
    "What is shared in this group stays in this group. I will not record, photograph or "
    "share anything I see or hear, and I will not tell anyone outside the group who "
    "took part. I will join from a private place where nobody else can see or hear the "
    "session."
)


class Forbidden(TelecircleError):
    code = "forbidden"
    http_status = 403


class InvalidInput(TelecircleError):
    code = "invalid_input"
    http_status = 422


class NotFound(TelecircleError):
    code = "not_found"
    http_status = 404


@dataclass(frozen=True, slots=True)
class RoomConsent:
    """What a room asks of its patients, after applying its overrides."""

    agreement: AgreementVersion
    recording_consent_required: bool
    notes_retention_days: int


def clean_name(raw: str, what: str, max_chars: int) -> str:
    """Collapse whitespace; refuse empty, too long or control characters."""
    name = " ".join(raw.split())
    if not name:
        raise InvalidInput(f"Please enter the {what}.")
    if len(name) > max_chars:
        raise InvalidInput(f"The {what} is at most {max_chars} characters.")
    if not name.isprintable():
        raise InvalidInput(f"The {what} may not contain control characters.")
    return name


class Organisation:
    def __init__(self, db: Database, clock: Clock, audit: AuditSink, settings: Settings) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit
        self._settings = settings

    # ---- settings ---------------------------------------------------------------------

    async def settings(self) -> OrgSettings:
        return await org_store.get_org_settings(
            self._db, default_max_participants=self._settings.default_room_limit
        )

    async def notes_retention_days(self) -> int:
        """How long notes are kept (days after their session ends), unless a room says."""
        return (await self.settings()).notes_retention_days

    async def update_settings(
        self, actor: str, new: OrgSettings, address: str | None
    ) -> OrgSettings:
        ceiling = self._settings.room_limit_ceiling
        if not MIN_ROOM_LIMIT <= new.max_participants <= ceiling:
            raise InvalidInput(
                f"The maximum per room must be between {MIN_ROOM_LIMIT} and the server's "
                f"ceiling of {ceiling}."
            )
        if not 1 <= new.notes_retention_days <= RETENTION_DAYS_MAX:
            raise InvalidInput(f"Keep notes for 1 to {RETENTION_DAYS_MAX} days.")
        old = await self.settings()
        await org_store.save_org_settings(self._db, new, self._clock.now())
        changed = {
            name: getattr(new, name)
            for name in (
                "max_participants",
                "require_totp",
                "recording_consent_required",
                "notes_retention_days",
            )
            if getattr(new, name) != getattr(old, name)
        }
        await self._audit.record("settings_changed", actor=actor, address=address, details=changed)
        return new

    async def agreement(self) -> AgreementVersion:
        """The current agreement; version 1 is a default text until an administrator
        writes their own."""
        current = await org_store.current_agreement(self._db)
        if current is None:
            current = await org_store.add_agreement_version(
                self._db, DEFAULT_AGREEMENT, None, self._clock.now()
            )
        return current

    async def update_agreement(
        self, actor: str, text: str, address: str | None
    ) -> AgreementVersion:
        """Store ``text`` as a new version (an unchanged text adds none)."""
        text = text.replace("\r\n", "\n").strip()
        if not text:
            raise InvalidInput("The agreement may not be empty.")
        if len(text) > AGREEMENT_MAX_CHARS:
            raise InvalidInput(f"The agreement is at most {AGREEMENT_MAX_CHARS} characters.")
        current = await self.agreement()
        if current.text == text:
            return current
        added = await org_store.add_agreement_version(self._db, text, actor, self._clock.now())
        await self._audit.record(
            "agreement_changed", actor=actor, address=address, details={"version": added.version}
        )
        return added

    async def room_consent(self, room: RoomRecord) -> RoomConsent:
        org = await self.settings()
        return RoomConsent(
            agreement=await self.agreement(),
            recording_consent_required=(
                org.recording_consent_required
                if room.recording_consent_required is None
                else room.recording_consent_required
            ),
            notes_retention_days=(
                org.notes_retention_days
                if room.notes_retention_days is None
                else room.notes_retention_days
            ),
        )

    async def effective_limit(self, room: RoomRecord) -> int:
        """The room's limit within the organisation's maximum and the server's ceiling."""
        org = await self.settings()
        return min(room.participant_limit, org.max_participants, self._settings.room_limit_ceiling)

    # ---- rooms ------------------------------------------------------------------------

    async def create_room(
        self, owner: UserRecord, name: str, limit: int, address: str | None
    ) -> RoomRecord:
        name = clean_name(name, "room name", ROOM_NAME_MAX)
        await self._check_limit(limit)
        room = await stores.create_room(self._db, name, limit, new_room_code())
        await org_store.assign_clinician(self._db, room.id, owner.id, "owner")
        await self._audit.record("room_created", actor=owner.id, target=room.id, address=address)
        return room

    async def update_room(
        self,
        actor: UserRecord,
        room_id: RoomId,
        *,
        name: str,
        limit: int,
        recording_consent_required: bool | None,
        notes_retention_days: int | None,
        address: str | None,
        patients_may_unmute: bool = True,
        notes_shared: bool = False,
    ) -> RoomRecord:
        """Change a room (its owner, or an administrator). A lower limit applies to the
        next admit: nobody already in the session is sent out."""
        if actor.role != "administrator":
            await self.require_room(actor, room_id, owner=True)
        name = clean_name(name, "room name", ROOM_NAME_MAX)
        await self._check_limit(limit)
        if notes_retention_days is not None and not (
            1 <= notes_retention_days <= RETENTION_DAYS_MAX
        ):
            raise InvalidInput(f"Keep notes for 1 to {RETENTION_DAYS_MAX} days.")
        room = await stores.update_room(
            self._db,
            room_id,
            name=name,
            participant_limit=limit,
            recording_consent_required=recording_consent_required,
            notes_retention_days=notes_retention_days,
            patients_may_unmute=patients_may_unmute,
            notes_shared=notes_shared,
        )
        await self._audit.record(
            "room_changed",
            actor=actor.id,
            target=room_id,
            address=address,
            details={"participant_limit": limit, "notes_shared": notes_shared},
        )
        return room

    async def _check_limit(self, limit: int) -> None:
        org = await self.settings()
        if not MIN_ROOM_LIMIT <= limit <= org.max_participants:
            raise InvalidInput(
                f"A room holds {MIN_ROOM_LIMIT} to {org.max_participants} people "
                "(the organisation's maximum)."
            )

    async def require_room(
        self, user: UserRecord, room_id: RoomId, *, owner: bool = False
    ) -> tuple[RoomRecord, str]:
        """The room and the user's role in it; Forbidden/NotFound otherwise. Rooms of
        other clinicians look like rooms that do not exist."""
        role = await org_store.room_role_of(self._db, room_id, user.id)
        room = await stores.get_room(self._db, room_id) if role is not None else None
        if room is None or role is None:
            raise NotFound("There is no such room, or it is not one of yours.")
        if owner and role != "owner":
            raise Forbidden("Only the room's therapist can change this.")
        return room, role

    async def all_rooms(self) -> list[RoomRecord]:
        return await stores.list_rooms(self._db)

    async def rooms_for(self, user: UserRecord) -> list[tuple[RoomRecord, str]]:
        return await org_store.rooms_of_clinician(self._db, user.id)

    async def assign_co_facilitator(
        self, actor: UserRecord, room_id: RoomId, co_facilitator: UserRecord, address: str | None
    ) -> None:
        await self.require_room(actor, room_id, owner=True)
        if co_facilitator.role not in ("co_facilitator", "therapist") or co_facilitator.disabled:
            raise InvalidInput("Only active clinician accounts can co-facilitate.")
        if co_facilitator.id == actor.id:
            raise InvalidInput("You already run this room.")
        await org_store.assign_clinician(self._db, room_id, co_facilitator.id, "co_facilitator")
        await self._audit.record(
            "room_changed",
            actor=actor.id,
            target=room_id,
            address=address,
            details={"co_facilitator_added": co_facilitator.id},
        )

    # ---- schedule ---------------------------------------------------------------------

    async def schedule(
        self,
        actor: UserRecord,
        room_id: RoomId,
        starts_at: float,
        planned_minutes: int,
        address: str | None,
    ) -> ScheduledSession:
        await self.require_room(actor, room_id, owner=True)
        if not 60 <= planned_minutes <= 180:
            raise InvalidInput("A session lasts 60 to 180 minutes.")
        if starts_at + planned_minutes * 60 < self._clock.now():
            raise InvalidInput("That session would already be over.")
        scheduled = await org_store.schedule_session(
            self._db,
            room_id,
            starts_at=starts_at,
            planned_minutes=planned_minutes,
            created_by=actor.id,
            now=self._clock.now(),
        )
        await self._audit.record(
            "session_scheduled",
            actor=actor.id,
            target=scheduled.id,
            address=address,
            details={"room": room_id},
        )
        return scheduled

    async def upcoming_for(
        self, user: UserRecord
    ) -> list[tuple[ScheduledSession, RoomRecord, str]]:
        """Sessions of the user's rooms that have not ended, soonest first."""
        rooms = {room.id: (room, role) for room, role in await self.rooms_for(user)}
        sessions = await org_store.scheduled_sessions(
            self._db, list(rooms), ending_after=self._clock.now()
        )
        return [(s, *rooms[s.room_id]) for s in sessions]

    async def scheduled_session(self, session_id: str) -> ScheduledSession | None:
        return await org_store.get_scheduled_session(self._db, session_id)
