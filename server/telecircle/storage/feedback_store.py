"""Patients' feedback at rest: the form's questions, responses and their answers.

Comments arrive here sealed (the feedback service seals them with the session's data
key through the notes service); nothing here sees their text. Each function is one
transaction (see stores.py for the conventions: epoch seconds in and out, frozen
records, errors leave nothing changed).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from telecircle.domain.feedback import Question, QuestionKind, QuestionPlan, QuestionText
from telecircle.storage.codec import from_utc, to_utc
from telecircle.storage.database import Database
from telecircle.storage.errors import StorageError
from telecircle.storage.tables import (
    SESSION_ENDED,
    AttendanceRow,
    FeedbackAnswerRow,
    FeedbackQuestionRow,
    FeedbackResponseRow,
    ParticipantRow,
    PatientPassRow,
    SessionRow,
)

DEFAULT_ID_PREFIX = "fq_default_"


class QuestionsChanged(StorageError):
    """The active questions are not the ones an edit was made from."""


class AlreadyAnswered(StorageError):
    """The seat has a response for the session already (one per patient per session)."""


@dataclass(frozen=True, slots=True)
class StoredComment:
    """A comment sealed with the session's data key, as stored."""

    kek_version: int
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """An answer as stored: a score, or a sealed comment; with the question's wording
    when read back."""

    question_id: str
    score: int | None = None
    comment: StoredComment | None = None
    wording: QuestionText | None = None
    position: int = 0


@dataclass(frozen=True, slots=True)
class StoredResponse:
    response_id: str
    session_id: str
    participant_id: str
    display_name: str
    submitted_at: float
    answers: tuple[StoredAnswer, ...]


@dataclass(frozen=True, slots=True)
class AttendedSession:
    """The most recent ended session of a room that a pass's seat attended."""

    session_id: str
    participant_id: str
    started_at: float
    ended_at: float
    answered: bool


@dataclass(frozen=True, slots=True)
class SessionScores:
    """One session of a room with its feedback in numbers: how many responses, and for
    each scale question answered, the answers' sum and count."""

    session_id: str
    started_at: float
    responses: int
    scores: dict[str, tuple[int, int]]  # question id -> (sum, count)


def new_question_id() -> str:
    return "fq_" + secrets.token_hex(8)


def new_response_id() -> str:
    return "fr_" + secrets.token_hex(8)


# ---------------------------------------------------------------------------- questions


async def list_questions(db: Database, *, active_only: bool = False) -> list[Question]:
    """The questions, the active ones first, each group by position."""
    query = select(FeedbackQuestionRow).order_by(
        FeedbackQuestionRow.active.desc(),
        FeedbackQuestionRow.position,
        FeedbackQuestionRow.created_at,
        FeedbackQuestionRow.id,
    )
    if active_only:
        query = query.where(FeedbackQuestionRow.active.is_(True))
    async with db.read() as conn:
        return [_question(row) for row in await conn.execute(query)]


async def count_questions(db: Database) -> int:
    """How many questions were ever made (active or not)."""
    async with db.read() as conn:
        count: int = (
            await conn.execute(select(func.count()).select_from(FeedbackQuestionRow))
        ).scalar_one()
        return count


async def add_default_questions(db: Database, defaults: Sequence[QuestionText], now: float) -> None:
    """Store ``defaults`` as the form if no question was ever made. Their ids are fixed,
    so two servers doing this at once store them once."""
    try:
        async with db.write() as conn:
            made = (
                await conn.execute(select(func.count()).select_from(FeedbackQuestionRow))
            ).scalar_one()
            if made:
                return
            for position, wording in enumerate(defaults, start=1):
                await conn.execute(
                    insert(FeedbackQuestionRow).values(
                        id=f"{DEFAULT_ID_PREFIX}{position}",
                        position=position,
                        **_wording_values(wording),
                        active=True,
                        created_at=to_utc(now),
                        created_by=None,
                    )
                )
    except IntegrityError:
        return  # another writer stored them first


# An arbitrary constant naming the feedback form's edit lock (PostgreSQL advisory lock).
_FORM_EDIT_LOCK = 0x7E1EC1F0


