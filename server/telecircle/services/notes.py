"""Clinicians' notes: save versions sealed with the session's data key, read them back
for those allowed to, and report every read to the audit log.

The data key of a session is made on its first note and stored only wrapped by the
current key-encryption key (crypto/key_store.py); it is unwrapped for each save or read
and never kept. Text exists in clear only in this process's memory while a request is
served. A version that does not decrypt is reported as such (Unreadable), never as
empty; a session whose key retention destroyed reports when.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from telecircle.config import Settings
from telecircle.crypto.envelope import (
    DecryptionFailed,
    NoteBinding,
    Sealed,
    WrappedKey,
    new_data_key,
    open_sealed,
    seal,
    unwrap,
    wrap,
)
from telecircle.crypto.key_store import KeyStore, KeyStoreError, open_key_store
from telecircle.domain.ids import SessionId
from telecircle.domain.notes import (
    Note,
    NoteBody,
    NoteLimits,
    NoteRefused,
    NoteVersion,
    SavedNote,
    Unreadable,
    check_body,
    check_client_id,
    decode_body,
    encode_body,
    may_read,
)
from telecircle.errors import TelecircleError
from telecircle.services.clock import Clock
from telecircle.services.ports import AuditSink
from telecircle.storage import notes_store, org_store, stores
from telecircle.storage.accounts_store import UserRecord
from telecircle.storage.database import Database
from telecircle.storage.errors import SessionNotFound
from telecircle.storage.notes_store import SessionKey, StoredNote

log = logging.getLogger(__name__)

NOTES_READ = "notes_read"


class KeysMissing(TelecircleError):
    """A key-encryption key that wraps a live data key is not in the key store: the
    server must not start (notes would be unreadable, or worse, silently empty)."""

    code = "keys_missing"
    http_status = 500


class NoteNotFound(NoteRefused):
    code = "note_not_found"
    http_status = 404


@dataclass(frozen=True, slots=True)
class NotesPanel:
    """What a clinician's notes panel starts from: when the session started (for
    "mark this moment") and their notes."""

    session_started_at: float
    notes: list[Note]


async def open_notes_keys(db: Database, settings: Settings) -> KeyStore:
    """The key store of ``settings``. Version 1 is made on the very first start only:
    when the database holds live data keys, a missing key folder is an error (a new
    key would not be the lost one) — see :meth:`NotesService.require_keys`."""
    in_use = await notes_store.kek_versions_in_use(db)
    return open_key_store(settings.effective_key_dir, create=not in_use)


class NotesService:
    """Saves and reads notes. Safe to share across tasks; holds no note text or keys."""

    def __init__(
        self,
        db: Database,
        keys: KeyStore,
        clock: Clock,
        audit: AuditSink,
        limits: NoteLimits,
    ) -> None:
        self._db = db
        self._keys = keys
        self._clock = clock
        self._audit = audit
        self.limits = limits

    async def require_keys(self) -> None:
        """Raise :class:`KeysMissing` (naming the versions) unless every key-encryption
        key version that wraps a live data key is in the key store and unwraps one of
        its data keys (a wrong key of the right number is caught too)."""
        missing: list[int] = []
        for key in await notes_store.one_live_key_per_version(self._db):
            try:
                self._data_key_or_raise(key)
            except (DecryptionFailed, KeyStoreError):
                missing.append(key.kek_version)
        if missing:
            listed = ", ".join(str(version) for version in missing)
            raise KeysMissing(
                f"Key-encryption key version(s) {listed} wrap session notes but are missing "
                f"from the key store {self._keys!r}, or are not the keys they were. Restore "
                "them from your key backup; the server will not start without them."
            )

    def _data_key_or_raise(self, key: SessionKey) -> bytes:
        if key.wrapped is None:
            raise DecryptionFailed("the session's data key was destroyed")
        return unwrap(key.wrapped, self._keys.get(key.kek_version), key.session_id)

    async def save(
        self,
        *,
        author_id: str,
        session_id: str,
        note_id: str,
        save_id: str,
        body: NoteBody,
        room_id: str | None = None,
    ) -> SavedNote:
        """Store ``body`` as the next version of the author's note ``note_id`` in
        ``session_id``, durably, and say which version it became. The author must be a
        clinician of the session's room (and the room ``room_id``, if given: the room
        they are in); the session may have ended — a browser saves what was typed when
        it can. Repeating a ``save_id`` returns the first answer. Raises NoteRefused."""
        check_client_id(note_id, "note id")
        check_client_id(save_id, "save id")
        check_body(body, self.limits)
        session = await stores.get_session(self._db, SessionId(session_id))
        if (
            session is None
            or (room_id is not None and session.room_id != room_id)
            or await org_store.room_role_of(self._db, session.room_id, author_id) is None
        ):
            raise NoteNotFound("There is no such session in your rooms.")
        if body.participant_ids:
            known = await notes_store.session_participant_ids(self._db, session_id)
            if not set(body.participant_ids) <= known:
                raise NoteRefused(
                    "A tagged participant is not part of this session.", code="invalid_note"
                )
        text = encode_body(body)

        def make_key() -> WrappedKey:
            # Chosen under the session's lock, so a rotation that has made its new
            # version by now is not missed.
            return wrap(new_data_key(), self._keys.current(), session_id)

        def seal_version(key: SessionKey, version: int) -> Sealed:
            data_key = self._data_key_or_raise(key)
            binding = NoteBinding(note_id, session_id, author_id, key.kek_version, version)
            return seal(data_key, text, binding)

        request = notes_store.SaveRequest(
            session_id=session_id,
            note_id=note_id,
            author_id=author_id,
            save_id=save_id,
            now=self._clock.now(),
            max_versions=self.limits.max_versions,
            max_notes_per_author=self.limits.max_notes_per_author,
        )
        try:
            outcome = await notes_store.save_version(self._db, request, make_key, seal_version)
        except SessionNotFound:
            raise NoteNotFound("There is no such session in this room.") from None
        except notes_store.NoteConflict:
            raise NoteNotFound("There is no such note.") from None
        except notes_store.SessionKeyDestroyed:
            raise NoteRefused(
                "This session's notes were destroyed by the retention policy.",
                code="notes_destroyed",
            ) from None
        except notes_store.NoteLimitReached as exc:
            raise _limit_refusal(exc.limit, self.limits) from None
        return SavedNote(note_id, outcome.version, outcome.saved_at)

    async def own_notes(self, author_id: str, session_id: str) -> NotesPanel:
        """The author's notes of the session, newest version of each (audited)."""
        session = await stores.get_session(self._db, SessionId(session_id))
        if session is None:
            raise NoteNotFound("There is no such session.")
        key, stored = await notes_store.load_notes(self._db, session_id, latest_only=True)
        mine = [note for note in stored if note.author_id == author_id]
        await self._audited_read(author_id, session_id, len(mine), "notes_panel")
        return NotesPanel(session.started_at, self._open_all(key, mine))

    async def notes_for_record(self, reader: UserRecord, session_id: str) -> Sequence[Note]:
        """Every version of the notes of ``session_id`` that ``reader`` may read: their
        own, and the room's other clinicians' when the room shares notes. Nobody else
        (administrators, other clinicians) reads any. Audited."""
        session = await stores.get_session(self._db, SessionId(session_id))
        if session is None:
            return []
        room = await stores.get_room(self._db, session.room_id)
        room_role = await org_store.room_role_of(self._db, session.room_id, reader.id)
        shared = room is not None and room.notes_shared
        key, stored = await notes_store.load_notes(self._db, session_id, latest_only=False)
        readable = [
            note
            for note in stored
            if may_read(
                reader_id=reader.id,
                author_id=note.author_id,
                reader_room_role=room_role,
                room_shares_notes=shared,
            )
        ]
        await self._audited_read(reader.id, session_id, len(readable), "session_record")
        # Every version of every note: decrypted off the event loop.
        return await asyncio.to_thread(self._open_all, key, readable)

    async def seal_text(self, session_id: str, label: str, text: str) -> SealedText:
        """Seal other health information of a session (``label`` says what and where,
        e.g. ``"feedback:<response id>"``) with the session's data key, so retention
        destroys it with the notes. Raises NoteNotFound for an unknown session and
        NoteRefused if the key was destroyed."""
        try:
            key = await notes_store.session_key(
                self._db,
                session_id,
                lambda: wrap(new_data_key(), self._keys.current(), session_id),
                self._clock.now(),
            )
        except SessionNotFound:
            raise NoteNotFound("There is no such session.") from None
        if key.wrapped is None:
            raise NoteRefused(
                "This session's records were destroyed by the retention policy.",
                code="notes_destroyed",
            )
        binding = _text_binding(session_id, label, key.kek_version)
        sealed = seal(self._data_key_or_raise(key), text, binding)
        return SealedText(key.kek_version, sealed.nonce, sealed.ciphertext)

    async def open_text(self, session_id: str, label: str, sealed: SealedText) -> str | Unreadable:
        """The text :meth:`seal_text` sealed, or why it cannot be read."""
        key = await notes_store.find_session_key(self._db, session_id)
        if key is None:
            return Unreadable.DECRYPTION_FAILED
        if key.wrapped is None:
            return Unreadable.DESTROYED
        data_key = self._data_key(key)
        if data_key is None:
            return Unreadable.DECRYPTION_FAILED
        binding = _text_binding(session_id, label, sealed.kek_version)
        try:
            return open_sealed(data_key, Sealed(sealed.nonce, sealed.ciphertext), binding)
        except DecryptionFailed:
            log.error("sealed text did not decrypt", extra={"session": session_id})
            return Unreadable.DECRYPTION_FAILED

    async def _audited_read(self, reader_id: str, session_id: str, count: int, via: str) -> None:
        await self._audit.record(
            NOTES_READ, actor=reader_id, target=session_id, details={"notes": count, "via": via}
        )

    def _open_all(self, key: SessionKey | None, stored: Sequence[StoredNote]) -> list[Note]:
        data_key = self._data_key(key) if key is not None else None
        return [
            Note(
                note_id=note.note_id,
                session_id=note.session_id,
                author_id=note.author_id,
                created_at=note.created_at,
                versions=tuple(
                    self._open_version(key, data_key, note, version) for version in note.versions
                ),
            )
            for note in stored
        ]

    def _data_key(self, key: SessionKey) -> bytes | None:
        if key.wrapped is None:
            return None
        try:
            return self._data_key_or_raise(key)
        except (DecryptionFailed, KeyStoreError):
            log.error("session data key did not unwrap", extra={"session": key.session_id})
            return None

    def _open_version(
        self,
        key: SessionKey | None,
        data_key: bytes | None,
        note: StoredNote,
        version: notes_store.StoredVersion,
    ) -> NoteVersion:
        if key is not None and key.destroyed_at is not None:
            return NoteVersion(
                version.version,
                version.saved_at,
                None,
                Unreadable.DESTROYED,
                destroyed_at=key.destroyed_at,
            )
        if data_key is None:
            return NoteVersion(
                version.version, version.saved_at, None, Unreadable.DECRYPTION_FAILED
            )
        binding = NoteBinding(
            note.note_id, note.session_id, note.author_id, version.kek_version, version.version
        )
        try:
            body = decode_body(open_sealed(data_key, version.sealed, binding))
        except (DecryptionFailed, ValueError):
            log.error(
                "note version did not decrypt",
                extra={"note": note.note_id, "version": version.version},
            )
            return NoteVersion(
                version.version, version.saved_at, None, Unreadable.DECRYPTION_FAILED
            )
        return NoteVersion(version.version, version.saved_at, body)


@dataclass(frozen=True, slots=True)
class SealedText:
    """Text sealed with a session's data key, as stored (three columns)."""

    kek_version: int
    nonce: bytes
    ciphertext: bytes


def _text_binding(session_id: str, label: str, kek_version: int) -> NoteBinding:
    # The "text:" prefix keeps these apart from notes, whose ids cannot contain ':'.
    return NoteBinding(f"text:{label}", session_id, "", kek_version, 0)


def _limit_refusal(limit: str, limits: NoteLimits) -> NoteRefused:
    if limit == "versions":
        return NoteRefused(
            f"This note has reached its limit of {limits.max_versions} versions; "
            "start a new note to go on writing.",
            code="too_many_versions",
        )
    return NoteRefused(
        f"You have reached the limit of {limits.max_notes_per_author} notes in this session.",
        code="too_many_notes",
    )
