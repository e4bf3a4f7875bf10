"""Patients' feedback: the session-rating form a patient may answer once after a session
they attended, the administrator's questions, and what the room's clinicians read
(each session's answers, and the trend across the room's sessions).

Comments are sealed with the session's data key through the notes service before they
are stored, and opened only to be shown to the room's clinicians; retention destroys
them with the notes. Submissions and edits of the questions go to the audit log (ids
and counts only); clinicians' reads are covered by the session record's own entry.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol
from zoneinfo import ZoneInfo

from telecircle.domain.feedback import (
    DEFAULT_QUESTIONS,
    SCORE_MAX,
    FeedbackLimits,
    FeedbackRefused,
    Question,
    QuestionEdit,
    QuestionKind,
    average,
    plan_edit,
    read_answers,
)
from telecircle.domain.ids import RoomId, SessionId
from telecircle.domain.notes import NoteRefused, Unreadable
from telecircle.errors import TelecircleError
from telecircle.services.audit import AuditAction
from telecircle.services.clock import Clock
from telecircle.services.notes import SealedText
from telecircle.services.ports import AuditSink
from telecircle.storage import feedback_store, notes_store, org_store, stores
from telecircle.storage.accounts_store import UserRecord
from telecircle.storage.database import Database
from telecircle.storage.feedback_store import StoredAnswer, StoredComment, StoredResponse
from telecircle.storage.invites_store import PassRecord

log = logging.getLogger(__name__)

# The sparkline's drawing box (SVG user units): one score point is SPARK_UNIT high.
SPARK_WIDTH = 120
SPARK_HEIGHT = 30
SPARK_PAD = 3


class FeedbackUnavailable(TelecircleError):
    """There is no session this patient may rate now."""

    code = "no_feedback_session"
    http_status = 404


class AlreadySent(TelecircleError):
    """The patient has answered the form for this session already."""

    code = "feedback_already_sent"
    http_status = 409


class FeedbackNotFound(TelecircleError):
    """No such session or room, or not one of the reader's rooms (they look alike)."""

    code = "not_found"
    http_status = 404


class TextSealer(Protocol):
    """Seals and opens text with a session's data key (the notes service)."""

    async def seal_text(self, session_id: str, label: str, text: str) -> SealedText: ...

    async def open_text(
        self, session_id: str, label: str, sealed: SealedText
    ) -> str | Unreadable: ...


@dataclass(frozen=True, slots=True)
class FeedbackForm:
    """The form a patient may answer now: for which session, and its questions."""

    session_id: str
    participant_id: str
    room_name: str
    session_started_at: float
    session_ended_at: float
    questions: tuple[Question, ...]
    already_sent: bool


@dataclass(frozen=True, slots=True)
class AnswerView:
    """One answer as a clinician reads it: a score, a comment, or why a comment cannot
    be read (never shown as empty)."""

    question_id: str
    question: str
    kind: QuestionKind
    low_label: str
    high_label: str
    score: int | None = None
    comment: str | None = None
    unreadable: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseView:
    response_id: str
    participant_id: str
    name: str
    submitted: str
    answers: tuple[AnswerView, ...]


@dataclass(frozen=True, slots=True)
class QuestionAverage:
    """A scale question's average over a session's answers (``count`` of them)."""

    question_id: str
    question: str
    low_label: str
    high_label: str
    average: float
    count: int


@dataclass(frozen=True, slots=True)
class SessionFeedback:
    """What the patients of one session answered."""

    session_id: str
    responses: tuple[ResponseView, ...]
    averages: tuple[QuestionAverage, ...]


@dataclass(frozen=True, slots=True)
class TrendPoint:
    """One session of the room: when, how many answered, and each question's average
    (None: nobody answered it)."""

    session_id: str
    started_at: float
    started: str
    responses: int
    averages: tuple[float | None, ...]  # in the order of FeedbackTrend.questions


@dataclass(frozen=True, slots=True)
class Sparkline:
    """A question's averages drawn as lines (gaps where a session has none)."""

    width: int
    height: int
    lines: tuple[str, ...]  # SVG polyline "x,y x,y …" strings
    dots: tuple[tuple[float, float], ...]
    summary: str  # what it shows, in words (for screen readers)


