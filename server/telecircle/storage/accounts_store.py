"""Accounts: users, their sign-in sessions, and one-time account links.

Same rules as :mod:`telecircle.storage.stores`: one transaction per function (all of
its work or none), frozen records of plain values out, times as UNIX epoch seconds.

Secrets never reach the database in the clear: a sign-in session's ``id`` and an
account link's ``id`` are the SHA-256 (hex) of the secret the browser holds; the caller
hashes. Password hashes and TOTP secrets stay out of :class:`UserRecord`;
:func:`get_credentials` fetches them for checking. Usernames are stored lower-cased.

A link is usable while ``used_at`` is NULL and ``expires_at`` is in the future; using or
invalidating it sets ``used_at``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from telecircle.domain.access import Role
from telecircle.storage.codec import from_utc, to_utc
from telecircle.storage.database import Database
from telecircle.storage.errors import StorageError
from telecircle.storage.tables import AccountLinkRow, LoginSessionRow, UserRow

LinkPurpose = Literal["setup", "set_password"]

# PostgreSQL advisory lock serialising the transactions that must see a consistent set
# of administrators (first-run setup, disabling an administrator). SQLite needs none:
# its write transactions (BEGIN IMMEDIATE) already run one at a time.
_ACCOUNTS_LOCK = 0x7465_6C65_6163_6301


class DuplicateUsername(StorageError):
    """Another account already has that username."""


class UserNotFound(StorageError):
    """No account has the given id."""


class LastAdministrator(StorageError):
    """Disabling this account would leave no enabled administrator."""


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: str
    username: str
    display_name: str
    role: Role
    has_password: bool
    totp_enabled: bool
    disabled: bool
    created_at: float


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a sign-in is checked against. Kept out of reprs so it never lands in logs."""

    user_id: str
    password_hash: str | None = field(repr=False)
    totp_secret: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class LoginSessionRecord:
    id: str
    user_id: str
    csrf_token: str = field(repr=False)
    second_factor_pending: bool
    created_at: float
    last_seen_at: float
    expires_at: float
    ended_at: float | None


@dataclass(frozen=True, slots=True)
class AccountLinkRecord:
    id: str
    purpose: LinkPurpose
    user_id: str | None
    created_by: str | None
    created_at: float
    expires_at: float
    used_at: float | None


_USER_COLUMNS = (
    UserRow.id,
    UserRow.username,
    UserRow.display_name,
    UserRow.role,
    UserRow.password_hash.is_not(None).label("has_password"),
    UserRow.totp_secret.is_not(None).label("totp_enabled"),
    UserRow.disabled,
    UserRow.created_at,
)
_LINK_COLUMNS = (
    AccountLinkRow.id,
    AccountLinkRow.purpose,
    AccountLinkRow.user_id,
    AccountLinkRow.created_by,
    AccountLinkRow.created_at,
    AccountLinkRow.expires_at,
    AccountLinkRow.used_at,
)


# ---------------------------------------------------------------------------- users


async def create_user(
    db: Database, *, username: str, display_name: str, role: Role, now: float
) -> UserRecord:
    """Store a new account (no password yet, enabled) with a fresh id.

    Raises :class:`DuplicateUsername` if the (lower-cased) username is taken.
    """
    async with db.write() as conn:
        return await _insert_user(conn, username, display_name, role, now)


async def get_user(db: Database, user_id: str) -> UserRecord | None:
    async with db.read() as conn:
        return await _user_where(conn, UserRow.id == user_id)


async def get_user_by_username(db: Database, username: str) -> UserRecord | None:
    """The account with ``username`` (compared lower-cased), if any."""
    async with db.read() as conn:
        return await _user_where(conn, UserRow.username == username.lower())


async def list_users(db: Database) -> list[UserRecord]:
    """Every account, by username."""
    async with db.read() as conn:
        rows = await conn.execute(select(*_USER_COLUMNS).order_by(UserRow.username))
        return [_user(row) for row in rows]


async def get_credentials(db: Database, user_id: str) -> Credentials | None:
    """The account's password hash and TOTP secret (None where not set)."""
    async with db.read() as conn:
        row = (
            await conn.execute(
                select(UserRow.password_hash, UserRow.totp_secret).where(UserRow.id == user_id)
            )
        ).one_or_none()
    return None if row is None else Credentials(user_id, row.password_hash, row.totp_secret)


async def set_password_hash(db: Database, user_id: str, password_hash: str) -> None:
    """Replace the account's password hash. Raises :class:`UserNotFound`."""
    async with db.write() as conn:
        await _update_user(conn, user_id, password_hash=password_hash)


async def set_totp_secret(db: Database, user_id: str, secret: str | None) -> None:
    """Set (or with None, remove) the account's TOTP secret. Raises :class:`UserNotFound`."""
    async with db.write() as conn:
        await _update_user(conn, user_id, totp_secret=secret)


