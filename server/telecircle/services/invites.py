"""Invite links for patients: making, revoking and redeeming them, patient passes, and
the consent ledger.

A link carries a signed invite id (:func:`~telecircle.crypto.tokens.sign_token`,
purpose ``"invite"``). Redeeming it swaps it for a pass: the web layer puts the pass
secret in an HttpOnly, SameSite cookie, and only the secret's hash is stored. A personal
link has one seat: redeeming it again moves the seat to the newest device and revokes
the older pass (returned as superseded, so the live-room layer can tell that device
why). Room-scope authorization (may this clinician manage this room?) is the caller's.

Every change and every refused redemption is audited with ids and codes only.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from telecircle.config import Settings
from telecircle.crypto.tokens import (
    MAX_TOKEN_LENGTH,
    new_invite_id,
    new_secret,
    secret_hash,
    sign_token,
    verify_token,
)
from telecircle.errors import TelecircleError
from telecircle.services.clock import Clock
from telecircle.services.ports import AuditSink
from telecircle.storage import invites_store as store
from telecircle.storage.database import Database
from telecircle.storage.errors import RoomNotFound
from telecircle.storage.invites_store import (
    MAX_GROUP_PASSES,
    ConsentRecord,
    InviteKind,
    InviteListing,
    InviteRecord,
    PassRecord,
)

log = logging.getLogger(__name__)

INVITE_PURPOSE = "invite"
MAX_NAME_LENGTH = 200
# Longest a revocation listener may take before it is abandoned (and logged).
LISTENER_TIMEOUT = 5.0

RevocationListener = Callable[[Sequence[str]], Awaitable[None]]
# A step run once a revocation is committed, before its listeners hear of it.
BeforeListeners = Callable[[], Awaitable[None]]

__all__ = [
    "MAX_GROUP_PASSES",
    "AuditSink",
    "BeforeListeners",
    "ConsentRecord",
    "InvalidName",
    "InviteExhausted",
    "InviteExpired",
    "InviteInvalid",
    "InviteListing",
    "InviteNotFound",
    "InviteRecord",
    "InviteRevoked",
    "InviteRoomNotFound",
    "InviteService",
    "PassInvalid",
    "PassRecord",
    "Redemption",
    "ScheduledSessionClosed",
    "ScheduledSessionNotFound",
    "UnknownAgreement",
    "normalise_name",
]


# ----------------------------------------------------------------------------- errors


class InviteInvalid(TelecircleError):
    """The link is malformed, altered, or names no invite (one message for all)."""

    code = "invite_invalid"
    http_status = 404

    def __init__(self) -> None:
        super().__init__(
            "This link is not valid. Please check you copied the whole link, "
            "or ask your therapist for a new one."
        )


class InviteExpired(TelecircleError):
    code = "invite_expired"
    http_status = 410

    def __init__(self) -> None:
        super().__init__("This link has expired. Please ask your therapist for a new one.")


class InviteRevoked(TelecircleError):
    code = "invite_revoked"
    http_status = 410

    def __init__(self) -> None:
        super().__init__("This link has been withdrawn. Please contact your therapist.")


class InviteExhausted(TelecircleError):
    """A group link has issued all the passes it may."""

    code = "invite_exhausted"
    http_status = 409

    def __init__(self) -> None:
        super().__init__(
            "This group link has been used as many times as it allows. "
            "Please ask your therapist for a new one."
        )


class InviteNotFound(TelecircleError):
    """A clinician named an invite that does not exist."""

    code = "invite_not_found"
    http_status = 404

    def __init__(self) -> None:
        super().__init__("That invite could not be found.")


class InviteRoomNotFound(TelecircleError):
    code = "room_not_found"
    http_status = 404

    def __init__(self) -> None:
        super().__init__("That room could not be found.")


class ScheduledSessionNotFound(TelecircleError):
    """The scheduled session does not exist or belongs to another room."""

    code = "scheduled_session_not_found"
    http_status = 404

    def __init__(self) -> None:
        super().__init__("That session could not be found in this room.")


class ScheduledSessionClosed(TelecircleError):
    """The scheduled session is cancelled, or over (its end plus the grace has passed)."""

    code = "scheduled_session_closed"
    http_status = 409


class InvalidName(TelecircleError):
    code = "invalid_name"
    http_status = 422

    def __init__(self) -> None:
        super().__init__(f"Please enter a name of 1 to {MAX_NAME_LENGTH} characters.")


class PassInvalid(TelecircleError):
    """The patient's pass is unknown, revoked or expired (e.g. the seat moved)."""

    code = "pass_invalid"
    http_status = 403

    def __init__(self) -> None:
        super().__init__(
            "Your invitation is no longer valid. Please open your link again, "
            "or ask your therapist for a new one."
        )