async def apply_plan(
    db: Database, expected_active: set[str], plan: QuestionPlan, actor: str, now: float
) -> None:
    """Apply an edit of the form made from the active questions ``expected_active``:
    take questions off, add new ones, move others. Raises QuestionsChanged, changing
    nothing, if the active questions are no longer those."""
    async with db.write() as conn:
        if db.dialect == "postgresql":
            # Row locks do not cover the rows a concurrent edit inserts (READ COMMITTED
            # re-checks only the rows it locked), so two edits that each only add a
            # question would both apply; one lock for the whole form serialises them.
            # SQLite's BEGIN IMMEDIATE already serialises every writer.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _FORM_EDIT_LOCK})
        active = {
            row.id
            for row in await conn.execute(
                select(FeedbackQuestionRow.id)
                .where(FeedbackQuestionRow.active.is_(True))
                .with_for_update()
            )
        }
        if active != expected_active:
            raise QuestionsChanged()
        if plan.deactivated:
            await conn.execute(
                update(FeedbackQuestionRow)
                .where(FeedbackQuestionRow.id.in_(plan.deactivated))
                .values(active=False)
            )
        for question_id, position in plan.moved:
            await conn.execute(
                update(FeedbackQuestionRow)
                .where(FeedbackQuestionRow.id == question_id)
                .values(position=position)
            )
        for position, wording in plan.added:
            await conn.execute(
                insert(FeedbackQuestionRow).values(
                    id=new_question_id(),
                    position=position,
                    **_wording_values(wording),
                    active=True,
                    created_at=to_utc(now),
                    created_by=actor,
                )
            )


def _wording_values(wording: QuestionText) -> dict[str, str]:
    return {
        "text": wording.text,
        "kind": wording.kind.value,
        "low_label": wording.low_label,
        "high_label": wording.high_label,
    }


def _wording(row: Any) -> QuestionText:
    return QuestionText(row.text, QuestionKind(row.kind), row.low_label, row.high_label)


def _question(row: Any) -> Question:
    return Question(row.id, row.position, _wording(row), bool(row.active))


# ---------------------------------------------------------------------------- responses


async def attended_session(
    db: Database,
    pass_id: str,
    room_id: str,
    ended_after: float,
    *,
    personal_invite_id: str | None = None,
) -> AttendedSession | None:
    """The most recent session of ``room_id`` that ended after ``ended_after`` and in
    which the seat taken with ``pass_id`` was in the session (not only in the lobby).
    With ``personal_invite_id``, a seat taken with any pass of that personal invite
    counts (one person, who may have opened their link on another device since)."""
    if personal_invite_id is None:
        holder = ParticipantRow.pass_id == pass_id
    else:
        holder = ParticipantRow.pass_id.in_(
            select(PatientPassRow.id).where(PatientPassRow.invite_id == personal_invite_id)
        )
    attended = (
        select(AttendanceRow.id).where(AttendanceRow.participant_id == ParticipantRow.id).exists()
    )
    answered = (
        select(FeedbackResponseRow.id)
        .where(
            FeedbackResponseRow.session_id == SessionRow.id,
            FeedbackResponseRow.participant_id == ParticipantRow.id,
        )
        .exists()
    )
    query = (
        select(
            SessionRow.id,
            SessionRow.started_at,
            SessionRow.ended_at,
            ParticipantRow.id.label("participant_id"),
            answered.label("answered"),
        )
        .join(ParticipantRow, ParticipantRow.session_id == SessionRow.id)
        .where(
            holder,
            SessionRow.room_id == room_id,
            SessionRow.status == SESSION_ENDED,
            SessionRow.ended_at > to_utc(ended_after),
            attended,
        )
        .order_by(SessionRow.ended_at.desc(), SessionRow.id)
        .limit(1)
    )
    async with db.read() as conn:
        row = (await conn.execute(query)).one_or_none()
    if row is None or row.ended_at is None:
        return None
    return AttendedSession(
        session_id=row.id,
        participant_id=row.participant_id,
        started_at=from_utc(row.started_at),
        ended_at=from_utc(row.ended_at),
        answered=bool(row.answered),
    )


async def add_response(
    db: Database,
    response_id: str,
    session_id: str,
    participant_id: str,
    answers: Sequence[StoredAnswer],
    now: float,
) -> None:
    """Store a response and its answers together. Raises AlreadyAnswered (storing
    nothing) if the seat has answered for the session before."""
    try:
        async with db.write() as conn:
            await conn.execute(
                insert(FeedbackResponseRow).values(
                    id=response_id,
                    session_id=session_id,
                    participant_id=participant_id,
                    submitted_at=to_utc(now),
                )
            )
            for answer in answers:
                comment = answer.comment
                await conn.execute(
                    insert(FeedbackAnswerRow).values(
                        response_id=response_id,
                        question_id=answer.question_id,
                        score=answer.score,
                        comment_kek_version=None if comment is None else comment.kek_version,
                        comment_nonce=None if comment is None else comment.nonce,
                        comment_ciphertext=None if comment is None else comment.ciphertext,
                    )
                )
    except IntegrityError:
        raise AlreadyAnswered(session_id) from None


