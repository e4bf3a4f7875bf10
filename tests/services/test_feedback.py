"""Patients' feedback: real SQLite and PostgreSQL, real key files, the real notes service.

Covers the default questions, which session a patient may rate (attended, ended, within
the window, their own room and seat), submitting once (also when two submissions
race), refusals that never echo input, comments sealed at rest (tampering and
retention show as such), the administrator's edits (a new wording is a new question;
old answers keep theirs), what clinicians read, the trend, and the audit log.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select, update

from telecircle.crypto.key_store import open_key_store
from telecircle.domain.access import Role
from telecircle.domain.events import ParticipantJoined, ParticipantKnocked
from telecircle.domain.feedback import (
    DEFAULT_QUESTIONS,
    FeedbackLimits,
    FeedbackRefused,
    Question,
    QuestionEdit,
    QuestionKind,
    QuestionText,
    parse_score,
    plan_edit,
)
from telecircle.domain.ids import ParticipantId, RoomId, SessionId, new_room_code
from telecircle.domain.notes import NoteLimits
from telecircle.services.audit import AuditLog
from telecircle.services.feedback import (
    SPARK_HEIGHT,
    SPARK_PAD,
    AlreadySent,
    FeedbackNotFound,
    FeedbackService,
    FeedbackUnavailable,
    sparkline,
)
from telecircle.services.notes import NotesService
from telecircle.storage import accounts_store, notes_store, org_store, stores
from telecircle.storage.accounts_store import UserRecord
from telecircle.storage.database import Database
from telecircle.storage.invites_store import PassRecord
from telecircle.storage.tables import FeedbackAnswerRow, FeedbackResponseRow, ParticipantRow
from tests.services.conftest import SteerableClock
from tests.storage.conftest import database, db_url, postgres_unreachable  # noqa: F401

HOUR = 3600.0
DAY = 24 * HOUR
WINDOW = 7 * DAY
LIMITS = FeedbackLimits(comment_max_chars=300, max_questions=6)
SECRET_COMMENT = "I could not say it in the group: the move scares me qv8"
ZONE = "UTC"


def a_pass(pass_id: str, room_id: str) -> PassRecord:
    """A group invite's pass (only its id and room matter to the feedback service)."""
    return PassRecord(
        id=pass_id,
        invite_id="i_" + pass_id[:8],
        room_id=room_id,
        generation=0,
        display_name=None,
        created_at=0.0,
        expires_at=1e12,
        revoked_at=None,
        invite_kind="group",
        patient_name=None,
    )


@dataclass
class Clinic:
    db: Database
    clock: SteerableClock
    audit: AuditLog
    notes: NotesService
    feedback: FeedbackService
    therapist: UserRecord
    co: UserRecord
    outsider: UserRecord
    admin: UserRecord
    room_id: str
    other_room_id: str
    sessions: list[str] = field(default_factory=list)
    seats: dict[tuple[str, str], str] = field(default_factory=dict)  # (session, name) -> pid

    def pass_of(self, name: str, room_id: str | None = None) -> PassRecord:
        return a_pass((name.lower() * 64)[:64], room_id or self.room_id)

    async def run_session(
        self,
        attended: Sequence[str] = ("Ann", "Bo"),
        lobby_only: Sequence[str] = (),
        room_id: str | None = None,
        *,
        end: bool = True,
    ) -> str:
        """A session of the room: ``attended`` were in it, ``lobby_only`` only waited;
        it lasts an hour and (unless told) ends."""
        room = RoomId(room_id or self.room_id)
        session = await stores.open_session(self.db, room, self.clock.now())
        number = len(self.sessions)
        events: list[ParticipantJoined | ParticipantKnocked] = []
        for name in (*attended, *lobby_only):
            pid = ParticipantId(f"p_{name.lower()}_{number}")
            self.seats[(session.id, name)] = pid
            kind = ParticipantJoined if name in attended else ParticipantKnocked
            events.append(kind(pid, name, self.clock.now()))
        await stores.record_events(self.db, session.id, events)
        async with self.db.write() as conn:
            for name in (*attended, *lobby_only):
                await conn.execute(
                    update(ParticipantRow)
                    .where(ParticipantRow.id == self.seats[(session.id, name)])
                    .values(pass_id=self.pass_of(name, room).id)
                )
        self.sessions.append(session.id)
        self.clock.offset += HOUR
        if end:
            await stores.end_session(self.db, SessionId(session.id), self.clock.now())
        return session.id

    async def form_ids(self) -> dict[str, str]:
        """Question text -> id of the active questions."""
        return {q.text: q.id for q in await self.feedback.questions()}

    async def send(
        self, name: str, session_id: str, answers: dict[str, str], room_id: str | None = None
    ) -> str:
        ids = await self.form_ids()
        raw = {ids[text]: value for text, value in answers.items()}
        return await self.feedback.submit(self.pass_of(name, room_id), session_id, raw)