class UnknownAgreement(TelecircleError):
    code = "agreement_unknown"
    http_status = 409

    def __init__(self) -> None:
        super().__init__("The agreement has changed. Please reload the page and read it again.")


_REFUSALS: Mapping[type[store.InviteRefusal], Callable[[], TelecircleError]] = {
    store.UnknownInvite: InviteInvalid,
    store.RevokedInvite: InviteRevoked,
    store.ExpiredInvite: InviteExpired,
    store.ExhaustedInvite: InviteExhausted,
}


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Redemption:
    """A redeemed link: the new pass, the secret for the patient's cookie (never
    logged or shown in ``repr``), and the passes this redemption superseded (a personal
    link's previous seat; empty for a group link)."""

    pass_record: PassRecord
    secret: str = field(repr=False)
    superseded_pass_ids: tuple[str, ...]


def normalise_name(name: str) -> str:
    """``name`` with runs of whitespace collapsed to one space and the ends trimmed.

    Raises :class:`InvalidName` unless the result has 1 to 200 printable characters.
    """
    collapsed = " ".join(name.split())
    if not 1 <= len(collapsed) <= MAX_NAME_LENGTH or not collapsed.isprintable():
        raise InvalidName()
    return collapsed


def invite_expiry(
    now: float,
    plan: store.SessionPlan | None,
    *,
    grace: float,
    default_ttl: float,
) -> float:
    """When an invite made at ``now`` expires: its session's planned end plus ``grace``,
    or ``now + default_ttl`` without a session.

    Raises :class:`ScheduledSessionClosed` for a cancelled session or one whose end plus
    grace is not after ``now``.
    """
    if plan is None:
        return now + default_ttl
    if plan.cancelled_at is not None:
        raise ScheduledSessionClosed("That session has been cancelled.")
    expires = plan.planned_end + grace
    if expires <= now:
        raise ScheduledSessionClosed("That session is over.")
    return expires


# ---------------------------------------------------------------------------- service


