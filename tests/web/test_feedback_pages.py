"""Patients' feedback through the real pages: a real server with a steerable clock,
real socket.io clients running the sessions, real cookies and forms.

The form appears only for a session the patient was in, once it has ended and while
its window lasts; a patient sends it once; comments never reach the database files in
clear; refusals are clear and never repeat what was entered; the administrator edits
the questions; the session record's partial shows answers and the group's trend;
nobody else (other rooms, other patients, clinicians, administrators) can use it.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from sqlalchemy import select

from telecircle.config import ConfigError, load_settings
from telecircle.crypto.tokens import secret_hash
from telecircle.domain.access import Role
from telecircle.domain.feedback import FeedbackLimits
from telecircle.domain.ids import RoomCode, RoomId
from telecircle.services.entry import patient_key
from telecircle.storage import invites_store, org_store, stores
from telecircle.storage.accounts_store import UserRecord, get_user
from telecircle.storage.tables import FeedbackAnswerRow, FeedbackResponseRow
from telecircle.web.app import create_app
from telecircle.web.keys import AUDIT, CHECKINS, FEEDBACK
from tests.conftest import RunningServer, free_port
from tests.database_template import create_at_newest_revision
from tests.signalling.client import Client
from tests.web.site_client import Page, SiteClient

HOUR = 3600.0
WINDOW_HOURS = 2
HEARD = "I felt heard and understood"
OVERALL = "The group overall"
COMMENT = "Anything you would like your therapist to know?"
SECRET_COMMENT = "Nobody in the group knows about my diagnosis xj4"
NO_SESSION = "No session to give feedback on"
FEEDBACK_LINK = '<a href="/feedback">Tell your therapists how the last session went</a>'
ERROR = re.compile(r'<p class="error" role="alert">(.*?)</p>', re.S)


@dataclass
class SteppedClock:
    offset: float = 0.0

    def now(self) -> float:
        return time.time() + self.offset

    def advance(self, hours: float) -> None:
        self.offset += hours * HOUR


@pytest.fixture
def clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture
async def server(tmp_path: Path, clock: SteppedClock) -> AsyncIterator[RunningServer]:
    settings = load_settings(
        data_dir=tmp_path / "data",
        tune_garbage_collector=False,
        port=free_port(),
        feedback_window=WINDOW_HOURS * HOUR,
        feedback_comment_max_chars=200,
        login_idle_timeout=6 * 3600,
    )
    create_at_newest_revision(settings.effective_database_url)  # SQLite: a copy of the template
    app = create_app(settings, clock)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    yield RunningServer(app, runner, settings)
    await runner.cleanup()


@dataclass
class Group:
    """A room, its therapist, and its patients' cookies (each a personal invite)."""

    server: RunningServer
    clock: SteppedClock
    code: str
    room_id: RoomId
    owner_cookie: str
    cookies: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    sessions: list[str] = field(default_factory=list)

    async def add_patient(self, name: str) -> str:
        self.tokens[name] = await self.server.personal_invite(self.code, name)
        self.cookies[name] = await self.server.open_invite(self.tokens[name], name)
        return self.cookies[name]

    async def _check_in(self, name: str) -> None:
        """The pre-join page is filled in again before each session."""
        secret = self.cookies[name].partition("=")[2]
        record = await invites_store.get_pass(self.server.database, secret_hash(secret))
        assert record is not None
        self.server.app[CHECKINS].record(patient_key(record), "Home", "Sam 0123")

    async def run_session(
        self,
        attend: tuple[str, ...] = ("Ann", "Bo"),
        lobby: tuple[str, ...] = (),
        leave_early: tuple[str, ...] = (),
    ) -> str:
        """A session lasting an hour: ``attend`` are admitted, ``lobby`` only wait, those
        of ``leave_early`` leave before the end; the therapist ends it for all."""
        clients: list[Client] = []
        try:
            therapist = await Client().connect(self.server.url, self.owner_cookie)
            clients.append(therapist)
            assert (await therapist.call("join", {"room_code": self.code}))["ok"]
            session = await stores.get_open_session(self.server.database, self.room_id)
            assert session is not None
            for name in (*attend, *lobby):
                await self._check_in(name)
                client = await Client().connect(self.server.url, self.cookies[name])
                clients.append(client)
                joined = await client.call("join", {"room_code": self.code})
                assert joined["ok"], joined
                if name in attend:
                    pid = joined["data"]["participant_id"]
                    admitted = await therapist.call("admit", {"participant_id": pid})
                    assert admitted["ok"], admitted
            self.clock.advance(0.5)
            for name in leave_early:
                client = clients[1 + (*attend, *lobby).index(name)]
                assert (await client.call("leave", {}))["ok"]
            self.clock.advance(0.5)
            assert (await therapist.call("end_session", {}))["ok"]
        finally:
            for client in clients:
                await client.close()
        self.sessions.append(session.id)
        return session.id


