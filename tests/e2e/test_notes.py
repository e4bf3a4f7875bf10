"""End-to-end: the clinician's notes panel beside the video (issue 6, "Notes while the
session runs").

The therapist (Alice) writes a note with a topic, tags a patient (Bob), marks the
moment with the button and with Alt+M from elsewhere on the page; the note says "Saved"
(acknowledged, versioned) and is listed as written after a reload. Bob's page has no
notes panel. With the signalling socket down (the test makes new websockets fail and
closes the open one, as a network drop would), what Alice types is kept in the browser
and the note says "Offline — will save"; once the socket is back it is saved, and the
browser's draft is gone. A draft typed offline survives reloads of the tab and is saved
when the page can connect again. A note longer than the server's limit is refused with
a clear message and kept; signing out wipes the browser's drafts. A note whose stored
ciphertext was tampered with is shown as "could not be decrypted", read-only, never as
an empty note.

The session ending loses nothing: "End session for all" waits for the therapist's notes,
and what a co-facilitator is still typing when it ends is saved through a connection of
the panel's own (the panel stays, read-only, and says "All notes saved"). Signing out of
the site's pages with a draft in the browser asks first: cancelling keeps the sign-in
and the draft; agreeing signs out and deletes it.

Waits are bounded polls; nothing is timed.
"""

from __future__ import annotations

import asyncio
import html
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Dialog

from tests.e2e.conftest import RECONNECT_GRACE_S, Site
from tests.e2e.group import admitted_patients
from tests.e2e.room_page import GREEN, RED, Browsers, RoomPage, eventually, session_cookie
from tests.e2e.site import Clinic, SiteError

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SAVE_TIMEOUT_S = 20
# Saving what is left after the session ended: the panel's own bound (10 s) and margin.
AFTER_SEAT_TIMEOUT_S = 30
RECONNECT_TIMEOUT_S = 40
# After a held seat's reconnect window: until the others' pages show it gone.
SEAT_GONE_TIMEOUT_S = 20
STAMP = re.compile(r"\[(\d+:)?\d{2}:\d{2}\] ")
DRAFT_PREFIX = "telecircle.note-draft:"
OFFLINE_FLAG = "telecircle-test-offline"

# Test-only: while the tab's session storage says so, new websockets go to a closed
# port (the page cannot reconnect, as with the network down); pages loaded meanwhile
# cannot connect at all. Installed after room_page's recorder, so sockets are recorded.
BLOCK_SOCKETS_JS = f"""
(() => {{
  const Previous = window.WebSocket;
  window.WebSocket = function (url, protocols) {{
    const offline = sessionStorage.getItem('{OFFLINE_FLAG}') === '1';
    return new Previous(offline ? 'ws://127.0.0.1:9/' : url, protocols);
  }};
  window.WebSocket.prototype = Previous.prototype;
  Object.assign(window.WebSocket, {{ CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 }});
}})();
"""

_DRAFTS_JS = f"""
() => Object.keys(localStorage)
  .filter((key) => key.startsWith('{DRAFT_PREFIX}'))
  .map((key) => JSON.parse(localStorage.getItem(key)))
"""

_NOTES_JS = """
() => Array.from(document.querySelectorAll('#notes-list .note')).map((note) => {
  const value = (selector) => {
    const field = note.querySelector(selector);
    return field ? field.value : null;
  };
  const text = (selector) => {
    const element = note.querySelector(selector);
    return element && !element.hidden ? element.textContent : null;
  };
  return {
    id: note.dataset.noteId,
    status: note.dataset.status || null,
    unreadable: note.dataset.unreadable || null,
    topic: value('.note-topic'),
    text: value('.note-text'),
    statusText: text('.note-status') || '',
    problem: text('.note-problem'),
    tagged: Array.from(note.querySelectorAll('.note-tag'))
      .filter((tag) => tag.querySelector('input').checked)
      .map((tag) => tag.querySelector('.note-tag-name').textContent),
    count: text('.note-count') || '',
  };
})
"""