@dataclass(frozen=True, slots=True)
class TrendLine:
    question_id: str
    question: str
    values: tuple[float | None, ...]
    sparkline: Sparkline


@dataclass(frozen=True, slots=True)
class FeedbackTrend:
    """The room's latest sessions, oldest first, with their averages per question."""

    questions: tuple[Question, ...]
    points: tuple[TrendPoint, ...]
    lines: tuple[TrendLine, ...]


@dataclass(frozen=True, slots=True)
class FeedbackSection:
    """What the session record shows of feedback: this session's and the trend."""

    session: SessionFeedback
    trend: FeedbackTrend
    comment_max_chars: int


class FeedbackService:
    """Questions, the patients' form and what clinicians read. Holds no answers."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        audit: AuditSink,
        sealer: TextSealer,
        limits: FeedbackLimits,
        *,
        window: float,
        time_zone: str,
        trend_sessions: int,
    ) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit
        self._sealer = sealer
        self.limits = limits
        self.window = window
        self._zone = ZoneInfo(time_zone)
        self._trend_sessions = trend_sessions

    # ---- questions ----------------------------------------------------------------

    async def questions(self, *, active_only: bool = True) -> list[Question]:
        """The form's questions in order (made from the defaults if none ever were)."""
        if not await feedback_store.count_questions(self._db):
            await feedback_store.add_default_questions(
                self._db, DEFAULT_QUESTIONS, self._clock.now()
            )
        return await feedback_store.list_questions(self._db, active_only=active_only)

    async def replace_questions(
        self, actor: str, edits: Sequence[QuestionEdit], address: str | None
    ) -> list[Question]:
        """Apply an administrator's edit of the form (see domain.feedback.plan_edit):
        rewordings become new questions, removed questions leave the form but keep
        their answers. Audited when something changed. Raises FeedbackRefused."""
        current = await self.questions(active_only=False)
        plan = plan_edit(current, edits, self.limits.max_questions)
        if not plan.changed:
            return [question for question in current if question.active]
        try:
            await feedback_store.apply_plan(
                self._db,
                {question.id for question in current if question.active},
                plan,
                actor,
                self._clock.now(),
            )
        except feedback_store.QuestionsChanged:
            raise FeedbackRefused(
                "The questions were changed meanwhile. Please look at them again.",
                code="questions_changed",
            ) from None
        await self._audit.record(
            AuditAction.FEEDBACK_QUESTIONS_CHANGED,
            actor=actor,
            address=address,
            details={
                "added": len(plan.added) - plan.reworded,
                "reworded": plan.reworded,
                "removed": len(plan.deactivated) - plan.reworded,
                "moved": len(plan.moved),
            },
        )
        return await self.questions()

    # ---- patients -----------------------------------------------------------------

    async def form_for(self, patient_pass: PassRecord) -> FeedbackForm | None:
        """The form the pass's holder may answer: for the most recent ended session of
        their room that their seat attended (in the session, not only the lobby), up to
        ``window`` seconds after it ended (a personal invite is one person: a seat taken
        with any of its passes counts). None when there is none, or the form has no
        questions. ``already_sent`` when they answered it."""
        now = self._clock.now()
        attended = await feedback_store.attended_session(
            self._db,
            patient_pass.id,
            patient_pass.room_id,
            now - self.window,
            personal_invite_id=(
                patient_pass.invite_id if patient_pass.invite_kind == "personal" else None
            ),
        )
        if attended is None:
            return None
        questions = await self.questions()
        if not questions:
            return None
        room = await stores.get_room(self._db, RoomId(patient_pass.room_id))
        return FeedbackForm(
            session_id=attended.session_id,
            participant_id=attended.participant_id,
            room_name="your group" if room is None else room.name,
            session_started_at=attended.started_at,
            session_ended_at=attended.ended_at,
            questions=tuple(questions),
            already_sent=attended.answered,
        )

    async def submit(
        self,
        patient_pass: PassRecord,
        session_id: str,
        raw_answers: Mapping[str, str],
        address: str | None = None,
    ) -> str:
        """Store the answers (question id → what was entered; blank is skipped) of the
        pass's holder for ``session_id``, comments sealed; returns the response id.

        Raises FeedbackUnavailable (not their session to rate, or no longer),
        AlreadySent, and FeedbackRefused (a bad score, a long comment, a question not
        on the form, nothing answered). Messages never repeat what was entered.
        """
        form = await self.form_for(patient_pass)
        if form is None or form.session_id != session_id:
            raise FeedbackUnavailable("This form is not open any more, or not for this session.")
        if form.already_sent:
            raise AlreadySent("You have already sent your feedback for this session.")
        answers = read_answers(raw_answers, form.questions, self.limits)
        response_id = feedback_store.new_response_id()
        stored: list[StoredAnswer] = []
        for answer in answers:
            comment = None
            if answer.comment is not None:
                comment = await self._seal(
                    session_id, response_id, answer.question_id, answer.comment
                )
            stored.append(StoredAnswer(answer.question_id, answer.score, comment))
        try:
            await feedback_store.add_response(
                self._db, response_id, session_id, form.participant_id, stored, self._clock.now()
            )
        except feedback_store.AlreadyAnswered:
            raise AlreadySent("You have already sent your feedback for this session.") from None
        await self._audit.record(
            AuditAction.FEEDBACK_SUBMITTED,
            actor="pass:" + patient_pass.id[:16],
            target=session_id,
            address=address,
            details={"response_id": response_id, "answers": len(stored)},
        )
        return response_id

    async def _seal(
        self, session_id: str, response_id: str, question_id: str, text: str
    ) -> StoredComment:
        try:
            sealed = await self._sealer.seal_text(
                session_id, comment_label(response_id, question_id), text
            )
        except NoteRefused:
            # The session's records were destroyed by retention (or it is gone).
            raise FeedbackUnavailable(
                "This session's records are closed: feedback can no longer be sent."
            ) from None
        return StoredComment(sealed.kek_version, sealed.nonce, sealed.ciphertext)

    # ---- clinicians ---------------------------------------------------------------

    async def record_section(self, reader: UserRecord, session_id: str) -> FeedbackSection:
        """The session's feedback and its room's trend, for a clinician of the room
        (FeedbackNotFound for anyone else: administrators included)."""
        session = await stores.get_session(self._db, SessionId(session_id))
        if (
            session is None
            or await org_store.room_role_of(self._db, session.room_id, reader.id) is None
        ):
            raise FeedbackNotFound("There is no such session, or it is not one of yours.")
        return FeedbackSection(
            session=await self.for_session(session_id),
            trend=await self.trend(session.room_id),
            comment_max_chars=self.limits.comment_max_chars,
        )

    async def for_session(self, session_id: str) -> SessionFeedback:
        """Every response to the session (with the seat's display name), comments
        opened, and each scale question's average. The caller checks who reads."""
        responses = await feedback_store.session_responses(self._db, session_id)
        destroyed_on = await self._destroyed_on(session_id)
        views = [await self._response_view(response, destroyed_on) for response in responses]
        scores: dict[str, list[int]] = {}
        asked: dict[str, StoredAnswer] = {}
        for response in responses:
            for answer in response.answers:
                if answer.score is not None:
                    scores.setdefault(answer.question_id, []).append(answer.score)
                    asked.setdefault(answer.question_id, answer)
        averages = []
        for question_id, answer in sorted(asked.items(), key=lambda item: item[1].position):
            wording = answer.wording
            mean = average(scores[question_id])
            if wording is None or mean is None:
                continue
            averages.append(
                QuestionAverage(
                    question_id,
                    wording.text,
                    wording.low_label,
                    wording.high_label,
                    mean,
                    len(scores[question_id]),
                )
            )
        return SessionFeedback(session_id, tuple(views), tuple(averages))

    async def trend(self, room_id: str) -> FeedbackTrend:
        """The room's latest ended sessions, oldest first: when each started, how many
        patients answered, and each scale question's average."""
        sessions, questions = await feedback_store.room_scores(
            self._db, room_id, self._trend_sessions
        )
        points = tuple(
            TrendPoint(
                session_id=session.session_id,
                started_at=session.started_at,
                started=self.clock_label(session.started_at),
                responses=session.responses,
                averages=tuple(_mean(session.scores.get(question.id)) for question in questions),
            )
            for session in sessions
        )
        lines = []
        for index, question in enumerate(questions):
            values = tuple(point.averages[index] for point in points)
            lines.append(
                TrendLine(question.id, question.text, values, sparkline(values, question.text))
            )
        return FeedbackTrend(tuple(questions), points, tuple(lines))

    async def _destroyed_on(self, session_id: str) -> str | None:
        key = await notes_store.find_session_key(self._db, session_id)
        if key is None or key.destroyed_at is None:
            return None
        return self.clock_label(key.destroyed_at)

    async def _response_view(
        self, response: StoredResponse, destroyed_on: str | None
    ) -> ResponseView:
        answers = []
        for answer in response.answers:
            wording = answer.wording
            if wording is None:
                continue
            view = AnswerView(
                answer.question_id,
                wording.text,
                wording.kind,
                wording.low_label,
                wording.high_label,
                score=answer.score,
            )
            if answer.comment is not None:
                opened = await self._sealer.open_text(
                    response.session_id,
                    comment_label(response.response_id, answer.question_id),
                    SealedText(
                        answer.comment.kek_version, answer.comment.nonce, answer.comment.ciphertext
                    ),
                )
                if isinstance(opened, Unreadable):
                    view = _unreadable(view, opened, destroyed_on)
                else:
                    view = replace(view, comment=opened)
            answers.append(view)
        return ResponseView(
            response.response_id,
            response.participant_id,
            response.display_name,
            self.clock_label(response.submitted_at),
            tuple(answers),
        )

    def clock_label(self, at: float) -> str:
        """``at`` as a day and a time on the configured time zone's clock."""
        moment = datetime.fromtimestamp(at, self._zone)
        return f"{moment.day} {moment:%b %Y, %H:%M}"