async def make_group(
    server: RunningServer, clock: SteppedClock, patients: tuple[str, ...] = ("Ann", "Bo")
) -> Group:
    code = await server.create_room("Thursday group")
    room = await stores.get_room_by_code(server.database, RoomCode(code))
    assert room is not None
    group = Group(server, clock, code, room.id, await server.owner_cookie(code))
    for name in patients:
        await group.add_patient(name)
    return group


async def question_ids(server: RunningServer) -> dict[str, str]:
    return {q.text: q.id for q in await server.app[FEEDBACK].questions()}


async def send(
    server: RunningServer, cookie: str, answers: dict[str, str], session_id: str | None = None
) -> Page:
    """Open the form and send ``answers`` (question text -> value) with its session id,
    or with ``session_id`` (sent straight, as a forged form would)."""
    ids = await question_ids(server)
    fields = {f"q_{ids.get(text, text)}": value for text, value in answers.items()}
    client = SiteClient(server.url, cookie)
    try:
        form = await client.get("/feedback")
        if session_id is None:
            found = re.search(r'name="session_id" value="([^"]+)"', form.text)
            assert found, form.text[-800:]
            session_id = found.group(1)
        # Without a form to send (a forged one), the pre-join page's token is theirs.
        csrf = form.csrf if "csrf_token" in form.text else (await client.get("/join")).csrf
        return await client.post("/feedback", {"session_id": session_id, **fields}, csrf=csrf)
    finally:
        await client.close()


async def get(server: RunningServer, cookie: str | None, path: str = "/feedback") -> Page:
    client = SiteClient(server.url, cookie)
    try:
        return await client.get(path, follow=False)
    finally:
        await client.close()


async def responses(server: RunningServer) -> int:
    async with server.database.read() as conn:
        return len((await conn.execute(select(FeedbackResponseRow.id))).all())


def error_of(page: Page) -> str:
    found = ERROR.search(page.text)
    assert found, page.text[-800:]
    return found.group(1)


# ---------------------------------------------------------------------------- the form


async def test_the_form_opens_after_an_attended_session_ends_until_the_window_closes(
    server: RunningServer, clock: SteppedClock
) -> None:
    group = await make_group(server, clock, ("Ann", "Dee"))
    assert NO_SESSION in (await get(server, group.cookies["Ann"])).text
    await group.run_session(attend=("Ann",), lobby=("Dee",))
    page = await get(server, group.cookies["Ann"])
    assert page.status == 200 and "How was the session?" in page.text
    assert "Thursday group" in page.text and "therapists" in page.text
    for text in (HEARD, OVERALL):
        assert f"<legend>{text}</legend>" in page.text
    ids = await question_ids(server)
    for score in range(11):
        assert f'name="q_{ids[HEARD]}" value="{score}"' in page.text
    assert f'<textarea id="comment-5" name="q_{ids[COMMENT]}"' in page.text
    assert "Not at all" in page.text and "Completely" in page.text
    assert NO_SESSION in (await get(server, group.cookies["Dee"])).text  # only waited
    clock.advance(WINDOW_HOURS - 0.5)  # the session ended half an hour after it began
    assert "How was the session?" in (await get(server, group.cookies["Ann"])).text
    clock.advance(1)
    assert NO_SESSION in (await get(server, group.cookies["Ann"])).text


async def test_the_pages_a_patient_comes_back_to_point_to_the_form(
    server: RunningServer, clock: SteppedClock
) -> None:
    """Someone who left early never saw the call's "session ended" screen (nor did
    someone whose connection dropped): the pre-join page and an invite's page they come
    back to point to the form while it waits for them, and only then."""
    group = await make_group(server, clock, ("Ann", "Bo", "Dee"))
    assert FEEDBACK_LINK not in (await get(server, group.cookies["Ann"], "/join")).text
    await group.run_session(attend=("Ann", "Bo"), lobby=("Dee",), leave_early=("Ann",))
    for name in ("Ann", "Bo"):
        join = await get(server, group.cookies[name], "/join")
        assert join.status == 200 and FEEDBACK_LINK in join.text, name
    assert FEEDBACK_LINK not in (await get(server, group.cookies["Dee"], "/join")).text
    # Next week's link, opened in the same browser: its page says so too.
    token = await server.personal_invite(group.code, "Ann")
    landing = await get(server, group.cookies["Ann"], f"/i/{token}")
    assert landing.status == 200 and "You are invited" in landing.text
    assert FEEDBACK_LINK in landing.text
    # A browser without a pass: nobody to ask.
    assert FEEDBACK_LINK not in (await get(server, None, f"/i/{token}")).text
    # Answered, the pages stop asking; unanswered, they ask until the window closes.
    assert "Thank you" in (await send(server, group.cookies["Ann"], {HEARD: "8"})).text
    assert FEEDBACK_LINK not in (await get(server, group.cookies["Ann"], "/join")).text
    assert FEEDBACK_LINK not in (await get(server, group.cookies["Ann"], f"/i/{token}")).text
    clock.advance(WINDOW_HOURS)
    assert FEEDBACK_LINK not in (await get(server, group.cookies["Bo"], "/join")).text