class Notes:
    """The notes panel on one clinician's page."""

    def __init__(self, room: RoomPage) -> None:
        self.room = room
        self.page = room.page

    async def notes(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self.page.evaluate(_NOTES_JS)
        return rows

    async def drafts(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self.page.evaluate(_DRAFTS_JS)
        return rows

    async def panel_status(self) -> str:
        return (await self.page.text_content("#notes-status") or "").strip()

    async def wait_ready(self) -> None:
        """The panel is shown and has listed the session's notes."""
        await self.page.wait_for_selector("#notes-panel", state="visible", timeout=30_000)
        await self.page.wait_for_selector("#new-note-button:enabled", timeout=30_000)

    async def new_note(self) -> str:
        """Press "New note"; returns its id (the cursor is in its text)."""
        before = {note["id"] for note in await self.notes()}
        await self.page.click("#new-note-button")
        rows = await eventually(
            self.notes,
            lambda rows: any(row["id"] not in before for row in rows),
            10,
            f"{self.room.name}: a new note",
        )
        note_id: str = next(row["id"] for row in rows if row["id"] not in before)
        return note_id

    def note(self, note_id: str, part: str = "") -> str:
        return f'#notes-list .note[data-note-id="{note_id}"] {part}'.strip()

    async def row(self, note_id: str) -> dict[str, Any] | None:
        return next((row for row in await self.notes() if row["id"] == note_id), None)

    async def wait_row(
        self, note_id: str, accept: Any, what: str, timeout: float = SAVE_TIMEOUT_S
    ) -> dict[str, Any]:
        row: dict[str, Any] | None = await eventually(
            lambda: self.row(note_id),
            lambda row: row is not None and bool(accept(row)),
            timeout,
            f"{self.room.name}: note {what}",
        )
        assert row is not None
        return row

    async def wait_saved(self, note_id: str, text: str | None = None) -> dict[str, Any]:
        return await self.wait_row(
            note_id,
            lambda row: (
                row["status"] == "saved"
                and row["statusText"].startswith("Saved")
                and (text is None or row["text"] == text)
            ),
            "saved",
        )

    async def type_text(self, note_id: str, text: str) -> None:
        """Type at the end of the note's text, key by key (as a person types)."""
        area = self.page.locator(self.note(note_id, ".note-text"))
        await area.focus()
        await self.page.keyboard.press("Control+End")
        await self.page.keyboard.type(text)

    async def go_offline(self) -> None:
        """The socket drops and cannot come back until ``go_online``."""
        seen = len(await self.room.state_history())
        await self.page.evaluate(f"sessionStorage.setItem('{OFFLINE_FLAG}', '1')")
        await self.page.evaluate(
            "window.__telecircleTestSockets.filter((s) => s.readyState === 1)"
            ".forEach((s) => s.close())"
        )
        await self.room.wait_state_seen("reconnecting", since=seen, timeout=10)

    async def go_online(self) -> None:
        await self.page.evaluate(f"sessionStorage.removeItem('{OFFLINE_FLAG}')")


async def clinician_in_room(
    site: Site, browsers: Browsers, clinic: Clinic, room_id: str, name: str
) -> tuple[RoomPage, Notes]:
    """``clinic``'s clinician in the session of ``room_id``, with the panel ready."""
    base = site.server.base_url
    _, room = await browsers.open(
        name, RED, cookies=[session_cookie(base, clinic.session_cookie())]
    )
    await room.page.add_init_script(BLOCK_SOCKETS_JS)
    await room.enter_as_clinician(f"{base}/room/{room_id}")
    notes = Notes(room)
    await notes.wait_ready()
    return room, notes


async def reload_into_session(room: RoomPage, notes: Notes) -> None:
    await room.page.reload()
    await room.wait_state("connected")
    await notes.wait_ready()


async def test_a_note_saves_is_listed_after_a_reload_and_patients_have_no_panel(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    room_id = await asyncio.to_thread(site.therapist.create_room, "Notes group", 4)
    alice, notes = await clinician_in_room(site, browsers, site.therapist, room_id, "Alice")
    patients = await admitted_patients(site, browsers, room_id, alice, {"Bob": GREEN})
    bob = patients["Bob"]

    # A patient's page has no notes panel, no notes button, and no Alt+M behaviour.
    assert await bob.page.query_selector("#notes-panel") is None
    assert await bob.page.query_selector("#notes-toggle") is None
    await bob.page.keyboard.press("Alt+KeyM")
    assert await bob.page.evaluate(_DRAFTS_JS) == []

    assert await notes.panel_status() == ""
    note_id = await notes.new_note()
    # "New note" puts the cursor in the new note's text.
    focused = await alice.page.evaluate("document.activeElement.classList.contains('note-text')")
    assert focused
    await alice.page.fill(notes.note(note_id, ".note-topic"), "Sleep")
    await alice.page.locator(notes.note(note_id, ".note-tag"), has_text="Bob").click()
    await notes.type_text(note_id, "Bob slept better this week.")
    row = await notes.wait_saved(note_id, "Bob slept better this week.")
    assert row["topic"] == "Sleep" and row["tagged"] == ["Bob"]
    assert row["count"].startswith("27 / ")
    assert await notes.drafts() == [], "a draft goes once its save is acknowledged"
    assert await notes.panel_status() == "All notes saved"

    # "Mark this moment": the session-relative time at the cursor, and typing goes on.
    await alice.page.click(notes.note(note_id, ".note-mark"))
    await alice.page.keyboard.type("He mentioned nightmares.")
    # Alt+M from elsewhere on the page stamps the note last written in.
    await alice.page.focus("#mic-toggle")
    await alice.page.keyboard.press("Alt+KeyM")
    await alice.page.keyboard.type("Calmer now.")
    row = await notes.wait_saved(note_id)
    text = row["text"]
    stamps = STAMP.findall(text)
    assert len(stamps) == 2, text
    assert re.fullmatch(
        r"Bob slept better this week\. \[(\d+:)?\d{2}:\d{2}\] He mentioned nightmares\."
        r" \[(\d+:)?\d{2}:\d{2}\] Calmer now\.",
        text,
    ), text
    assert int(row["statusText"].split("version ")[1].rstrip(")")) >= 2
    await alice.screenshot(artifacts_dir, "notes-saved")

    # After a reload the note is listed as saved, with its topic and tag.
    await reload_into_session(alice, notes)
    row = await notes.wait_saved(note_id, text)
    assert row["topic"] == "Sleep"
    await notes.wait_row(note_id, lambda row: row["tagged"] == ["Bob"], "tagging Bob")
    assert await notes.drafts() == []


async def test_a_note_typed_offline_is_kept_and_saved_once_back(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    room_id = await asyncio.to_thread(site.therapist.create_room, "Offline notes group", 3)
    alice, notes = await clinician_in_room(site, browsers, site.therapist, room_id, "Alice")
    note_id = await notes.new_note()
    await notes.type_text(note_id, "Before the drop.")
    await notes.wait_saved(note_id, "Before the drop.")

    await notes.go_offline()
    await notes.type_text(note_id, " Typed offline.")
    offline = "Before the drop. Typed offline."
    row = await notes.wait_row(
        note_id, lambda row: row["status"] == "offline", "offline", timeout=10
    )
    assert row["statusText"] == "Offline — will save"
    assert await notes.panel_status() == "Offline — will save"
    drafts = await notes.drafts()
    assert [(d["note_id"], d["text"]) for d in drafts] == [(note_id, offline)]
    assert drafts[0]["base_version"] >= 1 and drafts[0]["save_id"]
    await alice.screenshot(artifacts_dir, "notes-offline")

    await notes.go_online()
    await alice.wait_state("connected", timeout=RECONNECT_TIMEOUT_S)
    await notes.wait_saved(note_id, offline)
    assert await notes.drafts() == []
    await reload_into_session(alice, notes)
    await notes.wait_saved(note_id, offline)


async def test_a_draft_survives_reloads_while_offline_and_is_saved_later(
    site: Site, browsers: Browsers
) -> None:
    room_id = await asyncio.to_thread(site.therapist.create_room, "Reload notes group", 3)
    alice, notes = await clinician_in_room(site, browsers, site.therapist, room_id, "Alice")
    note_id = await notes.new_note()
    await alice.page.fill(notes.note(note_id, ".note-topic"), "Never saved yet")
    await notes.go_offline()
    await notes.type_text(note_id, "Only in this browser.")
    await eventually(
        notes.drafts,
        lambda drafts: [d["text"] for d in drafts] == ["Only in this browser."],
        10,
        "the draft in the browser",
    )

    # A reload while the network is down cannot reach the session; the draft stays.
    await alice.page.reload()
    await alice.wait_state("error")
    assert [d["note_id"] for d in await notes.drafts()] == [note_id]

    # Back online, the page comes back into the session and saves the draft.
    await notes.go_online()
    await reload_into_session(alice, notes)
    row = await notes.wait_saved(note_id, "Only in this browser.")
    assert row["topic"] == "Never saved yet"
    assert await notes.drafts() == []


async def test_a_draft_outlives_the_seat_it_was_typed_in(site: Site, browsers: Browsers) -> None:
    """Drafts belong to the signed-in person, not to a seat: offline for longer than the
    server holds her seat (the session goes on with Bob), the clinician comes back in a
    new seat and the draft is still hers (it needs the account's id on the page:
    #app[data-user-id])."""
    room_id = await asyncio.to_thread(site.therapist.create_room, "Long drop notes group", 3)
    alice, notes = await clinician_in_room(site, browsers, site.therapist, room_id, "Alice")
    if not await alice.page.get_attribute("#app", "data-user-id"):
        pytest.skip("the call page does not say whose sign-in it is (#app[data-user-id])")
    # Bob keeps the session going while Alice is away.
    bob = (await admitted_patients(site, browsers, room_id, alice, {"Bob": GREEN}))["Bob"]
    await bob.wait_remote_names({"Alice"})
    note_id = await notes.new_note()
    await notes.go_offline()
    await notes.type_text(note_id, "Typed before a long drop.")
    await eventually(notes.drafts, lambda drafts: len(drafts) == 1, 10, "the draft kept")
    await alice.page.reload()
    await alice.wait_state("error")
    # Past the seat's hold: the server lets the seat go, and Bob's page shows it gone.
    await bob.wait_remote_names(set(), timeout=RECONNECT_GRACE_S + SEAT_GONE_TIMEOUT_S)

    await notes.go_online()
    await reload_into_session(alice, notes)
    await notes.wait_saved(note_id, "Typed before a long drop.")
    assert await notes.drafts() == []


async def test_a_note_over_the_limit_is_kept_and_sign_out_wipes_drafts(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    # Her own account, so signing out everywhere leaves the others' sign-ins alone.
    nia = await asyncio.to_thread(site.admin.create_clinician, "nia.notes", "Nia")
    room_id = await asyncio.to_thread(nia.create_room, "Limits group", 3)
    page, notes = await clinician_in_room(site, browsers, nia, room_id, "Nia")
    note_id = await notes.new_note()
    count = (await notes.row(note_id) or {}).get("count", "")
    match = re.fullmatch(r"0 / ([\d,.\s]+) characters", count)
    assert match, count
    limit = int(re.sub(r"\D", "", match.group(1)))

    await page.page.fill(notes.note(note_id, ".note-text"), "x" * (limit + 1))
    row = await notes.wait_row(note_id, lambda row: row["status"] == "refused", "refused")
    assert row["statusText"] == "Not saved — kept in this browser"
    assert row["problem"] is not None and "1 character over the limit" in row["problem"]
    assert "x" * 20 not in row["problem"], "the message never echoes the text"
    drafts = await notes.drafts()
    assert [(d["note_id"], len(d["text"])) for d in drafts] == [(note_id, limit + 1)]
    await page.screenshot(artifacts_dir, "notes-too-long")

    # Shortened, it saves.
    await page.page.fill(notes.note(note_id, ".note-text"), "x" * limit)
    await notes.wait_saved(note_id, "x" * limit)
    assert await notes.drafts() == []

    # Too long again, so the draft stays in the browser while she is connected: she is
    # signed out (everywhere, from another device), the page is told, and her drafts go
    # with her sign-in, text and all.
    await page.page.fill(notes.note(note_id, ".note-text"), "z" * (limit + 1))
    await eventually(
        notes.drafts,
        lambda drafts: len(drafts) == 1 and drafts[0]["text"].startswith("z"),
        10,
        "an unsaved draft",
    )
    await asyncio.to_thread(nia.client.post, "/account/sign-out-everywhere", {}, "/account")
    await page.wait_state("signed_out")
    assert await notes.drafts() == []
    assert await page.page.is_hidden("#notes-panel")
    assert await notes.notes() == [], "no note text stays on the page"


def tamper_latest_version(database: Path, note_id: str) -> None:
    """Flip a byte of the note's newest stored version (as an attacker or a broken disk
    would): it can no longer be decrypted."""
    with sqlite3.connect(database) as db:
        row = db.execute(
            "SELECT id, ciphertext FROM note_versions WHERE note_id = ? "
            "ORDER BY version DESC LIMIT 1",
            (note_id,),
        ).fetchone()
        assert row is not None, "the note's versions are stored"
        version_id, ciphertext = row
        tampered = bytes([ciphertext[0] ^ 0x01]) + bytes(ciphertext[1:])
        db.execute("UPDATE note_versions SET ciphertext = ? WHERE id = ?", (tampered, version_id))


async def test_a_note_that_cannot_be_decrypted_is_shown_as_such_read_only(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    room_id = await asyncio.to_thread(site.therapist.create_room, "Tampered notes group", 3)
    alice, notes = await clinician_in_room(site, browsers, site.therapist, room_id, "Alice")
    kept = await notes.new_note()
    await notes.type_text(kept, "This one stays readable.")
    await notes.wait_saved(kept, "This one stays readable.")
    broken = await notes.new_note()
    await notes.type_text(broken, "This one will be tampered with.")
    await notes.wait_saved(broken, "This one will be tampered with.")

    database = site.server.data_dir / "telecircle.db"
    await asyncio.to_thread(tamper_latest_version, database, broken)
    await reload_into_session(alice, notes)
    await notes.wait_saved(kept, "This one stays readable.")
    row = await notes.wait_row(
        broken, lambda row: row["unreadable"] == "decryption_failed", "unreadable"
    )
    # Read-only: no fields to type into, and the reason instead of (empty) text.
    assert row["text"] is None and row["topic"] is None
    shown = await alice.page.text_content(notes.note(broken, ".note-unreadable-text"))
    assert shown == "This note could not be decrypted"
    # Alt+M stamps a readable note, never the unreadable one.
    await alice.page.focus("#mic-toggle")
    await alice.page.keyboard.press("Alt+KeyM")
    await notes.wait_row(kept, lambda row: STAMP.search(row["text"] or ""), "stamped")
    assert (await notes.row(broken) or {}).get("text") is None
    await alice.screenshot(artifacts_dir, "notes-unreadable")


CY_TYPES = "Cy was still typing this when the session ended, key by key, without a pause."


def stored_versions(database: Path, note_id: str) -> int:
    with sqlite3.connect(database) as db:
        row = db.execute(
            "SELECT COUNT(*) FROM note_versions WHERE note_id = ?", (note_id,)
        ).fetchone()
    return int(row[0])


def record_page(clinic: Clinic, session_id: str) -> str:
    """The session record as ``clinic``'s clinician reads it (their notes decrypted)."""
    page = clinic.client.get(f"/clinic/sessions/{session_id}")
    if page.status != 200:
        raise SiteError(f"the record of {session_id}: status {page.status}")
    return html.unescape(page.text)


async def test_ending_the_session_loses_no_note(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    """The therapist (Alice) writes a note and ends the session at once; her
    co-facilitator (Cy) is typing a note without a pause when it ends (so no autosave
    has fired): both notes are saved, each says so, and nothing stays in the browsers.
    A patient (Bob) who left before the end finds the feedback form on his screen."""
    room_id = await asyncio.to_thread(site.therapist.create_room, "Ending notes group", 4)
    cy = await asyncio.to_thread(site.admin.create_clinician, "cy.notes", "Cy", "co_facilitator")
    await asyncio.to_thread(site.therapist.add_co_facilitator, room_id, "cy.notes")
    alice, alice_notes = await clinician_in_room(site, browsers, site.therapist, room_id, "Alice")
    cy_room, cy_notes = await clinician_in_room(site, browsers, cy, room_id, "Cy")
    bob = (await admitted_patients(site, browsers, room_id, alice, {"Bob": GREEN}))["Bob"]

    # Bob leaves early: the "you have left" screen offers the form (it opens at the end).
    await bob.page.click("#leave-button")
    await bob.wait_state("left")
    assert await bob.page.is_visible("#feedback-link")
    assert await bob.page.get_attribute("#feedback-link", "href") == "/feedback"

    alice_note = await alice_notes.new_note()
    cy_note = await cy_notes.new_note()
    # Cy types on, a key every 80 ms (never the pause that saves), through the end.
    await cy_room.page.focus(cy_notes.note(cy_note, ".note-text"))
    typing = asyncio.create_task(cy_room.page.keyboard.type(CY_TYPES, delay=80))
    [draft] = await eventually(cy_notes.drafts, lambda d: len(d) == 1, 10, "Cy's draft")
    session_id = draft["session_id"]
    await alice_notes.type_text(alice_note, "Alice wrote this just before ending.")
    await alice.page.click("#end-session-button")
    await alice.page.click("#end-session-confirm-button")
    for room in (alice, cy_room):
        await room.wait_state("closed")
        assert await room.page.get_attribute("#app", "data-closed-reason") == "session_ended"
    await typing

    # Each panel stays, read-only, and says that everything is saved.
    for notes in (alice_notes, cy_notes):
        await eventually(
            notes.panel_status,
            lambda status: status == "All notes saved",
            AFTER_SEAT_TIMEOUT_S,
            f"{notes.room.name}: all notes saved after the end",
        )
        assert await notes.page.is_visible("#notes-panel")
        assert await notes.drafts() == []
        assert await notes.page.is_disabled("#new-note-button")
    # What she typed until the end (the note is read-only from then on).
    cy_text = (await cy_notes.row(cy_note) or {}).get("text") or ""
    assert CY_TYPES.startswith(cy_text) and 0 < len(cy_text) < len(CY_TYPES), cy_text
    assert (await cy_notes.row(cy_note) or {}).get("status") == "saved"
    assert await cy_room.page.get_attribute(cy_notes.note(cy_note, ".note-text"), "readonly") == ""
    await cy_room.screenshot(artifacts_dir, "notes-saved-after-the-end")

    # Stored, and read back as written on the session's record.
    database = site.server.data_dir / "telecircle.db"
    for note_id in (alice_note, cy_note):
        assert await asyncio.to_thread(stored_versions, database, note_id) >= 1
    alice_record = await asyncio.to_thread(record_page, site.therapist, session_id)
    assert "Alice wrote this just before ending." in alice_record
    assert cy_text in await asyncio.to_thread(record_page, cy, session_id)

    # The session ended: Bob's form is open now.
    bob_form = await bob.page.context.new_page()
    await bob_form.goto(f"{site.server.base_url}/feedback")
    assert "How was the session?" in await bob_form.content()


async def test_signing_out_with_a_draft_in_the_browser_asks_first(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    # Her own account: signing out ends this sign-in only.
    oz = await asyncio.to_thread(site.admin.create_clinician, "oz.notes", "Oz")
    room_id = await asyncio.to_thread(oz.create_room, "Sign-out notes group", 3)
    room, notes = await clinician_in_room(site, browsers, oz, room_id, "Oz")
    note_id = await notes.new_note()
    await notes.go_offline()
    await notes.type_text(note_id, "Not saved yet: the network is down.")
    await eventually(notes.drafts, lambda drafts: len(drafts) == 1, 10, "the draft kept")

    # Her clinic page, in another tab of the same browser.
    base = site.server.base_url
    clinic = await room.page.context.new_page()
    await clinic.goto(f"{base}/clinic")
    questions: list[str] = []
    answer = {"accept": False}

    async def on_dialog(dialog: Dialog) -> None:
        questions.append(dialog.message)
        if answer["accept"]:
            await dialog.accept()
        else:
            await dialog.dismiss()

    async def asked() -> int:
        return len(questions)

    clinic.on("dialog", on_dialog)
    sign_out = "form[action='/logout'] button"

    # Cancelled: still signed in, the draft still there.
    await clinic.click(sign_out)
    await eventually(asked, lambda count: count == 1, 10, "the question")
    assert questions == [
        "You have 1 unsaved note in this browser; signing out deletes them. Sign out anyway?"
    ]
    assert clinic.url == f"{base}/clinic"
    account = await clinic.context.request.get(f"{base}/account")
    assert account.url == f"{base}/account" and account.ok, "still signed in"
    assert len(await notes.drafts()) == 1

    # Agreed: signed out, and the draft is gone from the browser.
    answer["accept"] = True
    async with clinic.expect_navigation(url="**/login**"):
        await clinic.click(sign_out)
    assert len(questions) == 2
    remaining = await clinic.evaluate(
        f"Object.keys(localStorage).filter((key) => key.startsWith('{DRAFT_PREFIX}'))"
    )
    assert remaining == []
    assert await notes.drafts() == []
    await clinic.screenshot(path=str(artifacts_dir / "notes-signed-out.png"))