async def set_disabled(db: Database, user_id: str, disabled: bool, now: float) -> UserRecord:
    """Disable or enable an account; returns it as it now is.

    Disabling also, in the same transaction, ends every sign-in session of the account
    and invalidates its unused links. Raises :class:`UserNotFound`, and
    :class:`LastAdministrator` when the account is the only enabled administrator.
    """
    async with db.write() as conn:
        await _lock_accounts(conn)
        user = await _user_where(conn, UserRow.id == user_id, lock=True)
        if user is None:
            raise UserNotFound(f"no user {user_id}")
        if disabled and user.role is Role.ADMINISTRATOR and not user.disabled:
            others = await _enabled_administrators(conn, excluding=user_id)
            if others == 0:
                raise LastAdministrator(f"user {user_id} is the last administrator")
        await _update_user(conn, user_id, disabled=disabled)
        if disabled:
            await _end_sessions_of(conn, user_id, now)
            await _invalidate_links_of(conn, user_id, now)
        return replace(user, disabled=disabled)


async def any_administrator_exists(db: Database) -> bool:
    """True if at least one enabled administrator account exists."""
    async with db.read() as conn:
        return await _enabled_administrators(conn) > 0


async def create_first_administrator(
    db: Database,
    *,
    token_hash: str,
    username: str,
    display_name: str,
    password_hash: str,
    now: float,
) -> UserRecord | None:
    """Use the setup link ``token_hash`` to create the first administrator, atomically.

    Returns None, creating nothing, when an enabled administrator already exists or the
    link is not a usable setup link; otherwise the link is used, every other unused
    setup link invalidated, and the new account (with its password) returned. Of
    concurrent callers at most one succeeds. Raises :class:`DuplicateUsername` (nothing
    changed, the link still usable) if the username is taken.
    """
    async with db.write() as conn:
        await _lock_accounts(conn)
        if await _enabled_administrators(conn) > 0:
            return None
        link = await _use_link(conn, token_hash, "setup", now)
        if link is None:
            return None
        await _invalidate_setup_links(conn, now)
        user = await _insert_user(conn, username, display_name, Role.ADMINISTRATOR, now)
        await _update_user(conn, user.id, password_hash=password_hash)
        return replace(user, has_password=True)


# ------------------------------------------------------------------ login sessions


async def create_login_session(
    db: Database,
    *,
    session_id: str,
    user_id: str,
    csrf_token: str,
    second_factor_pending: bool,
    now: float,
    expires_at: float,
) -> LoginSessionRecord:
    """Store a new sign-in session (``session_id`` = SHA-256 hex of its cookie secret)."""
    async with db.write() as conn:
        await conn.execute(
            insert(LoginSessionRow).values(
                id=session_id,
                user_id=user_id,
                csrf_token=csrf_token,
                second_factor_pending=second_factor_pending,
                created_at=to_utc(now),
                last_seen_at=to_utc(now),
                expires_at=to_utc(expires_at),
            )
        )
    return LoginSessionRecord(
        id=session_id,
        user_id=user_id,
        csrf_token=csrf_token,
        second_factor_pending=second_factor_pending,
        created_at=_exact(now),
        last_seen_at=_exact(now),
        expires_at=_exact(expires_at),
        ended_at=None,
    )


async def get_login_session(db: Database, session_id: str) -> LoginSessionRecord | None:
    """The session, ended or not (callers check ``ended_at`` and the times)."""
    async with db.read() as conn:
        row = (
            await conn.execute(select(LoginSessionRow).where(LoginSessionRow.id == session_id))
        ).one_or_none()
    return None if row is None else _login_session(row)


async def get_signed_in(
    db: Database, session_id: str
) -> tuple[LoginSessionRecord, UserRecord] | None:
    """The session and its account, read together (one snapshot), or None if unknown."""
    async with db.read() as conn:
        row = (
            await conn.execute(select(LoginSessionRow).where(LoginSessionRow.id == session_id))
        ).one_or_none()
        if row is None:
            return None
        user = await _user_where(conn, UserRow.id == row.user_id)
    return None if user is None else (_login_session(row), user)


async def touch_login_session(db: Database, session_id: str, now: float) -> bool:
    """Set the session's ``last_seen_at`` to ``now``. False if unknown or ended."""
    async with db.write() as conn:
        result = await conn.execute(
            update(LoginSessionRow)
            .where(LoginSessionRow.id == session_id, LoginSessionRow.ended_at.is_(None))
            .values(last_seen_at=to_utc(now))
        )
        return result.rowcount == 1


