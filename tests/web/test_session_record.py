"""The session record and a room's list of sessions, through the real pages.

A group runs through real socket.io clients on a real server with a steerable clock
(lobby, admits, a denial, mutes, screen share, pairs, a segment, a dropped connection,
a removal); notes are written through the real notes service. The record is then read
as each role would, and checked against what happened.

A second group has people who take more than one seat: a patient who leaves and comes
back, one who opens their personal link on a second device (one from the lobby), and a
clinician whose connection stays lost past the reconnect window. Each is one person on
the record, with the minutes of all their seats.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from sqlalchemy import select

from telecircle.config import load_settings
from telecircle.crypto.tokens import secret_hash
from telecircle.domain.access import Role
from telecircle.domain.ids import ParticipantId, RoomCode, RoomId
from telecircle.domain.notes import Note, NoteBody, NoteVersion, Unreadable
from telecircle.domain.session_summary import elapsed_label
from telecircle.services.entry import patient_key
from telecircle.services.session_record import EARLIER_VERSIONS_SHOWN, SessionRecords
from telecircle.storage import invites_store, notes_store, org_store, stores
from telecircle.storage.accounts_store import UserRecord, get_user
from telecircle.storage.tables import ParticipantRow
from telecircle.web.app import create_app
from telecircle.web.keys import AUDIT, CHECKINS, CLOCK, NOTES
from tests.conftest import RunningServer, free_port
from tests.database_template import create_at_newest_revision
from tests.signalling.client import Client
from tests.storage.conftest import db_url, postgres_unreachable  # noqa: F401
from tests.web.site_client import SiteClient

ZONE = "Europe/Berlin"
MINUTE = 60.0
PAIRS_SECRET = "PAIRS-SECRET-swap-roles-now"


@dataclass
class SteppedClock:
    """The wall clock, moved on by the test (the services read time only through it)."""

    offset: float = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, minutes: float) -> None:
        self.offset += minutes * MINUTE


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@asynccontextmanager
async def serving(
    tmp_path: Path, clock: SteppedClock, database_url: str, **overrides: float
) -> AsyncIterator[RunningServer]:
    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        tune_garbage_collector=False,
        port=free_port(),
        time_zone=ZONE,
        # The clinicians read the record after the session: signed in all along.
        login_idle_timeout=6 * 3600,
        **overrides,
    )
    create_at_newest_revision(settings.effective_database_url)  # SQLite: a copy of the template
    app = create_app(settings, clock)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", settings.port).start()
        yield RunningServer(app, runner, settings)
    finally:
        await runner.cleanup()


@pytest.fixture
async def server(
    tmp_path: Path,
    clock: SteppedClock,
    db_url: str,  # noqa: F811
) -> AsyncIterator[RunningServer]:
    """The real application on SQLite and on PostgreSQL (where reachable)."""
    async with serving(tmp_path, clock, db_url) as running:
        yield running


# Seconds (of the event loop and of the clock) a dropped connection's seat is held: short,
# so that a test can let the reconnect window run out.
BRIEF_GRACE = 0.5


@pytest.fixture
async def brief_grace_server(
    tmp_path: Path,
    clock: SteppedClock,
    db_url: str,  # noqa: F811
) -> AsyncIterator[RunningServer]:
    """As ``server``, with a reconnect window of :data:`BRIEF_GRACE`."""
    async with serving(tmp_path, clock, db_url, reconnect_grace=BRIEF_GRACE) as running:
        yield running


@dataclass
class Group:
    """A session that ran: its ids, who is who, and the pass each patient used."""

    code: str
    room_id: RoomId
    session_id: str
    owner_id: str
    co_id: str
    owner_cookie: str
    co_cookie: str
    ids: dict[str, str] = field(default_factory=dict)
    passes: dict[str, str] = field(default_factory=dict)
    patient_cookie: str = ""
    started_at: float = 0.0


async def _join(server: RunningServer, cookie: str, code: str) -> tuple[Client, str]:
    client = await Client().connect(server.url, cookie)
    ack = await client.call("join", {"room_code": code})
    assert ack["ok"], ack
    return client, ack["data"]["participant_id"]


async def _ok(client: Client, event: str, payload: dict[str, object] | None = None) -> None:
    ack = await client.call(event, payload or {})
    assert ack["ok"], (event, ack)


async def _room_clinicians(server: RunningServer, room_id: RoomId) -> tuple[str, str]:
    assigned = await org_store.clinicians_of_room(server.database, room_id)
    clinicians = {role: user for user, role in assigned}
    return clinicians["owner"], clinicians["co_facilitator"]


async def run_group(server: RunningServer, clock: SteppedClock) -> Group:
    """Run a session of a room of five patients to its end (times are minutes after
    the start): Dee waits and is never admitted, Eve is turned away, Cy is removed
    after 11 minutes, Ann's connection drops for 5 minutes."""
    code = await server.create_room("Tuesday group")
    room = await stores.get_room_by_code(server.database, RoomCode(code))
    assert room is not None
    co_cookie = await server.clinician_cookie(code, "Dr Co")
    owner_id, co_id = await _room_clinicians(server, room.id)
    group = Group(code, room.id, "", owner_id, co_id, await server.owner_cookie(code), co_cookie)
    cookies = {}
    for name in ("Ann", "Bo", "Cy", "Dee", "Eve"):
        if name == "Bo":  # Bo accepts a newer agreement than the others
            await org_store.add_agreement_version(server.database, "Be kind.", None, clock.now())
        cookies[name] = await server.patient_cookie(code, name)
        group.passes[name] = secret_hash(cookies[name].partition("=")[2])
    group.patient_cookie = cookies["Ann"]
    clients: list[Client] = []
    try:
        doc, group.ids["Dr Test"] = await _join(server, group.owner_cookie, code)
        clients.append(doc)
        session = await stores.get_open_session(server.database, room.id)
        assert session is not None
        group.session_id, group.started_at = session.id, session.started_at
        patients = {}
        for name, cookie in cookies.items():
            patients[name], group.ids[name] = await _join(server, cookie, code)
            clients.append(patients[name])
        ann, bo, cy = group.ids["Ann"], group.ids["Bo"], group.ids["Cy"]
        clock.advance(1)
        for name in ("Ann", "Bo", "Cy"):
            await _ok(doc, "admit", {"participant_id": group.ids[name]})
        await _ok(doc, "deny", {"participant_id": group.ids["Eve"]})
        clock.advance(1)
        await _ok(doc, "force_media", {"participant_id": ann, "audio_off": True})
        await _ok(doc, "mute_all")
        clock.advance(1)
        await _ok(doc, "share_screen", {"on": True})
        clock.advance(1)
        await _ok(doc, "share_screen", {"on": False})
        clock.advance(1)
        await _ok(doc, "start_pairs", {"duration_seconds": 600, "groups": [[ann, bo, cy]]})
        await _ok(doc, "message_pairs", {"text": PAIRS_SECRET})
        await _ok(doc, "visit_pair", {"group": 0})
        await _ok(doc, "visit_pair", {"group": None})
        clock.advance(2)
        await _ok(doc, "end_pairs")
        clock.advance(1)
        await _ok(doc, "start_segment", {"participant_ids": [ann], "others": "hold"})
        await _ok(doc, "queue_segment", {"participant_id": bo})
        clock.advance(2)
        await _ok(doc, "end_segment")
        clock.advance(2)
        await _ok(doc, "remove", {"participant_id": cy})  # at 12: Cy attended 11 minutes
        await _ok(doc, "lock", {"locked": True})
        clock.advance(8)
        await patients["Ann"].close()  # at 20, back at 25
        await _wait_for_away(server, room.id, ParticipantId(ann))
        clock.advance(5)
        patients["Ann"], again = await _join(server, cookies["Ann"], code)
        clients.append(patients["Ann"])
        assert again == ann
        clock.advance(25)
        await _ok(doc, "end_session")  # at 50
    finally:
        for client in clients:
            await client.close()
    return group