async def _user(db: Database, name: str, role: Role) -> UserRecord:
    return await accounts_store.create_user(
        db, username=name, display_name=name.title(), role=role, now=1.0
    )


@pytest.fixture
async def clinic(database: Database, tmp_path: Path) -> AsyncIterator[Clinic]:  # noqa: F811
    clock = SteerableClock()
    audit = AuditLog(database, b"k" * 32, clock)
    keys = open_key_store(tmp_path / "keys", create=True)
    notes = NotesService(database, keys, clock, audit, NoteLimits(500, 5, 3))
    therapist = await _user(database, "therapist", Role.THERAPIST)
    co = await _user(database, "co", Role.CO_FACILITATOR)
    outsider = await _user(database, "outsider", Role.THERAPIST)
    admin = await _user(database, "admin", Role.ADMINISTRATOR)
    room = await stores.create_room(database, "Group", 10, new_room_code())
    other = await stores.create_room(database, "Other group", 10, new_room_code())
    await org_store.assign_clinician(database, room.id, therapist.id, "owner")
    await org_store.assign_clinician(database, room.id, co.id, "co_facilitator")
    await org_store.assign_clinician(database, other.id, outsider.id, "owner")
    feedback = FeedbackService(
        database, clock, audit, notes, LIMITS, window=WINDOW, time_zone=ZONE, trend_sessions=3
    )
    yield Clinic(
        database, clock, audit, notes, feedback, therapist, co, outsider, admin, room.id, other.id
    )


async def _stored_responses(db: Database) -> int:
    async with db.read() as conn:
        return len((await conn.execute(select(FeedbackResponseRow.id))).all())


# ---------------------------------------------------------------------------- questions


async def test_the_default_questions_are_made_once(clinic: Clinic) -> None:
    made = await asyncio.gather(*(clinic.feedback.questions() for _ in range(3)))
    assert all(len(questions) == len(DEFAULT_QUESTIONS) for questions in made)
    questions = await clinic.feedback.questions(active_only=False)
    assert [q.wording for q in questions] == list(DEFAULT_QUESTIONS)
    assert [q.position for q in questions] == [1, 2, 3, 4, 5]
    assert [q.kind for q in questions].count(QuestionKind.COMMENT) == 1
    assert all(q.wording.low_label and q.wording.high_label for q in questions[:4])


