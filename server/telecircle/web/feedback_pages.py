"""Patients' feedback pages.

``GET/POST /feedback`` (:data:`Action.GIVE_FEEDBACK`, patients): the optional
session-rating form for the latest session the patient attended, while it is open; a
patient answers it once. ``GET/POST /admin/feedback`` (:data:`Action.MANAGE_SETTINGS`):
the administrator's questions (add, reword, take off, reorder). What clinicians read
is a partial of the session record, ``feedback_section.html``, filled by
:meth:`FeedbackService.record_section`.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from telecircle.domain.access import Action
from telecircle.domain.feedback import (
    SCORE_MAX,
    SCORE_MIN,
    FeedbackRefused,
    QuestionEdit,
    QuestionKind,
    QuestionText,
)
from telecircle.errors import TelecircleError
from telecircle.services.feedback import AlreadySent, FeedbackForm, FeedbackUnavailable
from telecircle.web.identity import client_address, current_user, requires
from telecircle.web.keys import FEEDBACK
from telecircle.web.patient_pages import current_pass
from telecircle.web.render import message, render, see_other

ID_MAX = 64
ANSWER_PREFIX = "q_"
DAY = 86_400.0


def _days(seconds: float) -> str:
    days = max(1, round(seconds / DAY))
    return f"{days} day{'s' if days != 1 else ''}"


# ---- patients ---------------------------------------------------------------------


def _form_page(
    request: web.Request,
    form: FeedbackForm,
    values: Mapping[str, str] | None = None,
    *,
    status: int = 200,
    error: str | None = None,
) -> web.Response:
    service = request.app[FEEDBACK]
    return render(
        request,
        "feedback.html",
        status=status,
        title="How was the session?",
        form=form,
        session_date=service.clock_label(form.session_started_at),
        values=dict(values or {}),
        comment_max=service.limits.comment_max_chars,
        scale=[str(score) for score in range(SCORE_MIN, SCORE_MAX + 1)],
        error=error,
    )


def _thanks(request: web.Request, form: FeedbackForm) -> web.Response:
    when = request.app[FEEDBACK].clock_label(form.session_started_at)
    return message(
        request,
        "Thank you",
        f"Your feedback on the session of {when} has reached your group's therapists. "
        "You can close this page.",
    )


def _nothing_to_rate(request: web.Request) -> web.Response:
    window = _days(request.app[FEEDBACK].window)
    return message(
        request,
        "No session to give feedback on",
        "The feedback form opens when a session you took part in has ended, and stays "
        f"open for {window}. There is no such session for you right now.",
    )


@requires(Action.GIVE_FEEDBACK)
async def feedback_form(request: web.Request) -> web.Response:
    form = await request.app[FEEDBACK].form_for(current_pass(request))
    if form is None:
        return _nothing_to_rate(request)
    if form.already_sent:
        return _thanks(request, form)
    return _form_page(request, form)


@requires(Action.GIVE_FEEDBACK)
async def send_feedback(request: web.Request) -> web.Response:
    """Store the answers once and go on to the thanks (a reload sends nothing again)."""
    patient_pass = current_pass(request)
    posted = await request.post()
    session_id = posted.get("session_id", "")
    answers = {
        key.removeprefix(ANSWER_PREFIX): value
        for key, value in posted.items()
        if key.startswith(ANSWER_PREFIX) and isinstance(value, str)
    }
    service = request.app[FEEDBACK]
    try:
        await service.submit(
            patient_pass,
            session_id[:ID_MAX] if isinstance(session_id, str) else "",
            answers,
            client_address(request),
        )
    except AlreadySent as exc:
        return message(request, "Already sent", f"{exc.message} Thank you.", status=409)
    except FeedbackUnavailable as exc:
        return message(request, "This form is closed", exc.message, status=exc.http_status)
    except FeedbackRefused as exc:
        form = await service.form_for(patient_pass)
        if form is None:
            return _nothing_to_rate(request)
        return _form_page(request, form, answers, status=exc.http_status, error=exc.message)
    return see_other("/feedback")


# ---- administrators -----------------------------------------------------------------


async def _questions_page(
    request: web.Request,
    status: int = 200,
    *,
    error: str | None = None,
    notice: str | None = None,
) -> web.Response:
    service = request.app[FEEDBACK]
    questions = await service.questions()
    return render(
        request,
        "admin_feedback.html",
        status=status,
        title="Feedback form",
        questions=questions,
        max_questions=service.limits.max_questions,
        kinds=[kind.value for kind in QuestionKind],
        error=error,
        notice=notice,
    )


@requires(Action.MANAGE_SETTINGS)
async def questions_page(request: web.Request) -> web.Response:
    saved = request.query.get("saved") == "1"
    return await _questions_page(
        request, notice="Saved: patients see these questions from now on." if saved else None
    )


def _edits(posted: Mapping[str, object], limit: int) -> list[QuestionEdit]:
    """The rows of the questions form: ``id_N`` (empty for the new row), ``text_N``,
    ``kind_N``, ``low_N``, ``high_N``, ``position_N`` and ``remove_N``, for N = 0, 1, …
    A new row left empty adds nothing. Raises FeedbackRefused."""

    def field(name: str) -> str:
        value = posted.get(name, "")
        return value if isinstance(value, str) else ""

    edits: list[QuestionEdit] = []
    for row in range(limit + 1):
        if f"text_{row}" not in posted:
            break
        question_id = field(f"id_{row}")[:ID_MAX] or None
        text = field(f"text_{row}")
        if question_id is None and not text.strip():
            continue
        try:
            kind = QuestionKind(field(f"kind_{row}"))
        except ValueError:
            raise FeedbackRefused(
                "Choose a scale or a comment for each question.", code="invalid_question"
            ) from None
        try:
            position = int(field(f"position_{row}").strip() or str(row + 1))
        except ValueError:
            raise FeedbackRefused(
                "A question's place is a whole number.", code="invalid_question"
            ) from None
        edits.append(
            QuestionEdit(
                question_id,
                QuestionText(text, kind, field(f"low_{row}"), field(f"high_{row}")),
                position,
                keep=field(f"remove_{row}") != "on",
            )
        )
    return edits


@requires(Action.MANAGE_SETTINGS)
async def save_questions(request: web.Request) -> web.Response:
    admin = current_user(request)
    service = request.app[FEEDBACK]
    posted = await request.post()
    try:
        edits = _edits(posted, service.limits.max_questions)
        await service.replace_questions(admin.id, edits, client_address(request))
    except TelecircleError as exc:
        return await _questions_page(request, exc.http_status, error=exc.message)
    return see_other("/admin/feedback?saved=1")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/feedback", feedback_form)
    app.router.add_post("/feedback", send_feedback)
    app.router.add_get("/admin/feedback", questions_page)
    app.router.add_post("/admin/feedback", save_questions)