async def _wait_for_away(server: RunningServer, room_id: RoomId, pid: ParticipantId) -> None:
    await _wait_for_event(server, room_id, "participant_away", pid)


async def _wait_for_event(
    server: RunningServer, room_id: RoomId, kind: str, pid: ParticipantId
) -> None:
    """Until the open session's timeline has an event ``kind`` about seat ``pid``."""
    session = await stores.get_open_session(server.database, room_id)
    assert session is not None
    for _ in range(200):
        timeline = await stores.load_timeline(server.database, session.id)
        if any(e.kind == kind and e.payload["participant_id"] == pid for e in timeline):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {kind} of {pid} was recorded")


async def write_notes(server: RunningServer, clock: SteppedClock, group: Group) -> None:
    """The therapist's note on Ann (two versions) and the co-facilitator's own note,
    saved during the session."""
    notes = server.app[NOTES]
    clock.offset -= 47 * MINUTE  # back to minute 3 of the session (ended at 50)
    common = {"room_id": group.room_id, "session_id": group.session_id}
    body = NoteBody(
        "Ann spoke about <b>work</b>.\nSecond line & more.", "Work", (group.ids["Ann"],)
    )
    await notes.save(
        author_id=group.owner_id, note_id="note-ann-1", save_id="save-0001", body=body, **common
    )
    clock.advance(3)
    await notes.save(
        author_id=group.owner_id,
        note_id="note-ann-1",
        save_id="save-0002",
        body=NoteBody("Ann spoke about work; revisit next week.", "Work", (group.ids["Ann"],)),
        **common,
    )
    await notes.save(
        author_id=group.co_id,
        note_id="note-co-01",
        save_id="save-0003",
        body=NoteBody("Co-facilitator's own note."),
        **common,
    )
    clock.advance(44)