async def session_responses(db: Database, session_id: str) -> list[StoredResponse]:
    """The session's responses in the order they came, each with its answers in the
    order of the form they answered, and the seat's display name."""
    async with db.read() as conn:
        responses = (
            await conn.execute(
                select(FeedbackResponseRow, ParticipantRow.display_name)
                .join(ParticipantRow, ParticipantRow.id == FeedbackResponseRow.participant_id)
                .where(FeedbackResponseRow.session_id == session_id)
                .order_by(FeedbackResponseRow.submitted_at, FeedbackResponseRow.id)
            )
        ).all()
        rows = await conn.execute(
            select(FeedbackAnswerRow, FeedbackQuestionRow)
            .join(FeedbackQuestionRow, FeedbackQuestionRow.id == FeedbackAnswerRow.question_id)
            .join(FeedbackResponseRow, FeedbackResponseRow.id == FeedbackAnswerRow.response_id)
            .where(FeedbackResponseRow.session_id == session_id)
            .order_by(FeedbackQuestionRow.position, FeedbackQuestionRow.id)
        )
        answers: dict[str, list[StoredAnswer]] = {}
        for row in rows:
            comment = (
                None
                if row.comment_ciphertext is None
                or row.comment_nonce is None
                or row.comment_kek_version is None
                else StoredComment(
                    row.comment_kek_version, bytes(row.comment_nonce), bytes(row.comment_ciphertext)
                )
            )
            answers.setdefault(row.response_id, []).append(
                StoredAnswer(row.question_id, row.score, comment, _wording(row), row.position)
            )
    return [
        StoredResponse(
            response_id=row.id,
            session_id=row.session_id,
            participant_id=row.participant_id,
            display_name=row.display_name,
            submitted_at=from_utc(row.submitted_at),
            answers=tuple(answers.get(row.id, ())),
        )
        for row in responses
    ]


async def room_scores(
    db: Database, room_id: str, sessions: int
) -> tuple[list[SessionScores], list[Question]]:
    """The room's latest ``sessions`` ended sessions, oldest first, with their feedback
    in numbers, and every scale question answered in them (form order)."""
    async with db.read() as conn:
        latest = (
            await conn.execute(
                select(SessionRow.id, SessionRow.started_at)
                .where(SessionRow.room_id == room_id, SessionRow.status == SESSION_ENDED)
                .order_by(SessionRow.started_at.desc(), SessionRow.id)
                .limit(sessions)
            )
        ).all()
        ids = [row.id for row in latest]
        counts = {
            row.session_id: int(row.responses)
            for row in await conn.execute(
                select(
                    FeedbackResponseRow.session_id,
                    func.count(FeedbackResponseRow.id).label("responses"),
                )
                .where(FeedbackResponseRow.session_id.in_(ids))
                .group_by(FeedbackResponseRow.session_id)
            )
        }
        sums: dict[str, dict[str, tuple[int, int]]] = {}
        for row in await conn.execute(
            select(
                FeedbackResponseRow.session_id,
                FeedbackAnswerRow.question_id,
                func.sum(FeedbackAnswerRow.score).label("total"),
                func.count(FeedbackAnswerRow.score).label("answers"),
            )
            .join(FeedbackResponseRow, FeedbackResponseRow.id == FeedbackAnswerRow.response_id)
            .where(
                FeedbackResponseRow.session_id.in_(ids),
                FeedbackAnswerRow.score.is_not(None),
            )
            .group_by(FeedbackResponseRow.session_id, FeedbackAnswerRow.question_id)
        ):
            sums.setdefault(row.session_id, {})[row.question_id] = (
                int(row.total),
                int(row.answers),
            )
        answered = {question_id for scores in sums.values() for question_id in scores}
        questions = [
            _question(row)
            for row in await conn.execute(
                select(FeedbackQuestionRow)
                .where(FeedbackQuestionRow.id.in_(answered))
                .order_by(
                    FeedbackQuestionRow.position,
                    FeedbackQuestionRow.created_at,
                    FeedbackQuestionRow.id,
                )
            )
        ]
    return [
        SessionScores(row.id, from_utc(row.started_at), counts.get(row.id, 0), sums.get(row.id, {}))
        for row in reversed(latest)
    ], questions