async def test_a_patient_sends_the_form_once(server: RunningServer, clock: SteppedClock) -> None:
    group = await make_group(server, clock)
    session = await group.run_session()
    sent = await send(server, group.cookies["Ann"], {HEARD: "9", OVERALL: "7", COMMENT: ""})
    assert sent.status == 200 and sent.url.endswith("/feedback")
    assert "Thank you" in sent.text and "therapists" in sent.text
    assert "Thank you" in (await get(server, group.cookies["Ann"])).text  # later, too
    again = await send(server, group.cookies["Ann"], {HEARD: "1"}, session_id=session)
    assert again.status == 409 and "already sent" in again.text
    async with server.database.read() as conn:
        scores = sorted(row.score for row in await conn.execute(select(FeedbackAnswerRow.score)))
    assert scores == [7, 9] and await responses(server) == 1
    [entry] = (await server.app[AUDIT].page(action="feedback_submitted")).entries
    assert entry.target == session and "Ann" not in str(entry.details)


async def test_comments_are_not_in_the_database_files_in_clear(
    server: RunningServer, clock: SteppedClock
) -> None:
    group = await make_group(server, clock)
    session = await group.run_session()
    sent = await send(server, group.cookies["Ann"], {COMMENT: SECRET_COMMENT})
    assert "Thank you" in sent.text
    files = list((server.settings.data_dir).glob("telecircle.db*"))
    assert any(path.name.endswith("-wal") for path in files)
    for path in files:
        assert SECRET_COMMENT.encode() not in path.read_bytes(), path.name
    owner = await _owner(group)
    section = await server.app[FEEDBACK].record_section(owner, session)
    [ann] = section.session.responses
    assert [a.comment for a in ann.answers] == [SECRET_COMMENT]


@pytest.mark.parametrize(
    ("answers", "status", "words"),
    [
        ({HEARD: "zebra-11"}, 422, "whole number from 0 to 10"),
        ({HEARD: "11"}, 422, "whole number from 0 to 10"),
        ({HEARD: "5", "fq_zebra": "5"}, 422, "form has changed"),
        ({COMMENT: "zebra " * 40}, 422, "at most 200 characters"),
        ({HEARD: "", COMMENT: "  "}, 422, "answer at least one question"),
    ],
    ids=["word", "eleven", "unknown-question", "long-comment", "nothing"],
)
async def test_bad_answers_get_clear_errors_that_do_not_echo_them(
    server: RunningServer,
    clock: SteppedClock,
    answers: dict[str, str],
    status: int,
    words: str,
) -> None:
    group = await make_group(server, clock)
    await group.run_session()
    page = await send(server, group.cookies["Ann"], answers)
    assert page.status == status
    error = error_of(page)
    assert words in error and "zebra" not in error and "11" not in error
    assert "How was the session?" in page.text  # the form again, to put it right
    if "long" not in str(answers) and "zebra " not in str(answers):
        assert "zebra" not in page.text
    assert await responses(server) == 0


async def test_a_long_comment_is_kept_in_the_form_to_shorten(
    server: RunningServer, clock: SteppedClock
) -> None:
    group = await make_group(server, clock)
    await group.run_session()
    long = "I want to say more " * 12
    page = await send(server, group.cookies["Ann"], {HEARD: "6", COMMENT: long})
    assert page.status == 422 and long.strip() in page.text
    ids = await question_ids(server)
    assert f'name="q_{ids[HEARD]}" value="6" checked' in page.text


