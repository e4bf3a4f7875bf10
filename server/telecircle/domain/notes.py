"""Clinicians' notes: what a note holds, its limits, and who may read it (pure rules).

A note belongs to one session and one author (a clinician). Every save adds a version;
versions are never changed, so nothing once acknowledged is lost. The body — text,
topic and tagged participants — is health information: it exists in clear only in
memory and in the author's browser; storage holds it sealed (see crypto/envelope.py).
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass

from telecircle.domain.errors import DomainError

# Client-made ids (note ids, save ids): the browser makes them so a save can be retried
# after a lost acknowledgement without making a second note or version.
CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class NoteRefused(DomainError):
    """A save broke a limit or a rule. Messages name the limit, never echo the text."""

    code = "note_refused"


@dataclass(frozen=True, slots=True)
class NoteLimits:
    """Administrator-set limits (TELECIRCLE_NOTE_*)."""

    max_chars: int
    max_versions: int
    max_notes_per_author: int
    max_topic_chars: int = 200
    max_tags: int = 16


@dataclass(frozen=True, slots=True)
class NoteBody:
    """What the author wrote: markdown text, an optional topic, tagged participant ids."""

    text: str
    topic: str = ""
    participant_ids: tuple[str, ...] = ()


class Unreadable(enum.StrEnum):
    """Why a stored version cannot be shown. Never shown as an empty note."""

    DECRYPTION_FAILED = "decryption_failed"  # tampered, or a key that does not fit
    DESTROYED = "destroyed"  # the session's data key was destroyed by retention


@dataclass(frozen=True, slots=True)
class NoteVersion:
    """One saved version: its body, or why it cannot be read."""

    version: int
    saved_at: float
    body: NoteBody | None
    unreadable: Unreadable | None = None
    destroyed_at: float | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """A note with the versions the reader asked for (newest last)."""

    note_id: str
    session_id: str
    author_id: str
    created_at: float
    versions: tuple[NoteVersion, ...]

    @property
    def latest(self) -> NoteVersion:
        return self.versions[-1]


@dataclass(frozen=True, slots=True)
class SavedNote:
    """The acknowledgement of a save: which version it became and when."""

    note_id: str
    version: int
    saved_at: float


def check_body(body: NoteBody, limits: NoteLimits) -> None:
    """Raise :class:`NoteRefused` (naming the limit) if ``body`` breaks a limit."""
    if len(body.text) > limits.max_chars:
        raise NoteRefused(
            f"A note may hold at most {limits.max_chars} characters; split it into two notes.",
            code="note_too_long",
        )
    if len(body.topic) > limits.max_topic_chars:
        raise NoteRefused(
            f"A topic may hold at most {limits.max_topic_chars} characters.",
            code="topic_too_long",
        )
    if len(body.participant_ids) > limits.max_tags:
        raise NoteRefused(
            f"A note may tag at most {limits.max_tags} participants.", code="too_many_tags"
        )
    for field_text in (body.text, body.topic, *body.participant_ids):
        if "\x00" in field_text or not _is_unicode_text(field_text):
            raise NoteRefused(
                "A note can hold text only (no NUL or unpaired surrogate characters).",
                code="invalid_note",
            )


def _is_unicode_text(value: str) -> bool:
    # JSON lets a client send an unpaired surrogate, which cannot be stored as UTF-8.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_client_id(value: str, what: str) -> None:
    if not CLIENT_ID.fullmatch(value):
        raise NoteRefused(
            f"The {what} must be 8-64 letters, digits, '-' or '_'.", code="invalid_note"
        )


def may_read(
    *,
    reader_id: str,
    author_id: str,
    reader_room_role: str | None,
    room_shares_notes: bool,
) -> bool:
    """Whether a clinician may read a note: its author always; another clinician of
    the same room only if the room shares notes among its clinicians. Administrators
    and patients have no room role here and never read notes."""
    if reader_room_role is None:
        return False
    if reader_id == author_id:
        return True
    return room_shares_notes


def encode_body(body: NoteBody) -> str:
    """The body as the text that is sealed (JSON, versioned)."""
    return json.dumps(
        {"v": 1, "text": body.text, "topic": body.topic, "tags": list(body.participant_ids)},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def decode_body(sealed_text: str) -> NoteBody:
    """The body from :func:`encode_body`'s text; ValueError if it is not one."""
    data = json.loads(sealed_text)
    if not isinstance(data, dict) or data.get("v") != 1:
        raise ValueError("not a note body")
    text, topic, tags = data.get("text"), data.get("topic"), data.get("tags")
    if not isinstance(text, str) or not isinstance(topic, str) or not isinstance(tags, list):
        raise ValueError("not a note body")
    return NoteBody(text, topic, tuple(str(tag) for tag in tags))