async def test_an_edit_rewords_adds_removes_and_reorders(clinic: Clinic) -> None:
    first, second, third, fourth, comment = await clinic.feedback.questions()
    edits = [
        QuestionEdit(first.id, first.wording, 2),
        QuestionEdit(
            second.id, QuestionText("We  worked on my goals", QuestionKind.SCALE, "No", "Yes"), 1
        ),
        QuestionEdit(third.id, third.wording, 3, keep=False),
        QuestionEdit(fourth.id, fourth.wording, 4),
        QuestionEdit(comment.id, comment.wording, 9),
        QuestionEdit(None, QuestionText("Pace", QuestionKind.SCALE, "Too slow", "Too fast"), 5),
    ]
    after = await clinic.feedback.replace_questions(clinic.admin.id, edits, "127.0.0.1")
    assert [(q.text, q.position) for q in after] == [
        ("We worked on my goals", 1),
        ("I felt heard and understood", 2),
        ("The group overall", 3),
        ("Pace", 4),
        ("Anything you would like your therapist to know?", 5),
    ]
    assert after[1].id == first.id and after[0].id != second.id  # a new wording: a new id
    everything = {q.id: q for q in await clinic.feedback.questions(active_only=False)}
    assert not everything[second.id].active and not everything[third.id].active
    [entry] = (await clinic.audit.page(action="feedback_questions_changed")).entries
    assert entry.actor == clinic.admin.id
    assert dict(entry.details) == {"added": 1, "reworded": 1, "removed": 1, "moved": 2}


async def test_an_unchanged_form_changes_and_audits_nothing(clinic: Clinic) -> None:
    questions = await clinic.feedback.questions()
    edits = [QuestionEdit(q.id, q.wording, q.position) for q in questions]
    assert await clinic.feedback.replace_questions(clinic.admin.id, edits, None) == questions
    assert (await clinic.audit.page(action="feedback_questions_changed")).total == 0


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("stale", "questions_changed"),
        ("duplicate", "questions_changed"),
        ("too_many", "too_many_questions"),
        ("empty_text", "invalid_question"),
        ("long_text", "invalid_question"),
        ("no_label", "invalid_question"),
        ("control", "invalid_question"),
    ],
)
async def test_bad_edits_are_refused_and_change_nothing(
    clinic: Clinic, change: str, code: str
) -> None:
    questions = await clinic.feedback.questions()
    edits = [QuestionEdit(q.id, q.wording, q.position) for q in questions]
    new = QuestionText("zebra", QuestionKind.SCALE, "low", "high")
    if change == "stale":
        edits = edits[1:]
    elif change == "duplicate":
        edits.append(edits[0])
    elif change == "too_many":
        edits += [QuestionEdit(None, new, 9)] * 2
    elif change == "empty_text":
        edits.append(QuestionEdit(None, QuestionText("  ", QuestionKind.SCALE, "a", "b"), 9))
    elif change == "long_text":
        edits.append(QuestionEdit(None, QuestionText("zebra" * 41, QuestionKind.COMMENT), 9))
    elif change == "no_label":
        edits.append(QuestionEdit(None, QuestionText("zebra", QuestionKind.SCALE, "a", ""), 9))
    else:
        edits.append(QuestionEdit(None, QuestionText("zeb\x07ra", QuestionKind.COMMENT), 9))
    with pytest.raises(FeedbackRefused) as refused:
        await clinic.feedback.replace_questions(clinic.admin.id, edits, None)
    assert refused.value.code == code
    assert "zeb" not in refused.value.message
    assert await clinic.feedback.questions() == questions


async def test_two_edits_from_the_same_form_do_not_both_apply(clinic: Clinic) -> None:
    questions = await clinic.feedback.questions()
    keep = [QuestionEdit(q.id, q.wording, q.position) for q in questions]
    one = [*keep, QuestionEdit(None, QuestionText("One", QuestionKind.COMMENT), 9)]
    two = [*keep, QuestionEdit(None, QuestionText("Two", QuestionKind.COMMENT), 9)]
    results = await asyncio.gather(
        clinic.feedback.replace_questions(clinic.admin.id, one, None),
        clinic.feedback.replace_questions(clinic.admin.id, two, None),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, FeedbackRefused)]
    assert len(refused) == 1 and refused[0].code == "questions_changed"
    texts = [q.text for q in await clinic.feedback.questions()]
    assert len(texts) == len(questions) + 1 and texts[-1] in ("One", "Two")