@pytest.fixture
async def group(server: RunningServer, clock: SteppedClock) -> Group:
    ran = await run_group(server, clock)
    await write_notes(server, clock, ran)
    return ran


@dataclass
class Returns:
    """A session whose people took several seats: each person's seats in the order
    taken, and the cookies to read it with."""

    code: str
    room_id: RoomId
    session_id: str
    owner_cookie: str
    patient_cookie: str
    seats: dict[str, list[str]] = field(default_factory=dict)


async def run_returns(server: RunningServer, clock: SteppedClock) -> Returns:
    """Run a session to its end at minute 32 (times are minutes after the start):

    - Ann is admitted at 1, leaves at 13 (the leave message), opens the room again at
      20 with the same pass and is admitted again: 12 + 12 = 24 minutes;
    - Bo is admitted at 1; at 11 he opens his personal link on a laptop (as "Bo B",
      accepting a newer agreement), which ends his first seat; admitted at 12: 10 + 20;
    - Cy waits in the lobby from 0 and at 2 opens her link on a laptop, admitted at
      once: her first seat never got in, her second attended 30 minutes;
    - Dr Co's connection drops at 5 and is not back within the reconnect window; she
      enters again at 10: 5 + 22 = 27 minutes.
    """
    code = await server.create_room("Thursday group")
    room = await stores.get_room_by_code(server.database, RoomCode(code))
    assert room is not None
    co_cookie = await server.clinician_cookie(code, "Dr Co")
    tokens = {name: await server.personal_invite(code, name) for name in ("Ann", "Bo", "Cy")}
    cookies = {name: await server.open_invite(token, name) for name, token in tokens.items()}
    ran = Returns(code, room.id, "", await server.owner_cookie(code), cookies["Ann"])

    def seat(name: str, pid: str) -> str:
        ran.seats.setdefault(name, []).append(pid)
        return pid

    clients: list[Client] = []

    async def enter(name: str, cookie: str) -> tuple[Client, str]:
        client, pid = await _join(server, cookie, code)
        clients.append(client)
        return client, seat(name, pid)

    try:
        doc, _ = await enter("Dr Test", ran.owner_cookie)
        session = await stores.get_open_session(server.database, room.id)
        assert session is not None
        ran.session_id = session.id
        co, co_first = await enter("Dr Co", co_cookie)
        ann, ann_first = await enter("Ann", cookies["Ann"])
        _, bo_phone = await enter("Bo", cookies["Bo"])
        await enter("Cy", cookies["Cy"])
        clock.advance(1)
        for pid in (ann_first, bo_phone):
            await _ok(doc, "admit", {"participant_id": pid})
        clock.advance(1)  # 2: Cy opens her link on a laptop, from the lobby
        _, cy_laptop = await enter("Cy", await server.open_invite(tokens["Cy"], "Cy"))
        await _ok(doc, "admit", {"participant_id": cy_laptop})
        clock.advance(3)  # 5: Dr Co's connection drops; the window runs out
        await co.sio.eio.disconnect(abort=True)
        await _wait_for_event(server, room.id, "participant_away", ParticipantId(co_first))
        await _wait_for_event(server, room.id, "participant_left", ParticipantId(co_first))
        clock.advance(5)  # 10: she enters afresh, in a new seat
        await enter("Dr Co", co_cookie)
        clock.advance(1)  # 11: Bo opens his link on a laptop
        await org_store.add_agreement_version(server.database, "Be kind.", None, clock.now())
        _, bo_laptop = await enter("Bo", await server.open_invite(tokens["Bo"], "Bo B"))
        clock.advance(1)
        await _ok(doc, "admit", {"participant_id": bo_laptop})
        clock.advance(1)  # 13: Ann leaves
        await _ok(ann, "leave")
        clock.advance(7)  # 20: and comes back with the same pass
        await _check_in_again(server, cookies["Ann"])
        _, ann_again = await enter("Ann", cookies["Ann"])
        await _ok(doc, "admit", {"participant_id": ann_again})
        clock.advance(12)
        await _ok(doc, "end_session")  # 32
    finally:
        for client in clients:
            await client.close()
    assert {name: len(set(seats)) for name, seats in ran.seats.items()} == {
        "Dr Test": 1,
        "Dr Co": 2,
        "Ann": 2,
        "Bo": 2,
        "Cy": 2,
    }
    return ran


