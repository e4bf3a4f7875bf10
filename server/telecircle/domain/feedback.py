"""Patients' feedback on a session (pure rules): the form's questions, what counts as an
answer, how an administrator's edit of the questions is applied, and averages.

After a session each patient who attended may answer a short form once: a few 0-10
scales and a free comment, every question optional. Questions are never reworded in
place: a new wording is a new question, so an answer always keeps the words it
answered. Comments are health information (stored sealed, see services/feedback.py);
refusals name the rule that was broken and never repeat what was typed.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from telecircle.domain.errors import DomainError

SCORE_MIN = 0
SCORE_MAX = 10
QUESTION_MAX_CHARS = 200
LABEL_MAX_CHARS = 60


class QuestionKind(enum.StrEnum):
    SCALE = "scale"  # a whole number from 0 to 10, with words for both ends
    COMMENT = "comment"  # free text


class FeedbackRefused(DomainError):
    """A form or an edit broke a rule. Messages never echo what was typed."""

    code = "feedback_refused"
    http_status = 422


@dataclass(frozen=True, slots=True)
class FeedbackLimits:
    """Administrator-set limits (TELECIRCLE_FEEDBACK_*)."""

    comment_max_chars: int
    max_questions: int


@dataclass(frozen=True, slots=True)
class QuestionText:
    """What a question says: its wording and, for a scale, the words at 0 and 10."""

    text: str
    kind: QuestionKind
    low_label: str = ""
    high_label: str = ""


@dataclass(frozen=True, slots=True)
class Question:
    """A stored question. Inactive ones are off the form but keep their answers."""

    id: str
    position: int
    wording: QuestionText
    active: bool

    @property
    def text(self) -> str:
        return self.wording.text

    @property
    def kind(self) -> QuestionKind:
        return self.wording.kind


@dataclass(frozen=True, slots=True)
class Answer:
    """One answered question: a score, or a comment (skipped questions have none)."""

    question_id: str
    score: int | None = None
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class QuestionEdit:
    """One row of the administrator's form: an existing question (``question_id``) or
    a new one (None), where it goes, and whether it stays on the form."""

    question_id: str | None
    wording: QuestionText
    position: int
    keep: bool = True


@dataclass(frozen=True, slots=True)
class QuestionPlan:
    """What an edit changes. ``added`` are (position, wording), rewordings included."""

    deactivated: tuple[str, ...]
    added: tuple[tuple[int, QuestionText], ...]
    moved: tuple[tuple[str, int], ...]
    reworded: int

    @property
    def changed(self) -> bool:
        return bool(self.deactivated or self.added or self.moved)


_NOT_AT_ALL = "Not at all"
DEFAULT_QUESTIONS: tuple[QuestionText, ...] = (
    QuestionText("I felt heard and understood", QuestionKind.SCALE, _NOT_AT_ALL, "Completely"),
    QuestionText(
        "We worked on what I wanted to work on", QuestionKind.SCALE, _NOT_AT_ALL, "Completely"
    ),
    QuestionText("The approach fit me", QuestionKind.SCALE, _NOT_AT_ALL, "Very well"),
    QuestionText("The group overall", QuestionKind.SCALE, "Not good for me", "Very good for me"),
    QuestionText("Anything you would like your therapist to know?", QuestionKind.COMMENT),
)


def _clean_line(raw: str, what: str, max_chars: int, *, required: bool) -> str:
    line = " ".join(raw.split())
    if not line and required:
        raise FeedbackRefused(f"Please write the {what}.", code="invalid_question")
    if len(line) > max_chars:
        raise FeedbackRefused(
            f"The {what} is at most {max_chars} characters.", code="invalid_question"
        )
    if not line.isprintable():
        raise FeedbackRefused(
            f"The {what} may not contain control characters.", code="invalid_question"
        )
    return line


def clean_wording(wording: QuestionText) -> QuestionText:
    """The wording with whitespace collapsed; FeedbackRefused if a part is missing, too
    long or holds control characters. A comment question has no end labels."""
    text = _clean_line(wording.text, "question", QUESTION_MAX_CHARS, required=True)
    if wording.kind is QuestionKind.COMMENT:
        return QuestionText(text, QuestionKind.COMMENT)
    low = _clean_line(wording.low_label, "words for 0", LABEL_MAX_CHARS, required=True)
    high = _clean_line(wording.high_label, "words for 10", LABEL_MAX_CHARS, required=True)
    return QuestionText(text, QuestionKind.SCALE, low, high)


def plan_edit(
    current: Sequence[Question], edits: Sequence[QuestionEdit], max_questions: int
) -> QuestionPlan:
    """How to turn the active questions ``current`` into what ``edits`` ask for.

    Every active question must have its row (a form from before another edit is
    refused). A kept question whose wording changed is replaced by a new question; one
    not kept is taken off the form; positions are renumbered 1, 2, 3… in the order the
    rows ask for (at a tie, a row given a new place goes first, then the rows' order).
    Raises FeedbackRefused.
    """
    active = {question.id: question for question in current if question.active}
    named = [edit.question_id for edit in edits if edit.question_id is not None]
    if len(set(named)) != len(named) or set(named) != set(active):
        raise FeedbackRefused(
            "The questions were changed meanwhile. Please look at them again.",
            code="questions_changed",
        )
    kept = [edit for edit in edits if edit.keep]
    if len(kept) > max_questions:
        raise FeedbackRefused(
            f"The form has at most {max_questions} questions.", code="too_many_questions"
        )

    def place(pair: tuple[int, QuestionEdit]) -> tuple[int, int, int]:
        # At a tie, a row given a new place (or a new question) goes first: it is the
        # one the administrator moved there.
        row, edit = pair
        old = active.get(edit.question_id) if edit.question_id is not None else None
        unmoved = old is not None and old.position == edit.position
        return (edit.position, int(unmoved), row)

    ordered = sorted(enumerate(kept), key=place)
    deactivated = [edit.question_id for edit in edits if not edit.keep and edit.question_id]
    added: list[tuple[int, QuestionText]] = []
    moved: list[tuple[str, int]] = []
    reworded = 0
    for position, (_, edit) in enumerate(ordered, start=1):
        wording = clean_wording(edit.wording)
        old = active.get(edit.question_id) if edit.question_id is not None else None
        if old is None:
            added.append((position, wording))
        elif old.wording != wording:
            deactivated.append(old.id)
            added.append((position, wording))
            reworded += 1
        elif old.position != position:
            moved.append((old.id, position))
    return QuestionPlan(tuple(deactivated), tuple(added), tuple(moved), reworded)


def parse_score(raw: str) -> int | None:
    """A 0-10 answer from a form ('' is no answer); FeedbackRefused otherwise."""
    value = raw.strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 2):
        raise _bad_score()
    score = int(value)
    if not SCORE_MIN <= score <= SCORE_MAX:
        raise _bad_score()
    return score


def _bad_score() -> FeedbackRefused:
    return FeedbackRefused(
        f"An answer on a scale is a whole number from {SCORE_MIN} to {SCORE_MAX}.",
        code="invalid_score",
    )


def clean_comment(raw: str, limits: FeedbackLimits) -> str | None:
    """The comment as it will be stored ('' and blanks are no answer): line ends made
    plain, at most ``comment_max_chars``, no control characters but line breaks and
    tabs. Raises FeedbackRefused."""
    text = raw.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        return None
    if len(text) > limits.comment_max_chars:
        raise FeedbackRefused(
            f"A comment is at most {limits.comment_max_chars} characters; please shorten it.",
            code="comment_too_long",
        )
    if any(not (ch.isprintable() or ch in "\n\t") for ch in text):
        raise FeedbackRefused(
            "A comment may not contain control characters.", code="invalid_comment"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FeedbackRefused(
            "A comment may not contain control characters.", code="invalid_comment"
        ) from None
    return text


def read_answers(
    raw: Mapping[str, str], questions: Iterable[Question], limits: FeedbackLimits
) -> list[Answer]:
    """The answers in a submitted form (question id → what was entered), in the form's
    order. Every id must be an active question's; blanks are skipped questions; at
    least one question must be answered. Raises FeedbackRefused."""
    on_form = {question.id: question for question in questions if question.active}
    for question_id in raw:
        if question_id not in on_form:
            raise FeedbackRefused(
                "The form has changed since you opened it. Please look at it again.",
                code="unknown_question",
            )
    answers: list[Answer] = []
    for question in sorted(on_form.values(), key=lambda q: q.position):
        entered = raw.get(question.id, "")
        if question.kind is QuestionKind.SCALE:
            score = parse_score(entered)
            if score is not None:
                answers.append(Answer(question.id, score=score))
        else:
            comment = clean_comment(entered, limits)
            if comment is not None:
                answers.append(Answer(question.id, comment=comment))
    if not answers:
        raise FeedbackRefused(
            "Nothing to send yet: answer at least one question, or simply close this page "
            "(the form is optional).",
            code="empty_feedback",
        )
    return answers


def average(scores: Iterable[int]) -> float | None:
    """The mean of ``scores`` rounded to one decimal; None when there are none."""
    values = list(scores)
    if not values:
        return None
    return round(sum(values) / len(values), 1)
