"""The audit log: who did what, when and from where, append-only and hash-chained.

Entries say who acted (``actor``: a user id, or None for an anonymous visitor), what
they did (an :class:`AuditAction`), to what (``target``: an id), from which address,
and ``details``. Details carry ids, codes, counts and flags only: never names, note
text or other health information, since the log is kept for years and shown to
administrators.

Every entry is chained to the one before it and the chain head is authenticated with a
key kept outside the database (see :mod:`telecircle.domain.audit_chain`);
:meth:`AuditLog.verify` and ``telecircle audit verify`` find changed, removed and
reordered entries.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping

from telecircle.domain.audit_chain import (
    AuditEntry,
    ChainChecker,
    ChainProblem,
    DetailValue,
    canonical_details,
)
from telecircle.services.clock import Clock
from telecircle.storage import audit_store
from telecircle.storage.audit_store import AuditPage
from telecircle.storage.database import Database

MAX_ID_LENGTH = 128  # actor and target columns
MAX_ADDRESS_LENGTH = 64
MAX_DETAILS_BYTES = 4096


class AuditAction(enum.StrEnum):
    """Everything the audit log records."""

    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    SIGN_OUT_EVERYWHERE = "sign_out_everywhere"
    SETUP_LINK_CREATED = "setup_link_created"
    SETUP_COMPLETED = "setup_completed"
    ACCOUNT_CREATED = "account_created"
    ACCOUNT_DISABLED = "account_disabled"
    ACCOUNT_ENABLED = "account_enabled"
    PASSWORD_LINK_CREATED = "password_link_created"  # noqa: S105 (a name, not a secret)
    PASSWORD_SET = "password_set"  # noqa: S105
    TOTP_ENABLED = "totp_enabled"
    SETTINGS_CHANGED = "settings_changed"
    AGREEMENT_CHANGED = "agreement_changed"
    ROOM_CREATED = "room_created"
    ROOM_CHANGED = "room_changed"
    SESSION_SCHEDULED = "session_scheduled"
    INVITE_CREATED = "invite_created"
    INVITE_REVOKED = "invite_revoked"
    INVITE_REDEEMED = "invite_redeemed"
    INVITE_REFUSED = "invite_refused"
    CONSENT_RECORDED = "consent_recorded"
    ADMITTED = "admitted"
    DENIED = "denied"
    RATE_LIMITED = "rate_limited"
    # Facilitator controls in a session.
    FORCE_MEDIA = "force_media"
    MUTE_ALL = "mute_all"
    MOVE_TO_LOBBY = "move_to_lobby"
    LOWER_HAND = "lower_hand"
    CLEAR_MOMENT = "clear_moment"
    REMOVE = "remove"
    LOCK = "lock"
    END_SESSION = "end_session"
    SHARE_SCREEN = "share_screen"
    START_PAIRS = "start_pairs"
    VISIT_PAIR = "visit_pair"
    MESSAGE_PAIRS = "message_pairs"
    END_PAIRS = "end_pairs"
    EXTEND = "extend"
    START_SEGMENT = "start_segment"
    QUEUE_SEGMENT = "queue_segment"
    NEXT_SEGMENT = "next_segment"
    END_SEGMENT = "end_segment"
    SESSION_RECORD_VIEWED = "session_record_viewed"
    SESSION_RECORD_EXPORTED = "session_record_exported"
    # Notes (issue 6): reads and exports of notes, key rotation, retention purges.
    NOTES_READ = "notes_read"
    KEYS_ROTATION_STARTED = "keys_rotation_started"
    KEYS_ROTATED = "keys_rotated"
    NOTES_PURGED = "notes_purged"
    BACKUP_WRITTEN = "backup_written"
    BACKUP_RESTORED = "backup_restored"
    # Patients' feedback (issue 6): a patient sent the form; an administrator changed it.
    FEEDBACK_SUBMITTED = "feedback_submitted"
    FEEDBACK_QUESTIONS_CHANGED = "feedback_questions_changed"


_ACTIONS = frozenset(action.value for action in AuditAction)


class AuditLog:
    """Records audit entries and reads them back.

    ``key`` is the audit-head HMAC key (the server key derived for ``"audit-head"``).
    Appends from this process queue on an asyncio lock, so at most one of them waits
    on the database's write lock at a time (the others wait without holding a
    connection); other processes are serialised by the database.
    """

    def __init__(self, db: Database, key: bytes, clock: Clock) -> None:
        self._db = db
        self._key = key
        self._clock = clock
        self._lock = asyncio.Lock()

    async def record(
        self,
        action: str,
        *,
        actor: str | None,
        target: str | None = None,
        address: str | None = None,
        details: Mapping[str, DetailValue] | None = None,
    ) -> AuditEntry:
        """Append an entry stamped with the clock's time; durable when it returns.

        ``address`` is cut to 64 characters. Raises ValueError, storing nothing, for an
        action that is not an :class:`AuditAction`, an actor or target over 128
        characters, or details that are not JSON scalars or exceed 4 KiB as JSON.
        """
        if action not in _ACTIONS:
            raise ValueError("unknown audit action")
        for value in (actor, target):
            if value is not None and len(value) > MAX_ID_LENGTH:
                raise ValueError(f"audit actor and target must be at most {MAX_ID_LENGTH} chars")
        if address is not None:
            address = address[:MAX_ADDRESS_LENGTH]
        details = dict(details or {})
        if len(canonical_details(details).encode("utf-8")) > MAX_DETAILS_BYTES:
            raise ValueError(f"audit details must be at most {MAX_DETAILS_BYTES} bytes as JSON")
        async with self._lock:
            return await audit_store.append_entry(
                self._db,
                at=self._clock.now(),
                actor=actor,
                action=str(action),
                target=target,
                address=address,
                details=details,
                key=self._key,
            )

    async def page(
        self,
        *,
        offset: int = 0,
        limit: int = 50,
        action: str | None = None,
        actor: str | None = None,
        since: float | None = None,
        until: float | None = None,
        newest_first: bool = True,
    ) -> AuditPage:
        """One page of entries matching the filters, and how many match in all.

        See :func:`telecircle.storage.audit_store.list_entries`.
        """
        return await audit_store.list_entries(
            self._db,
            offset=offset,
            limit=limit,
            action=action,
            actor=actor,
            since=since,
            until=until,
            newest_first=newest_first,
        )

    async def verify(self) -> list[ChainProblem]:
        """Every problem with the stored chain and head, in plain words; empty if intact.

        Streams the log, so memory stays bounded however long it is.
        """
        checker = ChainChecker(self._key)
        head = await audit_store.scan_chain(self._db, checker.add)
        return checker.finish(head)