async def _check_in_again(server: RunningServer, cookie: str) -> None:
    """The page before the session, filled in again (the check-in went with the seat)."""
    found = await invites_store.get_pass(server.database, secret_hash(cookie.partition("=")[2]))
    assert found is not None
    server.app[CHECKINS].record(patient_key(found), "Home", "Sam 0123")


@pytest.fixture
async def returns(brief_grace_server: RunningServer, clock: SteppedClock) -> Returns:
    return await run_returns(brief_grace_server, clock)


def local_clock(at: float) -> str:
    return datetime.fromtimestamp(at, ZoneInfo(ZONE)).strftime("%H:%M:%S")


def row_of(page: str, participant_id: str, table: str) -> str:
    section = page.split(f'<table class="list {table}">', 1)[1].split("</table>", 1)[0]
    match = re.search(rf'<tr data-participant-id="{participant_id}"[^>]*>(.*?)</tr>', section, re.S)
    assert match, (participant_id, table)
    return match.group(1)


def note_of(page: str, note_id: str) -> str:
    return page.split(f'<div class="record-note" data-note-id="{note_id}">', 1)[1].split(
        "</div>", 1
    )[0]


def minutes_in(row: str) -> int:
    match = re.search(r'<td class="minutes">(\d+)', row)
    assert match, row
    return int(match.group(1))


def timeline_texts(page: str) -> list[str]:
    section = page.split('<ol class="timeline">', 1)[1].split("</ol>", 1)[0]
    return [m.strip() for m in re.findall(r'<(?:span|p) class="what">(.*?)</(?:span|p)>', section)]


async def read(server: RunningServer, cookie: str | None, path: str) -> tuple[int, str, str | None]:
    client = SiteClient(server.url, cookie)
    try:
        page = await client.get(path, follow=False)
    finally:
        await client.close()
    return page.status, page.text, page.headers.get("X-Telecircle-Refused")


# ----------------------------------------------------------------------------- tests


async def test_attendance_intervals_minutes_and_who_never_got_in(
    server: RunningServer, group: Group
) -> None:
    status, page, _ = await read(server, group.owner_cookie, f"/clinic/sessions/{group.session_id}")
    assert status == 200, page
    ids = group.ids
    assert minutes_in(row_of(page, ids["Dr Test"], "attendance")) == 50
    assert minutes_in(row_of(page, ids["Bo"], "attendance")) == 49
    ann = row_of(page, ids["Ann"], "attendance")
    assert minutes_in(ann) == 44  # 49 in the session, 5 of them with the connection lost
    assert "not counting 5 min with the connection lost" in ann
    cy = row_of(page, ids["Cy"], "attendance")
    assert minutes_in(cy) == 11 and "(removed)" in cy
    joined = group.started_at + 1 * MINUTE
    assert local_clock(joined)[:5] in cy and "01:0" in cy  # mm:ss since the start, and clock
    lobby = page.split("<h3>Waited in the lobby, never admitted</h3>", 1)[1].split("<h3>", 1)[0]
    assert f'data-participant-id="{ids["Dee"]}"' in lobby and "never admitted" in lobby
    assert "Eve" not in lobby and "Ann" not in lobby
    denied = page.split("<h3>Turned away from the lobby</h3>", 1)[1].split("<h3>", 1)[0]
    assert "<strong>Eve</strong>: turned away by Dr Test" in denied
    removed = page.split("<h3>Removed from the session</h3>", 1)[1].split("<h2", 1)[0]
    assert "<strong>Cy</strong>: removed by Dr Test" in removed
    attendance = page.split('<table class="list attendance">', 1)[1].split("</table>", 1)[0]
    assert ids["Dee"] not in attendance and ids["Eve"] not in attendance