def test_plan_edit_numbers_positions_in_the_rows_order() -> None:
    wording = QuestionText("Q", QuestionKind.COMMENT)
    current = [Question("a", 1, wording, True), Question("b", 2, wording, True)]
    plan = plan_edit(
        current, [QuestionEdit("a", wording, 5), QuestionEdit("b", wording, 5)], max_questions=5
    )
    assert plan.moved == () and not plan.changed  # a tie keeps the rows' order
    plan = plan_edit(
        current, [QuestionEdit("a", wording, 2), QuestionEdit("b", wording, 1)], max_questions=5
    )
    assert set(plan.moved) == {("a", 2), ("b", 1)}
    plan = plan_edit(  # b asked for a's place: b goes first
        current, [QuestionEdit("a", wording, 1), QuestionEdit("b", wording, 1)], max_questions=5
    )
    assert set(plan.moved) == {("a", 2), ("b", 1)}


@pytest.mark.parametrize("raw", ["11", "-1", "3.5", "zebra", "\u0663", "1 0", "010", "+1"])
def test_only_whole_scores_from_0_to_10_are_answers(raw: str) -> None:
    with pytest.raises(FeedbackRefused) as refused:
        parse_score(raw)
    assert refused.value.code == "invalid_score"
    assert raw not in refused.value.message.replace("0 to 10", "")


def test_blank_is_no_answer() -> None:
    assert parse_score("") is None and parse_score("  ") is None
    assert parse_score("0") == 0 and parse_score(" 10 ") == 10


# ---------------------------------------------------------------------------- the form


async def test_the_form_is_for_the_latest_session_attended_within_the_window(
    clinic: Clinic,
) -> None:
    ann = clinic.pass_of("Ann")
    assert await clinic.feedback.form_for(ann) is None  # no session yet
    await clinic.run_session()
    latest = await clinic.run_session()
    form = await clinic.feedback.form_for(ann)
    assert form is not None
    assert form.session_id == latest and form.participant_id == clinic.seats[(latest, "Ann")]
    assert form.room_name == "Group" and not form.already_sent
    assert [q.wording for q in form.questions] == list(DEFAULT_QUESTIONS)
    clinic.clock.offset += WINDOW - 2 * HOUR
    assert await clinic.feedback.form_for(ann) is not None
    clinic.clock.offset += 2 * HOUR
    assert await clinic.feedback.form_for(ann) is None  # the window has closed


async def test_no_form_for_a_running_session_the_lobby_or_someone_else(clinic: Clinic) -> None:
    running = await clinic.run_session(("Ann",), ("Dee",), end=False)
    assert await clinic.feedback.form_for(clinic.pass_of("Ann")) is None  # not ended
    await stores.end_session(clinic.db, SessionId(running), clinic.clock.now())
    assert await clinic.feedback.form_for(clinic.pass_of("Ann")) is not None
    assert await clinic.feedback.form_for(clinic.pass_of("Dee")) is None  # only waited
    assert await clinic.feedback.form_for(clinic.pass_of("Zed")) is None  # never came
    other = clinic.pass_of("Ann", clinic.other_room_id)  # the same id, another room
    assert await clinic.feedback.form_for(other) is None


async def test_no_form_when_the_administrator_removed_every_question(clinic: Clinic) -> None:
    await clinic.run_session()
    questions = await clinic.feedback.questions()
    edits = [QuestionEdit(q.id, q.wording, q.position, keep=False) for q in questions]
    assert await clinic.feedback.replace_questions(clinic.admin.id, edits, None) == []
    assert await clinic.feedback.form_for(clinic.pass_of("Ann")) is None
    assert await clinic.feedback.questions() == []  # the defaults do not come back


# ---------------------------------------------------------------------------- submitting


