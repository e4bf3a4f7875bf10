"""Who may enter which room, as whom: from a clinician's sign-in or a patient's pass to
the :class:`Entrant` the room service seats.

Identity never comes from a message field: a socket's principal is resolved from its
cookies when it connects, and each entry is checked against the room.
"""

from __future__ import annotations

from dataclasses import dataclass

from telecircle.domain.access import CLINICIAN_ROLES, Role
from telecircle.domain.errors import NotAllowed
from telecircle.domain.ids import RoomCode, RoomId
from telecircle.domain.model import SeatRole
from telecircle.services.accounts import AccountService
from telecircle.services.checkins import CheckIn, CheckIns
from telecircle.services.invites import BeforeListeners, InviteService
from telecircle.services.rooms import Entrant, NoSuchRoom
from telecircle.storage import org_store, stores
from telecircle.storage.database import Database
from telecircle.storage.invites_store import PassRecord

# Cookie names (not secrets): a clinician's sign-in and a patient's redeemed invite.
SESSION_COOKIE = "tc_session"
PASS_COOKIE = "tc_pass"  # noqa: S105


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is behind a connection. ``key`` is the seat key (see Entrant)."""

    role: Role
    key: str
    display_name: str | None
    user_id: str | None = None
    room_id: RoomId | None = None  # a patient's pass is for one room
    credential: str = ""  # a patient's pass id (another device has another)


def user_key(user_id: str) -> str:
    return "user:" + user_id


def patient_key(patient_pass: PassRecord) -> str:
    """A personal invite is one seat whichever device opens it; a group link's passes
    are separate people."""
    if patient_pass.invite_kind == "personal":
        return "invite:" + patient_pass.invite_id
    return "pass:" + patient_pass.id


class EntryPolicy:
    def __init__(
        self,
        db: Database,
        accounts: AccountService,
        invites: InviteService,
        check_ins: CheckIns,
    ) -> None:
        self._db = db
        self._accounts = accounts
        self._invites = invites
        self._check_ins = check_ins

    async def resolve(
        self, session_secret: str | None, pass_secret: str | None
    ) -> Principal | None:
        """The principal of a connection with these cookie values, or None."""
        if session_secret:
            login = await self._accounts.authenticate(session_secret)
            if login is not None and not login.second_factor_pending:
                user = login.user
                return Principal(
                    Role(user.role), user_key(user.id), user.display_name, user_id=user.id
                )
        if pass_secret:
            patient_pass = await self._invites.authenticate_pass(pass_secret)
            if patient_pass is not None:
                return Principal(
                    Role.PATIENT,
                    patient_key(patient_pass),
                    patient_pass.display_name,
                    room_id=RoomId(patient_pass.room_id),
                    credential=patient_pass.id,
                )
        return None

    async def entrant(
        self, principal: Principal, code: RoomCode, *, seat_held: bool = False
    ) -> Entrant:
        """How ``principal`` enters the room ``code``; NotAllowed when they may not.

        A patient checks in on the page before the session; ``seat_held`` (their seat in
        the live session is still held for them, as after a server restart, which
        forgets check-ins) lets them back into that seat without doing it again."""
        room = await stores.get_room_by_code(self._db, code)
        if room is None:
            raise NoSuchRoom("There is no room with this link. Please check the link.")
        if principal.role in CLINICIAN_ROLES and principal.user_id is not None:
            role = await org_store.room_role_of(self._db, room.id, principal.user_id)
            if role is None:
                raise NotAllowed("You are not one of this group's clinicians.")
            return Entrant(principal.key, principal.display_name or "Clinician", SeatRole.CLINICIAN)
        if principal.role is Role.PATIENT and principal.room_id == room.id:
            checked_in = self._check_ins.get(principal.key) is not None
            if principal.display_name is None or not (checked_in or seat_held):
                raise NotAllowed("Please complete the page before the session first.")
            return Entrant(
                principal.key,
                principal.display_name,
                SeatRole.PATIENT,
                principal.credential,
                returning_only=not checked_in,
            )
        raise NotAllowed("You cannot join this group with this link.")

    async def withdraw(
        self, key: str, actor: str | None, *, before_listeners: BeforeListeners | None = None
    ) -> None:
        """Withdraw the link behind a seat key: a personal invite, or one pass of a
        group link (the rest of the group keeps theirs). ``before_listeners`` runs once
        the withdrawal is committed (or when the key holds no link), before the
        withdrawal's listeners end the seats the link holds: a removal announced there
        ends the seat with its own reason, and a reload in between already finds the
        link withdrawn."""
        kind, _, ident = key.partition(":")
        if kind == "invite":
            await self._invites.revoke(actor or "", ident, None, before_listeners=before_listeners)
        elif kind == "pass":
            await self._invites.revoke_pass(actor, ident, before_listeners=before_listeners)
        elif before_listeners is not None:
            await before_listeners()
        self._check_ins.forget(key)

    def check_in(self, key: str) -> CheckIn | None:
        return self._check_ins.get(key)

    def forget_check_in(self, key: str) -> None:
        """The seat ended: its check-in (location, emergency contact) goes at once."""
        self._check_ins.forget(key)