async def test_the_timeline_tells_pairs_segments_screen_share_and_controls(
    server: RunningServer, group: Group
) -> None:
    _, page, _ = await read(server, group.owner_cookie, f"/clinic/sessions/{group.session_id}")
    texts = timeline_texts(page)
    for line in (
        "Dr Test joined",
        "Ann arrived in the lobby",
        "Dr Test admitted Ann",
        "Dr Test turned away Eve from the lobby",
        "Dr Test muted Ann",
        "Dr Test muted Bo and Cy",  # mute all: one line
        "Dr Test started sharing their screen",
        "Dr Test stopped sharing their screen",
        "Dr Test started pair work (10 min) — pair 1: Ann, Bo and Cy",
        "Dr Test sent a message to all pairs",
        "Dr Test joined pair 1 (Ann, Bo and Cy)",
        "Dr Test returned to the group",
        "Dr Test ended pair work",
        "Dr Test started individual work with Ann (15 min; the others on hold)",
        "Dr Test queued Bo for individual work",
        "Dr Test ended individual work with Ann",
        "Dr Test removed Cy from the session",
        "Dr Test locked the session",
        "Ann&#39;s connection dropped",
        "Ann reconnected",
        "Dr Test ended the session",
    ):
        assert line in texts, line
    assert texts.index("Dr Test ended pair work") < texts.index("Dr Test ended the session")
    assert PAIRS_SECRET not in page and "swap" not in page
    # Each entry is stamped since the start and on the local clock.
    timeline = await stores.load_timeline(server.database, group.session_id)
    removed_at = next(e.at for e in timeline if e.kind == "participant_removed")
    stamp = (
        f'<time class="elapsed">{elapsed_label(removed_at - group.started_at)}</time> '
        f'<span class="clock">{local_clock(removed_at)}</span></span>\n'
    )
    assert re.search(re.escape(stamp) + r"\s*<span class=\"what\">Dr Test removed Cy", page)
    assert elapsed_label(removed_at - group.started_at).startswith("12:")


async def test_notes_are_on_the_timeline_with_their_versions_escaped(
    server: RunningServer, group: Group
) -> None:
    _, page, _ = await read(server, group.owner_cookie, f"/clinic/sessions/{group.session_id}")
    texts = timeline_texts(page)
    assert "Note by Dr Test" in texts
    # Placed at its creation (minute 3): after the mutes, before the screen share ends.
    assert texts.index("Dr Test muted Bo and Cy") < texts.index("Note by Dr Test")
    assert texts.index("Note by Dr Test") < texts.index("Dr Test stopped sharing their screen")
    note = note_of(page, "note-ann-1")
    assert note.index('data-version="2"') < note.index('data-version="1"')  # newest first
    assert "Version 2 (latest)" in note and "Topic: Work" in note and "About: Ann" in note
    assert "Ann spoke about &lt;b&gt;work&lt;/b&gt;.\nSecond line &amp; more." in note
    assert "<b>work</b>" not in page
    # The room does not share notes: the co-facilitator's own note is theirs alone.
    assert "Co-facilitator&#39;s own note" not in page
    _, theirs, _ = await read(server, group.co_cookie, f"/clinic/sessions/{group.session_id}")
    assert "Co-facilitator&#39;s own note" in theirs and "&lt;b&gt;work" not in theirs