async def test_a_response_is_stored_once(clinic: Clinic) -> None:
    session = await clinic.run_session()
    await clinic.send(
        "Ann",
        session,
        {"I felt heard and understood": "8", "The group overall": "0", "The approach fit me": ""},
    )
    form = await clinic.feedback.form_for(clinic.pass_of("Ann"))
    assert form is not None and form.already_sent
    with pytest.raises(AlreadySent) as again:
        await clinic.send("Ann", session, {"The group overall": "5"})
    assert again.value.code == "feedback_already_sent"
    async with clinic.db.read() as conn:
        rows = (await conn.execute(select(FeedbackAnswerRow.score))).all()
    assert sorted(row.score for row in rows) == [0, 8]  # the skipped question has no row


async def test_racing_submissions_store_one_response(clinic: Clinic) -> None:
    session = await clinic.run_session()
    results = await asyncio.gather(
        *(clinic.send("Ann", session, {"The group overall": str(n)}) for n in range(4)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, str) for r in results) == 1
    assert all(isinstance(r, (str, AlreadySent)) for r in results)
    assert await _stored_responses(clinic.db) == 1


@pytest.mark.parametrize(
    ("answers", "code"),
    [
        ({"I felt heard and understood": "zebra"}, "invalid_score"),
        ({"I felt heard and understood": "11"}, "invalid_score"),
        ({"Anything you would like your therapist to know?": "zebra" * 61}, "comment_too_long"),
        ({"Anything you would like your therapist to know?": "zebra\x00"}, "invalid_comment"),
        ({"I felt heard and understood": "", "The group overall": " "}, "empty_feedback"),
        ({}, "empty_feedback"),
    ],
    ids=["word", "eleven", "long", "nul", "blank", "nothing"],
)
async def test_bad_answers_are_refused_without_echoing_them(
    clinic: Clinic, answers: dict[str, str], code: str
) -> None:
    session = await clinic.run_session()
    with pytest.raises(FeedbackRefused) as refused:
        await clinic.send("Ann", session, answers)
    assert refused.value.code == code
    assert "zebra" not in refused.value.message and "11" not in refused.value.message
    assert await _stored_responses(clinic.db) == 0


async def test_questions_not_on_the_form_are_refused(clinic: Clinic) -> None:
    session = await clinic.run_session()
    ids = await clinic.form_ids()
    for unknown in ("fq_zebra", ""):
        raw = {ids["The group overall"]: "5", unknown: "5"}
        with pytest.raises(FeedbackRefused) as refused:
            await clinic.feedback.submit(clinic.pass_of("Ann"), session, raw)
        assert refused.value.code == "unknown_question" and "zebra" not in refused.value.message
    # A question taken off the form meanwhile is no longer on it either.
    questions = await clinic.feedback.questions()
    edits = [QuestionEdit(q.id, q.wording, q.position, keep=q.position != 4) for q in questions]
    await clinic.feedback.replace_questions(clinic.admin.id, edits, None)
    with pytest.raises(FeedbackRefused) as refused:
        await clinic.feedback.submit(
            clinic.pass_of("Ann"), session, {ids["The group overall"]: "5"}
        )
    assert refused.value.code == "unknown_question"
    assert await _stored_responses(clinic.db) == 0


async def test_only_the_session_on_the_form_can_be_rated(clinic: Clinic) -> None:
    older = await clinic.run_session()
    latest = await clinic.run_session(("Bo",))  # Ann was not in the latest one
    theirs = await clinic.run_session(("Ann",), room_id=clinic.other_room_id)
    for name, session, room in (
        ("Ann", latest, None),  # a session she did not attend
        ("Bo", older, None),  # not the latest one he attended
        ("Ann", theirs, None),  # another room's session
        ("Ann", latest, clinic.other_room_id),  # her pass for the other room
        ("Zed", older, None),  # never there
    ):
        with pytest.raises(FeedbackUnavailable):
            await clinic.send(name, session, {"The group overall": "5"}, room_id=room)
    assert await _stored_responses(clinic.db) == 0
    await clinic.send("Ann", older, {"The group overall": "5"})  # her latest in this room


