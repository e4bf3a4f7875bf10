"""Notes at rest: wrapped session data keys, notes and their sealed versions.

Nothing here sees a note's text or an unwrapped key: the notes service hands in
callbacks that make a wrapped key and seal a version, and gets sealed bytes back.
Each function is one transaction (see stores.py for the conventions: epoch seconds in
and out, frozen records, errors leave nothing changed).

Saves to one session are serialised by a row lock on the session (PostgreSQL) or by
SQLite's single writer, so version numbers are gap-free and a session gets exactly one
data key even when its first two saves race.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from telecircle.crypto.envelope import Sealed, WrappedKey
from telecircle.storage.codec import from_utc, to_utc
from telecircle.storage.database import Database
from telecircle.storage.errors import SessionNotFound, StorageError
from telecircle.storage.tables import (
    SESSION_ENDED,
    NoteRow,
    NoteVersionRow,
    ParticipantRow,
    RoomRow,
    SessionKeyRow,
    SessionRow,
)


class NoteConflict(StorageError):
    """The note id belongs to another author or session (ids are made by browsers)."""


class NoteLimitReached(StorageError):
    """A save would break ``limit`` (``"versions"`` or ``"notes"``)."""

    def __init__(self, limit: str) -> None:
        super().__init__(limit)
        self.limit = limit


class SessionKeyDestroyed(StorageError):
    """The session's data key was destroyed by retention: nothing can be added."""


@dataclass(frozen=True, slots=True)
class SessionKey:
    """A session's data key as stored: wrapped, or destroyed (``wrapped`` is None)."""

    session_id: str
    wrapped: WrappedKey | None
    kek_version: int
    destroyed_at: float | None


@dataclass(frozen=True, slots=True)
class StoredVersion:
    version: int
    saved_at: float
    kek_version: int
    sealed: Sealed


@dataclass(frozen=True, slots=True)
class StoredNote:
    note_id: str
    session_id: str
    author_id: str
    created_at: float
    versions: tuple[StoredVersion, ...]


@dataclass(frozen=True, slots=True)
class SaveRequest:
    session_id: str
    note_id: str
    author_id: str
    save_id: str
    now: float
    max_versions: int
    max_notes_per_author: int


@dataclass(frozen=True, slots=True)
class SaveOutcome:
    """Which version a save became; ``repeated`` when its save id was stored before."""

    version: int
    saved_at: float
    repeated: bool


@dataclass(frozen=True, slots=True)
class RetentionCandidate:
    """An ended session whose data key still lives, with its room's retention override."""

    session_id: str
    ended_at: float
    room_retention_days: int | None


# A new session's wrapped data key.
MakeKey = Callable[[], WrappedKey]
# Seal the version (number) with the session's key; the key is what is stored.
SealVersion = Callable[[SessionKey, int], Sealed]


async def save_version(
    db: Database, request: SaveRequest, make_key: MakeKey, seal: SealVersion
) -> SaveOutcome:
    """Store the next version of a note (made if new), sealed by ``seal``; creates the
    session's data key with ``make_key`` on its first note.

    A save whose ``save_id`` that note already has is not stored again: the version it
    became is returned (``repeated``). Raises :class:`SessionNotFound`,
    :class:`SessionKeyDestroyed`, :class:`NoteConflict` and :class:`NoteLimitReached`.
    """
    async with db.write() as conn:
        await _lock_session(conn, request.session_id)
        # Locked: a purge waits for this save, or this save sees the key destroyed.
        key = await _session_key(conn, request.session_id, lock=True)
        if key is None:
            key = await _add_session_key(conn, request.session_id, make_key(), request.now)
        if key.wrapped is None:
            raise SessionKeyDestroyed(request.session_id)
        note = (
            await conn.execute(select(NoteRow).where(NoteRow.id == request.note_id))
        ).one_or_none()
        if note is not None:
            if note.author_id != request.author_id or note.session_id != request.session_id:
                raise NoteConflict(request.note_id)
            earlier = (
                await conn.execute(
                    select(NoteVersionRow.version, NoteVersionRow.saved_at).where(
                        NoteVersionRow.note_id == request.note_id,
                        NoteVersionRow.save_id == request.save_id,
                    )
                )
            ).one_or_none()
            if earlier is not None:
                return SaveOutcome(earlier.version, from_utc(earlier.saved_at), repeated=True)
            if note.latest_version >= request.max_versions:
                raise NoteLimitReached("versions")
            version = note.latest_version + 1
        else:
            await _check_note_count(conn, request)
            await conn.execute(
                insert(NoteRow).values(
                    id=request.note_id,
                    session_id=request.session_id,
                    author_id=request.author_id,
                    created_at=to_utc(request.now),
                    latest_version=0,
                )
            )
            version = 1
        sealed = seal(key, version)
        await conn.execute(
            insert(NoteVersionRow).values(
                note_id=request.note_id,
                version=version,
                save_id=request.save_id,
                saved_at=to_utc(request.now),
                kek_version=key.kek_version,
                nonce=sealed.nonce,
                ciphertext=sealed.ciphertext,
            )
        )
        await conn.execute(
            update(NoteRow).where(NoteRow.id == request.note_id).values(latest_version=version)
        )
    return SaveOutcome(version, from_utc(to_utc(request.now)), repeated=False)