async def test_destroyed_notes_say_so_never_empty(
    server: RunningServer, clock: SteppedClock, group: Group
) -> None:
    destroyed_at = clock.now()
    assert await notes_store.destroy_keys(server.database, [group.session_id], destroyed_at)
    _, page, _ = await read(server, group.owner_cookie, f"/clinic/sessions/{group.session_id}")
    day = datetime.fromtimestamp(destroyed_at, ZoneInfo(ZONE)).strftime("%d %b %Y")
    note = note_of(page, "note-ann-1")
    assert note.count(f"Destroyed by retention on {day}") == 2
    assert "record-note-body" not in note and "Ann spoke" not in page


async def test_unreadable_versions_are_said_why(server: RunningServer, group: Group) -> None:
    """What the note reader reports is what the record says: a failed decryption, or a
    body missing for no stated reason, is never shown as an empty note."""

    class Unreadables:
        async def notes_for_record(self, reader: UserRecord, session_id: str) -> list[Note]:
            versions = (
                NoteVersion(1, group.started_at + 60, None, Unreadable.DECRYPTION_FAILED),
                NoteVersion(2, group.started_at + 90, None),
                NoteVersion(3, group.started_at + 95, None, Unreadable.DESTROYED),
            )
            return [Note("note-x-0001", session_id, reader.id, group.started_at + 60, versions)]

    records = SessionRecords(
        server.database, server.app[CLOCK], server.app[AUDIT], ZONE, Unreadables()
    )
    owner = await get_user(server.database, group.owner_id)
    assert owner is not None
    record = await records.record(owner, group.session_id)
    (entry,) = [e for e in record.timeline if e.note is not None]
    assert entry.note is not None
    assert [(v.version, v.text, v.unreadable) for v in entry.note.versions] == [
        (3, None, "Destroyed by retention"),
        (2, None, "This version could not be decrypted"),
        (1, None, "This version could not be decrypted"),
    ]


async def test_consent_and_billing(server: RunningServer, group: Group) -> None:
    _, page, _ = await read(server, group.owner_cookie, f"/clinic/sessions/{group.session_id}")
    ids = group.ids
    ann = row_of(page, ids["Ann"], "consent")
    assert "version 1" in ann and "not asked" in ann
    assert "version 2" in row_of(page, ids["Bo"], "consent")
    consent = page.split('<table class="list consent">', 1)[1].split("</table>", 1)[0]
    assert ids["Dr Test"] not in consent and ids["Dee"] not in consent  # patients who attended

    assert "Informational, not a claim" in page
    codes = page.split('<table class="list billing-codes">', 1)[1].split("</table>", 1)[0]
    for code in ("90853", "95", "02", "10"):
        assert f"<td>{code}</td>" in codes
    too_short = "Attendance may be too short to bill (under 16 minutes)"
    assert minutes_in(row_of(page, ids["Ann"], "billing")) == 44
    assert too_short not in row_of(page, ids["Ann"], "billing")
    cy = row_of(page, ids["Cy"], "billing")
    assert minutes_in(cy) == 11 and too_short in cy
    billing = page.split('<table class="list billing">', 1)[1].split("</table>", 1)[0]
    assert ids["Dr Test"] not in billing and ids["Dee"] not in billing


async def test_only_the_rooms_clinicians_read_it(server: RunningServer, group: Group) -> None:
    path = f"/clinic/sessions/{group.session_id}"
    listing = f"/clinic/rooms/{group.room_id}/sessions"
    other_code = await server.create_room("Another group")
    admin = await server.sign_in(await server._user(Role.ADMINISTRATOR))
    for who, cookie, statuses in (
        ("owner", group.owner_cookie, (200, None)),
        ("co-facilitator", group.co_cookie, (200, None)),
        ("another therapist", await server.owner_cookie(other_code), (404, None)),
        ("administrator", admin, (403, "forbidden")),
        ("patient", group.patient_cookie, (403, "forbidden")),
        ("nobody", None, (303, "sign_in")),
    ):
        for target in (path, listing):
            status, _, refused = await read(server, cookie, target)
            assert (status, refused) == statuses, (who, target)
    status, _, _ = await read(server, group.owner_cookie, "/clinic/sessions/s_nobody")
    assert status == 404


