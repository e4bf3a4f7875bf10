"""Notes across real ``telecircle`` processes: a server killed (SIGKILL) in the middle
of a stream of autosaves loses no acknowledged save and leaves no half-written note,
and the saves the browser still had queued are stored after the restart; the server
refuses to start without a key version in use; ``keys rotate`` and ``keys verify`` run
against the live data folder.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from telecircle.config import load_settings
from telecircle.crypto.key_store import open_key_store
from telecircle.domain.notes import NoteLimits
from telecircle.services.audit import AuditLog
from telecircle.services.clock import SystemClock
from telecircle.services.notes import NotesService
from telecircle.storage import accounts_store, notes_store
from telecircle.storage.database import open_database
from tests.conftest import start_server
from tests.services.test_restart_process import free_port, join, telecircle
from tests.signalling.client import Client
from tests.storage.conftest import db_url, postgres_unreachable  # noqa: F401

pytestmark = pytest.mark.timeout(180)

NOTES = 4
KILL_AFTER_ACKS = 40
ROUNDS = 200  # bounded: each note's stream stops by itself


def cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "telecircle"), "--data-dir", str(data_dir)]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=120, check=False
    )


def payload(session_id: str, note: int, n: int) -> dict[str, Any]:
    return {
        "session_id": session_id,
        "note_id": f"note-{note:04d}",
        "save_id": f"save-{note:04d}-{n:04d}",
        "text": f"note {note} draft {n} " + "words " * 50,
    }


async def test_a_killed_server_loses_no_acknowledged_save(
    tmp_path: Path,
    db_url: str,  # noqa: F811 (SQLite, and PostgreSQL where it is reachable)
) -> None:
    setup = await start_server(tmp_path, database_url=db_url)
    code = await setup.create_room()
    cookie = await setup.owner_cookie(code)
    data_dir = setup.settings.data_dir
    await setup.runner.cleanup()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    acked: dict[str, int] = {}  # save_id -> version
    sent: dict[str, dict[str, Any]] = {}
    clients: list[Client] = []
    try:
        with telecircle(data_dir, port, log, db_url) as server:
            therapist, _ = await join(url, cookie, code)
            clients.append(therapist)
            session_id = (await therapist.call("list_notes", {}))["data"]["session_id"]
            killed = asyncio.Event()

            async def autosave(note: int) -> None:
                # One save in flight per note, as the notes panel does.
                for n in range(ROUNDS):
                    if killed.is_set():
                        return
                    request = payload(session_id, note, n)
                    sent[request["save_id"]] = request
                    try:
                        ack = await therapist.call("save_note", request, timeout=5)
                    except Exception:  # the server died under this save: not acknowledged
                        return
                    if not ack.get("ok"):
                        return
                    acked[request["save_id"]] = ack["data"]["version"]
                    if len(acked) >= KILL_AFTER_ACKS and not killed.is_set():
                        killed.set()
                        server.send_signal(signal.SIGKILL)

            await asyncio.gather(*(autosave(note) for note in range(NOTES)))
            server.wait(timeout=30)
            assert server.returncode == -signal.SIGKILL
        assert len(acked) >= KILL_AFTER_ACKS
        unacknowledged = [save_id for save_id in sent if save_id not in acked]

        with telecircle(data_dir, port, log, db_url):
            therapist2, _ = await join(url, cookie, code)
            clients.append(therapist2)
            # The browser's queue: every save it sent without an answer, again.
            for save_id in unacknowledged:
                ack = await therapist2.call("save_note", sent[save_id])
                assert ack["ok"], ack
                acked[save_id] = ack["data"]["version"]
            listed = (await therapist2.call("list_notes", {}))["data"]["notes"]
            assert len(listed) == NOTES
    finally:
        for client in clients:
            if client.sio.connected:
                await client.close()

    assert "words words" not in log.read_text()  # no note text in the server's logs
    # Every acknowledged save is there, with its text, in order, and nothing else is.
    versions = await _stored_versions(data_dir, db_url)
    for save_id, version in acked.items():
        request = sent[save_id]
        assert versions[(request["note_id"], version)] == request["text"]
    for note in range(NOTES):
        numbers = sorted(v for (n, v) in versions if n == f"note-{note:04d}")
        assert numbers == list(range(1, len(numbers) + 1))  # gap-free, none half-written
    assert len(versions) == len(acked)


async def _stored_versions(data_dir: Path, url: str) -> dict[tuple[str, int], str]:
    """Every stored version's text, read with the keys from the data folder."""
    settings = load_settings(data_dir=data_dir, database_url=url)
    db = await open_database(settings.effective_database_url)
    try:
        keys = open_key_store(settings.effective_key_dir, create=False)
        limits = NoteLimits(max_chars=10_000, max_versions=10_000, max_notes_per_author=100)
        notes = NotesService(
            db, keys, SystemClock(), AuditLog(db, b"k" * 32, SystemClock()), limits
        )
        _, stored = await notes_store.load_notes(
            db, (await notes_store.live_keys(db))[0].session_id, latest_only=True
        )
        author = await accounts_store.get_user(db, stored[0].author_id)
        assert author is not None
        texts: dict[tuple[str, int], str] = {}
        for note in await notes.notes_for_record(author, stored[0].session_id):
            for version in note.versions:
                assert version.body is not None, (note.note_id, version.version)
                texts[(note.note_id, version.version)] = version.body.text
        return texts
    finally:
        await db.close()