def comment_label(response_id: str, question_id: str) -> str:
    """What a sealed comment is bound to: moved to another response or question, it
    does not open."""
    return f"feedback:{response_id}:{question_id}"


def _unreadable(view: AnswerView, why: Unreadable, destroyed_on: str | None) -> AnswerView:
    if why is Unreadable.DESTROYED:
        text = "Destroyed by the retention policy" + (
            f" on {destroyed_on}." if destroyed_on else "."
        )
    else:
        text = "This comment cannot be read: it did not decrypt (altered, or a wrong key)."
    return replace(view, unreadable=text)


def _mean(total_and_count: tuple[int, int] | None) -> float | None:
    if total_and_count is None or total_and_count[1] == 0:
        return None
    total, count = total_and_count
    return round(total / count, 1)


def sparkline(values: Sequence[float | None], question: str) -> Sparkline:
    """Draw ``values`` (0-10 or None, oldest first) in a SPARK_WIDTH by SPARK_HEIGHT
    box: one polyline per run of sessions with a value, a dot on each value."""
    usable = SPARK_HEIGHT - 2 * SPARK_PAD
    step = (SPARK_WIDTH - 2 * SPARK_PAD) / max(len(values) - 1, 1)
    lines: list[str] = []
    dots: list[tuple[float, float]] = []
    run: list[tuple[float, float]] = []
    for index, value in enumerate(values):
        if value is None:
            if run:
                lines.append(_points(run))
            run = []
            continue
        point = (
            round(SPARK_PAD + index * step, 1),
            round(SPARK_PAD + usable * (1 - value / SCORE_MAX), 1),
        )
        run.append(point)
        dots.append(point)
    if run:
        lines.append(_points(run))
    known = [value for value in values if value is not None]
    if not known:
        summary = f"{question}: no answers yet."
    elif len(known) == 1:
        summary = f"{question}: one session, average {known[0]} of {SCORE_MAX}."
    else:
        summary = (
            f"{question}: from {known[0]} to {known[-1]} of {SCORE_MAX} over "
            f"{len(known)} sessions (lowest {min(known)}, highest {max(known)})."
        )
    return Sparkline(
        SPARK_WIDTH,
        SPARK_HEIGHT,
        tuple(line for line in lines if " " in line),
        tuple(dots),
        summary,
    )


def _points(run: Sequence[tuple[float, float]]) -> str:
    return " ".join(f"{x},{y}" for x, y in run)