class InviteService:
    """Makes, revokes and redeems invite links; authenticates passes; keeps consent.

    ``signing_key`` signs invite links: changing it invalidates every link made with
    the old key (passes already issued are unaffected). Revocation listeners are awaited
    one after another, each for at most :data:`LISTENER_TIMEOUT` seconds, after the
    revocation is committed; a listener's failure is logged and does not undo it.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        audit: AuditSink,
        signing_key: bytes,
        settings: Settings,
    ) -> None:
        if not signing_key:
            raise ValueError("signing key must not be empty")
        self._db = db
        self._clock = clock
        self._audit = audit
        self._key = signing_key
        self._settings = settings
        self._listeners: list[RevocationListener] = []

    # -- clinicians --------------------------------------------------------------------

    async def create_personal(
        self,
        actor_id: str,
        room_id: str,
        patient_name: str,
        scheduled_session_id: str | None,
        address: str | None,
    ) -> tuple[InviteRecord, str]:
        """A one-seat link for one named patient, and its token. Raises
        :class:`InvalidName`, :class:`InviteRoomNotFound`, :class:`ScheduledSessionNotFound`
        or :class:`ScheduledSessionClosed`."""
        name = normalise_name(patient_name)
        return await self._create(
            actor_id, room_id, "personal", name, scheduled_session_id, address
        )

    async def create_group(
        self,
        actor_id: str,
        room_id: str,
        scheduled_session_id: str | None,
        address: str | None,
    ) -> tuple[InviteRecord, str]:
        """A link anyone holding it may redeem, up to :data:`MAX_GROUP_PASSES` times,
        and its token. Raises as :meth:`create_personal` (except for the name)."""
        return await self._create(actor_id, room_id, "group", None, scheduled_session_id, address)

    def token_for(self, invite_id: str) -> str:
        """The link token of ``invite_id`` (the same every time it is asked for)."""
        return sign_token(self._key, INVITE_PURPOSE, invite_id)

    async def get_invite(self, invite_id: str) -> InviteRecord | None:
        return await store.get_invite(self._db, invite_id)

    async def list_invites(self, room_id: str) -> list[InviteListing]:
        """The room's invites, newest first, with their live pass counts."""
        return await store.list_invites(self._db, room_id, self._now())

    async def revoke(
        self,
        actor_id: str,
        invite_id: str,
        address: str | None,
        *,
        before_listeners: BeforeListeners | None = None,
    ) -> list[str]:
        """Withdraw the invite and every pass it issued; the ids of the passes revoked
        now (empty when it was already revoked). ``before_listeners`` (if given) then
        runs, whatever was revoked, and then listeners hear of those passes.
        Raises :class:`InviteNotFound` (``before_listeners`` not run)."""
        try:
            revoked = await store.revoke_invite(self._db, invite_id, self._now())
        except store.UnknownInvite:
            raise InviteNotFound() from None
        await self._audit.record(
            "invite_revoked",
            actor=actor_id,
            target=invite_id,
            address=address,
            details={"passes_revoked": len(revoked)},
        )
        if before_listeners is not None:
            await before_listeners()
        if revoked:
            await self._notify_revoked(revoked)
        return revoked

    async def revoke_pass(
        self,
        actor_id: str | None,
        pass_id: str,
        *,
        before_listeners: BeforeListeners | None = None,
    ) -> None:
        """Withdraw one pass (a patient of a group link removed from the session);
        ``before_listeners`` as for :meth:`revoke`."""
        revoked = await store.revoke_pass(self._db, pass_id, self._now())
        if revoked:
            await self._audit.record(
                "invite_revoked", actor=actor_id, target=None, details={"pass_id": pass_id}
            )
        if before_listeners is not None:
            await before_listeners()
        if revoked:
            await self._notify_revoked([pass_id])

    def add_revocation_listener(self, listener: RevocationListener) -> None:
        """Call ``await listener(pass_ids)`` after passes are revoked with their invite."""
        self._listeners.append(listener)

    def remove_revocation_listener(self, listener: RevocationListener) -> None:
        """Stop calling ``listener``; does nothing if it was not added."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    # -- patients ----------------------------------------------------------------------

    async def redeem(self, token: str, address: str | None) -> Redemption:
        """Exchange a link token for a new pass and its cookie secret.

        Raises :class:`InviteInvalid` (malformed, altered or unknown),
        :class:`InviteExpired`, :class:`InviteRevoked` or :class:`InviteExhausted`;
        each refusal is audited as ``invite_refused`` with its code.
        """
        invite_id = verify_token(self._key, INVITE_PURPOSE, token)
        if invite_id is None:
            await self._refused(InviteInvalid(), None, address)
        secret = new_secret()
        try:
            redeemed = await store.redeem_invite(
                self._db,
                invite_id,
                secret_hash(secret),
                self._now(),
                max_group_passes=self._settings.group_invite_passes,
            )
        except store.InviteRefusal as refusal:
            await self._refused(_REFUSALS[type(refusal)](), invite_id, address)
        record = redeemed.pass_record
        await self._audit.record(
            "invite_redeemed",
            actor=None,
            target=invite_id,
            address=address,
            details={
                "pass_id": record.id,
                "generation": record.generation,
                "superseded": len(redeemed.superseded_pass_ids),
            },
        )
        return Redemption(record, secret, redeemed.superseded_pass_ids)

    async def check(self, token: str) -> InviteRecord:
        """The invite a link names, if it could be redeemed now; nothing is changed.

        Raises InviteInvalid, InviteExpired or InviteRevoked like :meth:`redeem`.
        """
        invite_id = verify_token(self._key, INVITE_PURPOSE, token)
        invite = None if invite_id is None else await store.get_invite(self._db, invite_id)
        if invite is None:
            raise InviteInvalid()
        if invite.revoked_at is not None:
            raise InviteRevoked()
        if self._now() >= invite.expires_at:
            raise InviteExpired()
        return invite

    async def authenticate_pass(self, secret: str) -> PassRecord | None:
        """The pass the cookie ``secret`` stands for, or None when it is unknown,
        revoked (also: superseded, or its invite revoked) or expired."""
        if not secret or len(secret) > MAX_TOKEN_LENGTH:
            return None
        record = await store.get_pass(self._db, secret_hash(secret))
        if record is None or not record.valid_at(self._now()):
            return None
        return record

    async def record_consent(
        self,
        pass_id: str,
        display_name: str,
        agreement_version: int,
        recording_consent: bool | None,
        address: str | None,
    ) -> ConsentRecord:
        """Set the pass's display name and append a consent ledger entry: the patient
        accepted ``agreement_version`` (and answered ``recording_consent``, None when
        the room did not ask — the caller decides whether it had to).

        Raises :class:`InvalidName`, :class:`PassInvalid` (unknown, revoked or expired
        pass) or :class:`UnknownAgreement`.
        """
        name = normalise_name(display_name)
        try:
            consent = await store.record_consent(
                self._db,
                pass_id,
                agreement_version,
                recording_consent,
                self._now(),
                display_name=name,
            )
        except store.PassUnavailable:
            raise PassInvalid() from None
        except store.UnknownAgreementVersion:
            raise UnknownAgreement() from None
        await self._audit.record(
            "consent_recorded",
            actor=pass_id,
            target=consent.room_id,
            address=address,
            details={
                "agreement_version": agreement_version,
                "recording_consent": recording_consent,
            },
        )
        return consent

    # -- internals ---------------------------------------------------------------------

    async def _create(
        self,
        actor_id: str,
        room_id: str,
        kind: InviteKind,
        patient_name: str | None,
        scheduled_session_id: str | None,
        address: str | None,
    ) -> tuple[InviteRecord, str]:
        now = self._now()
        plan = None
        if scheduled_session_id is not None:
            plan = await store.session_plan(self._db, scheduled_session_id)
            if plan is None or plan.room_id != room_id:
                raise ScheduledSessionNotFound()
        expires_at = invite_expiry(
            now,
            plan,
            grace=self._settings.invite_grace,
            default_ttl=self._settings.invite_default_ttl,
        )
        try:
            invite = await store.create_invite(
                self._db,
                invite_id=new_invite_id(),
                room_id=room_id,
                kind=kind,
                patient_name=patient_name,
                created_by=actor_id,
                scheduled_session_id=scheduled_session_id,
                now=now,
                expires_at=expires_at,
            )
        except RoomNotFound:
            raise InviteRoomNotFound() from None
        except store.ScheduledSessionMismatch:
            # Cancelled (or removed) between the check above and the insert.
            raise ScheduledSessionClosed("That session has been cancelled.") from None
        await self._audit.record(
            "invite_created",
            actor=actor_id,
            target=invite.id,
            address=address,
            details={
                "kind": kind,
                "room_id": room_id,
                "scheduled_session_id": scheduled_session_id,
                "expires_at": invite.expires_at,
            },
        )
        return invite, self.token_for(invite.id)

    async def _refused(
        self, error: TelecircleError, invite_id: str | None, address: str | None
    ) -> NoReturn:
        await self._audit.record(
            "invite_refused",
            actor=None,
            target=invite_id,
            address=address,
            details={"reason": error.code},
        )
        raise error

    async def _notify_revoked(self, pass_ids: Sequence[str]) -> None:
        ids = tuple(pass_ids)
        for listener in tuple(self._listeners):
            try:
                async with asyncio.timeout(LISTENER_TIMEOUT):
                    await listener(ids)
            except Exception as exc:
                # The revocation is committed and stands; one failing listener must not
                # keep the others from hearing of it. Only the error's type is logged:
                # its message could hold anything.
                log.error(
                    "revocation listener failed",
                    extra={"error": type(exc).__name__, "passes": len(ids)},
                )

    def _now(self) -> float:
        now = self._clock.now()
        if not math.isfinite(now):
            raise ValueError("clock returned a non-finite time")
        return now