# ---------------------------------------------------------------------------- reading


async def test_clinicians_read_answers_comments_and_averages(clinic: Clinic) -> None:
    session = await clinic.run_session(("Ann", "Bo", "Cy"))
    comment = "Anything you would like your therapist to know?"
    await clinic.send("Ann", session, {"I felt heard and understood": "8", comment: SECRET_COMMENT})
    await clinic.send("Bo", session, {"I felt heard and understood": "5", "The group overall": "7"})
    for reader in (clinic.therapist, clinic.co):
        section = await clinic.feedback.record_section(reader, session)
        ann, bo = section.session.responses
        assert (ann.name, bo.name) == ("Ann", "Bo")
        assert ann.participant_id == clinic.seats[(session, "Ann")]
        assert [(a.question, a.score, a.comment) for a in ann.answers] == [
            ("I felt heard and understood", 8, None),
            (comment, None, SECRET_COMMENT),
        ]
        assert [(a.question, a.average, a.count) for a in section.session.averages] == [
            ("I felt heard and understood", 6.5, 2),
            ("The group overall", 7.0, 1),
        ]
    for stranger in (clinic.outsider, clinic.admin):
        with pytest.raises(FeedbackNotFound):
            await clinic.feedback.record_section(stranger, session)
    with pytest.raises(FeedbackNotFound):
        await clinic.feedback.record_section(clinic.therapist, "s_nobody")


async def test_comments_are_sealed_and_tampering_shows(clinic: Clinic) -> None:
    session = await clinic.run_session()
    comment = "Anything you would like your therapist to know?"
    await clinic.send("Ann", session, {comment: SECRET_COMMENT})
    await clinic.send("Bo", session, {comment: "Bo's own words"})
    async with clinic.db.read() as conn:
        rows = (await conn.execute(select(FeedbackAnswerRow))).all()
    assert all(SECRET_COMMENT.encode() not in bytes(row.comment_ciphertext) for row in rows)
    ann_row, bo_row = sorted(rows, key=lambda row: len(row.comment_ciphertext), reverse=True)
    # Bo's sealed comment copied onto Ann's answer does not open there.
    async with clinic.db.write() as conn:
        await conn.execute(
            update(FeedbackAnswerRow)
            .where(FeedbackAnswerRow.response_id == ann_row.response_id)
            .values(
                comment_nonce=bo_row.comment_nonce, comment_ciphertext=bo_row.comment_ciphertext
            )
        )
    responses = (await clinic.feedback.for_session(session)).responses
    [ann] = [r for r in responses if r.name == "Ann"]
    [bo] = [r for r in responses if r.name == "Bo"]
    assert ann.answers[0].comment is None
    assert ann.answers[0].unreadable is not None and "did not decrypt" in ann.answers[0].unreadable
    assert bo.answers[0].comment == "Bo's own words"


async def test_retention_destroys_comments_but_not_scores(clinic: Clinic) -> None:
    session = await clinic.run_session()
    comment = "Anything you would like your therapist to know?"
    await clinic.send("Ann", session, {"The group overall": "9", comment: SECRET_COMMENT})
    assert await notes_store.destroy_keys(clinic.db, [session], clinic.clock.now()) == [session]
    feedback = await clinic.feedback.for_session(session)
    [ann] = feedback.responses
    score, sealed = ann.answers
    assert score.score == 9 and sealed.comment is None
    assert sealed.unreadable is not None and sealed.unreadable.startswith(
        "Destroyed by the retention policy on "
    )
    # Bo can still send scores, but no comment: the session's key is gone.
    with pytest.raises(FeedbackUnavailable):
        await clinic.send("Bo", session, {comment: "too late"})
    await clinic.send("Bo", session, {"The group overall": "4"})