async def session_key(db: Database, session_id: str, make_key: MakeKey, now: float) -> SessionKey:
    """The session's data key, made with ``make_key`` if it has none yet (for text other
    than notes sealed with it, such as patients' feedback comments). Raises
    SessionNotFound."""
    async with db.write() as conn:
        await _lock_session(conn, session_id)
        key = await _session_key(conn, session_id, lock=True)
        if key is None:
            key = await _add_session_key(conn, session_id, make_key(), now)
        return key


async def find_session_key(db: Database, session_id: str) -> SessionKey | None:
    async with db.read() as conn:
        return await _session_key(conn, session_id)


async def load_notes(
    db: Database, session_id: str, *, latest_only: bool
) -> tuple[SessionKey | None, list[StoredNote]]:
    """The session's key and every note with its versions (or only the newest), in
    the order they were made."""
    async with db.read() as conn:
        key = await _session_key(conn, session_id)
        notes = (
            await conn.execute(
                select(NoteRow)
                .where(NoteRow.session_id == session_id)
                .order_by(NoteRow.created_at, NoteRow.id)
            )
        ).all()
        query = (
            select(NoteVersionRow)
            .join(NoteRow, NoteRow.id == NoteVersionRow.note_id)
            .where(NoteRow.session_id == session_id)
            .order_by(NoteVersionRow.note_id, NoteVersionRow.version)
        )
        if latest_only:
            query = query.where(NoteVersionRow.version == NoteRow.latest_version)
        versions: dict[str, list[StoredVersion]] = {}
        for row in await conn.execute(query):
            versions.setdefault(row.note_id, []).append(
                StoredVersion(
                    version=row.version,
                    saved_at=from_utc(row.saved_at),
                    kek_version=row.kek_version,
                    sealed=Sealed(bytes(row.nonce), bytes(row.ciphertext)),
                )
            )
    return key, [
        StoredNote(
            note_id=row.id,
            session_id=row.session_id,
            author_id=row.author_id,
            created_at=from_utc(row.created_at),
            versions=tuple(versions.get(row.id, ())),
        )
        for row in notes
    ]


async def kek_versions_in_use(db: Database) -> set[int]:
    """The key-encryption key versions that wrap a live data key."""
    async with db.read() as conn:
        rows = await conn.execute(
            select(SessionKeyRow.kek_version).where(SessionKeyRow.destroyed_at.is_(None)).distinct()
        )
        return {row.kek_version for row in rows}


async def one_live_key_per_version(db: Database) -> list[SessionKey]:
    """One live data key for each key-encryption key version in use (to prove the
    version is present and right)."""
    async with db.read() as conn:
        firsts = (
            select(func.min(SessionKeyRow.session_id).label("session_id"))
            .where(SessionKeyRow.destroyed_at.is_(None))
            .group_by(SessionKeyRow.kek_version)
            .subquery()
        )
        rows = await conn.execute(
            select(SessionKeyRow)
            .join(firsts, firsts.c.session_id == SessionKeyRow.session_id)
            .order_by(SessionKeyRow.kek_version)
        )
        return [_key(row) for row in rows]


async def live_keys(
    db: Database, *, after: str = "", below_version: int | None = None, limit: int = 100
) -> list[SessionKey]:
    """Live data keys in session-id order, from after ``after`` (a page), optionally only
    those wrapped by a version below ``below_version``."""
    query = (
        select(SessionKeyRow)
        .where(SessionKeyRow.destroyed_at.is_(None), SessionKeyRow.session_id > after)
        .order_by(SessionKeyRow.session_id)
        .limit(limit)
    )
    if below_version is not None:
        query = query.where(SessionKeyRow.kek_version < below_version)
    async with db.read() as conn:
        return [_key(row) for row in await conn.execute(query)]