async def end_login_session(db: Database, session_id: str, now: float) -> str | None:
    """End one session at ``now``; returns its user's id, or None if unknown or ended."""
    async with db.write() as conn:
        ended = await conn.execute(
            update(LoginSessionRow)
            .where(LoginSessionRow.id == session_id, LoginSessionRow.ended_at.is_(None))
            .values(ended_at=to_utc(now))
            .returning(LoginSessionRow.user_id)
        )
        user_id = ended.scalar_one_or_none()
    return None if user_id is None else str(user_id)


async def end_user_sessions(db: Database, user_id: str, now: float) -> int:
    """End every open session of the account at ``now``; returns how many there were."""
    async with db.write() as conn:
        return await _end_sessions_of(conn, user_id, now)


async def mark_second_factor_done(db: Database, session_id: str, now: float) -> bool:
    """Clear the session's pending second factor (and note it as seen at ``now``).

    False if the session is unknown, ended, or was not waiting for a second factor.
    """
    async with db.write() as conn:
        result = await conn.execute(
            update(LoginSessionRow)
            .where(
                LoginSessionRow.id == session_id,
                LoginSessionRow.ended_at.is_(None),
                LoginSessionRow.second_factor_pending.is_(True),
            )
            .values(second_factor_pending=False, last_seen_at=to_utc(now))
        )
        return result.rowcount == 1


# --------------------------------------------------------------------------- links


async def create_link(
    db: Database,
    *,
    token_hash: str,
    purpose: LinkPurpose,
    user_id: str | None,
    created_by: str | None,
    now: float,
    expires_at: float,
) -> AccountLinkRecord:
    """Store a new link, first invalidating the ones it replaces, in one transaction.

    A setup link (``user_id`` None) replaces every unused setup link; a set-password
    link replaces every unused link of its account. Raises ValueError when ``purpose``
    and ``user_id`` do not fit together.
    """
    if (purpose == "setup") != (user_id is None):
        raise ValueError("setup links have no user; set-password links have one")
    async with db.write() as conn:
        if user_id is None:
            await _invalidate_setup_links(conn, now)
        else:
            await _invalidate_links_of(conn, user_id, now)
        await conn.execute(
            insert(AccountLinkRow).values(
                id=token_hash,
                purpose=purpose,
                user_id=user_id,
                created_by=created_by,
                created_at=to_utc(now),
                expires_at=to_utc(expires_at),
            )
        )
    return AccountLinkRecord(
        token_hash, purpose, user_id, created_by, _exact(now), _exact(expires_at), None
    )


async def get_usable_link(
    db: Database, token_hash: str, purpose: LinkPurpose, now: float
) -> AccountLinkRecord | None:
    """The link if it is unused, unexpired at ``now`` and for ``purpose``; else None.

    Only looks: a later :func:`use_link` may still lose a race.
    """
    async with db.read() as conn:
        row = (
            await conn.execute(select(AccountLinkRow).where(*_usable(token_hash, purpose, now)))
        ).one_or_none()
    return None if row is None else _link(row)


async def use_link(
    db: Database, token_hash: str, purpose: LinkPurpose, now: float
) -> AccountLinkRecord | None:
    """Mark the link used at ``now`` if it is usable; returns it, or None if it was not.

    Atomic (one conditional UPDATE): of concurrent uses of one link exactly one wins.
    """
    async with db.write() as conn:
        return await _use_link(conn, token_hash, purpose, now)


async def use_password_link(
    db: Database, *, token_hash: str, password_hash: str, now: float
) -> UserRecord | None:
    """Use a set-password link: set its account's password and end the account's
    sign-in sessions, in one transaction. Returns the account.

    None (no password set) when the link is not usable or its account is disabled or
    gone; the link is used up either way.
    """
    async with db.write() as conn:
        link = await _use_link(conn, token_hash, "set_password", now)
        if link is None or link.user_id is None:
            return None
        user = await _user_where(conn, UserRow.id == link.user_id, lock=True)
        if user is None or user.disabled:
            return None
        await _update_user(conn, user.id, password_hash=password_hash)
        await _end_sessions_of(conn, user.id, now)
        return replace(user, has_password=True)


async def invalidate_user_links(db: Database, user_id: str, now: float) -> int:
    """Invalidate every unused link of the account; returns how many there were."""
    async with db.write() as conn:
        return await _invalidate_links_of(conn, user_id, now)


# -------------------------------------------------------------------------- helpers


async def _lock_accounts(conn: AsyncConnection) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_advisory_xact_lock(_ACCOUNTS_LOCK)))