async def test_only_the_patients_who_attended_can_see_or_send_the_form(
    server: RunningServer, clock: SteppedClock
) -> None:
    group = await make_group(server, clock, ("Ann", "Cy", "Dee"))
    other = await make_group(server, clock, ("Bo",))
    await other.run_session(attend=("Bo",))
    session = await group.run_session(attend=("Ann",), lobby=("Dee",))
    assert NO_SESSION in (await get(server, group.cookies["Cy"])).text  # never came
    assert NO_SESSION in (await get(server, group.cookies["Dee"])).text  # only waited
    bo_form = (await get(server, other.cookies["Bo"])).text  # his own group's session
    assert f'value="{other.sessions[0]}"' in bo_form and session not in bo_form
    for cookie in (group.cookies["Cy"], group.cookies["Dee"], other.cookies["Bo"]):
        forged = await send(server, cookie, {HEARD: "3"}, session_id=session)
        assert forged.status == 404 and "This form is closed" in forged.text
    ann_forged = await send(server, group.cookies["Ann"], {HEARD: "3"}, other.sessions[0])
    assert ann_forged.status == 404
    assert await responses(server) == 0


async def test_clinicians_and_administrators_cannot_give_feedback(
    server: RunningServer, clock: SteppedClock
) -> None:
    group = await make_group(server, clock)
    session = await group.run_session()
    admin = await server.sign_in(await server._user(Role.ADMINISTRATOR))
    for cookie in (group.owner_cookie, await server.clinician_cookie(group.code), admin):
        assert (await get(server, cookie)).headers.get("X-Telecircle-Refused") == "forbidden"
        client = SiteClient(server.url, cookie)
        try:
            home = await client.get("/account")
            posted = await client.post(
                "/feedback", {"session_id": session, "q_x": "5"}, csrf=home.csrf, follow=False
            )
        finally:
            await client.close()
        assert posted.status == 403
        assert posted.headers.get("X-Telecircle-Refused") == "forbidden"
    assert await responses(server) == 0


async def test_the_form_needs_its_csrf_token(server: RunningServer, clock: SteppedClock) -> None:
    group = await make_group(server, clock)
    session = await group.run_session()
    ids = await question_ids(server)
    client = SiteClient(server.url, group.cookies["Ann"])
    try:
        page = await client.post(
            "/feedback", {"session_id": session, f"q_{ids[HEARD]}": "5"}, csrf=None, follow=False
        )
    finally:
        await client.close()
    assert page.headers.get("X-Telecircle-Refused") == "csrf"
    assert await responses(server) == 0


async def test_a_personal_link_opened_again_still_reaches_the_form(
    server: RunningServer, clock: SteppedClock
) -> None:
    group = await make_group(server, clock)
    await group.run_session()
    again = await server.open_invite(group.tokens["Ann"], "Ann")  # another device
    assert "How was the session?" in (await get(server, again)).text
    assert "Thank you" in (await send(server, again, {OVERALL: "8"})).text


# ---------------------------------------------------------------------------- admin


async def test_the_administrator_edits_the_questions(
    server: RunningServer, clock: SteppedClock
) -> None:
    group = await make_group(server, clock)
    first = await group.run_session()
    await send(server, group.cookies["Ann"], {OVERALL: "6", HEARD: "8"})
    admin = SiteClient(server.url, await server.sign_in(await server._user(Role.ADMINISTRATOR)))
    try:
        page = await admin.get("/admin/feedback")
        assert page.status == 200 and page.text.count('name="text_') == 6  # 5 and a new one
        ids = await question_ids(server)
        rows = re.findall(r'name="id_(\d+)" value="([^"]*)"', page.text)
        row_of = {question_id: row for row, question_id in rows}
        fields: dict[str, str] = {}
        for text, question_id in ids.items():
            n = row_of[question_id]
            question = next(
                q for q in await server.app[FEEDBACK].questions() if q.id == question_id
            )
            fields |= {
                f"id_{n}": question_id,
                f"text_{n}": "How was the group for you?" if text == OVERALL else text,
                f"kind_{n}": question.kind.value,
                f"low_{n}": question.wording.low_label,
                f"high_{n}": question.wording.high_label,
                f"position_{n}": str(question.position),
            }
        fields[f"remove_{row_of[ids['The approach fit me']]}"] = "on"
        fields |= {"id_5": "", "text_5": "What should we do more of?", "kind_5": "comment"}
        fields |= {"low_5": "", "high_5": "", "position_5": "1"}
        broken = await admin.post("/admin/feedback", {**fields, "text_0": " "}, csrf=page.csrf)
        assert broken.status == 422 and "Please write the question." in error_of(broken)
        saved = await admin.post("/admin/feedback", fields, csrf=page.csrf)
        assert saved.status == 200 and "Saved" in saved.text
        stale = await admin.post("/admin/feedback", fields, csrf=page.csrf)  # sent twice
        assert stale.status == 422 and "changed meanwhile" in error_of(stale)
    finally:
        await admin.close()
    texts = [q.text for q in await server.app[FEEDBACK].questions()]
    assert texts == [
        "What should we do more of?",
        HEARD,
        "We worked on what I wanted to work on",
        "How was the group for you?",
        COMMENT,
    ]
    [entry] = (await server.app[AUDIT].page(action="feedback_questions_changed")).entries
    assert dict(entry.details) == {"added": 1, "reworded": 1, "removed": 1, "moved": 2}
    second = await group.run_session()
    form = await get(server, group.cookies["Ann"])
    assert "<legend>How was the group for you?</legend>" in form.text
    assert "The approach fit me" not in form.text and OVERALL not in form.text
    owner = await _owner(group)
    old = (await server.app[FEEDBACK].record_section(owner, first)).session.responses[0]
    assert [a.question for a in old.answers] == [HEARD, OVERALL]  # the words they answered
    assert second != first