async def replace_wrapped_key(
    db: Database, session_id: str, expected: WrappedKey, replacement: WrappedKey
) -> bool:
    """Swap a session's wrapped key for ``replacement`` if it is still ``expected``
    (compare and swap: a key destroyed or re-wrapped meanwhile is left alone)."""
    async with db.write() as conn:
        result = await conn.execute(
            update(SessionKeyRow)
            .where(
                SessionKeyRow.session_id == session_id,
                SessionKeyRow.destroyed_at.is_(None),
                SessionKeyRow.kek_version == expected.kek_version,
                SessionKeyRow.nonce == expected.nonce,
                SessionKeyRow.wrapped == expected.ciphertext,
            )
            .values(
                kek_version=replacement.kek_version,
                nonce=replacement.nonce,
                wrapped=replacement.ciphertext,
            )
        )
        return bool(result.rowcount == 1)


async def retention_candidates(db: Database) -> list[RetentionCandidate]:
    """Ended sessions whose data key is still live."""
    async with db.read() as conn:
        rows = await conn.execute(
            select(SessionRow.id, SessionRow.ended_at, RoomRow.notes_retention_days)
            .join(SessionKeyRow, SessionKeyRow.session_id == SessionRow.id)
            .join(RoomRow, RoomRow.id == SessionRow.room_id)
            .where(SessionRow.status == SESSION_ENDED, SessionKeyRow.destroyed_at.is_(None))
            .order_by(SessionRow.ended_at)
        )
        return [
            RetentionCandidate(row.id, from_utc(row.ended_at), row.notes_retention_days)
            for row in rows
            if row.ended_at is not None
        ]


async def destroy_keys(db: Database, session_ids: Sequence[str], now: float) -> list[str]:
    """Destroy the live data keys of ``session_ids`` (their notes become unreadable for
    good); returns the sessions whose key this call destroyed."""
    destroyed: list[str] = []
    async with db.write() as conn:
        for session_id in session_ids:
            result = await conn.execute(
                update(SessionKeyRow)
                .where(
                    SessionKeyRow.session_id == session_id,
                    SessionKeyRow.destroyed_at.is_(None),
                )
                .values(nonce=None, wrapped=None, destroyed_at=to_utc(now))
            )
            if result.rowcount == 1:
                destroyed.append(session_id)
    return destroyed


async def session_participant_ids(db: Database, session_id: str) -> set[str]:
    """Everyone who had a seat in the session (the lobby included)."""
    async with db.read() as conn:
        rows = await conn.execute(
            select(ParticipantRow.id).where(ParticipantRow.session_id == session_id)
        )
        return {row.id for row in rows}


async def _lock_session(conn: AsyncConnection, session_id: str) -> None:
    # FOR NO KEY UPDATE on PostgreSQL: serialises note saves per session without
    # blocking rows that merely reference the session (its timeline events).
    found = (
        await conn.execute(
            select(SessionRow.id).where(SessionRow.id == session_id).with_for_update(key_share=True)
        )
    ).one_or_none()
    if found is None:
        raise SessionNotFound(session_id)


async def _session_key(
    conn: AsyncConnection, session_id: str, *, lock: bool = False
) -> SessionKey | None:
    query = select(SessionKeyRow).where(SessionKeyRow.session_id == session_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).one_or_none()
    return None if row is None else _key(row)


async def _add_session_key(
    conn: AsyncConnection, session_id: str, wrapped: WrappedKey, now: float
) -> SessionKey:
    await conn.execute(
        insert(SessionKeyRow).values(
            session_id=session_id,
            kek_version=wrapped.kek_version,
            nonce=wrapped.nonce,
            wrapped=wrapped.ciphertext,
            created_at=to_utc(now),
        )
    )
    return SessionKey(session_id, wrapped, wrapped.kek_version, None)


async def _check_note_count(conn: AsyncConnection, request: SaveRequest) -> None:
    count = (
        await conn.execute(
            select(func.count())
            .select_from(NoteRow)
            .where(NoteRow.session_id == request.session_id, NoteRow.author_id == request.author_id)
        )
    ).scalar_one()
    if count >= request.max_notes_per_author:
        raise NoteLimitReached("notes")


def _key(row: Any) -> SessionKey:
    wrapped = (
        None
        if row.wrapped is None or row.nonce is None
        else WrappedKey(row.kek_version, bytes(row.nonce), bytes(row.wrapped))
    )
    return SessionKey(
        session_id=row.session_id,
        wrapped=wrapped,
        kek_version=row.kek_version,
        destroyed_at=None if row.destroyed_at is None else from_utc(row.destroyed_at),
    )