async def test_start_refuses_without_a_key_in_use_and_keys_commands(tmp_path: Path) -> None:
    setup = await start_server(tmp_path)
    code = await setup.create_room()
    cookie = await setup.owner_cookie(code)
    data_dir = setup.settings.data_dir
    key_dir = setup.settings.effective_key_dir
    await setup.runner.cleanup()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with telecircle(data_dir, port, log):
        therapist, _ = await join(url, cookie, code)
        session_id = (await therapist.call("list_notes", {}))["data"]["session_id"]
        assert (await therapist.call("save_note", payload(session_id, 1, 1)))["ok"]
        await therapist.close()

    verified = cli(data_dir, "keys", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "All 1 live data keys unwrap" in verified.stdout
    rotated = cli(data_dir, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert "version 2 is now current; 1 data key(s) re-wrapped" in rotated.stdout
    again = cli(data_dir, "keys", "rotate")
    assert "version 3 is now current; 1 data key(s)" in again.stdout
    assert "Key versions in use: 3" in cli(data_dir, "keys", "verify").stdout

    # The key folder is lost: the server refuses to start, and says why.
    shutil.move(key_dir, tmp_path / "keys-elsewhere")
    refused = cli(data_dir, "serve", "--host", "127.0.0.1", "--port", str(port))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "did not start" in refused.stderr and "key" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert cli(data_dir, "keys", "verify").returncode == 2
    # Only the newest version is gone: named as missing.
    shutil.move(tmp_path / "keys-elsewhere", key_dir)
    (key_dir / "kek-v0003.key").rename(tmp_path / "kek-v0003.key")
    refused = cli(data_dir, "serve", "--host", "127.0.0.1", "--port", str(port))
    assert refused.returncode == 2
    assert "version(s) 3" in refused.stderr
    failed = cli(data_dir, "keys", "verify")
    assert failed.returncode == 1 and "key version 3 is missing" in failed.stdout
    # Restored from the backup: it starts again and the note reads.
    (tmp_path / "kek-v0003.key").rename(key_dir / "kek-v0003.key")
    with telecircle(data_dir, port, log):
        therapist, _ = await join(url, cookie, code)
        [note] = (await therapist.call("list_notes", {}))["data"]["notes"]
        assert note["text"] == payload(session_id, 1, 1)["text"]
        await therapist.close()