async def test_a_reworded_question_keeps_its_old_answers_wording(clinic: Clinic) -> None:
    first = await clinic.run_session()
    await clinic.send("Ann", first, {"The group overall": "6"})
    questions = await clinic.feedback.questions()
    edits = [
        QuestionEdit(
            q.id,
            QuestionText("This group overall", q.kind, "Poor", "Great")
            if q.text == "The group overall"
            else q.wording,
            q.position,
        )
        for q in questions
    ]
    await clinic.feedback.replace_questions(clinic.admin.id, edits, None)
    second = await clinic.run_session()
    await clinic.send("Ann", second, {"This group overall": "9"})
    [old] = (await clinic.feedback.for_session(first)).responses
    [new] = (await clinic.feedback.for_session(second)).responses
    assert [a.question for a in old.answers] == ["The group overall"]
    assert [(a.question, a.low_label) for a in new.answers] == [("This group overall", "Poor")]
    trend = await clinic.feedback.trend(clinic.room_id)
    assert [line.question for line in trend.lines] == ["The group overall", "This group overall"]
    assert [line.values for line in trend.lines] == [(6.0, None), (None, 9.0)]


async def test_the_trend_follows_the_latest_sessions_oldest_first(clinic: Clinic) -> None:
    heard = "I felt heard and understood"
    scores = [("3", "5"), ("6", ""), ("8", "9"), ("10", "10")]
    sessions = []
    for ann, bo in scores:
        session = await clinic.run_session()
        sessions.append(session)
        await clinic.send("Ann", session, {heard: ann})
        if bo:
            await clinic.send("Bo", session, {heard: bo})
    await clinic.run_session()  # nobody answered the newest
    await clinic.run_session(("Ann",), room_id=clinic.other_room_id)  # another room
    trend = await clinic.feedback.trend(clinic.room_id)  # the fixture keeps 3 sessions
    assert [p.session_id for p in trend.points] == [sessions[2], sessions[3], clinic.sessions[4]]
    assert [p.responses for p in trend.points] == [2, 2, 0]
    assert [q.text for q in trend.questions] == [heard]
    [line] = trend.lines
    assert line.values == (8.5, 10.0, None)
    assert [p.averages for p in trend.points] == [(8.5,), (10.0,), (None,)]
    assert line.sparkline.summary == f"{heard}: from 8.5 to 10.0 of 10 over 2 sessions " + (
        "(lowest 8.5, highest 10.0)."
    )
    assert trend.points[0].started_at < trend.points[1].started_at < trend.points[2].started_at


def test_a_sparkline_leaves_gaps_where_nobody_answered() -> None:
    line = sparkline([0.0, 10.0, None, 5.0, 5.0, None, 7.0], "Q")
    assert len(line.dots) == 5
    assert len(line.lines) == 2  # 0-10 and 5-5; the lone 7 is a dot only
    top, bottom = SPARK_PAD, SPARK_HEIGHT - SPARK_PAD
    assert line.dots[0][1] == bottom and line.dots[1][1] == top
    assert line.dots[0][0] < line.dots[1][0] < line.dots[2][0]
    assert sparkline([None, None], "Q").summary == "Q: no answers yet."
    assert sparkline([4.0], "Q").lines == ()


# ---------------------------------------------------------------------------- audit


async def test_a_submission_is_audited_with_ids_only(clinic: Clinic) -> None:
    session = await clinic.run_session()
    comment = "Anything you would like your therapist to know?"
    response_id = await clinic.send(
        "Ann", session, {comment: SECRET_COMMENT, "The group overall": "7"}
    )
    [entry] = (await clinic.audit.page(action="feedback_submitted")).entries
    assert entry.target == session
    assert entry.actor == "pass:" + clinic.pass_of("Ann").id[:16]
    assert dict(entry.details) == {"response_id": response_id, "answers": 2}
    assert await clinic.audit.verify() == []