# ---------------------------------------------------------------------------- the record


async def _owner(group: Group) -> UserRecord:
    clinicians = await org_store.clinicians_of_room(group.server.database, group.room_id)
    user = await get_user(
        group.server.database, next(user for user, role in clinicians if role == "owner")
    )
    assert user is not None
    return user


async def test_the_record_section_shows_the_answers_and_the_trend(
    server: RunningServer, clock: SteppedClock
) -> None:
    group = await make_group(server, clock)
    for ann, bo in (("4", "6"), ("7", ""), ("9", "8")):
        await group.run_session()
        await send(server, group.cookies["Ann"], {HEARD: ann, COMMENT: SECRET_COMMENT})
        if bo:
            await send(server, group.cookies["Bo"], {HEARD: bo})
    owner = await _owner(group)
    section = await server.app[FEEDBACK].record_section(owner, group.sessions[-1])
    # As the therapist reads it: on the session's record page.
    reader = SiteClient(server.url, await server.sign_in(owner.id))
    try:
        page = await reader.get(f"/clinic/sessions/{group.sessions[-1]}")
    finally:
        await reader.close()
    assert page.status == 200
    html = page.text
    assert '<h2 id="feedback-title">Patients\' feedback</h2>' in html
    assert "<h3>Ann <span" in html and "<h3>Bo <span" in html
    assert SECRET_COMMENT in html and '<span class="score">9</span> of 10' in html
    assert '<td class="average">8.5</td>' in html  # (9 + 8) / 2
    trend_rows = re.findall(r'<tr data-session-id="(s_[0-9a-f]+)"', html)
    assert trend_rows == group.sessions  # oldest first
    assert "(this session)" in html and f'href="/clinic/sessions/{group.sessions[0]}"' in html
    assert [line.values for line in section.trend.lines] == [(5.0, 7.0, 8.5)]
    assert html.count("<polyline ") == 1 and html.count("<circle ") == 3
    assert 'role="img" aria-label="I felt heard and understood: from 5.0 to 8.5' in html
    strangers = [await get_user(server.database, await server._user(Role.ADMINISTRATOR))]
    for stranger in strangers:
        assert stranger is not None
        with pytest.raises(Exception, match="not one of yours"):
            await server.app[FEEDBACK].record_section(stranger, group.sessions[-1])


# ---------------------------------------------------------------------------- settings


async def test_the_limits_come_from_the_settings(server: RunningServer) -> None:
    feedback = server.app[FEEDBACK]
    assert feedback.limits == server.settings.feedback_limits()
    assert feedback.limits.comment_max_chars == 200  # as the fixture set it
    assert feedback.window == WINDOW_HOURS * HOUR
    defaults = load_settings(data_dir=server.settings.data_dir)
    assert defaults.feedback_window == 7 * 24 * HOUR
    assert defaults.feedback_limits() == FeedbackLimits(comment_max_chars=2000, max_questions=12)
    assert defaults.feedback_trend_sessions == 20
    for bad in (
        {"feedback_window": 0},
        {"feedback_comment_max_chars": 50},
        {"feedback_max_questions": 0},
        {"feedback_trend_sessions": 1},
    ):
        with pytest.raises(ConfigError, match="TELECIRCLE_FEEDBACK_"):
            load_settings(**bad)


async def test_without_a_valid_pass_the_page_says_to_open_the_link_again(
    server: RunningServer,
) -> None:
    page = await get(server, "tc_pass=not-a-pass")
    assert page.status == 401 and "open the link your therapist sent you" in page.text.lower()
    assert page.headers.get("X-Telecircle-Refused") == "sign_in"