async def test_every_view_is_audited_with_ids_only(server: RunningServer, group: Group) -> None:
    await read(server, group.owner_cookie, f"/clinic/sessions/{group.session_id}")
    await read(server, group.co_cookie, f"/clinic/sessions/{group.session_id}")
    page = await server.app[AUDIT].page(action="session_record_viewed", newest_first=False)
    entries = sorted(page.entries, key=lambda e: e.seq)
    assert [(e.actor, e.target) for e in entries] == [
        (group.owner_id, group.session_id),
        (group.co_id, group.session_id),
    ]
    assert entries[0].details == {"room": group.room_id, "notes": 1}
    for entry in entries:
        for value in entry.details.values():
            assert not any(name in str(value) for name in ("Ann", "Bo", "Tuesday", "work"))


async def test_the_rooms_sessions_newest_first_with_links(
    server: RunningServer, clock: SteppedClock, group: Group
) -> None:
    clock.advance(2 * 60)
    doc, _ = await _join(server, group.owner_cookie, group.code)  # a new session, running now
    try:
        current = await stores.get_open_session(server.database, group.room_id)
        assert current is not None
        status, page, _ = await read(
            server, group.owner_cookie, f"/clinic/rooms/{group.room_id}/sessions"
        )
        assert status == 200
        rows = re.findall(r'<tr data-session-id="([^"]+)">(.*?)</tr>', page, re.S)
        assert [session_id for session_id, _ in rows] == [current.id, group.session_id]
        assert "running now" in rows[0][1] and "1 person" in rows[0][1]
        assert "50 min" in rows[1][1] and "4 people" in rows[1][1]  # Dr Test, Ann, Bo, Cy
        assert f'href="/clinic/sessions/{group.session_id}"' in rows[1][1]
        client = SiteClient(server.url, group.owner_cookie)
        try:
            now = await client.get(f"/clinic/rooms/{group.room_id}/sessions/current", follow=False)
            assert now.status == 303
            assert now.headers["Location"] == f"/clinic/sessions/{current.id}"
            room_page = await client.get(f"/clinic/rooms/{group.room_id}")
            assert f'href="/clinic/rooms/{group.room_id}/sessions"' in room_page.text
            live = await client.get(f"/clinic/sessions/{current.id}")
            assert live.status == 200 and "in progress" in live.text
        finally:
            await client.close()
    finally:
        await doc.close()


async def test_with_no_session_running_the_current_link_says_so(
    server: RunningServer, group: Group
) -> None:
    status, page, _ = await read(
        server, group.owner_cookie, f"/clinic/rooms/{group.room_id}/sessions/current"
    )
    assert status == 200 and "No session of this group is running now." in page


async def test_a_real_entry_records_whose_seat_it_is(
    server: RunningServer, clock: SteppedClock
) -> None:
    ran = await run_group(server, clock)
    async with server.database.read() as conn:
        rows = await conn.execute(select(ParticipantRow))
        seats = {row.id: (row.user_id, row.pass_id) for row in rows}
    assert seats[ran.ids["Ann"]] == (None, ran.passes["Ann"])
    assert seats[ran.ids["Dr Test"]] == (ran.owner_id, None)


async def test_a_person_with_several_seats_is_one_attendee(
    brief_grace_server: RunningServer, returns: Returns
) -> None:
    server, seats = brief_grace_server, returns.seats
    _, page, _ = await read(server, returns.owner_cookie, f"/clinic/sessions/{returns.session_id}")
    attendance = page.split('<table class="list attendance">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr data-participant-id="([^"]+)" data-seats="([^"]+)">', attendance)
    # One row per person, under their first seat, listing all their seats.
    assert sorted(rows) == sorted((own[0], " ".join(own)) for own in seats.values())
    expected = {"Dr Test": 32, "Dr Co": 27, "Ann": 24, "Bo": 30, "Cy": 30}
    for name, minutes in expected.items():
        assert minutes_in(row_of(page, seats[name][0], "attendance")) == minutes, name
    ann = row_of(page, seats["Ann"][0], "attendance")
    assert ann.count("<li>") == 2 and "(left)" in ann and "not counting" not in ann
    bo = row_of(page, seats["Bo"][0], "attendance")
    assert "<td>Bo B</td>" in bo  # the name given for the latest seat
    assert "(joined from another device)" in bo and bo.count("<li>") == 2
    co = row_of(page, seats["Dr Co"][0], "attendance")
    assert "<td>clinician</td>" in co and "(connection lost)" in co
    assert row_of(page, seats["Cy"][0], "attendance").count("<li>") == 1
    # Cy's first seat never got in, but she did: she is not "never admitted".
    lobby = page.split("<h3>Waited in the lobby, never admitted</h3>", 1)[1].split("<h3>", 1)[0]
    assert '<p class="hint">Nobody.</p>' in lobby
    # The timeline still tells each seat by the name it was taken with.
    texts = timeline_texts(page)
    assert texts.count("Dr Test admitted Ann") == 2 and "Ann left" in texts
    assert "Bo left (their link was opened on another device)" in texts
    assert "Bo B arrived in the lobby" in texts and "Dr Test admitted Bo B" in texts
    assert "Cy left (their link was opened on another device)" in texts
    assert "Dr Co left (connection lost)" in texts and texts.count("Dr Co joined") == 2