async def _insert_user(
    conn: AsyncConnection, username: str, display_name: str, role: Role, now: float
) -> UserRecord:
    record = UserRecord(
        id="u_" + secrets.token_hex(8),
        username=username.lower(),
        display_name=display_name,
        role=role,
        has_password=False,
        totp_enabled=False,
        disabled=False,
        created_at=_exact(now),
    )
    taken = await conn.execute(select(UserRow.id).where(UserRow.username == record.username))
    if taken.first() is not None:
        raise DuplicateUsername("username already in use")
    try:
        await conn.execute(
            insert(UserRow).values(
                id=record.id,
                username=record.username,
                display_name=display_name,
                role=role.value,
                disabled=False,
                created_at=to_utc(now),
            )
        )
    except IntegrityError as exc:
        # A concurrent insert of the same username (PostgreSQL) got there first.
        raise DuplicateUsername("username already in use") from exc
    return record


async def _user_where(
    conn: AsyncConnection, condition: Any, *, lock: bool = False
) -> UserRecord | None:
    query = select(*_USER_COLUMNS).where(condition)
    if lock:
        query = query.with_for_update(of=UserRow)
    row = (await conn.execute(query)).one_or_none()
    return None if row is None else _user(row)


async def _update_user(conn: AsyncConnection, user_id: str, **values: Any) -> None:
    result = await conn.execute(update(UserRow).where(UserRow.id == user_id).values(**values))
    if result.rowcount != 1:
        raise UserNotFound(f"no user {user_id}")


async def _enabled_administrators(conn: AsyncConnection, *, excluding: str | None = None) -> int:
    query = select(func.count()).where(
        UserRow.role == Role.ADMINISTRATOR.value, UserRow.disabled.is_(False)
    )
    if excluding is not None:
        query = query.where(UserRow.id != excluding)
    return int((await conn.execute(query)).scalar_one())


async def _end_sessions_of(conn: AsyncConnection, user_id: str, now: float) -> int:
    result = await conn.execute(
        update(LoginSessionRow)
        .where(LoginSessionRow.user_id == user_id, LoginSessionRow.ended_at.is_(None))
        .values(ended_at=to_utc(now))
    )
    return int(result.rowcount)


async def _invalidate_links_of(conn: AsyncConnection, user_id: str, now: float) -> int:
    result = await conn.execute(
        update(AccountLinkRow)
        .where(AccountLinkRow.user_id == user_id, AccountLinkRow.used_at.is_(None))
        .values(used_at=to_utc(now))
    )
    return int(result.rowcount)


async def _invalidate_setup_links(conn: AsyncConnection, now: float) -> None:
    await conn.execute(
        update(AccountLinkRow)
        .where(AccountLinkRow.purpose == "setup", AccountLinkRow.used_at.is_(None))
        .values(used_at=to_utc(now))
    )


def _usable(token_hash: str, purpose: LinkPurpose, now: float) -> tuple[Any, ...]:
    return (
        AccountLinkRow.id == token_hash,
        AccountLinkRow.purpose == purpose,
        AccountLinkRow.used_at.is_(None),
        AccountLinkRow.expires_at > to_utc(now),
    )


async def _use_link(
    conn: AsyncConnection, token_hash: str, purpose: LinkPurpose, now: float
) -> AccountLinkRecord | None:
    # One conditional UPDATE: on PostgreSQL a concurrent user of the same row waits for
    # the winner's commit, then re-checks ``used_at IS NULL`` and updates nothing.
    result = await conn.execute(
        update(AccountLinkRow)
        .where(*_usable(token_hash, purpose, now))
        .values(used_at=to_utc(now))
        .returning(*_LINK_COLUMNS)
    )
    row = result.one_or_none()
    return None if row is None else _link(row)


def _exact(seconds: float) -> float:
    """``seconds`` as the database will give it back (microsecond precision)."""
    return from_utc(to_utc(seconds))


def _user(row: Any) -> UserRecord:
    return UserRecord(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        role=Role(row.role),
        has_password=bool(row.has_password),
        totp_enabled=bool(row.totp_enabled),
        disabled=bool(row.disabled),
        created_at=from_utc(row.created_at),
    )


def _login_session(row: Any) -> LoginSessionRecord:
    return LoginSessionRecord(
        id=row.id,
        user_id=row.user_id,
        csrf_token=row.csrf_token,
        second_factor_pending=bool(row.second_factor_pending),
        created_at=from_utc(row.created_at),
        last_seen_at=from_utc(row.last_seen_at),
        expires_at=from_utc(row.expires_at),
        ended_at=None if row.ended_at is None else from_utc(row.ended_at),
    )


def _link(row: Any) -> AccountLinkRecord:
    return AccountLinkRecord(
        id=row.id,
        purpose=cast(LinkPurpose, row.purpose),
        user_id=row.user_id,
        created_by=row.created_by,
        created_at=from_utc(row.created_at),
        expires_at=from_utc(row.expires_at),
        used_at=None if row.used_at is None else from_utc(row.used_at),
    )
