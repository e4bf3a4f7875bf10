"""Notes at rest and in use: real SQLite and PostgreSQL, real key files, real cipher.

Covers saving (versions, idempotent retries, limits), who reads what (with the audit
log), tampering (every way a stored version can be changed or moved fails closed),
key rotation (repeated, resumed, and under concurrent saves), key verification, the
start-up check, and retention (crypto-shredding, with a steered clock).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from telecircle.crypto.envelope import NoteBinding, Sealed, WrappedKey, rewrap, seal, unwrap
from telecircle.crypto.key_store import FileKeyStore, open_key_store
from telecircle.domain.access import Role
from telecircle.domain.events import ParticipantJoined
from telecircle.domain.ids import ParticipantId, SessionId, new_room_code
from telecircle.domain.notes import NoteBody, NoteLimits, NoteRefused, Unreadable, encode_body
from telecircle.services.audit import AuditLog
from telecircle.services.key_rotation import rotate_keys, verify_keys
from telecircle.services.notes import KeysMissing, NotesService
from telecircle.services.retention import DAY, NotesRetention
from telecircle.storage import accounts_store, notes_store, org_store, stores
from telecircle.storage.accounts_store import UserRecord
from telecircle.storage.database import Database, open_database
from telecircle.storage.tables import NoteVersionRow, SessionKeyRow
from tests.services.conftest import SteerableClock
from tests.storage.conftest import database, db_url, postgres_unreachable  # noqa: F401

LIMITS = NoteLimits(max_chars=500, max_versions=5, max_notes_per_author=3)
SECRET_TEXT = "Patient spoke about the night of the accident zq7"
SECRET_TOPIC = "grief-topic-xk9"
RETENTION_DAYS = 30


@dataclass
class Clinic:
    db: Database
    keys: FileKeyStore
    clock: SteerableClock
    audit: AuditLog
    notes: NotesService
    therapist: UserRecord
    co: UserRecord
    outsider: UserRecord
    admin: UserRecord
    room_id: str
    session_id: str
    patient_id: str

    def body(self, text: str = SECRET_TEXT, *, tagged: bool = False) -> NoteBody:
        return NoteBody(text, SECRET_TOPIC, (self.patient_id,) if tagged else ())

    async def save(
        self, note_id: str, save_id: str, body: NoteBody | None = None, *, author: str = ""
    ) -> int:
        saved = await self.notes.save(
            author_id=author or self.therapist.id,
            room_id=self.room_id,
            session_id=self.session_id,
            note_id=note_id,
            save_id=save_id,
            body=body or self.body(),
        )
        return saved.version

    async def new_session(self) -> str:
        """End the current session and open another in the same room."""
        await stores.end_session(self.db, SessionId(self.session_id), self.clock.now())
        session = await stores.open_session(self.db, self.room_id, self.clock.now())  # type: ignore[arg-type]
        self.session_id = session.id
        return session.id


async def _user(db: Database, name: str, role: Role) -> UserRecord:
    return await accounts_store.create_user(
        db, username=name, display_name=name.title(), role=role, now=1.0
    )


@pytest.fixture
async def clinic(database: Database, tmp_path: Path) -> AsyncIterator[Clinic]:  # noqa: F811
    clock = SteerableClock()
    audit = AuditLog(database, b"k" * 32, clock)
    keys = open_key_store(tmp_path / "keys", create=True)
    therapist = await _user(database, "therapist", Role.THERAPIST)
    co = await _user(database, "co", Role.CO_FACILITATOR)
    outsider = await _user(database, "outsider", Role.THERAPIST)
    admin = await _user(database, "admin", Role.ADMINISTRATOR)
    room = await stores.create_room(database, "Group", 10, new_room_code())
    await org_store.assign_clinician(database, room.id, therapist.id, "owner")
    await org_store.assign_clinician(database, room.id, co.id, "co_facilitator")
    session = await stores.open_session(database, room.id, clock.now())
    patient = ParticipantId("p_patient1")
    await stores.record_events(
        database, session.id, [ParticipantJoined(patient, "Pat", clock.now())]
    )
    yield Clinic(
        db=database,
        keys=keys,
        clock=clock,
        audit=audit,
        notes=NotesService(database, keys, clock, audit, LIMITS),
        therapist=therapist,
        co=co,
        outsider=outsider,
        admin=admin,
        room_id=room.id,
        session_id=session.id,
        patient_id=patient,
    )


async def _texts(clinic: Clinic, reader: UserRecord | None = None) -> dict[str, list[str | None]]:
    notes = await clinic.notes.notes_for_record(reader or clinic.therapist, clinic.session_id)
    return {
        note.note_id: [v.body.text if v.body else None for v in note.versions] for note in notes
    }


# ---------------------------------------------------------------------------- saving


async def test_saves_become_versions_and_read_back(clinic: Clinic) -> None:
    assert await clinic.save("note-0001", "save-0001", clinic.body("first", tagged=True)) == 1
    assert await clinic.save("note-0001", "save-0002", clinic.body("second")) == 2
    panel = await clinic.notes.own_notes(clinic.therapist.id, clinic.session_id)
    [note] = panel.notes
    assert note.latest.version == 2
    assert note.latest.body == NoteBody("second", SECRET_TOPIC, ())
    assert await _texts(clinic) == {"note-0001": ["first", "second"]}
    first = (await clinic.notes.notes_for_record(clinic.therapist, clinic.session_id))[0]
    assert first.versions[0].body == NoteBody("first", SECRET_TOPIC, (clinic.patient_id,))


async def test_a_retried_save_is_acknowledged_again_not_stored_twice(clinic: Clinic) -> None:
    assert await clinic.save("note-0001", "save-0001") == 1
    assert await clinic.save("note-0001", "save-0001") == 1
    assert await clinic.save("note-0001", "save-0002") == 2
    assert await clinic.save("note-0001", "save-0001") == 1
    assert len((await _texts(clinic))["note-0001"]) == 2


async def test_concurrent_first_saves_share_one_data_key(clinic: Clinic) -> None:
    await asyncio.gather(*(clinic.save(f"note-000{i}", f"save-000{i}") for i in range(3)))
    async with clinic.db.read() as conn:
        keys = (await conn.execute(select(SessionKeyRow.session_id))).all()
    assert len(keys) == 1
    assert all(texts == [SECRET_TEXT] for texts in (await _texts(clinic)).values())


@pytest.mark.parametrize(
    ("note_id", "body", "code"),
    [
        ("note-0001", NoteBody("zebra" * 101), "note_too_long"),
        ("note-0001", NoteBody("ok", "zebra" * 41), "topic_too_long"),
        ("note-0001", NoteBody("zebra \ud800"), "invalid_note"),
        ("note-0001", NoteBody("zebra \x00"), "invalid_note"),
        ("short", NoteBody("ok"), "invalid_note"),
        ("note 0001!", NoteBody("ok"), "invalid_note"),
        ("note-0001", NoteBody("ok", "", ("p_not_here",)), "invalid_note"),
    ],
    ids=["too-long", "topic", "surrogate", "nul", "short-id", "bad-id", "unknown-tag"],
)
async def test_bad_saves_are_refused_without_echoing_input(
    clinic: Clinic, note_id: str, body: NoteBody, code: str
) -> None:
    with pytest.raises(NoteRefused) as refused:
        await clinic.save(note_id, "save-0001", body)
    assert refused.value.code == code
    assert "zebra" not in refused.value.message
    assert await _texts(clinic) == {}


async def test_version_and_note_limits(clinic: Clinic) -> None:
    for i in range(LIMITS.max_versions):
        await clinic.save("note-0001", f"save-000{i}")
    with pytest.raises(NoteRefused) as refused:
        await clinic.save("note-0001", "save-9999")
    assert refused.value.code == "too_many_versions"
    assert "5 versions" in refused.value.message
    for i in range(2, LIMITS.max_notes_per_author + 1):
        await clinic.save(f"note-000{i}", "save-0001")
    with pytest.raises(NoteRefused) as refused:
        await clinic.save("note-0009", "save-0001")
    assert refused.value.code == "too_many_notes"


async def test_a_note_cannot_be_taken_over_or_moved(clinic: Clinic) -> None:
    await clinic.save("note-0001", "save-0001")
    with pytest.raises(NoteRefused) as refused:  # another clinician reusing the id
        await clinic.save("note-0001", "save-0002", author=clinic.co.id)
    assert refused.value.code == "note_not_found"
    other_room = await stores.create_room(clinic.db, "Other", 10, new_room_code())
    with pytest.raises(NoteRefused):  # the session is not of the room named
        await clinic.notes.save(
            author_id=clinic.therapist.id,
            room_id=other_room.id,
            session_id=clinic.session_id,
            note_id="note-0002",
            save_id="save-0001",
            body=clinic.body(),
        )
    for stranger in (clinic.outsider, clinic.admin):  # not a clinician of the room
        with pytest.raises(NoteRefused) as refused:
            await clinic.save("note-0003", "save-0001", author=stranger.id)
        assert refused.value.code == "note_not_found"
    assert set(await _texts(clinic)) == {"note-0001"}


async def test_an_ended_sessions_note_is_saved_by_its_clinician(clinic: Clinic) -> None:
    await clinic.save("note-0001", "save-0001", clinic.body("typed in the session"))
    ended = clinic.session_id
    await clinic.new_session()
    saved = await clinic.notes.save(
        author_id=clinic.therapist.id,
        session_id=ended,
        note_id="note-0001",
        save_id="save-0002",
        body=clinic.body("typed as it ended"),
    )
    assert saved.version == 2
    clinic.session_id = ended
    assert await _texts(clinic) == {"note-0001": ["typed in the session", "typed as it ended"]}


async def test_a_purge_waits_for_a_save_that_holds_the_key(clinic: Clinic) -> None:
    """A save reads the session's key under a row lock, so a purge cannot destroy the
    key between that read and the save's commit (which would acknowledge a version that
    can never be read)."""
    await clinic.save("note-0001", "save-0001")
    old = clinic.session_id
    await clinic.new_session()
    clinic.clock.offset += RETENTION_DAYS * DAY + 1
    retention = NotesRetention(clinic.db, clinic.clock, clinic.audit, _org_days)
    sealing, release = threading.Event(), threading.Event()

    def hold_then_seal(key: notes_store.SessionKey, version: int) -> Sealed:
        sealing.set()  # inside the save's transaction, after it read the key
        release.wait(timeout=30)
        data_key = unwrap(key.wrapped, clinic.keys.get(key.kek_version), old)  # type: ignore[arg-type]
        binding = NoteBinding("note-0001", old, clinic.therapist.id, key.kek_version, version)
        return seal(data_key, encode_body(clinic.body("the last words")), binding)

    async def save_elsewhere() -> notes_store.SaveOutcome:
        # Its own event loop and connection (another request of the server).
        db = await open_database(str(clinic.db.engine.url.render_as_string(hide_password=False)))
        try:
            request = notes_store.SaveRequest(
                old, "note-0001", clinic.therapist.id, "save-0002", clinic.clock.now(), 9, 9
            )
            return await notes_store.save_version(db, request, _no_new_key, hold_then_seal)
        finally:
            await db.close()

    saving = asyncio.create_task(asyncio.to_thread(asyncio.run, save_elsewhere()))
    assert await asyncio.to_thread(sealing.wait, 30)
    purge = asyncio.create_task(retention.purge())
    await asyncio.sleep(0.5)
    assert not purge.done()  # waiting for the save's lock on the key
    release.set()
    assert (await saving).version == 2
    assert await purge == [old]  # then destroys it, acknowledged save and all


# --------------------------------------------------------------------- who reads


async def test_only_the_author_reads_unless_the_room_shares(clinic: Clinic) -> None:
    await clinic.save("note-0001", "save-0001")
    await clinic.save("note-co01", "save-0001", author=clinic.co.id)
    assert set(await _texts(clinic, clinic.therapist)) == {"note-0001"}
    assert set(await _texts(clinic, clinic.co)) == {"note-co01"}
    assert await _texts(clinic, clinic.outsider) == {}
    assert await _texts(clinic, clinic.admin) == {}
    room = await stores.get_room(clinic.db, clinic.room_id)  # type: ignore[arg-type]
    assert room is not None
    await stores.update_room(
        clinic.db,
        room.id,
        name=room.name,
        participant_limit=room.participant_limit,
        recording_consent_required=None,
        notes_retention_days=None,
        notes_shared=True,
    )
    assert set(await _texts(clinic, clinic.co)) == {"note-0001", "note-co01"}
    assert await _texts(clinic, clinic.outsider) == {}
    assert await _texts(clinic, clinic.admin) == {}


async def test_every_read_is_audited_with_ids_only(clinic: Clinic) -> None:
    await clinic.save("note-0001", "save-0001")
    await clinic.notes.own_notes(clinic.therapist.id, clinic.session_id)
    await clinic.notes.notes_for_record(clinic.co, clinic.session_id)
    page = await clinic.audit.page(action="notes_read", newest_first=False)
    assert [(e.actor, e.target, dict(e.details)) for e in page.entries] == [
        (clinic.therapist.id, clinic.session_id, {"notes": 1, "via": "notes_panel"}),
        (clinic.co.id, clinic.session_id, {"notes": 0, "via": "session_record"}),
    ]


# ------------------------------------------------------------------------ tampering


async def _only_version(db: Database) -> int:
    async with db.read() as conn:
        return (await conn.execute(select(NoteVersionRow.id))).scalar_one()


@pytest.mark.parametrize(
    "change",
    [
        {"ciphertext": b"\x00" * 40},
        {"nonce": b"\x01" * 12},
        {"kek_version": 7},
        {"version": 3},
    ],
    ids=["ciphertext", "nonce", "key-version", "note-version"],
)
async def test_a_changed_version_fails_closed(clinic: Clinic, change: dict[str, object]) -> None:
    await clinic.save("note-0001", "save-0001")
    async with clinic.db.write() as conn:
        await conn.execute(
            update(NoteVersionRow)
            .where(NoteVersionRow.id == await _only_version(clinic.db))
            .values(**change)
        )
    [note] = await clinic.notes.notes_for_record(clinic.therapist, clinic.session_id)
    assert note.latest.body is None
    assert note.latest.unreadable is Unreadable.DECRYPTION_FAILED


async def test_a_ciphertext_copied_to_another_note_fails(clinic: Clinic) -> None:
    await clinic.save("note-0001", "save-0001", clinic.body("the real one"))
    await clinic.save("note-0002", "save-0001", clinic.body("the other"))
    async with clinic.db.write() as conn:
        source = (
            await conn.execute(
                select(NoteVersionRow.nonce, NoteVersionRow.ciphertext).where(
                    NoteVersionRow.note_id == "note-0001"
                )
            )
        ).one()
        await conn.execute(
            update(NoteVersionRow)
            .where(NoteVersionRow.note_id == "note-0002")
            .values(nonce=source.nonce, ciphertext=source.ciphertext)
        )
    assert await _texts(clinic) == {"note-0001": ["the real one"], "note-0002": [None]}


async def test_a_data_key_copied_to_another_session_fails(clinic: Clinic) -> None:
    await clinic.save("note-0001", "save-0001")
    first = clinic.session_id
    await clinic.new_session()
    await clinic.save("note-0002", "save-0001")
    async with clinic.db.write() as conn:
        key = (
            await conn.execute(select(SessionKeyRow).where(SessionKeyRow.session_id == first))
        ).one()
        await conn.execute(
            update(SessionKeyRow)
            .where(SessionKeyRow.session_id == clinic.session_id)
            .values(nonce=key.nonce, wrapped=key.wrapped, kek_version=key.kek_version)
        )
    assert await _texts(clinic) == {"note-0002": [None]}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # its files are on disk here
async def test_no_note_text_in_the_database_files(clinic: Clinic) -> None:
    for i in range(3):
        await clinic.save("note-0001", f"save-000{i}", clinic.body(f"{SECRET_TEXT} {i}"))
    path = Path(clinic.db.engine.url.database or "")
    raw = b"".join(
        Path(f"{path}{suffix}").read_bytes()
        for suffix in ("", "-wal")
        if Path(f"{path}{suffix}").exists()
    )
    assert len(raw) > 0
    for secret in (SECRET_TEXT, SECRET_TOPIC):
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            assert secret.encode(encoding) not in raw
    async with clinic.db.read() as conn:
        assert (await conn.execute(text("PRAGMA secure_delete"))).scalar_one() == 1


# ------------------------------------------------------------------------- rotation


async def test_rotation_rewraps_keys_and_leaves_notes_readable(clinic: Clinic) -> None:
    await clinic.save("note-0001", "save-0001")
    await clinic.new_session()
    await clinic.save("note-0002", "save-0001")
    before = await _ciphertexts(clinic.db)
    report = await rotate_keys(clinic.db, clinic.keys, clinic.audit)
    assert (report.version, report.rewrapped) == (2, 2)
    assert await notes_store.kek_versions_in_use(clinic.db) == {2}
    assert await _ciphertexts(clinic.db) == before  # notes untouched
    again = await rotate_keys(clinic.db, clinic.keys, clinic.audit)  # safe to run twice
    assert (again.version, again.rewrapped) == (3, 2)
    assert await _texts(clinic) == {"note-0002": [SECRET_TEXT]}
    verified = await verify_keys(clinic.db, clinic.keys)
    assert verified.ok and verified.checked == 2 and verified.versions_in_use == (3,)
    rotations = await clinic.audit.page(action="keys_rotated")
    assert rotations.total == 2
    # New sessions take the newest key version.
    await clinic.new_session()
    await clinic.save("note-0003", "save-0001")
    assert await notes_store.kek_versions_in_use(clinic.db) == {3}


async def test_a_rotation_cut_short_is_finished_by_the_next(clinic: Clinic) -> None:
    for _ in range(3):
        await clinic.save(f"note-{clinic.session_id}"[:20], "save-0001")
        await clinic.new_session()
    # A crash after the new version was made and one key was re-wrapped:
    half = clinic.keys.add_version()
    [first, *_rest] = await notes_store.live_keys(clinic.db)
    assert first.wrapped is not None
    replacement = rewrap(first.wrapped, clinic.keys.get(1), half, first.session_id)
    assert await notes_store.replace_wrapped_key(
        clinic.db, first.session_id, first.wrapped, replacement
    )
    assert await notes_store.kek_versions_in_use(clinic.db) == {1, 2}
    report = await rotate_keys(clinic.db, clinic.keys, clinic.audit)
    assert (report.version, report.rewrapped) == (3, 3)
    assert (await verify_keys(clinic.db, clinic.keys)).ok
    for key in await notes_store.live_keys(clinic.db):
        notes = await clinic.notes.notes_for_record(clinic.therapist, key.session_id)
        assert [n.latest.body and n.latest.body.text for n in notes] == [SECRET_TEXT]


async def test_rotation_under_concurrent_saves_loses_nothing(clinic: Clinic) -> None:
    sessions = []
    for _ in range(4):
        await clinic.new_session()
        sessions.append(clinic.session_id)
    acked: list[tuple[str, str, int]] = []

    async def autosave(session_id: str) -> None:
        for i in range(12):
            saved = await clinic.notes.save(
                author_id=clinic.therapist.id,
                room_id=clinic.room_id,
                session_id=session_id,
                note_id=f"note-{session_id}"[:30],
                save_id=f"save-{i:04d}",
                body=clinic.body(f"draft {i}"),
            )
            acked.append((session_id, saved.note_id, saved.version))
            await asyncio.sleep(0)

    async def rotate_twice() -> None:
        for _ in range(2):
            await rotate_keys(clinic.db, clinic.keys, clinic.audit)
            await asyncio.sleep(0)

    notes = NotesService(clinic.db, clinic.keys, clinic.clock, clinic.audit, _roomy_limits())
    clinic.notes = notes
    await asyncio.gather(*(autosave(s) for s in sessions), rotate_twice())
    assert len(acked) == 4 * 12
    assert (await verify_keys(clinic.db, clinic.keys)).ok
    for session_id in sessions:
        [note] = await notes.notes_for_record(clinic.therapist, session_id)
        assert [v.body and v.body.text for v in note.versions] == [f"draft {i}" for i in range(12)]


def _no_new_key() -> WrappedKey:
    raise AssertionError("the session has its key")


def _roomy_limits() -> NoteLimits:
    return NoteLimits(max_chars=500, max_versions=100, max_notes_per_author=10)


async def _ciphertexts(db: Database) -> list[tuple[bytes, bytes]]:
    async with db.read() as conn:
        rows = await conn.execute(
            select(NoteVersionRow.nonce, NoteVersionRow.ciphertext).order_by(NoteVersionRow.id)
        )
        return [(bytes(r.nonce), bytes(r.ciphertext)) for r in rows]


# --------------------------------------------------------------- fail closed at start


async def test_start_refuses_when_a_key_version_in_use_is_missing(
    clinic: Clinic, tmp_path: Path
) -> None:
    await clinic.notes.require_keys()  # nothing in use yet
    await clinic.save("note-0001", "save-0001")
    await clinic.notes.require_keys()
    clinic.keys.add_version()  # another version is there, but not the one in use
    os.rename(clinic.keys.path_of(1), tmp_path / "kek-v0001.key.moved")
    restarted = FileKeyStore(clinic.keys.folder)  # a new process: nothing read yet
    with pytest.raises(KeysMissing) as missing:
        await NotesService(clinic.db, restarted, clinic.clock, clinic.audit, LIMITS).require_keys()
    assert "version(s) 1" in missing.value.message
    assert "key backup" in missing.value.message
    report = await verify_keys(clinic.db, restarted)
    assert not report.ok and "missing" in report.failures[0][1]
    # A different key of the same number is caught too (a key folder made afresh).
    replaced = open_key_store(tmp_path / "fresh-keys", create=True)
    with pytest.raises(KeysMissing):
        await NotesService(clinic.db, replaced, clinic.clock, clinic.audit, LIMITS).require_keys()
    assert not (await verify_keys(clinic.db, replaced)).ok
    # And the note reads as undecryptable, never as empty.
    notes = NotesService(clinic.db, replaced, clinic.clock, clinic.audit, LIMITS)
    [note] = await notes.notes_for_record(clinic.therapist, clinic.session_id)
    assert note.latest.unreadable is Unreadable.DECRYPTION_FAILED


# ------------------------------------------------------------------------ retention


async def _org_days() -> int:
    return RETENTION_DAYS


async def test_retention_destroys_expired_sessions_keys(clinic: Clinic) -> None:
    retention = NotesRetention(clinic.db, clinic.clock, clinic.audit, _org_days)
    await clinic.save("note-0001", "save-0001")
    old = clinic.session_id
    await clinic.new_session()  # ends the first session now
    await clinic.save("note-0002", "save-0001")
    assert await retention.purge() == []
    clinic.clock.offset += RETENTION_DAYS * DAY - 60
    assert await retention.purge() == []  # a minute early
    clinic.clock.offset += 120
    assert await retention.purge() == [old]
    assert await retention.purge() == []  # once only
    notes = await clinic.notes.notes_for_record(clinic.therapist, old)
    [version] = notes[0].versions
    assert version.body is None and version.unreadable is Unreadable.DESTROYED
    assert version.destroyed_at == pytest.approx(clinic.clock.now(), abs=5)
    with pytest.raises(NoteRefused) as refused:
        await clinic.notes.save(
            author_id=clinic.therapist.id,
            room_id=clinic.room_id,
            session_id=old,
            note_id="note-0001",
            save_id="save-0002",
            body=clinic.body(),
        )
    assert refused.value.code == "notes_destroyed"
    # The open session is untouched, and the purge is in the audit log.
    assert await _texts(clinic) == {"note-0002": [SECRET_TEXT]}
    purged = await clinic.audit.page(action="notes_purged")
    assert [e.target for e in purged.entries] == [old]
    assert (await verify_keys(clinic.db, clinic.keys)).checked == 1


async def test_a_rooms_retention_overrides_the_organisations(clinic: Clinic) -> None:
    room = await stores.get_room(clinic.db, clinic.room_id)  # type: ignore[arg-type]
    assert room is not None
    await stores.update_room(
        clinic.db,
        room.id,
        name=room.name,
        participant_limit=room.participant_limit,
        recording_consent_required=None,
        notes_retention_days=2,
    )
    await clinic.save("note-0001", "save-0001")
    old = clinic.session_id
    await clinic.new_session()
    clinic.clock.offset += 2 * DAY + 1
    retention = NotesRetention(clinic.db, clinic.clock, clinic.audit, _org_days)
    assert await retention.purge() == [old]


async def test_other_text_is_sealed_with_the_session_and_shredded_with_it(
    clinic: Clinic,
) -> None:
    sealed = await clinic.notes.seal_text(clinic.session_id, "feedback:r1", "It helped zq8")
    assert b"zq8" not in sealed.ciphertext
    assert await clinic.notes.open_text(clinic.session_id, "feedback:r1", sealed) == (
        "It helped zq8"
    )
    moved = await clinic.notes.open_text(clinic.session_id, "feedback:r2", sealed)
    assert moved is Unreadable.DECRYPTION_FAILED
    old = clinic.session_id
    await clinic.new_session()
    clinic.clock.offset += RETENTION_DAYS * DAY + 1
    await NotesRetention(clinic.db, clinic.clock, clinic.audit, _org_days).purge()
    assert await clinic.notes.open_text(old, "feedback:r1", sealed) is Unreadable.DESTROYED
    with pytest.raises(NoteRefused):
        await clinic.notes.seal_text(old, "feedback:r3", "late")


async def test_the_server_purges_on_its_own_schedule(clinic: Clinic) -> None:
    await clinic.save("note-0001", "save-0001")
    old = clinic.session_id
    await clinic.new_session()
    retention = NotesRetention(clinic.db, clinic.clock, clinic.audit, _org_days)
    retention.start(interval=0.05)
    try:
        clinic.clock.offset += RETENTION_DAYS * DAY + 1  # a month later, the job runs
        for _ in range(200):  # bounded: ten seconds at most
            if (await clinic.audit.page(action="notes_purged")).total:
                break
            await asyncio.sleep(0.05)
    finally:
        await retention.close()
    purged = await clinic.audit.page(action="notes_purged")
    assert [entry.target for entry in purged.entries] == [old]