async def test_several_seats_count_once_in_consent_billing_and_the_list(
    brief_grace_server: RunningServer, returns: Returns
) -> None:
    server, seats = brief_grace_server, returns.seats
    _, page, _ = await read(server, returns.owner_cookie, f"/clinic/sessions/{returns.session_id}")
    patients = ("Ann", "Bo", "Cy")
    for table in ("billing", "consent"):
        section = page.split(f'<table class="list {table}">', 1)[1].split("</table>", 1)[0]
        listed = re.findall(r'<tr data-participant-id="([^"]+)">', section)
        assert sorted(listed) == sorted(seats[name][0] for name in patients), table
    too_short = "Attendance may be too short to bill"
    for name, minutes in (("Ann", 24), ("Bo", 30), ("Cy", 30)):
        line = row_of(page, seats[name][0], "billing")
        assert minutes_in(line) == minutes and too_short not in line, name
    assert "version 1" in row_of(page, seats["Ann"][0], "consent")
    # Bo accepted the newer agreement on his laptop, the seat he ended the session in.
    bo = row_of(page, seats["Bo"][0], "consent")
    assert "<td>Bo B</td>" in bo and "version 2" in bo
    _, listing, _ = await read(
        server, returns.owner_cookie, f"/clinic/rooms/{returns.room_id}/sessions"
    )
    [(_, row)] = re.findall(r'<tr data-session-id="([^"]+)">(.*?)</tr>', listing, re.S)
    assert "5 people" in row


async def test_a_notes_earlier_versions_are_folded_and_bounded(
    server: RunningServer, clock: SteppedClock, group: Group
) -> None:
    """The newest version in full; the earlier ones folded away (and left out of print),
    at most EARLIER_VERSIONS_SHOWN of them; the JSON export keeps every version."""
    common = {"room_id": group.room_id, "session_id": group.session_id}
    versions = EARLIER_VERSIONS_SHOWN + 3  # two were saved while the session ran
    for n in range(3, versions + 1):
        await server.app[NOTES].save(
            author_id=group.owner_id,
            note_id="note-ann-1",
            save_id=f"save-{n:04d}",
            body=NoteBody(f"Autosaved draft {n}."),
            **common,
        )
    _, page, _ = await read(server, group.owner_cookie, f"/clinic/sessions/{group.session_id}")
    note = note_of(page, "note-ann-1")
    latest, folded = note.split('<details class="earlier-versions">', 1)
    assert f'data-version="{versions}"' in latest and f"Version {versions} (latest)" in latest
    assert f"Autosaved draft {versions}." in latest and latest.count("data-version=") == 1
    assert f"<summary>Earlier versions ({versions - 1})</summary>" in folded
    shown = [int(v) for v in re.findall(r'data-version="(\d+)"', folded)]
    assert shown == list(range(versions - 1, 2, -1))  # newest first, 50 of them
    assert len(shown) == EARLIER_VERSIONS_SHOWN
    assert "2 older versions not shown; export the JSON for all." in folded
    assert "Ann spoke about" not in page  # versions 1 and 2 are not on the page
    # A note of one version has nothing to fold.
    _, theirs, _ = await read(server, group.co_cookie, f"/clinic/sessions/{group.session_id}")
    assert "<details" not in note_of(theirs, "note-co-01")
